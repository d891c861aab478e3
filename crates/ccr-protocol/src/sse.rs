//! A Server-Sent Events parser fed one line or one network chunk at a time (pure, no I/O).
//!
//! Follows the WHATWG event-stream rules the CLI needs: `field: value` lines
//! (one optional space after the colon is dropped), several `data` lines joined
//! by `\n`, a blank line dispatching the event, `:` comment lines (heartbeats)
//! ignored, and unknown fields ignored.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `event:` field (`message` when absent, per the spec).
    pub event: String,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

/// Accumulates fields until a blank line completes an event.
#[derive(Debug, Default)]
pub struct SseParser {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    /// Bytes of an unfinished line carried between [`SseParser::push`] calls.
    partial: Vec<u8>,
}

impl SseParser {
    /// A parser with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one line (with or without its `\n` / `\r\n`); returns an event when the line completes one.
    pub fn feed(&mut self, line: &str) -> Option<SseEvent> {
        let line = line
            .strip_suffix('\n')
            .unwrap_or(line)
            .trim_end_matches('\r');
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" => self.id = Some(value.to_owned()),
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }

    /// Feed a chunk of the byte stream (lines may span chunks); returns the events it completes.
    ///
    /// Linear in the chunk: complete lines are parsed in place, only a trailing
    /// partial line is copied.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(nl + 1);
            rest = tail;
            let ev = if self.partial.is_empty() {
                self.feed(&text(line))
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.feed(&text(&whole))
            };
            out.extend(ev);
        }
        self.partial.extend_from_slice(rest);
        out
    }

    /// Dispatch what is buffered when the stream ends without a final blank line.
    pub fn finish(&mut self) -> Option<SseEvent> {
        self.dispatch()
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let id = self.id.take();
        let event = self.event.take();
        // Per the spec an event without data is not dispatched.
        let data = self.data.take()?;
        Some(SseEvent {
            id,
            event: event.unwrap_or_else(|| "message".into()),
            data,
        })
    }
}

/// A line as text: borrowed when it is valid UTF-8 (checked with SIMD), else lossily replaced.
fn text(line: &[u8]) -> std::borrow::Cow<'_, str> {
    match simdutf8::basic::from_utf8(line) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out: Vec<SseEvent> = text
            .split_inclusive('\n')
            .filter_map(|l| p.feed(l))
            .collect();
        out.extend(p.finish());
        out
    }

    #[test]
    fn events_comments_and_multiline_data() {
        let text = ": heartbeat\n\nid: 42\nevent: permission_requested\ndata: {\"seq\":42}\n\n\
                    data:a\r\ndata: b\r\nretry: 10\r\n\r\n: bye\n";
        let events = parse(text);
        assert_eq!(
            events,
            vec![
                SseEvent {
                    id: Some("42".into()),
                    event: "permission_requested".into(),
                    data: "{\"seq\":42}".into()
                },
                SseEvent {
                    id: None,
                    event: "message".into(),
                    data: "a\nb".into()
                },
            ]
        );
    }

    #[test]
    fn chunks_split_anywhere_give_the_same_events() {
        let text =
            "id: 1\nevent: sdk_message\ndata: {\"a\":\"é\"}\n\n: comment\n\ndata: x\r\ndata: y\n\n";
        let whole = parse(text);
        assert_eq!(whole.len(), 2);
        // Every split point, including inside the two-byte 'é'.
        for cut in 0..=text.len() {
            let (a, b) = text.as_bytes().split_at(cut);
            let mut p = SseParser::new();
            let mut got = p.push(a);
            got.extend(p.push(b));
            assert_eq!(got, whole, "split at byte {cut}");
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_dropped() {
        let mut p = SseParser::new();
        let got = p.push(b"id: 7\ndata: a\xffb\n\n");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data, "a\u{FFFD}b");
        assert_eq!(got[0].id.as_deref(), Some("7"));
    }

    #[test]
    fn trailing_event_without_blank_line_and_empty_events() {
        assert_eq!(parse("event: x\n\n"), vec![]);
        let events = parse("data: last");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "last");
    }
}
