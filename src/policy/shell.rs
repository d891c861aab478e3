//! Quote-aware splitting of a shell command line into the simple commands it runs.
//!
//! This is not a shell parser. It finds enough structure to decide whether a
//! `Bash(...)` rule covers *every* command a line would run: list and pipe
//! operators, newlines, subshells, comments, and command / process substitutions
//! (also inside double quotes, where the shell still expands them). Anything it
//! does not understand (unbalanced quotes or parentheses, here-documents, deep
//! nesting) makes [`split`] return `None`, and allow rules then do not match.

/// One simple command found in a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    /// The command text, trimmed (substitutions inside it are kept verbatim).
    pub text: String,
    /// It redirects output to something other than `/dev/null` or another descriptor.
    pub writes: bool,
}

/// Nesting deeper than this is treated as unparseable (it is never legitimate).
const MAX_DEPTH: usize = 32;

/// Leading words that do not change which program runs, skipped by [`variants`].
const PREFIX_WORDS: [&str; 15] = [
    "!", "{", "if", "then", "else", "elif", "do", "while", "until", "time", "exec", "command",
    "nohup", "sudo", "env",
];

/// Every simple command in `cmd`, or `None` when it cannot be split confidently.
pub(crate) fn split(cmd: &str) -> Option<Vec<Part>> {
    let mut scanner = Scanner {
        src: cmd,
        bytes: cmd.as_bytes(),
        i: 0,
        parts: Vec::new(),
    };
    scanner.sequence(None, 0)?;
    Some(scanner.parts)
}

/// A crude split on every operator-like character, for commands [`split`] rejects.
///
/// Used only to make deny rules match more, never to allow anything.
pub(crate) fn split_loose(cmd: &str) -> Vec<String> {
    cmd.split(|c: char| ";&|\n`()<>{}$".contains(c))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Two readings of a command for deny matching, both with quotes and backslashes
/// removed and whitespace collapsed; the second also drops leading keywords
/// (`then`, `sudo`, ...) and `VAR=value` words.
pub(crate) fn variants(text: &str) -> [String; 2] {
    let unquoted: String = text.chars().filter(|c| !"'\"\\".contains(*c)).collect();
    let words: Vec<&str> = unquoted.split_whitespace().collect();
    let skip = words
        .iter()
        .take_while(|w| PREFIX_WORDS.contains(w) || is_assignment(w))
        .count();
    [words.join(" "), words[skip..].join(" ")]
}

/// `NAME=value` (a variable assignment before a command).
fn is_assignment(word: &str) -> bool {
    let Some((name, _)) = word.split_once('=') else {
        return false;
    };
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Byte scanner; every character it cares about is ASCII, so byte offsets are
/// always char boundaries where it slices.
struct Scanner<'a> {
    src: &'a str,
    bytes: &'a [u8],
    i: usize,
    parts: Vec<Part>,
}

impl Scanner<'_> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.i + ahead).copied()
    }

    fn push(&mut self, start: usize, writes: bool) {
        let text = self.src[start..self.i].trim();
        if !text.is_empty() {
            self.parts.push(Part {
                text: text.to_owned(),
                writes,
            });
        }
    }

    /// Commands up to `close` (or the end of input at top level), consuming `close`.
    fn sequence(&mut self, close: Option<u8>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let (mut start, mut writes) = (self.i, false);
        // Whether the next byte begins a word: only there does `#` start a comment.
        let mut word_start = true;
        loop {
            let Some(c) = self.peek(0) else {
                self.push(start, writes);
                return close.is_none().then_some(());
            };
            if Some(c) == close {
                self.push(start, writes);
                self.i += 1;
                return Some(());
            }
            let mut next_word_start = false;
            match (c, self.peek(1)) {
                (b'\\', Some(b'\n')) => {
                    // A line continuation is removed: the word goes on as before it.
                    self.i += 2;
                    next_word_start = word_start;
                }
                (b'\\', next) => {
                    next?;
                    self.i += 2;
                }
                (b'#', _) if word_start => {
                    // A comment runs to the end of the line; nothing in it is read.
                    self.push(start, writes);
                    while self.peek(0).is_some_and(|b| b != b'\n') {
                        self.i += 1;
                    }
                    (start, writes) = (self.i, false);
                }
                (b'\'', _) => self.single_quote(false)?,
                (b'$', Some(b'\'')) => {
                    self.i += 1;
                    self.single_quote(true)?;
                }
                (b'"', _) => self.double_quote(depth + 1)?,
                (b'`', _) => {
                    self.i += 1;
                    self.sequence(Some(b'`'), depth + 1)?;
                }
                (b'$', Some(b'(')) | (b'<' | b'>', Some(b'(')) => {
                    self.i += 2;
                    self.sequence(Some(b')'), depth + 1)?;
                }
                (b'$', Some(b'{')) => self.parameter(depth + 1)?,
                (b'(', _) => {
                    self.push(start, writes);
                    self.i += 1;
                    self.sequence(Some(b')'), depth + 1)?;
                    (start, writes) = (self.i, false);
                    next_word_start = true;
                }
                (b')', _) => return None,
                (b'&', Some(b'>')) => {
                    self.i += 1;
                    writes |= self.redirect_out();
                }
                (b'>', _) => writes |= self.redirect_out(),
                // A here-document: its body is data up to a delimiter line, which
                // this scanner does not track. Refuse rather than misread it.
                (b'<', Some(b'<')) if self.peek(2) != Some(b'<') => return None,
                (b'<', next) => {
                    self.i += match next {
                        Some(b'&') => 2,
                        Some(b'<') => 3,
                        _ => 1,
                    };
                    next_word_start = true;
                }
                (b';' | b'\n' | b'|' | b'&', next) => {
                    self.push(start, writes);
                    let doubled = next == Some(c) || (c == b'|' && next == Some(b'&'));
                    self.i += if doubled { 2 } else { 1 };
                    (start, writes) = (self.i, false);
                    next_word_start = true;
                }
                (b' ' | b'\t', _) => {
                    self.i += 1;
                    next_word_start = true;
                }
                _ => self.i += 1,
            }
            word_start = next_word_start;
        }
    }

    /// `'...'` (no escapes) or, with `escapes`, ANSI-C `$'...'` (backslash escapes).
    fn single_quote(&mut self, escapes: bool) -> Option<()> {
        self.i += 1;
        loop {
            match self.peek(0)? {
                b'\\' if escapes => self.i += 2,
                b'\'' => {
                    self.i += 1;
                    return Some(());
                }
                _ => self.i += 1,
            }
        }
    }

    /// `"..."`: no splitting inside, but `$(...)`, backticks and `${...}` still run.
    fn double_quote(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        loop {
            match (self.peek(0)?, self.peek(1)) {
                (b'"', _) => {
                    self.i += 1;
                    return Some(());
                }
                (b'\\', _) => self.i += 2,
                (b'`', _) => {
                    self.i += 1;
                    self.sequence(Some(b'`'), depth + 1)?;
                }
                (b'$', Some(b'(')) => {
                    self.i += 2;
                    self.sequence(Some(b')'), depth + 1)?;
                }
                (b'$', Some(b'{')) => self.parameter(depth + 1)?,
                _ => self.i += 1,
            }
        }
    }

    /// `${...}`: a word, not a command, but it may contain substitutions.
    fn parameter(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 2;
        loop {
            match (self.peek(0)?, self.peek(1)) {
                (b'}', _) => {
                    self.i += 1;
                    return Some(());
                }
                (b'\\', _) => self.i += 2,
                (b'\'', _) => self.single_quote(false)?,
                (b'"', _) => self.double_quote(depth + 1)?,
                (b'`', _) => {
                    self.i += 1;
                    self.sequence(Some(b'`'), depth + 1)?;
                }
                (b'$', Some(b'(')) => {
                    self.i += 2;
                    self.sequence(Some(b')'), depth + 1)?;
                }
                (b'$', Some(b'{')) => self.parameter(depth + 1)?,
                _ => self.i += 1,
            }
        }
    }

    /// At `>`: skip the operator and its target; true when it may write a file.
    fn redirect_out(&mut self) -> bool {
        self.i += 1;
        if matches!(self.peek(0), Some(b'>' | b'|')) {
            self.i += 1;
        }
        let duplicate = self.peek(0) == Some(b'&');
        if duplicate {
            self.i += 1;
        }
        while matches!(self.peek(0), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        let start = self.i;
        while self
            .peek(0)
            .is_some_and(|b| !b.is_ascii_whitespace() && !b";&|<>()`'\"$\\".contains(&b))
        {
            self.i += 1;
        }
        let target = &self.src[start..self.i];
        // A quote, `$` or `\` right after the word means it is longer than what we read.
        let whole = !self.peek(0).is_some_and(|b| b"`'\"$\\".contains(&b));
        let harmless = if duplicate {
            !target.is_empty() && target.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        } else {
            target == "/dev/null"
        };
        !(harmless && whole)
    }
}

#[cfg(test)]
mod tests;
