//! Sessions added at run time (`POST /v1/sessions`, admin) may use only the token
//! sources `[api] runtime_token_sources` allows, `token_file` only inside
//! `[api] runtime_token_dirs`, and never `token_command`; sessions from the config
//! file keep every source, at start and on reload.

use std::path::Path;

use crate::common::{logs, wait_bus, Harness, Sess};
use ccr_sim::Script;
use ccr_supervisor::events::Event;
use ccr_supervisor::supervisor::ReplaceSessions;
use serde_json::{json, Value};

/// A secret that must never be echoed, sent, or read on behalf of a runtime session.
const OUTSIDE_SECRET: &str = "sk-outside-secret-4711";

/// POST a runtime session; on refusal check the shape and that no secret is echoed.
async fn refused(h: &Harness, body: Value, field: &str) -> String {
    let id = body["id"].as_str().unwrap().to_owned();
    let (status, err) = h.post("/v1/sessions", body).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{err}"
    );
    let message = err["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(field), "names {field}: {message}");
    for secret in [OUTSIDE_SECRET, "sk-cmd-secret", "sk-literal-secret"] {
        assert!(!err.to_string().contains(secret), "secret echoed: {err}");
    }
    assert_eq!(
        h.get(&format!("/v1/sessions/{id}")).await.0,
        404,
        "not started"
    );
    message
}

#[actix_rt::test]
async fn token_command_is_never_accepted_at_run_time() {
    let h = Harness::start(vec![Sess::new("s1")], &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let cmd = format!("touch {}; printf sk-cmd-secret", marker.display());
    let message = refused(
        &h,
        json!({"id":"cmd","token_command": cmd}),
        "token_command",
    )
    .await;
    assert!(
        !message.contains("touch"),
        "the command is not echoed: {message}"
    );
    // Several problems at once are all reported, still without values.
    refused(
        &h,
        json!({"id":"two","token":"sk-literal-secret","token_command":"printf sk-cmd-secret"}),
        "token_command",
    )
    .await;
    h.shutdown().await;
    assert!(!marker.exists(), "the command never ran");
    let logs = logs::all();
    for secret in ["sk-cmd-secret", "sk-literal-secret"] {
        assert!(!logs.contains(secret), "{secret} reached the logs");
    }
}

#[actix_rt::test]
async fn token_file_is_refused_by_default() {
    let h = Harness::start(vec![Sess::new("s1")], &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tok");
    std::fs::write(&file, OUTSIDE_SECRET).unwrap();
    let body = json!({"id":"f","token_file": file.display().to_string()});
    let message = refused(&h, body, "token_file").await;
    assert!(message.contains("runtime_token_sources"), "{message}");
    refused(
        &h,
        json!({"id":"p","token_file":"/etc/passwd"}),
        "token_file",
    )
    .await;
    h.shutdown().await;
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[actix_rt::test]
async fn token_file_must_resolve_inside_the_allowed_directories() {
    let base = tempfile::tempdir().unwrap();
    let allowed = base.path().join("tokens");
    std::fs::create_dir(&allowed).unwrap();
    std::fs::create_dir(allowed.join("sub")).unwrap();
    let outside = base.path().join("outside");
    std::fs::write(&outside, OUTSIDE_SECRET).unwrap();
    let dirs = allowed.display().to_string();
    let h = Harness::start(
        vec![Sess::new("s1")],
        &[
            ("CCR_SUPERVISOR__API__RUNTIME_TOKEN_SOURCES", "file"),
            ("CCR_SUPERVISOR__API__RUNTIME_TOKEN_DIRS", &dirs),
        ],
    )
    .await;
    let path = |p: &Path| p.display().to_string();
    // Escapes: `..`, a symlink to a file outside, a symlinked directory, a
    // missing file (same answer: no probing), not a regular file, relative.
    symlink(&outside, &allowed.join("link"));
    symlink(base.path(), &allowed.join("up"));
    for escape in [
        path(&allowed.join("..").join("outside")),
        path(&allowed.join("link")),
        path(&allowed.join("up").join("outside")),
        path(&allowed.join("missing")),
        path(&allowed.join("sub")),
        "tokens/tok".to_owned(),
    ] {
        let message = refused(&h, json!({"id":"esc","token_file": escape}), "token_file").await;
        assert!(message.contains("runtime_token_dirs"), "{message}");
    }
    refused(&h, json!({"id":"e","token_env":"HOME"}), "token_env").await;
    // Inside: accepted, and the file's token is what the session sends.
    let tok = allowed.join("tok");
    std::fs::write(&tok, "inside-token\n").unwrap();
    h.sim.add_session("late", "inside-token", Script::empty());
    let (status, created) = h
        .post(
            "/v1/sessions",
            json!({"id":"late","token_file": path(&tok)}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    h.wait_state("late", "connected").await;
    // The file is checked again at every read: swapping in a symlink to a file
    // outside after acceptance makes the next connect fail, not send that file.
    let mut bus = h.bus();
    std::fs::remove_file(&tok).unwrap();
    symlink(&outside, &tok);
    h.sim.set_token("late", OUTSIDE_SECRET);
    assert!(h.sim.drop_connection("late"));
    let failed = wait_bus(&mut bus, |e| {
        matches!(e, Event::SessionState { session_id, last_error: Some(err), .. }
            if &**session_id == "late" && err.contains("runtime_token_dirs"))
    })
    .await;
    assert!(!format!("{failed:?}").contains(OUTSIDE_SECRET));
    assert_eq!(
        h.sim.attempts("late"),
        1,
        "no connect with the outside file"
    );
    h.shutdown().await;
    assert!(
        !logs::all().contains(OUTSIDE_SECRET),
        "outside file reached the logs"
    );
}

#[actix_rt::test]
async fn config_file_sessions_keep_every_token_source_at_start_and_reload() {
    let base = tempfile::tempdir().unwrap();
    let file = base.path().join("tok");
    std::fs::write(&file, "tok-f\n").unwrap();
    let file_toml = format!("token_file = \"{}\"", file.display());
    let mut h = Harness::start(
        vec![
            Sess::new("c").token_toml("token_command = \"printf tok-c\"", "tok-c"),
            Sess::new("f").token_toml(&file_toml, "tok-f"),
        ],
        &[],
    )
    .await;
    h.wait_state("c", "connected").await;
    h.wait_state("f", "connected").await;
    // Reload (what SIGHUP applies): the file's entries, validated as file entries.
    h.sim.add_session("c2", "tok-c2", Script::empty());
    let toml = format!(
        "[api]\nauth = \"disabled\"\n[ccr]\nbase_url = \"{}\"\norganization_uuid = \"o\"\n\
         [[sessions]]\nid = \"c\"\ntoken_command = \"printf tok-c\"\n\
         [[sessions]]\nid = \"f\"\n{file_toml}\n\
         [[sessions]]\nid = \"c2\"\ntoken_command = \"printf tok-c2\"\n",
        h.sim.base_url()
    );
    let cfg = ccr_supervisor::config::load_from_str(&toml, Default::default()).unwrap();
    let changes = h
        .app()
        .supervisor
        .send(ReplaceSessions(cfg.sessions))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changes.added, ["c2"]);
    h.wait_connections("c2", 1).await;
    h.wait_state("c2", "connected").await;
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_runtime_session_sends_its_token_only_to_an_endpoint_the_config_names() {
    // `HOME` stands for any secret of this host's environment: without the check, an
    // admin could have its value sent to a server of their choosing.
    let home = std::env::var("HOME").expect("HOME is set");
    let far = ccr_sim::SimBuilder::new()
        .session("far", &home, Script::empty())
        .start()
        .await
        .expect("second simulator starts");
    let h = Harness::start(vec![Sess::new("s1")], &[]).await;
    let body = json!({"id":"far","token_env":"HOME","base_url": far.base_url()});
    let message = refused(&h, body.clone(), "base_url").await;
    assert!(message.contains("runtime_base_urls"), "{message}");
    assert!(!message.contains(&home), "{message}");
    h.shutdown().await;
    assert_eq!(
        far.attempts("far"),
        0,
        "nothing was sent to the far endpoint"
    );
    // Listed by the operator: accepted, and it connects there.
    let listed = [("CCR_SUPERVISOR__API__RUNTIME_BASE_URLS", far.base_url())];
    let listed: Vec<(&str, &str)> = listed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let h = Harness::start(vec![Sess::new("s1")], &listed).await;
    let (status, created) = h.post("/v1/sessions", body).await;
    assert_eq!(status, 201, "{created}");
    h.wait_state("far", "connected").await;
    assert_eq!(h.sim.attempts("far"), 0, "never tried the shared endpoint");
    h.shutdown().await;
    far.stop().await;
}
