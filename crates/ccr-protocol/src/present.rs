//! How a prompt is presented to a person, decided without HTML or a terminal (pure): the
//! one-line summary, how the full input is shown (command, diff, file content, JSON), the
//! flags, ages. The web console and `ctl show` both render from these definitions.
//!
//! Everything a remote session wrote passes through [`clean`] first: terminal escape
//! sequences and control characters go (the console's templates then escape what is left
//! for HTML). Nothing here is trusted to be HTML-safe; it only has to be readable.

use std::borrow::Cow;

use serde_json::Value;
use similar::{ChangeTag, TextDiff};

/// Longest one-line summary, in characters.
const SUMMARY_CHARS: usize = 160;
/// Largest text diffed line by line (bytes of old plus new); beyond, both are shown whole.
const DIFF_BYTES: usize = 256 * 1024;

/// Session-written text without terminal escape sequences or control characters
/// (newlines and tabs stay).
pub fn clean(s: &str) -> Cow<'_, str> {
    crate::sanitize::clean(s)
}

/// `s` cleaned and on one line (`⏎` for line breaks), cut to `max` characters with `…`.
pub fn one_line(s: &str, max: usize) -> String {
    let cleaned = clean(s);
    let mut out = String::with_capacity(cleaned.len().min(max * 4));
    for (n, c) in cleaned.trim().chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push('⏎'),
            '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn str_field<'a>(input: &'a Value, key: &str) -> Option<&'a str> {
    input.get(key).and_then(Value::as_str)
}

/// The one line that says what a tool call does: the command, the file, the URL, the
/// pattern; compact JSON for any other tool.
pub fn summary(tool: &str, input: &Value) -> String {
    let key = match tool {
        "Bash" | "BashOutput" => "command",
        "Edit" | "MultiEdit" | "Write" | "Read" | "NotebookEdit" => "file_path",
        "WebFetch" => "url",
        "WebSearch" => "query",
        "Grep" | "Glob" => "pattern",
        "Task" => "description",
        _ => "",
    };
    match str_field(input, key) {
        Some(text) => one_line(text, SUMMARY_CHARS),
        None => one_line(&input.to_string(), SUMMARY_CHARS),
    }
}

/// One line of a rendered diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffLine {
    /// Unchanged.
    Context(String),
    /// Removed.
    Deleted(String),
    /// Added.
    Inserted(String),
}

/// One replacement of an Edit or MultiEdit, as a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    /// Lines, in order.
    pub lines: Vec<DiffLine>,
    /// `replace_all` was set.
    pub replace_all: bool,
}

/// How a prompt's full input is presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputView {
    /// A shell command (Bash), shown as code; `description` when the tool gave one.
    Command {
        /// The command.
        command: String,
        /// What the model says it does.
        description: Option<String>,
    },
    /// Edit / MultiEdit: the file and each replacement as a diff.
    Diff {
        /// The file.
        path: String,
        /// The replacements.
        hunks: Vec<Hunk>,
    },
    /// Write: the file and its whole new content.
    Content {
        /// The file.
        path: String,
        /// The content.
        text: String,
    },
    /// Anything else: pretty-printed JSON.
    Json(String),
}

/// The line diff of `old` to `new`, cleaned.
pub fn diff(old: &str, new: &str) -> Vec<DiffLine> {
    let (old, new) = (clean(old), clean(new));
    if old.len() + new.len() > DIFF_BYTES {
        let mut lines: Vec<DiffLine> = old.lines().map(|l| DiffLine::Deleted(l.into())).collect();
        lines.extend(new.lines().map(|l| DiffLine::Inserted(l.into())));
        return lines;
    }
    TextDiff::from_lines(old.as_ref(), new.as_ref())
        .iter_all_changes()
        .map(|change| {
            let line = change.value().trim_end_matches(['\n', '\r']).to_owned();
            match change.tag() {
                ChangeTag::Equal => DiffLine::Context(line),
                ChangeTag::Delete => DiffLine::Deleted(line),
                ChangeTag::Insert => DiffLine::Inserted(line),
            }
        })
        .collect()
}

fn hunk(edit: &Value) -> Option<Hunk> {
    let old = str_field(edit, "old_string")?;
    let new = str_field(edit, "new_string")?;
    Some(Hunk {
        lines: diff(old, new),
        replace_all: edit
            .get("replace_all")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// Pretty JSON of `v`, cleaned.
pub fn pretty_json(v: &Value) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    clean(&text).into_owned()
}

/// How to present `input` of `tool`; a shape the tool-specific views do not expect falls
/// back to JSON, so nothing is ever hidden.
pub fn input_view(tool: &str, input: &Value) -> InputView {
    let path = || str_field(input, "file_path").map(|p| clean(p).into_owned());
    let specific = match tool {
        "Bash" => str_field(input, "command").map(|c| InputView::Command {
            command: clean(c).into_owned(),
            description: str_field(input, "description").map(|d| one_line(d, 400)),
        }),
        "Edit" => path().zip(hunk(input)).map(|(path, h)| InputView::Diff {
            path,
            hunks: vec![h],
        }),
        "MultiEdit" => path()
            .zip(input.get("edits").and_then(Value::as_array))
            .and_then(|(path, edits)| {
                let hunks: Option<Vec<Hunk>> = edits.iter().map(hunk).collect();
                hunks.map(|hunks| InputView::Diff { path, hunks })
            }),
        "Write" => path()
            .zip(str_field(input, "content"))
            .map(|(path, text)| InputView::Content {
                path,
                text: clean(text).into_owned(),
            }),
        _ => None,
    };
    specific.unwrap_or_else(|| InputView::Json(pretty_json(input)))
}

/// A flag worth an operator's attention, from the prompt's request object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// No stored grant or automatic approval may answer: a person has to.
    RequiresUserInteraction,
    /// The user's own ask rule matched.
    MatchedAskRule,
    /// A path outside the allowed directories (shell output redirection, ...).
    BlockedPath,
    /// Restored after a restart and not yet re-sent by its session.
    Unconfirmed,
    /// The session asks not to pre-select approve: no one-key allow.
    DefaultToNo,
}

impl Flag {
    /// The flag's name, as in the protocol (and the page's `data-flag`).
    pub fn name(self) -> &'static str {
        match self {
            Flag::RequiresUserInteraction => "requires_user_interaction",
            Flag::MatchedAskRule => "matched_ask_rule",
            Flag::BlockedPath => "blocked_path",
            Flag::Unconfirmed => "unconfirmed",
            Flag::DefaultToNo => "default_to_no",
        }
    }

    /// What the chip says.
    pub fn label(self) -> &'static str {
        match self {
            Flag::RequiresUserInteraction => "needs a person",
            Flag::MatchedAskRule => "ask rule",
            Flag::BlockedPath => "blocked path",
            Flag::Unconfirmed => "unconfirmed",
            Flag::DefaultToNo => "default no",
        }
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// The flags of a prompt whose raw request is `request`.
pub fn flags(request: &Value, confirmed: bool) -> Vec<Flag> {
    let mut out = Vec::new();
    if truthy(request.get("requires_user_interaction")) {
        out.push(Flag::RequiresUserInteraction);
    }
    if truthy(request.get("matched_ask_rule")) {
        out.push(Flag::MatchedAskRule);
    }
    if truthy(request.get("blocked_path")) {
        out.push(Flag::BlockedPath);
    }
    if !confirmed {
        out.push(Flag::Unconfirmed);
    }
    if truthy(request.get("default_to_no")) {
        out.push(Flag::DefaultToNo);
    }
    out
}

/// A short age: `42s`, `7m`, `3h 5m`, `2d 4h`.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests;
