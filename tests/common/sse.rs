//! A minimal Server-Sent Events reader over an awc response, for tests.

use std::time::Duration;

use awc::ClientResponse;
use bytes::BytesMut;
use futures_util::StreamExt;

/// One parsed SSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub event: String,
    pub data: serde_json::Value,
}

/// Reads events from a streaming response.
pub struct SseReader<S> {
    resp: ClientResponse<S>,
    buf: BytesMut,
}

impl<S> SseReader<S>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    pub fn new(resp: ClientResponse<S>) -> Self {
        Self {
            resp,
            buf: BytesMut::new(),
        }
    }

    /// The next event (comments skipped); `None` when the stream ended.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        loop {
            if let Some(pos) = find(&self.buf, b"\n\n") {
                let block = self.buf.split_to(pos + 2);
                let text = String::from_utf8_lossy(&block).into_owned();
                let (mut id, mut event, mut data) = (None, String::from("message"), Vec::new());
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v.to_owned());
                    }
                }
                if data.is_empty() {
                    continue; // a comment / heartbeat
                }
                let data = serde_json::from_str(&data.join("\n")).expect("SSE data is JSON");
                return Some(SseEvent { id, event, data });
            }
            match tokio::time::timeout(wait, self.resp.next()).await {
                Ok(Some(Ok(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(_) => return None,
                Err(_) => panic!("no SSE event within {wait:?}"),
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
