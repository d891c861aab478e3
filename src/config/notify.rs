//! `[[notify]]` entries -> [`NotifySinkConfig`]s: where notifications go, which events, for
//! which sessions and tools, and how hard delivery tries.
//!
//! Plain data: a `url_env` / `secret_env` / `*_file` is only named here; the notifier reads
//! it (`notify::resolve`), and `app::load_config` reports one it cannot read with the rest.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::fields::{array_of_tables, plain_id, Errors, Table};

/// Default of `timeout`: one delivery attempt, connect to last byte.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `max_attempts`.
pub const DEFAULT_NOTIFY_ATTEMPTS: u32 = 5;
/// Default of `backoff_initial`.
pub const DEFAULT_NOTIFY_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Default of `backoff_max`.
pub const DEFAULT_NOTIFY_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Default of `queue_events`.
pub const DEFAULT_NOTIFY_QUEUE_EVENTS: usize = 1000;
/// Default of `queue_bytes`: 1 MiB.
pub const DEFAULT_NOTIFY_QUEUE_BYTES: usize = 1 << 20;

/// The mutually exclusive keys of a sink's URL.
const URL_KEYS: [&str; 3] = ["url", "url_env", "url_file"];
/// The mutually exclusive keys of a webhook's signing secret.
const SECRET_KEYS: [&str; 2] = ["secret_env", "secret_file"];

/// What a sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// `"webhook"`: the event as JSON, signed (`X-Ccr-Signature`).
    Webhook,
    /// `"slack"`: a Slack incoming-webhook message (`{"text": ...}`).
    Slack,
}

/// An event a sink may subscribe to (`events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyEvent {
    /// `permission_requested`: a prompt the policy left to a human.
    PermissionRequested,
    /// `permission.overdue`: still unanswered after `[policy] remind_after`.
    PermissionOverdue,
    /// `permission_expired`: the ask deadline passed (a deny follows).
    PermissionExpired,
    /// `session_failed`: a session reached the final `failed` state.
    SessionFailed,
}

impl NotifyEvent {
    /// Every event, in the order documented.
    pub const ALL: [NotifyEvent; 4] = [
        NotifyEvent::PermissionRequested,
        NotifyEvent::PermissionOverdue,
        NotifyEvent::SessionFailed,
        NotifyEvent::PermissionExpired,
    ];

    /// Its name in config and in payloads (`type`).
    pub fn name(self) -> &'static str {
        match self {
            NotifyEvent::PermissionRequested => "permission_requested",
            NotifyEvent::PermissionOverdue => "permission.overdue",
            NotifyEvent::PermissionExpired => "permission_expired",
            NotifyEvent::SessionFailed => "session_failed",
        }
    }

    /// The event named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// A sink's URL as configured. `Debug` never shows a literal URL (a Slack webhook URL is a
/// credential).
#[derive(Clone, PartialEq, Eq)]
pub enum UrlSource {
    /// `url = "https://..."`.
    Literal(SinkUrl),
    /// `url_env = "VAR"`: read at start.
    Env(String),
    /// `url_file = "path"`: read at start (trimmed).
    File(PathBuf),
}

impl fmt::Debug for UrlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlSource::Literal(u) => write!(f, "Literal({u:?})"),
            UrlSource::Env(v) => write!(f, "Env({v:?})"),
            UrlSource::File(p) => write!(f, "File({p:?})"),
        }
    }
}

/// A webhook URL: a credential, so its `Debug` and `Display` are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SinkUrl(url::Url);

impl SinkUrl {
    /// Parse `text` as an absolute `http` or `https` URL; the error never repeats it.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        match url::Url::parse(text.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(Self(u)),
            Ok(_) => Err("must be an http:// or https:// URL (value not shown: secret)"),
            Err(_) => Err("not a valid URL (value not shown: secret)"),
        }
    }

    /// The URL itself; call only where it is put on the wire.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for SinkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted url>")
    }
}

impl fmt::Display for SinkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted url>")
    }
}

/// Where a webhook's signing secret comes from (never a literal in config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `secret_env = "VAR"`: read at start.
    Env(String),
    /// `secret_file = "path"`: read at start (trimmed).
    File(PathBuf),
}

/// Which happenings a sink hears about: all of the lists that are set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifySelector {
    /// `sessions`: session ids; a trailing `*` matches a prefix (default: every session).
    pub sessions: Vec<String>,
    /// `labels`: the session has at least one of these labels (default: any).
    pub labels: Vec<String>,
    /// `tools`: the prompt's tool, a trailing `*` matches a prefix (default: any; an event
    /// without a tool, `session_failed`, passes).
    pub tools: Vec<String>,
}

/// How a sink delivers: timeouts, retries, its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyDelivery {
    /// One attempt, connect to response (`timeout`, default 10 s).
    pub timeout: Duration,
    /// Attempts per notification, the first included (`max_attempts`, default 5).
    pub max_attempts: u32,
    /// First retry delay (`backoff_initial`, default 1 s), doubled per attempt ...
    pub backoff_initial: Duration,
    /// ... up to this (`backoff_max`, default 60 s); each delay is jittered within its upper half.
    pub backoff_max: Duration,
    /// Notifications waiting at most (`queue_events`, default 1000) ...
    pub queue_events: usize,
    /// ... and at most this many bytes of them (`queue_bytes`, default 1 MiB).
    pub queue_bytes: usize,
}

impl Default for NotifyDelivery {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_NOTIFY_TIMEOUT,
            max_attempts: DEFAULT_NOTIFY_ATTEMPTS,
            backoff_initial: DEFAULT_NOTIFY_BACKOFF_INITIAL,
            backoff_max: DEFAULT_NOTIFY_BACKOFF_MAX,
            queue_events: DEFAULT_NOTIFY_QUEUE_EVENTS,
            queue_bytes: DEFAULT_NOTIFY_QUEUE_BYTES,
        }
    }
}

/// One `[[notify]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySinkConfig {
    /// The entry's key path (`notify[2]`), for problems found when it is read at start.
    pub key: String,
    /// `name`: unique; the `sink` label of its metrics and the name in its log lines.
    pub name: String,
    /// `kind`.
    pub kind: SinkKind,
    /// Exactly one of `url`, `url_env`, `url_file`.
    pub url: UrlSource,
    /// `secret_env` or `secret_file`: required for a webhook, refused for slack.
    pub secret: Option<SecretSource>,
    /// `events`: at least one.
    pub events: Vec<NotifyEvent>,
    /// `sessions`, `labels`, `tools`.
    pub selector: NotifySelector,
    /// `timeout`, `max_attempts`, `backoff_*`, `queue_*`.
    pub delivery: NotifyDelivery,
}

impl NotifySinkConfig {
    /// Whether `other` sets this sink up the same way, wherever its entry sits in the file:
    /// every field but `key`. A sink is known by its `name`; an earlier entry removed or
    /// moved changes the `key` of those after it, and that is no change to them.
    pub fn same_settings(&self, other: &Self) -> bool {
        let Self {
            key: _,
            name,
            kind,
            url,
            secret,
            events,
            selector,
            delivery,
        } = self;
        (name, kind, url, secret, events, selector, delivery)
            == (
                &other.name,
                &other.kind,
                &other.url,
                &other.secret,
                &other.events,
                &other.selector,
                &other.delivery,
            )
    }
}

/// Validate the `notify` array; entries with problems are reported and left out.
pub(super) fn notify(value: Option<&Value>, errs: &mut Errors) -> Vec<NotifySinkConfig> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut sinks = Vec::new();
    for (i, path, map) in array_of_tables(value, "notify", errs) {
        let before = errs.len();
        let mut t = Table::new(&path, Some(map));
        let name = t.string(errs, "name").unwrap_or_default();
        match plain_id(&name, 64, "required: names the sink in metrics and logs") {
            Err(e) => errs.push(t.key_path("name"), e),
            Ok(()) => {
                if let Some(first) = names.get(&name) {
                    let msg = format!("duplicate name {name:?}, already used by notify[{first}]");
                    errs.push(t.key_path("name"), msg);
                } else {
                    names.insert(name.clone(), i);
                }
            }
        }
        let kind = match t.string(errs, "kind").as_deref() {
            Some("webhook") => Some(SinkKind::Webhook),
            Some("slack") => Some(SinkKind::Slack),
            Some(other) => {
                let msg = format!("expected \"webhook\" or \"slack\", got {other:?}");
                errs.push(t.key_path("kind"), msg);
                None
            }
            None => {
                errs.push(t.key_path("kind"), "required: \"webhook\" or \"slack\"");
                None
            }
        };
        let url = url_source(&mut t, errs);
        let secret = secret_source(&mut t, errs, kind);
        let events = events(&mut t, errs);
        let selector = NotifySelector {
            sessions: t.strings(errs, "sessions"),
            labels: t.strings(errs, "labels"),
            tools: t.strings(errs, "tools"),
        };
        let delivery = delivery(&mut t, errs);
        t.finish(errs);
        if let (Some(kind), Some(url), true) = (kind, url, errs.len() == before) {
            sinks.push(NotifySinkConfig {
                key: path,
                name,
                kind,
                url,
                secret,
                events,
                selector,
                delivery,
            });
        }
    }
    sinks
}

/// Exactly one of `url`, `url_env`, `url_file`.
fn url_source(t: &mut Table, errs: &mut Errors) -> Option<UrlSource> {
    let present: Vec<&str> = URL_KEYS.iter().copied().filter(|k| t.has(k)).collect();
    if present.len() != 1 {
        let found = if present.is_empty() {
            "none".to_owned()
        } else {
            present.join(", ")
        };
        errs.push(
            t.path().to_owned(),
            format!("set exactly one of url, url_env, url_file (found {found})"),
        );
        for k in URL_KEYS {
            let _ = t.raw(k);
        }
        return None;
    }
    match present[0] {
        "url" => {
            let text = t.secret(errs, "url")?;
            match SinkUrl::parse(&text) {
                Ok(u) => Some(UrlSource::Literal(u)),
                Err(e) => {
                    errs.push(t.key_path("url"), e);
                    None
                }
            }
        }
        "url_env" => non_empty(t, errs, "url_env").map(UrlSource::Env),
        _ => non_empty(t, errs, "url_file").map(|p| UrlSource::File(PathBuf::from(p))),
    }
}

/// A webhook needs exactly one of `secret_env`, `secret_file`; a Slack sink takes neither.
fn secret_source(t: &mut Table, errs: &mut Errors, kind: Option<SinkKind>) -> Option<SecretSource> {
    let present: Vec<&str> = SECRET_KEYS.iter().copied().filter(|k| t.has(k)).collect();
    let problem = match (kind, present.len()) {
        (Some(SinkKind::Slack), n) if n > 0 => Some(
            "a slack sink is not signed (Slack's URL is its secret): remove secret_env / secret_file",
        ),
        (Some(SinkKind::Webhook), 0) => {
            Some("a webhook needs a signing secret: set secret_env or secret_file")
        }
        (_, n) if n > 1 => Some("set only one of secret_env, secret_file"),
        _ => None,
    };
    if let Some(problem) = problem {
        errs.push(t.path().to_owned(), problem);
        for k in SECRET_KEYS {
            let _ = t.raw(k);
        }
        return None;
    }
    match present.first().copied() {
        Some("secret_env") => non_empty(t, errs, "secret_env").map(SecretSource::Env),
        Some(_) => non_empty(t, errs, "secret_file").map(|p| SecretSource::File(PathBuf::from(p))),
        None => None,
    }
}

/// A string key that must not be empty when set.
fn non_empty(t: &mut Table, errs: &mut Errors, key: &'static str) -> Option<String> {
    let v = t.string(errs, key)?;
    if v.trim().is_empty() {
        errs.push(t.key_path(key), "must not be empty");
        return None;
    }
    Some(v)
}

/// `events`: at least one known name, each once.
fn events(t: &mut Table, errs: &mut Errors) -> Vec<NotifyEvent> {
    let path = t.key_path("events");
    let known = || {
        let names: Vec<&str> = NotifyEvent::ALL.iter().map(|e| e.name()).collect();
        names.join(", ")
    };
    let had = t.has("events");
    let mut out = Vec::new();
    for (i, name) in t.strings(errs, "events").into_iter().enumerate() {
        match NotifyEvent::from_name(&name) {
            Some(e) if !out.contains(&e) => out.push(e),
            Some(_) => errs.push(format!("{path}[{i}]"), format!("{name:?} is listed twice")),
            None => errs.push(
                format!("{path}[{i}]"),
                format!("unknown event {name:?} (expected one of: {})", known()),
            ),
        }
    }
    if out.is_empty() && !errs.paths().any(|p| p.starts_with(&path)) {
        let what = if had { "must not be empty" } else { "required" };
        errs.push(path, format!("{what}: one or more of {}", known()));
    }
    out
}

/// The delivery keys of a sink.
fn delivery(t: &mut Table, errs: &mut Errors) -> NotifyDelivery {
    let d = NotifyDelivery::default();
    let delivery = NotifyDelivery {
        timeout: t.positive_duration(errs, "timeout", d.timeout),
        max_attempts: t.u32(errs, "max_attempts", d.max_attempts, 1..=100),
        backoff_initial: t.positive_duration(errs, "backoff_initial", d.backoff_initial),
        backoff_max: t.positive_duration(errs, "backoff_max", d.backoff_max),
        queue_events: t.usize(errs, "queue_events", d.queue_events, 1..=1_000_000),
        queue_bytes: t.usize(errs, "queue_bytes", d.queue_bytes, 1024..=1 << 30),
    };
    if delivery.backoff_max < delivery.backoff_initial {
        let msg = format!("must be >= {}.backoff_initial", t.path());
        errs.push(t.key_path("backoff_max"), msg);
    }
    delivery
}

#[cfg(test)]
mod tests;
