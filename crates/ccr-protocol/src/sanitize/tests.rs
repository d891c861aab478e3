//! Unit tests of terminal sanitizing (`sanitize.rs`).

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::fuzz::{config, json_value, nasty_string};

#[test]
fn escape_sequences_go_with_their_payload() {
    let cases = [
        // OSC 52: write the clipboard, BEL- or ST-terminated.
        ("a\u{1b}]52;c;cm0gLXJmIC8=\u{7}b", "ab"),
        ("a\u{1b}]52;c;cm0gLXJmIC8=\u{1b}\\b", "ab"),
        // OSC 8 hyperlink: the link goes, the visible text stays.
        (
            "\u{1b}]8;;https://evil.example\u{1b}\\click\u{1b}]8;;\u{1b}\\",
            "click",
        ),
        // CSI cursor moves and erases that could redraw an approved line.
        ("deny\u{1b}[2K\u{1b}[1Gallow", "denyallow"),
        ("x\u{1b}[3A\u{1b}[10;20Hy", "xy"),
        ("\u{1b}[31mred\u{1b}[0m", "red"),
        // Window title (OSC 0), DCS, two-character escapes.
        ("\u{1b}]0;pwned\u{7}t", "t"),
        ("\u{1b}Pq#0;2;0;0;0\u{1b}\\x", "x"),
        ("a\u{1b}cb\u{1b}7c", "abc"),
        // BEL, backspace, carriage return, DEL and other C0.
        ("ding\u{7}\u{8}\u{8}\rok\u{7f}\u{0}", "dingok"),
        // C1: 8-bit CSI and OSC go like their 7-bit forms.
        ("a\u{9b}2Jb", "ab"),
        ("a\u{9b}31mred", "ared"),
        ("a\u{9d}52;c;eA==\u{9c}b", "ab"),
        ("a\u{85}b\u{9f}", "ab"),
        // Bidi overrides that reverse what is shown.
        ("echo \u{202e}fr- mr\u{202c}", "echo fr- mr"),
        ("x\u{2066}y\u{2069}", "xy"),
    ];
    for (raw, want) in cases {
        assert_eq!(clean(raw), want, "{raw:?}");
    }
}

#[test]
fn plain_text_newlines_and_tabs_are_kept_unchanged() {
    for s in ["npm test -- --ci", "a\nb\tc", "héllo 𝄞 日本", ""] {
        assert!(matches!(clean(s), Cow::Borrowed(_)), "{s:?}");
        assert_eq!(clean(s), s);
    }
}

#[test]
fn values_are_cleaned_deeply_keys_included() {
    let v = json!({"a\u{1b}[2J": ["x\u{7}", {"k": "\u{9b}1;1Hy"}], "n": 1});
    assert_eq!(clean_value(&v), json!({"a": ["x", {"k": "y"}], "n": 1}));
}

#[test]
fn json_output_keeps_its_value_and_escapes_what_a_terminal_would_act_on() {
    let v = json!({"r": "a\u{9b}2J\u{7f}\u{202e}b", "e": "\u{1b}[0m"});
    let text = v.to_string();
    let escaped = escape_json(&text);
    assert!(
        escaped
            .chars()
            .all(|c| !c.is_control() && !is_bidi_control(c)),
        "{escaped}"
    );
    assert!(
        escaped.contains("\\u009b") && escaped.contains("\\u202e"),
        "{escaped}"
    );
    assert_eq!(serde_json::from_str::<Value>(&escaped).unwrap(), v);
    assert!(matches!(escape_json("{\"a\":\"b\"}"), Cow::Borrowed(_)));
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_cleaned_text_has_no_escape_or_control(s in nasty_string()) {
        let out = clean(&s);
        prop_assert!(out.chars().all(is_plain), "{:?} -> {:?}", s, out);
        prop_assert_eq!(clean(&out), out.clone(), "idempotent");
    }

    #[test]
    fn fuzz_escaped_json_parses_to_the_same_value(v in json_value(4)) {
        let text = v.to_string();
        let escaped = escape_json(&text);
        prop_assert!(escaped.chars().all(is_plain));
        prop_assert_eq!(serde_json::from_str::<Value>(&escaped).ok(), Some(v));
    }
}
