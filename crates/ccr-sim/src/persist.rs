//! The simulator's outstanding prompts on disk (demo mode), so that its sessions outlive a
//! restart of the supervisor process the way real CCR sessions do: after a restart the
//! demo still waits on exactly the prompts it waited on before, and replays them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::state::{Outstanding, Shared};

/// How often changed state is written (and at stop).
pub(crate) const EVERY: Duration = Duration::from_millis(250);

/// One outstanding prompt as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stored {
    request_id: String,
    frame: String,
}

/// Every session's outstanding prompts, in send order.
pub(crate) type Snapshot = BTreeMap<String, Vec<Stored>>;

/// The prompts each session of `shared` waits on now.
pub(crate) fn snapshot(shared: &Shared) -> Snapshot {
    let st = shared.lock();
    st.sessions
        .iter()
        .filter(|(_, e)| e.token.is_some())
        .map(|(id, e)| {
            let prompts = e
                .outstanding
                .iter()
                .map(|o| Stored {
                    request_id: o.request_id.clone(),
                    frame: o.frame.clone(),
                })
                .collect();
            (id.clone(), prompts)
        })
        .collect()
}

/// Read a snapshot; a missing or unreadable file is an empty one (logged when unreadable).
pub(crate) fn load(path: &Path) -> Snapshot {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "simulator state unreadable; starting afresh");
            Snapshot::new()
        }),
        Err(_) => Snapshot::new(),
    }
}

/// Put the loaded prompts back as outstanding (sessions not configured any more are dropped).
pub(crate) fn restore(shared: &Shared, snapshot: Snapshot) {
    let mut st = shared.lock();
    for (id, prompts) in snapshot {
        if let Some(e) = st.sessions.get_mut(&id).filter(|e| e.token.is_some()) {
            e.outstanding = prompts
                .into_iter()
                .map(|p| Outstanding {
                    request_id: p.request_id,
                    frame: p.frame,
                })
                .collect();
        }
    }
}

/// Write `snapshot` atomically (a temporary file renamed over the old one).
pub(crate) fn save(path: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(snapshot)?)?;
    std::fs::rename(&tmp, path)
}

/// Write the state whenever it changed, every [`EVERY`], for the simulator's life.
pub(crate) async fn keep(shared: Arc<Shared>, path: PathBuf) {
    let mut last = snapshot(&shared);
    loop {
        tokio::time::sleep(EVERY).await;
        let now = snapshot(&shared);
        if now != last {
            if let Err(e) = save(&path, &now) {
                tracing::warn!(path = %path.display(), error = %e, "cannot save simulator state");
            }
            last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_and_a_bad_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.json");
        assert!(load(&path).is_empty(), "missing file");
        let mut snap = Snapshot::new();
        snap.insert(
            "s1".into(),
            vec![Stored {
                request_id: "r1".into(),
                frame: "{}".into(),
            }],
        );
        save(&path, &snap).unwrap();
        assert_eq!(load(&path), snap);
        std::fs::write(&path, "not json").unwrap();
        assert!(load(&path).is_empty());
    }
}
