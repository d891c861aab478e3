//! Server-Sent Events framing of stream items, in body chunks of bounded size.

use bytes::Bytes;

use super::Item;

/// Append the SSE framing of `item` to `out` (multi-line JSON becomes several `data:` lines).
fn push_sse(out: &mut String, item: &Item) {
    // The pieces are JSON, where a line break can only be whitespace between
    // tokens: each one (CR or LF) starts a new `data:` line, which readers join
    // back with LF. Most JSON has none, and the envelope knows whether it has.
    fn data(out: &mut String, parts: &[&str], line_breaks: bool) {
        out.push_str("data: ");
        for part in parts {
            let mut from = 0;
            if line_breaks {
                for at in memchr::memchr2_iter(b'\r', b'\n', part.as_bytes()) {
                    out.push_str(&part[from..at]);
                    out.push_str("\ndata: ");
                    from = at + 1;
                }
            }
            out.push_str(&part[from..]);
        }
        out.push_str("\n\n");
    }
    match item {
        Item::Event(env) => {
            // The number is formatted once, for the `id:` line and the JSON.
            let parts = env.json_parts();
            out.push_str("id: ");
            out.push_str(parts.seq());
            out.push_str("\nevent: ");
            out.push_str(env.event.kind());
            out.push('\n');
            data(out, &parts.pieces(), env.has_line_breaks());
        }
        Item::Lagged(json) => {
            out.push_str("event: lagged\n");
            // Built by serde_json's compact writer: no raw line breaks.
            data(out, &[json], false);
        }
        Item::Heartbeat => out.push_str(": keep-alive\n\n"),
    }
}

/// Largest SSE body chunk, unless one event alone is bigger. actix-http keeps
/// polling a streaming body until 32 KiB is buffered, copies each chunk into its
/// write buffer, and after a flush replaces a write buffer that grew past 128 KiB
/// with a fresh 8 KiB one. Chunks this small keep that buffer under the limit (one
/// allocation reused, not regrown per chunk), and since [`SseChunks`] frames each
/// chunk only when the body asks for it, the chunk is still in cache when it is
/// copied: a whole batch framed up front (~280 KiB at 256 events of 1 KiB) was not.
pub(super) const SSE_CHUNK_BYTES: usize = 16 * 1024;

/// About how many bytes `push_sse` writes for `item` (exact unless the JSON has line breaks).
fn framed_len(item: &Item) -> usize {
    match item {
        // "id: ", the number, "\nevent: ", the type, "\ndata: ", the JSON, "\n\n".
        Item::Event(env) => {
            21 + crate::events::digits(env.seq) + env.event.kind().len() + env.json_len()
        }
        Item::Lagged(json) => json.len() + 24,
        Item::Heartbeat => 16,
    }
}

/// SSE framing of the items that were ready together, in order, as chunks of
/// at most [`SSE_CHUNK_BYTES`] (an item is never split across chunks), each
/// framed when it is asked for.
pub(super) struct SseChunks {
    items: std::vec::IntoIter<Item>,
}

impl SseChunks {
    pub(super) fn new(items: Vec<Item>) -> Self {
        Self {
            items: items.into_iter(),
        }
    }
}

impl Iterator for SseChunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let first = self.items.next()?;
        let mut size = framed_len(&first);
        let more = self
            .items
            .as_slice()
            .iter()
            .map(framed_len)
            .take_while(|&len| {
                let fits = size + len <= SSE_CHUNK_BYTES;
                size += if fits { len } else { 0 };
                fits
            })
            .count();
        let mut out = String::with_capacity(size);
        push_sse(&mut out, &first);
        for item in self.items.by_ref().take(more) {
            push_sse(&mut out, &item);
        }
        Some(Bytes::from(out))
    }
}
