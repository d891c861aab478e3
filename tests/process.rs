//! Real-process tests: the `ccr-supervisor` binary run as a child process with
//! a generated config, against the CCR simulator embedded in this test process
//! (127.0.0.1 only). Signals, `kill -9` + restart on the same ledger, and
//! start-up failures. Waits are on simulator events, the child's stdout and the
//! operator event stream; the only polling loop is bounded (ledger delivery mark).

#[path = "process/backup.rs"]
mod backup;
#[path = "process/cli.rs"]
mod cli;
#[path = "process/cluster.rs"]
mod cluster;
#[path = "common/mod.rs"]
mod common;
#[path = "process/ctl_watch.rs"]
mod ctl_watch;
#[path = "process/disk_full.rs"]
mod disk_full;
#[path = "process/fd_limit.rs"]
mod fd_limit;
#[path = "process/instance.rs"]
mod instance;
#[path = "process/logs.rs"]
mod logs;
#[path = "process/reload.rs"]
mod reload;
#[path = "process/restart.rs"]
mod restart;
#[path = "process/shutdown.rs"]
mod shutdown;
#[path = "process/startup.rs"]
mod startup;
#[path = "process/support.rs"]
mod support;
#[path = "process/systemd.rs"]
mod systemd;
#[path = "process/tls.rs"]
mod tls;
#[path = "process/tokens.rs"]
mod tokens;
