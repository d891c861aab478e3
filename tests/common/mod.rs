//! Shared harness for the integration tests: a real simulator, the real app
//! (same factory as `main`), an HTTP client, and event waits instead of sleeps.
#![allow(dead_code)]

pub mod logs;
pub mod sse;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ccr_sim::{InitializeMode, InterruptMode, Script, SimBuilder, SimEvent, SimHandle};
use ccr_supervisor::app::{self, Running};
use ccr_supervisor::config;
use ccr_supervisor::events::{Envelope, Event};
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// Upper bound for any single wait; a test that needs longer is broken.
pub const WAIT: Duration = Duration::from_secs(15);

/// Operator tokens of the test config, one per role.
pub const VIEWER_TOKEN: &str = "viewer-token";
/// Approver role.
pub const APPROVER_TOKEN: &str = "approver-token";
/// Admin role (the harness's default client).
pub const ADMIN_TOKEN: &str = "admin-token";

/// `[[api.tokens]]` for the tokens above (sha256 digests).
pub const TOKENS_TOML: &str = r#"
[[api.tokens]]
name = "viewer"
role = "viewer"
sha256 = "d036bd6d01a1cae081d39a2f8dab751dc042de814fd60df31fcb553170950f29"
[[api.tokens]]
name = "approver"
role = "approver"
sha256 = "697e4faac709ff91018bf81268f62b015913da0d39c2e58eb4ee5dbffc4da325"
[[api.tokens]]
name = "admin"
role = "admin"
sha256 = "10a4c7c9fc5206d6f36dc6944a81bb6f4a3cb0e25014ae3b12e6c3e52712292a"
"#;

/// An HTTP client that sends `token` (if any) as a bearer token.
pub fn client_with(token: Option<&str>) -> awc::Client {
    let mut b = awc::Client::builder().timeout(WAIT);
    if let Some(t) = token {
        b = b.add_default_header(("authorization", format!("Bearer {t}")));
    }
    b.finish()
}

/// One session of a test setup.
pub struct Sess {
    pub id: String,
    /// TOML lines for the token source, e.g. `token = "t1"`.
    pub token_toml: String,
    /// What the simulator expects.
    pub sim_token: String,
    pub script: Script,
    pub viewer_only: bool,
    pub interrupt: InterruptMode,
    pub initialize: InitializeMode,
    /// Known to the simulator (false → close 4001).
    pub known: bool,
}

impl Sess {
    /// A session with a literal token that the simulator accepts.
    pub fn new(id: &str) -> Self {
        let token = format!("tok-{id}");
        Self {
            id: id.into(),
            token_toml: format!("token = \"{token}\""),
            sim_token: token,
            script: Script::empty(),
            viewer_only: false,
            interrupt: InterruptMode::Answer,
            initialize: InitializeMode::Lists,
            known: true,
        }
    }
    pub fn token_toml(mut self, toml: &str, sim_token: &str) -> Self {
        self.token_toml = toml.into();
        self.sim_token = sim_token.into();
        self
    }
    pub fn viewer_only(mut self) -> Self {
        self.viewer_only = true;
        self
    }
    pub fn script(mut self, script: Script) -> Self {
        self.script = script;
        self
    }
    pub fn interrupt(mut self, mode: InterruptMode) -> Self {
        self.interrupt = mode;
        self
    }
    pub fn initialize(mut self, mode: InitializeMode) -> Self {
        self.initialize = mode;
        self
    }
    pub fn unknown_to_sim(mut self) -> Self {
        self.known = false;
        self
    }
}

/// A running simulator + supervisor pair.
pub struct Harness {
    pub sim: SimHandle,
    pub app: Option<Running>,
    pub http: awc::Client,
    pub sim_events: broadcast::Receiver<SimEvent>,
    pub api: String,
    /// Holds this test's ledger file.
    pub data: tempfile::TempDir,
}

/// Env overrides that make every delay short (tests wait on events, never on time).
fn fast_env() -> HashMap<String, String> {
    [
        ("RECONNECT__TRANSIENT_DELAY", "30ms"),
        ("RECONNECT__NOT_FOUND_DELAY", "20ms"),
        ("RECONNECT__BACKOFF_INITIAL", "20ms"),
        ("RECONNECT__BACKOFF_MAX", "200ms"),
        ("RECONNECT__JITTER", "0.2"),
        ("SUPERVISOR__ARBITERS", "2"),
        ("SUPERVISOR__MAX_RESTARTS", "3"),
        ("SUPERVISOR__RESTART_BACKOFF_INITIAL", "20ms"),
        ("SUPERVISOR__RESTART_BACKOFF_MAX", "100ms"),
        ("CCR__INTERRUPT_TIMEOUT", "3s"),
        ("CCR__MAX_FRAME_BYTES", "4096"),
    ]
    .into_iter()
    .map(|(k, v)| (format!("CCR_SUPERVISOR__{k}"), v.to_owned()))
    .collect()
}

impl Harness {
    /// Start a simulator with `sessions`, then the app configured for them.
    /// `env` overrides keys like `CCR_SUPERVISOR__CCR__PING_INTERVAL`.
    pub async fn start(sessions: Vec<Sess>, env: &[(&str, &str)]) -> Self {
        Self::start_with(sessions, env, "").await
    }

    /// Like [`Harness::start`], with extra TOML appended (e.g. `[policy]` and its rules).
    pub async fn start_with(sessions: Vec<Sess>, env: &[(&str, &str)], extra_toml: &str) -> Self {
        logs::install();
        let mut builder = SimBuilder::new();
        for s in &sessions {
            if s.known {
                builder = builder
                    .session(&s.id, &s.sim_token, s.script.clone())
                    .interrupt_mode(&s.id, s.interrupt.clone())
                    .initialize_mode(&s.id, s.initialize.clone());
            }
        }
        let sim = builder.start().await.expect("simulator starts");
        let sim_events = sim.subscribe();
        let mut toml = format!(
            "[api]\nbind = \"127.0.0.1:0\"\n{TOKENS_TOML}[ccr]\nbase_url = \"{}\"\norganization_uuid = \"org-test-1\"\n",
            sim.base_url()
        );
        for s in &sessions {
            toml.push_str(&format!(
                "[[sessions]]\nid = \"{}\"\n{}\nviewer_only = {}\nlabels = [\"test\"]\n",
                s.id, s.token_toml, s.viewer_only
            ));
        }
        let data = tempfile::tempdir().expect("temp dir");
        toml.push_str(extra_toml);
        let mut env_map = fast_env();
        env_map.insert(
            "CCR_SUPERVISOR__LEDGER__PATH".into(),
            data.path().join("ledger.db").display().to_string(),
        );
        for (k, v) in env {
            env_map.insert((*k).to_owned(), (*v).to_owned());
        }
        let cfg = config::load_from_str(&toml, env_map).expect("test config is valid");
        let app = app::start(cfg).await.expect("app starts");
        let api = app.api_url();
        Harness {
            sim,
            app: Some(app),
            http: client_with(Some(ADMIN_TOKEN)),
            sim_events,
            api,
            data,
        }
    }

    pub fn app(&self) -> &Running {
        self.app.as_ref().expect("app running")
    }

    /// A fresh subscription to the supervisor's event bus.
    pub fn bus(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.app().bus.subscribe()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let mut resp = self
            .http
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .expect("GET");
        let body = resp.body().limit(64 << 20).await.expect("body");
        (
            resp.status().as_u16(),
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_raw(path, &body.to_string()).await
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        let mut resp = self
            .http
            .post(format!("{}{path}", self.api))
            .content_type("application/json")
            .send_body(body.to_owned())
            .await
            .expect("POST");
        let bytes = resp.body().await.expect("body");
        (
            resp.status().as_u16(),
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The API view of one session.
    pub async fn session(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/sessions/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Wait until the session's API state is `state` (checked against live events, no polling loop).
    pub async fn wait_state(&self, id: &str, state: &str) -> Value {
        let mut rx = self.bus();
        let now = self.session(id).await;
        if now["state"] == state {
            return now;
        }
        wait_bus(&mut rx, |e| match e {
            Event::SessionState {
                session_id,
                state: s,
                ..
            } => &**session_id == id && s.name() == state,
            _ => false,
        })
        .await;
        self.session(id).await
    }

    /// Wait for a simulator event matching `pred`.
    pub async fn wait_sim(&mut self, pred: impl FnMut(&SimEvent) -> bool) -> SimEvent {
        wait_sim(&mut self.sim_events, pred).await
    }

    /// Wait until the simulator has an accepted live connection for `id` and has received
    /// the supervisor's `initialize` on it (and so answered it: prompts sent from now on
    /// are not also in that reply).
    pub async fn wait_sim_connected(&mut self, id: &str) {
        let initialized = |sim: &SimHandle| {
            let inits = sim
                .received(id)
                .iter()
                .filter(|f| f["request"]["subtype"] == "initialize")
                .count() as u32;
            sim.is_connected(id) && inits >= sim.connections(id)
        };
        while !initialized(&self.sim) {
            self.wait_sim(|e| match e {
                SimEvent::Connected { session, .. } | SimEvent::Received { session, .. } => {
                    session == id
                }
                _ => false,
            })
            .await;
        }
    }

    /// Wait until the simulator has accepted at least `n` connections of `id` in total.
    pub async fn wait_connections(&mut self, id: &str, n: u32) {
        while self.sim.connections(id) < n {
            self.wait_sim(|e| matches!(e, SimEvent::Connected { session, .. } if session == id))
                .await;
        }
    }

    /// Send a prompt from the simulator and wait until the API lists it as pending.
    pub async fn prompt(&self, id: &str, request_id: &str, tool: &str, input: Value) {
        let mut rx = self.bus();
        assert!(
            self.sim.prompt(id, request_id, tool, input),
            "session {id} is live in the sim"
        );
        wait_bus(
            &mut rx,
            |e| matches!(e, Event::PermissionRequested { request_id: r, .. } if r == request_id),
        )
        .await;
    }

    pub async fn decide(&self, id: &str, request_id: &str, body: Value) -> (u16, Value) {
        self.post(&format!("/v1/sessions/{id}/permissions/{request_id}"), body)
            .await
    }

    /// Frames the simulator received for `id` that answer `request_id`.
    pub fn answers(&self, id: &str, request_id: &str) -> Vec<Value> {
        self.sim.answers(id, request_id)
    }

    pub async fn shutdown(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown(Duration::from_secs(5)).await;
        }
        self.sim.stop().await;
    }
}

/// Wait for a bus event matching `pred`.
pub async fn wait_bus(
    rx: &mut broadcast::Receiver<Arc<Envelope>>,
    mut pred: impl FnMut(&Event) -> bool,
) -> Event {
    let fut = async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e.event) => return e.event.clone(),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => panic!("test bus lagged by {n}"),
                Err(broadcast::error::RecvError::Closed) => panic!("bus closed"),
            }
        }
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("timed out waiting for a supervisor event")
}

/// Wait for a simulator event matching `pred`.
pub async fn wait_sim(
    rx: &mut broadcast::Receiver<SimEvent>,
    pred: impl FnMut(&SimEvent) -> bool,
) -> SimEvent {
    wait_sim_within(rx, WAIT, pred).await
}

/// Wait at most `limit` for a simulator event matching `pred`.
pub async fn wait_sim_within(
    rx: &mut broadcast::Receiver<SimEvent>,
    limit: Duration,
    mut pred: impl FnMut(&SimEvent) -> bool,
) -> SimEvent {
    let fut = async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => panic!("sim events lagged by {n}"),
                Err(broadcast::error::RecvError::Closed) => panic!("sim closed"),
            }
        }
    };
    tokio::time::timeout(limit, fut)
        .await
        .expect("timed out waiting for a simulator event")
}

/// Wait until the simulator received a frame for `id` matching `pred`; returns it.
pub async fn wait_received(
    rx: &mut broadcast::Receiver<SimEvent>,
    id: &str,
    mut pred: impl FnMut(&Value) -> bool,
) -> Value {
    match wait_sim(
        rx,
        |e| matches!(e, SimEvent::Received { session, frame } if session == id && pred(frame)),
    )
    .await
    {
        SimEvent::Received { frame, .. } => frame,
        _ => unreachable!(),
    }
}

/// The exact allow frame of PROTOCOL §3 and §6 that an operator's plain allow sends for a
/// simulator prompt (whose `tool_use_id` is `toolu_<request_id>`).
pub fn allow_frame(request_id: &str, input: Value) -> Value {
    json!({"type":"control_response","response":{"subtype":"success","request_id":request_id,
        "response":{"behavior":"allow","updatedInput":input,
            "toolUseID":format!("toolu_{request_id}"),"decisionClassification":"user_temporary"}}})
}

/// The allow frame a policy rule sends: no `decisionClassification` (no person decided).
pub fn rule_allow_frame(request_id: &str, input: Value) -> Value {
    json!({"type":"control_response","response":{"subtype":"success","request_id":request_id,
        "response":{"behavior":"allow","updatedInput":input,
            "toolUseID":format!("toolu_{request_id}")}}})
}
