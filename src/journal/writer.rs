//! The writer thread: group commits over a storage backend. Whatever operations have
//! queued up are applied in one transaction, then every caller gets its answer; reads
//! are answered only after their transaction committed.
//!
//! A failed commit (a full disk) is counted in `actionwarden_journal_errors_total`, makes
//! `/readyz` answer 503 until a write commits again, and is logged at most every 10 s
//! with the number of repeats suppressed; its callers retry.

use std::sync::mpsc;

use super::{ActionRow, BatchCounts, Claimed, Discard, Inserted, JournalError, Op, Pruned, Replay, Snapshot, Written};
use crate::health::{Blockers, JOURNAL};
use crate::linger::{Linger, LINGER};
use crate::telemetry::events::JournalFailed;
use crate::telemetry::throttle::{Throttle, FAILURE_LOG_PERIOD};

/// Most operations applied in one transaction.
const MAX_GROUP: usize = 4096;

/// Log lines about failed group commits.
static GROUP_FAILED: Throttle = Throttle::new(FAILURE_LOG_PERIOD);
/// Log lines about failed commits.
static COMMIT_FAILED: Throttle = Throttle::new(FAILURE_LOG_PERIOD);

/// A store that applies a group of operations in one transaction.
pub(crate) trait Backend: Send + 'static {
    /// Applies `ops` in one transaction; one result per operation, in order.
    fn apply(&mut self, ops: &[Op]) -> Result<Vec<Done>, JournalError>;
}

/// What one operation produced.
pub(crate) enum Done {
    Nothing,
    Inserted(Inserted),
    Claimed(Vec<Claimed>),
    Written(Written),
    Row(Option<ActionRow>),
    Replays(Vec<Replay>),
    Discards(Vec<Discard>),
    Count(u64),
    Counts(Vec<BatchCounts>),
    Pruned(Pruned),
    Source(Option<String>),
    Letters(Vec<(crate::dead_letter::DeadLetter, u32)>),
    Lines(Vec<super::OutcomeLine>),
    Ids(Vec<String>),
    Snapshot(Snapshot),
}

/// The writer loop: group commits until every handle is dropped; failures are reported
/// to `health`.
pub(crate) fn run(mut backend: impl Backend, rx: mpsc::Receiver<Op>, health: Blockers) {
    let mut ops = Vec::with_capacity(MAX_GROUP);
    let mut linger = Linger::default();
    while let Ok(first) = rx.recv() {
        ops.push(first);
        take_queued(&rx, &mut ops);
        if linger.waits(ops.len()) {
            std::thread::sleep(LINGER);
            take_queued(&rx, &mut ops);
        }
        linger.committing(ops.len());
        let writes = ops.iter().any(writes);
        let started = std::time::Instant::now();
        let applied = backend.apply(&ops);
        crate::telemetry::events::JournalCommitted {
            elapsed: started.elapsed(),
        }
        .emit();
        match applied {
            Ok(done) => {
                if writes {
                    health.clear(JOURNAL);
                }
                ops.drain(..).zip(done).for_each(|(op, done)| answer(op, Ok(done)));
            }
            Err(e) if ops.len() > 1 && !e.is_unavailable() => {
                // One bad operation must not take the others down with it: apply each
                // alone, so only the failing one is reported.
                failed(&health, &e);
                if let Some(suppressed) = GROUP_FAILED.allow() {
                    tracing::warn!(error = %e, suppressed, "Journal group commit failed; committing one by one.");
                }
                let mut all_written = true;
                for op in ops.drain(..) {
                    let single = [op];
                    let result = backend
                        .apply(&single)
                        .map(|mut done| done.pop().unwrap_or(Done::Nothing));
                    if let Err(e) = &result {
                        all_written = false;
                        failed(&health, e);
                    }
                    let [op] = single;
                    answer(op, result);
                }
                if all_written {
                    health.clear(JOURNAL);
                }
            }
            Err(e) => {
                failed(&health, &e);
                ops.drain(..).for_each(|op| answer(op, Err(e.clone())));
            }
        }
    }
}

/// Moves what is queued into `ops`, up to `MAX_GROUP`.
fn take_queued(rx: &mpsc::Receiver<Op>, ops: &mut Vec<Op>) {
    while ops.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
}

/// Counts, reports and (at most every 10 s) logs a failed commit.
fn failed(health: &Blockers, error: &JournalError) {
    JournalFailed.emit();
    health.degrade(JOURNAL, error.to_string());
    if let Some(suppressed) = COMMIT_FAILED.allow() {
        tracing::error!(error = %error, suppressed, "Journal commit failed; its writers retry.");
    }
}

/// Whether `op` changes the journal: only a committed write shows it writable again (a
/// read commits on a full disk too).
fn writes(op: &Op) -> bool {
    !matches!(
        op,
        Op::Reload { .. }
            | Op::Unresolved { .. }
            | Op::Counts { .. }
            | Op::Source { .. }
            | Op::UndeliveredLetters(_)
            | Op::Snapshot(_)
            | Op::Flush(_)
    )
}

/// Sends an operation's answer (a dropped caller is fine).
fn answer(op: Op, result: Result<Done, JournalError>) {
    fn send<T>(reply: super::Reply<T>, result: Result<Done, JournalError>, pick: impl FnOnce(Done) -> Option<T>) {
        let value = result.and_then(|done| pick(done).ok_or(JournalError::WriterGone));
        let _ = reply.send(value);
    }
    match op {
        Op::Insert { reply, .. } => send(reply, result, |d| match d {
            Done::Inserted(v) => Some(v),
            _ => None,
        }),
        Op::Claim { reply, .. } => send(reply, result, |d| match d {
            Done::Claimed(v) => Some(v),
            _ => None,
        }),
        Op::Save { ack: Some(ack), .. } | Op::Resolve { ack, .. } => send(ack, result, |d| match d {
            Done::Written(v) => Some(v),
            _ => None,
        }),
        Op::Reload { reply, .. } => send(reply, result, |d| match d {
            Done::Row(v) => Some(v),
            _ => None,
        }),
        Op::TakeReplays(reply) => send(reply, result, |d| match d {
            Done::Replays(v) => Some(v),
            _ => None,
        }),
        Op::ClaimLetters { reply, .. } => send(reply, result, |d| match d {
            Done::Letters(v) => Some(v),
            _ => None,
        }),
        Op::TakeDiscards(reply) => send(reply, result, |d| match d {
            Done::Discards(v) => Some(v),
            _ => None,
        }),
        Op::UndeliveredLetters(reply) | Op::Unresolved { reply, .. } => send(reply, result, |d| match d {
            Done::Count(v) => Some(v),
            _ => None,
        }),
        Op::Counts { reply, .. } => send(reply, result, |d| match d {
            Done::Counts(v) => Some(v),
            _ => None,
        }),
        Op::Prune { reply, .. } => send(reply, result, |d| match d {
            Done::Pruned(v) => Some(v),
            _ => None,
        }),
        Op::Source { reply, .. } => send(reply, result, |d| match d {
            Done::Source(v) => Some(v),
            _ => None,
        }),
        Op::ClaimWriting { reply, .. } => send(reply, result, |d| match d {
            Done::Ids(v) => Some(v),
            _ => None,
        }),
        Op::RescueAudit(reply) => send(reply, result, |d| match d {
            Done::Lines(v) => Some(v),
            _ => None,
        }),
        Op::Snapshot(reply) => send(reply, result, |d| match d {
            Done::Snapshot(v) => Some(v),
            _ => None,
        }),
        Op::Flush(reply) | Op::Vacuum(reply) | Op::MarkAudited { ack: Some(reply), .. } => {
            send(reply, result, |_| Some(()))
        }
        Op::Save { ack: None, .. }
        | Op::MarkAudited { ack: None, .. }
        | Op::Delivery { .. }
        | Op::RecordSource { .. }
        | Op::PublishPause { .. }
        | Op::Release => {}
    }
}
