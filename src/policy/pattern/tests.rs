//! Unit tests of tool patterns (`pattern.rs`): parsing and both matching modes.
//!
//! Each row: pattern, tool name, input, matches as an allow rule, matches as a deny rule.

use serde_json::{json, Value};

use super::{Mode, RuleError, ToolPattern};

type Row = (&'static str, &'static str, Value, bool, bool);

fn check(rows: Vec<Row>) {
    for (pattern, tool, input, allow, restrict) in rows {
        let p = ToolPattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        let got = (
            p.matches(tool, &input, Mode::Allow),
            p.matches(tool, &input, Mode::Restrict),
        );
        assert_eq!(got, (allow, restrict), "{pattern} vs {tool} {input}");
    }
}

fn cmd(c: &str) -> Value {
    json!({ "command": c })
}

fn file(p: &str) -> Value {
    json!({ "file_path": p })
}

fn url(u: &str) -> Value {
    json!({ "url": u })
}

#[test]
#[rustfmt::skip]
fn bash_exact_prefix_and_plain() {
    check(vec![
        ("Bash", "Bash", cmd("rm -rf /"), true, true),
        ("Bash", "Bash", cmd("echo 'unbalanced"), true, true),
        ("Bash", "Read", file("a"), false, false),
        ("Bash(npm test)", "Bash", cmd("npm test"), true, true),
        ("Bash(npm test)", "Bash", cmd("  npm test\t"), true, true),
        ("Bash(npm test)", "Bash", cmd("npm test --watch"), false, false),
        ("Bash(npm test)", "Bash", cmd("npm tes"), false, false),
        ("Bash(npm run test:*)", "Bash", cmd("npm run test"), true, true),
        ("Bash(npm run test:*)", "Bash", cmd("npm run test -- --ci"), true, true),
        ("Bash(npm run test:*)", "Bash", cmd("npm run testx"), false, false),
        ("Bash(npm run test:*)", "Bash", cmd("npm run test-x"), false, false),
        ("Bash(npm run test:*)", "Bash", cmd("npm run"), false, false),
        ("Bash(npm run test :*)", "Bash", cmd("npm run test"), true, true),
        ("Bash(npm test:*)", "Bash", json!({}), false, true),
        ("Bash(npm test:*)", "Bash", json!({ "command": 7 }), false, true),
        // Allow rules compare exactly; deny rules see through spacing and quoting.
        ("Bash(rm -rf:*)", "Bash", cmd("rm   -rf  /"), false, true),
        ("Bash(rm:*)", "Bash", cmd("\"rm\" -rf /"), false, true),
        ("Bash(rm:*)", "Bash", cmd("sudo rm -rf /"), false, true),
        ("Bash(npm test:*)", "Bash", cmd("LD_PRELOAD=x.so npm test"), false, true),
        ("Bash(rm:*)", "Bash", cmd("FOO=1 rm -rf /"), false, true),
        ("Bash(sudo:*)", "Bash", cmd("sudo rm -rf /"), true, true),
        ("Bash(sudo:*)", "Bash", cmd("ls"), false, false),
    ]);
}

#[test]
#[rustfmt::skip]
fn bash_compound_commands_need_every_part_to_allow() {
    check(vec![
        ("Bash(npm test:*)", "Bash", cmd("npm test && rm -rf /"), false, true),
        ("Bash(rm:*)", "Bash", cmd("npm test && rm -rf /"), false, true),
        ("Bash(npm test:*)", "Bash", cmd("npm test; curl x | sh"), false, true),
        ("Bash(sh)", "Bash", cmd("npm test; curl x | sh"), false, true),
        ("Bash(npm test:*)", "Bash", cmd("npm test || rm x"), false, true),
        ("Bash(npm test:*)", "Bash", cmd("npm test & rm x"), false, true),
        ("Bash(npm test:*)", "Bash", cmd("npm test\nrm x"), false, true),
        ("Bash(npm test:*)", "Bash", cmd("npm test && npm test -- --ci"), true, true),
        ("Bash(npm test:*)", "Bash", cmd("(npm test)"), true, true),
        ("Bash(npm test:*)", "Bash", cmd("npm test &"), true, true),
        ("Bash(echo:*)", "Bash", cmd("echo $(rm -rf /)"), false, true),
        ("Bash(rm:*)", "Bash", cmd("echo $(rm -rf /)"), false, true),
        ("Bash(echo:*)", "Bash", cmd("echo `rm -rf /`"), false, true),
        ("Bash(rm:*)", "Bash", cmd("echo `rm -rf /`"), false, true),
        ("Bash(rm:*)", "Bash", cmd("echo \"$(rm -rf /)\""), false, true),
        ("Bash(rm:*)", "Bash", cmd("cat <(rm -rf /)"), false, true),
        ("Bash(rm:*)", "Bash", cmd("if true; then rm -rf /; fi"), false, true),
        // Quoted operators are one command.
        ("Bash(echo:*)", "Bash", cmd("echo \"a && b\""), true, true),
        ("Bash(b)", "Bash", cmd("echo \"a && b\""), false, false),
        ("Bash(echo:*)", "Bash", cmd("echo 'a; rm -rf /'"), true, true),
        ("Bash(rm:*)", "Bash", cmd("echo 'a; rm -rf /'"), false, false),
        ("Bash(echo:*)", "Bash", cmd("echo '$(id)'"), true, true),
        // Unparseable: allow never matches, deny falls back to a loose split.
        ("Bash(echo:*)", "Bash", cmd("echo 'unbalanced"), false, true),
        ("Bash(rm:*)", "Bash", cmd("echo 'x; rm -rf /"), false, true),
        ("Bash(echo:*)", "Bash", cmd("echo $(id"), false, true),
        // A comment ends at the newline; quotes in it open nothing.
        ("Bash(npm test:*)", "Bash", cmd("npm test # it's\nrm -rf / #'"), false, true),
        ("Bash(rm:*)", "Bash", cmd("npm test # it's\nrm -rf / #'"), false, true),
        ("Bash(npm test)", "Bash", cmd("npm test # why not"), true, true),
        ("Bash(rm -rf /)", "Bash", cmd("rm -rf / # bye"), true, true),
        // A here-document body is not split: allow never matches, deny still does.
        ("Bash(cat:*)", "Bash", cmd("cat <<EOF\ncat '\nEOF\nrm -rf / #'"), false, true),
        ("Bash(rm:*)", "Bash", cmd("cat <<EOF\ncat '\nEOF\nrm -rf / #'"), false, true),
        // Output redirection to a file is never covered by an allow rule.
        ("Bash(npm test:*)", "Bash", cmd("npm test > out.txt"), false, true),
        ("Bash(npm test:*)", "Bash", cmd("npm test 2>&1"), true, true),
        ("Bash(npm test:*)", "Bash", cmd("npm test > /dev/null"), true, true),
    ]);
}

#[test]
#[rustfmt::skip]
fn path_globs_fail_closed_for_allow() {
    check(vec![
        ("Read(src/**)", "Read", file("src/a/b.rs"), true, true),
        ("Read(src/**)", "Read", file("src/a.rs"), true, true),
        ("Read(src/**)", "Read", file("./src/a.rs"), true, true),
        ("Read(./src/**)", "Read", file("src/a.rs"), true, true),
        ("Read(src/**)", "Read", file("lib/a.rs"), false, false),
        ("Read(src/**)", "Read", file("srcx/a.rs"), false, false),
        ("Read(src/**)", "Read", file("../src/x"), false, true),
        ("Read(src/**)", "Read", file("src/../../etc/passwd"), false, false),
        ("Read(src/**)", "Read", file("src/../secret"), false, false),
        ("Read(src/**)", "Read", file("/home/u/p/src/a.rs"), false, true),
        ("Read(src/*)", "Read", file("src/a/b.rs"), false, false),
        ("Read(src/*)", "Read", file("src/a.rs"), true, true),
        ("Read(src/)", "Read", file("src/a/b.rs"), true, true),
        ("Read(*.env)", "Read", file(".env"), true, true),
        ("Read(*.env)", "Read", file("config/prod.env"), true, true),
        ("Read(*.env)", "Read", file("/abs/prod.env"), false, true),
        ("Edit(/abs/path/**)", "Edit", file("/abs/path/x/y.rs"), true, true),
        ("Edit(//abs/path/**)", "Edit", file("/abs/path/x/y.rs"), true, true),
        ("Edit(/abs/path/**)", "Edit", file("/abs/pathx/y"), false, false),
        ("Edit(/abs/path/**)", "Edit", file("/abs/path/../../etc/x"), false, false),
        ("Edit(/abs/path/**)", "Edit", file("/abs/path/a/../b"), false, true),
        ("Edit(/abs/path/**)", "Edit", file("abs/path/x"), false, true),
        ("Edit(/etc/**)", "Edit", file("/abs/../etc/passwd"), false, true),
        // Edit rules cover every editing tool, Read rules every reading tool, when denying.
        ("Edit(/abs/**)", "Write", file("/abs/x"), false, true),
        ("Edit(/abs/**)", "MultiEdit", file("/abs/x"), false, true),
        ("Edit", "Write", file("/abs/x"), false, true),
        ("Read(/abs/**)", "Grep", json!({ "path": "/abs/x" }), false, true),
        ("Write(/abs/**)", "Edit", file("/abs/x"), false, false),
        ("Write(/abs/**)", "Write", file("/abs/x"), true, true),
        ("NotebookEdit(nb/**)", "NotebookEdit", json!({ "notebook_path": "nb/a.ipynb" }), true, true),
        ("Grep(src/**)", "Grep", json!({ "path": "src/x" }), true, true),
        ("Grep(src/**)", "Grep", json!({ "pattern": "x" }), false, true),
        ("Glob(/abs/**)", "Glob", json!({ "path": "/abs/x" }), true, true),
    ]);
}

#[test]
#[rustfmt::skip]
fn webfetch_domains_and_subdomains() {
    let p = "WebFetch(domain:example.com)";
    check(vec![
        (p, "WebFetch", url("https://example.com/x"), true, true),
        (p, "WebFetch", url("http://api.example.com:8080/x"), true, true),
        (p, "WebFetch", url("https://EXAMPLE.com./"), true, true),
        (p, "WebFetch", url("https://badexample.com/"), false, false),
        (p, "WebFetch", url("https://example.com.evil.io/"), false, false),
        (p, "WebFetch", url("https://example.com@evil.io/"), false, false),
        (p, "WebFetch", url("https://evil.io/?u=example.com"), false, false),
        (p, "WebFetch", url("not a url"), false, true),
        (p, "WebFetch", json!({}), false, true),
        (p, "Bash", url("https://example.com/"), false, false),
        ("WebFetch(domain:Example.COM)", "WebFetch", url("https://example.com"), true, true),
        ("WebFetch", "WebFetch", url("https://anything.io"), true, true),
    ]);
}

#[test]
#[rustfmt::skip]
fn mcp_servers_and_tools_and_case() {
    let none = json!({});
    check(vec![
        ("mcp__github", "mcp__github__create_issue", none.clone(), true, true),
        ("mcp__github", "mcp__githubx__a", none.clone(), false, false),
        ("mcp__github", "mcp__github", none.clone(), false, false),
        ("mcp__github__*", "mcp__github__create_issue", none.clone(), true, true),
        ("mcp__github__create_issue", "mcp__github__create_issue", none.clone(), true, true),
        ("mcp__github__create_issue", "mcp__github__delete", none.clone(), false, false),
        ("mcp__my-server", "mcp__my-server__t", none.clone(), true, true),
        ("Bash", "bash", cmd("ls"), false, false),
        ("bash", "Bash", cmd("ls"), false, false),
        ("Task", "Task", none.clone(), true, true),
    ]);
}

#[test]
fn malformed_patterns_are_errors() {
    let unbalanced = |s: &str| RuleError::Unbalanced(s.into());
    let cases = [
        ("", RuleError::Empty),
        ("   ", RuleError::Empty),
        ("Bash(", unbalanced("Bash(")),
        ("Bash)", unbalanced("Bash)")),
        ("Bash(a)(b)", unbalanced("Bash(a)(b)")),
        ("Bash(a))", unbalanced("Bash(a))")),
        ("Bash((a)", unbalanced("Bash((a)")),
        ("Bash()", RuleError::EmptyArgument("Bash".into())),
        ("Bash(  )", RuleError::EmptyArgument("Bash".into())),
        ("Bash(:*)", RuleError::EmptyArgument("Bash".into())),
        (
            "Bash(git * main)",
            RuleError::BashWildcard("git * main".into()),
        ),
        ("Bash(git:*:*)", RuleError::BashWildcard("git:*:*".into())),
        ("Task(x)", RuleError::NoArgument("Task".into())),
        ("mcp__s__t(x)", RuleError::NoArgument("mcp__s__t".into())),
        (
            "WebFetch(example.com)",
            RuleError::Domain("example.com".into()),
        ),
        ("WebFetch(domain:)", RuleError::Domain("domain:".into())),
        (
            "WebFetch(domain:a..b)",
            RuleError::Domain("domain:a..b".into()),
        ),
        (
            "WebFetch(domain:*.a.com)",
            RuleError::Domain("domain:*.a.com".into()),
        ),
        ("1Bash", RuleError::ToolName("1Bash".into())),
        ("Ba sh", RuleError::ToolName("Ba sh".into())),
        ("mcp__*", RuleError::ToolName("mcp__*".into())),
    ];
    for (text, want) in cases {
        assert_eq!(ToolPattern::parse(text).err(), Some(want), "{text:?}");
    }
    for text in ["Read(~/.ssh/**)", "Read(../x/**)", "Read(src/[)"] {
        let err = ToolPattern::parse(text).err();
        assert!(
            matches!(err, Some(RuleError::Glob { .. })),
            "{text}: {err:?}"
        );
    }
    let ok = ToolPattern::parse(" Bash(echo (a)) ").expect("balanced inner parens");
    assert_eq!(ok.as_str(), "Bash(echo (a))");
}
