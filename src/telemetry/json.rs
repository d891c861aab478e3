//! JSON log lines as log shippers (Loki, Elastic, Datadog) read them: one flat object with
//! `timestamp`, `level`, `target`, `message`, the event's fields, and the fields of the
//! spans it happened in (`session_id`, `request_id`) once each, innermost first.
//!
//! tracing-subscriber's own JSON nests the message under `fields` and repeats every span
//! under `span` and `spans`; json-subscriber flattens but may write a key twice when an
//! event and its span both carry it. This formatter keeps the event's value, then each
//! span's from the innermost out, and writes every key once.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter of `[log] format = "json"` (its spans' fields formatted by
/// [`JsonFields`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct FlatJson;

/// Collects an event's fields as JSON values; numbers and booleans stay typed.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// The flat object of one event: the fixed keys, the event's fields, then span fields not
/// already present (`spans`: each span's fields as JSON text, innermost first).
pub fn flat_line<'a>(
    timestamp: String,
    level: &str,
    target: &str,
    event_fields: Map<String, Value>,
    spans: impl IntoIterator<Item = &'a str>,
) -> Map<String, Value> {
    let mut line = Map::new();
    line.insert("timestamp".into(), timestamp.into());
    line.insert("level".into(), level.into());
    line.insert("target".into(), target.into());
    // The message first among the event's fields, then the rest as recorded.
    let mut event_fields = event_fields;
    line.insert(
        "message".into(),
        event_fields.remove("message").unwrap_or_else(|| "".into()),
    );
    for (k, v) in event_fields {
        line.entry(k).or_insert(v);
    }
    for span in spans {
        if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(span) {
            for (k, v) in fields {
                line.entry(k).or_insert(v);
            }
        }
    }
    line
}

impl<S> FormatEvent<S, JsonFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Map::new();
        event.record(&mut Fields(&mut fields));
        let meta = event.metadata();
        let mut spans: Vec<String> = Vec::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope {
                if let Some(f) = span.extensions().get::<FormattedFields<JsonFields>>() {
                    spans.push(f.fields.clone());
                }
            }
        }
        let line = flat_line(
            ccr_protocol::time::rfc3339(std::time::SystemTime::now()),
            meta.level().as_str(),
            meta.target(),
            fields,
            spans.iter().map(String::as_str),
        );
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_line_is_flat_and_every_key_appears_once() {
        let mut fields = Map::new();
        fields.insert("message".into(), "prompt answered".into());
        fields.insert("session_id".into(), "from-event".into());
        fields.insert("code".into(), 1000.into());
        let spans = [
            r#"{"request_id":"r1","session_id":"inner"}"#,
            r#"{"session_id":"outer","incarnation":2}"#,
            "not json",
        ];
        let line = flat_line("t".into(), "INFO", "ccr", fields, spans);
        assert_eq!(
            Value::Object(line),
            json!({"timestamp": "t", "level": "INFO", "target": "ccr",
                "message": "prompt answered", "session_id": "from-event", "code": 1000,
                "request_id": "r1", "incarnation": 2})
        );
    }

    #[test]
    fn the_innermost_span_wins_over_outer_ones() {
        let spans = [r#"{"session_id":"inner"}"#, r#"{"session_id":"outer"}"#];
        let line = flat_line("t".into(), "WARN", "x", Map::new(), spans);
        assert_eq!(line["session_id"], "inner");
        assert_eq!(line["message"], "");
    }
}
