//! The session set's pure parts: what a listing asks to read, what the catalog becomes,
//! the known set and its pools, and the digest.

use super::*;
use crate::config::{RuntimeTokenSource, TokenSpec};

fn configured(id: &str) -> Arc<SessionSpec> {
    Arc::new(SessionSpec {
        id: Arc::from(id),
        labels: vec!["from-config".into()],
        token: TokenSpec::Command("print-token".into()),
        viewer_only: false,
        base_url: None,
        organization_uuid: None,
    })
}

fn listed(id: &str, revision: i64, removed: bool) -> Listed {
    Listed {
        id: Arc::from(id),
        revision,
        removed,
    }
}

fn stored(id: &str, revision: i64, var: &str) -> (Arc<str>, i64, String) {
    (
        Arc::from(id),
        revision,
        format!(r#"{{"id":"{id}","token_env":"{var}","labels":["rt"]}}"#),
    )
}

fn ids(v: &[Arc<str>]) -> Vec<&str> {
    v.iter().map(|s| &**s).collect()
}

fn rules() -> RuntimeTokenRules {
    RuntimeTokenRules::default()
}

#[test]
fn a_listing_asks_for_the_specs_of_new_and_changed_rows_only() {
    let mut c = Catalog::default();
    let first = [
        listed("a", 1, false),
        listed("b", 2, false),
        listed("gone", 3, true),
    ];
    assert_eq!(
        ids(&c.to_read(&first)),
        ["a", "b"],
        "a removal mark has no spec"
    );
    c.apply(
        &first,
        &[stored("a", 1, "TA"), stored("b", 2, "TB")],
        &rules(),
    );
    assert!(c.to_read(&first).is_empty(), "all read at their revisions");
    let second = [listed("a", 1, false), listed("b", 7, false)];
    assert_eq!(ids(&c.to_read(&second)), ["b"], "b changed");
    c.apply(&second, &[stored("b", 7, "TB2")], &rules());
    let Some(Stored::Added(b)) = c.get("b") else {
        panic!("b stored: {c:?}");
    };
    assert_eq!(b.token, TokenSpec::Env("TB2".into()));
    assert_eq!(c.get("gone"), None, "rows not listed are forgotten");
    assert_eq!(c.len(), 2);
}

#[test]
fn a_row_listed_but_not_read_keeps_its_old_spec_and_is_read_again() {
    let mut c = Catalog::default();
    c.apply(&[listed("a", 1, false)], &[stored("a", 1, "OLD")], &rules());
    // Listed at revision 2, but its spec read at another one (or not at all).
    let now = [listed("a", 2, false), listed("new", 5, false)];
    c.apply(&now, &[stored("a", 3, "NEW")], &rules());
    let Some(Stored::Added(a)) = c.get("a") else {
        panic!("a kept: {c:?}");
    };
    assert_eq!(a.token, TokenSpec::Env("OLD".into()));
    assert_eq!(c.get("new"), None, "never read: not known yet");
    assert_eq!(ids(&c.to_read(&now)), ["a", "new"], "both read next round");
}

#[test]
fn the_known_set_is_config_and_stored_minus_removed_in_two_pools() {
    let mut c = Catalog::default();
    c.apply(
        &[
            listed("both", 1, false),
            listed("removed", 2, true),
            listed("runtime", 3, false),
        ],
        &[stored("both", 1, "T"), stored("runtime", 3, "T")],
        &rules(),
    );
    let config = [
        configured("both"),
        configured("plain"),
        configured("removed"),
    ];
    let k = known(&config, &c);
    assert_eq!(
        ids(&k.shared),
        ["both", "runtime"],
        "stored: every member knows them"
    );
    assert_eq!(ids(&k.configured), ["plain"]);
    let specs: Vec<&str> = k.specs.keys().map(|s| &**s).collect();
    assert_eq!(specs, ["both", "plain", "runtime"], "removed is left out");
    assert_eq!(
        k.specs["both"].token,
        TokenSpec::Command("print-token".into()),
        "this instance's config spec wins over the stored one"
    );
    assert_eq!(k.specs["runtime"].labels, ["rt"]);
    assert_eq!(known(&config, &Catalog::default()).configured.len(), 3);
}

#[test]
fn a_stored_spec_this_instance_may_not_use_is_kept_with_a_refused_token() {
    let env_only = rules();
    let file_only = RuntimeTokenRules {
        sources: vec![RuntimeTokenSource::File],
        dirs: Arc::from(vec![std::path::PathBuf::from("/run/tokens")]),
        ..Default::default()
    };
    let mut c = Catalog::default();
    let rows = [
        listed("env", 1, false),
        listed("file", 2, false),
        listed("bad", 3, false),
    ];
    let specs = [
        stored("env", 1, "T"),
        (
            Arc::from("file"),
            2,
            r#"{"id":"file","token_file":"/run/tokens/f"}"#.to_owned(),
        ),
        (
            Arc::from("bad"),
            3,
            r#"{"id":"other","token_env":"T"}"#.to_owned(),
        ),
    ];
    c.apply(&rows, &specs, &file_only);
    let token = |c: &Catalog, id: &str| match c.get(id) {
        Some(Stored::Added(s)) => s.token.clone(),
        other => panic!("{id}: {other:?}"),
    };
    assert!(
        matches!(token(&c, "env"), TokenSpec::Refused(why) if why.contains("\"env\"")),
        "env is not allowed here"
    );
    assert_eq!(
        token(&c, "file"),
        TokenSpec::ConfinedFile {
            path: "/run/tokens/f".into(),
            dirs: file_only.dirs.clone(),
        },
        "confined to this instance's directories"
    );
    assert!(matches!(token(&c, "bad"), TokenSpec::Refused(_)));
    let mut c = Catalog::default();
    c.apply(&rows, &specs, &env_only);
    assert_eq!(token(&c, "env"), TokenSpec::Env("T".into()));
    assert!(matches!(token(&c, "file"), TokenSpec::Refused(why) if why.contains("\"file\"")));
}

#[test]
fn the_digest_is_of_the_set_of_ids() {
    assert_eq!(digest(["a", "b"]), digest(["b", "a", "a"]));
    assert_ne!(digest(["a", "b"]), digest(["a"]));
    assert_ne!(digest(["ab"]), digest(["a", "b"]), "ids are separated");
    assert_ne!(digest(["a"]), digest(Vec::<&str>::new()));
}
