//! Property-based fuzzing of the shell splitter, the rule matcher and evaluation.
//!
//! The central property: an allow rule for a command never covers a line that runs
//! anything else (a second command, a substitution, a redirection to a file, a
//! variable prefix), however that line is quoted, commented or spaced; and a deny
//! rule for the injected command does match it.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::pattern::Mode;
use super::shell::{split, split_loose, variants};
use super::*;
use ccr_protocol::fuzz::{config, json_value, nasty_string};

/// Lines where `{X}` runs as a command of its own next to the allowed `{S}`.
const INJECT: &[&str] = &[
    "{S}; {X}",
    "{S};{X}",
    "{S} && {X}",
    "{S} || {X}",
    "{S} | {X}",
    "{S} |& {X}",
    "{S} & {X}",
    "{S}\n{X}",
    "{S}\r\n{X}",
    "{X}; {S}",
    "{X} && {S}",
    "{X}\n{S}",
    "{S} $({X})",
    "{S} \"$({X})\"",
    "{S} `{X}`",
    "{S} \"`{X}`\"",
    "{S} <({X})",
    "{S} >({X})",
    "{S} ${a:-$({X})}",
    "{S} \"${a:-`{X}`}\"",
    "{S} \"${a:-\"$({X})\"}\"",
    "{S}; ({X})",
    "{S}; { {X}; }",
    "{S} $'\\''; {X}",
    "{S} \"\\\"\"; {X}",
    "{S} \\\n; {X}",
    // A comment ends at the newline: quotes inside it open nothing.
    "{S} # it's\n{X} #'",
    "{S} #\"\n{X} #\"",
    "{S};# '\n{X} #'",
    "{S} #`\n{X}\n#`",
    "({S})#'\n{X} #'",
    // A here-document body is data; the line after its delimiter runs.
    "{S} <<EOF\n{S} '\nEOF\n{X} #'",
    "{S} <<'EOF'\n{S} \"\nEOF\n{X} #\"",
    "{S} <<-EOF\n\t{S} '\n\tEOF\n{X} #'",
    "{S} << EOF\n{S} `\nEOF\n{X} #`",
];

/// Lines where `{S}` itself runs differently: output to a file, or a changed environment.
const ALTER: &[&str] = &[
    "{S} > /etc/passwd",
    "{S} >> ~/.bashrc",
    "{S} &> out",
    "{S} >| out",
    "{S} 1>out",
    "{S} >&out",
    "{S} <>out",
    "{S} >/dev/null/../x",
    "{S} > \"/dev/null\"x",
    "{S} > /dev/null$x",
    "PATH=/tmp/evil {S}",
    "LD_PRELOAD=/x.so {S}",
    "NODE_OPTIONS=--require=/x {S}",
    "env A=1 {S}",
    "sudo {S}",
    "exec {S}",
];

/// Lines where the extra text is only an argument (quoted, escaped, mid-word `#`).
const HARMLESS: &[&str] = &[
    "{S} '{X}'",
    "{S} '; {X}'",
    "{S} \"; {X}\"",
    "{S} \\; {X}",
    "{S} a#'\n{X} #'",
    "{S} $'\\n{X}'",
    "{S} # ; {X}",
    "{S} # $({X})",
    "{S} # `{X}`",
];

/// A command the allow rule `Bash(npm test:*)` covers: `npm test` and plain arguments.
fn covered() -> impl Strategy<Value = String> {
    let arg = prop_oneof![
        "[a-zA-Z0-9_./=:,+@%-]{1,10}",
        "'[^']{0,12}'",
        "\"[^\"\\\\$`]{0,12}\"",
        Just("2>&1".to_owned()),
        Just(">/dev/null".to_owned()),
        Just("2> /dev/null".to_owned()),
        Just("< in.txt".to_owned()),
        Just(">&2".to_owned()),
    ];
    (
        prop::collection::vec(arg, 0..5),
        prop::sample::select(vec![" ", "  ", "\t"]),
    )
        .prop_map(|(args, sep)| {
            let mut line = "npm test".to_owned();
            for a in args {
                line.push_str(sep);
                line.push_str(&a);
            }
            line
        })
}

/// A command that must never run under an allow rule for `npm test`, and its program.
fn injected() -> impl Strategy<Value = (String, &'static str)> {
    (
        prop::sample::select(vec!["rm", "curl", "sh", "python3"]),
        "[a-z /.-]{0,10}",
    )
        .prop_map(|(prog, args)| (format!("{prog} {args}").trim_end().to_owned(), prog))
}

fn fill(template: &str, s: &str, x: &str) -> String {
    template.replace("{S}", s).replace("{X}", x)
}

fn bash_matches(pattern: &str, command: &str, mode: Mode) -> bool {
    let p = ToolPattern::parse(pattern).expect("valid pattern");
    p.matches("Bash", &json!({ "command": command }), mode)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_shell_never_panics(cmd in nasty_string()) {
        let _ = split(&cmd);
        let _ = split_loose(&cmd);
        let _ = variants(&cmd);
    }

    #[test]
    fn fuzz_shell_deep_nesting_is_refused(
        open in prop::sample::select(vec!["$(", "$(`", "\"$(", "${", "\"${", "${\"", "(", "<(", "\"`"]),
        depth in 1usize..20_000,
    ) {
        let cmd = format!("echo {}", open.repeat(depth));
        // Unclosed at any depth: never splittable, and never a stack overflow.
        prop_assert_eq!(split(&cmd), None);
    }

    #[test]
    fn fuzz_allow_covers_plain_arguments(s in covered()) {
        prop_assert!(bash_matches("Bash(npm test:*)", &s, Mode::Allow), "{:?}", s);
    }

    #[test]
    fn fuzz_allow_never_covers_an_injected_command(
        s in covered(),
        (x, prog) in injected(),
        template in prop::sample::select(INJECT),
    ) {
        let line = fill(template, &s, &x);
        prop_assert!(!bash_matches("Bash(npm test:*)", &line, Mode::Allow), "allowed {:?}", line);
        let deny = format!("Bash({prog}:*)");
        prop_assert!(bash_matches(&deny, &line, Mode::Restrict), "{} missed {:?}", deny, line);
    }

    #[test]
    fn fuzz_allow_never_covers_an_altered_command(
        s in covered(),
        template in prop::sample::select(ALTER),
    ) {
        let line = fill(template, &s, "");
        prop_assert!(!bash_matches("Bash(npm test:*)", &line, Mode::Allow), "allowed {:?}", line);
        prop_assert!(!bash_matches("Bash(npm test)", &line, Mode::Allow), "allowed {:?}", line);
    }

    #[test]
    fn fuzz_quoted_or_commented_text_is_only_an_argument(
        s in covered(),
        (x, _prog) in injected(),
        template in prop::sample::select(HARMLESS),
    ) {
        let line = fill(template, &s, &x);
        prop_assert!(bash_matches("Bash(npm test:*)", &line, Mode::Allow), "refused {:?}", line);
    }

    #[test]
    fn fuzz_sure_match_implies_possible_match(
        pattern in prop::sample::select(vec![
            "Bash(npm test:*)", "Bash(npm test)", "Bash(echo:*)", "Bash(git status)",
        ]),
        cmd in nasty_string(),
        head in prop::sample::select(vec!["npm test", "echo", "git status", ""]),
    ) {
        let line = format!("{head}{cmd}");
        if bash_matches(pattern, &line, Mode::Allow) {
            prop_assert!(bash_matches(pattern, &line, Mode::Restrict), "{} {:?}", pattern, line);
        }
    }

    #[test]
    fn fuzz_patterns_and_matching_never_panic(
        text in nasty_string(),
        tool in prop::sample::select(vec!["Bash", "Read", "Edit", "WebFetch", "mcp__s", "Grep"]),
        input in json_value(4),
    ) {
        let written = format!("{tool}({text})");
        for p in [text.as_str(), written.as_str()] {
            if let Ok(p) = ToolPattern::parse(p) {
                for mode in [Mode::Allow, Mode::Restrict] {
                    let _ = p.matches(tool, &input, mode);
                    let _ = p.matches(&text, &input, mode);
                }
            }
        }
    }

    #[test]
    fn fuzz_evaluate_never_panics_on_any_request(
        request in json_value(5),
        input in json_value(3),
        tool in prop::sample::select(vec!["Bash", "Read", "WebFetch", "mcp__s__t", ""]),
    ) {
        let rule = |id: &str, action, tool: &str| RuleConfig {
            sessions: Some(vec!["team".into()]),
            ..RuleConfig::new(id, action, tool)
        };
        let policy = Policy::compile(&PolicyConfig {
            rules: vec![
                rule("d", RuleAction::Deny, "Bash(rm:*)"),
                rule("a", RuleAction::Ask, "Read(/etc/**)"),
                rule("w", RuleAction::Allow, "WebFetch(domain:example.com)"),
                rule("b", RuleAction::Allow, "Bash(npm test:*)"),
            ],
            ..PolicyConfig::default()
        }).expect("valid rules");
        let labels = vec!["team".to_owned()];
        let ev = policy.evaluate(&PromptContext {
            session_id: "s1",
            labels: &labels,
            tool_name: tool,
            input: &input,
            request: &request,
        });
        prop_assert!(!ev.reason.is_empty());
    }

    #[test]
    fn fuzz_path_allow_never_escapes_its_directory(
        segs in prop::collection::vec(
            prop::sample::select(vec!["a", "..", ".", "", "b.rs", "proj", "etc", "passwd"]), 0..8),
    ) {
        let path = format!("/home/u/proj/{}", segs.join("/"));
        let p = ToolPattern::parse("Edit(/home/u/proj/**)").expect("valid");
        if p.matches("Edit", &json!({ "file_path": path }), Mode::Allow) {
            // The lexically normalised path stays under the directory.
            let mut stack: Vec<&str> = Vec::new();
            for s in path.split('/').filter(|s| !s.is_empty() && *s != ".") {
                if s == ".." { stack.pop(); } else { stack.push(s); }
            }
            prop_assert!(stack.len() > 3 && stack[..3] == ["home", "u", "proj"], "{}", path);
        }
    }

    #[test]
    fn fuzz_domain_allow_only_covers_the_domain(
        pre in prop::sample::select(vec!["", "example.com@", "user:pw@", "a.", "evil"]),
        host in prop::sample::select(vec!["example.com", "evil.com", "example.com.evil.com",
            "evilexample.com", "sub.example.com", "EXAMPLE.com.", "example.com%2eevil.com"]),
        post in prop::sample::select(vec!["", "/example.com", "?.example.com", "#.example.com",
            "\\@evil.com", ":443", "@evil.com"]),
    ) {
        let url = format!("https://{pre}{host}{post}");
        let p = ToolPattern::parse("WebFetch(domain:example.com)").expect("valid");
        if p.matches("WebFetch", &json!({ "url": url }), Mode::Allow) {
            let parsed = url::Url::parse(&url).expect("a matched URL parses");
            let h = parsed.host_str().unwrap_or("").trim_end_matches('.');
            prop_assert!(h == "example.com" || h.ends_with(".example.com"), "{}", url);
        }
    }

    #[test]
    fn fuzz_held_prompts_are_never_allowed(
        flag in prop::sample::select(vec![
            json!({"requires_user_interaction": true}),
            json!({"blocked_path": "/etc/x"}),
            json!({"matched_ask_rule": {"source": "localSettings", "tool_name": "Bash"}}),
            json!({"matched_ask_rule": {"source": "userSettings", "tool_name": "Bash",
                   "rule_content": "npm test:*"}}),
            json!({"matched_ask_rule": "garbled"}),
            json!({"decision_reason_type": "safetyCheck", "classifier_approvable": false}),
        ]),
        extra in json_value(2),
        s in covered(),
    ) {
        let policy = Policy::compile(&PolicyConfig {
            rules: vec![RuleConfig::new("tests", RuleAction::Allow, "Bash(npm test:*)")],
            ..PolicyConfig::default()
        }).expect("valid rules");
        let input = json!({ "command": s });
        let mut request = json!({"subtype": "can_use_tool", "tool_name": "Bash", "input": input});
        if let (Some(req), Value::Object(extra)) = (request.as_object_mut(), extra) {
            req.extend(extra);
        }
        if let (Some(req), Value::Object(flag)) = (request.as_object_mut(), flag) {
            req.extend(flag);
        }
        let ev = policy.evaluate(&PromptContext {
            session_id: "s1",
            labels: &[],
            tool_name: "Bash",
            input: &input,
            request: &request,
        });
        prop_assert_eq!(ev.outcome, Verdict::Ask, "{}", request);
    }
}
