//! The SQLite journal: opening (lock, schema, migration from older versions), what the
//! singletons need at start, and the writer thread. The operations live in `apply.rs`,
//! the reads of `status`, `show`, the admin API and the console in `read.rs` (one action's
//! in `one.rs`, the overview's in `activity.rs`), dead-letter filters and requests in
//! `letters.rs`.

mod activity;
mod apply;
mod counts;
mod insert;
mod letters;
mod one;
pub(crate) mod read;
mod schema;
mod tally;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use rusqlite::Connection;

use super::{Journal, JournalError, OutcomeLine, Snapshot};
use crate::health::Blockers;

/// How to open the journal.
#[derive(Clone)]
pub struct Options {
    /// The database file.
    pub path: PathBuf,
    /// Sync every group commit (`journal.fsync`).
    pub fsync: bool,
    /// This daemon's name, written into every history event.
    pub instance: String,
    /// The embedded simulator restarted with this process: ids polled before exist
    /// nowhere any more, so those actions repeat their POST (same key) instead.
    pub forget_poll_ids: bool,
    /// Where failed commits are reported (`/readyz`) until a write commits again.
    pub health: Blockers,
}

/// Locks and opens (creating, mode 0600) the journal, migrates it, and starts the
/// writer thread.
pub fn open(options: &Options) -> Result<(Journal, Snapshot), JournalError> {
    let path = &options.path;
    let lock = lock(path)?;
    let mut conn = connect(path, options.fsync)?;
    schema::migrate(&mut conn, path)?;
    let sql = JournalError::sqlite(path);
    tune_writer(&conn).map_err(&sql)?;
    // Claims die with the process that made them: every unresolved action is due again.
    // Only open actions are ever claimed (a resolved one keeps its last owner, unread), so
    // only those are looked at: through `actions_open`, not a scan of the whole journal.
    conn.execute(
        "UPDATE actions SET owner = NULL WHERE open = 1 AND owner IS NOT NULL",
        [],
    )
    .map_err(&sql)?;
    // So do leases on dead letters; and a start tries every undelivered letter at once
    // (the webhook may be back) instead of after its redelivery delay.
    conn.execute(
        "UPDATE dead_letters SET next_attempt_ms = 0, lease_owner = NULL, lease_until_ms = NULL
         WHERE delivered = 0 AND discarded = 0 AND (next_attempt_ms > 0 OR lease_owner IS NOT NULL)",
        [],
    )
    .map_err(&sql)?;
    if options.forget_poll_ids {
        forget_poll_ids(&mut conn).map_err(&sql)?;
    }
    let snapshot = snapshot(&conn).map_err(&sql)?;
    let (tx, rx) = mpsc::channel();
    let backend = apply::Sqlite::new(conn, path.clone(), options.instance.clone());
    let health = options.health.clone();
    std::thread::Builder::new()
        .name("journal-writer".into())
        .spawn(move || super::writer::run(backend, rx, health))
        .map_err(JournalError::io(path))?;
    Ok((
        Journal {
            tx,
            _lock: Arc::new(lock),
        },
        snapshot,
    ))
}

/// Opens the database (mode 0600), sets WAL and the sync level.
pub(crate) fn connect(path: &Path, fsync: bool) -> Result<Connection, JournalError> {
    let sql = JournalError::sqlite(path);
    if !path.exists() {
        // Create the file ourselves so that it is private from the first byte.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options.open(path).map_err(JournalError::io(path))?;
    }
    let conn = Connection::open(path).map_err(&sql)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(&sql)?;
    // Free pages go back to the file system after pruning (`incremental_vacuum`). The
    // mode can only be chosen while the database is empty: switching to WAL below
    // writes its first page, after which SQLite ignores the setting.
    let pages: i64 = conn
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .map_err(&sql)?;
    if pages == 0 {
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(&sql)?;
    }
    conn.pragma_update(None, "journal_mode", "WAL").map_err(&sql)?;
    // FULL syncs the WAL at each commit (one fsync per group); OFF leaves it to the OS,
    // which still survives a killed process but not a power cut.
    conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "OFF" })
        .map_err(&sql)?;
    Ok(conn)
}

/// Pages of the writer's cache (`cache_size`, negative: in KiB): 8 MiB, taken only as
/// the journal grows. With SQLite's 2 MiB default, the pages of 1,000 actions in flight
/// (their rows, history and outcome lines, and the indexes over them) did not stay
/// cached: every action cost a page read back from the WAL. More costs at each commit:
/// a page split renumbers pages through a page number far past the end of the file, and
/// the commit that follows walks the whole cache to drop pages past the end. At 32 MiB
/// that walk was 5% of the writer's CPU; at 8 MiB it is 1%, with no more page reads.
const WRITER_CACHE_KIB: i64 = 8 * 1024;
/// WAL pages between automatic checkpoints: SQLite's default. Larger (4,000) saved page
/// copies, but a WAL of 16 MB on a small disk took the space a checkpoint needs: after
/// a full disk the journal could not write again even once space was freed.
const WRITER_CHECKPOINT_PAGES: i64 = 1_000;

/// Prepared statements the writer keeps.
const WRITER_STATEMENTS: usize = 64;

/// Settings of the writer's own connection (readers keep SQLite's defaults):
/// statement journals and temporary tables in memory (`temp_store`); each statement of
/// a group commit that may fail halfway (a trigger, an upsert) keeps the pages it
/// changes in a statement journal, and with temporary files that was half of all page
/// writes (5.2 `pwrite64` calls per action, 2.5 without, same journal contents); a
/// larger page cache; checkpoints at SQLite's default; room for every statement the writer
/// prepares (rusqlite keeps 16 by default: the writer has more, and an evicted one is
/// parsed and planned again when it next comes up).
fn tune_writer(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(WRITER_STATEMENTS);
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
    Ok(())
}

/// Actions that were being polled repeat their POST with the same Idempotency-Key; a
/// compensation being polled is submitted again the same way.
fn forget_poll_ids(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    // Counted first: the aggregates follow every state change (tally.rs).
    let mut tally = tally::Tally::default();
    let polled: Vec<(String, i64, i64)> = tx
        .prepare(
            "SELECT batch, COUNT(*), SUM(retry_count) FROM actions
             WHERE open = 1 AND poll_id IS NOT NULL AND state = 'polling' GROUP BY batch",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (batch, actions, retries) in polled {
        tally.moved(&batch.into(), "polling", "submitting", actions, retries);
    }
    tally.write(&tx)?;
    let resubmitted = tx.execute(
        "UPDATE actions SET state = CASE state WHEN 'polling' THEN 'submitting' ELSE state END, poll_id = NULL
         WHERE open = 1 AND poll_id IS NOT NULL",
        [],
    )?;
    tx.commit()?;
    if resubmitted > 0 {
        tracing::info!(resubmitted, "The embedded simulator restarted with this process; polled actions are submitted again with their Idempotency-Keys.");
    }
    Ok(())
}

/// What the audit actor needs at start and to rebuild after a restart.
pub(super) fn snapshot(conn: &Connection) -> rusqlite::Result<Snapshot> {
    let mut snapshot = Snapshot::default();
    let mut stmt = conn.prepare("SELECT event_id, line FROM outcomes WHERE audited = 0")?;
    for row in stmt.query_map([], |r| {
        Ok(OutcomeLine {
            event_id: r.get(0)?,
            line: r.get(1)?,
        })
    })? {
        snapshot.unaudited.push(row?);
    }
    Ok(snapshot)
}

/// Takes the exclusive lock on `<path>.lock` and writes our pid into it.
fn lock(path: &Path) -> Result<File, JournalError> {
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(JournalError::io(dir))?;
    }
    let io = JournalError::io(&lock_path);
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&lock_path).map_err(&io)?;
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
    file.set_len(0).map_err(&io)?;
    write!(file, "{}", std::process::id()).map_err(&io)?;
    Ok(file)
}

/// Loads `keys` into `batch` the way the daemon does (`insert::insert`: new rows and their
/// counts), for the tests of the aggregates.
#[cfg(test)]
pub(crate) fn load_for_test(conn: &Connection, batch: &str, keys: &[&str]) {
    let rows: Vec<_> = keys
        .iter()
        .map(|key| crate::config::actions::ConfiguredAction {
            key: (*key).to_owned(),
            body: b"{}".to_vec(),
        })
        .collect();
    insert::insert(conn, batch, &rows).expect("the rows load");
}

/// Changes one action the way the writer does (under a claim, its history event written,
/// the aggregates counted): for the tests of what reads them.
#[cfg(test)]
pub(crate) fn change_for_test(conn: &Connection, batch: &str, key: &str, change: impl FnOnce(&mut super::ActionRow)) {
    use apply::{read_row, AFTER_ROW, ROW_COLUMNS};
    let (claim, mut row) = conn
        .query_row(
            &format!(
                "UPDATE actions SET owner = 'test', fence = fence + 1 WHERE batch = ?1 AND key = ?2
                 RETURNING {ROW_COLUMNS}, fence"
            ),
            rusqlite::params![batch, key],
            |r| {
                let claim = super::Claim {
                    id: r.get(0)?,
                    fence: r.get(AFTER_ROW)?,
                };
                Ok((claim, read_row(r)?))
            },
        )
        .expect("the action exists");
    change(&mut row);
    let mut tally = tally::Tally::default();
    let write = apply::Write {
        instance: "test",
        claim,
        row: &row,
        note: &crate::state::Note::default(),
    };
    assert_eq!(apply::save(conn, write, &mut tally).unwrap(), super::Written::Done);
    tally.write(conn).unwrap();
}
