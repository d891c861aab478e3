//! The watch loop: the prompts already pending first, then the live stream, read through
//! a [`Watcher`] (pure state: which prompts were listed, how answers were delivered, runs
//! of empty `stream_event` messages to fold).
//!
//! No gap and no duplicate between the list and the stream: the stream is opened first
//! (the server subscribes before it answers), the list read second, and a
//! `permission_requested` of a listed prompt is then skipped when the stream brings it.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, IsTerminal, Write};

use serde_json::{json, Value};

use ccr_protocol::event::Event;
use ccr_protocol::sse::{SseEvent, SseParser};

use super::super::client::{Client, CtlError};
use super::super::resolve;
use super::{
    exit_on_ctrl_c, folded_stream_events, is_empty_stream_event, json_line, render_delivered,
    render_event, render_sse, shell_quote, use_color, AnswerHint, Delivered,
};

/// Remembered answers and deliveries beyond this many are forgotten (a watch runs for days).
const MAX_REMEMBERED: usize = 10_000;

/// What `ctl watch` was asked for.
#[derive(Debug, Clone, Default)]
pub struct Options<'a> {
    /// Only this session.
    pub session: Option<&'a str>,
    /// Resume after this sequence number.
    pub after: Option<u64>,
    /// One JSON event per line (no listing of pending prompts first).
    pub json: bool,
    /// Only prompts and questions and what becomes of them.
    pub prompts_only: bool,
}

/// The event types `--prompts-only` keeps (the `lagged` notice always comes).
pub fn prompt_types() -> Vec<&'static str> {
    Event::KINDS
        .iter()
        .copied()
        .filter(|k| k.starts_with("permission"))
        .collect()
}

type Key = (String, String);

fn key(ev: &Value) -> Key {
    let s = |k: &str| ev[k].as_str().unwrap_or("").to_owned();
    (s("session_id"), s("request_id"))
}

/// The state of one watch between events; every method returns the lines to print.
#[derive(Debug)]
pub struct Watcher {
    color: bool,
    hint: AnswerHint,
    prompts_only: bool,
    /// Prompts listed at the start whose `permission_requested` has not come by yet.
    listed: HashSet<Key>,
    /// Answered before any delivery was seen: how the delivery will have happened.
    answered: HashMap<Key, Delivered>,
    /// Delivered before its `permission_answered` (an answer written at once).
    delivered: HashSet<Key>,
    /// Runs of empty `stream_event` messages: session, first `at`, count.
    fold: Vec<(String, Value, u64)>,
    last_seq: Option<u64>,
    slow_reader_resume: Option<u64>,
}

impl Watcher {
    /// A watcher printing in colour or not, with answer hints from `hint`.
    pub fn new(color: bool, hint: AnswerHint, prompts_only: bool) -> Self {
        Self {
            color,
            hint,
            prompts_only,
            listed: HashSet::new(),
            answered: HashMap::new(),
            delivered: HashSet::new(),
            fold: Vec::new(),
            last_seq: None,
            slow_reader_resume: None,
        }
    }

    /// The line(s) for a prompt pending when the watch started (a raw `/v1/permissions` or
    /// `/v1/questions` item), exactly as its live `permission_requested` would print.
    pub fn listed(&mut self, prompt: &Value) -> String {
        let ev = json!({
            "at": prompt["received_at"],
            "type": "permission_requested",
            "session_id": prompt["session_id"],
            "request_id": prompt["request_id"],
            "tool_name": prompt["tool_name"],
            "tool_use_id": prompt["tool_use_id"],
            "request": prompt["request"],
            "input": prompt["input"],
            "confirmed": prompt["confirmed"],
            "kind": prompt["kind"],
        });
        self.listed.insert(key(&ev));
        render_event(&ev, self.color, &self.hint)
    }

    /// The folded lines still held back (none when the last event was not an empty one).
    pub fn flush(&mut self) -> Vec<String> {
        self.fold
            .drain(..)
            .map(|(session, at, n)| folded_stream_events(&at, &session, n, self.color))
            .collect()
    }

    /// Remember where the stream is (`seq`, a slow reader's resume point) for [`Watcher::ended`].
    pub fn note(&mut self, ev: &Value) {
        if let Some(seq) = ev["seq"].as_u64() {
            self.last_seq = Some(seq);
        }
        if ev["type"] == "lagged" {
            if let Some(seq) = ev["resume_after"].as_u64() {
                self.slow_reader_resume = Some(seq);
            }
        }
    }

    /// The lines for one event of the stream (parsed `data`).
    pub fn event(&mut self, ev: &Value) -> Vec<String> {
        self.note(ev);
        let kind = ev["type"].as_str().unwrap_or("");
        if self.prompts_only && !(kind.starts_with("permission") || kind == "lagged") {
            return Vec::new();
        }
        if is_empty_stream_event(ev) {
            let session = ev["session_id"].as_str().unwrap_or("-").to_owned();
            match self.fold.iter_mut().find(|(s, _, _)| *s == session) {
                Some((_, _, n)) => *n += 1,
                None => self.fold.push((session, ev["at"].clone(), 1)),
            }
            return Vec::new();
        }
        let mut out = self.flush();
        let k = key(ev);
        let mut how = None;
        match kind {
            "permission_requested" if self.listed.remove(&k) => return out,
            "permission_answered" => match ev["delivery"].as_str() {
                Some("queued") => self.answered_before_delivery(k, Delivered::Queued),
                Some("sent") if !self.delivered.remove(&k) => {
                    self.answered_before_delivery(k, Delivered::Resent)
                }
                _ => {}
            },
            "permission_delivered" => {
                how = self.answered.remove(&k);
                if how.is_none() {
                    if self.delivered.len() >= MAX_REMEMBERED {
                        self.delivered.clear();
                    }
                    self.delivered.insert(k);
                }
            }
            "permission_cancelled" | "permission_expired" => {
                self.listed.remove(&k);
            }
            _ => {}
        }
        out.push(render_delivered(ev, self.color, &self.hint, how));
        out
    }

    fn answered_before_delivery(&mut self, k: Key, how: Delivered) {
        if self.answered.len() >= MAX_REMEMBERED {
            self.answered.clear();
        }
        self.answered.insert(k, how);
    }

    /// The `--json` line of one SSE event (its data verbatim), noting where the stream is.
    pub fn json(&mut self, ev: &SseEvent) -> String {
        if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
            self.note(&v);
        }
        json_line(ev)
    }

    /// The lines for one SSE event: its JSON through [`Watcher::event`], anything else generically.
    pub fn sse(&mut self, ev: &SseEvent) -> Vec<String> {
        match serde_json::from_str::<Value>(&ev.data) {
            Ok(v) if v.is_object() => self.event(&v),
            _ => {
                let mut out = self.flush();
                out.push(render_sse(ev, self.color, &self.hint));
                out
            }
        }
    }

    /// What to say when the server ended the stream, with the command that resumes it.
    pub fn ended(&self, session: Option<&str>) -> String {
        let why = match self.slow_reader_resume {
            Some(_) => " (this reader fell behind)",
            None => "",
        };
        match self.slow_reader_resume.or(self.last_seq) {
            Some(seq) => {
                let mut cmd = format!("{} watch", self.hint.prefix());
                if let Some(s) = session {
                    cmd.push(' ');
                    cmd.push_str(&shell_quote(s));
                }
                if self.prompts_only {
                    cmd.push_str(" --prompts-only");
                }
                format!("stream ended by the server{why}; resume with: {cmd} --after {seq}")
            }
            None => format!("stream ended by the server{why}"),
        }
    }
}

/// Write `lines` to stdout; false when stdout is closed (`| head`), which ends the watch quietly.
fn emit(lines: &[String]) -> bool {
    if lines.is_empty() {
        return true;
    }
    let mut out = std::io::stdout().lock();
    lines
        .iter()
        .try_for_each(|l| writeln!(out, "{l}"))
        .and_then(|_| out.flush())
        .is_ok()
}

/// List what is pending, then follow the stream until the server closes it (Ok, saying so
/// on stderr) or it breaks (Err).
pub fn run(client: &Client, opts: &Options<'_>, hint: &AnswerHint) -> Result<(), CtlError> {
    exit_on_ctrl_c();
    let types = opts.prompts_only.then(|| prompt_types().join(","));
    // Opened first: the server subscribes before it answers, so nothing published while
    // the list below is read is missed (it waits in the socket).
    let mut reader = client.events(opts.session, opts.after, types.as_deref())?;
    let tty = std::io::stderr().is_terminal();
    let color = !opts.json && use_color();
    let mut watcher = Watcher::new(color, hint.clone(), opts.prompts_only);
    if !opts.json {
        match resolve::pending_raw(client, opts.session) {
            Ok(pending) => {
                if tty {
                    match pending.len() {
                        0 => eprintln!("nothing pending; live events follow"),
                        n => eprintln!("{n} pending (oldest first); live events follow"),
                    }
                }
                for p in &pending {
                    if !emit(&[watcher.listed(p)]) {
                        return Ok(());
                    }
                }
            }
            Err(e) => eprintln!("warning: cannot list the pending prompts: {e}"),
        }
    }
    if tty {
        eprintln!("watching events (Ctrl-C to stop)");
    }
    let mut parser = SseParser::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let lines = match parser.feed(&line) {
                    Some(ev) if opts.json => vec![watcher.json(&ev)],
                    Some(ev) => watcher.sse(&ev),
                    // A keep-alive comment: a quiet moment, so show what is folded so far.
                    None if line.starts_with(':') => watcher.flush(),
                    None => Vec::new(),
                };
                if !emit(&lines) {
                    return Ok(());
                }
            }
            Err(e) => {
                emit(&watcher.flush());
                return Err(CtlError::Protocol(format!("the event stream broke: {e}")));
            }
        }
    }
    let mut lines = match parser.finish() {
        Some(ev) if opts.json => vec![watcher.json(&ev)],
        Some(ev) => watcher.sse(&ev),
        None => Vec::new(),
    };
    lines.extend(watcher.flush());
    if emit(&lines) {
        eprintln!("{}", watcher.ended(opts.session));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
