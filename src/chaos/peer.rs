//! The fault-injecting CCR peer: drives the simulator's sessions with random
//! prompts, withdrawals, connection faults, garbage frames and slow reads.
//!
//! The simulator itself replays every unanswered prompt on each new
//! connection (as real CCR does) and records the wire log; this driver only
//! decides, from its own seeded generator, what happens next.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};

use super::records::Fault;
use crate::sim::SimHandle;

/// How often each session does what, per second (each session decides independently).
#[derive(Clone, Debug, PartialEq)]
pub struct PeerRates {
    /// New prompts.
    pub prompt: f64,
    /// Withdrawals of one outstanding prompt (a cancel on the live connection).
    pub cancel: f64,
    /// While disconnected: withdrawals of one outstanding prompt without any
    /// frame (another client answered it; it is just not replayed any more).
    pub withdraw_unseen: f64,
    /// Connection faults (reset, drop, close codes, 4001 spells, pause-then-drop).
    pub fault: f64,
    /// Slow reads (pause reading the socket for a while).
    pub pause: f64,
    /// Chance that a frame the peer sends is followed by a garbage frame.
    pub garbage: f64,
    /// Most outstanding prompts per session (no new prompt above it).
    pub max_outstanding: usize,
}

/// Faults the peer injected, shared with the killer (which pauses readers before a kill).
pub type FaultLog = Rc<RefCell<Vec<Fault>>>;

/// The driver.
pub struct Peer {
    sim: SimHandle,
    sessions: Vec<String>,
    rng: StdRng,
    rates: PeerRates,
    faults: FaultLog,
    next_prompt: u64,
    /// Set by [`Peer::calm`]: delayed faults still scheduled do nothing.
    calm: Rc<Cell<bool>>,
}

impl Peer {
    /// A driver for `sessions` of `sim`.
    pub fn new(
        sim: SimHandle,
        sessions: Vec<String>,
        rng: StdRng,
        rates: PeerRates,
        faults: FaultLog,
    ) -> Self {
        Peer {
            sim,
            sessions,
            rng,
            rates,
            faults,
            next_prompt: 0,
            calm: Rc::new(Cell::new(false)),
        }
    }

    fn note(&self, session: &str, kind: String) {
        self.faults.borrow_mut().push(Fault {
            at: Instant::now(),
            session: session.to_owned(),
            kind,
        });
    }

    /// One step of `dt`: every session rolls for every action.
    pub fn tick(&mut self, dt: Duration) {
        let dt = dt.as_secs_f64();
        for i in 0..self.sessions.len() {
            let s = self.sessions[i].clone();
            if self.rng.gen_bool((self.rates.prompt * dt).min(1.0)) {
                self.prompt(&s);
            }
            if self.rng.gen_bool((self.rates.cancel * dt).min(1.0)) {
                self.cancel(&s);
            }
            if self
                .rng
                .gen_bool((self.rates.withdraw_unseen * dt).min(1.0))
            {
                self.withdraw_unseen(&s);
            }
            if self.rng.gen_bool((self.rates.pause * dt).min(1.0)) {
                let pause = Duration::from_millis(self.rng.gen_range(50..3000));
                if self.sim.pause_reading(&s, pause) {
                    self.note(&s, format!("pause ({pause:?})"));
                }
            }
            if self.rng.gen_bool((self.rates.fault * dt).min(1.0)) {
                self.fault(&s);
            }
        }
    }

    fn maybe_garbage(&mut self, session: &str) {
        if !self.rng.gen_bool(self.rates.garbage.clamp(0.0, 1.0)) {
            return;
        }
        let (kind, sent) = match self.rng.gen_range(0..6) {
            0 => (
                "binary",
                self.sim.push_binary(session, vec![0xff, 0x00, 0x7b]),
            ),
            1 => (
                "truncated prompt",
                self.sim
                    .push_text(session, r#"{"type":"control_request","request_id":"#),
            ),
            2 => (
                "missing type",
                self.sim.push(
                    session,
                    json!({"request_id":"x","request":{"subtype":"can_use_tool"}}),
                ),
            ),
            3 => ("numeric type", self.sim.push(session, json!({"type": 7}))),
            4 => ("not an object", self.sim.push(session, json!([1, 2, 3]))),
            _ => ("invalid json", self.sim.push_text(session, "{not json")),
        };
        if sent {
            self.note(session, format!("garbage {kind}"));
        }
    }

    fn prompt(&mut self, session: &str) {
        if self.sim.outstanding(session).len() >= self.rates.max_outstanding {
            return;
        }
        self.next_prompt += 1;
        let n = self.next_prompt;
        let request_id = uuid::Builder::from_random_bytes(self.rng.gen())
            .into_uuid()
            .to_string();
        let (tool, input) = random_input(&mut self.rng, n);
        let tool_use_id = format!("toolu_{}", &request_id[..8]);
        let request = json!({
            "subtype": "can_use_tool", "tool_name": tool, "display_name": tool,
            "input": input, "tool_use_id": tool_use_id,
            "description": format!("chaos prompt {n}"), "permission_suggestions": []
        });
        self.sim.prompt_with(session, &request_id, request);
        self.maybe_garbage(session);
    }

    fn cancel(&mut self, session: &str) {
        let outstanding = self.sim.outstanding(session);
        let Some(victim) = outstanding.choose(&mut self.rng) else {
            return;
        };
        if self.sim.cancel_live(session, victim).is_some() {
            self.maybe_garbage(session);
        }
    }

    fn withdraw_unseen(&mut self, session: &str) {
        if self.sim.is_connected(session) {
            return;
        }
        let outstanding = self.sim.outstanding(session);
        if let Some(victim) = outstanding.choose(&mut self.rng) {
            if self.sim.withdraw_unseen(session, victim) {
                self.note(session, "withdrawal while disconnected".into());
            }
        }
    }

    fn fault(&mut self, session: &str) {
        let kind = match self.rng.gen_range(0..8) {
            0 => self
                .sim
                .reset_connection(session)
                .then(|| "reset".to_owned()),
            1 => self
                .sim
                .drop_connection(session)
                .then(|| "drop (no close frame: 1006-like)".to_owned()),
            2 => self
                .sim
                .close(session, 1000)
                .then(|| "close-1000".to_owned()),
            3 => self
                .sim
                .close(session, 1001)
                .then(|| "close-1001".to_owned()),
            4 => self
                .sim
                .close(session, 1011)
                .then(|| "close-1011".to_owned()),
            5 => {
                let more = self.rng.gen_range(0..=2);
                self.sim.reject_next(session, 4001, more);
                self.sim
                    .close(session, 4001)
                    .then(|| format!("close-4001 (then {more} more 4001s)"))
            }
            _ => {
                // A slow reader whose connection then dies: what the supervisor
                // wrote meanwhile (answers) is never read.
                let pause = Duration::from_millis(self.rng.gen_range(200..1500));
                let reset = self.rng.gen_bool(0.5);
                if self.sim.pause_reading(session, pause * 2) {
                    let sim = self.sim.clone();
                    let s = session.to_owned();
                    let faults = self.faults.clone();
                    let calm = self.calm.clone();
                    actix_rt::spawn(async move {
                        tokio::time::sleep(pause).await;
                        if calm.get() {
                            return;
                        }
                        let done = if reset {
                            sim.reset_connection(&s)
                        } else {
                            sim.drop_connection(&s)
                        };
                        if done {
                            let what = if reset { "reset" } else { "drop" };
                            faults.borrow_mut().push(Fault {
                                at: Instant::now(),
                                session: s,
                                kind: format!("{what} (after a {pause:?} pause)"),
                            });
                        }
                    });
                    Some(format!(
                        "pause ({:?}, then a {})",
                        pause * 2,
                        if reset { "reset" } else { "drop" }
                    ))
                } else {
                    None
                }
            }
        };
        if let Some(kind) = kind {
            self.note(session, kind);
        }
    }

    /// Stop every fault that is still running: resume paused readers, accept every connect.
    pub fn calm(&mut self) {
        self.calm.set(true);
        for s in &self.sessions {
            self.sim.reject_next(s, 4001, 0);
            self.sim.pause_reading(s, Duration::ZERO);
        }
    }

    /// Total outstanding prompts over all sessions.
    pub fn outstanding(&self) -> usize {
        self.sessions
            .iter()
            .map(|s| self.sim.outstanding(s).len())
            .sum()
    }
}

/// A random tool and input for prompt number `n` (inputs are unique per prompt).
fn random_input(rng: &mut StdRng, n: u64) -> (&'static str, Value) {
    match rng.gen_range(0..10) {
        0..=4 => (
            "Bash",
            json!({"command": format!("cargo test chaos_case_{n} -- --nocapture"), "timeout": 120000}),
        ),
        5 | 6 => (
            "Edit",
            json!({"file_path": format!("/repo/src/f{n}.rs"), "old_string": "a", "new_string": "b"}),
        ),
        7 => ("Read", json!({"file_path": format!("/repo/README{n}.md")})),
        8 => (
            "WebFetch",
            json!({"url": format!("https://example.com/{n}"), "prompt": "summarise"}),
        ),
        _ => {
            // Now and then a large Write, as real prompts carry whole files.
            let size = rng.gen_range(1_000..60_000);
            (
                "Write",
                json!({"file_path": format!("/repo/big{n}.txt"), "content": "x".repeat(size)}),
            )
        }
    }
}
