//! Which sinks hear about a notice (pure): its event among the sink's `events`, and every
//! selector the sink sets matching.

use super::notice::Notice;
use crate::config::{NotifySelector, NotifySinkConfig};

/// Whether `sink` wants `notice`.
pub fn wants(sink: &NotifySinkConfig, notice: &Notice) -> bool {
    sink.events.contains(&notice.event) && selects(&sink.selector, notice)
}

/// Whether every list `selector` sets matches `notice` (an unset list matches anything).
pub fn selects(selector: &NotifySelector, notice: &Notice) -> bool {
    let session = selector.sessions.is_empty()
        || selector
            .sessions
            .iter()
            .any(|p| glob(p, &notice.session_id));
    let label = selector.labels.is_empty()
        || selector
            .labels
            .iter()
            .any(|l| notice.labels.iter().any(|have| have == l));
    // A notice without a tool (`session_failed`) is not about one: tool lists let it pass.
    let tool = match (&notice.prompt, selector.tools.is_empty()) {
        (_, true) | (None, _) => true,
        (Some(p), false) => selector.tools.iter().any(|t| glob(t, &p.tool_name)),
    };
    session && label && tool
}

/// `pattern` equals `value`, or ends with `*` and the rest is a prefix of `value`.
pub fn glob(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}
