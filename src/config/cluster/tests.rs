//! Unit tests of the `[cluster]` section.

use std::collections::HashMap;

use super::*;
use crate::config::{load_from_str, ConfigError};

const BASE: &str = "[sim]\nembedded = true\n[api]\nauth = \"disabled\"\n";

fn load(extra: &str, env: &[(&str, &str)]) -> Result<ClusterConfig, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load_from_str(&format!("{extra}\n{BASE}"), env).map(|c| c.cluster)
}

fn problems(extra: &str) -> Vec<(String, String)> {
    match load(extra, &[]) {
        Err(ConfigError::Invalid(list)) => list.into_iter().map(|e| (e.path, e.message)).collect(),
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn defaults_when_section_absent_and_the_default_id_is_stable() {
    let c = load("", &[]).unwrap();
    assert_eq!(c, ClusterConfig::default());
    assert_eq!(c.lease_period, Duration::from_secs(10));
    assert_eq!(c.advertise_url, None);
    assert_eq!(c.outage_grace, Duration::from_secs(60));
    assert!(check_instance_id(&c.instance_id).is_ok(), "{c:?}");
    let (host, suffix) = c.instance_id.rsplit_once('-').unwrap();
    assert!(!host.is_empty());
    assert_eq!(suffix.len(), SUFFIX_LEN);
    // A reload reads the same default: no restart is asked for a key nobody set.
    assert_eq!(load("", &[]).unwrap().instance_id, c.instance_id);
}

#[test]
fn default_id_cleans_and_shortens_any_host_name() {
    assert_eq!(
        instance_id_from("web-1.example", "abc123"),
        "web-1.example-abc123"
    );
    assert_eq!(
        instance_id_from("h\u{e9}te/1 x", "abc123"),
        "h-te-1-x-abc123"
    );
    assert_eq!(instance_id_from("", "abc123"), "ccr-abc123");
    let long = instance_id_from(&"a".repeat(300), "abc123");
    assert_eq!(long.len(), MAX_INSTANCE_ID_LEN);
    assert!(long.ends_with("-abc123"));
    assert!(check_instance_id(&long).is_ok());
}

#[test]
fn reads_every_key_and_env_overrides() {
    let c = load(
        "[cluster]\ninstance_id = \"node-a\"\nadvertise_url = \"https://a.internal:8700/\"\nlease_period = \"5s\"\n",
        &[("CCR_SUPERVISOR__CLUSTER__LEASE_PERIOD", "1m 30s")],
    )
    .unwrap();
    assert_eq!(c.instance_id, "node-a");
    assert_eq!(
        c.advertise_url.as_ref().map(url::Url::as_str),
        Some("https://a.internal:8700/")
    );
    assert_eq!(c.lease_period, Duration::from_secs(90));
    let from_env = load("", &[("CCR_SUPERVISOR__CLUSTER__INSTANCE_ID", "b_2.x")]).unwrap();
    assert_eq!(from_env.instance_id, "b_2.x");
    let bounds = load("[cluster]\nlease_period = \"1s\"\n", &[]).unwrap();
    assert_eq!(bounds.lease_period, MIN_LEASE_PERIOD);
    let bounds = load("[cluster]\nlease_period = \"10m\"\n", &[]).unwrap();
    assert_eq!(bounds.lease_period, MAX_LEASE_PERIOD);
    let grace = load(
        "[cluster]\noutage_grace = \"0s\"\n",
        &[("CCR_SUPERVISOR__CLUSTER__OUTAGE_GRACE", "2m")],
    )
    .unwrap();
    assert_eq!(grace.outage_grace, Duration::from_secs(120));
    let none = load("[cluster]\noutage_grace = \"0s\"\n", &[]).unwrap();
    assert_eq!(none.outage_grace, Duration::ZERO);
}

#[test]
fn reports_every_bad_key_with_its_path() {
    let p = problems(
        "[cluster]\ninstance_id = \"a b\"\nadvertise_url = \"ftp://x\"\nlease_period = \"500ms\"\nperiod = 3\n",
    );
    let paths: Vec<&str> = p.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "cluster.instance_id",
            "cluster.advertise_url",
            "cluster.lease_period",
            "cluster.period"
        ],
        "{p:?}"
    );
    assert!(p[0].1.contains("letters, digits"), "{p:?}");
    assert!(p[1].1.contains("http:// or https://"), "{p:?}");
    assert!(p[2].1.contains("between 1s and 10m"), "{p:?}");
    assert!(p[3].1.contains("unknown key"), "{p:?}");

    let empty = problems("[cluster]\ninstance_id = \"\"\n");
    assert!(empty[0].1.contains("must not be empty"), "{empty:?}");
    let long = problems(&format!(
        "[cluster]\ninstance_id = \"{}\"\n",
        "x".repeat(65)
    ));
    assert!(long[0].1.contains("at most 64"), "{long:?}");
    let colon = problems("[cluster]\ninstance_id = \"a:b\"\n");
    assert_eq!(colon[0].0, "cluster.instance_id");
    let slow = problems("[cluster]\nlease_period = \"11m\"\n");
    assert!(slow[0].1.contains("between"), "{slow:?}");
    let long_grace = problems("[cluster]\noutage_grace = \"2h\"\n");
    assert_eq!(long_grace[0].0, "cluster.outage_grace");
    assert!(long_grace[0].1.contains("between"), "{long_grace:?}");
    let words = problems("[cluster]\nlease_period = \"soon\"\n");
    assert!(words[0].1.contains("expected a duration"), "{words:?}");
    let query = problems("[cluster]\nadvertise_url = \"http://a/?x=1\"\n");
    assert!(query[0].1.contains("no query"), "{query:?}");
    let junk = problems("[cluster]\nadvertise_url = \"not a url\"\n");
    assert!(junk[0].1.contains("not a valid URL"), "{junk:?}");
    let not_table = problems("cluster = 3\n");
    assert_eq!(not_table[0].0, "cluster");
}
