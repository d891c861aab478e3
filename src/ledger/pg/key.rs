//! The cluster's forwarding key: 32 random bytes kept in `ccr_cluster_keys`, made by the
//! first instance that finds none (every other one then reads the same). An instance signs
//! with it a request it forwards to a session's owner on a caller's behalf
//! (`crate::api::grant`), so the owner knows who the caller is without the caller's own
//! credential, which may be a console sign-in only the forwarding instance knows.

use rand::RngCore as _;
use tokio_postgres::Client;

/// The key's row name in `ccr_cluster_keys`.
const FORWARD: &str = "forward";

/// A secret key shared by the instances of one cluster; never printed (its `Debug` says
/// only that it is there).
pub struct ClusterKey([u8; 32]);

impl ClusterKey {
    /// The key's bytes, to key a MAC with.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// A key of these bytes (tests).
    #[cfg(test)]
    pub fn from_bytes(bytes: [u8; 32]) -> ClusterKey {
        ClusterKey(bytes)
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

/// The cluster's forwarding key: the stored one, or a new random one stored now. Two
/// instances starting at once both read the one that was inserted first.
pub(crate) async fn load_or_create(client: &Client) -> Result<ClusterKey, String> {
    let e = |what: &str, err: tokio_postgres::Error| format!("{what}: {}", super::describe(&err));
    let mut fresh = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut fresh);
    client
        .execute(
            "INSERT INTO ccr_cluster_keys (name, key) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&FORWARD, &fresh.as_slice()],
        )
        .await
        .map_err(|err| e("cannot store the cluster's forwarding key", err))?;
    let stored: Vec<u8> = client
        .query_one(
            "SELECT key FROM ccr_cluster_keys WHERE name = $1",
            &[&FORWARD],
        )
        .await
        .map_err(|err| e("cannot read the cluster's forwarding key", err))?
        .get(0);
    let key: [u8; 32] = stored.try_into().map_err(|k: Vec<u8>| {
        format!(
            "the cluster's forwarding key in ccr_cluster_keys is {} bytes, not 32",
            k.len()
        )
    })?;
    Ok(ClusterKey(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_never_prints_its_bytes() {
        let key = ClusterKey::from_bytes([0xab; 32]);
        let shown = format!("{key:?} {:?}", Some(&key));
        assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
