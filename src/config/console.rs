//! `[console]` section -> [`ConsoleConfig`]: the operator console's public address (links in
//! notifications) and its sign-in sessions.

use std::time::Duration;

use super::fields::{Errors, Table};

/// Default of `[console] session_lifetime`: 12 hours.
pub const DEFAULT_CONSOLE_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Most `[console] session_lifetime` may be: 365 days. A sign-in meant to last longer is not
/// a sign-in, and far past this `now + lifetime` would not fit an `Instant`.
pub const MAX_CONSOLE_SESSION_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default of `[console] max_sessions`.
pub const DEFAULT_CONSOLE_MAX_SESSIONS: usize = 1000;

/// `[console]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// The console's address as operators reach it (`public_url`, e.g.
    /// `https://ccr.example.com`); unset: `http://<[api] bind>`. Links in notifications
    /// start with it.
    pub public_url: Option<url::Url>,
    /// How long a console sign-in lasts (`session_lifetime`, default 12 h, at most 365 days).
    pub session_lifetime: Duration,
    /// Console sign-ins held at once (`max_sessions`, default 1000).
    pub max_sessions: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            session_lifetime: DEFAULT_CONSOLE_SESSION_LIFETIME,
            max_sessions: DEFAULT_CONSOLE_MAX_SESSIONS,
        }
    }
}

impl ConsoleConfig {
    /// The base of console links, without a trailing `/`: `public_url`, else
    /// `http://{api_bind}`.
    pub fn link_base(&self, api_bind: std::net::SocketAddr) -> String {
        match &self.public_url {
            Some(u) => u.as_str().trim_end_matches('/').to_owned(),
            None => format!("http://{api_bind}"),
        }
    }
}

/// Validate the `[console]` table.
pub(super) fn console(mut t: Table, errs: &mut Errors) -> ConsoleConfig {
    let d = ConsoleConfig::default();
    let public_url = t.string(errs, "public_url").and_then(|text| {
        let problem = match url::Url::parse(text.trim()) {
            Err(e) => format!("not a valid URL: {e}"),
            Ok(u) if !matches!(u.scheme(), "http" | "https") || !u.has_host() => {
                "must be an http:// or https:// URL".to_owned()
            }
            Ok(u) if u.query().is_some() || u.fragment().is_some() => {
                "must have no query (?...) or fragment (#...): links are built under it".to_owned()
            }
            Ok(u) => return Some(u),
        };
        errs.push(t.key_path("public_url"), problem);
        None
    });
    let console = ConsoleConfig {
        public_url,
        session_lifetime: session_lifetime(&mut t, errs, d.session_lifetime),
        max_sessions: t.usize(errs, "max_sessions", d.max_sessions, 1..=10_000_000),
    };
    t.finish(errs);
    console
}

/// `session_lifetime`: greater than 0, at most [`MAX_CONSOLE_SESSION_LIFETIME`].
fn session_lifetime(t: &mut Table, errs: &mut Errors, default: Duration) -> Duration {
    let before = errs.len();
    let lifetime = t.positive_duration(errs, "session_lifetime", default);
    if errs.len() == before && lifetime > MAX_CONSOLE_SESSION_LIFETIME {
        errs.push(
            t.key_path("session_lifetime"),
            format!(
                "must be at most 365 days, got {}",
                humantime::format_duration(lifetime)
            ),
        );
        return default;
    }
    lifetime
}
