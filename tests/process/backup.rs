//! `ccr-supervisor ledger backup PATH` while the service runs: an online, consistent
//! copy that plain SQLite reads, made without the instance lock; an existing PATH is
//! refused unless `--force`.

use std::time::Duration;

use serde_json::json;

use crate::support::{self, Setup, Supervisor};

/// `(request_id, outcome)` of every row of the SQLite file at `path`, by request id.
fn rows(path: &std::path::Path) -> Vec<(String, Option<String>)> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the copy");
    let mut stmt = conn
        .prepare("SELECT request_id, outcome FROM prompts ORDER BY request_id")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

#[actix_rt::test]
async fn backup_while_running_copies_every_recorded_prompt() {
    let setup = Setup::new(&["s1"], "").await;
    let http = support::http();
    let sup = Supervisor::spawn(&setup.cfg).await;
    let mut sse = support::open_sse(&http, &sup.api).await;
    let mut seen = vec![];
    sse.wait_connected(&mut seen, &["s1"]).await;
    let mut sim_events = setup.sim.subscribe();
    for id in ["p1", "p2"] {
        assert!(setup.sim.prompt("s1", id, "Bash", json!({"command": id})));
        sse.wait_for(&mut seen, |e| support::is_requested(e, id))
            .await;
    }
    support::answer_and_wait(
        &http,
        &sup.api,
        &mut sim_events,
        ("s1", "p1"),
        json!({"behavior": "deny", "message": "no"}),
    )
    .await;

    let dest = setup.dir.path().join("backups").join("copy.db");
    std::fs::create_dir(dest.parent().unwrap()).unwrap();
    let args = [
        "ledger",
        "backup",
        "--config",
        setup.cfg.to_str().unwrap(),
        dest.to_str().unwrap(),
    ];
    let (out, took) = support::run_to_exit(&args, Duration::from_secs(10)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("backup: {} after {took:?}: {stdout}{stderr}", out.status);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("2 prompts"), "{stdout}");
    assert_eq!(
        rows(&dest),
        [
            ("p1".to_owned(), Some("denied".to_owned())),
            ("p2".to_owned(), None),
        ]
    );
    // The service kept its lock and runs on.
    assert_eq!(
        std::fs::read_to_string(setup.dir.path().join("ledger.db.lock"))
            .unwrap()
            .trim(),
        sup.pid.to_string()
    );
    let (status, _) = support::get(&http, &format!("{}/v1/permissions", sup.api)).await;
    assert_eq!(status, 200);

    // An existing copy is kept unless --force.
    let before = std::fs::read(&dest).unwrap();
    let (out, _) = support::run_to_exit(&args, Duration::from_secs(10)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("exists; pass --force"), "{stderr}");
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        before,
        "the copy is untouched"
    );
    let mut forced = args.to_vec();
    forced.push("--force");
    let (out, _) = support::run_to_exit(&forced, Duration::from_secs(10)).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rows(&dest).len(), 2);
    let leftovers: Vec<_> = std::fs::read_dir(dest.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["copy.db"], "one file, no temporary");
}
