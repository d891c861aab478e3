//! A constant-memory scan of a frame's head, for frames too large or too deep to parse.
//!
//! An oversized or deeply nested `control_request` must still be answered (a prompt
//! nobody answers is a session that hangs), so its `request_id` has to be found
//! without building the frame: [`HeadScanner`] is fed the frame in pieces (whole, or
//! fragment by fragment as they arrive) and keeps only a depth counter and a few short
//! captured strings — the top-level `type` and `request_id`, and the `subtype`,
//! `tool_name` and `tool_use_id` of the `request` object — wherever they appear.
//!
//! It is lenient on purpose: it does not validate the JSON (the frame is refused
//! anyway), it only must never panic, never grow with the input, and find the ids
//! in any well-formed frame. Push parsers such as `actson` buffer whole string values
//! and cap the depth, which is exactly what this scan must not do.

/// Longest key or value captured; longer ones are not captured (ids are UUIDs).
pub const CAPTURE_MAX: usize = 256;

/// What the scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScannedHead {
    /// The top-level `type`.
    pub msg_type: Option<String>,
    /// The top-level `request_id` (when a string).
    pub request_id: Option<String>,
    /// `request.subtype`.
    pub subtype: Option<String>,
    /// `request.tool_name`.
    pub tool_name: Option<String>,
    /// `request.tool_use_id`.
    pub tool_use_id: Option<String>,
    /// Deepest nesting of objects and arrays seen (1 for a flat object).
    pub max_depth: usize,
    /// Bytes scanned.
    pub bytes: usize,
}

/// Which captured field a string value belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Type,
    RequestId,
    Request,
    Subtype,
    ToolName,
    ToolUseId,
}

/// Where the scanner is inside a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Str {
    /// Not in a string.
    Out,
    /// In a string; `escape` after a backslash.
    In { escape: bool },
}

/// The incremental scanner (see the module docs).
#[derive(Debug, Default)]
pub struct HeadScanner {
    head: ScannedHead,
    depth: usize,
    string: Option<bool>,
    /// Inside the object that is the value of the top-level `request`.
    in_request: bool,
    /// The next string at depth 1 (or 2 inside `request`) is a key.
    expect_key: bool,
    /// The key whose value comes next, when it is one we capture.
    pending: Option<Field>,
    /// The field the current string is captured for (`None`: not captured).
    capturing: Option<Field>,
    /// The current string is a key at a depth we look at.
    capturing_key: bool,
    buf: Vec<u8>,
    /// The current captured string ran over [`CAPTURE_MAX`] or had an escape we do not decode.
    spoiled: bool,
}

impl HeadScanner {
    /// A scanner at the start of a frame.
    pub fn new() -> Self {
        Self::default()
    }

    /// Scan the next piece of the frame.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.head.bytes += bytes.len();
        for &b in bytes {
            self.byte(b);
        }
    }

    /// What was found so far.
    pub fn finish(self) -> ScannedHead {
        self.head
    }

    /// Scan a whole frame at once.
    pub fn scan(bytes: &[u8]) -> ScannedHead {
        let mut s = Self::new();
        s.feed(bytes);
        s.finish()
    }

    fn string_state(&self) -> Str {
        match self.string {
            None => Str::Out,
            Some(escape) => Str::In { escape },
        }
    }

    /// At a depth whose keys we read: the top object, or the `request` object.
    fn watched(&self) -> bool {
        self.depth == 1 || (self.depth == 2 && self.in_request)
    }

    fn byte(&mut self, b: u8) {
        match self.string_state() {
            Str::In { escape: true } => {
                self.string = Some(false);
                self.capture_escaped(b);
            }
            Str::In { escape: false } => match b {
                b'\\' => self.string = Some(true),
                b'"' => {
                    self.string = None;
                    self.end_string();
                }
                _ => self.capture(b),
            },
            Str::Out => self.structural(b),
        }
    }

    fn structural(&mut self, b: u8) {
        match b {
            b'"' => {
                self.string = Some(false);
                self.buf.clear();
                self.spoiled = false;
                if self.watched() && self.expect_key {
                    self.capturing_key = true;
                    self.capturing = None;
                } else {
                    self.capturing_key = false;
                    self.capturing = if self.watched() { self.pending } else { None };
                }
            }
            b'{' | b'[' => {
                let entering_request = self.depth == 1 && self.pending == Some(Field::Request);
                self.depth = self.depth.saturating_add(1);
                self.head.max_depth = self.head.max_depth.max(self.depth);
                if b == b'{' && entering_request {
                    self.in_request = true;
                }
                self.pending = None;
                self.expect_key = b == b'{' && self.watched();
            }
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth < 2 {
                    self.in_request = false;
                }
                self.pending = None;
                self.expect_key = false;
            }
            b':' => self.expect_key = false,
            b',' if self.watched() => {
                self.pending = None;
                self.expect_key = true;
            }
            _ => {}
        }
    }

    fn capture(&mut self, b: u8) {
        if !(self.capturing_key || self.capturing.is_some()) || self.spoiled {
            return;
        }
        if self.buf.len() >= CAPTURE_MAX {
            self.spoiled = true;
            return;
        }
        self.buf.push(b);
    }

    /// The byte after a backslash: `\"`, `\\` and `\/` are kept; any other escape
    /// spoils the capture (ids never carry them).
    fn capture_escaped(&mut self, b: u8) {
        match b {
            b'"' | b'\\' | b'/' => self.capture(b),
            _ => self.spoiled = true,
        }
    }

    fn end_string(&mut self) {
        let text = (!self.spoiled)
            .then(|| String::from_utf8(std::mem::take(&mut self.buf)).ok())
            .flatten();
        if self.capturing_key {
            self.capturing_key = false;
            self.pending = text.as_deref().and_then(|k| self.field(k));
            return;
        }
        let Some(field) = self.capturing.take() else {
            return;
        };
        self.pending = None;
        let slot = match field {
            Field::Type => &mut self.head.msg_type,
            Field::RequestId => &mut self.head.request_id,
            Field::Subtype => &mut self.head.subtype,
            Field::ToolName => &mut self.head.tool_name,
            Field::ToolUseId => &mut self.head.tool_use_id,
            Field::Request => return,
        };
        if slot.is_none() {
            *slot = text;
        }
    }

    fn field(&self, key: &str) -> Option<Field> {
        match (self.depth, key) {
            (1, "type") => Some(Field::Type),
            (1, "request_id") => Some(Field::RequestId),
            (1, "request") => Some(Field::Request),
            (2, "subtype") => Some(Field::Subtype),
            (2, "tool_name") => Some(Field::ToolName),
            (2, "tool_use_id") => Some(Field::ToolUseId),
            _ => None,
        }
    }
}

/// The nesting depth of a JSON text (objects and arrays) when it is over `limit`: a
/// cheap check, run on every SDK frame, for frames that common JSON clients cannot
/// parse. Counts opening brackets first with a SIMD search (measured faster than a
/// vectorized byte count on flood frames, which have few), so a frame with few of them
/// costs one pass.
pub fn depth_exceeds(text: &[u8], limit: usize) -> Option<usize> {
    if text.len() <= limit {
        return None;
    }
    let brackets = memchr::memchr2_iter(b'{', b'[', text).count();
    if brackets <= limit {
        return None;
    }
    let depth = HeadScanner::scan(text).max_depth;
    (depth > limit).then_some(depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(input: &str) -> String {
        format!(
            r#"{{"type":"control_request","request_id":"req-1","request":{{"subtype":"can_use_tool","tool_name":"Write","input":{input},"tool_use_id":"toolu_9"}}}}"#
        )
    }

    #[test]
    fn finds_the_ids_of_a_prompt_whole_or_byte_by_byte() {
        let text = prompt(r#"{"file_path":"/a","content":"x\"y\\z {[ \"request_id\":\"no\" ]}"}"#);
        let want = ScannedHead {
            msg_type: Some("control_request".into()),
            request_id: Some("req-1".into()),
            subtype: Some("can_use_tool".into()),
            tool_name: Some("Write".into()),
            tool_use_id: Some("toolu_9".into()),
            max_depth: 3,
            bytes: text.len(),
        };
        assert_eq!(HeadScanner::scan(text.as_bytes()), want);
        let mut s = HeadScanner::new();
        for b in text.as_bytes() {
            s.feed(std::slice::from_ref(b));
        }
        assert_eq!(s.finish(), want);
    }

    #[test]
    fn ids_after_a_huge_or_deep_input_are_still_found() {
        let big = format!(r#"{{"content":"{}"}}"#, "a".repeat(300_000));
        let text = format!(
            r#"{{"request":{{"input":{big},"subtype":"can_use_tool"}},"type":"control_request","request_id":"late"}}"#
        );
        let h = HeadScanner::scan(text.as_bytes());
        assert_eq!(h.request_id.as_deref(), Some("late"));
        assert_eq!(h.subtype.as_deref(), Some("can_use_tool"));
        let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
        let text = prompt(&deep);
        let h = HeadScanner::scan(text.as_bytes());
        assert_eq!(h.request_id.as_deref(), Some("req-1"));
        assert_eq!(h.tool_use_id.as_deref(), Some("toolu_9"));
        assert_eq!(h.max_depth, 20_002);
    }

    #[test]
    fn nested_keys_of_the_same_name_are_not_taken() {
        let text = r#"{"type":"user","message":{"request_id":"inner","type":"x"},"request":[{"subtype":"no"}]}"#;
        let h = HeadScanner::scan(text.as_bytes());
        assert_eq!(h.msg_type.as_deref(), Some("user"));
        assert_eq!(h.request_id, None);
        assert_eq!(
            h.subtype, None,
            "request is an array, not the request object"
        );
    }

    #[test]
    fn non_string_and_overlong_values_are_not_captured() {
        let long = "r".repeat(CAPTURE_MAX + 1);
        let text = format!(r#"{{"type":"control_request","request_id":"{long}"}}"#);
        assert_eq!(HeadScanner::scan(text.as_bytes()).request_id, None);
        let text = r#"{"type":"control_request","request_id":17,"request":{"subtype":"x\u0041"}}"#;
        let h = HeadScanner::scan(text.as_bytes());
        assert_eq!((h.request_id, h.subtype), (None, None));
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "",
            "}}}]]]",
            "\"",
            "\\",
            "{\"type\":",
            "[[[{\"a\":\"",
            "{\"request\":{\"subtype\"}}",
        ] {
            let _ = HeadScanner::scan(text.as_bytes());
        }
    }

    #[test]
    fn depth_check_is_exact_above_the_bracket_count() {
        assert_eq!(depth_exceeds(br#"{"a":[1,2,{"b":[]}]}"#, 3), Some(4));
        assert_eq!(depth_exceeds(br#"{"a":[1,2,{"b":[]}]}"#, 4), None);
        let siblings = format!("[{}]", "[],".repeat(500) + "[]");
        assert_eq!(
            depth_exceeds(siblings.as_bytes(), 128),
            None,
            "wide, not deep"
        );
        assert_eq!(
            depth_exceeds(br#"{"s":"[[[[[["}"#, 2),
            None,
            "brackets in strings"
        );
    }
}
