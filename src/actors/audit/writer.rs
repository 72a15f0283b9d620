//! The audit writer thread: takes whatever lines have queued up, writes them in one go
//! and syncs once (a group commit: a burst of 1,000 outcomes costs one fsync), then marks
//! the outcome lines audited in the journal.
//!
//! It applies each `event_id` once: a line whose id it has already taken (a sender that
//! sent again after its reply was lost to a restart of the actor, an outcome line the
//! journal still lists while its mark is on the way) is dropped. It keeps the ids of the
//! last `RECENT_IDS` lines, plus every outcome line written whose mark the journal has
//! not confirmed yet. A failed write is retried, counted and reported (`/readyz`, a log
//! line at most every 10 s); SIGHUP reopens the file at its path (after logrotate).

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tokio::sync::oneshot;

use super::file::{event_ids_in, event_type_of, open_private_append, write_group};
use crate::health::{Blockers, AUDIT};
use crate::journal::{Journal, JournalError, OutcomeLine};
use crate::linger::{Linger, LINGER};
use crate::telemetry::events::{AuditFailed, AuditWritten};
use crate::telemetry::throttle::{Throttle, FAILURE_LOG_PERIOD};

/// Most lines written between two syncs.
const MAX_GROUP: usize = 8192;
/// How many recent `event_id`s the writer remembers to drop a line sent twice: as many
/// as the actor's mailbox holds, since a sender's second try queues behind them.
const RECENT_IDS: usize = crate::actors::MAILBOX_CAPACITY;
/// How long a failed write (or an unconfirmed mark) waits before it is tried again.
const WRITE_RETRY: Duration = Duration::from_secs(1);

/// Log lines about failed audit writes.
static WRITE_FAILED: Throttle = Throttle::new(FAILURE_LOG_PERIOD);

/// Why the audit file could not be written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// Opening, writing or syncing the file failed (the lines stay queued and are retried).
    #[error("audit file {path}: {source}")]
    Io {
        /// The audit file.
        path: PathBuf,
        /// The error.
        source: Arc<std::io::Error>,
    },
    /// The writer thread is gone (the actor restarts it).
    #[error("audit writer stopped")]
    WriterGone,
    /// A cluster member could not claim its outcome lines for writing (they stay queued
    /// and are retried; unwritten, they stay unaudited in the journal).
    #[error("outcome lines not claimed for writing: {0}")]
    Claim(JournalError),
}

/// What the actor hands the writer.
pub(super) enum WriterMsg {
    /// A progress record, stamped.
    Line {
        event_id: String,
        event_type: &'static str,
        line: Vec<u8>,
    },
    /// An outcome line already committed to the journal.
    Outcome {
        event_type: &'static str,
        outcome: OutcomeLine,
    },
    /// Answer once everything before is written.
    Flush(oneshot::Sender<Result<(), AuditError>>),
    /// Write what is queued to the current file, then open the path anew.
    Reopen(oneshot::Sender<Result<(), AuditError>>),
    /// Append the outcome lines the journal lists as unaudited that this writer has not
    /// taken; `scan`: also skip those already in the file (a writer started afresh).
    Reconcile { scan: bool },
}

/// Where and how the audit file is written.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// `audit.path`.
    pub path: PathBuf,
    /// `audit.fsync`.
    pub fsync: bool,
    /// In a cluster: how often to take over the outcome lines of dead members. Outcome
    /// lines are then claimed in the journal before they are written, so a line a member
    /// lost while taken for dead is written by the one that took it over, not twice.
    pub rescue: Option<Duration>,
}

/// The writer thread, as the actor holds it.
pub(super) struct WriterHandle {
    tx: mpsc::Sender<WriterMsg>,
    thread: std::thread::JoinHandle<()>,
}

impl WriterHandle {
    /// Starts the thread on an open file.
    pub(super) fn start(
        file: File,
        settings: AuditSettings,
        journal: Journal,
        blockers: Blockers,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            file,
            settings,
            journal,
            blockers,
            buffer: Vec::with_capacity(1 << 16),
            buffered_outcomes: Vec::new(),
            pending: Vec::new(),
            waiters: Vec::new(),
            reopens: Vec::new(),
            recent: RecentIds::default(),
            unmarked: HashSet::new(),
            marks: Vec::new(),
            reconcile: None,
            failing: false,
        };
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(WriterHandle { tx, thread })
    }

    /// Hands `msg` to the thread; `Err` when the thread is gone.
    pub(super) fn send(&self, msg: WriterMsg) -> Result<(), AuditError> {
        self.tx.send(msg).map_err(|_| AuditError::WriterGone)
    }

    /// Whether the thread still runs (it ends only by a panic while the actor lives).
    pub(super) fn is_alive(&self) -> bool {
        !self.thread.is_finished()
    }
}

/// The ids of the last `RECENT_IDS` lines taken, as 128-bit hashes.
#[derive(Default)]
struct RecentIds {
    order: VecDeque<u128>,
    set: HashSet<u128>,
}

impl RecentIds {
    fn key(event_id: &str) -> u128 {
        xxhash_rust::xxh3::xxh3_128(event_id.as_bytes())
    }

    #[cfg(test)]
    fn contains(&self, event_id: &str) -> bool {
        self.set.contains(&Self::key(event_id))
    }

    /// Remembers `event_id`; false when it was already there.
    fn insert(&mut self, event_id: &str) -> bool {
        let key = Self::key(event_id);
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > RECENT_IDS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// Outcome lines marked audited, and the journal's answer to come.
type Mark = (Vec<String>, oneshot::Receiver<Result<(), JournalError>>);

/// The writer thread's state.
struct Writer {
    file: File,
    settings: AuditSettings,
    journal: Journal,
    blockers: Blockers,
    /// Lines taken, not yet written.
    buffer: Vec<u8>,
    /// The outcome lines in `buffer`, to mark once written.
    buffered_outcomes: Vec<String>,
    /// Outcome lines taken, not yet in `buffer` (in a cluster, not yet claimed).
    pending: Vec<(&'static str, OutcomeLine)>,
    waiters: Vec<oneshot::Sender<Result<(), AuditError>>>,
    reopens: Vec<oneshot::Sender<Result<(), AuditError>>>,
    recent: RecentIds,
    /// Outcome lines written whose mark the journal has not confirmed.
    unmarked: HashSet<String>,
    /// Marks on their way to the journal.
    marks: Vec<Mark>,
    /// A reconciliation still to do (the journal could not be read), with its `scan`.
    reconcile: Option<bool>,
    /// The last write failed.
    failing: bool,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<WriterMsg>) {
        let mut linger = Linger::default();
        loop {
            // With work left over (a failed group, marks to confirm, a reconciliation),
            // wake up to retry it even if nothing new comes.
            let idle =
                self.buffer.is_empty() && self.pending.is_empty() && self.marks.is_empty() && self.reconcile.is_none();
            let first = if idle {
                match rx.recv() {
                    Ok(msg) => Some(msg),
                    Err(_) => return,
                }
            } else {
                match rx.recv_timeout(WRITE_RETRY) {
                    Ok(msg) => Some(msg),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            };
            let (mut taken, reopen) = self.take_queued(&rx, first, 0);
            if taken > 0 && !reopen && linger.waits(taken) {
                std::thread::sleep(LINGER);
                taken = self.take_queued(&rx, rx.try_recv().ok(), taken).0;
            }
            linger.committing(taken);
            if let Some(scan) = self.reconcile.take() {
                self.reconcile(scan);
            }
            let written = self.write();
            for waiter in self.waiters.drain(..) {
                let _ = waiter.send(written.clone());
            }
            if !self.reopens.is_empty() {
                let reopened = self.reopen();
                for waiter in self.reopens.drain(..) {
                    let _ = waiter.send(reopened.clone());
                }
            }
            self.confirm_marks();
        }
    }

    /// Takes `first` and what is queued behind it into the group, which holds `taken`
    /// messages already; stops at a reopen (what came before it goes to the old file).
    /// Returns the group's size and whether it ended at a reopen.
    fn take_queued(
        &mut self,
        rx: &mpsc::Receiver<WriterMsg>,
        first: Option<WriterMsg>,
        mut taken: usize,
    ) -> (usize, bool) {
        let mut next = first;
        while let Some(msg) = next.take() {
            let reopen = matches!(msg, WriterMsg::Reopen(_));
            self.take(msg);
            taken += 1;
            if reopen {
                return (taken, true);
            }
            if taken < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        (taken, false)
    }

    fn take(&mut self, msg: WriterMsg) {
        match msg {
            WriterMsg::Line {
                event_id,
                event_type,
                line,
            } => {
                if self.recent.insert(&event_id) {
                    self.buffer.extend_from_slice(&line);
                    AuditWritten { event_type }.emit();
                }
            }
            WriterMsg::Outcome { event_type, outcome } => self.take_outcome(event_type, outcome),
            WriterMsg::Flush(tx) => self.waiters.push(tx),
            WriterMsg::Reopen(tx) => self.reopens.push(tx),
            WriterMsg::Reconcile { scan } => self.reconcile = Some(scan || self.reconcile == Some(true)),
        }
    }

    fn take_outcome(&mut self, event_type: &'static str, outcome: OutcomeLine) {
        if self.unmarked.contains(&outcome.event_id) || !self.recent.insert(&outcome.event_id) {
            return;
        }
        self.pending.push((event_type, outcome));
    }

    /// Moves the pending outcome lines into the group: all of them, or in a cluster those
    /// the journal still gives this member (the others were taken over while this member
    /// was taken for dead, and are written by the member that took them).
    fn claim_pending(&mut self) -> Result<(), AuditError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let ours: Option<HashSet<String>> = match self.settings.rescue {
            None => None,
            Some(_) => {
                let ids = self.pending.iter().map(|(_, o)| o.event_id.clone()).collect();
                let claimed = self.journal.claim_writing(ids).map_err(AuditError::Claim)?;
                Some(claimed.into_iter().collect())
            }
        };
        for (event_type, outcome) in self.pending.drain(..) {
            if ours.as_ref().is_some_and(|ours| !ours.contains(&outcome.event_id)) {
                tracing::warn!(event_id = %outcome.event_id, "Outcome line taken over by another cluster member; not written here.");
                continue;
            }
            self.buffer.extend_from_slice(&outcome.line);
            self.buffered_outcomes.push(outcome.event_id);
            AuditWritten { event_type }.emit();
        }
        Ok(())
    }

    /// Writes the buffered group; reports a failure (counted, `/readyz`, a throttled log
    /// line) and clears it on the next success.
    fn write(&mut self) -> Result<(), AuditError> {
        if let Err(error) = self.claim_pending() {
            self.failed(&error);
            return Err(error);
        }
        if self.buffer.is_empty() {
            return Ok(());
        }
        match write_group(&mut self.file, &self.buffer, self.settings.fsync) {
            Ok(()) => {
                self.buffer.clear();
                let written = std::mem::take(&mut self.buffered_outcomes);
                if !written.is_empty() {
                    self.unmarked.extend(written.iter().cloned());
                    let ack = self.journal.mark_audited_acked(written.clone());
                    self.marks.push((written, ack));
                }
                if std::mem::take(&mut self.failing) {
                    self.blockers.clear(AUDIT);
                    tracing::info!(file = %self.settings.path.display(), "Audit file writable again.");
                }
                Ok(())
            }
            Err(e) => {
                // The group stays buffered (the file was cut back to before it) and is
                // written again with the next one; its outcomes stay unconfirmed in the
                // journal meanwhile, so even a crash now loses nothing.
                let error = AuditError::Io {
                    path: self.settings.path.clone(),
                    source: Arc::new(e),
                };
                self.failed(&error);
                Err(error)
            }
        }
    }

    /// Counts, reports (`/readyz`) and (at most every 10 s) logs a failed write.
    fn failed(&mut self, error: &AuditError) {
        self.failing = true;
        AuditFailed.emit();
        self.blockers.degrade(AUDIT, error.to_string());
        if let Some(suppressed) = WRITE_FAILED.allow() {
            tracing::error!(error = %error, retry_in = ?WRITE_RETRY, suppressed, "Cannot write the audit log; retrying.");
        }
    }

    /// Opens the path anew (logrotate renamed the file): later lines go to a new file.
    fn reopen(&mut self) -> Result<(), AuditError> {
        match open_private_append(&self.settings.path) {
            Ok(file) => {
                self.file = file;
                tracing::info!(file = %self.settings.path.display(), "Audit file reopened.");
                Ok(())
            }
            Err(e) => {
                let error = AuditError::Io {
                    path: self.settings.path.clone(),
                    source: Arc::new(e),
                };
                tracing::error!(error = %error, "Cannot reopen the audit file; writing on to the open one.");
                Err(error)
            }
        }
    }

    /// Takes in the journal's answers to the marks sent; a failed mark is sent again.
    fn confirm_marks(&mut self) {
        let mut failed = Vec::new();
        let unmarked = &mut self.unmarked;
        self.marks.retain_mut(|(ids, ack)| match ack.try_recv() {
            Ok(Ok(())) => {
                for id in ids.iter() {
                    unmarked.remove(id);
                }
                false
            }
            Err(oneshot::error::TryRecvError::Empty) => true,
            Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => {
                failed.push(std::mem::take(ids));
                false
            }
        });
        for ids in failed {
            let ack = self.journal.mark_audited_acked(ids.clone());
            self.marks.push((ids, ack));
        }
    }

    /// Takes the outcome lines the journal lists as unaudited that this writer has not
    /// taken (their message was lost with a crashed actor). The journal answers after
    /// every mark sent before, so a line written and marked is not listed; a line written
    /// whose mark is still on its way is in `unmarked`.
    fn reconcile(&mut self, scan: bool) {
        let snapshot = match self.journal.snapshot_blocking() {
            Ok(snapshot) => snapshot,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read the journal to rebuild the audit queue; retrying.");
                self.reconcile = Some(scan);
                return;
            }
        };
        self.confirm_marks();
        let present = if scan && !snapshot.unaudited.is_empty() {
            event_ids_in(&self.settings.path).unwrap_or_default()
        } else {
            HashSet::new()
        };
        let mut appended = 0usize;
        let mut already_present = Vec::new();
        for outcome in snapshot.unaudited {
            if present.contains(&outcome.event_id) {
                already_present.push(outcome.event_id);
                continue;
            }
            let before = self.pending.len();
            self.take_outcome(event_type_of(&outcome.line), outcome);
            appended += self.pending.len() - before;
        }
        if !already_present.is_empty() {
            self.journal.mark_audited(already_present);
        }
        tracing::info!(appended, "Audit queue rebuilt from the journal.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_drop_a_repeat_and_forget_the_oldest_past_capacity() {
        let mut recent = RecentIds::default();
        assert!(recent.insert("a"));
        assert!(!recent.insert("a"), "a repeat is refused");
        for i in 0..RECENT_IDS {
            recent.insert(&format!("id-{i}"));
        }
        assert!(!recent.contains("a"), "the oldest is forgotten past capacity");
        assert!(recent.contains(&format!("id-{}", RECENT_IDS - 1)));
        assert_eq!(recent.order.len(), RECENT_IDS);
        assert_eq!(recent.set.len(), RECENT_IDS);
    }
}
