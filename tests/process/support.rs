//! Harness of the real-process tests: a generated config, the real
//! `ccr-supervisor` binary as a child process (always killed on drop), its
//! stdout/stderr, an HTTP client, an SSE reader that tells a clean end of the
//! stream from a broken one, and waits on simulator events.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ccr_sim::{Script, SimBuilder, SimEvent, SimHandle};
use futures_util::{Stream, StreamExt};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Upper bound for any single wait; a test that needs longer is broken.
pub const WAIT: Duration = Duration::from_secs(10);

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ccr-supervisor");

/// Admin operator token of the generated config; recorded as `decided_by = "admin"`.
pub use crate::common::ADMIN_TOKEN;
use crate::common::TOKENS_TOML;

/// What the child prints on stdout once the API is listening.
const READY: &str = "ccr-supervisor: operator API on ";

/// The literal token session `id` sends and the simulator expects.
pub fn session_token(id: &str) -> String {
    format!("tok-{id}")
}

/// A simulator (in this test process) with `ids`, each expecting [`session_token`].
pub async fn start_sim(ids: &[&str]) -> SimHandle {
    let mut builder = SimBuilder::new();
    for id in ids {
        builder = builder.session(id, &session_token(id), Script::empty());
    }
    builder.start().await.expect("simulator starts")
}

/// A complete supervisor config: API on 127.0.0.1:0 with the admin token,
/// `[ccr]` pointing at `base_url`, fast reconnects, the ledger at `ledger`,
/// info logs, and one `[[sessions]]` per id. `api_extra` goes under `[api]`.
pub fn config_toml(base_url: &str, ids: &[&str], ledger: &Path, api_extra: &str) -> String {
    let mut toml = format!(
        "[api]\nbind = \"127.0.0.1:0\"\n{api_extra}\n{TOKENS_TOML}\n\
         [ccr]\nbase_url = \"{base_url}\"\norganization_uuid = \"org-proc-1\"\n\n\
         [reconnect]\ntransient_delay = \"30ms\"\nnot_found_delay = \"20ms\"\n\
         backoff_initial = \"20ms\"\nbackoff_max = \"200ms\"\n\n\
         [supervisor]\narbiters = 2\n\n\
         [ledger]\npath = \"{}\"\n\n[log]\nlevel = \"info\"\n",
        ledger.display()
    );
    for id in ids {
        toml.push_str(&format!(
            "\n[[sessions]]\nid = \"{id}\"\ntoken = \"{}\"\n",
            session_token(id)
        ));
    }
    toml
}

/// Write `text` to `dir/name` and return the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

/// The binary with a clean environment for the config: no `CCR_SUPERVISOR__*`
/// overrides and no `RUST_LOG` leak in from the test's own environment.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    ccr_bench::child::clear_supervisor_env(cmd.as_std_mut());
    cmd
}

/// Run the binary to completion (killed if it takes longer than `limit`).
pub async fn run_to_exit(args: &[&str], limit: Duration) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let out = tokio::time::timeout(limit, command(args).output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "`ccr-supervisor {}` still running after {limit:?}",
                args.join(" ")
            )
        })
        .expect("run ccr-supervisor");
    (out, started.elapsed())
}

/// A running `ccr-supervisor` child. Dropping it kills the process (SIGKILL),
/// so a failing test never leaves one behind; on a panic its stderr is printed.
pub struct Supervisor {
    child: Child,
    /// Process id.
    pub pid: i32,
    /// `http://127.0.0.1:PORT` of its operator API.
    pub api: String,
    stderr: Arc<Mutex<String>>,
    stderr_done: Option<oneshot::Receiver<()>>,
}

impl Supervisor {
    /// Start `ccr-supervisor --config config` and wait until it prints its API URL.
    pub async fn spawn(config: &Path) -> Self {
        Self::spawn_with(config, None, &[]).await
    }

    /// Like [`Supervisor::spawn`], with `env` added to the child's environment.
    pub async fn spawn_with_env(config: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn_with(config, None, env).await
    }

    /// Like [`Supervisor::spawn`], with the child's open-files limit (soft and
    /// hard) set to `nofile` before it runs.
    pub async fn spawn_with_nofile(config: &Path, nofile: u64) -> Self {
        Self::spawn_with(config, Some(nofile), &[]).await
    }

    async fn spawn_with(config: &Path, nofile: Option<u64>, env: &[(&str, &str)]) -> Self {
        let config = config.to_str().expect("utf-8 path");
        let mut cmd = command(&["--config", config]);
        cmd.envs(env.iter().copied());
        if let Some(n) = nofile {
            // SAFETY: the closure runs in the forked child before exec and only
            // calls setrlimit, which is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn ccr-supervisor");
        let pid = child.id().expect("child pid") as i32;
        let stderr = Arc::new(Mutex::new(String::new()));
        let (done_tx, stderr_done) = oneshot::channel();
        let err_pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        actix_rt::spawn(async move {
            let mut lines = BufReader::new(err_pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut s = sink.lock();
                s.push_str(&line);
                s.push('\n');
            }
            let _ = done_tx.send(());
        });
        let (tx, mut rx) = mpsc::unbounded_channel();
        let out_pipe = child.stdout.take().expect("piped stdout");
        actix_rt::spawn(async move {
            let mut lines = BufReader::new(out_pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
        let mut me = Supervisor {
            child,
            pid,
            api: String::new(),
            stderr,
            stderr_done: Some(stderr_done),
        };
        let ready = async {
            while let Some(line) = rx.recv().await {
                if let Some(url) = line.strip_prefix(READY) {
                    return Some(url.trim().to_owned());
                }
            }
            None // stdout closed: the process exited
        };
        match tokio::time::timeout(WAIT, ready).await {
            Ok(Some(url)) => me.api = url,
            Ok(None) => panic!(
                "supervisor exited before its API was up; stderr:\n{}",
                me.stderr_now()
            ),
            Err(_) => panic!(
                "supervisor API not up within {WAIT:?}; stderr:\n{}",
                me.stderr_now()
            ),
        }
        me
    }

    /// Send `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; the child is not reaped before
        // `wait_exit`, so the pid cannot have been reused.
        let rc = unsafe { libc::kill(self.pid, signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid);
    }

    /// Wait for the process to exit, at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("wait for child"),
            Err(_) => panic!(
                "supervisor still running after {limit:?}; stderr:\n{}",
                self.stderr_now()
            ),
        }
    }

    /// Stderr so far.
    pub fn stderr_now(&self) -> String {
        self.stderr.lock().clone()
    }

    /// All of stderr, once the pipe reached EOF (after the process exited).
    pub async fn stderr_all(&mut self) -> String {
        if let Some(done) = self.stderr_done.take() {
            tokio::time::timeout(WAIT, done)
                .await
                .expect("stderr closes after exit")
                .ok();
        }
        self.stderr_now()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- stderr of ccr-supervisor pid {} ---\n{}",
                self.pid,
                self.stderr_now()
            );
        }
        // kill_on_drop sends SIGKILL if the child is still running.
    }
}

/// An HTTP client sending the admin token.
pub fn http() -> awc::Client {
    // A pooled connection is reused only within 1 s of its last request: the server closes
    // one idle for 5 s (actix-web's keep-alive), and a request sent on it as it closes
    // fails (`Connect(Disconnected)`), as a test polling an instance it left alone for
    // about that long did under load.
    let connector = awc::Connector::new().conn_keep_alive(Duration::from_secs(1));
    awc::Client::builder()
        .connector(connector)
        .timeout(WAIT)
        .add_default_header(("authorization", format!("Bearer {ADMIN_TOKEN}")))
        .finish()
}

/// Sign in to the console of the instance at `api` with `token` through `http` (a client
/// with no credential of its own): the whole `Set-Cookie` line of the 303 answer.
pub async fn console_sign_in(http: &awc::Client, api: &str, token: &str) -> String {
    let resp = http
        .post(format!("{api}/ui/sign-in"))
        .insert_header(("origin", api))
        .send_form(&[("token", token)])
        .await
        .expect("sign-in");
    assert_eq!(resp.status().as_u16(), 303, "signed in");
    resp.headers()
        .get("set-cookie")
        .expect("a cookie")
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// `GET url` → (status, JSON body or Null).
pub async fn get(http: &awc::Client, url: &str) -> (u16, Value) {
    let mut resp = http.get(url).send().await.expect("GET");
    let body = resp.body().await.expect("body");
    (
        resp.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// `POST url` with a JSON body → (status, JSON body or Null).
pub async fn post(http: &awc::Client, url: &str, body: Value) -> (u16, Value) {
    let mut resp = http
        .post(url)
        .content_type("application/json")
        .send_body(body.to_string())
        .await
        .expect("POST");
    let bytes = resp.body().await.expect("body");
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `DELETE url` → (status, JSON body or Null).
pub async fn delete(http: &awc::Client, url: &str) -> (u16, Value) {
    let mut resp = http.delete(url).send().await.expect("DELETE");
    let bytes = resp.body().await.expect("body");
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// One parsed SSE event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// `id:` line (the sequence number), if any.
    pub id: Option<u64>,
    /// `event:` line.
    pub event: String,
    /// `data:` as JSON.
    pub data: Value,
}

/// What the stream gave next.
#[derive(Debug)]
#[allow(dead_code)] // the payloads are read through `Debug` in failure messages
pub enum SseNext {
    /// An event (comments and heartbeats are skipped).
    Event(SseEvent),
    /// The server ended the body properly (chunked terminator).
    End,
    /// The body broke (connection reset, incomplete chunk, ...).
    Broken(String),
    /// Nothing at all arrived within the wait (bytes of an unfinished event, if any).
    Silent(String),
}

/// Reads `GET /v1/events` as Server-Sent Events.
pub struct Sse<S> {
    body: S,
    buf: BytesMut,
}

/// Open the operator event stream (`?after=0`: history since start, then live).
pub async fn open_sse(
    http: &awc::Client,
    api: &str,
) -> Sse<impl Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin> {
    open_sse_with(http, api, "after=0").await
}

/// Open `GET /v1/events?{query}` as Server-Sent Events.
pub async fn open_sse_with(
    http: &awc::Client,
    api: &str,
    query: &str,
) -> Sse<impl Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin> {
    let resp = http
        .get(format!("{api}/v1/events?{query}"))
        .insert_header(("accept", "text/event-stream"))
        .send()
        .await
        .expect("open SSE");
    assert_eq!(resp.status().as_u16(), 200, "GET /v1/events?{query}");
    Sse {
        body: resp,
        buf: BytesMut::new(),
    }
}

impl<S> Sse<S>
where
    S: Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    /// The next event, the end, a break, or silence for `wait`.
    pub async fn next(&mut self, wait: Duration) -> SseNext {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block = self.buf.split_to(pos + 2);
                let text = String::from_utf8_lossy(&block).into_owned();
                let (mut event, mut data) = (String::from("message"), Vec::new());
                let mut id = None;
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v.to_owned());
                    }
                }
                if data.is_empty() {
                    continue; // heartbeat comment
                }
                let data = serde_json::from_str(&data.join("\n")).expect("SSE data is JSON");
                return SseNext::Event(SseEvent { id, event, data });
            }
            match tokio::time::timeout(wait, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(Some(Err(e))) => return SseNext::Broken(e.to_string()),
                Ok(None) => return SseNext::End,
                Err(_) => return SseNext::Silent(String::from_utf8_lossy(&self.buf).into_owned()),
            }
        }
    }

    /// Read events until one matches `pred` (within [`WAIT`] in total); every
    /// event read on the way is appended to `seen`.
    pub async fn wait_for(
        &mut self,
        seen: &mut Vec<SseEvent>,
        mut pred: impl FnMut(&SseEvent) -> bool,
    ) -> SseEvent {
        let start = seen.len();
        self.wait_until(seen, |all| all[start..].iter().any(&mut pred))
            .await;
        seen.last().cloned().expect("an event matched")
    }

    /// Read events (appending them to `seen`) until `done(seen)` holds, within [`WAIT`].
    pub async fn wait_until(
        &mut self,
        seen: &mut Vec<SseEvent>,
        mut done: impl FnMut(&[SseEvent]) -> bool,
    ) {
        let deadline = Instant::now() + WAIT;
        while !done(seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left.max(Duration::from_millis(1))).await {
                SseNext::Event(e) => seen.push(e),
                other => {
                    panic!("SSE stream gave {other:?} while waiting; events so far: {seen:#?}")
                }
            }
        }
    }

    /// Wait until every one of `ids` has been reported `connected` (in any order).
    pub async fn wait_connected(&mut self, seen: &mut Vec<SseEvent>, ids: &[&str]) {
        let start = seen.len();
        self.wait_until(seen, |all| {
            ids.iter()
                .all(|id| all[start..].iter().any(|e| is_state(e, id, "connected")))
        })
        .await;
    }
}

/// Is `e` a `session_state` event of `id` entering `state`?
pub fn is_state(e: &SseEvent, id: &str, state: &str) -> bool {
    e.event == "session_state" && e.data["session_id"] == id && e.data["state"] == state
}

/// Is `e` the `permission_requested` event of `request_id`?
pub fn is_requested(e: &SseEvent, request_id: &str) -> bool {
    e.event == "permission_requested" && e.data["request_id"] == request_id
}

/// Wait for a simulator event matching `pred` (at most [`WAIT`]).
pub async fn wait_sim(
    rx: &mut broadcast::Receiver<SimEvent>,
    pred: impl FnMut(&SimEvent) -> bool,
) -> SimEvent {
    crate::common::wait_sim_within(rx, WAIT, pred).await
}

/// Frames the simulator received for `session` that answer `request_id`.
pub fn answers(sim: &SimHandle, session: &str, request_id: &str) -> Vec<Value> {
    sim.answers(session, request_id)
}

/// A simulator with `ids` and a config for them, ledger at `<dir>/ledger.db`, with
/// `extra` TOML appended (e.g. `[policy]`); the temp dir lives as long as this.
pub struct Setup {
    pub sim: SimHandle,
    pub dir: tempfile::TempDir,
    pub cfg: PathBuf,
}

impl Setup {
    pub async fn new(ids: &[&str], extra: &str) -> Self {
        let sim = start_sim(ids).await;
        let dir = tempfile::tempdir().expect("temp dir");
        Self::with_ledger(sim, dir, ids, "ledger.db", extra)
    }

    /// Like [`Setup::new`] with an existing simulator and directory, and the ledger file
    /// at `<dir>/<ledger>` (a path below a mount point, say).
    pub fn with_ledger(
        sim: SimHandle,
        dir: tempfile::TempDir,
        ids: &[&str],
        ledger: &str,
        extra: &str,
    ) -> Self {
        let mut cfg = config_toml(&sim.base_url(), ids, &dir.path().join(ledger), "");
        cfg.push_str(extra);
        let cfg = write_file(dir.path(), "config.toml", &cfg);
        Setup { sim, dir, cfg }
    }
}

/// Answer `request_id` of `session` through the API with `body`, expect 200 `sent`, and
/// wait until the simulator has the answer.
pub async fn answer_and_wait(
    http: &awc::Client,
    api: &str,
    sim_events: &mut broadcast::Receiver<SimEvent>,
    (session, request_id): (&str, &str),
    body: Value,
) -> SimEvent {
    let (status, receipt) = post(
        http,
        &format!("{api}/v1/sessions/{session}/permissions/{request_id}"),
        body,
    )
    .await;
    assert_eq!(
        (status, receipt["delivery"].as_str()),
        (200, Some("sent")),
        "{receipt}"
    );
    wait_sim(
        sim_events,
        |e| matches!(e, SimEvent::Answered { request_id: r, .. } if r == request_id),
    )
    .await
}

/// `kill -9` the supervisor and wait for it to be gone.
pub async fn kill9(mut sup: Supervisor) {
    sup.signal(libc::SIGKILL);
    sup.wait_exit(WAIT).await;
}
