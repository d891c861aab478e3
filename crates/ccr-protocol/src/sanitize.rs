//! Session-supplied text made safe for a terminal, and for the console (pure).
//!
//! A session controls tool names, inputs, titles, `decision_reason`, errors and its
//! whole message stream. Printed raw, an escape sequence in any of them could move
//! the cursor over the line an operator is about to approve, set the window title,
//! write the clipboard (OSC 52) or plant a hyperlink (OSC 8). Everything `ctl`
//! prints for people goes through [`clean`] (or [`clean_value`]); `--json` output
//! goes through [`escape_json`], which keeps the value and only re-spells the
//! characters a terminal might act on.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::Value;

/// True for characters that change how text displays rather than what it says:
/// bidirectional overrides and isolates ("Trojan Source").
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Whether `c` may reach the terminal as it is: not a control character (newline and
/// tab excepted) and not a bidi control.
fn is_plain(c: char) -> bool {
    (!c.is_control() || c == '\n' || c == '\t') && !is_bidi_control(c)
}

/// `s` without terminal escape sequences and control characters.
///
/// Sequences (CSI, OSC, DCS, SOS/PM/APC and two-character escapes) are removed with
/// their parameters and payload by anstream's stripper; the 8-bit C1 forms
/// (U+0080..U+009F) are first spelled as their 7-bit `ESC` equivalents so that
/// they go the same way. What is left of C0/C1 controls, DEL and bidi controls is
/// dropped; `\n` and `\t` stay (callers that need one line use `one_line`).
pub fn clean(s: &str) -> Cow<'_, str> {
    if s.chars().all(is_plain) {
        return Cow::Borrowed(s);
    }
    let mut seven_bit = String::with_capacity(s.len());
    for c in s.chars() {
        match c as u32 {
            n @ 0x80..=0x9f => {
                seven_bit.push('\u{1b}');
                seven_bit.push(char::from((n - 0x40) as u8));
            }
            _ => seven_bit.push(c),
        }
    }
    let stripped = anstream::adapter::strip_str(&seven_bit).to_string();
    Cow::Owned(stripped.chars().filter(|c| is_plain(*c)).collect())
}

/// A copy of `v` with every string (object keys included) passed through [`clean`].
pub fn clean_value(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(clean(s).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(clean_value).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (clean(k).into_owned(), clean_value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// JSON text with the characters a terminal might act on written as `\uXXXX` escapes.
///
/// JSON writers already escape C0 controls; DEL, C1 controls and bidi controls may
/// still appear raw inside strings. Outside strings they cannot occur in valid JSON,
/// so escaping them keeps the document and its values exactly the same.
pub fn escape_json(text: &str) -> Cow<'_, str> {
    if text.chars().all(is_plain) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_plain(c) {
            out.push(c);
        } else {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
