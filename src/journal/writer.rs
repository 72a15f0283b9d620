//! The writer thread: group commits over a storage backend. Whatever operations have
//! queued up are applied in one transaction, then every caller gets its answer; reads
//! are answered only after their transaction committed.

use std::sync::mpsc;

use super::{ActionRow, BatchCounts, Claimed, Discard, Inserted, JournalError, Op, Pruned, Replay, Written};

/// Most operations applied in one transaction.
const MAX_GROUP: usize = 4096;

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
}

/// The writer loop: group commits until every handle is dropped.
pub(crate) fn run(mut backend: impl Backend, rx: mpsc::Receiver<Op>) {
    let mut ops = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = rx.recv() {
        ops.push(first);
        while ops.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        match backend.apply(&ops) {
            Ok(done) => ops.drain(..).zip(done).for_each(|(op, done)| answer(op, Ok(done))),
            Err(e) if ops.len() > 1 => {
                // One bad operation must not take the others down with it: apply each
                // alone, so only the failing one is reported.
                tracing::warn!(error = %e, "Journal group commit failed; committing one by one.");
                for op in ops.drain(..) {
                    let single = [op];
                    let result = backend
                        .apply(&single)
                        .map(|mut done| done.pop().unwrap_or(Done::Nothing));
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "Journal commit failed.");
                    }
                    let [op] = single;
                    answer(op, result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "Journal commit failed.");
                ops.drain(..).for_each(|op| answer(op, Err(e.clone())));
            }
        }
    }
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
        Op::TakeDiscards(reply) => send(reply, result, |d| match d {
            Done::Discards(v) => Some(v),
            _ => None,
        }),
        Op::Unresolved { reply, .. } => send(reply, result, |d| match d {
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
        Op::Flush(reply) | Op::Vacuum(reply) => send(reply, result, |_| Some(())),
        Op::Save { ack: None, .. } | Op::MarkAudited(_) | Op::Delivery { .. } | Op::RecordSource { .. } => {}
    }
}
