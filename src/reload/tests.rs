use std::collections::HashMap;

use super::*;
use crate::config::{RuleAction, RuleConfig};

const TOKEN: &str = "[[api.tokens]]\nname = \"a\"\nrole = \"admin\"\n\
    sha256 = \"10a4c7c9fc5206d6f36dc6944a81bb6f4a3cb0e25014ae3b12e6c3e52712292a\"\n";

/// A valid config: `api` keys, one admin token, `[ccr]`, then `extra`.
fn config_with(api: &str, extra: &str) -> Config {
    let toml = format!(
        "[api]\nbind = \"127.0.0.1:0\"\n{api}\n{TOKEN}[ccr]\nbase_url = \"http://127.0.0.1:1\"\n\
         organization_uuid = \"org\"\n{extra}"
    );
    crate::config::load_from_str(&toml, HashMap::new()).expect("valid test config")
}

#[test]
fn rules_are_compared_by_id() {
    let old = PolicyConfig {
        rules: vec![
            RuleConfig::new("a", RuleAction::Allow, "Read"),
            RuleConfig::new("b", RuleAction::Deny, "Bash"),
            RuleConfig::new("c", RuleAction::Allow, "Grep"),
        ],
        ..PolicyConfig::default()
    };
    let new = PolicyConfig {
        rules: vec![
            RuleConfig::new("a", RuleAction::Allow, "Read"),
            RuleConfig::new("b", RuleAction::Allow, "Bash"),
            RuleConfig::new("d", RuleAction::Allow, "Glob"),
        ],
        remind_after: std::time::Duration::from_secs(60),
        ..PolicyConfig::default()
    };
    let c = policy_changes(&old, &new);
    assert_eq!(c.rules_added, ["d"]);
    assert_eq!(c.rules_removed, ["c"]);
    assert_eq!(c.rules_changed, ["b"]);
    assert_eq!(c.settings_changed, ["remind_after"]);
    assert_eq!(unchanged_rules(&old, &new), ["a"]);
    assert!(policy_changes(&old, &old).is_empty());
}

#[test]
fn a_new_order_of_the_same_rules_is_a_change_of_its_own() {
    let a = RuleConfig::new("a", RuleAction::Allow, "Read");
    let b = RuleConfig::new("b", RuleAction::Deny, "Bash");
    let old = PolicyConfig {
        rules: vec![a.clone(), b.clone()],
        ..PolicyConfig::default()
    };
    let new = PolicyConfig {
        rules: vec![b, a],
        ..PolicyConfig::default()
    };
    let c = policy_changes(&old, &new);
    assert_eq!(c.settings_changed, ["rules order"]);
    assert!(c.rules_changed.is_empty());
    assert_eq!(unchanged_rules(&old, &new), ["b", "a"], "hits kept");
}

#[test]
fn live_sections_never_need_a_restart_and_the_others_are_named_by_key() {
    let old = config_with("", "");
    let live = config_with(
        "",
        "[[api.tokens]]\nname = \"x\"\nrole = \"viewer\"\nsha256 = \"d036bd6d01a1cae081d39a2f8dab751dc042de814fd60df31fcb553170950f29\"\n\
         [policy]\nremind_after = \"1m\"\n[[policy.rules]]\nid = \"r\"\naction = \"allow\"\ntool = \"Read\"\n\
         [[sessions]]\nid = \"s1\"\ntoken = \"t\"\n",
    );
    assert!(
        restart_needed(&old, &live).is_empty(),
        "{:?}",
        restart_needed(&old, &live)
    );
    let other = config_with(
        "workers = 3\nauth = \"disabled\"",
        "[ledger]\npath = \"/tmp/elsewhere.db\"\n\
         [console]\nsession_lifetime = \"1h\"\n[reconnect]\njitter = 0.1\n\
         [cluster]\nlease_period = \"20s\"\n",
    );
    assert_eq!(
        restart_needed(&old, &other),
        [
            "api.auth",
            "api.workers",
            "reconnect.jitter",
            "ledger.path",
            "console.session_lifetime",
            "cluster.lease_period"
        ]
    );
}

/// A CA file's new path or new certificates need a restart and are named by their key;
/// the ledger's does not pass for a change of `backend`, nor hide one.
#[test]
fn a_changed_ca_file_is_named_by_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = |name: &str| {
        let path = dir.path().join(format!("{name}.pem"));
        std::fs::write(&path, crate::config::ca::tests::ca_pem(name)).unwrap();
        path.display().to_string()
    };
    let (a, b) = (ca("a"), ca("b"));
    let with = |ca: &str, pool: u32| {
        config_with(
            "",
            &format!(
                "[ledger]\nbackend = \"postgres\"\nurl_env = \"U\"\npool_size = {pool}\n\
                 ca_file = \"{ca}\"\n[cluster]\nca_file = \"{ca}\"\n"
            ),
        )
    };
    assert!(restart_needed(&with(&a, 4), &with(&a, 4)).is_empty());
    assert_eq!(
        restart_needed(&with(&a, 4), &with(&b, 4)),
        ["ledger.ca_file", "cluster.ca_file"]
    );
    assert_eq!(
        restart_needed(&with(&a, 4), &with(&b, 5)),
        ["ledger.ca_file", "ledger.backend", "cluster.ca_file"]
    );
    assert_eq!(
        restart_needed(&with(&a, 4), &with(&a, 5)),
        ["ledger.backend"]
    );
    // The same path with other certificates in it (a CA rotated in place).
    let before = with(&a, 4);
    std::fs::copy(&b, &a).unwrap();
    assert_eq!(
        restart_needed(&before, &with(&a, 4)),
        ["ledger.ca_file", "cluster.ca_file"]
    );
}
