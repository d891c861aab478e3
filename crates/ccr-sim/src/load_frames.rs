//! Pre-rendered frames for the load mode: realistic SDK messages padded to a
//! size, with a per-session sequence number that costs one `format!` to fill in.
//!
//! The sequence number travels in the SDK `uuid` (last group, 12 decimal
//! digits), so the frames stay valid SDK messages and a harness that sees them
//! again (e.g. on the supervisor's event stream) can check order and loss.

use serde_json::{json, Value};

use super::frames;

const SEQ_MARK: &str = "@@SEQ@@";
/// Every sequence number is rendered with this many digits.
const SEQ_DIGITS: usize = 12;
/// The fixed part of every load-mode `uuid`; the last group is the sequence number.
pub const UUID_PREFIX: &str = "00000000-0000-4000-8000-";

/// One frame kind split around its sequence number.
#[derive(Clone, Debug)]
struct Template {
    head: String,
    tail: String,
}

impl Template {
    fn render(&self, seq: u64) -> String {
        let mut s = String::with_capacity(self.head.len() + SEQ_DIGITS + self.tail.len());
        s.push_str(&self.head);
        s.push_str(&format!("{seq:0SEQ_DIGITS$}"));
        s.push_str(&self.tail);
        s
    }
}

/// The SDK frames one session floods with: a cycle of stream_event, assistant and result.
#[derive(Clone, Debug)]
pub struct SdkTemplates {
    cycle: Vec<Template>,
}

/// Where the padding text goes in each kind of frame.
fn kinds() -> Vec<(Value, &'static str)> {
    let delta = frames::stream_event(json!({
        "type":"content_block_delta","index":0,
        "delta":{"type":"text_delta","text":""}
    }));
    vec![
        (delta.clone(), "/event/delta/text"),
        (delta.clone(), "/event/delta/text"),
        (delta, "/event/delta/text"),
        (frames::assistant_text(""), "/message/content/0/text"),
        (frames::result_success(), "/result"),
    ]
}

fn template(mut frame: Value, pad_at: &str, session: &str, bytes: usize) -> Template {
    frame["session_id"] = Value::String(session.to_owned());
    frame["uuid"] = Value::String(format!("{UUID_PREFIX}{SEQ_MARK}"));
    if let Some(slot) = frame.pointer_mut(pad_at) {
        *slot = Value::String(String::new());
    }
    let rendered_len = frame.to_string().len() - SEQ_MARK.len() + SEQ_DIGITS;
    let pad = bytes.saturating_sub(rendered_len);
    if let Some(slot) = frame.pointer_mut(pad_at) {
        *slot = Value::String("lorem ipsum ".repeat(pad / 12 + 1)[..pad].to_owned());
    }
    let text = frame.to_string();
    let (head, tail) = text.split_once(SEQ_MARK).expect("mark is present");
    Template {
        head: head.to_owned(),
        tail: tail.to_owned(),
    }
}

impl SdkTemplates {
    /// Templates for `session`, each about `bytes` long (never below the bare frame).
    pub fn new(session: &str, bytes: usize) -> Self {
        let cycle = kinds()
            .into_iter()
            .map(|(frame, pad_at)| template(frame, pad_at, session, bytes))
            .collect();
        SdkTemplates { cycle }
    }

    /// The frame carrying sequence number `seq` (kinds rotate with `seq`).
    pub fn render(&self, seq: u64) -> String {
        self.cycle[(seq % self.cycle.len() as u64) as usize].render(seq)
    }
}

/// The sequence number carried in a load-mode `uuid`, if it is one.
pub fn seq_from_uuid(uuid: &str) -> Option<u64> {
    let digits = uuid.strip_prefix(UUID_PREFIX)?;
    if digits.len() != SEQ_DIGITS {
        return None;
    }
    digits.parse().ok()
}

/// The request id of prompt number `n` of `session`.
pub fn prompt_id(session: &str, n: u64) -> String {
    format!("{session}-p{n}")
}

/// A realistic tool use for prompt number `n`: the `assistant` tool_use frame and the prompt.
pub fn prompt_frames(session: &str, request_id: &str, n: u64) -> (String, String) {
    let input = json!({
        "command": format!("cargo test --workspace -- --test-threads=4 bench_case_{n}"),
        "description": "Run the workspace tests",
        "timeout": 120000
    });
    let tool_use_id = format!("toolu_{request_id}");
    let mut assistant = frames::assistant_tool_use(&tool_use_id, "Bash", &input);
    assistant["session_id"] = Value::String(session.to_owned());
    assistant["uuid"] = Value::String(format!("{UUID_PREFIX}{n:0SEQ_DIGITS$}"));
    let request = frames::can_use_tool("Bash", &input, &tool_use_id);
    let prompt = frames::control_request(request_id, request);
    (assistant.to_string(), prompt.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_requested_size_and_carry_the_sequence() {
        for bytes in [400, 800, 4096] {
            let t = SdkTemplates::new("b-17", bytes);
            for seq in 0..10 {
                let text = t.render(seq);
                assert_eq!(text.len(), bytes, "{bytes} {seq}: {text}");
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["session_id"], "b-17");
                assert_eq!(seq_from_uuid(v["uuid"].as_str().unwrap()), Some(seq));
                assert!(v["type"].is_string());
            }
        }
    }

    #[test]
    fn kinds_rotate_and_small_sizes_stay_valid() {
        let t = SdkTemplates::new("s", 10);
        let types: Vec<String> = (0..5)
            .map(|s| serde_json::from_str::<Value>(&t.render(s)).unwrap()["type"].to_string())
            .collect();
        assert!(types.contains(&"\"result\"".to_string()));
        assert!(types.contains(&"\"assistant\"".to_string()));
        assert!(types.contains(&"\"stream_event\"".to_string()));
    }

    #[test]
    fn uuid_sequence_parsing() {
        assert_eq!(
            seq_from_uuid("00000000-0000-4000-8000-000000000042"),
            Some(42)
        );
        assert_eq!(seq_from_uuid("00000000-0000-4000-8000-00000042"), None);
        assert_eq!(seq_from_uuid("a3b1c2d4-0000-4000-8000-000000000042"), None);
    }

    #[test]
    fn prompt_frames_are_a_tool_use_and_its_prompt() {
        let (assistant, prompt) = prompt_frames("b-1", &prompt_id("b-1", 7), 7);
        let a: Value = serde_json::from_str(&assistant).unwrap();
        let p: Value = serde_json::from_str(&prompt).unwrap();
        assert_eq!(a["type"], "assistant");
        assert_eq!(p["type"], "control_request");
        assert_eq!(p["request_id"], "b-1-p7");
        assert_eq!(p["request"]["subtype"], "can_use_tool");
        assert!(
            prompt.len() > 300 && prompt.len() < 4096,
            "{}",
            prompt.len()
        );
    }
}
