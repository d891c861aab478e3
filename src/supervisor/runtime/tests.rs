//! Unit tests of [`SetDiff`]: what a reload changes.

use super::*;
use crate::config::TokenSpec;

fn spec(id: &str, label: &str) -> Arc<SessionSpec> {
    Arc::new(SessionSpec {
        id: Arc::from(id),
        labels: vec![label.to_owned()],
        token: TokenSpec::Env("CCR_TOKEN".into()),
        viewer_only: false,
        base_url: None,
        organization_uuid: None,
    })
}

fn ids<T: AsRef<str>>(v: impl IntoIterator<Item = T>) -> Vec<String> {
    v.into_iter().map(|s| s.as_ref().to_owned()).collect()
}

#[test]
fn a_reload_removes_changes_and_adds_by_id() {
    let running = [spec("a", "x"), spec("b", "x"), spec("c", "x")];
    let current = running.iter().map(|s| (&s.id, s));
    let wanted = vec![
        spec("d", "x"),
        spec("c", "y"),
        spec("a", "x"),
        spec("b2", "x"),
    ];
    let diff = SetDiff::between(current, wanted);
    assert_eq!(ids(&diff.removed), ["b"]);
    assert_eq!(ids(diff.changed.iter().map(|s| &s.id)), ["c"]);
    assert_eq!(diff.changed[0].labels, ["y"], "the new spec");
    assert_eq!(ids(diff.added.iter().map(|s| &s.id)), ["b2", "d"], "sorted");
}

#[test]
fn the_same_set_changes_nothing_and_a_repeated_id_takes_its_last_spec() {
    let running = [spec("a", "x")];
    let same = SetDiff::between(running.iter().map(|s| (&s.id, s)), vec![spec("a", "x")]);
    assert_eq!(same, SetDiff::default());
    let twice = vec![spec("a", "y"), spec("a", "x")];
    let diff = SetDiff::between(running.iter().map(|s| (&s.id, s)), twice);
    assert_eq!(diff, SetDiff::default());
}

#[test]
fn a_changed_endpoint_override_is_a_changed_session() {
    let running = [spec("a", "x"), spec("b", "x")];
    let moved = |id: &str, base: Option<&str>, org: Option<&str>| {
        Arc::new(SessionSpec {
            base_url: base.map(str::to_owned),
            organization_uuid: org.map(str::to_owned),
            ..(*spec(id, "x")).clone()
        })
    };
    let wanted = vec![
        moved("a", Some("https://eu.example.com"), None),
        moved("b", None, Some("org-2")),
    ];
    let diff = SetDiff::between(running.iter().map(|s| (&s.id, s)), wanted);
    assert_eq!(ids(diff.changed.iter().map(|s| &s.id)), ["a", "b"]);
    let back = SetDiff::between(
        diff.changed.iter().map(|s| (&s.id, s)),
        vec![spec("a", "x"), spec("b", "x")],
    );
    assert_eq!(
        ids(back.changed.iter().map(|s| &s.id)),
        ["a", "b"],
        "and back"
    );
}
