//! The app factory: wires registry, supervisor, arbiters, the API server and
//! (in demo mode) the embedded simulator. `main` and the tests both use [`start`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer};
use anyhow::Context as _;
use tracing::{info, warn};

use crate::api::cookie::ConsoleSessions;
use crate::api::{self, ApiState, Authenticator};
use crate::cluster::{ClusterMember, Fences, Recipients, StartSessions, StateOutbox};
use crate::config::{self, Config, ConfigError, Draft};
use crate::demo::{self, EmbeddedSim};
use crate::events::{BusLimits, EventBus, HistoryLimits};
use crate::ledger::{InstanceLock, Ledger, LedgerError, Tuning};
use crate::limits::fd::{self, ConnSlots, FdDemand};
use crate::limits::{repeat, streams::StreamCaps};
use crate::metrics::Metrics;
use crate::notify::{self, LinkBase, Notifier};
use crate::policy::Policy;
use crate::registry::PermissionRegistry;
use crate::reload::Reloader;
use crate::session::client::install_crypto_provider;
use crate::session::SessionShared;
use crate::supervisor::{ShutdownSessions, Supervisor, SupervisorCluster};

/// A running service.
pub struct Running {
    /// The supervisor actor.
    pub supervisor: Addr<Supervisor>,
    /// The permission registry actor.
    pub registry: Addr<PermissionRegistry>,
    /// The event bus.
    pub bus: EventBus,
    /// Where the operator API listens.
    pub api_addr: SocketAddr,
    /// The embedded simulator, in demo mode.
    pub sim: Option<EmbeddedSim>,
    server: ServerHandle,
    arbiters: Vec<Arbiter>,
    ledger: Option<Ledger>,
    /// `[api] shutdown_timeout`.
    pub shutdown_timeout: Duration,
    /// Whether the API serves TLS (`[api] tls_cert`).
    pub tls: bool,
    /// Reloads the config file (`SIGHUP`, `POST /v1/admin/reload`); `None` when started
    /// without one ([`start`]).
    pub reloader: Option<Arc<Reloader>>,
    /// The lease loop, in a cluster.
    cluster: Option<ClusterMember>,
}

impl Running {
    /// `http://host:port` of the operator API (`https://` when it serves TLS).
    pub fn api_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.api_addr)
    }

    /// Stop accepting API requests, end event streams, close every session
    /// with 1000, and stop the arbiters, within `deadline`.
    pub async fn shutdown(self, deadline: Duration) {
        info!("shutting down");
        crate::systemd::stopping();
        let started = std::time::Instant::now();
        let closing = self.ledger.as_ref().and_then(Ledger::closing);
        // Stop accepting first; the graceful stop finishes once the streams end.
        let server = self.server.clone();
        let stopping = actix_rt::spawn(async move { server.stop(true).await });
        self.bus.close();
        if let Some(member) = &self.cluster {
            // Hand every lease over first: the other instances take the sessions while
            // this one still closes them cleanly (a rolling restart loses nothing).
            member.drain(deadline / 2).await;
        }
        let closed = tokio::time::timeout(deadline, self.supervisor.send(ShutdownSessions)).await;
        if closed.is_err() {
            warn!(
                deadline_ms = deadline.as_millis() as u64,
                "sessions did not all close in time"
            );
        }
        let left = deadline.saturating_sub(started.elapsed());
        if tokio::time::timeout(left, stopping).await.is_err() {
            warn!("operator API did not stop in time");
        }
        if let Some(ledger) = &self.ledger {
            // Copy the journal's last writes into SQLite, so the file is current offline.
            let left = deadline.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, ledger.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "decision ledger flush at shutdown failed; the next start replays its journal"),
                Err(_) => warn!("decision ledger flush did not finish in time; the next start replays its journal"),
            }
        }
        if let Some(sim) = &self.sim {
            sim.stop().await;
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        // The registry lives on the first arbiter and holds the ledger: wait for the threads
        // to end so the ledger is closed (journal and WAL folded into the file) before exit.
        let arbiters = self.arbiters;
        let joined = tokio::task::spawn_blocking(move || {
            for arbiter in arbiters {
                let _ = arbiter.join();
            }
        });
        let left = deadline.saturating_sub(started.elapsed());
        if tokio::time::timeout(left.max(Duration::from_secs(1)), joined)
            .await
            .is_err()
        {
            warn!("session arbiters did not stop in time");
        }
        // The ledger closes (journal and WAL folded into the file) once its last handle is
        // gone: this one, and the API workers' as their threads wind down. Waited for, so
        // the process never exits with the close half done.
        drop(self.ledger);
        if let Some(closing) = closing {
            let left = deadline
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(1));
            let closed = tokio::task::spawn_blocking(move || closing.wait(left))
                .await
                .unwrap_or(false);
            if !closed {
                warn!("decision ledger did not close in time; the next start replays its journal");
            }
        }
        info!("stopped");
    }
}

/// Bytes an HTTP/1 response buffers before the API worker writes them out
/// (actix-web's default is 32 KiB). A busy event stream makes one send call,
/// and wakes its reader once, per this much; below 128 KiB actix-http keeps
/// reusing one buffer per connection instead of replacing it after each flush.
const API_WRITE_BUFFER: usize = 96 * 1024;

/// Number of session arbiters for a `[supervisor] arbiters` value (0 = automatic: half the
/// cores, at least one, leaving the rest to the kernel's network stack, the API worker and
/// the ledger's threads).
pub fn arbiter_count(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }
}

/// Load the config file (+ `CCR_SUPERVISOR__SECTION__KEY` overrides) as the service runs
/// it: config's own checks and the policy's (every rule's tool pattern), every problem
/// of both in one list, in the file's order. `check-config`, start-up and `SIGHUP` use it.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    compiled(config::read(path)?)
}

/// [`load_config`] for `run`: also every `token_env` (operator or session) must be set
/// and not empty, since the process's environment cannot change later, and the
/// `[api] tls_cert` / `tls_key` files must load. A `token_file` or `token_command` is
/// not checked: it may heal, and a session retries it.
pub fn load_config_to_run(path: &Path) -> Result<Config, ConfigError> {
    let config = load_config(path)?;
    let mut unset = crate::preflight::env_problems(&config, |var| std::env::var_os(var));
    unset.extend(api::tls::problems(config.api.tls.as_ref()));
    if unset.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(unset))
    }
}

/// [`load_config`] for `check-config`: also resolve every token source (variables set,
/// files readable, commands succeeding within `[ccr] token_command_timeout`), every
/// problem with its key path. Values are never shown. Blocking: it runs the token
/// commands on a runtime of its own, so call it outside any actix `System`.
pub fn check_config(path: &Path) -> Result<Config, ConfigError> {
    let config = load_config(path)?;
    let timeout = config.ccr.token_command_timeout;
    let mut problems =
        actix_rt::System::new().block_on(crate::preflight::resolve(&config, timeout));
    problems.extend(api::tls::problems(config.api.tls.as_ref()));
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// The exit status for a failed start: 2 when a restart cannot help (the ledger is in
/// use by another instance), else 1.
pub fn exit_status(error: &anyhow::Error) -> u8 {
    // A ledger in use, or a database URL that cannot be read or parsed: restarting the
    // same configuration cannot help.
    let in_use = error.chain().any(|e| {
        matches!(
            e.downcast_ref(),
            Some(LedgerError::InUse { .. } | LedgerError::BadUrl(_))
        )
    });
    if in_use {
        2
    } else {
        1
    }
}

/// `ledger backup`: copy the ledger at `ledger` (default: `[ledger] path` of the config
/// file at `config`, env overrides applied) to `dest`; the one-line summary to print.
/// Takes no instance lock: it reads only, while the service runs.
pub fn backup_ledger(
    config: &Path,
    ledger: Option<std::path::PathBuf>,
    dest: &Path,
    force: bool,
) -> anyhow::Result<String> {
    let db = match ledger {
        Some(db) => db,
        None => {
            let cfg = config::load(config).with_context(|| {
                format!("cannot read the ledger's path from {}", config.display())
            })?;
            if !cfg.ledger.enabled {
                anyhow::bail!(
                    "{}: [ledger] enabled = false: there is no ledger to back up",
                    config.display()
                );
            }
            if cfg.ledger.postgres().is_some() {
                anyhow::bail!(
                    "{}: [ledger] backend = \"postgres\": back the database up with PostgreSQL's own tools (pg_dump); `ledger backup` copies a SQLite ledger",
                    config.display()
                );
            }
            cfg.ledger.path
        }
    };
    let report = crate::ledger::backup(&db, dest, force)?;
    Ok(format!(
        "backed up {} to {}: {} prompts, {} bytes ({} journal segment(s) applied)",
        db.display(),
        dest.display(),
        report.prompts,
        report.bytes,
        report.journal_segments
    ))
}

/// [`load_config`] from a TOML string and an explicit env map.
pub fn load_config_from_str(
    toml: &str,
    env: HashMap<String, String>,
) -> Result<Config, ConfigError> {
    compiled(config::read_from_str(toml, env)?)
}

/// The draft's config if it, the policy compiled from it and the notification sinks'
/// URLs and secrets (read from the environment and files) have no problem.
fn compiled(draft: Draft) -> Result<Config, ConfigError> {
    let mut more = Policy::compile(&draft.config().policy)
        .err()
        .unwrap_or_default();
    more.extend(
        notify::resolve(&draft.config().notify)
            .err()
            .unwrap_or_default(),
    );
    draft.finish(more)
}

/// Start the `[[notify]]` sinks' delivery threads (none configured: a notifier that does nothing).
fn start_notifier(config: &Config, metrics: &Metrics) -> anyhow::Result<(Notifier, LinkBase)> {
    let sinks = notify::resolve(&config.notify)
        .map_err(ConfigError::Invalid)
        .context("invalid [[notify]]")?;
    let link_base = LinkBase::default();
    if config.console.public_url.is_some() {
        link_base.set(console_links(config, config.api.bind));
    }
    let notifier = Notifier::start(sinks, link_base.clone(), metrics)
        .context("cannot start a notification sink's thread")?;
    Ok((notifier, link_base))
}

/// The base of console links: `[console] public_url`, else the API's own address
/// (`https://` when it serves TLS).
fn console_links(config: &Config, api_addr: SocketAddr) -> String {
    match (&config.console.public_url, &config.api.tls) {
        (None, Some(_)) => format!("https://{api_addr}"),
        _ => config.console.link_base(api_addr),
    }
}

/// The TLS of the API when `[api] tls_cert` is set: the server config, serving the
/// certificate `SIGHUP` reloads. Without TLS on a non-loopback address, a loud warning.
fn api_tls(config: &Config) -> anyhow::Result<Option<rustls::ServerConfig>> {
    let Some(files) = &config.api.tls else {
        if !config.api.bind.ip().is_loopback() {
            warn!("!!! the operator API listens on {} without TLS ([api] tls_cert / tls_key unset): operator tokens and console cookies travel in clear text. Set them, or put a TLS proxy in front. !!!", config.api.bind);
        }
        return Ok(None);
    };
    let key = api::tls::load(files).map_err(|e| {
        anyhow::Error::new(ConfigError::Invalid(vec![config::KeyError {
            path: e.key_path().to_owned(),
            message: e.to_string(),
        }]))
    })?;
    info!(
        cert = %files.cert.display(),
        sha256 = %api::tls::fingerprint(&key),
        "operator API serves TLS"
    );
    let resolver = api::tls::CertResolver::new(key);
    api::tls::reload_on_sighup(resolver.clone(), files.clone());
    Ok(Some(api::tls::server_config(resolver)?))
}

/// Take the ledger's instance lock when `[ledger] enabled`, before anything else starts:
/// a second instance on the same ledger stops here, having written nothing
/// ([`LedgerError::InUse`], which `main` turns into exit 2).
fn lock_ledger(config: &Config) -> anyhow::Result<Option<InstanceLock>> {
    // A PostgreSQL ledger is shared by design: there is no file to lock.
    if !config.ledger.enabled || config.ledger.postgres().is_some() {
        return Ok(None);
    }
    match InstanceLock::acquire(&config.ledger.path) {
        Ok(lock) => Ok(Some(lock)),
        // Its message is complete (path, holder, lock file); context would only repeat it.
        Err(e @ LedgerError::InUse { .. }) => Err(e.into()),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "cannot lock the decision ledger at {}",
            config.ledger.path.display()
        ))),
    }
}

/// Open the ledger under `lock` when `[ledger] enabled`; an unusable file is a start-up error.
fn open_ledger(
    config: &Config,
    lock: Option<InstanceLock>,
    fences: Option<Arc<Fences>>,
) -> anyhow::Result<Option<Ledger>> {
    if !config.ledger.enabled {
        warn!("decision ledger disabled ([ledger] enabled = false): decisions are not recorded durably");
        return Ok(None);
    }
    let ledger = match lock {
        Some(lock) => {
            Ledger::open_locked(&config.ledger, Tuning::default(), lock).with_context(|| {
                format!(
                    "cannot open the decision ledger at {}",
                    config.ledger.path.display()
                )
            })?
        }
        None => Ledger::open_clustered(&config.ledger, Tuning::default(), fences)
            .context("cannot open the decision ledger in PostgreSQL")?,
    };
    info!(ledger = %ledger.describe(), "decision ledger open");
    Ok(Some(ledger))
}

/// Every [`repeat::WARN_INTERVAL`], log how many identical session warnings were suppressed.
fn spawn_warning_flusher() {
    actix_rt::spawn(async {
        let mut tick = tokio::time::interval(repeat::WARN_INTERVAL);
        loop {
            tick.tick().await;
            repeat::flush_session_warnings();
        }
    });
}

/// Start everything described by `config`. Must run inside an actix `System`.
///
/// The ledger's instance lock comes first: a second instance on the same ledger fails
/// with [`LedgerError::InUse`] before it starts, opens or binds anything.
///
/// A policy rule whose pattern does not compile fails the start ([`load_config`] reports
/// it, with every other problem, before anything is started).
pub async fn start(config: Config) -> anyhow::Result<Running> {
    start_inner(config, None).await
}

/// [`start`] for a config read from the file at `path` (by [`load_config_to_run`]): the
/// running service can reload it ([`Running::reloader`], `POST /v1/admin/reload`).
pub async fn start_reloadable(config: Config, path: PathBuf) -> anyhow::Result<Running> {
    start_inner(config, Some(path)).await
}

async fn start_inner(config: Config, path: Option<PathBuf>) -> anyhow::Result<Running> {
    let lock = lock_ledger(&config)?;
    let policy = Policy::compile(&config.policy)
        .map(Arc::new)
        .map_err(ConfigError::Invalid)
        .context("invalid [policy]")?;
    install_crypto_provider();
    let sim = if config.sim.embedded {
        Some(demo::start(&config).await?)
    } else {
        None
    };
    let limits = &config.api.limits;
    let fds = fd::budget_at_start(&FdDemand {
        sessions: config.sessions.len(),
        // The embedded simulator holds the other end of each session's socket.
        fds_per_session: if config.sim.embedded { 2 } else { 1 },
        api_connections: limits.max_connections,
        stream_subscribers: limits.max_stream_subscribers,
        threads: limits.worker_count() + arbiter_count(config.supervisor.arbiters),
    });
    spawn_warning_flusher();
    let base_url = match &sim {
        Some(sim) => sim.base_url(),
        None => config.ccr.base_url.clone(),
    };
    let auth = Arc::new(
        Authenticator::from_config(&config.api).context("cannot load the operator API tokens")?,
    );
    if !auth.enabled() {
        warn!("!!! operator API authentication is DISABLED ([api] auth = \"disabled\"): anyone who can reach {} can answer prompts. Local development only. !!!", config.api.bind);
    }
    let bus = EventBus::new(BusLimits {
        subscriber_buffer: config.api.event_buffer,
        history: HistoryLimits {
            events: config.api.history_events,
            bytes: config.api.history_bytes,
            total_bytes: config.api.history_total_bytes,
        },
        // Each run numbers its events apart from every other's, so a resume point from
        // another instance or an earlier run is known here as foreign (events.md).
        seq_base: crate::events::random_seq_base(),
    });
    let metrics = Metrics::new();
    // With a PostgreSQL ledger, every instance on the same database is one cluster: a
    // session runs on the instance that holds its lease.
    let fences = config
        .ledger
        .postgres()
        .filter(|_| config.ledger.enabled)
        .map(|_| Fences::new(config.cluster.instance_id.clone()));
    let ledger = open_ledger(&config, lock, fences.clone())?;
    if let Some(ledger) = &ledger {
        metrics.register_ledger(ledger.latency_histograms());
    }
    let (notifier, link_base) = start_notifier(&config, &metrics)?;
    let sup = &config.supervisor;
    let sinks = notifier.clone();
    let mut registry =
        PermissionRegistry::new(bus.clone(), policy.clone(), ledger.clone(), metrics.clone())
            .remembering(
                sup.resolved_prompts,
                sup.resolved_prompts_bytes,
                config.ccr.supported_dialog_kinds.clone(),
            )
            .notifying(notifier.clone());
    if let Some(fences) = &fences {
        registry = registry.clustered(fences.clone());
    }
    // Clustered, a session's prompts are restored when this instance takes its lease.
    if let Some(ledger) = ledger.as_ref().filter(|_| fences.is_none()) {
        let unfinished = ledger
            .load_unfinished()
            .context("cannot read unfinished prompts from the ledger")?;
        let restored = registry.restore(unfinished);
        // Finished prompts too (bounded): a replay of one after the restart is matched to
        // its record and gets the recorded answer again, never shown as new.
        let resolved = ledger
            .load_resolved(sup.resolved_prompts, sup.resolved_prompts_bytes)
            .context("cannot read finished prompts from the ledger")?;
        let incomplete = resolved.incomplete.len();
        let remembered = registry.restore_resolved(resolved);
        if restored + remembered > 0 {
            info!(
                restored,
                remembered,
                incomplete_sessions = incomplete,
                "restored unanswered prompts and undelivered answers from the ledger, and remembered finished ones"
            );
        }
    }
    let arbiters: Vec<Arbiter> = (0..arbiter_count(config.supervisor.arbiters))
        .map(|_| Arbiter::new())
        .collect();
    // The registry shares the first session arbiter's thread: a prompt from one of its
    // sessions is then answered without waking another thread (on a 2-core box this was
    // worth a third of the CPU per prompt and half the p99.9; see docs/benchmarks.md).
    let registry = PermissionRegistry::start_in_arbiter(&arbiters[0].handle(), move |_| registry);
    let handles = arbiters.iter().map(Arbiter::handle).collect();
    let shared_bus = bus.clone();
    let shared_registry = registry.clone();
    let ccr = config.ccr.clone();
    let reconnect = Arc::new(config.reconnect.clone());
    let session_metrics = metrics.clone();
    let slots = ConnSlots::new(fds.session_slots, fds.limit);
    // The session states the supervisor announces to the cluster, sent by the lease thread.
    let states = StateOutbox::new();
    let clustered = match (&fences, &ledger) {
        (Some(fences), Some(ledger)) => Some(SupervisorCluster::new(
            ledger.clone(),
            fences.clone(),
            states.clone(),
        )),
        _ => None,
    };
    let session_fences = fences.clone();
    let supervisor = Supervisor::start_with(
        config.supervisor.clone(),
        config.sessions.iter().map(Arc::clone).collect(),
        handles,
        clustered,
        move |reports| SessionShared {
            source_addresses: ccr.source_addresses.clone().into(),
            ccr,
            base_url,
            reconnect,
            registry: shared_registry,
            reports,
            bus: shared_bus,
            metrics: session_metrics,
            slots: slots.clone(),
            handshakes: Arc::new(tokio::sync::Semaphore::new(
                crate::session::HANDSHAKES_IN_FLIGHT,
            )),
            notifier,
            fences: session_fences,
        },
    );
    let cluster = start_cluster(
        &config,
        fences.as_ref(),
        ledger.as_ref(),
        states,
        &supervisor,
        &registry,
    )?;
    if let Some(member) = &cluster {
        metrics.register_cluster(&member.stats());
    }
    let console =
        ConsoleSessions::new(config.console.session_lifetime, config.console.max_sessions);
    let swap_policy = Arc::new(crate::util::Swap::new(policy));
    let reloader = path.map(|path| {
        Arc::new(Reloader::new(
            path,
            load_config_to_run,
            config.clone(),
            supervisor.clone(),
            registry.clone(),
            swap_policy.clone(),
            auth.clone(),
            console.clone(),
            sinks,
            metrics.clone(),
            cluster.as_ref().map(ClusterMember::api),
        ))
    });
    let started = Arc::new(api::health::StartFlags::default());
    // Everything above ran on the validated config.
    started.config_loaded();
    let state = ApiState {
        supervisor: supervisor.clone(),
        registry: registry.clone(),
        bus: bus.clone(),
        auth,
        request_body_timeout: config.api.request_body_timeout,
        runtime_tokens: config.api.runtime_tokens.clone(),
        stream_heartbeat: config.api.stream_heartbeat,
        policy: swap_policy,
        ledger: ledger.clone(),
        metrics,
        // An edited input may be as large as the prompt it edits, plus the body around it.
        max_body_bytes: config.ccr.max_frame_bytes.max(1 << 20) + (64 << 10),
        streams: StreamCaps::new(
            fds.stream_subscribers,
            limits.max_stream_subscribers_per_token,
        ),
        console,
        public_origin: config
            .console
            .public_url
            .as_ref()
            .map(|u| u.origin().ascii_serialization()),
        started: started.clone(),
        readiness: Arc::new(api::health::ReadyCache::default()),
        metrics_auth: config.api.metrics_auth,
        tls: config.api.tls.is_some(),
        reloader: reloader
            .clone()
            .map(|r| r as Arc<dyn crate::api::admin::Reload>),
        cluster: cluster.as_ref().map(ClusterMember::api),
        dialog_kinds: config.ccr.supported_dialog_kinds.clone().into(),
        forward_tls: Arc::new(config::client_config(
            config.cluster.ca_file.as_ref(),
            &[b"h2", b"http/1.1"],
        )),
    };
    let tls = api_tls(&config)?;
    // `[api] workers`: one per core by default (was fixed at one).
    let workers = limits.worker_count();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(
                api::body_deadline::limit_body_time,
            ))
            .wrap(actix_web::middleware::from_fn(api::access::log_requests))
            .configure(crate::console::register)
            .configure(api::configure(state.clone()))
    })
    .workers(workers)
    .max_connections(fds.api_connections.div_ceil(workers).max(1))
    .h1_write_buffer_size(API_WRITE_BUFFER)
    .disable_signals()
    .shutdown_timeout(config.api.shutdown_timeout.as_secs().max(1));
    let server = match tls {
        Some(tls) => server.bind_rustls_0_23(config.api.bind, tls),
        None => server.bind(config.api.bind),
    }
    .with_context(|| format!("cannot bind the operator API on {}", config.api.bind))?;
    let api_addr = server
        .addrs()
        .first()
        .copied()
        .context("operator API bound no address")?;
    link_base.set(console_links(&config, api_addr));
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    started.api_bound();
    let tls = config.api.tls.is_some();
    info!(%api_addr, sessions = config.sessions.len(), workers, tls, "operator API listening");
    crate::systemd::ready();
    let alive = supervisor.clone();
    crate::systemd::spawn_watchdog(move || {
        // A round trip through the supervisor actor: its arbiter and mailbox work.
        let send = alive.send(crate::supervisor::LookupSession(String::new()));
        async move { send.await.is_ok() }
    });
    Ok(Running {
        supervisor,
        registry,
        bus,
        api_addr,
        sim,
        server: handle,
        arbiters,
        ledger,
        shutdown_timeout: config.api.shutdown_timeout,
        tls,
        reloader,
        cluster,
    })
}

/// In a cluster (a PostgreSQL ledger): start the lease loop, which starts and stops
/// sessions on this instance as it takes and gives up their leases.
fn start_cluster(
    config: &Config,
    fences: Option<&Arc<Fences>>,
    ledger: Option<&Ledger>,
    states: Arc<StateOutbox>,
    supervisor: &Addr<Supervisor>,
    registry: &Addr<PermissionRegistry>,
) -> anyhow::Result<Option<ClusterMember>> {
    let (Some(fences), Some(pg)) = (fences, ledger.and_then(Ledger::postgres)) else {
        return Ok(None);
    };
    let mut cfg = config.cluster.clone();
    if cfg.advertise_url.is_none() {
        cfg.advertise_url = default_advertise_url(config);
    }
    match &cfg.advertise_url {
        Some(url) => {
            info!(instance_id = %cfg.instance_id, advertise_url = %url, "joining the cluster")
        }
        None => {
            warn!(instance_id = %cfg.instance_id, "joining the cluster without [cluster] advertise_url: interrupts and messages for this instance's sessions cannot be forwarded to it")
        }
    }
    let sessions = StartSessions {
        configured: config.sessions.clone(),
        rules: config.api.runtime_tokens.clone(),
    };
    let to = Recipients {
        owner: supervisor.clone().recipient(),
        disowner: supervisor.clone().recipient(),
        decided: registry.clone().recipient(),
        seen: registry.clone().recipient(),
        sessions: supervisor.clone().recipient(),
        states: supervisor.clone().recipient(),
        announce: supervisor.clone().recipient(),
        resumed: registry.clone().recipient(),
        restart: supervisor.clone().recipient(),
    };
    let member = ClusterMember::start(pg.target(), &cfg, sessions, fences.clone(), states, to)
        .map_err(|e| anyhow::anyhow!("cannot start the cluster's lease loop: {e}"))?;
    Ok(Some(member))
}

/// Where the other instances reach this one when `[cluster] advertise_url` is not set:
/// `[api] bind`, when it names one address and a port (not `0.0.0.0`, not port 0).
fn default_advertise_url(config: &Config) -> Option<url::Url> {
    let bind = config.api.bind;
    if bind.ip().is_unspecified() || bind.port() == 0 {
        return None;
    }
    let scheme = if config.api.tls.is_some() {
        "https"
    } else {
        "http"
    };
    url::Url::parse(&format!("{scheme}://{bind}")).ok()
}

#[cfg(test)]
mod tests {
    use super::arbiter_count;

    #[test]
    fn only_a_ledger_in_use_is_exit_2() {
        use super::{exit_status, LedgerError};
        let in_use = LedgerError::InUse {
            path: "l.db".into(),
            lock: "l.db.lock".into(),
            pid: Some(7),
        };
        assert_eq!(exit_status(&anyhow::Error::new(in_use).context("outer")), 2);
        assert_eq!(exit_status(&anyhow::anyhow!("cannot bind")), 1);
        assert_eq!(exit_status(&LedgerError::Closed.into()), 1);
    }

    #[test]
    fn arbiters_are_as_configured_or_half_the_cores() {
        assert_eq!(arbiter_count(3), 3);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(arbiter_count(0), (cores / 2).max(1));
    }
}
