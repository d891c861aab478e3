//! One commit's writes as a few multi-row statements: the batch is cut into runs in which
//! no prompt is written twice (the writes of one prompt keep their queue order), and
//! each run is at most three statements, one per kind of write, each taking its rows as
//! arrays (`unnest`) and answering only for the rows it did not simply do.
//!
//! The fence is checked once per statement for every (session, owner, epoch) in it, not
//! once per row: the statement locks those lease rows `FOR KEY SHARE` (see
//! [`fence::condition`](super::fence::condition) for why a lock) and writes only the rows
//! whose lease it found held.
//!
//! Everything here is plain data: the SQL, which write goes into which statement, and what
//! each returned row means. The writer sends it.

use std::collections::HashMap;

use super::writer::Fence;
use crate::ledger::record::LedgerError;
use crate::ledger::writer::{DecisionRow, Write};
use ccr_protocol::reply::Outcome;

/// Planner settings of the writer's own connection, set before its statements are
/// prepared: no hash or merge joins. Every statement of the writer joins its few rows
/// (`unnest`) to `ccr_prompts` by key, which is a nested loop of index lookups; planned
/// with the statistics of a table that was small when last analyzed (a new database, or
/// the start of a busy hour), [`decide`] instead hashed the whole table (a sequential scan
/// of `ccr_prompts` per statement, twice), or the whole of the partial index
/// `ccr_prompts_unfinished` with its dead entries (~4,500 index entries read per
/// statement at 2,000 prompts/s; docs/benchmarks.md). Only this connection's plans change.
///
/// And always the generic plan of each prepared statement, planned once per connection:
/// left to choose, PostgreSQL's plan cache kept planning some of them anew at every
/// execution (at 500 prompts/s, `LOCK_LEASES` and the multi-row statements: planning
/// took 0.2 to 0.7 ms a statement, more than running it), and at 2,000/s settled on the
/// generic plan after five. The plan test checks the generic plans.
pub(super) const WRITER_PLANNER: &str =
    "SET enable_hashjoin = off; SET enable_mergejoin = off; SET plan_cache_mode = force_generic_plan";

/// Every lease a batch's fenced writes count under (`$1`..`$3`: session, owner, epoch per
/// write), locked `FOR KEY SHARE` first in the transaction, in the order of their session ids;
/// returns how many are held.
///
/// Why first, and in order: the batch's leases are locked once, before the statements that
/// write under them (which lock them again without waiting: they are this transaction's
/// already). A renewal or a release (`FOR NO KEY UPDATE`, the expiry only) does not
/// conflict with this lock; a claim locks one lease `FOR UPDATE` and waits for the batch
/// (or the batch for it), never in a cycle. The session-id order is kept so that nothing
/// locking several lease rows in that order can deadlock with a batch. (Before the lock
/// was `FOR KEY SHARE`, a renewal of many leases conflicted with it, and leases locked
/// statement by statement deadlocked with it.)
pub(super) const LOCK_LEASES: &str = "SELECT count(*) FROM (SELECT DISTINCT session_id, \
    owner, epoch FROM unnest($1::text[], $2::text[], $3::int8[]) AS f (session_id, owner, \
    epoch) ORDER BY session_id) f, LATERAL (SELECT 1 FROM ccr_leases l \
    WHERE l.session_id = f.session_id AND l.owner = f.owner AND l.epoch = f.epoch \
    AND l.expires_at > now() FOR KEY SHARE) l";

/// The lease rows a statement's fenced rows count under, locked `FOR KEY SHARE`, once each;
/// the rows of `w` (the statement's input) whose lease is held (or that need none) are
/// `ok`. `w` has the columns `session_id`, `owner`, `epoch` (NULL owner: not fenced).
///
/// Each distinct lease is looked up by its key ([`fence::condition`](super::fence::condition)
/// once per lease instead of once per row): a join would scan the whole lease table for
/// every statement.
const HELD_AND_OK: &str = "held AS MATERIALIZED (SELECT l.session_id, l.owner, l.epoch \
    FROM (SELECT DISTINCT session_id, owner, epoch FROM w WHERE owner IS NOT NULL) f, \
    LATERAL (SELECT l.session_id, l.owner, l.epoch FROM ccr_leases l \
    WHERE l.session_id = f.session_id AND l.owner = f.owner AND l.epoch = f.epoch \
    AND l.expires_at > now() FOR KEY SHARE) l), \
    ok AS MATERIALIZED (SELECT * FROM w WHERE owner IS NULL \
    OR (session_id, owner, epoch) IN (SELECT session_id, owner, epoch FROM held))";

/// Prompts (`$1`..`$9`: the columns, then each row's owner and epoch, NULL when not
/// fenced; `$10`..`$15`: the decision that follows the prompt at once in the batch, see
/// [`DECIDED_COLUMNS`], all NULL when none): inserted unless known. A prompt it does not
/// insert (known already, or its lease not held) has its decision applied as [`decide`]
/// would have, in this statement. Returns, for each row that was not simply done, its
/// ordinal (1-based), whether its lease was held (not held: nothing written for its
/// prompt), whether its decision changed nothing, and then what [`decide`] returns of the
/// prompt as it was (see [`decision_before`]).
pub(super) fn insert_prompts() -> String {
    format!(
        "WITH w AS MATERIALIZED (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], \
         $4::text[], $5::text[], $6::text[], $7::int8[], $8::text[], $9::int8[], $10::text[], \
         $11::text[], $12::int8[], $13::text[], $14::text[], $15::text[]) WITH ORDINALITY \
         AS w (session_id, request_id, tool_use_id, tool_name, input, request, received_at, \
         owner, epoch, {DECIDED_COLUMNS}, i)), {HELD_AND_OK}, \
         ins AS (INSERT INTO ccr_prompts (session_id, request_id, tool_use_id, tool_name, \
         input, request, received_at, {DECIDED_COLUMNS}) SELECT session_id, request_id, \
         tool_use_id, tool_name, input, request, received_at, {DECIDED_COLUMNS} FROM ok \
         ORDER BY i ON CONFLICT (session_id, request_id) DO NOTHING \
         RETURNING session_id, request_id), \
         d AS MATERIALIZED (SELECT * FROM w WHERE outcome IS NOT NULL \
         AND (session_id, request_id) NOT IN (SELECT session_id, request_id FROM ins)), \
         upd AS ({decided}) \
         SELECT w.i, w.i IN (SELECT i FROM ok), d.i IS NOT NULL AND d.i NOT IN \
         (SELECT i FROM upd), {before} FROM w LEFT JOIN d ON d.i = w.i \
         LEFT JOIN ccr_prompts p ON p.session_id = w.session_id \
         AND p.request_id = w.request_id \
         WHERE w.i NOT IN (SELECT i FROM ok) OR (d.i IS NOT NULL AND d.i NOT IN \
         (SELECT i FROM upd))",
        decided = decision_update("d"),
        before = decision_before("w.answer"),
    )
}

/// The decision columns a prompt is inserted with when the batch decides it at once
/// (a rule's answer on arrival, `write_together`): the row is written once, decided,
/// instead of inserted and then updated (a second row version, and an entry in each of
/// the four indexes, for every such prompt). That decision is not sent again as its own
/// statement (see [`runs`]): the insert applies it itself to a prompt it does not write,
/// and answers for it. The insert's trigger sends its `ccr_decided` notification (schema
/// migration 6).
const DECIDED_COLUMNS: &str = "outcome, decided_by, decided_at, updated_input, answer, reason";

/// How the decisions of the rows of `w` (columns as [`decide`] takes them, and `i`) apply
/// to their prompts `p`: first decision wins; a cancel may still void an undelivered
/// answer (keeping that answer for the audit trail). Returns the ordinal of each row it
/// decided. That condition is a `CASE`, not the `OR` it means: from an `OR` the planner
/// derives `outcome IS NULL OR (outcome <> 'cancelled' AND delivered_at IS NULL)`, which is
/// the partial index `ccr_prompts_unfinished`'s predicate, and scanned that whole index
/// (every unfinished prompt, and the dead entries every decision and delivery leaves there
/// until a vacuum) for each statement instead of looking each row up by its key (see also
/// [`WRITER_PLANNER`]).
fn decision_update(w: &str) -> String {
    format!(
        "UPDATE ccr_prompts p SET outcome = {w}.outcome, decided_by = {w}.decided_by, \
         decided_at = {w}.decided_at, updated_input = COALESCE({w}.updated_input, \
         p.updated_input), answer = COALESCE({w}.answer, p.answer), \
         reason = COALESCE({w}.reason, p.reason) FROM {w} WHERE p.session_id = {w}.session_id \
         AND p.request_id = {w}.request_id AND CASE WHEN p.outcome IS NULL THEN true \
         ELSE {w}.outcome = 'cancelled' AND p.outcome <> 'cancelled' \
         AND p.delivered_at IS NULL END RETURNING {w}.i"
    )
}

/// What a statement returns of a decision that changed nothing, from its prompt `p` as it
/// was before the statement: whether the prompt exists, its outcome, and decided_by only
/// when its stored answer is the decision's (`answer`: its column or parameter; the same
/// decision again is a no-op, a different answer of the same operator is refused); see
/// [`undecided`].
fn decision_before(answer: &str) -> String {
    format!(
        "p.session_id IS NOT NULL, p.outcome, \
         CASE WHEN p.answer IS NOT DISTINCT FROM {answer} THEN p.decided_by END"
    )
}

/// Decisions (`$1`..`$8`), applied as [`decision_update`] says. Returns, for each row that
/// changed nothing, its ordinal and [`decision_before`].
pub(super) fn decide() -> String {
    format!(
        "WITH w AS MATERIALIZED (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], \
         $4::text[], $5::int8[], $6::text[], $7::text[], $8::text[]) WITH ORDINALITY \
         AS w (session_id, request_id, {DECIDED_COLUMNS}, i)), upd AS ({decided}) \
         SELECT w.i, {before} FROM w LEFT JOIN ccr_prompts p \
         ON p.session_id = w.session_id AND p.request_id = w.request_id \
         WHERE w.i NOT IN (SELECT i FROM upd)",
        decided = decision_update("w"),
        before = decision_before("w.answer"),
    )
}

/// Deliveries (`$1`..`$5`: session, request, time, owner and epoch, NULL when not fenced):
/// the first sets `delivered_at`, each counts. Returns, for each row that changed nothing,
/// its ordinal, whether its lease held, and whether the prompt exists.
pub(super) fn mark_delivered() -> String {
    format!(
        "WITH w AS MATERIALIZED (SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], \
         $4::text[], $5::int8[]) WITH ORDINALITY AS w (session_id, request_id, at, owner, \
         epoch, i)), {HELD_AND_OK}, \
         upd AS (UPDATE ccr_prompts p SET delivered_at = COALESCE(p.delivered_at, ok.at), \
         deliveries = p.deliveries + 1, last_delivered_at = ok.at FROM ok \
         WHERE p.session_id = ok.session_id AND p.request_id = ok.request_id \
         AND p.outcome IS NOT NULL RETURNING ok.i) \
         SELECT w.i, w.i IN (SELECT i FROM ok), EXISTS (SELECT 1 FROM ccr_prompts p \
         WHERE p.session_id = w.session_id AND p.request_id = w.request_id) FROM w \
         WHERE w.i NOT IN (SELECT i FROM upd)"
    )
}

/// [`insert_prompts`] for one row (`$1`..`$7`, owner `$8` and epoch `$9`, NULL when not
/// fenced, the decision's columns `$10`..`$15`), answering alike: the multi-row
/// statement's fixed cost is about twice the single row's, and an idle writer commits one
/// write at a time.
pub(super) fn insert_prompt() -> String {
    format!(
        "WITH fence AS (SELECT $8::text IS NULL OR EXISTS \
         (SELECT 1 FROM ccr_leases WHERE session_id = $1 AND owner = $8 AND epoch = $9 \
         AND expires_at > now() FOR KEY SHARE) AS held), \
         ins AS (INSERT INTO ccr_prompts (session_id, request_id, tool_use_id, tool_name, \
         input, request, received_at, {DECIDED_COLUMNS}) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $10::text, $11::text, $12::int8, $13::text, \
         $14::text, $15::text FROM fence WHERE held \
         ON CONFLICT (session_id, request_id) DO NOTHING RETURNING 1), \
         upd AS ({decided} AND $10::text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ins) \
         RETURNING 1), \
         f AS (SELECT (SELECT held FROM fence) AS held, $10::text IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM ins) AND NOT EXISTS (SELECT 1 FROM upd) AS undecided) \
         SELECT 1::int8, f.held, f.undecided, {before} FROM f LEFT JOIN ccr_prompts p \
         ON p.session_id = $1 AND p.request_id = $2 WHERE NOT f.held OR f.undecided",
        decided = decision_update_one(10),
        before = decision_before("$14"),
    )
}

/// [`decision_update`] for one prompt (`$1`, `$2`) and the decision's columns from
/// `$first` on, as [`DECIDED_COLUMNS`] orders them; without its `RETURNING`.
fn decision_update_one(first: usize) -> String {
    let [o, by, at, input, answer, reason] = std::array::from_fn(|k| first + k);
    format!(
        "UPDATE ccr_prompts SET outcome = ${o}, decided_by = ${by}, decided_at = ${at}, \
         updated_input = COALESCE(${input}, updated_input), answer = COALESCE(${answer}, \
         answer), reason = COALESCE(${reason}, reason) WHERE session_id = $1 \
         AND request_id = $2 AND CASE WHEN outcome IS NULL THEN true ELSE ${o} = 'cancelled' \
         AND outcome <> 'cancelled' AND delivered_at IS NULL END"
    )
}

/// [`decide`] for one row (`$1`..`$8`), answering alike.
pub(super) fn decide_one() -> String {
    format!(
        "WITH upd AS ({decided} RETURNING 1) SELECT 1::int8, {before} \
         FROM (VALUES (1)) AS one (x) LEFT JOIN ccr_prompts p \
         ON p.session_id = $1 AND p.request_id = $2 WHERE NOT EXISTS (SELECT 1 FROM upd)",
        decided = decision_update_one(3),
        before = decision_before("$7"),
    )
}

/// [`mark_delivered`] for one row (`$1`..`$3`, owner `$4` and epoch `$5`, NULL when not
/// fenced), answering alike.
pub(super) const DELIVERED_ONE: &str = "WITH fence AS (SELECT $4::text IS NULL OR EXISTS \
    (SELECT 1 FROM ccr_leases WHERE session_id = $1 AND owner = $4 AND epoch = $5 \
    AND expires_at > now() FOR KEY SHARE) AS held), \
    upd AS (UPDATE ccr_prompts SET delivered_at = COALESCE(delivered_at, $3), \
    deliveries = deliveries + 1, last_delivered_at = $3 \
    WHERE session_id = $1 AND request_id = $2 AND outcome IS NOT NULL \
    AND (SELECT held FROM fence) RETURNING 1) \
    SELECT 1::int8, (SELECT held FROM fence), EXISTS (SELECT 1 FROM ccr_prompts \
    WHERE session_id = $1 AND request_id = $2) WHERE NOT EXISTS (SELECT 1 FROM upd)";

/// Whether `rows` writes of one kind go as one-row statements each rather than as one
/// multi-row statement: a multi-row statement costs PostgreSQL about 0.45 ms of fixed
/// time against about 0.2 ms for a one-row one, and about 0.05 ms a row, so it pays from
/// the fourth row (measured in docs/benchmarks.md).
pub(super) fn one_by_one(rows: usize) -> bool {
    rows <= 3
}

/// The stored decision, read again when [`decide`] lost a race it could not see. Like
/// [`decide`], it gives `decided_by` only when the stored answer is this one's (`$3`), so that
/// only the very same decision again counts as done: the same operator's other answer to
/// the same prompt (another edit, say) is refused as already decided.
pub(super) const STORED: &str = "SELECT outcome, \
    CASE WHEN answer IS NOT DISTINCT FROM $3 THEN decided_by END \
    FROM ccr_prompts WHERE session_id = $1 AND request_id = $2";

/// Part of a batch in which each prompt is written at most once: its writes by kind, as
/// indexes into the batch, in queue order.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Run {
    pub prompts: Vec<usize>,
    pub decisions: Vec<usize>,
    pub deliveries: Vec<usize>,
}

/// Cut `writes` (in queue order) into runs, to be sent in order: the first run has the
/// first write of each prompt, the second its second write, and so on. Each prompt's
/// writes so stay in queue order, and the statements of one run may go in any order
/// (they touch different rows; writes of different prompts do not depend on each other).
/// The usual batch, every prompt written once, is one run. A decision the prompt before it
/// is inserted with ([`decided_with`]) is in no run: the insert's statement writes it (or,
/// for a prompt it does not insert, applies it as [`decide`] would) and answers for it; it
/// still counts as its prompt's next write, so that the prompt's later writes come after.
pub(super) fn runs(writes: &[(&Write, Option<&Fence>)]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    let mut seen: HashMap<(&str, &str), usize> = HashMap::with_capacity(writes.len());
    for (i, (w, _)) in writes.iter().enumerate() {
        let layer = seen.entry(w.key()).or_insert(0);
        if *layer == out.len() {
            out.push(Run::default());
        }
        let run = &mut out[*layer];
        *layer += 1;
        match w {
            Write::Prompt(_) => run.prompts.push(i),
            Write::Decision(_) if i > 0 && decided_with(writes, i - 1).is_some() => {}
            Write::Decision(_) => run.decisions.push(i),
            Write::Delivered { .. } => run.deliveries.push(i),
        }
    }
    out.retain(|run| run != &Run::default());
    out
}

/// The decision the prompt at `i` is inserted with ([`DECIDED_COLUMNS`]): the write right
/// after it in queue order, when that decides the same prompt. Nothing of that prompt
/// comes between the two, and the insert's statement applies the decision itself to a
/// prompt it does not write, so writing the row decided is what the two writes would have
/// done.
pub(super) fn decided_with<'a>(
    writes: &[(&'a Write, Option<&Fence>)],
    i: usize,
) -> Option<&'a DecisionRow> {
    let (prompt, next): (&Write, &'a Write) = (writes.get(i)?.0, writes.get(i + 1)?.0);
    match (prompt, next) {
        (Write::Prompt(_), Write::Decision(d)) if prompt.key() == next.key() => Some(d),
        _ => None,
    }
}

/// The `i`th row's ordinal as a statement returns it (1-based `WITH ORDINALITY`), as an
/// index into the statement's rows; `None` when out of range (a bug: the batch fails).
pub(super) fn ordinal(i: i64, rows: usize) -> Option<usize> {
    usize::try_from(i)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .filter(|&i| i < rows)
}

/// What one write's statement said, before the batch's transaction is known to have
/// committed.
#[derive(Debug)]
pub(super) enum Said {
    Done,
    Refused(LedgerError),
    /// A decision changed nothing while the row looked undecided: a concurrent decision
    /// (another instance's) committed in between; read the row again.
    Raced,
}

/// A prompt whose lease was not held.
pub(super) fn not_owner(session_id: &str) -> Said {
    Said::Refused(LedgerError::NotOwner {
        session_id: session_id.to_owned(),
    })
}

/// A decision that changed nothing: whether the prompt exists and its decision before.
pub(super) fn undecided(
    d: &DecisionRow,
    exists: bool,
    outcome: Option<String>,
    by: Option<String>,
) -> Said {
    match (exists, outcome) {
        (false, _) => Said::Refused(LedgerError::UnknownPrompt {
            session_id: d.session_id.clone(),
            request_id: d.request_id.clone(),
        }),
        (true, None) => Said::Raced,
        (true, outcome) => match refusal(d, Some((outcome, by))) {
            Ok(()) => Said::Done,
            Err(e) => Said::Refused(e),
        },
    }
}

/// A delivery mark that changed nothing: whether its lease held, whether the prompt exists.
pub(super) fn undelivered(session_id: &str, request_id: &str, held: bool, exists: bool) -> Said {
    let (session_id, request_id) = (session_id.to_owned(), request_id.to_owned());
    match (held, exists) {
        (false, _) => Said::Refused(LedgerError::NotOwner { session_id }),
        (true, true) => Said::Refused(LedgerError::NotDecided {
            session_id,
            request_id,
        }),
        (true, false) => Said::Refused(LedgerError::UnknownPrompt {
            session_id,
            request_id,
        }),
    }
}

/// A decision that changed nothing, against what is stored: the same decision again is a
/// no-op, anything else is refused.
pub(super) fn refusal(
    d: &DecisionRow,
    stored: Option<(Option<String>, Option<String>)>,
) -> Result<(), LedgerError> {
    let (session_id, request_id) = (d.session_id.clone(), d.request_id.clone());
    match stored {
        None => Err(LedgerError::UnknownPrompt {
            session_id,
            request_id,
        }),
        Some((Some(o), by)) if o == d.outcome.as_str() && by.as_deref() == Some(&d.decided_by) => {
            Ok(())
        }
        Some((None, _)) => Err(LedgerError::Storage(
            "a decision changed nothing, yet the prompt reads undecided".into(),
        )),
        Some((o, _)) => Err(LedgerError::AlreadyDecided {
            session_id,
            request_id,
            outcome: o.and_then(|o| o.parse().ok()).unwrap_or(Outcome::Cancelled),
        }),
    }
}

#[cfg(test)]
mod tests;
