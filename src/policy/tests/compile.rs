//! Unit tests of the `[policy]` config section (`config/policy.rs`) and of
//! [`Policy::compile`], through the loader as the service uses it (config's checks, then
//! the policy's, in one list).

use std::collections::HashMap;
use std::time::Duration;

use super::{Policy, PolicyConfig, RuleAction, RuleConfig};
use crate::config::{read_from_str, Config, ConfigError, KeyError};

/// Demo mode without operator auth: these tests are about `[policy]` only.
const BASE: &str = "[sim]\nembedded = true\n[api]\nauth = \"disabled\"\n";

/// Config's checks, then the policy's, as `app::load_config` does.
fn load_from_str(toml: &str, env: HashMap<String, String>) -> Result<Config, ConfigError> {
    let draft = read_from_str(toml, env)?;
    let policy = Policy::compile(&draft.config().policy);
    draft.finish(policy.err().unwrap_or_default())
}

fn load(policy: &str) -> Result<Config, ConfigError> {
    load_from_str(&format!("{policy}\n{BASE}"), HashMap::new())
}

fn compile(cfg: &PolicyConfig) -> Policy {
    Policy::compile(cfg).unwrap_or_else(|e| panic!("{e:?}"))
}

fn ok(policy: &str) -> Config {
    load(policy).unwrap_or_else(|e| panic!("{e}"))
}

/// `path: message` lines of an invalid config.
fn problems(policy: &str) -> Vec<String> {
    match load(policy) {
        Err(ConfigError::Invalid(list)) => list.iter().map(ToString::to_string).collect(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn absent_section_means_no_rules_and_no_deadlines() {
    let c = ok("");
    assert!(c.policy.rules.is_empty());
    assert_eq!(c.policy.ask_timeout, Duration::ZERO);
    assert_eq!(c.policy.remind_after, Duration::ZERO);
    let p = compile(&c.policy);
    assert_eq!(p.remind_after(), None);
    assert_eq!(
        p.ask_timeout_message(),
        "No operator answered within the deadline"
    );
}

#[test]
fn full_section_parses_every_key() {
    let c = ok(r#"
[policy]
ask_timeout = "5m"
ask_timeout_message = "too slow"
remind_after = "1m"

[[policy.rules]]
id = "npm-tests"
action = "allow"
tool = "Bash(npm run test:*)"
sessions = ["demo-1", "team-a"]
dry_run = true
ask_timeout = "30s"

[[policy.rules]]
action = "deny"
tool = "WebFetch(domain:evil.io)"
message = "no"

[[policy.rules]]
action = "ask"
tool = "mcp__github"
ask_timeout = "0s"
"#);
    let p = &c.policy;
    assert_eq!(p.ask_timeout, Duration::from_secs(300));
    assert_eq!(p.ask_timeout_message, "too slow");
    assert_eq!(p.remind_after, Duration::from_secs(60));
    let ids: Vec<&str> = p.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["npm-tests", "rule-2", "rule-3"]);
    let r = &p.rules[0];
    assert_eq!(r.action, RuleAction::Allow);
    assert_eq!(r.tool, "Bash(npm run test:*)");
    assert_eq!(r.sessions, Some(vec!["demo-1".into(), "team-a".into()]));
    assert!(r.dry_run);
    assert_eq!(r.ask_timeout, Some(Duration::from_secs(30)));
    assert_eq!(compile(p).rules()[1].deny_message(), "no");
    assert_eq!(
        (p.rules[1].sessions.as_ref(), p.rules[1].ask_timeout),
        (None, None)
    );
    assert_eq!(p.rules[2].ask_timeout, Some(Duration::ZERO));
}

#[test]
fn every_bad_key_is_reported_with_its_path() {
    let cases: &[(&str, &[&str])] = &[
        (
            "[policy]\nask_timeout = 5\n",
            &["policy.ask_timeout: expected a duration"],
        ),
        (
            "[policy]\nremind_after = \"soon\"\n",
            &["policy.remind_after: expected a duration"],
        ),
        (
            "[policy]\nask_timeout_message = \" \"\n",
            &["policy.ask_timeout_message: must not be empty"],
        ),
        ("[policy]\nfoo = 1\n", &["policy.foo: unknown key"]),
        ("policy = 3\n", &["policy: expected a table ([policy])"]),
        (
            "[policy]\nrules = 3\n",
            &["policy.rules: expected an array of tables"],
        ),
        (
            "[policy]\nrules = [1]\n",
            &["policy.rules[0]: expected a table"],
        ),
        (
            "[policy]\nrules = [1, { action = \"deny\", tool = \"Bash()\" }]\n",
            &[
                "policy.rules[0]: expected a table",
                "policy.rules[1].tool: Bash() has an empty argument",
            ],
        ),
        (
            "[[policy.rules]]\ntool = \"Bash\"\n",
            &["policy.rules[0].action: required"],
        ),
        (
            "[[policy.rules]]\naction = \"allow\"\n",
            &["policy.rules[0].tool: required"],
        ),
        (
            "[[policy.rules]]\naction = \"permit\"\ntool = \"Bash\"\n",
            &["policy.rules[0].action: expected \"allow\", \"deny\" or \"ask\", got \"permit\""],
        ),
        (
            "[[policy.rules]]\naction = \"allow\"\ntool = \"Bash()\"\n",
            &["policy.rules[0].tool: Bash() has an empty argument"],
        ),
        (
            "[[policy.rules]]\naction = \"deny\"\ntool = \"Bash(npm test\"\n",
            &["policy.rules[0].tool: unbalanced parentheses"],
        ),
        (
            "[[policy.rules]]\naction = \"deny\"\ntool = \"\"\n",
            &["policy.rules[0].tool: must not be empty"],
        ),
        (
            "[[policy.rules]]\naction = \"allow\"\ntool = \"Bash\"\nmessage = \"x\"\n",
            &["policy.rules[0].message: only allowed with action = \"deny\""],
        ),
        (
            "[[policy.rules]]\naction = \"deny\"\ntool = \"Bash\"\nmessage = \"\"\n",
            &["policy.rules[0].message: must not be empty"],
        ),
        (
            "[[policy.rules]]\naction = \"deny\"\ntool = \"Bash\"\ntoolz = 1\n",
            &["policy.rules[0].toolz: unknown key"],
        ),
        (
            "[[policy.rules]]\naction = \"deny\"\ntool = \"Bash\"\nsessions = []\n",
            &["policy.rules[0].sessions: must not be empty"],
        ),
        (
            "[[policy.rules]]\naction = \"deny\"\ntool = \"Bash\"\nsessions = [\"a\", 1, \"\"]\n",
            &[
                "policy.rules[0].sessions[1]: expected a string",
                "policy.rules[0].sessions[2]: must not be empty",
            ],
        ),
        (
            "[[policy.rules]]\naction = \"deny\"\ntool = \"Bash\"\ndry_run = \"maybe\"\n",
            &["policy.rules[0].dry_run: expected true or false"],
        ),
        (
            "[[policy.rules]]\naction = \"deny\"\ntool = \"Bash\"\nask_timeout = \"x\"\n",
            &["policy.rules[0].ask_timeout: expected a duration"],
        ),
        (
            "[[policy.rules]]\nid = \"a b\"\naction = \"deny\"\ntool = \"Bash\"\n",
            &["policy.rules[0].id: may contain only"],
        ),
    ];
    for (toml, wants) in cases {
        let p = problems(toml);
        assert_eq!(p.len(), wants.len(), "{toml}\n{p:#?}");
        for want in *wants {
            assert!(
                p.iter().any(|line| line.starts_with(want)),
                "{toml}\nwant {want}\n{p:#?}"
            );
        }
    }
}

#[test]
fn problems_in_several_rules_are_all_reported() {
    let p = problems(
        r#"
[[policy.rules]]
id = "x"
action = "allow"
tool = "Bash"

[[policy.rules]]
action = "deny"
tool = "Bash(:*)"

[[policy.rules]]
id = "x"
action = "ask"
tool = "Read(~/.ssh/**)"

[[policy.rules]]
id = "rule-2"
action = "ask"
tool = "Bash"
"#,
    );
    let want = [
        "policy.rules[1].tool: Bash() has an empty argument",
        "policy.rules[2].id: duplicate id \"x\", already used by policy.rules[0]",
        "policy.rules[2].tool: invalid path pattern",
        "policy.rules[3].id: duplicate id \"rule-2\", already used by policy.rules[1]",
    ];
    assert_eq!(p.len(), want.len(), "{p:#?}");
    for (line, want) in p.iter().zip(want) {
        assert!(line.starts_with(want), "{line} / {want}");
    }
}

#[test]
fn compile_reports_every_bad_pattern_at_its_rule() {
    let cfg = PolicyConfig {
        rules: vec![
            RuleConfig::new("ok", RuleAction::Allow, "Bash(npm test:*)"),
            RuleConfig::new("empty-arg", RuleAction::Deny, "Bash()"),
            RuleConfig::new("also-ok", RuleAction::Ask, "Read(src/**)"),
            RuleConfig::new("unbalanced", RuleAction::Deny, "Bash(npm test"),
            RuleConfig::new("blank", RuleAction::Deny, " "),
            RuleConfig::new("wildcard", RuleAction::Allow, "Bash(npm * test)"),
        ],
        ..PolicyConfig::default()
    };
    let errors = Policy::compile(&cfg).expect_err("four bad patterns");
    let lines: Vec<String> = errors.iter().map(KeyError::to_string).collect();
    let want = [
        "policy.rules[1].tool: Bash() has an empty argument",
        "policy.rules[3].tool: unbalanced parentheses in \"Bash(npm test\"",
        "policy.rules[4].tool: must not be empty",
        "policy.rules[5].tool: invalid Bash pattern \"npm * test\"",
    ];
    assert_eq!(lines.len(), want.len(), "{lines:#?}");
    for (line, want) in lines.iter().zip(want) {
        assert!(line.starts_with(want), "{line} / {want}");
    }
    let ok = compile(&PolicyConfig {
        rules: vec![cfg.rules[0].clone(), cfg.rules[2].clone()],
        ..cfg
    });
    let ids: Vec<&str> = ok.rules().iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["ok", "also-ok"]);
    assert_eq!(ok.rules()[1].tool.as_str(), "Read(src/**)");
}

#[test]
fn pattern_problems_come_in_file_order_with_config_problems() {
    let p = problems(
        r#"
[policy]
ask_timeout = "soon"

[[policy.rules]]
id = "a b"
action = "allow"
tool = "Bash()"
message = "x"

[[policy.rules]]
action = "deny"
tool = 3

[[policy.rules]]
action = "permit"
tool = "Read(~/.ssh/**)"
bogus = 1
"#,
    );
    let want = [
        "policy.ask_timeout: expected a duration",
        "policy.rules[0].id: may contain only",
        "policy.rules[0].tool: Bash() has an empty argument",
        "policy.rules[0].message: only allowed with action = \"deny\"",
        "policy.rules[1].tool: expected a string",
        "policy.rules[2].action: expected \"allow\", \"deny\" or \"ask\", got \"permit\"",
        "policy.rules[2].tool: invalid path pattern",
        "policy.rules[2].bogus: unknown key",
    ];
    assert_eq!(p.len(), want.len(), "{p:#?}");
    for (line, want) in p.iter().zip(want) {
        assert!(line.starts_with(want), "{line} / {want}");
    }
}

#[test]
fn config_alone_keeps_patterns_as_written() {
    let toml = format!("[[policy.rules]]\naction = \"deny\"\ntool = \"Bash(\"\n{BASE}");
    let c = crate::config::load_from_str(&toml, HashMap::new()).expect("config's own checks pass");
    assert_eq!(c.policy.rules[0].tool, "Bash(");
    assert!(
        load_from_str(&toml, HashMap::new()).is_err(),
        "the policy's do not"
    );
}

#[test]
fn env_overrides_reach_the_policy_section() {
    let env = HashMap::from([(
        "CCR_SUPERVISOR__POLICY__ASK_TIMEOUT".to_owned(),
        "2m".to_owned(),
    )]);
    let c = load_from_str(BASE, env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.policy.ask_timeout, Duration::from_secs(120));
}

#[test]
fn shipped_example_section_is_valid_once_uncommented() {
    let shipped = include_str!("../../../config.toml");
    let (head, example) = shipped
        .split_once("\n# [policy]\n")
        .expect("config.toml has a commented [policy] example");
    // The example ends where the next live section begins.
    let example = example.split("\n[").next().unwrap_or(example);
    let uncommented: String = example
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(code) if code.starts_with('[') || code.contains(" = ") => code,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let text = format!("{head}\n[policy]\n{uncommented}");
    let c = load_from_str(&text, HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = c.policy.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["no-rm-rf", "tests", "read-src", "docs"]);
    assert_eq!(c.policy.ask_timeout, Duration::from_secs(600));
    // As shipped, the section is commented out: no rules.
    let c = load_from_str(shipped, HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.policy.rules.is_empty());
}
