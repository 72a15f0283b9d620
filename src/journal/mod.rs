//! The journal (SPEC §6): one SQLite database in WAL mode at `journal.path`, owned by
//! one process (an exclusive lock on `<path>.lock`), written by one thread.
//!
//! Every write goes through a channel to the writer thread, which takes whatever has
//! queued up and commits it as one transaction: a group commit, so 1,000 state changes
//! cost one fsync. Writes that must be on disk before the next step (the write-ahead
//! rules: `submitting` before the POST, the CXone id before the first poll, an outcome
//! before its audit record) carry an acknowledgement the caller awaits; the rest are
//! fire-and-forget but still ordered.
//!
//! How an outcome reaches the audit file exactly once, even across `kill -9`:
//! 1. The poller commits the outcome state, the complete audit line (with its
//!    `event_id`) and any dead letter in one transaction (`resolve`).
//! 2. The audit actor appends the line, syncs the file, then marks the line audited.
//! 3. At start, lines not marked audited are appended only if their `event_id` is not
//!    already in the audit file (the file is scanned once), then marked.
//!
//! A kill before 1 leaves no outcome (the action resumes); between 1 and 2 the line is
//! appended at the next start; between 2 and its mark the scan finds it and nothing is
//! appended twice. A torn last line (killed mid-write) is cut at start before the scan.

mod read;
pub mod record;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use tokio::sync::oneshot;

use crate::action::Identity;
use crate::dead_letter::DeadLetter;
pub use read::{DeadLetterView, JournalReader};
pub use record::{now_ms, ActionRow, StateWord};

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Another process holds the lock.
    #[error("journal {path} is locked by {holder} (another actionwarden is running on it)")]
    Locked {
        /// The journal.
        path: PathBuf,
        /// Who holds it, as far as the lock file says.
        holder: String,
    },
    /// SQLite failed.
    #[error("journal {path}: {source}")]
    Sqlite {
        /// The journal.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// A file operation failed.
    #[error("journal {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The writer thread is gone (it logged why).
    #[error("journal writer stopped")]
    WriterGone,
}

impl JournalError {
    /// True when there is no journal at the path yet (nothing has run).
    pub fn is_missing(&self) -> bool {
        matches!(self, JournalError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// An outcome's audit line, committed with the outcome.
#[derive(Debug, Clone)]
pub struct OutcomeLine {
    /// The record's `event_id`.
    pub event_id: String,
    /// The complete JSON line, with its newline.
    pub line: Vec<u8>,
}

/// A replay taken from the request table: the action starts again as `series`.
#[derive(Debug, Clone)]
pub struct Replay {
    /// Whose.
    pub identity: Identity,
    /// The new series.
    pub series: u32,
    /// The dead letter that was replayed.
    pub error_id: String,
}

/// What the journal held at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every journaled action.
    pub actions: HashMap<Identity, ActionRow>,
    /// Outcome lines not yet confirmed in the audit file.
    pub unaudited: Vec<OutcomeLine>,
    /// Dead letters not yet accepted by the webhook, with their attempts so far.
    pub undelivered: Vec<(DeadLetter, u32)>,
}

pub(crate) enum Op {
    Save(ActionRow, Option<oneshot::Sender<Result<(), String>>>),
    Resolve {
        row: Box<ActionRow>,
        outcome: OutcomeLine,
        letter: Option<Box<DeadLetter>>,
        ack: oneshot::Sender<Result<(), String>>,
    },
    MarkAudited(Vec<String>),
    Delivery {
        error_id: String,
        attempts: u32,
        delivered: bool,
        error: Option<String>,
    },
    Load(Identity, oneshot::Sender<Option<ActionRow>>),
    TakeReplays(oneshot::Sender<Vec<Replay>>),
    Flush(oneshot::Sender<Result<(), String>>),
}

/// A handle on the journal; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Op>,
    _lock: Arc<File>,
}

impl Journal {
    /// Locks and opens (creating, mode 0600) the journal, and reads what it holds.
    pub fn open(path: &Path, fsync: bool) -> Result<(Journal, Snapshot), JournalError> {
        let lock = lock(path)?;
        let mut conn = writer::connect(path, fsync)?;
        // Replays requested while no daemon ran are applied before anything is resumed,
        // in one transaction: a kill in the middle must not mark a letter replayed without
        // resetting its action.
        let sql = |source| JournalError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let tx = conn.transaction().map_err(sql)?;
        writer::apply_replays(&tx).map_err(sql)?;
        tx.commit().map_err(sql)?;
        let snapshot = writer::snapshot(&conn).map_err(|source| JournalError::Sqlite {
            path: path.to_owned(),
            source,
        })?;
        let (tx, rx) = mpsc::channel();
        let thread_path = path.to_owned();
        std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer::run(conn, thread_path, rx))
            .map_err(|source| JournalError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok((
            Journal {
                tx,
                _lock: Arc::new(lock),
            },
            snapshot,
        ))
    }

    /// Records a state change (ordered, not awaited).
    pub fn save(&self, row: ActionRow) {
        let _ = self.tx.send(Op::Save(row, None));
    }

    /// Records a state change and waits until it is committed.
    pub async fn save_durable(&self, row: ActionRow) -> Result<(), JournalError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Op::Save(row, Some(ack)))
            .map_err(|_| JournalError::WriterGone)?;
        done.await
            .map_err(|_| JournalError::WriterGone)?
            .map_err(|_| JournalError::WriterGone)
    }

    /// Commits an outcome with its audit line and dead letter in one transaction.
    pub async fn resolve(
        &self,
        row: ActionRow,
        outcome: OutcomeLine,
        letter: Option<DeadLetter>,
    ) -> Result<(), JournalError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Op::Resolve {
                row: Box::new(row),
                outcome,
                letter: letter.map(Box::new),
                ack,
            })
            .map_err(|_| JournalError::WriterGone)?;
        done.await
            .map_err(|_| JournalError::WriterGone)?
            .map_err(|_| JournalError::WriterGone)
    }

    /// Marks outcome lines as present in the audit file.
    pub fn mark_audited(&self, event_ids: Vec<String>) {
        if !event_ids.is_empty() {
            let _ = self.tx.send(Op::MarkAudited(event_ids));
        }
    }

    /// Records a delivery attempt of a dead letter.
    pub fn record_delivery(&self, error_id: String, attempts: u32, delivered: bool, error: Option<String>) {
        let _ = self.tx.send(Op::Delivery {
            error_id,
            attempts,
            delivered,
            error,
        });
    }

    /// The last committed row of `identity` (after earlier writes of this handle).
    pub async fn load(&self, identity: Identity) -> Option<ActionRow> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Op::Load(identity, reply)).ok()?;
        rx.await.ok().flatten()
    }

    /// Applies pending `dlq replay` requests and returns the actions to start again.
    pub async fn take_replays(&self) -> Vec<Replay> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Op::TakeReplays(reply)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Waits until everything sent before is committed.
    pub async fn flush(&self) -> Result<(), JournalError> {
        let (ack, done) = oneshot::channel();
        self.tx.send(Op::Flush(ack)).map_err(|_| JournalError::WriterGone)?;
        done.await
            .map_err(|_| JournalError::WriterGone)?
            .map_err(|_| JournalError::WriterGone)
    }
}

/// Takes the exclusive lock on `<path>.lock` and writes our pid into it.
fn lock(path: &Path) -> Result<File, JournalError> {
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| JournalError::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    let io = |source| JournalError::Io {
        path: lock_path.clone(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&lock_path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&lock_path)
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
                .map(|pid| format!("pid {pid}"))
                .unwrap_or_else(|| "another process".into());
            return Err(JournalError::Locked {
                path: path.to_owned(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    Ok(file)
}
