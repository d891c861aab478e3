//! The files under `deploy/` agree with the config loader: the example config
//! loads as shipped, and every `CCR_SUPERVISOR__*` override the systemd unit and
//! the Dockerfile set is a real key (unknown keys are errors).

use std::collections::HashMap;
use std::path::Path;

use ccr_supervisor::app::load_config_from_str;
use ccr_supervisor::config::{ApiTokenSource, LogFormat, TokenSpec};

const EXAMPLE: &str = include_str!("../deploy/config.example.toml");
const UNIT: &str = include_str!("../deploy/ccr-supervisor.service");
const DOCKERFILE: &str = include_str!("../deploy/Dockerfile");

/// Every `CCR_SUPERVISOR__KEY=value` written in `text` (unit `Environment=`, Dockerfile `ENV`).
fn overrides(text: &str) -> HashMap<String, String> {
    text.split(|c: char| c.is_whitespace() || c == '\\')
        .filter_map(|w| w.strip_prefix("Environment=").or(Some(w)))
        .filter(|w| w.starts_with("CCR_SUPERVISOR__"))
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn example_config_loads_production_shaped() {
    let cfg = load_config_from_str(EXAMPLE, HashMap::new()).expect("example config loads");
    assert!(!cfg.sim.embedded, "no embedded simulator");
    assert!(
        cfg.ccr.base_url.starts_with("https://"),
        "{}",
        cfg.ccr.base_url
    );
    assert_eq!(cfg.log.format, LogFormat::Json);
    assert!(cfg.api.auth_enabled);
    assert_eq!(
        cfg.ledger.path,
        Path::new("/var/lib/ccr-supervisor/ledger.db")
    );
    assert!(cfg.ledger.enabled);
    assert!(cfg
        .api
        .tokens
        .iter()
        .all(|t| matches!(t.source, ApiTokenSource::Sha256(_) | ApiTokenSource::Env(_))));
    assert_eq!(cfg.sessions.len(), 3);
    assert!(
        cfg.sessions
            .iter()
            .all(|s| !matches!(s.token, TokenSpec::Literal(_))),
        "no literal session tokens"
    );
    for kind in ["token_env", "token_file", "token_command"] {
        assert!(EXAMPLE.contains(&format!("\n{kind} = ")), "shows {kind}");
    }
}

#[test]
fn unit_and_image_overrides_are_real_keys() {
    let unit = overrides(UNIT);
    assert_eq!(
        unit.keys()
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>(),
        [
            "CCR_SUPERVISOR__LEDGER__PATH",
            "CCR_SUPERVISOR__LOG__FORMAT"
        ]
        .into()
    );
    let cfg = load_config_from_str(EXAMPLE, unit).expect("unit overrides are valid");
    assert_eq!(cfg.log.format, LogFormat::Json);
    assert_eq!(cfg.api.bind.to_string(), "127.0.0.1:8700");

    let image = overrides(DOCKERFILE);
    assert_eq!(image.len(), 3, "{image:?}");
    let cfg = load_config_from_str(EXAMPLE, image).expect("image overrides are valid");
    assert_eq!(cfg.api.bind.to_string(), "0.0.0.0:8700");
    assert_eq!(
        cfg.ledger.path,
        Path::new("/var/lib/ccr-supervisor/ledger.db")
    );
    assert_eq!(cfg.log.format, LogFormat::Json);
}
