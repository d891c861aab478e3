//! `/healthz` (no token: the process is alive), `/readyz` (no token: ready or not, and
//! why), `/v1/health` (viewer: the same with the sessions that are not connected) and
//! `/metrics` (viewer, or no token with `[api] metrics_auth = "none"`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use ccr_protocol::error::Code;
use ccr_protocol::reply::{Health, NotConnected, Readiness, ReadyState, SessionView};

use super::auth::{self, Viewer};
use super::table::{endpoint, Endpoint};
use super::{ApiError, ApiState};
use crate::config::{MetricsAuth, Role};
use crate::metrics::{Format, Snapshot};
use crate::registry::ListPending;
use crate::supervisor::ListSessions;

/// How long readiness waits for the supervisor to answer.
const SUPERVISOR_TIMEOUT: Duration = Duration::from_secs(2);

/// The health and metrics routes.
pub fn endpoints() -> Vec<Endpoint> {
    let unavailable = &[Code::Unavailable];
    vec![
        endpoint(Method::GET, "/healthz", None, &[], healthz),
        endpoint(Method::GET, "/readyz", None, &[], readyz),
        endpoint(
            Method::GET,
            "/v1/health",
            Some(Role::Viewer),
            unavailable,
            health,
        ),
        endpoint(
            Method::GET,
            "/metrics",
            Some(Role::Viewer),
            unavailable,
            metrics,
        ),
    ]
}

/// What start-up has done so far, for readiness (shared by every API worker).
#[derive(Debug, Default)]
pub struct StartFlags {
    config_loaded: AtomicBool,
    api_bound: AtomicBool,
}

impl StartFlags {
    /// The validated config is in use.
    pub fn config_loaded(&self) {
        self.config_loaded.store(true, Ordering::Release);
    }

    /// The operator API is bound and serving.
    pub fn api_bound(&self) {
        self.api_bound.store(true, Ordering::Release);
    }
}

/// The ledger's part of readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerCheck {
    /// `[ledger] enabled = false`: nothing to write.
    Disabled,
    /// A probe write beside the database succeeded.
    Writable,
    /// It failed, with the system's reason.
    Unwritable(String),
}

/// Everything readiness looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checks {
    /// The config is loaded.
    pub config_loaded: bool,
    /// The operator API is bound.
    pub api_bound: bool,
    /// The ledger can be written.
    pub ledger: LedgerCheck,
    /// The supervisor answered (or why not).
    pub supervisor: Result<(), String>,
}

/// Why the service is not ready; empty when it is. Never names a session.
pub fn reasons(c: &Checks) -> Vec<String> {
    let mut out = Vec::new();
    if !c.config_loaded {
        out.push("config not loaded".to_owned());
    }
    if !c.api_bound {
        out.push("operator API not bound yet".to_owned());
    }
    if let LedgerCheck::Unwritable(why) = &c.ledger {
        out.push(format!("ledger not writable: {why}"));
    }
    if let Err(why) = &c.supervisor {
        out.push(format!("supervisor not running: {why}"));
    }
    out
}

/// Write and remove a small file in `dir`: what a ledger write needs of its filesystem
/// (space, permission, not read-only). Each probe has its own name, so probes at once
/// do not meet.
pub fn probe_dir(dir: &Path, stem: &str) -> std::io::Result<()> {
    use std::io::Write;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".{stem}.ready-probe-{}-{n}", std::process::id()));
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(&[0u8; 4096]));
    let removed = std::fs::remove_file(&path);
    written?;
    removed
}

/// The ledger's directory and file name, to probe beside it.
fn probe_target(db: &Path) -> (PathBuf, String) {
    let dir = match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = db
        .file_name()
        .map_or("ledger".into(), |n| n.to_string_lossy().into_owned());
    (dir, stem)
}

/// How long `/readyz` reuses its checks.
pub const READY_CACHE: std::time::Duration = std::time::Duration::from_secs(1);

/// `/readyz`'s most recent checks and when they were made; one refresh at a time.
#[derive(Debug, Default)]
pub struct ReadyCache(tokio::sync::Mutex<Option<(std::time::Instant, Checks)>>);

impl ReadyCache {
    /// The checks of at most [`READY_CACHE`] ago, or fresh ones (callers meanwhile wait
    /// for them rather than checking again).
    pub async fn checks(&self, state: &ApiState) -> Checks {
        let mut last = self.0.lock().await;
        if let Some((at, checks)) = last.as_ref() {
            if at.elapsed() < READY_CACHE {
                return checks.clone();
            }
        }
        let (checks, _) = check(state).await;
        *last = Some((std::time::Instant::now(), checks.clone()));
        checks
    }
}

/// Run every check; the supervisor's session list comes along for `/v1/health`.
async fn check(state: &ApiState) -> (Checks, Option<Vec<SessionView>>) {
    let ledger = match &state.ledger {
        None => LedgerCheck::Disabled,
        Some(l) => match (l.path(), l.postgres()) {
            (Some(path), _) => {
                let (dir, stem) = probe_target(path);
                match web::block(move || probe_dir(&dir, &stem)).await {
                    Ok(Ok(())) => LedgerCheck::Writable,
                    Ok(Err(e)) => LedgerCheck::Unwritable(e.to_string()),
                    Err(e) => LedgerCheck::Unwritable(e.to_string()),
                }
            }
            (None, Some(pg)) => match tokio::time::timeout(SUPERVISOR_TIMEOUT, pg.ping()).await {
                Ok(Ok(())) => LedgerCheck::Writable,
                Ok(Err(e)) => LedgerCheck::Unwritable(format!("cannot reach PostgreSQL: {e}")),
                Err(_) => LedgerCheck::Unwritable("PostgreSQL did not answer within 2 s".into()),
            },
            (None, None) => LedgerCheck::Disabled,
        },
    };
    let sessions = tokio::time::timeout(
        SUPERVISOR_TIMEOUT,
        state.supervisor.send(ListSessions::default()),
    )
    .await;
    let (supervisor, sessions) = match sessions {
        Ok(Ok(list)) => (Ok(()), Some(list)),
        Ok(Err(e)) => (Err(e.to_string()), None),
        Err(_) => (Err("no answer within 2 s".to_owned()), None),
    };
    let checks = Checks {
        config_loaded: state.started.config_loaded.load(Ordering::Acquire),
        api_bound: state.started.api_bound.load(Ordering::Acquire),
        ledger,
        supervisor,
    };
    (checks, sessions)
}

/// Liveness: the process answers (no token).
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = Health)))]
pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
    })
}

/// Readiness, for probes and load balancers (no token): the config is loaded, the API
/// bound, the ledger writable and the supervisor running. Says why not, never which
/// sessions; those are in `GET /v1/health`.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = ReadyState),
        (status = 503, description = "Not ready, with the reasons", body = ReadyState)))]
pub(super) async fn readyz(state: web::Data<ApiState>) -> HttpResponse {
    let checks = state.readiness.checks(&state).await;
    let reasons = reasons(&checks);
    let ready = reasons.is_empty();
    let body = ReadyState { ready, reasons };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Readiness in detail: as `/readyz`, with the sessions that are not connected (which do
/// not make the service unready). 200 either way; 503 `unavailable` only when the
/// supervisor does not answer.
#[utoipa::path(get, path = "/v1/health", tag = "health",
    responses((status = 200, description = "Readiness and sessions", body = Readiness)))]
pub(super) async fn health(
    _who: Viewer,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (checks, sessions) = check(&state).await;
    let reasons = reasons(&checks);
    let Some(sessions) = sessions else {
        let why = checks.supervisor.err().unwrap_or_default();
        return Err(ApiError::Unavailable(format!("supervisor: {why}")));
    };
    let not_connected = sessions
        .iter()
        .filter(|s| s.status.state.name() != "connected")
        .map(|s| NotConnected {
            id: s.id.to_string(),
            state: s.status.state.name().to_owned(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(Readiness {
        ready: reasons.is_empty(),
        reasons,
        sessions: sessions.len(),
        not_connected,
    }))
}

/// Process and session metrics: the Prometheus text format 0.0.4, or OpenMetrics 1.0
/// when `Accept` asks for `application/openmetrics-text` (see operations.md). Needs a
/// viewer token unless `[api] metrics_auth = "none"`.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text, or OpenMetrics text when asked",
        content(
            (String = "text/plain; version=0.0.4; charset=utf-8"),
            (String = "application/openmetrics-text; version=1.0.0; charset=utf-8")))))]
pub(super) async fn metrics(
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    if state.metrics_auth == MetricsAuth::Viewer {
        auth::require(&req, Role::Viewer)?;
    }
    let format = Format::negotiate(
        req.headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let sessions = state.supervisor.send(ListSessions::default()).await?;
    let pending = state
        .registry
        .send(ListPending {
            session_id: None,
            questions: false,
        })
        .await?;
    let snapshot = Snapshot {
        sessions_by_state: sessions
            .iter()
            .map(|s| s.status.state.name().to_owned())
            .collect(),
        prompts_pending: pending.len(),
        oldest_prompt_age_secs: pending.iter().map(|p| p.age_ms).max().unwrap_or(0) as f64 / 1000.0,
        stream_subscribers: state.bus.subscribers(),
        ledger_write_errors: state.ledger.as_ref().map_or(0, |l| l.write_errors()),
    };
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((header::VARY, "Accept"))
        .body(state.metrics.render(&snapshot, format)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> Checks {
        Checks {
            config_loaded: true,
            api_bound: true,
            ledger: LedgerCheck::Writable,
            supervisor: Ok(()),
        }
    }

    #[test]
    fn ready_when_every_check_passes_and_a_disabled_ledger_is_fine() {
        assert!(reasons(&ready()).is_empty());
        let off = Checks {
            ledger: LedgerCheck::Disabled,
            ..ready()
        };
        assert!(reasons(&off).is_empty());
    }

    #[test]
    fn each_failed_check_is_a_reason() {
        let all = Checks {
            config_loaded: false,
            api_bound: false,
            ledger: LedgerCheck::Unwritable("No space left on device (os error 28)".into()),
            supervisor: Err("mailbox closed".into()),
        };
        assert_eq!(
            reasons(&all),
            [
                "config not loaded",
                "operator API not bound yet",
                "ledger not writable: No space left on device (os error 28)",
                "supervisor not running: mailbox closed",
            ]
        );
    }

    #[test]
    fn a_probe_leaves_nothing_behind_and_fails_where_it_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        probe_dir(dir.path(), "ledger.db").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(probe_dir(&dir.path().join("missing"), "ledger.db").is_err());
        assert_eq!(
            probe_target(Path::new("ledger.db")),
            (PathBuf::from("."), "ledger.db".to_owned())
        );
        assert_eq!(
            probe_target(Path::new("/var/lib/x/ledger.db")),
            (PathBuf::from("/var/lib/x"), "ledger.db".to_owned())
        );
    }
}
