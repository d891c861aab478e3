//! The fault-injecting CCR peer: drives the simulator's sessions with random
//! prompts, withdrawals, connection faults, garbage frames and slow reads.
//!
//! The simulator itself replays every unanswered prompt on each new
//! connection (as real CCR does) and records the wire log; this driver only
//! decides what happens next, each session at each tick from a generator of
//! its own (derived from the seed, the tick and the session), so the same seed
//! makes the same session do the same thing at the same tick.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};

use super::process::RULE_TOOL;
use super::records::Fault;
use super::run::rng_for;
use ccr_sim::SimHandle;

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
    seed: u64,
    /// The generator of the current (tick, session).
    rng: StdRng,
    rates: PeerRates,
    faults: FaultLog,
    tick: u64,
    /// Set by [`Peer::calm`]: delayed faults still scheduled do nothing.
    calm: Rc<Cell<bool>>,
    /// The prompts of [`RULE_TOOL`] emitted so far, by (session, request id): their input.
    rule_prompts: BTreeMap<(String, String), Value>,
}

impl Peer {
    /// A driver for `sessions` of `sim`.
    pub fn new(
        sim: SimHandle,
        sessions: Vec<String>,
        seed: u64,
        rates: PeerRates,
        faults: FaultLog,
    ) -> Self {
        Peer {
            sim,
            sessions,
            seed,
            rng: rng_for(seed, &[]),
            rates,
            faults,
            tick: 0,
            calm: Rc::new(Cell::new(false)),
            rule_prompts: BTreeMap::new(),
        }
    }

    /// The prompts the policy rule answers (those of [`RULE_TOOL`]), by (session, request id):
    /// the input each was emitted with, which the rule's allow must carry back unchanged.
    pub fn take_rule_prompts(&mut self) -> BTreeMap<(String, String), Value> {
        std::mem::take(&mut self.rule_prompts)
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
        let chance = |rate: f64| (rate * dt).clamp(0.0, 1.0);
        self.tick += 1;
        for i in 0..self.sessions.len() {
            let s = self.sessions[i].clone();
            self.rng = rng_for(
                self.seed,
                &[b"peer", &self.tick.to_le_bytes(), s.as_bytes()],
            );
            if self.rng.gen_bool(chance(self.rates.prompt)) {
                self.prompt(&s);
            }
            if self.rng.gen_bool(chance(self.rates.cancel)) {
                self.cancel(&s);
            }
            if self.rng.gen_bool(chance(self.rates.withdraw_unseen)) {
                self.withdraw_unseen(&s);
            }
            if self.rng.gen_bool(chance(self.rates.pause)) {
                let pause = Duration::from_millis(self.rng.gen_range(50..3000));
                if self.sim.pause_reading(&s, pause) {
                    self.note(&s, format!("pause ({pause:?})"));
                }
            }
            if self.rng.gen_bool(chance(self.rates.fault)) {
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
        let n = format!("{}-{session}", self.tick);
        let request_id = uuid::Builder::from_random_bytes(self.rng.gen())
            .into_uuid()
            .to_string();
        let (tool, input) = random_input(&mut self.rng, &n);
        if tool == RULE_TOOL {
            let id = (session.to_owned(), request_id.clone());
            self.rule_prompts.insert(id, input.clone());
        }
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
/// About 30 % are `Read`s, which the run's policy rule answers ([`RULE_TOOL`]).
fn random_input(rng: &mut StdRng, n: &str) -> (&'static str, Value) {
    match rng.gen_range(0..20) {
        0..=7 => (
            "Bash",
            json!({"command": format!("cargo test chaos_case_{n} -- --nocapture"), "timeout": 120000}),
        ),
        8..=9 => (
            "Edit",
            json!({"file_path": format!("/repo/src/f{n}.rs"), "old_string": "a", "new_string": "b"}),
        ),
        10..=15 => ("Read", json!({"file_path": format!("/repo/README{n}.md")})),
        16..=17 => (
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

#[cfg(test)]
mod tests {
    use super::*;
    use ccr_sim::{Script, SimBuilder, WireEvent};

    /// The wire log of `ticks` peer steps on a simulator nobody connects to.
    async fn play(seed: u64, ticks: usize) -> Vec<WireEvent> {
        let ids: Vec<String> = (1..=3).map(|n| format!("s{n}")).collect();
        let mut b = SimBuilder::new().wire_log(10_000);
        for id in &ids {
            b = b.session(id, "tok", Script::empty());
        }
        let sim = b.start().await.unwrap();
        let rates = PeerRates {
            prompt: 4.0,
            cancel: 4.0,
            withdraw_unseen: 2.0,
            fault: 4.0,
            pause: 4.0,
            garbage: 0.5,
            max_outstanding: 4,
        };
        let mut peer = Peer::new(sim.clone(), ids, seed, rates, FaultLog::default());
        for _ in 0..ticks {
            peer.tick(Duration::from_millis(50));
        }
        let (wire, _) = sim.take_wire();
        sim.stop().await;
        wire.into_iter().map(|r| r.event).collect()
    }

    #[actix_rt::test]
    async fn the_same_seed_makes_the_same_prompts_and_withdrawals() {
        let a = play(7, 60).await;
        assert!(
            a.iter()
                .filter(|e| matches!(e, WireEvent::Prompted { .. }))
                .count()
                > 5,
            "{a:?}"
        );
        assert!(a
            .iter()
            .any(|e| matches!(e, WireEvent::Cancelled { conn: None, .. })));
        assert_eq!(play(7, 60).await, a);
        assert_ne!(play(8, 60).await, a);
    }

    #[test]
    fn a_fifth_to_two_fifths_of_prompts_are_for_the_policy_rule() {
        let mut rng = rng_for(3, &[b"inputs"]);
        let n = 2000;
        let ruled = (0..n)
            .filter(|i| random_input(&mut rng, &i.to_string()).0 == RULE_TOOL)
            .count();
        assert!((n / 5..=n * 2 / 5).contains(&ruled), "{ruled} of {n}");
    }

    #[test]
    fn decision_points_have_independent_generators() {
        let draw = |parts: &[&[u8]]| rng_for(1, parts).gen::<u64>();
        assert_eq!(draw(&[b"peer", b"1"]), draw(&[b"peer", b"1"]));
        assert_ne!(draw(&[b"peer", b"1"]), draw(&[b"peer", b"2"]));
        assert_ne!(draw(&[b"ab", b"c"]), draw(&[b"a", b"bc"]));
        assert_ne!(
            rng_for(1, &[b"x"]).gen::<u64>(),
            rng_for(2, &[b"x"]).gen::<u64>()
        );
    }
}
