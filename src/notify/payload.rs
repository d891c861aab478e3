//! The bytes a sink sends (pure): the webhook's JSON event, Slack's incoming-webhook
//! message, and the console link of a prompt.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;

use super::notice::Notice;
use crate::config::SinkKind;
use ccr_protocol::time::rfc3339;

/// Characters left as they are in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The console page of a prompt: `{base}/ui/prompts/{session_id}/{request_id}`, each id
/// percent-encoded as a path segment. `base` has no trailing `/`.
pub fn prompt_link(base: &str, session_id: &str, request_id: &str) -> String {
    format!(
        "{base}/ui/prompts/{}/{}",
        utf8_percent_encode(session_id, SEGMENT),
        utf8_percent_encode(request_id, SEGMENT)
    )
}

/// The request body for a sink of `kind`.
pub fn body(kind: SinkKind, notice: &Notice, link_base: &str) -> Vec<u8> {
    match kind {
        SinkKind::Webhook => webhook(notice, link_base),
        SinkKind::Slack => slack(notice, link_base),
    }
}

/// The webhook's JSON event (docs/notify.md lists the fields).
#[derive(Serialize)]
struct WebhookEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    at: String,
    session_id: &'a str,
    labels: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_summary: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    received_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    age_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

/// The webhook body: one JSON object.
pub fn webhook(n: &Notice, link_base: &str) -> Vec<u8> {
    let p = n.prompt.as_ref();
    let event = WebhookEvent {
        kind: n.event.name(),
        at: rfc3339(n.at),
        session_id: &n.session_id,
        labels: &n.labels,
        request_id: p.map(|p| p.request_id.as_str()),
        tool_name: p.map(|p| p.tool_name.as_str()),
        prompt_kind: p.map(|p| p.kind),
        input_summary: p.map(|p| p.input.as_str()),
        received_at: p.map(|p| rfc3339(p.received_at)),
        age_ms: p.map(|_| n.age().as_millis() as u64),
        link: p.map(|p| prompt_link(link_base, &n.session_id, &p.request_id)),
        reason: n.failure.as_ref().map(|f| f.reason.as_str()),
        detail: n.failure.as_ref().and_then(|f| f.detail.as_deref()),
    };
    // Serialising plain strings and numbers cannot fail.
    serde_json::to_vec(&event).expect("a notice serialises")
}

/// The Slack body: `{"text": ...}` in Slack's mrkdwn, user text escaped.
pub fn slack(n: &Notice, link_base: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "text": slack_text(n, link_base) }))
        .expect("a notice serialises")
}

/// The Slack message text: what happened, session, tool, input summary, age, link.
pub fn slack_text(n: &Notice, link_base: &str) -> String {
    // Inside code spans: a backquote from a session would end the span early.
    let session = esc(&n.session_id).replace('`', "'");
    let Some(p) = &n.prompt else {
        let f = n.failure.as_ref();
        let reason = f.map_or(String::new(), |f| format!(" ({})", esc(&f.reason)));
        let detail = f
            .and_then(|f| f.detail.as_deref())
            .map_or(String::new(), |d| format!(": {}", esc(d)));
        return format!(":x: Session `{session}` failed{reason}{detail}");
    };
    let headline = match n.event {
        crate::config::NotifyEvent::PermissionRequested => ":raising_hand: Permission requested",
        crate::config::NotifyEvent::PermissionOverdue => ":hourglass: Permission overdue",
        crate::config::NotifyEvent::PermissionExpired => ":no_entry: Permission expired (denied)",
        crate::config::NotifyEvent::SessionFailed => ":x: Session failed",
    };
    let link = prompt_link(link_base, &n.session_id, &p.request_id);
    format!(
        "{headline}\n*Session:* `{session}`\n*Tool:* `{}`\n*Input:* `{}`\n*Waiting:* {}\n<{link}|Open in console>",
        esc(&p.tool_name).replace('`', "'"),
        esc(&p.input).replace('`', "'"),
        age_text(n.age()),
    )
}

/// A wait as `42s`, `3m 5s` or `2h 1m`.
fn age_text(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

/// Slack's three control characters escaped (`&`, `<`, `>`), so text cannot forge a link
/// or a mention.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
