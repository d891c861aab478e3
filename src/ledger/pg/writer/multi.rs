//! One statement of a batch: which prepared statement, the writes it carries and their
//! columns as parameters, and what its returned rows say of each write.

use tokio_postgres::types::ToSql;
use tokio_postgres::Statement;

use super::{Conn, Fence};
use crate::ledger::pg::batch::{self, Said};
use crate::ledger::pg::describe;
use crate::ledger::writer::{DecisionRow, Write};

/// Which multi-row statement.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Leases,
    Prompts,
    Decisions,
    Deliveries,
}

/// One parameter of a statement: a column of its rows, as an array.
pub(super) type Param<'a> = Box<dyn ToSql + Send + Sync + 'a>;

/// One multi-row statement: its kind, the writes it carries (indexes into the batch, in
/// the order of its rows) and its parameters.
pub(super) struct Multi<'a> {
    pub(super) kind: Kind,
    pub(super) rows: &'a [usize],
    pub(super) params: Vec<Param<'a>>,
}

impl<'a> Multi<'a> {
    /// Its prepared statement: of one row when it has one, else multi-row.
    pub(super) fn statement<'c>(&self, c: &'c Conn) -> &'c Statement {
        let one = self.rows.len() == 1;
        match self.kind {
            Kind::Leases => &c.lock,
            Kind::Prompts if one => &c.insert_one,
            Kind::Prompts => &c.insert,
            Kind::Decisions if one => &c.decide_one,
            Kind::Decisions => &c.decide,
            Kind::Deliveries if one => &c.delivered_one,
            Kind::Deliveries => &c.delivered,
        }
    }

    /// The leases of the fenced writes among `writes`, if they are more than one
    /// ([`batch::LOCK_LEASES`]; one lease alone is locked by its statement, and a single
    /// row lock cannot close a cycle with a renewal).
    pub(super) fn leases(writes: &[(&'a Write, Option<&'a Fence>)]) -> Option<Self> {
        let fenced = || writes.iter().filter_map(|(w, f)| Some((w.key().0, (*f)?)));
        let session: Vec<&str> = fenced().map(|(s, _)| s).collect();
        let mut distinct = fenced().map(|(s, f)| (s, f.epoch));
        let first = distinct.next();
        if first.is_none_or(|first| distinct.all(|other| other == first)) {
            return None;
        }
        let owner: Vec<&str> = fenced().map(|(_, f)| &*f.owner).collect();
        let epoch: Vec<i64> = fenced().map(|(_, f)| f.epoch).collect();
        let params: Vec<Param<'a>> = vec![Box::new(session), Box::new(owner), Box::new(epoch)];
        Some(Multi {
            kind: Kind::Leases,
            rows: &[],
            params,
        })
    }

    /// The prompts among `writes` at `rows`, if any.
    pub(super) fn prompts(
        writes: &[(&'a Write, Option<&'a Fence>)],
        rows: &'a [usize],
    ) -> Option<Self> {
        if rows.is_empty() {
            return None;
        }
        let n = rows.len();
        let (mut session, mut request, mut tool_use) = (col(n), col(n), col(n));
        let (mut tool, mut input, mut json, mut at) = (col(n), col(n), col(n), col(n));
        let (mut owner, mut epoch) = (col(n), col(n));
        let mut decided = DecisionColumns::new(n);
        for &i in rows {
            let (Write::Prompt(p), fence) = writes[i] else {
                unreachable!("a run's prompts are prompts")
            };
            decided.push(batch::decided_with(writes, i));
            session.push(p.session_id.as_str());
            request.push(p.request_id.as_str());
            tool_use.push(p.tool_use_id.as_deref());
            tool.push(p.tool_name.as_str());
            input.push(p.input.as_str());
            json.push(p.request.as_str());
            at.push(p.received_at);
            owner.push(fence.map(|f| &*f.owner));
            epoch.push(fence.map(|f| f.epoch));
        }
        let one = n == 1;
        let mut params: Vec<Param<'a>> = vec![
            param(session, one),
            param(request, one),
            param(tool_use, one),
            param(tool, one),
            param(input, one),
            param(json, one),
            param(at, one),
            param(owner, one),
            param(epoch, one),
        ];
        params.extend(decided.params(one));
        Some(Multi {
            kind: Kind::Prompts,
            rows,
            params,
        })
    }

    /// The decisions among `writes` at `rows`, if any.
    pub(super) fn decisions(
        writes: &[(&'a Write, Option<&'a Fence>)],
        rows: &'a [usize],
    ) -> Option<Self> {
        if rows.is_empty() {
            return None;
        }
        let n = rows.len();
        let (mut session, mut request) = (col(n), col(n));
        let mut decided = DecisionColumns::new(n);
        for &i in rows {
            let (Write::Decision(d), _) = writes[i] else {
                unreachable!("a run's decisions are decisions")
            };
            session.push(d.session_id.as_str());
            request.push(d.request_id.as_str());
            decided.push(Some(d));
        }
        let one = n == 1;
        let mut params: Vec<Param<'a>> = vec![param(session, one), param(request, one)];
        params.extend(decided.params(one));
        Some(Multi {
            kind: Kind::Decisions,
            rows,
            params,
        })
    }

    /// The delivery marks among `writes` at `rows`, if any.
    pub(super) fn deliveries(
        writes: &[(&'a Write, Option<&'a Fence>)],
        rows: &'a [usize],
    ) -> Option<Self> {
        if rows.is_empty() {
            return None;
        }
        let n = rows.len();
        let (mut session, mut request, mut at) = (col(n), col(n), col(n));
        let (mut owner, mut epoch) = (col(n), col(n));
        for &i in rows {
            let (
                Write::Delivered {
                    session_id,
                    request_id,
                    at: when,
                },
                fence,
            ) = writes[i]
            else {
                unreachable!("a run's deliveries are deliveries")
            };
            session.push(session_id.as_str());
            request.push(request_id.as_str());
            at.push(*when);
            owner.push(fence.map(|f| &*f.owner));
            epoch.push(fence.map(|f| f.epoch));
        }
        let one = n == 1;
        let params: Vec<Param<'a>> = vec![
            param(session, one),
            param(request, one),
            param(at, one),
            param(owner, one),
            param(epoch, one),
        ];
        Some(Multi {
            kind: Kind::Deliveries,
            rows,
            params,
        })
    }

    /// Record in `said` what the statement's returned rows say of its writes (a write it
    /// returned no row for was done); an error if a row names no write of it.
    pub(super) fn read(
        &self,
        rows: &[tokio_postgres::Row],
        writes: &[(&Write, Option<&Fence>)],
        said: &mut [Said],
    ) -> Result<(), String> {
        if let Kind::Leases = self.kind {
            // Only the locks count; each write's own statement says whether it was held.
            return Ok(());
        }
        for row in rows {
            let at = batch::ordinal(row.try_get(0).map_err(|e| describe(&e))?, self.rows.len())
                .ok_or_else(|| format!("a {:?} statement answered for no row of it", self.kind))?;
            let index = self.rows[at];
            let (session_id, request_id) = writes[index].0.key();
            said[index] = match (self.kind, writes[index].0) {
                (Kind::Prompts, _) => {
                    // The decision it was inserted with changed nothing (the prompt was not
                    // inserted, and deciding it as it stood did nothing).
                    if row.try_get(2).map_err(|e| describe(&e))? {
                        let Some((Write::Decision(d), _)) = writes.get(index + 1) else {
                            return Err("a prompt's statement answered for a decision it \
                                had not"
                                .into());
                        };
                        said[index + 1] = batch::undecided(d, row.get(3), row.get(4), row.get(5));
                    }
                    match row.try_get(1).map_err(|e| describe(&e))? {
                        true => Said::Done,
                        false => batch::not_owner(session_id),
                    }
                }
                (Kind::Decisions, Write::Decision(d)) => {
                    batch::undecided(d, row.get(1), row.get(2), row.get(3))
                }
                (Kind::Deliveries, _) => {
                    batch::undelivered(session_id, request_id, row.get(1), row.get(2))
                }
                (Kind::Decisions | Kind::Leases, _) => {
                    unreachable!("a run's decisions are decisions; leases return early")
                }
            };
        }
        Ok(())
    }
}

/// A decision's columns, in the order both [`batch::decide`] and a prompt inserted decided
/// ([`batch::insert_prompts`]) take them: outcome, decided by, decided at, updated input,
/// answer, reason; NULL for a row without a decision.
struct DecisionColumns<'a> {
    outcome: Vec<Option<&'a str>>,
    by: Vec<Option<&'a str>>,
    at: Vec<Option<i64>>,
    updated: Vec<Option<&'a str>>,
    answer: Vec<Option<&'a str>>,
    reason: Vec<Option<&'a str>>,
}

impl<'a> DecisionColumns<'a> {
    fn new(n: usize) -> Self {
        DecisionColumns {
            outcome: col(n),
            by: col(n),
            at: col(n),
            updated: col(n),
            answer: col(n),
            reason: col(n),
        }
    }

    fn push(&mut self, d: Option<&'a DecisionRow>) {
        self.outcome.push(d.map(|d| d.outcome.as_str()));
        self.by.push(d.map(|d| d.decided_by.as_str()));
        self.at.push(d.map(|d| d.decided_at));
        self.updated
            .push(d.and_then(|d| d.updated_input.as_deref()));
        self.answer.push(d.and_then(|d| d.answer.as_deref()));
        self.reason.push(d.and_then(|d| d.reason.as_deref()));
    }

    fn params(self, one: bool) -> [Param<'a>; 6] {
        [
            param(self.outcome, one),
            param(self.by, one),
            param(self.at, one),
            param(self.updated, one),
            param(self.answer, one),
            param(self.reason, one),
        ]
    }
}

/// A column as its statement's parameter: the array, or its one value for a one-row
/// statement.
fn param<'a, T: ToSql + Send + Sync + 'a>(column: Vec<T>, one: bool) -> Param<'a> {
    match (one, column.len()) {
        (true, 1) => Box::new(column.into_iter().next().expect("one value")),
        _ => Box::new(column),
    }
}

/// One kind's rows of a run as its statements' rows: one by one, or all in one
/// ([`batch::one_by_one`]).
pub(super) fn split(rows: &[usize]) -> std::slice::Chunks<'_, usize> {
    let size = match batch::one_by_one(rows.len()) {
        true => 1,
        false => rows.len().max(1),
    };
    rows.chunks(size)
}

/// An empty column for `n` rows.
fn col<T>(n: usize) -> Vec<T> {
    Vec::with_capacity(n)
}
