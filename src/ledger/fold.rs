//! A prompt's row assembled in memory from the writes one applier batch carries for it.
//!
//! Most prompts are recorded, decided and delivered within one applier transaction. Folding
//! those writes into the row they produce lets the applier store it with one `INSERT`
//! instead of an `INSERT` and two `UPDATE`s that rewrite the row and its partial index.
//! [`Folded::apply`] follows the same rules as the SQL in [`super::sql`], write by write,
//! and returns the same result; `sql`'s tests check the two against each other.

use super::record::LedgerError;
use super::writer::{DecisionRow, PromptRow, Write};
use ccr_protocol::reply::Outcome;

/// The `prompts` row of one new prompt after the writes applied to it so far.
#[derive(Debug)]
pub(crate) struct Folded<'a> {
    pub prompt: &'a PromptRow,
    pub outcome: Option<Outcome>,
    pub decided_by: Option<&'a str>,
    pub decided_at: Option<i64>,
    pub updated_input: Option<&'a str>,
    pub answer: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub delivered_at: Option<i64>,
    pub deliveries: i64,
    pub last_delivered_at: Option<i64>,
}

impl<'a> Folded<'a> {
    /// The row as its prompt write inserts it: pending.
    pub fn new(prompt: &'a PromptRow) -> Self {
        Self {
            prompt,
            outcome: None,
            decided_by: None,
            decided_at: None,
            updated_input: None,
            answer: None,
            reason: None,
            delivered_at: None,
            deliveries: 0,
            last_delivered_at: None,
        }
    }

    /// Apply a later write for the same prompt; the rows affected, or the refusal, exactly
    /// as the SQL would report them.
    pub fn apply(&mut self, write: &'a Write) -> Result<u64, LedgerError> {
        debug_assert_eq!(
            write.key(),
            (
                self.prompt.session_id.as_str(),
                self.prompt.request_id.as_str()
            )
        );
        match write {
            // `ON CONFLICT DO NOTHING`.
            Write::Prompt(_) => Ok(0),
            Write::Decision(d) => self.decision(d),
            Write::Delivered { at, .. } => match self.outcome {
                Some(_) => {
                    self.delivered_at = self.delivered_at.or(Some(*at));
                    self.deliveries += 1;
                    self.last_delivered_at = Some(*at);
                    Ok(1)
                }
                None => Err(LedgerError::NotDecided {
                    session_id: self.prompt.session_id.clone(),
                    request_id: self.prompt.request_id.clone(),
                }),
            },
        }
    }

    /// First decision wins; a cancel may still void an undelivered answer; repeating the
    /// stored decision is a no-op.
    fn decision(&mut self, d: &'a DecisionRow) -> Result<u64, LedgerError> {
        let voidable = matches!(
            self.outcome,
            Some(Outcome::Allowed | Outcome::Denied | Outcome::Expired)
        ) && self.delivered_at.is_none();
        match self.outcome {
            None => {}
            Some(_) if d.outcome == Outcome::Cancelled && voidable => {}
            Some(stored)
                if stored == d.outcome && self.decided_by.unwrap_or("") == d.decided_by =>
            {
                return Ok(0)
            }
            Some(stored) => {
                return Err(LedgerError::AlreadyDecided {
                    session_id: d.session_id.clone(),
                    request_id: d.request_id.clone(),
                    outcome: stored,
                })
            }
        }
        self.outcome = Some(d.outcome);
        self.decided_by = Some(&d.decided_by);
        self.decided_at = Some(d.decided_at);
        self.updated_input = d.updated_input.as_deref().or(self.updated_input);
        self.answer = d.answer.as_deref().or(self.answer);
        self.reason = d.reason.as_deref().or(self.reason);
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt() -> PromptRow {
        PromptRow {
            session_id: "s".into(),
            request_id: "r".into(),
            tool_use_id: None,
            tool_name: "Bash".into(),
            input: "{}".into(),
            request: "{}".into(),
            received_at: 1,
        }
    }

    fn decision(outcome: Outcome, by: &str, answer: Option<&str>) -> Write {
        Write::Decision(DecisionRow {
            session_id: "s".into(),
            request_id: "r".into(),
            outcome,
            decided_by: by.into(),
            decided_at: 2,
            updated_input: None,
            answer: answer.map(Into::into),
            reason: None,
        })
    }

    fn delivered(at: i64) -> Write {
        Write::Delivered {
            session_id: "s".into(),
            request_id: "r".into(),
            at,
        }
    }

    #[test]
    fn a_prompt_is_decided_once_then_delivered_once() {
        let p = prompt();
        let mut row = Folded::new(&p);
        let early = delivered(1);
        assert!(matches!(
            row.apply(&early),
            Err(LedgerError::NotDecided { .. })
        ));
        let allow = decision(Outcome::Allowed, "policy", Some("{\"behavior\":\"allow\"}"));
        assert_eq!(row.apply(&allow).unwrap(), 1);
        assert_eq!(row.apply(&allow).unwrap(), 0, "the same decision again");
        let deny = decision(Outcome::Denied, "op", None);
        assert!(matches!(
            row.apply(&deny),
            Err(LedgerError::AlreadyDecided {
                outcome: Outcome::Allowed,
                ..
            })
        ));
        let (first, second) = (delivered(5), delivered(9));
        assert_eq!(row.apply(&first).unwrap(), 1);
        assert_eq!(row.apply(&second).unwrap(), 1);
        assert_eq!(row.delivered_at, Some(5), "the first delivery is kept");
        assert_eq!(row.apply(&Write::Prompt(prompt())).unwrap(), 0);
    }

    #[test]
    fn a_cancel_voids_only_an_undelivered_answer_and_keeps_it() {
        let p = prompt();
        let mut row = Folded::new(&p);
        let allow = decision(Outcome::Allowed, "op", Some("answer"));
        let cancel = decision(Outcome::Cancelled, "session", None);
        row.apply(&allow).unwrap();
        assert_eq!(row.apply(&cancel).unwrap(), 1);
        assert_eq!(
            (row.outcome, row.answer),
            (Some(Outcome::Cancelled), Some("answer"))
        );

        let delivery = delivered(3);
        let mut row = Folded::new(&p);
        row.apply(&allow).unwrap();
        row.apply(&delivery).unwrap();
        assert!(matches!(
            row.apply(&cancel),
            Err(LedgerError::AlreadyDecided { .. })
        ));
    }
}
