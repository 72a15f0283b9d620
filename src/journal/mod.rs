//! The journal: the durable record of every action and the daemon's work queue. One
//! SQLite database in WAL mode at `journal.path`, owned by one process (an exclusive lock
//! on `<path>.lock`), written by one thread (docs/journal.md describes it for operators).
//!
//! **Writes.** Every write goes through a channel to the writer thread, which takes
//! whatever has queued up and applies it as one transaction: a group commit, so 1,000
//! state changes cost one fsync. Writes that must be on disk before the next step (the
//! write-ahead rules: `submitting` before the POST, the CXone id before the first poll,
//! an outcome before its audit record) carry an acknowledgement the caller awaits; the
//! rest are fire-and-forget but still ordered. A failed group is applied again one
//! operation at a time, so one bad write cannot take the others down with it.
//!
//! **The queue.** Configured actions are loaded into the journal (`load.rs`, in chunks);
//! admission claims due actions of its batches in chunks (`claim`). A claim sets the
//! action's owner and increments its fencing token; every later write of that action is
//! conditional on both, and a write that matches nothing reports `Written::Lost` (the
//! action was taken over, e.g. replayed): its poller drops it. Only claimed actions live
//! in memory.
//!
//! **History.** Every state write appends an event to the action's history (`show`).
//!
//! **Exactly-once audit of outcomes**, even across `kill -9`:
//! 1. The poller commits the outcome state, the complete audit line (with its
//!    `event_id`) and any dead letter in one transaction (`resolve`).
//! 2. The audit actor appends the line, syncs the file, then marks the line audited.
//! 3. At start, lines not marked audited are appended only if their `event_id` is not
//!    already in the audit file (the file is scanned once), then marked.
//!
//! A kill before 1 leaves no outcome (the action resumes); between 1 and 2 the line is
//! appended at the next start; between 2 and its mark the scan finds it and nothing is
//! appended twice. A torn last line (killed mid-write) is cut at start before the scan.

pub mod load;
mod pool;
pub mod postgres;
mod read;
pub mod record;
mod sqlite;
pub mod view;
mod writer;

use std::path::PathBuf;
use std::sync::{mpsc, Arc};

use std::future::Future;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::action::Identity;
use crate::config::actions::ConfiguredAction;
use crate::dead_letter::DeadLetter;
use crate::state::Note;
pub use pool::{open_reader, ReaderPool};
pub use postgres::Cluster;
pub use read::{JournalRead, MAX_PAGE};
pub use record::{now_ms, ActionRow, StateWord};
pub use view::{
    ActionFilter, ActionSummary, ActionView, BatchActivity, BatchCounts, Cursor, DeadLetterCounts, DeadLetterFilter,
    DeadLetterView, HistoryEvent, Page,
};

/// Why the journal cannot be used or a write failed. Cheap to clone: one failed group
/// commit answers every operation in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    /// Another process holds the lock.
    #[error("journal {path} is locked by {holder} (another actionwarden is running on it)")]
    Locked {
        /// The journal.
        path: PathBuf,
        /// Who holds it, as far as the lock file says.
        holder: String,
    },
    /// SQLite failed (a full disk reads "database or disk is full").
    #[error("journal {path}: {source}")]
    Sqlite {
        /// The journal.
        path: PathBuf,
        /// The error.
        source: Arc<rusqlite::Error>,
    },
    /// A file operation failed.
    #[error("journal {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: Arc<std::io::Error>,
    },
    /// The journal was written by a newer actionwarden.
    #[error("journal {path} has schema version {found}; this actionwarden knows up to {known}: upgrade it")]
    TooNew {
        /// The journal.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// Ours.
        known: i64,
    },
    /// The PostgreSQL URL cannot be used.
    #[error("journal database URL in {env}: {reason}")]
    Url {
        /// The environment variable named by `journal.url_env`.
        env: String,
        /// Why (never the URL: it may hold a password).
        reason: String,
    },
    /// PostgreSQL failed or is unreachable.
    #[error("journal database {target}: {source}")]
    Postgres {
        /// `host:port/database` (never the password).
        target: String,
        /// The error.
        source: Arc<::postgres::Error>,
    },
    /// The schema was written by a newer actionwarden.
    #[error("journal database {target} has schema version {found}; this actionwarden knows up to {known}: upgrade it")]
    TooNewSchema {
        /// `host:port/database`.
        target: String,
        /// Its version.
        found: i64,
        /// Ours.
        known: i64,
    },
    /// The writer thread is gone (the daemon is shutting down).
    #[error("journal writer stopped")]
    WriterGone,
    /// Every reader of the admin server stayed busy past the wait.
    #[error("all {readers} journal readers are busy; try again")]
    Busy {
        /// The pool's size.
        readers: usize,
    },
}

impl JournalError {
    /// True when the store could not be reached at all (a database that is down), as
    /// opposed to an operation it refused: nothing is gained by retrying the operations
    /// of a group one by one.
    pub fn is_unavailable(&self) -> bool {
        match self {
            JournalError::Postgres { source, .. } => source.is_closed() || source.code().is_none(),
            JournalError::WriterGone => true,
            _ => false,
        }
    }

    /// True when there is no journal at the path yet (nothing has run).
    pub fn is_missing(&self) -> bool {
        matches!(self, JournalError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    /// The configuration names a journal that cannot be used as written (the PostgreSQL
    /// URL's variable is unset or not a URL): a configuration error, not a failure to run.
    pub fn is_misconfigured(&self) -> bool {
        matches!(self, JournalError::Url { .. })
    }

    pub(crate) fn sqlite(path: &std::path::Path) -> impl Fn(rusqlite::Error) -> JournalError + '_ {
        move |source| JournalError::Sqlite {
            path: path.to_owned(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn io(path: &std::path::Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
        move |source| JournalError::Io {
            path: path.to_owned(),
            source: Arc::new(source),
        }
    }
}

/// An outcome's audit line, committed with the outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeLine {
    /// The record's `event_id`.
    pub event_id: String,
    /// The complete JSON line, with its newline.
    pub line: Vec<u8>,
}

/// The right to write an action: its row and the fencing token of the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The action's row.
    pub id: i64,
    /// Incremented by every claim; writes under an older token match nothing.
    pub fence: i64,
}

/// A claimed action, ready for a poller.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The claim.
    pub claim: Claim,
    /// Its journaled state.
    pub row: ActionRow,
    /// The JSON body sent to CXone.
    pub body: Bytes,
}

/// What a conditional write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written.
    Done,
    /// The claim is no longer this one's: nothing was written.
    Lost,
}

/// What loading a chunk did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inserted {
    /// New actions.
    pub inserted: usize,
    /// Already journaled with the same body.
    pub unchanged: usize,
    /// Already journaled with another body (the journaled one is kept).
    pub differing: usize,
}

/// A replay carried out: the action starts again as `series`.
#[derive(Debug, Clone)]
pub struct Replay {
    /// Whose.
    pub identity: Identity,
    /// The new series.
    pub series: u32,
    /// The dead letter that was replayed.
    pub error_id: String,
}

/// A discard carried out: the letter is marked and its audit line committed with the mark.
#[derive(Debug, Clone)]
pub struct Discard {
    /// The letter.
    pub error_id: String,
    /// Whose.
    pub identity: Identity,
    /// The `DEAD_LETTER_DISCARDED` record, to be appended to the audit file.
    pub audit: OutcomeLine,
}

/// What pruning removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    /// Actions whose body and history were removed (their outcome row stays).
    pub actions: u64,
    /// History events removed.
    pub events: u64,
    /// Audited outcome lines removed.
    pub outcome_lines: u64,
    /// Delivered, replayed or discarded dead letters removed.
    pub dead_letters: u64,
    /// Cluster members gone since before the cutoff and holding nothing, removed from the
    /// instances table (PostgreSQL only).
    pub instances: u64,
    /// Where the next round starts (`None`: done).
    #[serde(skip)]
    pub next: Option<i64>,
}

impl Pruned {
    /// Adds another round's counts.
    pub fn add(&mut self, round: Pruned) {
        self.actions += round.actions;
        self.events += round.events;
        self.outcome_lines += round.outcome_lines;
        self.dead_letters += round.dead_letters;
        self.instances += round.instances;
        self.next = round.next;
    }
}

/// What the audit actor needs from the journal: at open, and to rebuild after a restart.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Outcome lines not yet confirmed in the audit file.
    pub unaudited: Vec<OutcomeLine>,
}

type Reply<T> = oneshot::Sender<Result<T, JournalError>>;

/// One operation for the writer thread.
pub(crate) enum Op {
    Insert {
        batch: Arc<str>,
        rows: Vec<ConfiguredAction>,
        reply: Reply<Inserted>,
    },
    Claim {
        batch: Arc<str>,
        limit: usize,
        reply: Reply<Vec<Claimed>>,
    },
    Save {
        claim: Claim,
        row: Box<ActionRow>,
        note: Note,
        ack: Option<Reply<Written>>,
    },
    Resolve {
        claim: Claim,
        row: Box<ActionRow>,
        note: Note,
        outcome: OutcomeLine,
        letter: Option<Box<DeadLetter>>,
        ack: Reply<Written>,
    },
    Reload {
        claim: Claim,
        reply: Reply<Option<ActionRow>>,
    },
    MarkAudited {
        event_ids: Vec<String>,
        ack: Option<Reply<()>>,
    },
    /// What the audit actor rebuilds from: its unaudited outcome lines.
    Snapshot(Reply<Snapshot>),
    Delivery {
        error_id: String,
        attempts: u32,
        delivered: bool,
        error: Option<String>,
        next_attempt_ms: i64,
    },
    ClaimLetters {
        limit: usize,
        lease_ms: i64,
        reply: Reply<Vec<(DeadLetter, u32)>>,
    },
    UndeliveredLetters(Reply<u64>),
    TakeReplays(Reply<Vec<Replay>>),
    TakeDiscards(Reply<Vec<Discard>>),
    Unresolved {
        batches: Vec<Arc<str>>,
        reply: Reply<u64>,
    },
    Counts {
        batches: Vec<Arc<str>>,
        reply: Reply<Vec<BatchCounts>>,
    },
    Prune {
        before_ms: i64,
        from: i64,
        reply: Reply<Pruned>,
    },
    Vacuum(Reply<()>),
    Source {
        batch: Arc<str>,
        path: String,
        reply: Reply<Option<String>>,
    },
    RescueAudit(Reply<Vec<OutcomeLine>>),
    ClaimWriting {
        event_ids: Vec<String>,
        reply: Reply<Vec<String>>,
    },
    PublishPause {
        endpoint: crate::telemetry::metrics::Endpoint,
        until_ms: i64,
    },
    Release,
    RecordSource {
        batch: Arc<str>,
        path: String,
        hash: String,
        actions: u64,
    },
    Flush(Reply<()>),
}

/// How to open the journal.
#[derive(Clone)]
pub struct OpenOptions {
    /// This daemon's name, written into every history event.
    pub instance_name: String,
    /// The audit file: a cluster member restarted on the same host with the same file
    /// reconciles the lines its predecessor was writing when it died.
    pub audit_path: std::path::PathBuf,
    /// The embedded simulator restarted with this process (SQLite: ids polled before
    /// exist nowhere any more).
    pub forget_poll_ids: bool,
    /// Where failed commits are reported (`/readyz`) until a write commits again.
    pub health: crate::health::Blockers,
}

/// An open journal.
pub struct Opened {
    /// The handle.
    pub journal: Journal,
    /// What the audit actor needs at start.
    pub snapshot: Snapshot,
    /// The cluster membership (PostgreSQL only).
    pub cluster: Option<Arc<Cluster>>,
}

/// Where the journal of `config` lives, for people: the SQLite file, or the PostgreSQL
/// database and schema (never the URL's credentials).
pub fn location(config: &crate::config::Config) -> String {
    let journal = &config.journal;
    match journal.backend {
        crate::config::Backend::Sqlite => journal.path.display().to_string(),
        crate::config::Backend::Postgres => match postgres::Target::from_env(&journal.url_env, &journal.schema) {
            Ok(target) => format!("postgresql {} (schema {})", target.shown, journal.schema),
            Err(_) => format!("postgresql (URL in {}, schema {})", journal.url_env, journal.schema),
        },
    }
}

/// Opens the journal `config` names. Blocking: call it off any async runtime.
pub fn open(config: &crate::config::Config, options: &OpenOptions) -> Result<Opened, JournalError> {
    match config.journal.backend {
        crate::config::Backend::Sqlite => {
            let (journal, snapshot) = sqlite::open(&sqlite::Options {
                path: config.journal.path.clone(),
                fsync: config.journal.fsync,
                instance: options.instance_name.clone(),
                forget_poll_ids: options.forget_poll_ids,
                health: options.health.clone(),
            })?;
            Ok(Opened {
                journal,
                snapshot,
                cluster: None,
            })
        }
        crate::config::Backend::Postgres => {
            let (journal, snapshot, cluster) = postgres::open(&postgres::Options {
                url_env: config.journal.url_env.clone(),
                schema: config.journal.schema.clone(),
                instance_name: options.instance_name.clone(),
                forget_poll_ids: options.forget_poll_ids,
                audit_path: options.audit_path.display().to_string(),
                heartbeat: config.cluster.heartbeat,
                lease_timeout: config.cluster.lease_timeout,
                health: options.health.clone(),
            })?;
            Ok(Opened {
                journal,
                snapshot,
                cluster: Some(cluster),
            })
        }
    }
}

/// An answer of the writer still to come.
pub struct Pending<T>(Result<oneshot::Receiver<Result<T, JournalError>>, JournalError>);

impl<T> Pending<T> {
    /// Blocks until the operation is committed (not for async threads).
    pub fn wait(self) -> Result<T, JournalError> {
        self.0?.blocking_recv().map_err(|_| JournalError::WriterGone)?
    }
}

/// A handle on the journal; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Op>,
    /// Keeps the process's lock on the journal while any handle lives.
    _lock: Arc<dyn Send + Sync>,
}

impl Journal {
    /// Sends `op` and waits for its answer on this (non-async) thread.
    fn request_blocking<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, JournalError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(op(reply)).map_err(|_| JournalError::WriterGone)?;
        answer.blocking_recv().map_err(|_| JournalError::WriterGone)?
    }

    fn request<T: 'static>(
        &self,
        op: impl FnOnce(Reply<T>) -> Op,
    ) -> impl Future<Output = Result<T, JournalError>> + 'static {
        let (reply, answer) = oneshot::channel();
        let sent = self.tx.send(op(reply));
        async move {
            sent.map_err(|_| JournalError::WriterGone)?;
            answer.await.map_err(|_| JournalError::WriterGone)?
        }
    }

    /// Loads a chunk of a batch's configured actions (at most `load::CHUNK`); identities
    /// already journaled keep their journaled body. Returns at once: the loader reads the
    /// next chunk while this one is written, then waits for this one's answer.
    pub fn insert(&self, batch: Arc<str>, rows: Vec<ConfiguredAction>) -> Pending<Inserted> {
        let (reply, answer) = oneshot::channel();
        let sent = self.tx.send(Op::Insert { batch, rows, reply });
        Pending(sent.map(|()| answer).map_err(|_| JournalError::WriterGone))
    }

    /// The content hash of the actions file last loaded for `batch` from `path`. Blocks.
    pub fn source(&self, batch: Arc<str>, path: String) -> Result<Option<String>, JournalError> {
        self.request_blocking(move |reply| Op::Source { batch, path, reply })
    }

    /// Remembers that `path` (with this content hash) is loaded for `batch`.
    pub fn record_source(&self, batch: Arc<str>, path: String, hash: String, actions: u64) {
        let _ = self.tx.send(Op::RecordSource {
            batch,
            path,
            hash,
            actions,
        });
    }

    /// Claims up to `limit` unresolved, unclaimed actions of `batch`, in file order.
    pub fn claim(
        &self,
        batch: Arc<str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Claimed>, JournalError>> + 'static {
        self.request(move |reply| Op::Claim { batch, limit, reply })
    }

    /// Records a state change under `claim` (ordered, not awaited).
    pub fn save(&self, claim: Claim, row: ActionRow, note: Note) {
        let _ = self.tx.send(Op::Save {
            claim,
            row: Box::new(row),
            note,
            ack: None,
        });
    }

    /// Records a state change under `claim` and waits until it is committed.
    pub fn save_durable(
        &self,
        claim: Claim,
        row: ActionRow,
        note: Note,
    ) -> impl Future<Output = Result<Written, JournalError>> + 'static {
        self.request(move |ack| Op::Save {
            claim,
            row: Box::new(row),
            note,
            ack: Some(ack),
        })
    }

    /// Commits an outcome with its audit line and dead letter in one transaction.
    pub fn resolve(
        &self,
        claim: Claim,
        row: ActionRow,
        note: Note,
        outcome: OutcomeLine,
        letter: Option<DeadLetter>,
    ) -> impl Future<Output = Result<Written, JournalError>> + 'static {
        self.request(move |ack| Op::Resolve {
            claim,
            row: Box::new(row),
            note,
            outcome,
            letter: letter.map(Box::new),
            ack,
        })
    }

    /// The last committed row under `claim` (after earlier writes of this handle);
    /// `None` when the claim was lost.
    pub fn reload(&self, claim: Claim) -> impl Future<Output = Result<Option<ActionRow>, JournalError>> + 'static {
        self.request(move |reply| Op::Reload { claim, reply })
    }

    /// Marks outcome lines as present in the audit file.
    pub fn mark_audited(&self, event_ids: Vec<String>) {
        if !event_ids.is_empty() {
            let _ = self.tx.send(Op::MarkAudited { event_ids, ack: None });
        }
    }

    /// Marks outcome lines as present in the audit file; the receiver learns whether the
    /// mark was committed (the audit writer keeps the ids of marks not yet committed).
    pub fn mark_audited_acked(&self, event_ids: Vec<String>) -> oneshot::Receiver<Result<(), JournalError>> {
        let (ack, committed) = oneshot::channel();
        if let Err(mpsc::SendError(Op::MarkAudited { ack: Some(ack), .. })) = self.tx.send(Op::MarkAudited {
            event_ids,
            ack: Some(ack),
        }) {
            let _ = ack.send(Err(JournalError::WriterGone));
        }
        committed
    }

    /// The outcome lines this daemon has not yet confirmed in the audit file, as
    /// committed now: what the audit actor rebuilds from after a restart.
    pub fn snapshot(&self) -> impl Future<Output = Result<Snapshot, JournalError>> + 'static {
        self.request(Op::Snapshot)
    }

    /// `snapshot`, waited for on this (non-async) thread: for the audit writer.
    pub fn snapshot_blocking(&self) -> Result<Snapshot, JournalError> {
        self.request_blocking(Op::Snapshot)
    }

    /// Records delivery attempt number `attempts` of a dead letter and releases its
    /// lease; an undelivered letter is due again at `next_attempt_ms` (Unix ms).
    pub fn record_delivery(
        &self,
        error_id: String,
        attempts: u32,
        delivered: bool,
        error: Option<String>,
        next_attempt_ms: i64,
    ) {
        let _ = self.tx.send(Op::Delivery {
            error_id,
            attempts,
            delivered,
            error,
            next_attempt_ms,
        });
    }

    /// Claims up to `limit` letters due for delivery, leased to this daemon for `lease`;
    /// each comes with its attempts so far.
    pub fn claim_letters(
        &self,
        limit: usize,
        lease: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<(DeadLetter, u32)>, JournalError>> + 'static {
        let lease_ms = lease.as_millis() as i64;
        self.request(move |reply| Op::ClaimLetters { limit, lease_ms, reply })
    }

    /// Dead letters neither accepted by the webhook nor discarded.
    pub fn undelivered_letters(&self) -> impl Future<Output = Result<u64, JournalError>> + 'static {
        self.request(Op::UndeliveredLetters)
    }

    /// Applies pending `dlq replay` requests: the actions are due again.
    pub fn take_replays(&self) -> impl Future<Output = Result<Vec<Replay>, JournalError>> + 'static {
        self.request(Op::TakeReplays)
    }

    /// Applies pending discard requests: each letter is marked discarded and its
    /// `DEAD_LETTER_DISCARDED` audit line is committed with the mark (audited like an
    /// outcome line, so a crash cannot lose it).
    pub fn take_discards(&self) -> impl Future<Output = Result<Vec<Discard>, JournalError>> + 'static {
        self.request(Op::TakeDiscards)
    }

    /// Actions of `batches` without an outcome (claimed or not).
    pub fn unresolved(&self, batches: Vec<Arc<str>>) -> impl Future<Output = Result<u64, JournalError>> + 'static {
        self.request(move |reply| Op::Unresolved { batches, reply })
    }

    /// Counts, retries, restarts and latency percentiles of `batches`.
    pub fn counts(
        &self,
        batches: Vec<Arc<str>>,
    ) -> impl Future<Output = Result<Vec<BatchCounts>, JournalError>> + 'static {
        self.request(move |reply| Op::Counts { batches, reply })
    }

    /// Prunes the bodies and histories of actions resolved before `before_ms`, and
    /// delivered or replayed dead letters made before it, in rounds that keep the writer
    /// responsive; then returns the freed space to the file system.
    pub async fn prune(&self, before_ms: i64) -> Result<Pruned, JournalError> {
        let mut total = Pruned::default();
        let mut from = 0;
        loop {
            let round = self.request(move |reply| Op::Prune { before_ms, from, reply }).await?;
            let next = round.next;
            total.add(round);
            match next {
                Some(n) => from = n,
                None => break,
            }
        }
        self.request(Op::Vacuum).await?;
        Ok(total)
    }

    /// Takes over the outcome lines dead cluster members committed but never confirmed
    /// in their audit files (none with SQLite): the caller appends them.
    pub fn rescue_audit(&self) -> impl Future<Output = Result<Vec<OutcomeLine>, JournalError>> + 'static {
        self.request(Op::RescueAudit)
    }

    /// Before the audit writer appends outcome lines: marks them being written by this
    /// daemon and returns those still its own (a cluster member taken for dead may have
    /// lost some to another, which appends them instead). Blocks: for the writer thread.
    pub fn claim_writing(&self, event_ids: Vec<String>) -> Result<Vec<String>, JournalError> {
        self.request_blocking(move |reply| Op::ClaimWriting { event_ids, reply })
    }

    /// Tells the cluster that `endpoint` is paused until `until_ms` (a 429); nothing with
    /// SQLite.
    pub fn publish_pause(&self, endpoint: crate::telemetry::metrics::Endpoint, until_ms: i64) {
        let _ = self.tx.send(Op::PublishPause { endpoint, until_ms });
    }

    /// At a graceful stop: hands this daemon's unresolved actions back to the queue (the
    /// other members take them at once instead of after the lease) and marks the
    /// instance stopped. Nothing with SQLite.
    pub fn release(&self) {
        let _ = self.tx.send(Op::Release);
    }

    /// Waits until everything sent before is committed.
    pub fn flush(&self) -> impl Future<Output = Result<(), JournalError>> + 'static {
        self.request(Op::Flush)
    }
}
