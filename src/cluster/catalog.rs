//! The cluster's session set (pure): the sessions this instance knows — those of its
//! config file and those stored in `ccr_sessions` (added with `POST /v1/sessions` on any
//! instance, or configured ones removed with `DELETE`) — and the two pools the planner
//! places them in.
//!
//! - **Shared**: sessions stored with a spec. Every member reads the same table, so every
//!   member knows them and may be given them.
//! - **Configured**: sessions of this instance's config file that the table neither
//!   stores nor marks removed. Only members whose config lists the same sessions (the
//!   same [`digest`]) may be given them: a member whose config lacks one would never
//!   claim it.
//!
//! A stored session that is also in this instance's config runs with the config's spec
//! here (its token may be a `token_command`, which the API never accepts). A configured
//! session the table marks removed is known nowhere until a reload that lists it (which
//! deletes the mark) or a `POST` of its id.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{stored_session, RuntimeTokenRules, SessionSpec};

/// One row of `ccr_sessions` as each round lists it (no spec: see [`Catalog::to_read`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The session.
    pub id: Arc<str>,
    /// Grows at every change of the row.
    pub revision: i64,
    /// A configured session removed with `DELETE` (the row has no spec).
    pub removed: bool,
}

/// What `ccr_sessions` says of a session, as this instance runs it.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// Added at run time, with its spec as this instance builds it ([`stored_session`]).
    Added(Arc<SessionSpec>),
    /// A configured session removed cluster-wide.
    Removed,
}

/// The rows of `ccr_sessions` read so far, each with the revision it was read at, so that
/// a round reads the spec of new and changed rows only.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    rows: BTreeMap<Arc<str>, (i64, Stored)>,
}

impl Catalog {
    /// Of a listing, the sessions whose spec must be read: added, at a revision not read yet.
    pub fn to_read(&self, listed: &[Listed]) -> Vec<Arc<str>> {
        listed
            .iter()
            .filter(|l| !l.removed)
            .filter(|l| self.rows.get(&l.id).is_none_or(|(r, _)| *r != l.revision))
            .map(|l| l.id.clone())
            .collect()
    }

    /// Make the catalog what `listed` says, with `read` (session, revision, stored JSON)
    /// for the rows [`to_read`](Self::to_read) named. A row listed as added but not read
    /// keeps the spec read before, if any, until a later round reads it.
    pub fn apply(
        &mut self,
        listed: &[Listed],
        read: &[(Arc<str>, i64, String)],
        rules: &RuntimeTokenRules,
    ) {
        let read: BTreeMap<&str, (i64, &str)> = read
            .iter()
            .map(|(id, rev, json)| (&**id, (*rev, json.as_str())))
            .collect();
        let mut rows = BTreeMap::new();
        for l in listed {
            let row = if l.removed {
                Some((l.revision, Stored::Removed))
            } else {
                match read.get(&*l.id) {
                    Some((rev, json)) if *rev == l.revision => Some((
                        l.revision,
                        Stored::Added(stored_session(&l.id, json, rules)),
                    )),
                    // Kept at its old revision: the next round reads it again.
                    _ => self
                        .rows
                        .remove(&l.id)
                        .filter(|(_, s)| matches!(s, Stored::Added(_))),
                }
            };
            if let Some(row) = row {
                rows.insert(l.id.clone(), row);
            }
        }
        self.rows = rows;
    }

    /// What the table says of `id`, if anything.
    pub fn get(&self, id: &str) -> Option<&Stored> {
        self.rows.get(id).map(|(_, s)| s)
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// The sessions this instance knows, and the planner's pools.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Known {
    /// Every session it runs while it holds the lease, by id, with the spec it runs.
    pub specs: BTreeMap<Arc<str>, Arc<SessionSpec>>,
    /// Stored with a spec: every member may be given them.
    pub shared: Vec<Arc<str>>,
    /// Of this instance's config only: placed on members with the same [`digest`].
    pub configured: Vec<Arc<str>>,
}

/// The sessions known from `configured` (this instance's `[[sessions]]`) and `catalog`.
pub fn known(configured: &[Arc<SessionSpec>], catalog: &Catalog) -> Known {
    let mut k = Known::default();
    let ours: BTreeMap<&str, &Arc<SessionSpec>> = configured.iter().map(|s| (&*s.id, s)).collect();
    for (id, (_, stored)) in &catalog.rows {
        if let Stored::Added(spec) = stored {
            let spec = ours.get(&**id).copied().unwrap_or(spec);
            k.specs.insert(id.clone(), spec.clone());
            k.shared.push(id.clone());
        }
    }
    for (id, spec) in ours {
        if catalog.get(id).is_none() {
            k.specs.insert(spec.id.clone(), spec.clone());
            k.configured.push(spec.id.clone());
        }
    }
    k
}

/// A fixed hash of a set of configured session ids (order and repeats do not count), as
/// members publish it: members with equal digests have the same configured sessions.
pub fn digest<'a>(ids: impl IntoIterator<Item = &'a str>) -> i64 {
    let mut ids: Vec<&str> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for id in ids {
        for b in id.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h ^= h >> 31;
    i64::from_ne_bytes(h.to_ne_bytes())
}

#[cfg(test)]
mod tests;
