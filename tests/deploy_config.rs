//! The files under `deploy/` agree with the service: the example config loads as
//! shipped, every `CCR_SUPERVISOR__*` override the systemd unit and the Dockerfile set is
//! a real key (unknown keys are errors), the Prometheus alert rules pass
//! `promtool check rules`, `/metrics` passes promtool in both formats, and every metric
//! the rules and the Grafana dashboard name is in `/metrics`.
//!
//! The cluster files under `deploy/cluster/` likewise: the shared config loads for each
//! instance of the compose file (with the image's overrides and the instance's own) and
//! passes `check-config`, the database URL and the tokens come from the env file only,
//! and the systemd template unit is the single unit per instance, as hardened.
//!
//! promtool comes from Debian's `prometheus` package (`cargo xtask test` installs it).
//! Without it the promtool checks print a notice and pass, unless `CCR_SYSTEM_TESTS` or
//! `CCR_BROWSER_TESTS` is `required`.

#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ccr_supervisor::app::load_config_from_str;
use ccr_supervisor::config::{ApiTokenSource, LogFormat, PgUrlSource, TokenSpec};

const EXAMPLE: &str = include_str!("../deploy/config.example.toml");
const UNIT: &str = include_str!("../deploy/ccr-supervisor.service");
const DOCKERFILE: &str = include_str!("../deploy/Dockerfile");
const ALERTS: &str = "deploy/prometheus/alerts.yml";
const DASHBOARD: &str = include_str!("../deploy/grafana/ccr-supervisor.json");
const CLUSTER_CONFIG: &str = include_str!("../deploy/cluster/config.toml");
const COMPOSE: &str = include_str!("../deploy/cluster/compose.yaml");
const CLUSTER_ENV: &str = include_str!("../deploy/cluster/ccr.env.example");
const TEMPLATE_UNIT: &str = include_str!("../deploy/cluster/ccr-supervisor@.service");

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
    assert_eq!(cfg.sessions.len(), 4);
    let eu = &cfg.sessions[3];
    assert_eq!(
        eu.base_url(&cfg.ccr.base_url),
        "https://ccr-eu.example.com",
        "shows a per-session endpoint"
    );
    assert_ne!(
        eu.organization_uuid(&cfg.ccr.organization_uuid),
        cfg.ccr.organization_uuid
    );
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

/// promtool, or `None` after a notice when it is not installed (a failure when system
/// tests are required).
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let required = ["CCR_SYSTEM_TESTS", "CCR_BROWSER_TESTS"]
            .iter()
            .any(|v| std::env::var(v).as_deref() == Ok("required"));
        assert!(
            !required,
            "promtool is not installed (Debian package `prometheus`; `cargo xtask test` installs it)"
        );
        eprintln!(
            "NOTICE: promtool not found, promtool checks skipped; `cargo xtask test` installs \
             it (Debian package `prometheus`)"
        );
    }
    found
}

/// Run promtool with `args`, `stdin` on its standard input: (exit code, stdout + stderr).
fn run(promtool: &Path, args: &[&str], stdin: &str) -> (i32, String) {
    let mut child = Command::new(promtool)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn alert_rules_pass_promtool() {
    let Some(promtool) = promtool() else { return };
    let (rc, out) = run(&promtool, &["check", "rules", ALERTS], "");
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every metric name (`ccr_supervisor_*`, `process_*`) in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    for prefix in ["ccr_supervisor_", "process_"] {
        for (at, _) in text.match_indices(prefix) {
            let preceded =
                at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
            if preceded {
                continue;
            }
            let end = text[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |n| at + n);
            names.insert(text[at..end].to_owned());
        }
    }
    names
}

/// The sample names of an exposition.
fn sample_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// The expressions of every panel of the dashboard.
fn dashboard_exprs() -> String {
    let dash: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut exprs = String::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            exprs.push_str(t["expr"].as_str().expect("expr"));
            exprs.push('\n');
        }
    }
    exprs.push_str(dash["templating"].to_string().as_str());
    exprs
}

/// The OpenMetrics counter families (`# TYPE x counter`) of an exposition.
fn counter_families(om: &str) -> BTreeSet<String> {
    om.lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .map(str::to_owned)
        .collect()
}

#[actix_rt::test]
async fn metrics_pass_promtool_in_both_formats_and_have_what_rules_and_dashboard_use() {
    let rule =
        "\n[policy]\n[[policy.rules]]\nid = \"reads\"\naction = \"allow\"\ntool = \"Read\"\n";
    let mut h = common::Harness::start_with(vec![common::Sess::new("s1")], &[], rule).await;
    h.wait_sim_connected("s1").await;
    h.wait_state("s1", "connected").await;
    // A rule's answer, so that the latency histograms have observations.
    let input = serde_json::json!({"file_path": "/etc/hosts"});
    assert!(h.sim.prompt("s1", "r1", "Read", input));
    h.wait_sim(
        |e| matches!(e, ccr_sim::SimEvent::Answered { request_id, .. } if request_id == "r1"),
    )
    .await;
    let scrape = |accept: Option<&'static str>| {
        let mut req = h.http.get(format!("{}/metrics", h.api));
        if let Some(a) = accept {
            req = req.insert_header(("accept", a));
        }
        async move {
            let mut resp = req.send().await.expect("GET /metrics");
            assert_eq!(resp.status().as_u16(), 200);
            String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap()
        }
    };
    let text = scrape(None).await;
    let om = scrape(Some("application/openmetrics-text")).await;
    assert!(om.ends_with("# EOF\n") && !text.contains("# EOF"));

    // Every metric the rules and the dashboard use is exposed.
    let exposed = sample_names(&text);
    let alerts =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(ALERTS)).unwrap();
    for (file, used) in [
        (ALERTS, metric_names(&alerts)),
        ("dashboard", metric_names(&dashboard_exprs())),
    ] {
        assert!(!used.is_empty(), "{file} names no metric");
        let missing: Vec<_> = used.difference(&exposed).collect();
        assert!(
            missing.is_empty(),
            "{file} uses {missing:?}, not in /metrics:\n{text}"
        );
    }
    assert!(
        sample_names(&om) == exposed,
        "both formats have the same samples"
    );
    // And docs/operations.md describes every family.
    let docs = include_str!("../docs/operations.md");
    for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split(' ').next().unwrap();
        assert!(
            docs.contains(&format!("`{name}`")),
            "{name} is not in docs/operations.md"
        );
    }

    let Some(promtool) = promtool() else {
        h.shutdown().await;
        return;
    };
    let (rc, out) = run(&promtool, &["check", "metrics"], &text);
    assert_eq!((rc, out.as_str()), (0, ""), "the text format:\n{text}");
    // promtool's linter reads the text format only: in OpenMetrics a counter's samples
    // (`x_total`) are named apart from its family (`x`), which it reports as a family
    // without help. That must be all it finds.
    let (_, out) = run(&promtool, &["check", "metrics"], &om);
    let counters = counter_families(&om);
    for finding in out.lines() {
        let misread = finding
            .strip_suffix(" no help text")
            .and_then(|n| n.strip_suffix("_total"))
            .is_some_and(|family| counters.contains(family));
        assert!(misread, "promtool on OpenMetrics: {finding}\n{om}");
    }
    // The OpenMetrics parser of Prometheus itself (promtool's backfill, which wants a
    // timestamp on every sample) reads it whole.
    let stamped: String = om
        .lines()
        .map(|l| {
            if l.starts_with('#') {
                format!("{l}\n")
            } else {
                format!("{l} 1700000000\n")
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("metrics.om");
    std::fs::write(&input, stamped).unwrap();
    let blocks = dir.path().join("blocks");
    let (rc, out) = run(
        &promtool,
        &[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            input.to_str().unwrap(),
            blocks.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(rc, 0, "OpenMetrics parse: {out}\n{om}");
    h.shutdown().await;
}

#[test]
fn the_image_probes_itself_and_the_unit_notifies_systemd() {
    // The image's health check is the binary's own `ctl health`, at ctl's default URL,
    // whose port is the one the image binds and exposes.
    assert!(
        DOCKERFILE.contains(r#"CMD ["ccr-supervisor", "ctl", "health"]"#),
        "HEALTHCHECK runs ctl health"
    );
    let port = ccr_ctl::DEFAULT_URL.rsplit(':').next().expect("a port");
    assert!(DOCKERFILE.contains(&format!("\nEXPOSE {port}\n")));
    let bind = &overrides(DOCKERFILE)["CCR_SUPERVISOR__API__BIND"];
    assert!(bind.ends_with(&format!(":{port}")), "{bind}");
    assert!(DOCKERFILE.contains("\nUSER 10001:10001\n"), "non-root");
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30s",
        "SystemCallFilter=@system-service",
        "SystemCallArchitectures=native",
        "ProtectProc=invisible",
        "ProcSubset=pid",
    ] {
        assert!(UNIT.lines().any(|l| l == line), "the unit sets {line}");
    }
}

/// `systemd-analyze security` of the unit and of the cluster's template unit (1.4 each
/// with systemd 252, 3.2 before `Type=notify` and the system call filter); a notice
/// when the tool is missing.
#[test]
fn the_unit_stays_hardened() {
    for unit in [
        "deploy/ccr-supervisor.service",
        "deploy/cluster/ccr-supervisor@.service",
    ] {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager", unit])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output();
        let text = match out {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
            other => {
                eprintln!("NOTICE: systemd-analyze security --offline unavailable ({other:?}); score not checked");
                return;
            }
        };
        // "→ Overall exposure level for ccr-supervisor.service: 1.4 OK" (a template is
        // analysed as its instance `@i`).
        let score: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: no overall exposure level in:\n{text}"));
        assert!(score <= 2.0, "{unit}: exposure {score} (was 1.4):\n{text}");
    }
}

/// Each ccr-supervisor service of the compose file, with the `CCR_SUPERVISOR__*`
/// overrides of its own `environment:` (services are the two-space keys under
/// `services:`).
fn compose_instances(text: &str) -> BTreeMap<String, HashMap<String, String>> {
    let mut out = BTreeMap::new();
    let (mut in_services, mut current) = (false, None::<String>);
    for line in text.lines() {
        if !line.starts_with(' ') && !line.starts_with('#') && !line.is_empty() {
            in_services = line == "services:";
            current = None;
            continue;
        }
        if !in_services {
            continue;
        }
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !name.starts_with([' ', '#']) {
                current = Some(name.to_owned());
                continue;
            }
        }
        if let Some(name) = &current {
            let found = overrides(line);
            if !found.is_empty() || line.contains("<<: *ccr-supervisor") {
                out.entry(name.clone())
                    .or_insert_with(HashMap::new)
                    .extend(found);
            }
        }
    }
    out
}

/// Every `token_env` of `cfg` (operators', then sessions').
fn token_vars(cfg: &ccr_supervisor::config::Config) -> Vec<String> {
    let operators = cfg.api.tokens.iter().filter_map(|t| match &t.source {
        ApiTokenSource::Env(var) => Some(var.clone()),
        _ => None,
    });
    let sessions = cfg.sessions.iter().filter_map(|s| match &s.token {
        TokenSpec::Env(var) => Some(var.clone()),
        _ => None,
    });
    operators.chain(sessions).collect()
}

#[test]
fn cluster_config_loads_for_every_compose_instance() {
    let instances = compose_instances(COMPOSE);
    assert_eq!(
        instances.keys().map(String::as_str).collect::<Vec<_>>(),
        ["ccr-1", "ccr-2", "ccr-3"],
        "three instances of the image: {instances:?}"
    );
    let mut ids = BTreeSet::new();
    for (name, own) in &instances {
        // The image's ENV, then the service's environment (compose's order of precedence).
        let mut env = overrides(DOCKERFILE);
        env.extend(own.clone());
        let cfg = load_config_from_str(CLUSTER_CONFIG, env)
            .unwrap_or_else(|e| panic!("{name}: the cluster config with its overrides: {e}"));
        let pg = cfg.ledger.postgres().expect("backend = \"postgres\"");
        assert_eq!(pg.url, PgUrlSource::Env("CCR_LEDGER_URL".into()));
        assert_eq!(cfg.cluster.instance_id, *name, "a fixed id per instance");
        let advertised = cfg.cluster.advertise_url.as_ref().expect("advertise_url");
        assert_eq!(
            advertised.host_str(),
            Some(name.as_str()),
            "reachable by its service name"
        );
        assert_eq!(cfg.api.bind.to_string(), "0.0.0.0:8700");
        assert!(!cfg.sim.embedded);
        assert!(!cfg.sessions.is_empty());
        ids.insert(cfg.cluster.instance_id.clone());
        // Every token and the URL come from the env file, which lists each of them.
        for var in token_vars(&cfg)
            .into_iter()
            .chain(["CCR_LEDGER_URL".into()])
        {
            assert!(
                CLUSTER_ENV
                    .lines()
                    .any(|l| l.starts_with(&format!("{var}="))),
                "ccr.env.example lists {var}"
            );
        }
    }
    assert_eq!(ids.len(), instances.len(), "instance ids are unique");
    for line in [
        "  env_file: ./ccr.env",
        "    image: postgres:16",
        "    dockerfile: deploy/Dockerfile",
        r#"    test: ["CMD", "ccr-supervisor", "ctl", "health"]"#,
        "    internal: true",
    ] {
        assert!(
            COMPOSE.lines().any(|l| l == line),
            "compose.yaml has {line:?}"
        );
    }
    // The URL is a credential: never in the config or the compose file.
    for text in [CLUSTER_CONFIG, COMPOSE] {
        let settings = text.lines().filter(|l| !l.trim_start().starts_with('#'));
        for line in settings {
            assert!(
                !line.contains("postgres://"),
                "a database URL inline: {line}"
            );
        }
    }
}

#[test]
fn the_template_unit_is_the_unit_per_instance() {
    // Its overrides are real keys; the instance id made of the specifiers is valid.
    let settings: String = TEMPLATE_UNIT
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let env: HashMap<String, String> = overrides(&settings)
        .into_iter()
        .map(|(k, v)| (k, v.replace("%H", "host.example").replace("%i", "a")))
        .collect();
    assert_eq!(
        env.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        [
            "CCR_SUPERVISOR__CLUSTER__INSTANCE_ID",
            "CCR_SUPERVISOR__LOG__FORMAT"
        ]
        .into()
    );
    let cfg = load_config_from_str(CLUSTER_CONFIG, env).expect("template overrides are valid");
    assert_eq!(cfg.cluster.instance_id, "host.example-a");
    assert_eq!(cfg.log.format, LogFormat::Json);
    // Each instance reads its own env file (the database URL), which must exist.
    assert!(TEMPLATE_UNIT
        .lines()
        .any(|l| l == "EnvironmentFile=/etc/ccr-supervisor/%i.env"));
    // Everything else is the single-instance unit's, line for line, but what is per
    // instance (user, state directory) or SQLite's (the ledger path).
    let per_instance = [
        "Description=",
        "User=",
        "StateDirectory=",
        "WorkingDirectory=",
        "Environment=CCR_SUPERVISOR__LEDGER__PATH=",
    ];
    for line in UNIT.lines() {
        if line.starts_with('#')
            || line.is_empty()
            || per_instance.iter().any(|p| line.starts_with(p))
        {
            continue;
        }
        assert!(
            TEMPLATE_UNIT.lines().any(|l| l == line),
            "the template unit lacks {line:?}"
        );
    }
}

/// `check-config` as an operator runs it on an instance: the shared config with the
/// instance's environment (the env file's variables and its own overrides).
#[test]
fn check_config_accepts_the_cluster_config() {
    let cfg = load_config_from_str(CLUSTER_CONFIG, HashMap::new()).expect("loads");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccr-supervisor"));
    cmd.args(["check-config", "--config", "deploy/cluster/config.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CCR_LEDGER_URL", "postgres://ccr:secret@postgres:5432/ccr")
        .env("CCR_SUPERVISOR__CLUSTER__INSTANCE_ID", "ccr-1")
        .env(
            "CCR_SUPERVISOR__CLUSTER__ADVERTISE_URL",
            "http://ccr-1:8700",
        );
    for var in token_vars(&cfg) {
        cmd.env(var, "a-token");
    }
    let out = cmd.output().expect("run check-config");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "check-config: {text}");
    assert!(!text.contains("secret"), "the URL is never printed: {text}");
}
