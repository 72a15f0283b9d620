//! Reading the journal from outside the daemon's writer: `status`, `dlq`, `show`, the
//! admin API. Every answer is an aggregate or a page computed by the store, so a reader's
//! memory does not grow with the journal. Replay requests are rows the daemon picks up
//! (within a second if it runs, at its next start otherwise); pruning touches only
//! resolved actions, which a running daemon never writes.

use crate::action::Identity;

use super::view::{BatchActivity, DeadLetterCounts, DeadLetterFilter, InstanceView};
use super::{
    ActionFilter, ActionSummary, ActionView, BatchCounts, Cursor, DeadLetterView, HistoryEvent, JournalError, Page,
    Pruned,
};

/// The longest page a list hands out.
pub const MAX_PAGE: usize = 1000;

/// The reads every journal backend answers.
pub trait JournalRead: Send {
    /// Action counts by batch and state (no latencies), every journaled batch.
    fn status(&self) -> Result<Vec<BatchCounts>, JournalError>;

    /// Dead letters: (total, not yet accepted by the webhook and not discarded).
    fn dead_letter_totals(&self) -> Result<(u64, u64), JournalError>;

    /// A page of actions, ordered by batch then key.
    fn actions(
        &self,
        filter: &ActionFilter,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Page<ActionSummary>, JournalError>;

    /// One action with its body, history and latest dead letter.
    fn action(&self, identity: &Identity) -> Result<Option<ActionView>, JournalError>;

    /// One action with its body and latest dead letter but an empty `history`: a long
    /// history is read page by page with `action_history`.
    fn action_head(&self, identity: &Identity) -> Result<Option<ActionView>, JournalError>;

    /// A page of an action's history, oldest first (empty for an unknown action).
    fn action_history(
        &self,
        identity: &Identity,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Page<HistoryEvent>, JournalError>;

    /// The audit lines the journal keeps for an action (its outcomes and dead-letter
    /// discards, until pruning), oldest first, as written to the audit file.
    fn audit_lines(&self, identity: &Identity) -> Result<Vec<String>, JournalError>;

    /// The live numbers of every journaled batch, with the actions that reached their
    /// outcome at or after `since_ms`: one aggregate read.
    fn activity(&self, since_ms: i64) -> Result<Vec<BatchActivity>, JournalError>;

    /// How many dead letters `filter` matches, and how many of them can be replayed or
    /// discarded.
    fn dead_letter_counts(&self, filter: &DeadLetterFilter) -> Result<DeadLetterCounts, JournalError>;

    /// A page of dead letters, oldest first.
    fn dead_letters(
        &self,
        filter: &DeadLetterFilter,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Page<DeadLetterView>, JournalError>;

    /// Requests replays of the given dead letters (every one not yet replayed when
    /// `None`); returns the ids accepted. Unknown, replayed or pruned ids are refused.
    fn request_replay(&self, error_ids: Option<&[String]>) -> Result<Vec<String>, JournalError>;

    /// Requests replays of the replayable dead letters `filter` matches, oldest first, at
    /// most `cap` of them; returns the ids accepted.
    fn request_replay_matching(&self, filter: &DeadLetterFilter, cap: usize) -> Result<Vec<String>, JournalError>;

    /// Requests that the given dead letters be discarded: kept, marked, never delivered
    /// again. Returns the ids accepted; delivered, discarded or unknown ids are refused.
    /// The daemon carries the requests out within a second if it runs, at its next start
    /// otherwise.
    fn request_discard(&self, error_ids: &[String]) -> Result<Vec<String>, JournalError>;

    /// Prunes what resolved before `before_ms` (see `Journal::prune`); safe beside a
    /// running daemon, which never touches a resolved action.
    fn prune(&self, before_ms: i64) -> Result<Pruned, JournalError>;

    /// The daemons of the cluster, newest first (none for a SQLite journal).
    fn instances(&self) -> Result<Vec<InstanceView>, JournalError>;
}
