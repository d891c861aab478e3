//! HTTP as the harness uses it: JSON calls, the SSE event-stream parser and
//! subscriber, and the API answerers used when no policy rule can answer.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};

use super::stats::{sessions_view, SeqCheck, SessionsView};
use ccr_protocol::sse::SseParser;
use ccr_sim::load_frames::seq_from_uuid;

/// An awc client without a pool limit, for loopback calls.
pub fn client() -> awc::Client {
    let connector = awc::Connector::new().limit(0);
    awc::Client::builder()
        .connector(connector)
        .timeout(Duration::from_secs(60))
        .finish()
}

/// `GET url` → body (up to 1 GiB).
async fn get_body(c: &awc::Client, url: &str) -> anyhow::Result<bytes::Bytes> {
    let mut resp = c
        .get(url)
        .send()
        .await
        .map_err(|e| anyhow!("GET {url}: {e}"))?;
    resp.body()
        .limit(1 << 30)
        .await
        .map_err(|e| anyhow!("GET {url}: {e}"))
}

/// `GET url` → JSON.
pub async fn get_json(c: &awc::Client, url: &str) -> anyhow::Result<Value> {
    let body = get_body(c, url).await?;
    serde_json::from_slice(&body).with_context(|| format!("GET {url}: not JSON"))
}

/// The supervisor's `/metrics` text.
pub async fn metrics_text(c: &awc::Client, api: &str) -> anyhow::Result<String> {
    let url = format!("{api}/metrics");
    let body = get_body(c, &url).await?;
    String::from_utf8(body.to_vec()).with_context(|| format!("GET {url}: not UTF-8"))
}

/// `POST url` with an optional JSON body → (status, JSON or null).
pub async fn post_json(
    c: &awc::Client,
    url: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let req = c.post(url);
    let sent = match body {
        Some(b) => req.send_json(b).await,
        None => req.send().await,
    };
    let mut resp = sent.map_err(|e| anyhow!("POST {url}: {e}"))?;
    let bytes = resp.body().await.map_err(|e| anyhow!("POST {url}: {e}"))?;
    Ok((
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// The supervisor's session list.
pub async fn sessions(c: &awc::Client, api: &str) -> anyhow::Result<SessionsView> {
    Ok(sessions_view(
        &get_json(c, &format!("{api}/v1/sessions")).await?,
    ))
}

/// Finds the `(session, seq)` of every load-mode SDK frame in an SSE byte
/// stream by the markers the load mode puts in each frame (`"session_id":"`
/// and a `uuid` ending in the sequence number) instead of parsing each event:
/// the harness reads the flood on the same two cores as the supervisor, so its
/// own cost per event has to stay small. Only `data:` lines are looked at; the
/// first `session_id` in one is the event's own.
pub struct SeqScanner {
    /// The start of a line that continues in the next chunk.
    partial: Vec<u8>,
    session_key: memchr::memmem::Finder<'static>,
    uuid_key: memchr::memmem::Finder<'static>,
}

impl Default for SeqScanner {
    fn default() -> Self {
        Self {
            partial: Vec::new(),
            session_key: memchr::memmem::Finder::new(b"\"session_id\":\"").into_owned(),
            uuid_key: memchr::memmem::Finder::new(b"\"uuid\":\"").into_owned(),
        }
    }
}

impl SeqScanner {
    /// Feed the next chunk of the stream; `on` gets each complete frame's `(session, seq)`.
    pub fn push(&mut self, chunk: &[u8], mut on: impl FnMut(&str, u64)) {
        let mut rest = chunk;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            // A line that began in an earlier chunk is completed in `partial`.
            let line = if self.partial.is_empty() {
                &rest[..nl]
            } else {
                self.partial.extend_from_slice(&rest[..nl]);
                &self.partial
            };
            if let Some((session, seq)) = self.line_seq(line) {
                on(session, seq);
            }
            self.partial.clear();
            rest = &rest[nl + 1..];
        }
        self.partial.extend_from_slice(rest);
    }

    fn line_seq<'l>(&self, line: &'l [u8]) -> Option<(&'l str, u64)> {
        let data = line.strip_prefix(b"data: ")?;
        let string_at = |key: &memchr::memmem::Finder<'_>| {
            let from = key.find(data)? + key.needle().len();
            let len = memchr::memchr(b'"', &data[from..])?;
            std::str::from_utf8(&data[from..from + len]).ok()
        };
        let seq = seq_from_uuid(string_at(&self.uuid_key)?)?;
        Some((string_at(&self.session_key)?, seq))
    }
}

/// The body of an open event stream.
pub type EventStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>>>,
>;

/// Open `GET {api}/v1/events`; `None` when it does not answer 200.
pub async fn open_events(c: &awc::Client, api: &str) -> anyhow::Result<Option<EventStream>> {
    let resp = c
        .get(format!("{api}/v1/events"))
        .insert_header(("accept", "text/event-stream"))
        .timeout(Duration::from_secs(24 * 3600))
        .send()
        .await
        .map_err(|e| anyhow!("GET /v1/events: {e}"))?;
    if resp.status().as_u16() != 200 {
        return Ok(None);
    }
    Ok(Some(Box::pin(resp)))
}

/// Read the event stream on this thread, checking SDK frame order per session.
pub fn spawn_seq_checker(mut resp: EventStream) -> Rc<RefCell<SeqCheck>> {
    let check = Rc::new(RefCell::new(SeqCheck::default()));
    let out = check.clone();
    actix_rt::spawn(async move {
        let mut scanner = SeqScanner::default();
        while let Some(Ok(chunk)) = resp.next().await {
            let mut check = check.borrow_mut();
            scanner.push(&chunk, |session, seq| check.observe(session, seq));
        }
    });
    out
}

/// What an API answerer did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct AnswererStats {
    /// Answers POSTed.
    pub posted: u64,
    /// 200 replies.
    pub ok: u64,
    /// 409 replies (already answered / cancelled).
    pub conflicts: u64,
    /// Other failures.
    pub errors: u64,
    /// Each answer POST's time from sending to the whole reply read, in µs.
    #[serde(skip)]
    pub latencies_us: Vec<u64>,
}

fn answer(
    c: awc::Client,
    api: String,
    session: String,
    request: String,
    stats: Rc<RefCell<AnswererStats>>,
) {
    stats.borrow_mut().posted += 1;
    actix_rt::spawn(async move {
        let url = format!("{api}/v1/sessions/{session}/permissions/{request}");
        let body = json!({"behavior":"allow"});
        let sent = std::time::Instant::now();
        let r = post_json(&c, &url, Some(&body)).await;
        let took = sent.elapsed().as_micros() as u64;
        let mut s = stats.borrow_mut();
        s.latencies_us.push(took);
        match r {
            Ok((200, _)) => s.ok += 1,
            Ok((409, _)) => s.conflicts += 1,
            _ => s.errors += 1,
        }
    });
}

/// Answer every `permission_requested` event of the stream with allow.
pub fn spawn_sse_answerer(
    c: awc::Client,
    api: String,
    mut resp: EventStream,
) -> Rc<RefCell<AnswererStats>> {
    let stats = Rc::new(RefCell::new(AnswererStats::default()));
    let out = stats.clone();
    actix_rt::spawn(async move {
        let mut parser = SseParser::new();
        while let Some(Ok(chunk)) = resp.next().await {
            for ev in parser.push(&chunk) {
                let Ok(data) = serde_json::from_str::<Value>(&ev.data) else {
                    continue;
                };
                let kind = data["type"].as_str().unwrap_or(&ev.event);
                if kind != "permission_requested" {
                    continue;
                }
                if let (Some(s), Some(r)) =
                    (data["session_id"].as_str(), data["request_id"].as_str())
                {
                    answer(
                        c.clone(),
                        api.clone(),
                        s.to_owned(),
                        r.to_owned(),
                        stats.clone(),
                    );
                }
            }
        }
    });
    out
}

/// Poll `GET /v1/permissions` back to back and allow each new prompt once.
pub fn spawn_poll_answerer(c: awc::Client, api: String) -> Rc<RefCell<AnswererStats>> {
    let stats = Rc::new(RefCell::new(AnswererStats::default()));
    let out = stats.clone();
    actix_rt::spawn(async move {
        let mut seen: HashSet<(String, String)> = HashSet::new();
        let url = format!("{api}/v1/permissions");
        loop {
            let Ok(body) = get_json(&c, &url).await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            for p in body["permissions"].as_array().into_iter().flatten() {
                let (Some(s), Some(r)) = (p["session_id"].as_str(), p["request_id"].as_str())
                else {
                    continue;
                };
                if seen.insert((s.to_owned(), r.to_owned())) {
                    answer(
                        c.clone(),
                        api.clone(),
                        s.to_owned(),
                        r.to_owned(),
                        stats.clone(),
                    );
                }
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_are_found_in_events_split_anywhere() {
        let uuid = |n: u64| format!("00000000-0000-4000-8000-{n:012}");
        // Written out rather than built with `json!` (which sorts keys), so
        // that each frame's `uuid` is near the end of its line, as a real
        // frame may have it: a line split anywhere must still be read whole.
        let events = [
            format!(
                r#"{{"seq":1,"type":"sdk_message","session_id":"b-1","msg_type":"assistant","message":{{"type":"assistant","session_id":"b-1","uuid":"{}"}}}}"#,
                uuid(9)
            ),
            r#"{"seq":2,"type":"session_state","session_id":"b-2","state":"connected"}"#.to_owned(),
            format!(
                r#"{{"seq":3,"type":"sdk_message","session_id":"b-2","msg_type":"result","message":{{"type":"result","session_id":"b-2","uuid":"{}"}}}}"#,
                uuid(10)
            ),
            r#"{"seq":4,"type":"sdk_message","session_id":"b-3","msg_type":"user","message":{"type":"user","uuid":"not-a-load-frame"}}"#.to_owned(),
        ];
        let stream: String = events
            .iter()
            .enumerate()
            .map(|(i, e)| format!("id: {}\nevent: x\ndata: {e}\n\n", i + 1))
            .chain([": keep-alive\n\n".to_owned()])
            .collect();
        let want = vec![("b-1".to_owned(), 9), ("b-2".to_owned(), 10)];
        for size in [1, 7, 64, stream.len()] {
            let mut scanner = SeqScanner::default();
            let mut got = Vec::new();
            for chunk in stream.as_bytes().chunks(size) {
                scanner.push(chunk, |s, n| got.push((s.to_owned(), n)));
            }
            assert_eq!(got, want, "chunks of {size} bytes");
        }
    }
}
