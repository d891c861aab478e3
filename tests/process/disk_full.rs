//! Issue 24.2 on a real small filesystem (a 1 MiB tmpfs, mounted by the test: needs root,
//! as CI runs): an answer the ledger cannot record is never sent or acknowledged, an
//! automatic one is held until it can be recorded, and after the disk is freed and the
//! process restarted nothing answered comes back as pending.

use std::path::{Path, PathBuf};
use std::process::Command;

use ccr_sim::SimEvent;
use serde_json::{json, Value};

use crate::support::{self, Supervisor};

/// A tmpfs mounted for the test's life (lazily unmounted on drop).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a {size} tmpfs and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill the filesystem holding `dir` with one file, until the kernel says it is full.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("create filler");
    let chunk = vec![0u8; 4096];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    let _ = f.flush();
    path
}

#[actix_rt::test]
async fn a_full_disk_never_sends_an_unrecorded_answer_and_leaves_no_ghosts() {
    let sim = support::start_sim(&["s1"]).await;
    let mut sim_events = sim.subscribe();
    let dir = tempfile::tempdir().expect("temp dir");
    let disk = dir.path().join("disk");
    let _tmpfs = Tmpfs::mount(&disk, "1m");
    let rules =
        "\n[policy]\n[[policy.rules]]\nid = \"reads\"\naction = \"allow\"\ntool = \"Read\"\n";
    let support::Setup {
        sim,
        dir: _dir,
        cfg,
    } = support::Setup::with_ledger(sim, dir, &["s1"], "disk/ledger.db", rules);
    let http = support::http();

    let first = Supervisor::spawn(&cfg).await;
    let mut sse = support::open_sse(&http, &first.api).await;
    let mut seen = vec![];
    sse.wait_connected(&mut seen, &["s1"]).await;
    let filler = fill(&disk);

    // A prompt arriving on a full disk is still shown (loudly: its record failed) ...
    assert!(sim.prompt("s1", "p1", "Bash", json!({"command": "make"})));
    sse.wait_for(&mut seen, |e| support::is_requested(e, "p1"))
        .await;
    // ... but an operator's answer that cannot be recorded is not taken.
    let (status, body) = support::post(
        &http,
        &format!("{}/v1/sessions/s1/permissions/p1", first.api),
        json!({"behavior": "allow"}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "ledger_unavailable", "{body}");
    let (_, listed) = support::get(&http, &format!("{}/v1/permissions", first.api)).await;
    assert_eq!(
        listed["permissions"][0]["request_id"], "p1",
        "still pending: {listed}"
    );
    // A rule's answer is held back until it can be recorded.
    assert!(sim.prompt("s1", "p2", "Read", json!({"file_path": "/etc/hosts"})));
    sse.wait_for(&mut seen, |e| support::is_requested(e, "p2"))
        .await;
    assert!(
        support::answers(&sim, "s1", "p1").is_empty(),
        "nothing unrecorded was sent"
    );

    std::fs::remove_file(&filler).expect("free the disk");
    let held = support::wait_sim(
        &mut sim_events,
        |e| matches!(e, SimEvent::Answered { request_id, .. } if request_id == "p2"),
    )
    .await;
    assert!(
        matches!(held, SimEvent::Answered { ref response, .. } if response["behavior"] == "allow")
    );
    let answer = json!({"behavior": "allow"});
    support::answer_and_wait(&http, &first.api, &mut sim_events, ("s1", "p1"), answer).await;
    drop(sse);
    support::kill9(first).await;
    let second = Supervisor::spawn(&cfg).await;
    let (_, listed) = support::get(&http, &format!("{}/v1/permissions", second.api)).await;
    assert_eq!(listed["permissions"], json!([]), "no ghosts: {listed}");
    let (_, audit) = support::get(&http, &format!("{}/v1/audit?session_id=s1", second.api)).await;
    let outcome = |id: &str| {
        let rows = audit["rows"].as_array().expect("rows");
        let row = rows.iter().find(|r| r["request_id"] == id).expect("row");
        (row["outcome"].clone(), row["decided_by"].clone())
    };
    assert_eq!(outcome("p1"), (json!("allowed"), json!("admin")), "{audit}");
    assert_eq!(
        outcome("p2"),
        (json!("allowed"), json!("rule:reads")),
        "{audit}"
    );
    assert_eq!(support::answers(&sim, "s1", "p1").len(), 1);
    assert_eq!(support::answers(&sim, "s1", "p2").len(), 1);
}

/// `GET /readyz` without a token: (status, body).
async fn readyz(api: &str) -> (u16, serde_json::Value) {
    let mut resp = awc::Client::default()
        .get(format!("{api}/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    let body = resp.json().await.expect("JSON body");
    (resp.status().as_u16(), body)
}

/// `/readyz` once it answers `status`: it reuses its checks for a second
/// (`api::health::READY_CACHE`), so a change shows within that; bounded by the wait.
async fn readyz_once(api: &str, status: u16) -> (u16, Value) {
    let deadline = std::time::Instant::now() + support::WAIT;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tick.tick().await;
        let got = readyz(api).await;
        if got.0 == status || std::time::Instant::now() > deadline {
            return got;
        }
    }
}

#[actix_rt::test]
async fn readyz_is_false_while_the_ledger_cannot_be_written() {
    let sim = support::start_sim(&["s1"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let disk = dir.path().join("disk");
    let _tmpfs = Tmpfs::mount(&disk, "1m");
    let support::Setup {
        sim: _sim,
        dir: _dir,
        cfg,
    } = support::Setup::with_ledger(sim, dir, &["s1"], "disk/ledger.db", "");
    let sup = Supervisor::spawn(&cfg).await;
    assert_eq!(
        readyz(&sup.api).await,
        (200, json!({"ready": true, "reasons": []}))
    );

    let filler = fill(&disk);
    let (status, body) = readyz_once(&sup.api, 503).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false, "{body}");
    let reasons = body["reasons"].as_array().expect("reasons");
    assert_eq!(reasons.len(), 1, "{body}");
    let reason = reasons[0].as_str().unwrap();
    assert!(
        reason.starts_with("ledger not writable: ") && reason.contains("No space left"),
        "{body}"
    );
    assert!(!body.to_string().contains("s1"), "no session ids: {body}");
    // The details stay behind the viewer role, and say the same.
    let (status, health) = support::get(&support::http(), &format!("{}/v1/health", sup.api)).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["ready"], false, "{health}");
    assert_eq!(health["reasons"], body["reasons"], "{health}");

    std::fs::remove_file(&filler).expect("free the disk");
    assert_eq!(
        readyz_once(&sup.api, 200).await,
        (200, json!({"ready": true, "reasons": []}))
    );
    support::kill9(sup).await;
}
