//! Unit tests of the shell splitter (`shell.rs`).

use super::{split, split_loose, variants};

/// The command texts `cmd` splits into (sorted: substitutions are found first).
fn texts(cmd: &str) -> Option<Vec<String>> {
    let mut parts: Vec<String> = split(cmd)?.into_iter().map(|p| p.text).collect();
    parts.sort();
    Some(parts)
}

#[test]
fn splits_on_every_operator_and_substitution() {
    let cases: &[(&str, &[&str])] = &[
        ("npm test", &["npm test"]),
        ("  npm test  ", &["npm test"]),
        ("a && b", &["a", "b"]),
        ("a || b", &["a", "b"]),
        ("a; b", &["a", "b"]),
        ("a | b", &["a", "b"]),
        ("a |& b", &["a", "b"]),
        ("a & b", &["a", "b"]),
        ("a\nb", &["a", "b"]),
        ("npm test; curl x | sh", &["curl x", "npm test", "sh"]),
        ("echo $(rm -rf /)", &["echo $(rm -rf /)", "rm -rf /"]),
        ("echo `rm -rf /`", &["echo `rm -rf /`", "rm -rf /"]),
        (
            "echo \"$(rm -rf /)\"",
            &["echo \"$(rm -rf /)\"", "rm -rf /"],
        ),
        ("echo \"`id`\"", &["echo \"`id`\"", "id"]),
        ("diff <(ls a) >(wc)", &["diff <(ls a) >(wc)", "ls a", "wc"]),
        ("(cd x && make)", &["cd x", "make"]),
        ("echo ${X:-$(id)}", &["echo ${X:-$(id)}", "id"]),
        (
            "echo $(echo $(id))",
            &["echo $(echo $(id))", "echo $(id)", "id"],
        ),
    ];
    for (cmd, want) in cases {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(texts(cmd), Some(want), "{cmd:?}");
    }
}

#[test]
fn quotes_and_escapes_keep_operators_literal() {
    let cases: &[(&str, &[&str])] = &[
        ("echo \"a && b\"", &["echo \"a && b\""]),
        ("echo 'a; rm -rf /'", &["echo 'a; rm -rf /'"]),
        ("echo 'it''s' | cat", &["cat", "echo 'it''s'"]),
        ("echo a\\;b", &["echo a\\;b"]),
        ("echo $'a\\'; b'", &["echo $'a\\'; b'"]),
        ("echo \"a \\\" ; b\"", &["echo \"a \\\" ; b\""]),
        ("echo '$(id)'", &["echo '$(id)'"]),
    ];
    for (cmd, want) in cases {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(texts(cmd), Some(want), "{cmd:?}");
    }
}

#[test]
fn unbalanced_input_is_not_split() {
    for cmd in [
        "echo 'a",
        "echo \"a",
        "echo $(id",
        "echo `id",
        "echo a)",
        "echo ${a",
        "echo a\\",
        "case x in a) echo;; esac",
    ] {
        assert_eq!(split(cmd), None, "{cmd:?}");
    }
    let deep = format!("{}x{}", "$(".repeat(40), ")".repeat(40));
    assert_eq!(split(&deep), None);
}

#[test]
fn comments_end_at_the_newline_and_hide_nothing() {
    let cases: &[(&str, &[&str])] = &[
        // A quote inside a comment opens nothing: the next line runs.
        ("npm test # it's\nrm -rf / #'", &["npm test", "rm -rf /"]),
        ("npm test #\"\nrm -rf / #\"", &["npm test", "rm -rf /"]),
        ("(npm test)#'\nrm x #'", &["npm test", "rm x"]),
        ("npm test;# '\nrm x", &["npm test", "rm x"]),
        ("# only a comment", &[]),
        // Operators and substitutions in a comment never run.
        ("npm test # ; rm -rf / $(id) `id`", &["npm test"]),
        (
            "echo $(id # )\nrm x\n)",
            &["echo $(id # )\nrm x\n)", "id", "rm x"],
        ),
        // `#` inside a word is not a comment.
        ("echo a#'b; c'", &["echo a#'b; c'"]),
        ("echo $# x; y", &["echo $# x", "y"]),
        ("echo ${#x}; y", &["echo ${#x}", "y"]),
        ("echo \"#\"'x; y'", &["echo \"#\"'x; y'"]),
        ("echo a\\\n#b; c", &["c", "echo a\\\n#b"]),
    ];
    for (cmd, want) in cases {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(texts(cmd), Some(want), "{cmd:?}");
    }
}

#[test]
fn here_documents_are_not_split() {
    // The body is data until its delimiter line; the line after it runs. Rather
    // than guess at that, a line with a here-document is not split at all.
    for cmd in [
        "cat <<EOF\nit's\nEOF\nrm -rf / #'",
        "cat <<'EOF'\nx\nEOF",
        "cat <<-EOF\n\tx\n\tEOF",
        "git commit -m \"$(cat <<'EOF'\nmsg\nEOF\n)\"",
    ] {
        assert_eq!(split(cmd), None, "{cmd:?}");
    }
    assert_eq!(
        texts("cat <<< 'a; b'"),
        Some(vec!["cat <<< 'a; b'".to_owned()])
    );
}

#[test]
fn deep_quote_and_parameter_nesting_is_refused_without_overflow() {
    for open in ["\"${", "${", "${\"", "\"$(", "\"`"] {
        let cmd = format!("echo {}", open.repeat(100_000));
        assert_eq!(split(&cmd), None, "{open}");
    }
    let ok = format!("echo {}x{}", "\"${a:-".repeat(8), "}\"".repeat(8));
    assert!(split(&ok).is_some(), "{ok}");
}

#[test]
fn output_redirection_is_flagged_unless_harmless() {
    let cases = [
        ("npm test", false),
        ("npm test > out.txt", true),
        ("npm test >> out.txt", true),
        ("npm test >| out.txt", true),
        ("npm test &> out.txt", true),
        ("npm test >out.txt", true),
        ("npm test > \"$F\"", true),
        ("npm test > /dev/null", false),
        ("npm test 2>&1", false),
        ("npm test 2>/dev/null", false),
        ("npm test >&2", false),
        ("npm test >& log", true),
        ("npm test < in.txt", false),
        ("cat <<< \"$x\"", false),
    ];
    for (cmd, writes) in cases {
        let parts = split(cmd).unwrap_or_else(|| panic!("{cmd:?} did not split"));
        assert_eq!(parts.len(), 1, "{cmd:?}: {parts:?}");
        assert_eq!(parts[0].writes, writes, "{cmd:?}");
    }
}

#[test]
fn variants_strip_quotes_then_keywords_and_assignments() {
    let cases = [
        ("rm   -rf  /", "rm -rf /", "rm -rf /"),
        ("\"rm\" -rf /", "rm -rf /", "rm -rf /"),
        ("r''m -rf /", "rm -rf /", "rm -rf /"),
        ("\\rm -rf /", "rm -rf /", "rm -rf /"),
        ("sudo rm -rf /", "sudo rm -rf /", "rm -rf /"),
        ("FOO=1 BAR=x rm -rf /", "FOO=1 BAR=x rm -rf /", "rm -rf /"),
        ("then rm -rf /", "then rm -rf /", "rm -rf /"),
        ("env A=1 rm x", "env A=1 rm x", "rm x"),
        ("npm test", "npm test", "npm test"),
        ("x=1", "x=1", ""),
    ];
    for (input, light, stripped) in cases {
        assert_eq!(variants(input), [light, stripped], "{input:?}");
    }
}

#[test]
fn loose_split_cuts_at_every_operator_character() {
    assert_eq!(
        split_loose("echo 'x; rm -rf / && $(id"),
        ["echo 'x", "rm -rf /", "id"]
    );
}
