//! Routing what the session sends: its messages, its requests, its responses to the
//! supervisor's requests, and the frames that cannot be read.

use serde::Deserialize;
use tracing::{debug, info};

use super::RecentIds;
use super::{too_deep_notice, Output, Router, Waiting, MAX_JSON_DEPTH, RECENT_UUIDS};
use crate::events::Event;
use crate::registry::{Refusal, LIMIT_FRAME_BYTES, LIMIT_JSON_DEPTH, LIMIT_UNPARSEABLE};
use crate::telemetry::frames::{
    EchoDropped, FrameKind, FrameUnparseable, SdkMessageTooDeep, UnreadableFrame,
};
use ccr_protocol::scan::{depth_exceeds, HeadScanner, ScannedHead};
use ccr_protocol::session::InitializeState;
use ccr_protocol::{FrameError, Inbound, Unreadable};

#[derive(Deserialize)]
struct UserHead<'a> {
    #[serde(borrow)]
    uuid: Option<std::borrow::Cow<'a, str>>,
}

impl Router {
    /// Route one inbound text message.
    pub fn on_text(&mut self, text: &str, out: &mut impl Output) {
        self.watchdog.heard();
        match ccr_protocol::classify(text) {
            Err(error) => self.on_unparseable(text, error, out),
            Ok(Inbound::Sdk(msg)) => {
                if msg.msg_type == "user" && !self.first_sight(text) {
                    EchoDropped.emit(&mut self.counters, &self.metrics.frames);
                    return;
                }
                self.received(FrameKind::Sdk);
                let message = match depth_exceeds(text.as_bytes(), MAX_JSON_DEPTH) {
                    None => msg.raw,
                    Some(depth) => {
                        let len = text.len();
                        let msg_type = &msg.msg_type;
                        SdkMessageTooDeep {
                            depth,
                            len,
                            msg_type,
                        }
                        .emit(&mut self.counters, &self.metrics.frames);
                        too_deep_notice(msg_type, depth, len)
                    }
                };
                out.publish(Event::SdkMessage {
                    session_id: self.session_id.clone(),
                    msg_type: msg.msg_type,
                    message,
                });
            }
            Ok(Inbound::Cancel { request_id }) => {
                self.received(FrameKind::ControlCancelRequest);
                out.cancel(request_id);
            }
            Ok(Inbound::ControlResponse(resp)) => {
                self.received(FrameKind::ControlResponse);
                self.on_response(resp, out);
            }
            Ok(Inbound::KeepAlive) => self.received(FrameKind::KeepAlive),
            Ok(request) => {
                self.received(FrameKind::ControlRequest);
                self.on_request(request, out);
            }
        }
    }

    /// True the first time a user message's `uuid` is seen (or when it has none).
    fn first_sight(&mut self, text: &str) -> bool {
        match serde_json::from_str::<UserHead<'_>>(text) {
            Ok(UserHead { uuid: Some(uuid) }) => self
                .echoes
                .get_or_insert_with(|| Box::new(RecentIds::new(RECENT_UUIDS)))
                .insert(&uuid),
            _ => true,
        }
    }

    /// A control request of the session (live, replayed, or listed by `initialize`).
    pub(super) fn on_request(&mut self, request: Inbound, out: &mut impl Output) {
        match request {
            Inbound::PermissionPrompt(prompt) => out.prompt(prompt, None),
            Inbound::UnsupportedRequest { request_id, error } => {
                info!(%request_id, %error, "answering unsupported control request with an error");
                out.reply(ccr_protocol::error_response(&request_id, &error));
            }
            other => debug!(?other, "not a control request"),
        }
    }

    fn on_response(&mut self, resp: ccr_protocol::ControlResponse, out: &mut impl Output) {
        match self.take_waiting(&resp.request_id) {
            Some(Waiting::Interrupt(waiter)) => {
                let _ = waiter.send(resp.outcome);
            }
            Some(Waiting::Initialize) => {
                self.initialize_sent = None;
                self.on_initialized(resp, out)
            }
            None => {
                debug!(request_id = %resp.request_id, "control_response for nothing we wait for")
            }
        }
    }

    /// The `initialize` reply: what it lists is routed like replays (new prompts are added,
    /// restored ones confirmed, answered ones get their answer again). Nothing is concluded
    /// from what is *not* listed: a CLI that predates the lists omits them, and a prompt
    /// inherited from an earlier worker can be answerable without being listed.
    fn on_initialized(&mut self, resp: ccr_protocol::ControlResponse, out: &mut impl Output) {
        let absent = resp.pending.is_absent();
        self.initialize = match (&resp.outcome, absent) {
            (Err(_), true) => InitializeState::Failed,
            (_, true) => InitializeState::Unlisted,
            (_, false) => InitializeState::Listed,
        };
        if let Err(e) = &resp.outcome {
            info!(error = %e, "initialize answered with an error; relying on replays");
        }
        if absent {
            info!("initialize reply lists no pending requests (an older CLI); relying on replays");
            return;
        }
        let mut listed = 0;
        for entry in resp.pending.all() {
            listed += 1;
            let text = entry.to_string();
            match ccr_protocol::classify(&text) {
                Ok(
                    request @ (Inbound::PermissionPrompt(_) | Inbound::UnsupportedRequest { .. }),
                ) => self.on_request(request, out),
                Ok(other) => debug!(?other, "initialize listed something that is not a request"),
                Err(error) => self.on_unparseable(&text, error, out),
            }
        }
        info!(listed, "initialize reply: pending requests listed");
        out.initialized();
    }

    /// A message over `[ccr] max_frame_bytes` (its head scanned, never kept): counted, and
    /// answered by what it is.
    pub fn on_oversized(&mut self, head: ScannedHead, limit: usize, out: &mut impl Output) {
        self.watchdog.heard();
        let why = format!(
            "the request is {} bytes, over the supervisor's limit of {limit} bytes (max_frame_bytes)",
            head.bytes
        );
        let kind = FrameKind::Oversized;
        self.answer_unreadable(head, kind, &why, LIMIT_FRAME_BYTES, out);
    }

    /// A frame `classify` could not read: a `control_request` in it is still answered
    /// (too deep for the JSON parser, or malformed), anything else is skipped.
    fn on_unparseable(&mut self, text: &str, error: FrameError, out: &mut impl Output) {
        let maybe_request = memchr::memmem::find(text.as_bytes(), b"control_request").is_some();
        let head = maybe_request.then(|| HeadScanner::scan(text.as_bytes()));
        match head {
            Some(head) if head.max_depth > MAX_JSON_DEPTH => {
                let why = format!(
                    "the request nests {} levels deep, over the supervisor's JSON depth limit of {MAX_JSON_DEPTH}",
                    head.max_depth
                );
                let kind = FrameKind::TooDeep;
                self.answer_unreadable(head, kind, &why, LIMIT_JSON_DEPTH, out);
            }
            Some(head) if head.request_id.is_some() => {
                let why = format!("the request could not be parsed ({error})");
                let kind = FrameKind::Invalid;
                self.answer_unreadable(head, kind, &why, LIMIT_UNPARSEABLE, out);
            }
            _ => {
                let (error, len) = (&error, text.len());
                FrameUnparseable { error, len }.emit(&mut self.counters, &self.metrics.frames);
            }
        }
    }

    /// Answer what can be answered of an unreadable frame, counted as `kind` (never
    /// silently: logged and published as an error for the session either way).
    fn answer_unreadable(
        &mut self,
        head: ScannedHead,
        kind: FrameKind,
        why: &str,
        decided_by: &'static str,
        out: &mut impl Output,
    ) {
        let answer = ccr_protocol::unreadable(&head, why);
        let request_id = head.request_id.as_deref().unwrap_or("");
        let msg_type = head.msg_type.as_deref().unwrap_or("untyped");
        let what = match &answer {
            Unreadable::Skip => "skipped",
            Unreadable::Prompt { .. } => "prompt denied",
            Unreadable::Error { .. } => "answered with an error",
            Unreadable::Unanswered { .. } => "left for a client that can render it",
        };
        UnreadableFrame {
            session_id: &self.session_id,
            kind,
            len: head.bytes,
            request_id,
            msg_type,
            what,
            why,
        }
        .emit(&mut self.counters, &self.metrics.frames, &mut *out);
        match answer {
            Unreadable::Skip | Unreadable::Unanswered { .. } => {}
            Unreadable::Error { request_id, error } => {
                out.reply(ccr_protocol::error_response(&request_id, &error))
            }
            Unreadable::Prompt { prompt, message } => out.prompt(
                prompt,
                Some(Refusal {
                    decided_by,
                    message,
                    reason: why.to_owned(),
                }),
            ),
        }
    }
}
