//! How the simulated worker reacts: client frames, prompts, cancels and POSTed user messages.

use actix::Addr;
use serde_json::Value;

use super::conn::WsConn;
use super::frames;
use super::state::{Entry, Outcome, Outstanding, Shared};
use super::wire::WireEvent;
use super::{InitializeMode, InterruptMode, SimEvent};

/// Why a POST to `/events` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PostError {
    /// No such session.
    #[error("session not found")]
    NotFound,
    /// Missing or wrong bearer token.
    #[error("invalid bearer token")]
    Unauthorized,
    /// The body is not `{"events":[...]}` with well-formed user messages.
    #[error("malformed body: {0}")]
    Malformed(String),
}

impl Entry {
    /// Record a prompt for replay (replacing an older frame with the same id).
    pub(crate) fn track(&mut self, request_id: &str, frame: String) {
        self.outstanding.retain(|o| o.request_id != request_id);
        self.outstanding.push(Outstanding {
            request_id: request_id.to_owned(),
            frame,
        });
    }

    /// Stop tracking `request_id`; the script's current prompt gets `outcome`. True if it was outstanding.
    pub(crate) fn settle(&mut self, request_id: &str, outcome: Outcome) -> bool {
        let before = self.outstanding.len();
        self.outstanding.retain(|o| o.request_id != request_id);
        let was = self.outstanding.len() != before;
        if let Some(cur) = &mut self.run.current {
            if cur.request_id == request_id && cur.outcome.is_none() {
                cur.outcome = Some(outcome);
                self.bump();
            }
        }
        was
    }
}

impl Shared {
    /// Record a client text/binary frame that arrived on connection `conn` and
    /// compute the frames to send back at once.
    pub(crate) fn on_client_frame(
        &self,
        id: &str,
        conn: u64,
        raw: String,
        frame: Value,
    ) -> Vec<Value> {
        let mut st = self.lock();
        let e = st.entry(id);
        if self.keep_received {
            e.received.push(frame.clone());
            e.received_raw.push(raw);
        }
        self.emit(SimEvent::Received {
            session: id.to_owned(),
            frame: frame.clone(),
        });
        match frame.get("type").and_then(Value::as_str) {
            Some("control_response") => {
                if let Some(answer) = self.on_answer(id, e, conn, &frame) {
                    st.record(id, answer);
                }
                Vec::new()
            }
            Some("control_request") => on_request(id, e, &frame),
            _ => Vec::new(),
        }
    }

    /// Settle the prompt an answer is for; returns its wire record (`None` without a request id).
    fn on_answer(&self, id: &str, e: &mut Entry, conn: u64, frame: &Value) -> Option<WireEvent> {
        let body = frame.get("response")?;
        let request_id = body.get("request_id").and_then(Value::as_str)?;
        let record = |settled| WireEvent::Answered {
            request_id: request_id.to_owned(),
            conn,
            body: body.clone(),
            settled,
        };
        if !e.outstanding.iter().any(|o| o.request_id == request_id) {
            tracing::debug!(
                session = id,
                request_id,
                "answer for unknown prompt ignored"
            );
            return Some(record(false));
        }
        let (outcome, response) = match body.get("subtype").and_then(Value::as_str) {
            Some("error") => {
                let msg = match body.get("error") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                (Outcome::Failed(msg), body.clone())
            }
            _ => {
                let inner = body.get("response").cloned().unwrap_or(Value::Null);
                (Outcome::Answered(inner.clone()), inner)
            }
        };
        e.settle(request_id, outcome);
        self.emit(SimEvent::Answered {
            session: id.to_owned(),
            request_id: request_id.to_owned(),
            response,
        });
        Some(record(true))
    }

    /// Send (if live) and track a prompt; returns the frame and the live connection.
    pub(crate) fn prompt(
        &self,
        id: &str,
        request_id: &str,
        request: Value,
    ) -> (String, Option<Addr<WsConn>>) {
        let frame = frames::control_request(request_id, request).to_string();
        let mut st = self.lock();
        let e = st.entry(id);
        e.track(request_id, frame.clone());
        let live = e.live.as_ref().map(|l| (l.conn_id, l.addr.clone()));
        st.record(
            id,
            WireEvent::Prompted {
                request_id: request_id.to_owned(),
                conn: live.as_ref().map(|(c, _)| *c),
            },
        );
        (frame, live.map(|(_, addr)| addr))
    }

    /// Stop tracking a prompt; returns the cancel frame and the live connection.
    pub(crate) fn cancel(&self, id: &str, request_id: &str) -> (String, Option<Addr<WsConn>>) {
        let mut st = self.lock();
        let e = st.entry(id);
        e.settle(request_id, Outcome::Cancelled);
        let live = e.live.as_ref().map(|l| (l.conn_id, l.addr.clone()));
        if let Some((conn, _)) = &live {
            st.record(
                id,
                WireEvent::Cancelled {
                    request_id: request_id.to_owned(),
                    conn: Some(*conn),
                },
            );
        }
        let frame = frames::cancel_request(request_id).to_string();
        (frame, live.map(|(_, addr)| addr))
    }

    /// Withdraw an outstanding prompt only if a connection is live to carry the
    /// cancel; returns the frame, the connection and its number, or `None`
    /// (nothing changed) when the prompt is not outstanding or nothing is live.
    pub(crate) fn cancel_live(
        &self,
        id: &str,
        request_id: &str,
    ) -> Option<(String, Addr<WsConn>, u64)> {
        let mut st = self.lock();
        let e = st.sessions.get_mut(id)?;
        let (conn, addr) = e.live.as_ref().map(|l| (l.conn_id, l.addr.clone()))?;
        if !e.settle(request_id, Outcome::Cancelled) {
            return None;
        }
        st.record(
            id,
            WireEvent::Cancelled {
                request_id: request_id.to_owned(),
                conn: Some(conn),
            },
        );
        Some((frames::cancel_request(request_id).to_string(), addr, conn))
    }

    /// Withdraw an outstanding prompt while no connection is live (no frame is
    /// sent; it is simply not replayed any more). False when something is live
    /// or the prompt is not outstanding.
    pub(crate) fn withdraw_unseen(&self, id: &str, request_id: &str) -> bool {
        let mut st = self.lock();
        let Some(e) = st.sessions.get_mut(id) else {
            return false;
        };
        if e.live.is_some() || !e.settle(request_id, Outcome::Cancelled) {
            return false;
        }
        st.record(
            id,
            WireEvent::Cancelled {
                request_id: request_id.to_owned(),
                conn: None,
            },
        );
        true
    }

    /// Validate and record a POSTed events body.
    pub(crate) fn post_events(
        &self,
        id: &str,
        bearer: Option<&str>,
        body: &[u8],
    ) -> Result<(), PostError> {
        let mut st = self.lock();
        let e = st
            .sessions
            .get_mut(id)
            .filter(|e| e.token.is_some())
            .ok_or(PostError::NotFound)?;
        if bearer != e.token.as_deref() {
            return Err(PostError::Unauthorized);
        }
        let body: Value =
            serde_json::from_slice(body).map_err(|err| PostError::Malformed(err.to_string()))?;
        let users = count_user_messages(&body).map_err(PostError::Malformed)?;
        e.posted.push(body.clone());
        e.run.user_msgs += users;
        let echoes = user_messages(&body, id);
        for (uuid, _) in &echoes {
            e.queued.push(uuid.clone());
        }
        let echo_to = (e.echo_posts > 0)
            .then(|| e.live.as_ref().map(|l| l.addr.clone()))
            .flatten();
        if let Some(addr) = echo_to {
            for (_, echo) in &echoes {
                for _ in 0..e.echo_posts {
                    addr.do_send(super::conn::Out::Text(echo.to_string()));
                }
            }
        }
        e.bump();
        self.emit(SimEvent::Posted {
            session: id.to_owned(),
            body,
        });
        Ok(())
    }
}

/// The user messages of an events body as the session echoes them: `(uuid, frame)`.
fn user_messages(body: &Value, session: &str) -> Vec<(String, Value)> {
    let events = body.get("events").and_then(Value::as_array);
    events
        .into_iter()
        .flatten()
        .filter(|ev| ev.get("type").and_then(Value::as_str) == Some("user"))
        .filter_map(|ev| {
            let uuid = ev.get("uuid").and_then(Value::as_str)?.to_owned();
            let mut echo = ev.clone();
            echo["session_id"] = Value::from(session);
            Some((uuid, echo))
        })
        .collect()
}

/// The `initialize` reply per the session's mode (PROTOCOL §6).
fn on_initialize(e: &Entry, request_id: &str) -> Vec<Value> {
    match e.init_mode {
        InitializeMode::Ignore => Vec::new(),
        InitializeMode::Error => vec![frames::control_error(request_id, "initialize failed")],
        InitializeMode::Omit => vec![frames::control_success(
            request_id,
            serde_json::json!({"commands": []}),
        )],
        InitializeMode::Lists => {
            let mut lists: [Vec<Value>; 3] = Default::default();
            for o in &e.outstanding {
                let Ok(frame) = serde_json::from_str::<Value>(&o.frame) else {
                    continue;
                };
                let slot = match frame.pointer("/request/subtype").and_then(Value::as_str) {
                    Some("elicitation") => 1,
                    Some("request_user_dialog") => 2,
                    _ => 0,
                };
                lists[slot].push(frame);
            }
            let [permission, elicitation, dialog] = lists;
            let mut reply =
                frames::control_success(request_id, serde_json::json!({"commands": []}));
            reply["response"]["pending_permission_requests"] = Value::from(permission);
            reply["response"]["pending_elicitation_requests"] = Value::from(elicitation);
            reply["response"]["pending_user_dialog_requests"] = Value::from(dialog);
            vec![reply]
        }
    }
}

/// Handle a client `control_request`: `initialize` and interrupts per mode, everything
/// else is unsupported.
fn on_request(id: &str, e: &mut Entry, frame: &Value) -> Vec<Value> {
    let Some(request_id) = frame.get("request_id").and_then(Value::as_str) else {
        return Vec::new();
    };
    let subtype = frame
        .pointer("/request/subtype")
        .and_then(Value::as_str)
        .unwrap_or("");
    if subtype == "initialize" {
        return on_initialize(e, request_id);
    }
    if subtype != "interrupt" {
        let msg = format!("Unsupported control request subtype: {subtype}");
        return vec![frames::control_error(request_id, &msg)];
    }
    let cancel_queued = frame
        .pointer("/request/cancel_queued")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match e.mode.clone() {
        InterruptMode::Ignore => Vec::new(),
        InterruptMode::Error(msg) => vec![frames::control_error(request_id, &msg)],
        mode @ (InterruptMode::Answer | InterruptMode::AnswerEmpty) => {
            let mut out: Vec<Value> = e
                .outstanding
                .drain(..)
                .map(|o| frames::cancel_request(&o.request_id))
                .collect();
            if let Some(cur) = &mut e.run.current {
                if cur.outcome.is_none() {
                    cur.outcome = Some(Outcome::Interrupted);
                }
            }
            e.bump();
            let answer = if mode == InterruptMode::AnswerEmpty {
                serde_json::json!({"type":"control_response",
                    "response":{"subtype":"success","request_id":request_id}})
            } else if cancel_queued {
                let cancelled = std::mem::take(&mut e.queued);
                frames::control_success(
                    request_id,
                    serde_json::json!({"still_queued":[], "cancelled": cancelled}),
                )
            } else {
                frames::control_success(
                    request_id,
                    serde_json::json!({"still_queued": e.queued.clone()}),
                )
            };
            out.push(answer);
            out.push(frames::fill_sdk(
                frames::result("error_during_execution", true),
                id,
            ));
            out
        }
    }
}

/// Number of user messages in an events body, or why the body is malformed.
pub(crate) fn count_user_messages(body: &Value) -> Result<u64, String> {
    let events = body
        .get("events")
        .and_then(Value::as_array)
        .ok_or("`events` must be an array")?;
    if events.is_empty() {
        return Err("`events` is empty".into());
    }
    let mut users = 0;
    for (i, ev) in events.iter().enumerate() {
        match ev.get("type").and_then(Value::as_str) {
            None => return Err(format!("events[{i}] has no string `type`")),
            Some("user") => {
                let msg = ev.get("message").filter(|m| m.is_object());
                let role = msg.and_then(|m| m.get("role")).and_then(Value::as_str);
                let has_content = msg.is_some_and(|m| m.get("content").is_some());
                if role != Some("user") || !has_content {
                    return Err(format!(
                        "events[{i}] needs message.role \"user\" and message.content"
                    ));
                }
                users += 1;
            }
            Some(_) => {}
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_body_validation() {
        let user = json!({"type":"user","message":{"role":"user","content":"hi"}});
        assert_eq!(
            count_user_messages(&json!({"events":[user, {"type":"other"}]})),
            Ok(1)
        );
        for bad in [
            json!({}),
            json!({"events":[]}),
            json!({"events":{}}),
            json!({"events":[{"no":"type"}]}),
            json!({"events":[{"type":"user","message":{"role":"user"}}]}),
            json!({"events":[{"type":"user","message":"hi"}]}),
        ] {
            assert!(count_user_messages(&bad).is_err(), "{bad}");
        }
    }
}
