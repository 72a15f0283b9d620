//! The kept aggregates' changes (`batch_states`, `batch_latencies`), counted by the writer
//! as it changes actions and written once per group commit (schema v5).
//!
//! Up to version 4 an update trigger on `actions` kept both tables: two more statements
//! for every state change (three per action), and every update of an action a statement
//! that could fail halfway, with a statement journal. Now each statement that changes an
//! action's state, retries, resolution or duration reads what the row counted before and
//! reports the change here; a group of a thousand changes ends in a handful of upserts.
//! Deleting actions (tests, manual repair) is still counted by triggers.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{params, Connection};

use crate::journal::record::{ActionRow, StateWord};
use crate::journal::Claim;

/// What the aggregates count of one action row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counted {
    /// The state word.
    pub state: Cow<'static, str>,
    /// Retries spent.
    pub retries: i64,
    /// Resolved (`open = 0`).
    pub resolved: bool,
    /// The outcome's duration in ms.
    pub latency_ms: Option<i64>,
}

impl Counted {
    /// From the `state, retry_count, open, latency_ms` columns as stored.
    pub fn stored(state: String, retries: i64, open: i64, latency_ms: Option<i64>) -> Self {
        Counted {
            state: match StateWord::parse(&state) {
                Some(word) => Cow::Borrowed(word.as_str()),
                None => Cow::Owned(state),
            },
            retries,
            resolved: open == 0,
            latency_ms,
        }
    }

    /// What `row` counts once written.
    pub fn of(row: &ActionRow) -> Self {
        Counted {
            state: Cow::Borrowed(row.state.as_str()),
            retries: i64::from(row.retry_count),
            resolved: row.state.is_outcome(),
            latency_ms: row.latency_ms,
        }
    }

    /// The duration counted in `batch_latencies`: resolved actions with a duration only.
    fn latency(&self) -> Option<i64> {
        self.latency_ms.filter(|_| self.resolved)
    }
}

/// Changes not yet written, per batch and state and per batch and duration; and what each
/// open action this writer holds a claim on counts now, so that changing it needs no read
/// first. A group that fails rolls back: its tally is then dropped whole.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// (batch, state, actions, retries).
    states: Vec<(Arc<str>, Cow<'static, str>, i64, i64)>,
    /// (batch, duration in ms, actions).
    latencies: Vec<(Arc<str>, i64, i64)>,
    /// Action id -> (fencing token of the claim, what the row counts).
    known: HashMap<i64, (i64, Counted)>,
}

impl Tally {
    /// What the row under `claim` counts, when this writer wrote or claimed it last.
    pub fn known(&self, claim: Claim) -> Option<&Counted> {
        self.known
            .get(&claim.id)
            .and_then(|(fence, counted)| (*fence == claim.fence).then_some(counted))
    }

    /// The row under `claim` counts `counted` now; a resolved one is changed no more under
    /// this claim and is forgotten.
    pub fn remember(&mut self, claim: Claim, counted: Counted) {
        if counted.resolved {
            self.known.remove(&claim.id);
        } else {
            self.known.insert(claim.id, (claim.fence, counted));
        }
    }

    /// The action `id` is read from the journal next time (a claim lost or released).
    pub fn forget(&mut self, id: i64) {
        self.known.remove(&id);
    }

    /// Every claim was released.
    pub fn forget_all(&mut self) {
        self.known.clear();
    }

    /// One action of `batch` went from `before` to `after`.
    pub fn change(&mut self, batch: &Arc<str>, before: &Counted, after: &Counted) {
        if before.state != after.state || before.retries != after.retries {
            self.add_state(batch, before.state.clone(), -1, -before.retries);
            self.add_state(batch, after.state.clone(), 1, after.retries);
        }
        let (was, is) = (before.latency(), after.latency());
        if was != is {
            if let Some(ms) = was {
                self.add_latency(batch, ms, -1);
            }
            if let Some(ms) = is {
                self.add_latency(batch, ms, 1);
            }
        }
    }

    /// `actions` actions of `batch` with `retries` retries between them left `from` for
    /// `to`, all of them open (no duration counted before or after).
    pub fn moved(&mut self, batch: &Arc<str>, from: &'static str, to: &'static str, actions: i64, retries: i64) {
        self.add_state(batch, Cow::Borrowed(from), -actions, -retries);
        self.add_state(batch, Cow::Borrowed(to), actions, retries);
    }

    fn add_state(&mut self, batch: &Arc<str>, state: Cow<'static, str>, actions: i64, retries: i64) {
        // A group touches few batches and states: a scan beats hashing here.
        match self.states.iter_mut().find(|(b, s, ..)| b == batch && *s == state) {
            Some((.., a, r)) => {
                *a += actions;
                *r += retries;
            }
            None => self.states.push((batch.clone(), state, actions, retries)),
        }
    }

    fn add_latency(&mut self, batch: &Arc<str>, latency_ms: i64, actions: i64) {
        match self
            .latencies
            .iter_mut()
            .find(|(b, ms, _)| b == batch && *ms == latency_ms)
        {
            Some((.., a)) => *a += actions,
            None => self.latencies.push((batch.clone(), latency_ms, actions)),
        }
    }

    /// Writes the changes counted so far, inside the caller's transaction, and forgets them.
    pub fn write(&mut self, tx: &Connection) -> rusqlite::Result<()> {
        if !self.states.is_empty() {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO batch_states (batch, state, actions, retries) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (batch, state) DO UPDATE SET actions = actions + excluded.actions,
                        retries = retries + excluded.retries",
            )?;
            for (batch, state, actions, retries) in self.states.drain(..) {
                if actions != 0 || retries != 0 {
                    stmt.execute(params![batch.as_ref(), state.as_ref(), actions, retries])?;
                }
            }
        }
        if !self.latencies.is_empty() {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO batch_latencies (batch, latency_ms, actions) VALUES (?1, ?2, ?3)
                 ON CONFLICT (batch, latency_ms) DO UPDATE SET actions = actions + excluded.actions",
            )?;
            for (batch, latency_ms, actions) in self.latencies.drain(..) {
                if actions != 0 {
                    stmt.execute(params![batch.as_ref(), latency_ms, actions])?;
                }
            }
        }
        Ok(())
    }

    /// Forgets the changes not yet written (their group failed and rolled back) and,
    /// with them, what the rows count.
    pub fn rolled_back(&mut self) {
        *self = Tally::default();
    }

    /// Nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty() && self.latencies.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(state: &'static str, retries: i64, latency_ms: Option<i64>) -> Counted {
        Counted {
            state: Cow::Borrowed(state),
            retries,
            resolved: latency_ms.is_some(),
            latency_ms,
        }
    }

    #[test]
    fn changes_of_one_group_add_up_per_batch_and_state() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut tally = Tally::default();
        tally.change(&a, &counted("pending", 0, None), &counted("submitting", 0, None));
        tally.change(&a, &counted("submitting", 0, None), &counted("polling", 0, None));
        tally.change(&b, &counted("pending", 0, None), &counted("submitting", 0, None));
        tally.change(&a, &counted("polling", 0, None), &counted("backoff", 2, None));
        tally.change(&a, &counted("backoff", 2, None), &counted("completed", 2, Some(40)));
        // Same state and retries, a later duration: only the duration moves.
        tally.change(
            &a,
            &counted("completed", 2, Some(40)),
            &counted("completed", 2, Some(50)),
        );
        let mut states: Vec<_> = tally
            .states
            .iter()
            .map(|(b, s, n, r)| format!("{b}/{s} {n} {r}"))
            .collect();
        states.sort();
        assert_eq!(
            states,
            [
                "a/backoff 0 0",
                "a/completed 1 2",
                "a/pending -1 0",
                "a/polling 0 0",
                "a/submitting 0 0",
                "b/pending -1 0",
                "b/submitting 1 0"
            ]
        );
        assert_eq!(tally.latencies, [(a.clone(), 40, 0), (a, 50, 1)]);
    }

    #[test]
    fn an_unknown_state_word_is_counted_as_stored() {
        let before = Counted::stored("archived".into(), 1, 1, None);
        assert_eq!(before.state, "archived");
        assert!(matches!(
            Counted::stored("polling".into(), 0, 1, None).state,
            Cow::Borrowed("polling")
        ));
    }
}
