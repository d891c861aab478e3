//! Decision ledger throughput: recorded decisions per second through the public API.
//!
//! `cargo bench --bench ledger [-- N]`. Several producer threads (standing in for
//! session actors and operators) each record prompt -> decision -> delivery for their
//! share of N prompts, keeping a window of uncommitted writes in flight; the writer
//! thread batches them. A second phase times decisions alone against stored prompts.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::time::{Duration, Instant, SystemTime};

use ccr_protocol::reply::Outcome;
use ccr_supervisor::config::LedgerConfig;
use ccr_supervisor::ledger::{DecisionRecord, Ledger, PromptRecord, Tuning};
use serde_json::json;

const PRODUCERS: usize = 4;
/// Writes a producer leaves in flight before awaiting them and then waiting until SQLite has
/// them too: the ledger refuses a write (`QueueFull`) once its applier is `queue_capacity`
/// writes behind, so a producer that only waited for the journal would outrun it.
const WINDOW: usize = 2048;

fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

fn prompt(session: &str, id: &str) -> PromptRecord {
    let input = json!({"command": format!("cargo test --workspace -- {id}"), "description": "Run the tests", "timeout": 120000});
    PromptRecord {
        session_id: session.into(),
        request_id: id.into(),
        tool_use_id: Some(format!("toolu_01{id}")),
        tool_name: "Bash".into(),
        request: json!({"subtype": "can_use_tool", "tool_name": "Bash", "input": input.clone(),
            "permission_suggestions": [{"type": "addRules", "rules": [{"toolName": "Bash"}]}],
            "tool_use_id": format!("toolu_01{id}")}),
        input,
        received_at: SystemTime::now(),
    }
}

fn decision(session: &str, id: &str) -> DecisionRecord {
    DecisionRecord {
        session_id: session.into(),
        request_id: id.into(),
        outcome: Outcome::Allowed,
        decided_by: "alice".into(),
        decided_at: SystemTime::now(),
        updated_input: None,
        answer: Some(
            json!({"type": "control_response", "response": {"subtype": "success",
            "request_id": id, "response": {"behavior": "allow", "updatedInput": {"command": "cargo test"}}}})
            .to_string(),
        ),
        reason: None,
    }
}

/// Run `per_item` for `n` items split over the producers; returns the elapsed time.
fn run<F, Fut>(ledger: &Ledger, n: usize, per_item: F) -> Duration
where
    F: Fn(&Ledger, &str, &str, &mut Vec<Fut>) + Send + Sync + Copy + 'static,
    Fut: Future<Output = Result<(), ccr_supervisor::ledger::LedgerError>> + Send + 'static,
{
    let start = Instant::now();
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                let session = format!("session-{p}");
                let mut inflight = Vec::with_capacity(WINDOW);
                for i in (p..n).step_by(PRODUCERS) {
                    per_item(&ledger, &session, &format!("req-{i:08}"), &mut inflight);
                    if inflight.len() >= WINDOW {
                        inflight
                            .drain(..)
                            .for_each(|f| block_on(f).expect("write failed"));
                        block_on(ledger.flush()).expect("flush failed");
                    }
                }
                inflight
                    .drain(..)
                    .for_each(|f| block_on(f).expect("write failed"));
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    start.elapsed()
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let cfg = LedgerConfig {
        path: dir.path().join("ledger.db"),
        ..LedgerConfig::default()
    };
    let ledger = Ledger::open_with(&cfg, Tuning::default()).unwrap();
    println!(
        "ledger bench: {n} prompts, {PRODUCERS} producer threads, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let full = run(&ledger, n, |l, s, id, out| {
        out.push(Box::pin(l.record_prompt(prompt(s, id)))
            as std::pin::Pin<Box<dyn Future<Output = _> + Send>>);
        out.push(Box::pin(l.record_decision(decision(s, id))));
        out.push(Box::pin(l.mark_delivered(s, id, SystemTime::now())));
    });
    let rate = n as f64 / full.as_secs_f64();
    println!(
        "full lifecycle (prompt + decision + delivered): {n} in {:.2?} = {rate:.0} decisions/s ({:.0} writes/s)",
        full,
        rate * 3.0
    );

    // Decisions alone, against prompts already stored.
    let m = n / 2;
    let prompts = run(&ledger, m, |l, s, id, out| {
        out.push(l.record_prompt(prompt(&format!("{s}-b"), id)))
    });
    let decided = run(&ledger, m, |l, s, id, out| {
        out.push(l.record_decision(decision(&format!("{s}-b"), id)))
    });
    println!(
        "prompts alone: {m} in {prompts:.2?} = {:.0}/s; decisions alone: {m} in {decided:.2?} = {:.0} decisions/s",
        m as f64 / prompts.as_secs_f64(),
        m as f64 / decided.as_secs_f64()
    );
    println!("write errors: {}", ledger.write_errors());
    let size = std::fs::metadata(&cfg.path).map(|m| m.len()).unwrap_or(0);
    println!("database size: {:.1} MiB", size as f64 / (1 << 20) as f64);
}
