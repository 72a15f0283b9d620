//! Opening a reader, and the readers a running daemon keeps for its admin API and console: at most `size`
//! open at once, reused between requests. With PostgreSQL each reader is a connection,
//! and the pool keeps a daemon within `journal.pool_size` connections (the writer and
//! the heartbeat hold the other two); with SQLite a reader is an open file.
//!
//! A reader that failed a read is dropped rather than reused (its connection may be
//! broken); a request that finds every reader busy waits up to `WAIT` for one.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::read::JournalRead;
use super::JournalError;
use crate::config::{Backend, Config};

/// A reader for the journal `config` names (blocking: call it off any async runtime).
pub fn open_reader(config: &Config) -> Result<Box<dyn JournalRead>, JournalError> {
    let has_webhook = config.dead_letter.webhook_url.is_set();
    match config.journal.backend {
        Backend::Sqlite => Ok(Box::new(super::sqlite::read::Reader::open(
            &config.journal.path,
            has_webhook,
        )?)),
        Backend::Postgres => {
            let target = super::postgres::Target::from_env(&config.journal.url_env, &config.journal.schema)?;
            let lease = config.cluster.lease_timeout;
            Ok(Box::new(super::postgres::read::Reader::open(
                target,
                has_webhook,
                lease,
            )?))
        }
    }
}

/// How long a request waits for a busy pool before it is answered with an error.
const WAIT: Duration = Duration::from_secs(5);
/// Connections of a PostgreSQL daemon that are not readers: the writer and the heartbeat.
const NOT_READERS: usize = 2;
/// Readers kept for a SQLite journal (files are cheap; the bound is for open handles).
const SQLITE_READERS: usize = 4;

/// Readers shared by every request of the admin server.
pub struct ReaderPool {
    config: Arc<Config>,
    size: usize,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    idle: Vec<Box<dyn JournalRead>>,
    /// Readers open, idle or in use.
    open: usize,
}

impl ReaderPool {
    /// A pool for the journal `config` names (nothing is opened yet).
    pub fn new(config: Arc<Config>) -> Arc<ReaderPool> {
        let size = match config.journal.backend {
            Backend::Sqlite => SQLITE_READERS,
            Backend::Postgres => config.journal.pool_size.saturating_sub(NOT_READERS).max(1),
        };
        Arc::new(ReaderPool {
            config,
            size,
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        })
    }

    /// The most readers open at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Runs `read` on a reader of the pool. Blocks: call it off any async runtime.
    pub fn read<T>(&self, read: impl FnOnce(&dyn JournalRead) -> Result<T, JournalError>) -> Result<T, JournalError> {
        let reader = self.take()?;
        let result = read(reader.as_ref());
        let mut state = self.lock();
        if result.is_ok() {
            state.idle.push(reader);
        } else {
            state.open -= 1;
        }
        drop(state);
        self.freed.notify_one();
        result
    }

    /// An idle reader, a new one while fewer than `size` are open, or the first one
    /// freed within `WAIT`.
    fn take(&self) -> Result<Box<dyn JournalRead>, JournalError> {
        let deadline = Instant::now() + WAIT;
        let mut state = self.lock();
        loop {
            if let Some(reader) = state.idle.pop() {
                return Ok(reader);
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return open_reader(&self.config).inspect_err(|_| {
                    self.lock().open -= 1;
                    self.freed.notify_one();
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(JournalError::Busy { readers: self.size });
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ReaderPool {
    /// Closes the idle readers on a thread of their own: a PostgreSQL reader's client
    /// runs a runtime of its own to close its connection, which panics on a thread that
    /// already drives one (the admin server drops the pool on its runtime at shutdown).
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.lock().idle);
        if idle.is_empty() {
            return;
        }
        let closing = std::thread::Builder::new()
            .name("journal-readers-close".into())
            .spawn(move || drop(idle));
        match closing {
            Ok(thread) => {
                let _ = thread.join();
            }
            Err(e) => tracing::warn!(error = %e, "Cannot close the journal readers cleanly."),
        }
    }
}
