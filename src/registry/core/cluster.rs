//! The core's part in a cluster: a session taken over (its unfinished prompts restored
//! from the shared ledger), a session handed over or lost (forgotten here, nothing
//! recorded: the prompts stay pending in the ledger for the next owner), and a decision
//! another instance recorded, delivered by this one as the session's owner.

use std::sync::Arc;
use std::time::SystemTime;

use super::answer::source_of;
use super::effect::{Decision, Effect, Record, Write};
use super::Core;
use crate::ledger::{ResolvedRows, Unfinished};
use ccr_protocol::api::Decider;
use ccr_protocol::reply::Outcome;

impl Core {
    /// This instance now owns `session`: restore what the ledger holds unfinished for it,
    /// show it and apply the policy and timers as after a restart.
    pub fn adopt_session(
        &mut self,
        session: &Arc<str>,
        unfinished: Vec<Unfinished>,
        resolved: ResolvedRows,
        now: SystemTime,
    ) -> Vec<Effect> {
        // Tracked already with its labels (every configured session is); kept as they are.
        self.sessions
            .entry(session.clone())
            .or_insert_with(|| Arc::from([]));
        // What the last owner finished: a replay of it is matched to its record (its answer
        // re-sent), never shown as new; beyond what was loaded, it is looked up.
        self.restore_resolved(ResolvedRows {
            rows: resolved
                .rows
                .into_iter()
                .filter(|(s, _, _)| **s == **session)
                .collect(),
            incomplete: resolved.incomplete,
        });
        self.restore(
            unfinished
                .into_iter()
                .filter(|u| *u.prompt.session_id == **session)
                .collect(),
        );
        let mut fx = self.show_restored(Some(session), now);
        fx.push(Effect::Emit(self.resolved_gauge()));
        fx
    }

    /// `session` is owned elsewhere now: forget its prompts here, recording nothing (they
    /// stay as they are in the ledger, for the owner).
    pub fn release_session(&mut self, session: &Arc<str>) -> Vec<Effect> {
        self.held.retain(|(s, _), _| s != session);
        self.store.forget_session(session);
        vec![Effect::Emit(self.resolved_gauge())]
    }

    /// `session`'s lease had lapsed and is renewed (same epoch): write the answers that
    /// waited on its still-open socket, and record the prompts that could not be recorded
    /// meanwhile (their fenced writes were refused while the lease had lapsed): those held
    /// back unshown are recorded afresh, to be shown once durable (`on_prompt_recorded`);
    /// those shown already (flagged, their record failed otherwise) in the background.
    pub fn on_resumed(&mut self, session: &Arc<str>) -> Vec<Effect> {
        let (writes, unrecorded) = self.store.on_resumed(session);
        let mut held = std::mem::take(&mut self.held);
        let mut fx: Vec<Effect> = unrecorded
            .into_iter()
            .map(|(request_id, prompt, received_at)| {
                match held.remove(&(session.clone(), request_id)) {
                    Some(arrived) => Effect::Record(Record::Prompt {
                        prompt,
                        received_at,
                        arrived,
                    }),
                    None => Effect::Record(Record::PromptLater {
                        session: session.clone(),
                        prompt,
                        received_at,
                    }),
                }
            })
            .collect();
        // Held prompts of this session the store no longer has went with them.
        held.retain(|(s, _), _| s != session);
        self.held = held;
        fx.extend(writes.into_iter().map(|(request_id, conn, frame)| {
            Effect::Write(Write {
                session: session.clone(),
                request_id,
                conn,
                frame,
                decision: None,
            })
        }));
        fx
    }

    /// Another instance recorded `recorded`'s decision (read back from the ledger) for a
    /// prompt of a session owned here: deliver it as if decided here. Nothing happens when
    /// the prompt is not pending here (decided here first, or not known).
    pub fn on_decided_elsewhere(&mut self, recorded: Unfinished) -> Vec<Effect> {
        let Some(d) = recorded.decision else {
            return Vec::new();
        };
        let Some(frame) = d.answer else {
            return Vec::new();
        };
        let session: Arc<str> = Arc::from(d.session_id.as_str());
        let behavior = behavior_of(&frame, d.outcome);
        let taken = self.store.decided_elsewhere(
            &session,
            &d.request_id,
            &d.decided_by,
            d.decided_at,
            Arc::from(frame),
        );
        if !taken {
            return Vec::new();
        }
        let source = source_of(&d.decided_by);
        self.on_decision_durable(Decision {
            session,
            request_id: d.request_id,
            decider: match source {
                "operator" => Decider::Operator,
                _ => Decider::Automatic,
            },
            decided_by: d.decided_by,
            source,
            behavior,
            outcome: d.outcome,
            reason: d.reason,
            reply: None,
        })
    }
}

/// The behavior an answer frame carries (`allow`, `deny`, a question's `accept`...), for
/// the event; from the outcome when the frame does not say.
pub(crate) fn behavior_of(frame: &str, outcome: Outcome) -> &'static str {
    const KNOWN: [&str; 7] = [
        "allow",
        "deny",
        "accept",
        "decline",
        "cancel",
        "completed",
        "cancelled",
    ];
    let said = serde_json::from_str::<serde_json::Value>(frame)
        .ok()
        .and_then(|v| {
            let r = v.pointer("/response/response")?;
            let b = r.get("behavior").or_else(|| r.get("action"))?;
            b.as_str().map(str::to_owned)
        });
    match said.and_then(|b| KNOWN.into_iter().find(|k| *k == b)) {
        Some(k) => k,
        None if outcome == Outcome::Allowed => "allow",
        None => "deny",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_behavior_comes_from_the_frame_or_else_the_outcome() {
        let allow = r#"{"type":"control_response","response":{"subtype":"success","request_id":"r","response":{"behavior":"allow","updatedInput":{}}}}"#;
        assert_eq!(behavior_of(allow, Outcome::Allowed), "allow");
        let accept = r#"{"response":{"response":{"action":"accept"}}}"#;
        assert_eq!(behavior_of(accept, Outcome::Allowed), "accept");
        assert_eq!(behavior_of("not json", Outcome::Denied), "deny");
        assert_eq!(behavior_of("{}", Outcome::Allowed), "allow");
    }
}
