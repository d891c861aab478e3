//! Sequencing and bounded per-session history of events (pure data structure).
//!
//! Every event gets a process-wide, strictly increasing sequence number and is
//! serialized once. Each session keeps its recent events, bounded by count
//! AND bytes, and all sessions together by a total byte budget (the globally
//! oldest event goes first, found in O(1) from a queue of every retained
//! event in publication order), so a client can resume with `after=SEQ` or page a
//! transcript; what was evicted is remembered as a high-water mark so a resume
//! that falls into the gap is answered with an explicit `lagged`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use arrayvec::ArrayString;

use super::Event;

/// One published event: sequence number, time, the event and its JSON.
#[derive(Debug)]
pub struct Envelope {
    /// Strictly increasing across the process.
    pub seq: u64,
    /// Publication time.
    pub at: SystemTime,
    /// The event.
    pub event: Event,
    /// `{"seq":N,`
    seq_key: ArrayString<SEQ_ROOM>,
    /// `"at":..,"type":..,...`, serialized once for every reader (see [`Prepared`]).
    /// For an SDK message it stops at `"message":` and the frame itself is shared
    /// with the event.
    head: Head,
    /// The JSON has a raw CR or LF (only an SDK frame can: everything else is compact serde output).
    line_breaks: bool,
}

impl Envelope {
    /// The JSON in pieces, to be written one after the other: `{"seq":N,`, the
    /// head, and for an SDK message the frame exactly as received (shared, not
    /// copied) and `}`.
    pub fn json_parts(&self) -> [&str; 4] {
        let head = self.head.as_str();
        match &self.event {
            Event::SdkMessage { message, .. } => [&self.seq_key, head, message, "}"],
            _ => [&self.seq_key, head, "", ""],
        }
    }

    /// Whether the JSON has a raw CR or LF (whitespace between tokens of an SDK
    /// frame), which a line-based framing such as SSE must split on.
    pub fn has_line_breaks(&self) -> bool {
        self.line_breaks
    }

    /// Length of the JSON in bytes.
    pub fn json_len(&self) -> usize {
        self.json_parts().iter().map(|p| p.len()).sum()
    }

    /// Bytes a retained envelope holds: its JSON, plus a prompt's request kept beside it
    /// (an SDK frame is shared with the JSON, not held twice). History bounds count this,
    /// so `history_total_bytes` bounds memory, not just the JSON served.
    pub fn retained_len(&self) -> usize {
        let extra = match &self.event {
            Event::PermissionRequested { request, .. } => request.get().len(),
            _ => 0,
        };
        self.json_len() + extra
    }

    /// `{"seq":..,"at":..,"type":..,...}` in one piece (a copy).
    pub fn json(&self) -> String {
        self.json_parts().concat()
    }
}

/// Bytes of JSON head kept inside the envelope's own allocation: an SDK
/// message's (time, type, session id, message type) fits unless its ids are
/// unusually long. Retained envelopes are freed long after they were made,
/// when their memory has gone cold: with the head inside, an SDK event is two
/// allocations (the envelope and the shared frame) instead of three.
const HEAD_INLINE: usize = 192;

/// An envelope's JSON head: inline when it fits, else on the heap.
#[derive(Debug)]
enum Head {
    Inline(ArrayString<HEAD_INLINE>),
    Heap(String),
}

impl Head {
    fn as_str(&self) -> &str {
        match self {
            Head::Inline(s) => s,
            Head::Heap(s) => s,
        }
    }

    fn push_str(&mut self, v: &str) {
        match self {
            Head::Inline(s) => {
                if s.try_push_str(v).is_err() {
                    let mut heap = String::with_capacity(s.len() + v.len() + 64);
                    heap.push_str(s);
                    heap.push_str(v);
                    *self = Head::Heap(heap);
                }
            }
            Head::Heap(s) => s.push_str(v),
        }
    }
}

/// History bounds: per session, and for all sessions together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// At most this many events per session.
    pub events: usize,
    /// At most this many bytes of event JSON per session.
    pub bytes: usize,
    /// At most this many bytes of event JSON in all histories together.
    pub total_bytes: usize,
}

/// A retained envelope with what eviction needs, so evicting never reads the
/// (long cold) envelope itself under the hub lock.
#[derive(Debug)]
struct Kept {
    seq: u64,
    len: usize,
    env: Arc<Envelope>,
}

/// Retained envelopes, oldest first, and their bytes of JSON: the queue behind a
/// session's history and behind the readers' window.
#[derive(Debug, Default)]
struct Retained {
    events: VecDeque<Kept>,
    bytes: usize,
}

impl Retained {
    /// Keep `env` as the newest; returns the bytes it holds ([`Envelope::retained_len`]).
    fn push_back(&mut self, env: &Arc<Envelope>) -> usize {
        let len = env.retained_len();
        self.bytes += len;
        self.events.push_back(Kept {
            seq: env.seq,
            len,
            env: env.clone(),
        });
        len
    }

    /// Give up the oldest.
    fn pop_front(&mut self) -> Option<Kept> {
        let old = self.events.pop_front()?;
        self.bytes -= old.len;
        Some(old)
    }

    /// Over `max_events`, or over `max_bytes` while holding more than the newest
    /// (a single event larger than the bound is still kept).
    fn over(&self, max_events: usize, max_bytes: usize) -> bool {
        self.events.len() > max_events || (self.bytes > max_bytes && self.events.len() > 1)
    }
}

#[derive(Debug, Default)]
struct SessionHistory {
    kept: Retained,
    /// Highest sequence number evicted so far (0 = nothing evicted).
    evicted_up_to: u64,
}

/// What a resuming reader gets from history.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Retained events after the requested point, oldest first.
    pub events: Vec<Arc<Envelope>>,
    /// Set when events after the requested point were already evicted:
    /// the first sequence number still available (resume from there).
    pub lagged_from: Option<u64>,
}

/// Sequence counter plus the per-session histories.
#[derive(Debug)]
pub struct History {
    limits: HistoryLimits,
    next_seq: u64,
    /// Session id → its slot in `slots`.
    index: HashMap<Arc<str>, usize, foldhash::fast::RandomState>,
    /// Per-session histories; `None` is a free slot (its session was forgotten).
    slots: Vec<Option<SessionHistory>>,
    free: Vec<usize>,
    /// Bytes of event JSON retained in all sessions.
    total_bytes: usize,
    /// Events retained in all sessions.
    retained: usize,
    /// `(seq, slot)` of every event retained when it was published, oldest
    /// first. An entry goes stale when its session drops the event on its own
    /// limits or is forgotten: it is then older than its slot's oldest event
    /// (a reused slot only holds newer ones). Stale entries are skipped when
    /// they reach the front, and swept out when they outnumber live ones.
    /// 16 bytes per retained event, not counted in `total_bytes` (like the
    /// per-session queues' own entries).
    order: VecDeque<(u64, usize)>,
}

impl History {
    /// Empty history with these bounds.
    pub fn new(limits: HistoryLimits) -> Self {
        Self {
            limits,
            next_seq: 1,
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            total_bytes: 0,
            retained: 0,
            order: VecDeque::new(),
        }
    }

    /// Bytes of event JSON retained in all sessions.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Stamp, serialize and retain `event`.
    pub fn push(&mut self, event: Event, at: SystemTime) -> Arc<Envelope> {
        self.stamp(Prepared::new(event, at), &mut Vec::new())
    }

    /// Give a prepared event the next sequence number and retain it. Evicted
    /// envelopes are moved to `evicted`, so the caller can free them after
    /// releasing its lock. Cheap: the JSON was built by `Prepared::new` up to
    /// `{"seq":N,`, which is all that is formatted here.
    pub fn stamp(&mut self, p: Prepared, evicted: &mut Vec<Arc<Envelope>>) -> Arc<Envelope> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let Prepared {
            event,
            at,
            head,
            line_breaks,
        } = p;
        let mut seq_key = ArrayString::new();
        // `{"seq":` and at most 20 digits and a comma always fit.
        for piece in [SEQ_KEY, itoa::Buffer::new().format(seq), ","] {
            let _ = seq_key.try_push_str(piece);
        }
        let env = Arc::new(Envelope {
            seq,
            at,
            event,
            seq_key,
            head,
            line_breaks,
        });
        let slot = self.slot_of(env.event.session_id());
        let h = self.slots[slot].get_or_insert_with(SessionHistory::default);
        self.total_bytes += h.kept.push_back(&env);
        self.retained += 1;
        self.order.push_back((seq, slot));
        while h.kept.over(self.limits.events, self.limits.bytes) {
            self.total_bytes -= evict_front(h, evicted);
            self.retained -= 1;
        }
        self.evict_oldest(seq, evicted);
        if self.order.len() > 2 * self.retained + 1024 {
            self.sweep();
        }
        env
    }

    /// The slot of `session`'s history, taken (a free one first, left for the
    /// caller to fill) if it has none.
    fn slot_of(&mut self, session: &str) -> usize {
        if let Some(&slot) = self.index.get(session) {
            return slot;
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.index.insert(Arc::from(session), slot);
        slot
    }

    /// Whether `(seq, slot)` of `order` is still retained.
    fn live(slots: &[Option<SessionHistory>], seq: u64, slot: usize) -> bool {
        slots[slot]
            .as_ref()
            .and_then(|h| h.kept.events.front())
            .is_some_and(|oldest| oldest.seq <= seq)
    }

    /// Drop the stale entries of `order`.
    fn sweep(&mut self) {
        let slots = &self.slots;
        self.order
            .retain(|&(seq, slot)| Self::live(slots, seq, slot));
    }

    /// Evict the globally oldest events until the total fits, never the one
    /// just stamped (`newest`), so a single huge event is still retained alone.
    fn evict_oldest(&mut self, newest: u64, evicted: &mut Vec<Arc<Envelope>>) {
        while self.total_bytes > self.limits.total_bytes {
            let Some(&(seq, slot)) = self.order.front() else {
                return;
            };
            if seq == newest {
                return;
            }
            self.order.pop_front();
            // Live, the globally oldest event is also its session's oldest.
            // Emptied, a session keeps its high-water mark (for `lagged`).
            if let Some(h) = self.slots[slot].as_mut() {
                if h.kept.events.front().is_some_and(|k| k.seq == seq) {
                    self.total_bytes -= evict_front(h, evicted);
                    self.retained -= 1;
                }
            }
        }
    }

    /// Events after `after` (of one session, or of all, merged in order).
    pub fn backlog(&self, session: Option<&str>, after: u64) -> Backlog {
        let mut out = Backlog::default();
        let lag = |h: &SessionHistory, out: &mut Backlog| {
            if h.evicted_up_to > after {
                let first = h.kept.events.front().map_or(self.next_seq, |k| k.seq);
                out.lagged_from = Some(out.lagged_from.map_or(first, |f: u64| f.min(first)));
            }
            out.events.extend(
                h.kept
                    .events
                    .iter()
                    .filter(|k| k.seq > after)
                    .map(|k| k.env.clone()),
            );
        };
        match session {
            Some(id) => {
                if let Some(h) = self
                    .index
                    .get(id)
                    .and_then(|&slot| self.slots[slot].as_ref())
                {
                    lag(h, &mut out);
                }
            }
            None => {
                for h in self.slots.iter().flatten() {
                    lag(h, &mut out);
                }
                out.events.sort_by_key(|e| e.seq);
            }
        }
        out
    }

    /// Forget a session's history (it was removed).
    pub fn forget(&mut self, session: &str) {
        let Some(slot) = self.index.remove(session) else {
            return;
        };
        if let Some(h) = self.slots[slot].take() {
            self.total_bytes -= h.kept.bytes;
            self.retained -= h.kept.events.len();
        }
        self.free.push(slot);
    }
}

/// The most recent events in publication order, for live readers that each keep
/// their own cursor (the last sequence number they have looked at). It holds
/// only what some reader has yet to look at, bounded by count and by bytes of
/// JSON (the newest event is always kept), so its size follows the slowest
/// reader's lag. A reader whose next event was already dropped here has lagged.
#[derive(Debug)]
pub struct Recent {
    kept: Retained,
    max_events: usize,
    max_bytes: usize,
    /// Each joined reader's cursor, as last reported, by reader id.
    cursors: HashMap<u64, u64>,
    /// How many readers sit at each cursor; the first key is the slowest reader's.
    /// Both are O(log n) per read: with thousands of readers, a scan of every
    /// reader on every read (under the lock that publishing takes too) made one
    /// burst of events cost O(readers²), and answers waited behind it.
    at: BTreeMap<u64, usize>,
    next_reader: u64,
}

/// What a live reader gets from [`Recent::read`].
#[derive(Debug)]
pub enum Read {
    /// Events after the cursor (possibly none), and the new cursor: the last
    /// sequence number looked at, delivered or filtered out.
    Events(Vec<Arc<Envelope>>, u64),
    /// The reader's next events were already dropped: this many it can never get.
    Lagged(u64),
}

impl Recent {
    /// Empty, holding at most `max_events` events and `max_bytes` bytes of JSON.
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        Self {
            kept: Retained::default(),
            max_events: max_events.max(1),
            max_bytes,
            cursors: HashMap::new(),
            at: BTreeMap::new(),
            next_reader: 0,
        }
    }

    /// A new reader whose cursor is `cursor`; returns its id. The window keeps
    /// what it has yet to look at from now on.
    pub fn join(&mut self, cursor: u64) -> u64 {
        let id = self.next_reader;
        self.next_reader += 1;
        self.cursors.insert(id, cursor);
        *self.at.entry(cursor).or_insert(0) += 1;
        id
    }

    /// One reader fewer at `cursor`.
    fn unmark(&mut self, cursor: u64) {
        if let Some(n) = self.at.get_mut(&cursor) {
            *n -= 1;
            if *n == 0 {
                self.at.remove(&cursor);
            }
        }
    }

    /// Reader `id` has looked at everything up to `cursor`: events that no
    /// reader needs any more are moved to `evicted`.
    pub fn advance(&mut self, id: u64, cursor: u64, evicted: &mut Vec<Arc<Envelope>>) {
        let Some(old) = self.cursors.get_mut(&id) else {
            return;
        };
        if *old == cursor {
            return;
        }
        let old = std::mem::replace(old, cursor);
        self.unmark(old);
        *self.at.entry(cursor).or_insert(0) += 1;
        self.trim(evicted);
    }

    /// Reader `id` is gone; with no reader left the window empties.
    pub fn leave(&mut self, id: u64, evicted: &mut Vec<Arc<Envelope>>) {
        if let Some(cursor) = self.cursors.remove(&id) {
            self.unmark(cursor);
        }
        self.trim(evicted);
    }

    /// How many events the window holds now (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.kept.events.len()
    }

    /// Drop the events every reader has looked at (all of them when nobody reads).
    fn trim(&mut self, evicted: &mut Vec<Arc<Envelope>>) {
        let Some(&slowest) = self.at.keys().next() else {
            return self.clear(evicted);
        };
        while self.kept.events.front().is_some_and(|k| k.seq <= slowest) {
            if let Some(old) = self.kept.pop_front() {
                evicted.push(old.env);
            }
        }
    }

    /// Keep `env` (stamped after every event kept so far) if some reader will
    /// look at it; what no longer fits is moved to `evicted`, to be freed after
    /// the caller's lock. After a gap (events not pushed while nobody read) the
    /// window starts over at `env`.
    pub fn push(&mut self, env: &Arc<Envelope>, evicted: &mut Vec<Arc<Envelope>>) {
        if self.cursors.is_empty() {
            return;
        }
        if self
            .kept
            .events
            .back()
            .is_some_and(|k| k.seq + 1 != env.seq)
        {
            self.clear(evicted);
        }
        self.kept.push_back(env);
        while self.kept.over(self.max_events, self.max_bytes) {
            let Some(old) = self.kept.pop_front() else {
                break;
            };
            evicted.push(old.env);
        }
    }

    /// Drop every event (moved to `evicted`).
    fn clear(&mut self, evicted: &mut Vec<Arc<Envelope>>) {
        let kept = std::mem::take(&mut self.kept);
        evicted.extend(kept.events.into_iter().map(|k| k.env));
    }

    /// Up to `max` events after `cursor` (of one session, or all), looking at
    /// no more than `4 * max` events so that a filtered reader never holds the
    /// lock for long.
    pub fn read(&self, cursor: u64, session: Option<&str>, max: usize) -> Read {
        let Some(front) = self.kept.events.front().map(|k| k.seq) else {
            return Read::Events(Vec::new(), cursor);
        };
        if cursor.saturating_add(1) < front {
            return Read::Lagged(front - cursor - 1);
        }
        // Sequence numbers here are consecutive: the cursor's successor is at this index.
        let start = usize::try_from(cursor + 1 - front).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut last = cursor;
        for k in self
            .kept
            .events
            .iter()
            .skip(start)
            .take(max.saturating_mul(4))
        {
            if out.len() == max {
                break;
            }
            last = k.seq;
            if session.is_none_or(|id| id == k.env.event.session_id()) {
                out.push(k.env.clone());
            }
        }
        Read::Events(out, last)
    }
}

/// Move a session's oldest event to `evicted`; returns its bytes.
fn evict_front(h: &mut SessionHistory, evicted: &mut Vec<Arc<Envelope>>) -> usize {
    let Some(old) = h.kept.pop_front() else {
        return 0;
    };
    h.evicted_up_to = old.seq;
    evicted.push(old.env);
    old.len
}

/// `{"seq":`, and the most bytes `{"seq":N,` takes (the most digits a `u64` has).
const SEQ_KEY: &str = "{\"seq\":";
const SEQ_ROOM: usize = SEQ_KEY.len() + 20 + 1;

/// An event serialized up to its sequence number, built outside the hub lock.
#[derive(Debug)]
pub struct Prepared {
    event: Event,
    at: SystemTime,
    /// `"at":"..",<the event's own fields>}`; for an SDK message it stops at
    /// `"message":`, the frame is not copied.
    head: Head,
    line_breaks: bool,
}

impl Prepared {
    /// Serialize `event` (published at `at`) except for its sequence number.
    pub fn new(event: Event, at: SystemTime) -> Self {
        let head = envelope_head(at, &event);
        // Checked here, once, while the frame is still in this thread's cache.
        let line_breaks = match &event {
            Event::SdkMessage { message, .. } => {
                memchr::memchr2(b'\r', b'\n', message.as_bytes()).is_some()
            }
            _ => false,
        };
        Self {
            event,
            at,
            head,
            line_breaks,
        }
    }
}

/// The envelope JSON after `{"seq":N,`: `"at":"..",<the event's own fields>}`,
/// stopping at `"message":` for an SDK message.
fn envelope_head(at: SystemTime, event: &Event) -> Head {
    let mut out = Head::Inline(ArrayString::new());
    out.push_str("\"at\":\"");
    push_rfc3339_millis(&mut out, at);
    out.push_str("\"");
    if let Event::SdkMessage {
        session_id,
        msg_type,
        ..
    } = event
    {
        // The hot path: the frame was fully parsed (validated) when it was
        // classified, so it is spliced in as is instead of being parsed again.
        out.push_str(",\"type\":\"sdk_message\",\"session_id\":");
        push_json_str(&mut out, session_id);
        out.push_str(",\"msg_type\":");
        push_json_str(&mut out, msg_type);
        out.push_str(",\"message\":");
        return out;
    }
    // Serializing an `Event` cannot fail: string keys only, raw JSON validated on entry.
    let body = serde_json::to_string(event).unwrap_or_else(|e| {
        serde_json::json!({"type": "error", "message": format!("unserializable event: {e}")})
            .to_string()
    });
    let rest = body.strip_prefix('{').unwrap_or("}");
    let sep = if rest.starts_with('}') { "" } else { "," };
    out.push_str(sep);
    out.push_str(rest);
    out
}

/// Append `at` in RFC 3339 with milliseconds; formatted once per millisecond
/// per thread, since a busy session publishes many events in the same one.
fn push_rfc3339_millis(out: &mut Head, at: SystemTime) {
    use std::cell::RefCell;
    use std::fmt::Write as _;
    thread_local! {
        static LAST: RefCell<(Option<u128>, String)> = const { RefCell::new((None, String::new())) };
    }
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis());
    LAST.with_borrow_mut(|(last_ms, text)| {
        if ms.is_none() || *last_ms != ms {
            text.clear();
            let _ = write!(text, "{}", humantime::format_rfc3339_millis(at));
            *last_ms = ms;
        }
        out.push_str(text);
    });
}

/// Append `v` as a JSON string literal, escaped exactly as serde_json escapes it.
fn push_json_str(out: &mut Head, v: &str) {
    // Session ids and message types almost never need escaping: copy those as
    // they are (this runs for every frame of every session).
    if !v.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str("\"");
        out.push_str(v);
        out.push_str("\"");
        return;
    }
    // Serializing a str cannot fail.
    out.push_str(&serde_json::to_string(v).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(session: &str, n: usize) -> Event {
        Event::Error {
            session_id: Arc::from(session),
            message: "x".repeat(n),
        }
    }

    fn limits(events: usize, bytes: usize) -> HistoryLimits {
        HistoryLimits {
            events,
            bytes,
            total_bytes: usize::MAX,
        }
    }

    #[test]
    fn sdk_message_envelope_is_spliced_and_equals_the_serde_form() {
        let mut h = History::new(limits(10, 1 << 20));
        let raw =
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"hi \"there\""}]}}"#;
        let event = Event::SdkMessage {
            session_id: Arc::from("s\"1"),
            msg_type: "assistant".into(),
            message: Arc::from(raw),
        };
        let via_serde: serde_json::Value = serde_json::to_value(&event).unwrap();
        let env = h.push(event, SystemTime::UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_str(&env.json()).unwrap();
        assert_eq!(v["seq"], 1);
        assert_eq!(v["type"], via_serde["type"]);
        assert_eq!(v["session_id"], via_serde["session_id"]);
        assert_eq!(v["msg_type"], via_serde["msg_type"]);
        assert_eq!(v["message"], via_serde["message"]);
    }

    #[test]
    fn a_head_too_long_to_keep_inline_moves_to_the_heap_intact() {
        let mut h = History::new(limits(10, 1 << 20));
        for id in ["s".repeat(40), "\"".repeat(HEAD_INLINE)] {
            let env = h.push(
                Event::SdkMessage {
                    session_id: Arc::from(id.as_str()),
                    msg_type: "assistant".into(),
                    message: Arc::from(r#"{"type":"assistant"}"#),
                },
                SystemTime::UNIX_EPOCH,
            );
            let inline = matches!(env.head, Head::Inline(_));
            assert_eq!(inline, id.len() == 40, "{} bytes of id", id.len());
            let v: serde_json::Value = serde_json::from_str(&env.json()).unwrap();
            assert_eq!(v["session_id"], id.as_str());
            assert_eq!(v["at"], "1970-01-01T00:00:00.000Z");
            assert_eq!(env.json_len(), env.json().len());
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for v in [
            "b-1",
            "",
            "a\"b",
            "back\\slash",
            "tab\there",
            "nl\n",
            "\u{1}",
            "é✓",
            "\u{7f}",
        ] {
            let mut out = Head::Inline(ArrayString::new());
            out.push_str("x");
            push_json_str(&mut out, v);
            assert_eq!(
                out.as_str()[1..],
                serde_json::to_string(v).unwrap(),
                "{v:?}"
            );
        }
    }

    #[test]
    fn recent_reads_after_a_cursor_filters_and_reports_a_lag() {
        let mut h = History::new(limits(100, 1 << 20));
        let size = h.push(ev("a", 100), SystemTime::UNIX_EPOCH).json_len();
        let mut r = Recent::new(4, usize::MAX);
        // A reader that has looked at nothing after seq 1 (and never reports progress).
        r.join(1);
        let mut evicted = Vec::new();
        let seqs = |read: Read| match read {
            Read::Events(events, cursor) => {
                (events.iter().map(|e| e.seq).collect::<Vec<_>>(), cursor)
            }
            Read::Lagged(n) => panic!("lagged {n}"),
        };
        assert_eq!(seqs(r.read(0, None, 10)), (vec![], 0));
        for s in ["a", "b", "a", "b", "a", "b"] {
            r.push(&h.push(ev(s, 100), SystemTime::UNIX_EPOCH), &mut evicted);
        }
        // Seqs 2..=7 were pushed; 4 are kept.
        assert_eq!(evicted.len(), 2);
        assert_eq!(seqs(r.read(3, None, 10)), (vec![4, 5, 6, 7], 7));
        assert_eq!(seqs(r.read(5, None, 1)), (vec![6], 6));
        assert_eq!(seqs(r.read(3, Some("a"), 10)), (vec![4, 6], 7));
        assert_eq!(seqs(r.read(7, None, 10)), (vec![], 7));
        assert!(matches!(r.read(1, None, 10), Read::Lagged(2)));
        // A filtered reader looks at no more than 4 * max events per read.
        assert_eq!(seqs(r.read(3, Some("zzz"), 1)), (vec![], 7));

        // The byte bound, which always keeps the newest event.
        let mut r = Recent::new(100, 2 * size + 8);
        r.join(0);
        let three: Vec<u64> = (0..3)
            .map(|_| {
                let env = h.push(ev("a", 100), SystemTime::UNIX_EPOCH);
                r.push(&env, &mut evicted);
                env.seq
            })
            .collect();
        assert_eq!(seqs(r.read(three[0], None, 10)).0, three[1..]);
        assert!(matches!(r.read(three[0] - 1, None, 10), Read::Lagged(1)));
        let big = h.push(ev("a", 10 * size), SystemTime::UNIX_EPOCH);
        r.push(&big, &mut evicted);
        assert_eq!(
            seqs(r.read(big.seq - 1, None, 10)),
            (vec![big.seq], big.seq)
        );
        assert!(matches!(r.read(0, None, 10), Read::Lagged(_)));

        // After a gap the window starts over; a cursor from before the gap has lagged.
        let skipped = h.push(ev("a", 1), SystemTime::UNIX_EPOCH);
        let after = h.push(ev("a", 1), SystemTime::UNIX_EPOCH);
        r.push(&after, &mut evicted);
        assert_eq!(
            seqs(r.read(skipped.seq, None, 10)),
            (vec![after.seq], after.seq)
        );
        assert!(matches!(r.read(big.seq, None, 10), Read::Lagged(1)));
        r.clear(&mut evicted);
        assert_eq!(seqs(r.read(after.seq, None, 10)), (vec![], after.seq));
    }

    #[test]
    fn the_window_keeps_only_what_some_reader_has_yet_to_look_at() {
        let mut h = History::new(limits(100, 1 << 20));
        let mut r = Recent::new(100, usize::MAX);
        let mut evicted = Vec::new();
        let mut publish = |r: &mut Recent, evicted: &mut Vec<Arc<Envelope>>| {
            let env = h.push(ev("a", 10), SystemTime::UNIX_EPOCH);
            r.push(&env, evicted);
            env.seq
        };
        let kept = |r: &Recent| r.kept.events.iter().map(|k| k.seq).collect::<Vec<_>>();

        // Nobody reads: nothing is kept.
        publish(&mut r, &mut evicted);
        assert!(kept(&r).is_empty());

        let fast = r.join(1);
        let slow = r.join(1);
        for _ in 0..5 {
            publish(&mut r, &mut evicted);
        }
        assert_eq!(kept(&r), [2, 3, 4, 5, 6]);
        r.advance(fast, 6, &mut evicted);
        assert_eq!(
            kept(&r),
            [2, 3, 4, 5, 6],
            "the slow reader still needs them"
        );
        r.advance(slow, 3, &mut evicted);
        assert_eq!(kept(&r), [4, 5, 6]);
        assert_eq!(evicted.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
        // The slow one leaves: the fast one has seen everything.
        r.leave(slow, &mut evicted);
        assert!(kept(&r).is_empty());
        let next = publish(&mut r, &mut evicted);
        assert_eq!(kept(&r), [next]);
        r.leave(fast, &mut evicted);
        assert!(kept(&r).is_empty());
        publish(&mut r, &mut evicted);
        assert!(kept(&r).is_empty());
    }

    #[test]
    fn many_readers_at_one_cursor_hold_the_window_until_the_last_moves() {
        let mut h = History::new(limits(100, 1 << 20));
        let mut r = Recent::new(100, usize::MAX);
        let mut evicted = Vec::new();
        let ids: Vec<u64> = (0..10_000).map(|_| r.join(0)).collect();
        for _ in 0..3 {
            r.push(&h.push(ev("a", 10), SystemTime::UNIX_EPOCH), &mut evicted);
        }
        assert_eq!(r.at.len(), 1, "one entry for 10,000 readers at one cursor");
        for &id in &ids[1..] {
            r.advance(id, 3, &mut evicted);
        }
        assert_eq!(r.len(), 3, "the first reader still needs all three");
        r.advance(ids[0], 2, &mut evicted);
        assert_eq!(r.len(), 1);
        // Unknown ids and repeated cursors change nothing.
        r.advance(u64::MAX, 0, &mut evicted);
        r.advance(ids[0], 2, &mut evicted);
        assert_eq!(r.len(), 1);
        r.leave(ids[0], &mut evicted);
        assert_eq!(r.len(), 0);
        assert_eq!(r.at.len(), 1);
        for &id in &ids[1..] {
            r.leave(id, &mut evicted);
        }
        assert!(r.at.is_empty() && r.cursors.is_empty());
        assert_eq!(evicted.len(), 3);
    }

    #[test]
    fn sequence_is_global_and_json_carries_it() {
        let mut h = History::new(limits(10, 1 << 20));
        let a = h.push(ev("a", 1), SystemTime::UNIX_EPOCH);
        let b = h.push(ev("b", 1), SystemTime::UNIX_EPOCH);
        assert_eq!((a.seq, b.seq), (1, 2));
        let v: serde_json::Value = serde_json::from_str(&b.json()).unwrap();
        assert_eq!(v["seq"], 2);
        assert_eq!(v["type"], "error");
        assert_eq!(v["session_id"], "b");
        assert_eq!(v["at"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn the_room_in_front_fits_every_sequence_number() {
        let mut h = History::new(limits(10, 1 << 20));
        for seq in [9, 10, 99_999, u64::MAX - 1] {
            h.next_seq = seq;
            let env = h.push(ev("a", 3), SystemTime::UNIX_EPOCH);
            let json = env.json();
            assert!(
                json.starts_with(&format!("{{\"seq\":{seq},\"at\":")),
                "{json}"
            );
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(v["seq"], seq);
        }
    }

    #[test]
    fn each_event_gets_its_own_millisecond() {
        let mut h = History::new(limits(10, 1 << 20));
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let t1 = t0 + std::time::Duration::from_millis(1);
        let at = |env: Arc<Envelope>| {
            let v: serde_json::Value = serde_json::from_str(&env.json()).unwrap();
            v["at"].as_str().unwrap().to_owned()
        };
        assert_eq!(at(h.push(ev("a", 1), t0)), "2023-11-14T22:13:20.123Z");
        assert_eq!(at(h.push(ev("a", 1), t0)), "2023-11-14T22:13:20.123Z");
        assert_eq!(at(h.push(ev("a", 1), t1)), "2023-11-14T22:13:20.124Z");
        assert_eq!(at(h.push(ev("a", 1), t0)), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn backlog_filters_and_merges_in_order() {
        let mut h = History::new(limits(10, 1 << 20));
        for s in ["a", "b", "a", "b"] {
            h.push(ev(s, 1), SystemTime::UNIX_EPOCH);
        }
        let all: Vec<u64> = h.backlog(None, 1).events.iter().map(|e| e.seq).collect();
        assert_eq!(all, [2, 3, 4]);
        let a: Vec<u64> = h
            .backlog(Some("a"), 0)
            .events
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(a, [1, 3]);
        assert!(h.backlog(Some("zzz"), 0).events.is_empty());
    }

    #[test]
    fn bounded_by_count_and_bytes_with_lagged_mark() {
        let mut h = History::new(limits(3, 1 << 20));
        for _ in 0..5 {
            h.push(ev("a", 1), SystemTime::UNIX_EPOCH);
        }
        let b = h.backlog(Some("a"), 0);
        assert_eq!(b.events.len(), 3);
        assert_eq!(b.lagged_from, Some(3), "1 and 2 were evicted");
        assert_eq!(
            h.backlog(Some("a"), 2).lagged_from,
            None,
            "nothing missed after 2"
        );
        let mut h = History::new(limits(100, 300));
        for _ in 0..5 {
            h.push(ev("a", 100), SystemTime::UNIX_EPOCH);
        }
        let kept = h.backlog(Some("a"), 0).events;
        assert!(kept.iter().map(|e| e.json_len()).sum::<usize>() <= 300);
        assert!(!kept.is_empty());
    }

    #[test]
    fn the_total_budget_evicts_the_globally_oldest_first() {
        let total = |h: &History| -> usize {
            h.slots
                .iter()
                .flatten()
                .flat_map(|s| s.kept.events.iter().map(|k| k.len))
                .sum()
        };
        let one = History::new(limits(100, 1 << 20)).push(ev("a", 100), SystemTime::UNIX_EPOCH);
        // Events grow by a byte with each digit of their seq: leave a little slack.
        let size = one.json_len();
        let mut h = History::new(HistoryLimits {
            events: 100,
            bytes: 1 << 20,
            total_bytes: 4 * size + 16,
        });
        // a:1 b:2 a:3 b:4 fill the budget; c:5 and a:6 push out 1 and then 2.
        for s in ["a", "b", "a", "b", "c", "a"] {
            h.push(ev(s, 100), SystemTime::UNIX_EPOCH);
            assert!(h.total_bytes() <= 4 * size + 16);
            assert_eq!(h.total_bytes(), total(&h));
        }
        let seqs =
            |s: &str| -> Vec<u64> { h.backlog(Some(s), 0).events.iter().map(|e| e.seq).collect() };
        assert_eq!(seqs("a"), [3, 6]);
        assert_eq!(seqs("b"), [4]);
        assert_eq!(seqs("c"), [5]);
        assert_eq!(h.backlog(Some("a"), 0).lagged_from, Some(3));
        assert_eq!(h.backlog(Some("b"), 0).lagged_from, Some(4));
        assert_eq!(h.backlog(Some("c"), 0).lagged_from, None);

        // Per-session eviction leaves stale queue entries; the budget still holds and
        // still takes the oldest: b's 4 goes before c's 5.
        let mut h2 = History::new(HistoryLimits {
            events: 1,
            bytes: 1 << 20,
            total_bytes: 2 * size + 16,
        });
        for s in ["b", "c", "b", "b", "d"] {
            h2.push(ev(s, 100), SystemTime::UNIX_EPOCH);
            assert_eq!(h2.total_bytes(), total(&h2));
        }
        let all =
            |h: &History| -> Vec<u64> { h.backlog(None, 0).events.iter().map(|e| e.seq).collect() };
        assert_eq!(all(&h2), [4, 5]);
        // c was emptied by the budget: a resume of c is told it lagged.
        assert_eq!(h2.backlog(Some("c"), 0).lagged_from, Some(6));
        // An emptied session counts again with its next event.
        h2.push(ev("c", 100), SystemTime::UNIX_EPOCH);
        assert_eq!(all(&h2), [5, 6]);
        assert_eq!(h2.total_bytes(), total(&h2));

        // One event bigger than the whole budget is kept alone; forgetting frees it.
        h2.push(ev("e", 10 * size), SystemTime::UNIX_EPOCH);
        assert_eq!(all(&h2), [7]);
        h2.forget("e");
        assert_eq!(h2.total_bytes(), 0);
        h2.push(ev("f", 100), SystemTime::UNIX_EPOCH);
        h2.push(ev("e", 100), SystemTime::UNIX_EPOCH);
        h2.push(ev("g", 100), SystemTime::UNIX_EPOCH);
        assert_eq!(all(&h2), [9, 10]);
        assert_eq!(h2.total_bytes(), total(&h2));
    }

    #[test]
    fn the_queue_of_retained_events_stays_bounded_and_in_step() {
        // Per-session limits drop events without the total budget: their queue
        // entries go stale and are swept, so the queue never grows without bound.
        let mut h = History::new(limits(2, 1 << 20));
        for n in 0..10_000 {
            h.push(
                ev(if n % 3 == 0 { "a" } else { "b" }, 10),
                SystemTime::UNIX_EPOCH,
            );
            assert!(
                h.order.len() <= 2 * h.retained + 1024 + 1,
                "{}",
                h.order.len()
            );
        }
        assert_eq!(h.retained, 4);
        let live = h
            .order
            .iter()
            .filter(|&&(seq, slot)| History::live(&h.slots, seq, slot))
            .count();
        assert_eq!(live, 4, "every retained event has its live entry");
        // A forgotten session's slot is reused, and the stale entries it left
        // in front never evict the new owner's events out of turn.
        let size = History::new(limits(10, 1 << 20))
            .push(ev("a", 10), SystemTime::UNIX_EPOCH)
            .json_len();
        let mut h = History::new(HistoryLimits {
            events: 100,
            bytes: 1 << 20,
            total_bytes: 2 * size + 16,
        });
        let all =
            |h: &History| -> Vec<u64> { h.backlog(None, 0).events.iter().map(|e| e.seq).collect() };
        h.push(ev("a", 10), SystemTime::UNIX_EPOCH);
        h.push(ev("a", 10), SystemTime::UNIX_EPOCH);
        h.push(ev("d", 10), SystemTime::UNIX_EPOCH);
        assert_eq!(all(&h), [2, 3]);
        h.forget("a");
        h.push(ev("c", 10), SystemTime::UNIX_EPOCH);
        assert_eq!(h.slots.len(), 2, "c took a's slot");
        assert_eq!(all(&h), [3, 4]);
        // Over budget: a's stale entry for 2 is skipped, d's 3 is the oldest, not c's 4.
        h.push(ev("e", 10), SystemTime::UNIX_EPOCH);
        assert_eq!(all(&h), [4, 5]);
        assert_eq!(h.backlog(Some("d"), 0).lagged_from, Some(6));
        assert_eq!(h.retained, 2);
    }
}
