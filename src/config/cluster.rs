//! `[cluster]` section -> [`ClusterConfig`]: who this instance is among the instances that
//! share sessions by leases, how the others reach it, and how long a lease lasts.

use std::sync::OnceLock;
use std::time::Duration;

use super::ca::{self, CaFile};
use super::fields::{Errors, Table};

/// Default of `[cluster] lease_period`.
pub const DEFAULT_LEASE_PERIOD: Duration = Duration::from_secs(10);
/// Shortest accepted `lease_period`: a lease renewed more often than this is load, not safety.
pub const MIN_LEASE_PERIOD: Duration = Duration::from_secs(1);
/// Longest accepted `lease_period`: failover takes up to two periods.
pub const MAX_LEASE_PERIOD: Duration = Duration::from_secs(600);
/// Default of `[cluster] outage_grace`: covers a database restart or a short outage.
pub const DEFAULT_OUTAGE_GRACE: Duration = Duration::from_secs(60);
/// Longest accepted `outage_grace`.
pub const MAX_OUTAGE_GRACE: Duration = Duration::from_secs(3600);
/// Longest accepted `instance_id`, in characters.
pub const MAX_INSTANCE_ID_LEN: usize = 64;
/// Characters of the random suffix of the default `instance_id`.
const SUFFIX_LEN: usize = 6;

/// `[cluster]` section: this instance's identity among those sharing sessions by leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This instance's name in leases and member rows (`instance_id`, default
    /// [`default_instance_id`]: host name, `-`, six random characters).
    pub instance_id: String,
    /// How the other instances reach this one's API (`advertise_url`, default unset).
    pub advertise_url: Option<url::Url>,
    /// How long a lease holds without renewal (`lease_period`, default 10 s, 1 s..=10 min).
    pub lease_period: Duration,
    /// How long a session whose lease could not be renewed keeps its socket, silent,
    /// waiting for the database (`outage_grace`, default 60 s, 0..=1 h).
    pub outage_grace: Duration,
    /// The CAs trusted for another instance's `https://` `advertise_url` when a request
    /// is forwarded to it (`ca_file`, PEM), instead of the public web PKI's roots (the
    /// default).
    pub ca_file: Option<CaFile>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            instance_id: default_instance_id().to_owned(),
            advertise_url: None,
            lease_period: DEFAULT_LEASE_PERIOD,
            outage_grace: DEFAULT_OUTAGE_GRACE,
            ca_file: None,
        }
    }
}

/// The default `instance_id`: the host name (characters outside `A-Za-z0-9._-` replaced by
/// `-`), `-`, and six random lowercase letters and digits.
///
/// Chosen once per process, so a reload of a file without `instance_id` reads the same
/// id and does not ask for a restart; a new process is a new member (its old leases
/// expire or are handed over, never silently shared with a restarted twin).
pub fn default_instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        let suffix: String = (0..SUFFIX_LEN)
            .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.gen_range(0..36)]))
            .collect();
        instance_id_from(&host_name(), &suffix)
    })
}

/// `host-suffix`, the host part made valid and short enough (pure, for the default).
fn instance_id_from(host: &str, suffix: &str) -> String {
    let mut host: String = host
        .chars()
        .map(|c| if id_char(c) { c } else { '-' })
        .collect();
    host.truncate(MAX_INSTANCE_ID_LEN - 1 - suffix.len());
    if host.is_empty() {
        host.push_str("ccr");
    }
    format!("{host}-{suffix}")
}

/// This machine's host name, or empty when it cannot be read.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._-".contains(c)
}

/// Validate the `[cluster]` table.
pub(super) fn cluster(mut t: Table, errs: &mut Errors) -> ClusterConfig {
    let d = ClusterConfig::default();
    let instance_id = match t.string(errs, "instance_id") {
        None => d.instance_id,
        Some(id) => match check_instance_id(&id) {
            Ok(()) => id,
            Err(problem) => {
                errs.push(t.key_path("instance_id"), problem);
                d.instance_id
            }
        },
    };
    let advertise_url = t.string(errs, "advertise_url").and_then(|text| {
        let problem = match url::Url::parse(text.trim()) {
            Err(e) => format!("not a valid URL: {e}"),
            Ok(u) if !matches!(u.scheme(), "http" | "https") || !u.has_host() => {
                "must be an http:// or https:// URL".to_owned()
            }
            Ok(u) if u.query().is_some() || u.fragment().is_some() => {
                "must have no query (?...) or fragment (#...): API paths are added to it".to_owned()
            }
            Ok(u) => return Some(u),
        };
        errs.push(t.key_path("advertise_url"), problem);
        None
    });
    let lease_period = t.duration_within(
        errs,
        "lease_period",
        d.lease_period,
        MIN_LEASE_PERIOD..=MAX_LEASE_PERIOD,
    );
    let outage_grace = t.duration_within(
        errs,
        "outage_grace",
        d.outage_grace,
        Duration::ZERO..=MAX_OUTAGE_GRACE,
    );
    let ca_file = ca::ca_file(&mut t, errs);
    t.finish(errs);
    ClusterConfig {
        instance_id,
        advertise_url,
        lease_period,
        outage_grace,
        ca_file,
    }
}

/// An `instance_id` is a lease owner in SQL, a label in metrics and a word in logs.
fn check_instance_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty (leave the key out for host name + random suffix)".into());
    }
    let len = id.chars().count();
    if len > MAX_INSTANCE_ID_LEN {
        return Err(format!(
            "must be at most {MAX_INSTANCE_ID_LEN} characters, got {len}"
        ));
    }
    if !id.chars().all(id_char) {
        return Err(format!(
            "may contain only letters, digits and . _ -, got {id:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
