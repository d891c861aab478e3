//! One session's stream relayed from its owner onto a WebSocket: the owner's Server-Sent
//! Events parsed back into each event's JSON ([`SseParser`], pure), each sent as one text
//! message, as this instance's own WebSocket streams send them. The socket's pings follow
//! this instance's `stream_heartbeat` (the owner's heartbeats only keep the relay alive).

use std::convert::Infallible;

use actix::{ActorContext as _, StreamHandler};
use actix_web_actors::ws;
use futures_util::stream::{self, Stream, StreamExt};

use super::socket::EventSocket;

/// What the owner's stream gave.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Relayed {
    /// An event's JSON (or a `lagged` notice's).
    Text(String),
    /// A comment: the owner's heartbeat.
    Heartbeat,
}

/// Largest event held while its end has not come: twice the largest SDK frame a session
/// may send (`[ccr] max_frame_bytes` at its bound), for its SSE framing, and room for the
/// event's own fields. A bigger one, which no owner publishes, ends the relay.
const MAX_EVENT_BYTES: usize = 2 * crate::config::MAX_MAX_FRAME_BYTES + (1 << 20);

/// The owner's stream exceeded [`MAX_EVENT_BYTES`] without ending an event.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TooBig;

/// Server-Sent Events, as an instance writes them (lines end with LF; an event ends with
/// an empty line), cut back into events.
#[derive(Default)]
pub(super) struct SseParser {
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no event's end (each byte is looked at once).
    scanned: usize,
}

impl SseParser {
    /// The events that `chunk` completes, in order.
    pub(super) fn push(&mut self, chunk: &[u8]) -> Result<Vec<Relayed>, TooBig> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        // An end ("\n\n") may straddle the last chunk's last byte.
        let mut from = self.scanned.saturating_sub(1);
        while let Some(at) = memchr::memmem::find(&self.buf[from..], b"\n\n") {
            let end = from + at;
            if let Some(item) = event(&self.buf[start..end]) {
                out.push(item);
            }
            start = end + 2;
            from = start;
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        if self.buf.len() > MAX_EVENT_BYTES {
            return Err(TooBig);
        }
        Ok(out)
    }
}

/// One event's lines: its `data:` lines joined with LF, or a heartbeat for comments only.
/// `id:` and `event:` are left out (the JSON holds both).
fn event(block: &[u8]) -> Option<Relayed> {
    let Ok(text) = std::str::from_utf8(block) else {
        tracing::warn!("the owner's event stream sent an event that is not UTF-8; skipped");
        return None;
    };
    let mut data: Option<String> = None;
    let mut comment = false;
    for line in text.split('\n') {
        if let Some(rest) = line.strip_prefix("data:") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(rest);
                }
                None => data = Some(rest.to_owned()),
            }
        } else if line.starts_with(':') {
            comment = true;
        }
    }
    data.map(Relayed::Text)
        .or(comment.then_some(Relayed::Heartbeat))
}

/// The owner's stream `body` as the items of a WebSocket reader, with a heartbeat of this
/// instance's every `heartbeat` instead of the owner's; it ends where the body ends, or at
/// an event over [`MAX_EVENT_BYTES`].
pub(super) fn items(
    body: impl Stream<Item = Result<bytes::Bytes, Infallible>> + 'static,
    heartbeat: std::time::Duration,
) -> impl Stream<Item = Relayed> + 'static {
    let start = tokio::time::Instant::now() + heartbeat;
    let mut tick = tokio::time::interval_at(start, heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let beats = stream::unfold(tick, |mut tick| async move {
        tick.tick().await;
        Some((Some(Relayed::Heartbeat), tick))
    });
    // The owner's events, then `None` once its body ends: the socket's stream ends there.
    let events = owner_events(body)
        .filter(|item| std::future::ready(*item != Relayed::Heartbeat))
        .map(Some)
        .chain(stream::once(std::future::ready(None)));
    stream::select(events, beats)
        .take_while(|item| std::future::ready(item.is_some()))
        .filter_map(std::future::ready)
}

/// The owner's stream `body` as events, until it ends or sends one over
/// [`MAX_EVENT_BYTES`].
fn owner_events(
    body: impl Stream<Item = Result<bytes::Bytes, Infallible>> + 'static,
) -> impl Stream<Item = Relayed> + 'static {
    body.scan(SseParser::default(), |parser, chunk| {
        let Ok(chunk) = chunk;
        let items = parser.push(&chunk).map_err(|TooBig| {
            tracing::warn!(
                max_bytes = MAX_EVENT_BYTES,
                "the owner's event stream sent an event too big to relay; ending the relay"
            );
        });
        std::future::ready(items.ok())
    })
    .flat_map(stream::iter)
}

impl StreamHandler<Relayed> for EventSocket {
    fn handle(&mut self, item: Relayed, ctx: &mut Self::Context) {
        match item {
            Relayed::Text(json) => ctx.text(json),
            Relayed::Heartbeat => self.beat(ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The owner ended the stream (a handover, a shutdown) or fell silent: the reader
        // reconnects and finds the new owner.
        ctx.close(Some(ws::CloseCode::Away.into()));
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Relayed {
        Relayed::Text(s.to_owned())
    }

    #[test]
    fn events_come_out_whole_however_the_chunks_cut_them() {
        let sse = "id: 7\nevent: sdk_message\ndata: {\"seq\":7,\"a\":1}\n\n\
                   : keep-alive\n\n\
                   event: lagged\ndata: {\"type\":\"lagged\"}\n\n\
                   id: 8\nevent: sdk_message\ndata: {\"seq\":8,\ndata:  \"b\":[\ndata: ]}\n\n";
        let want = vec![
            text("{\"seq\":7,\"a\":1}"),
            Relayed::Heartbeat,
            text("{\"type\":\"lagged\"}"),
            text("{\"seq\":8,\n \"b\":[\n]}"),
        ];
        for cut in 1..sse.len() {
            let mut p = SseParser::default();
            let mut got = p.push(&sse.as_bytes()[..cut]).unwrap();
            got.extend(p.push(&sse.as_bytes()[cut..]).unwrap());
            assert_eq!(got, want, "cut at {cut}");
        }
        let mut p = SseParser::default();
        let got: Vec<Relayed> = sse
            .as_bytes()
            .iter()
            .flat_map(|b| p.push(std::slice::from_ref(b)).unwrap())
            .collect();
        assert_eq!(got, want, "byte by byte");
    }

    #[test]
    fn an_unfinished_event_is_held_and_a_runaway_one_ends_the_relay() {
        let mut p = SseParser::default();
        assert_eq!(p.push(b"id: 1\ndata: {\"x\":").unwrap(), vec![]);
        assert_eq!(p.push(b"1}\n\n").unwrap(), vec![text("{\"x\":1}")]);
        let big = vec![b'x'; MAX_EVENT_BYTES];
        assert_eq!(p.push(b"data: ").unwrap(), vec![]);
        assert_eq!(p.push(&big), Err(TooBig));
    }

    #[actix_rt::test]
    async fn the_items_end_with_the_owner_s_body_and_beat_on_this_instance_s_time() {
        let hour = std::time::Duration::from_secs(3600);
        let body = stream::iter(
            [
                "data: {\"a\":1}\n\n: ka",
                "\n\ndata: {\"b\":2}\n\ndata: {\"c\"",
            ]
            .map(|c| Ok(bytes::Bytes::from(c))),
        );
        let got: Vec<Relayed> = items(body, hour).collect().await;
        assert_eq!(
            got,
            vec![text("{\"a\":1}"), text("{\"b\":2}")],
            "the owner's heartbeats are not this socket's"
        );
        let quiet =
            stream::iter([Ok(bytes::Bytes::from("data: {\"a\":1}\n\n"))]).chain(stream::pending());
        let got: Vec<Relayed> = items(quiet, std::time::Duration::from_millis(10))
            .take(3)
            .collect()
            .await;
        assert_eq!(
            got,
            vec![text("{\"a\":1}"), Relayed::Heartbeat, Relayed::Heartbeat]
        );
    }
}
