//! The journal's writer thread and its SQL: schema, group commits, snapshot, replays.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::record::{now_ms, ActionRow, StateWord};
use super::{JournalError, Op, OutcomeLine, Replay, Snapshot};
use crate::action::Identity;
use crate::dead_letter::DeadLetter;

/// Most operations committed in one transaction.
const MAX_GROUP: usize = 4096;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS actions (
    batch TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    retry_count INTEGER NOT NULL,
    series INTEGER NOT NULL DEFAULT 0,
    action_id TEXT,
    poll_id TEXT,
    until_ms INTEGER,
    first_submit_ms INTEGER,
    latency_ms INTEGER,
    compensating TEXT,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (batch, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outcomes (
    event_id TEXT PRIMARY KEY,
    batch TEXT NOT NULL,
    key TEXT NOT NULL,
    line BLOB NOT NULL,
    audited INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outcomes_unaudited ON outcomes (audited) WHERE audited = 0;
CREATE TABLE IF NOT EXISTS dead_letters (
    error_id TEXT PRIMARY KEY,
    batch TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    replayed INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    delivered_ms INTEGER
);
CREATE TABLE IF NOT EXISTS replay_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    error_id TEXT NOT NULL,
    requested_ms INTEGER NOT NULL
);
";

/// Opens the database (mode 0600), sets WAL and the sync level, creates the schema.
pub(super) fn connect(path: &Path, fsync: bool) -> Result<Connection, JournalError> {
    let sql = |source| JournalError::Sqlite {
        path: path.to_owned(),
        source,
    };
    if !path.exists() {
        // Create the file ourselves so that it is private from the first byte.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options.open(path).map_err(|source| JournalError::Io {
            path: path.to_owned(),
            source,
        })?;
    }
    let conn = Connection::open(path).map_err(sql)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
    // FULL syncs the WAL at each commit (one fsync per group); OFF leaves it to the OS,
    // which still survives a killed process but not a power cut.
    conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "OFF" })
        .map_err(sql)?;
    conn.execute_batch(SCHEMA).map_err(sql)?;
    Ok(conn)
}

/// Everything the daemon needs at start.
pub(super) fn snapshot(conn: &Connection) -> rusqlite::Result<Snapshot> {
    let mut snapshot = Snapshot::default();
    let mut stmt = conn.prepare("SELECT * FROM actions")?;
    for row in stmt.query_map([], read_action)? {
        let row = row?;
        snapshot.actions.insert(row.identity.clone(), row);
    }
    let mut stmt = conn.prepare("SELECT event_id, line FROM outcomes WHERE audited = 0")?;
    for row in stmt.query_map([], |r| {
        Ok(OutcomeLine {
            event_id: r.get(0)?,
            line: r.get(1)?,
        })
    })? {
        snapshot.unaudited.push(row?);
    }
    let mut stmt = conn.prepare("SELECT body, attempts FROM dead_letters WHERE delivered = 0 ORDER BY created_ms")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))? {
        let (body, attempts) = row?;
        if let Ok(letter) = serde_json::from_str::<DeadLetter>(&body) {
            snapshot.undelivered.push((letter, attempts));
        }
    }
    Ok(snapshot)
}

/// Reads one `actions` row.
pub(super) fn read_action(r: &Row<'_>) -> rusqlite::Result<ActionRow> {
    let batch: String = r.get("batch")?;
    let key: String = r.get("key")?;
    let state: String = r.get("state")?;
    let compensating: Option<String> = r.get("compensating")?;
    Ok(ActionRow {
        identity: Identity::new(batch, key),
        state: StateWord::parse(&state).unwrap_or(StateWord::Pending),
        attempt: r.get("attempt")?,
        retry_count: r.get("retry_count")?,
        series: r.get("series")?,
        action_id: r.get("action_id")?,
        poll_id: r.get("poll_id")?,
        until_ms: r.get("until_ms")?,
        first_submit_ms: r.get("first_submit_ms")?,
        latency_ms: r.get("latency_ms")?,
        compensating: compensating.and_then(|c| serde_json::from_str(&c).ok()),
        updated_ms: r.get("updated_ms")?,
    })
}

fn save(conn: &Connection, row: &ActionRow) -> rusqlite::Result<()> {
    let compensating = row
        .compensating
        .as_ref()
        .map(|c| serde_json::to_string(c).unwrap_or_default());
    conn.prepare_cached(
        "INSERT INTO actions (batch, key, state, attempt, retry_count, series, action_id, poll_id, until_ms,
                              first_submit_ms, latency_ms, compensating, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (batch, key) DO UPDATE SET
            state = excluded.state, attempt = excluded.attempt, retry_count = excluded.retry_count,
            series = excluded.series, action_id = excluded.action_id, poll_id = excluded.poll_id,
            until_ms = excluded.until_ms, first_submit_ms = excluded.first_submit_ms,
            latency_ms = excluded.latency_ms, compensating = excluded.compensating, updated_ms = excluded.updated_ms",
    )?
    .execute(params![
        row.identity.batch.as_ref(),
        row.identity.key.as_ref(),
        row.state.as_str(),
        row.attempt,
        row.retry_count,
        row.series,
        row.action_id,
        row.poll_id,
        row.until_ms,
        row.first_submit_ms,
        row.latency_ms,
        compensating,
        row.updated_ms,
    ])?;
    Ok(())
}

/// Applies pending replay requests: marks the dead letter replayed and resets the
/// action to `pending` in a new series (fresh Idempotency-Keys).
pub(super) fn apply_replays(conn: &Connection) -> rusqlite::Result<Vec<Replay>> {
    let requests: Vec<(i64, String)> = conn
        .prepare_cached("SELECT id, error_id FROM replay_requests ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut replays = Vec::new();
    for (id, error_id) in requests {
        conn.execute("DELETE FROM replay_requests WHERE id = ?1", params![id])?;
        let letter: Option<(String, String)> = conn
            .query_row(
                "SELECT batch, key FROM dead_letters WHERE error_id = ?1 AND replayed = 0",
                params![error_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((batch, key)) = letter else { continue };
        conn.execute(
            "UPDATE dead_letters SET replayed = 1 WHERE error_id = ?1",
            params![error_id],
        )?;
        let series: u32 = conn
            .query_row(
                "SELECT series FROM actions WHERE batch = ?1 AND key = ?2",
                params![batch, key],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0)
            + 1;
        let identity = Identity::new(batch, key);
        let row = ActionRow::pending(&identity, series);
        save(conn, &row)?;
        replays.push(Replay {
            identity,
            series,
            error_id,
        });
    }
    Ok(replays)
}

/// The writer loop: group commits until every handle is dropped.
pub(super) fn run(mut conn: Connection, path: PathBuf, rx: mpsc::Receiver<Op>) {
    let mut ops = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = rx.recv() {
        ops.push(first);
        while ops.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        match commit_group(&mut conn, &ops) {
            Ok(reads) => answer(ops.drain(..), reads, Ok(())),
            Err(e) if ops.len() > 1 => {
                // One bad operation must not take the others down with it: commit each
                // alone, so only the failing one is reported (and logged).
                tracing::warn!(journal = %path.display(), error = %e, "Group commit failed; committing one by one.");
                for op in ops.drain(..) {
                    let single = [op];
                    match commit_group(&mut conn, &single) {
                        Ok(reads) => answer(single.into_iter(), reads, Ok(())),
                        Err(e) => {
                            tracing::error!(journal = %path.display(), error = %e, "Journal commit failed.");
                            answer(single.into_iter(), Vec::new(), Err(e.to_string()));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(journal = %path.display(), error = %e, "Journal commit failed.");
                answer(ops.drain(..), Vec::new(), Err(e.to_string()));
            }
        }
    }
}

/// What a read operation found, delivered only after its transaction committed.
enum Read {
    Row(Option<ActionRow>),
    Replays(Vec<Replay>),
}

/// Sends every reply of a group once its fate is known: acknowledgements with the commit
/// result, reads with what they found (nothing when the commit failed).
fn answer(ops: impl Iterator<Item = Op>, reads: Vec<Read>, outcome: Result<(), String>) {
    let mut reads = reads.into_iter();
    for op in ops {
        match op {
            Op::Save(_, Some(ack)) | Op::Resolve { ack, .. } | Op::Flush(ack) => {
                let _ = ack.send(outcome.clone());
            }
            Op::Load(_, reply) => {
                let row = match (outcome.is_ok(), reads.next()) {
                    (true, Some(Read::Row(row))) => row,
                    _ => None,
                };
                let _ = reply.send(row);
            }
            Op::TakeReplays(reply) => {
                let replays = match (outcome.is_ok(), reads.next()) {
                    (true, Some(Read::Replays(replays))) => replays,
                    _ => Vec::new(),
                };
                let _ = reply.send(replays);
            }
            Op::Save(_, None) | Op::MarkAudited(_) | Op::Delivery { .. } => {}
        }
    }
}

/// Applies a group in one transaction; returns the reads' results in op order.
fn commit_group(conn: &mut Connection, ops: &[Op]) -> rusqlite::Result<Vec<Read>> {
    let tx = conn.transaction()?;
    let mut reads = Vec::new();
    for op in ops {
        match op {
            Op::Save(row, _) => save(&tx, row)?,
            Op::Resolve {
                row, outcome, letter, ..
            } => {
                save(&tx, row)?;
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO outcomes (event_id, batch, key, line) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    outcome.event_id,
                    row.identity.batch.as_ref(),
                    row.identity.key.as_ref(),
                    outcome.line
                ])?;
                if let Some(letter) = letter {
                    let body = serde_json::to_string(letter).unwrap_or_default();
                    tx.prepare_cached(
                        "INSERT OR IGNORE INTO dead_letters (error_id, batch, key, body, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![letter.error_id.to_string(), letter.batch, letter.key, body, now_ms()])?;
                }
            }
            Op::MarkAudited(ids) => {
                let mut stmt = tx.prepare_cached("UPDATE outcomes SET audited = 1 WHERE event_id = ?1")?;
                for id in ids {
                    stmt.execute(params![id])?;
                }
            }
            Op::Delivery {
                error_id,
                attempts,
                delivered,
                error,
            } => {
                tx.prepare_cached(
                    "UPDATE dead_letters SET attempts = ?2, delivered = ?3, last_error = ?4,
                            delivered_ms = CASE WHEN ?3 = 1 THEN ?5 ELSE delivered_ms END
                     WHERE error_id = ?1",
                )?
                .execute(params![error_id, attempts, *delivered as i64, error, now_ms()])?;
            }
            Op::Load(identity, _) => {
                let row = tx
                    .prepare_cached("SELECT * FROM actions WHERE batch = ?1 AND key = ?2")?
                    .query_row(params![identity.batch.as_ref(), identity.key.as_ref()], read_action)
                    .optional()?;
                reads.push(Read::Row(row));
            }
            Op::TakeReplays(_) => reads.push(Read::Replays(apply_replays(&tx)?)),
            Op::Flush(_) => {}
        }
    }
    tx.commit()?;
    Ok(reads)
}
