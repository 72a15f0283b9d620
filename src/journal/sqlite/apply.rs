//! The journal's operations in SQLite: one transaction per group, statements prepared
//! once and cached. Writes of an action are conditional on its claim (id, fencing token,
//! owner); zero rows matched means the claim was lost.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use crate::action::Identity;
use crate::dead_letter::DeadLetter;
use crate::journal::record::{now_ms, ActionRow, StateWord};
use crate::journal::writer::{Backend, Done};
use crate::journal::{Claim, Claimed, JournalError, Op, OutcomeLine, Pruned, Replay, Written};
use crate::state::Note;

use super::tally::{Counted, Tally};

/// Actions examined per pruning round (a range of row ids).
const PRUNE_ROUND: i64 = 10_000;

/// The columns of an action row, in `read_row`'s order.
pub(crate) const ROW_COLUMNS: &str = "id, batch, key, state, attempt, retry_count, series, action_id, poll_id, \
     until_ms, first_submit_ms, latency_ms, compensating, restarts, updated_ms";

/// How often a full disk may cost a WAL checkpoint attempt.
const RECLAIM_EVERY: Duration = Duration::from_secs(1);

/// The SQLite backend of the writer thread.
pub struct Sqlite {
    conn: Connection,
    path: PathBuf,
    /// Owner of this process's claims, and the `instance` of its history events.
    instance: String,
    /// When a full disk last made us checkpoint and truncate the WAL.
    reclaimed_at: Option<Instant>,
    /// The aggregates' changes of the group being applied.
    tally: Tally,
}

impl Sqlite {
    /// The backend over an open, migrated connection.
    pub fn new(conn: Connection, path: PathBuf, instance: String) -> Self {
        Sqlite {
            conn,
            path,
            instance,
            reclaimed_at: None,
            tally: Tally::default(),
        }
    }

    fn apply_group(&mut self, ops: &[Op]) -> Result<Vec<Done>, JournalError> {
        let result = self.try_group(ops);
        if result.is_err() {
            self.tally.rolled_back();
        }
        result
    }

    fn try_group(&mut self, ops: &[Op]) -> Result<Vec<Done>, JournalError> {
        let sql = JournalError::sqlite(&self.path);
        let tally = &mut self.tally;
        let tx = self.conn.transaction().map_err(&sql)?;
        let mut done = Vec::with_capacity(ops.len());
        for op in ops {
            // Whatever reads the aggregates sees the changes before it.
            if !tally.is_empty() && !matches!(op, Op::Save { .. } | Op::Resolve { .. }) {
                tally.write(&tx).map_err(&sql)?;
            }
            done.push(apply_one(&tx, &self.instance, op, tally).map_err(&sql)?);
        }
        tally.write(&tx).map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        if ops.iter().any(|op| matches!(op, Op::Vacuum(_))) {
            incremental_vacuum(&self.conn).map_err(&sql)?;
        }
        Ok(done)
    }

    /// After a commit failed on a full disk: copies the WAL into the database and
    /// truncates it, at most every `RECLAIM_EVERY`. Between checkpoints the WAL grows
    /// by thousands of pages; on a small disk it may have taken the very space the next
    /// commit needs, and only a checkpoint gives it back once space is freed.
    fn reclaim_wal(&mut self) {
        if self.reclaimed_at.is_some_and(|at| at.elapsed() < RECLAIM_EVERY) {
            return;
        }
        self.reclaimed_at = Some(Instant::now());
        let _ = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
}

impl Backend for Sqlite {
    fn apply(&mut self, ops: &[Op]) -> Result<Vec<Done>, JournalError> {
        let result = self.apply_group(ops);
        if let Err(JournalError::Sqlite { source, .. }) = &result {
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
                self.reclaim_wal();
            }
        }
        result
    }
}

fn apply_one(tx: &Transaction<'_>, instance: &str, op: &Op, tally: &mut Tally) -> rusqlite::Result<Done> {
    Ok(match op {
        Op::Insert { batch, rows, .. } => Done::Inserted(super::insert::insert(tx, batch, rows)?),
        Op::Claim { batch, limit, .. } => Done::Claimed(claim(tx, instance, batch, *limit, tally)?),
        Op::Save { claim, row, note, .. } => Done::Written(save(
            tx,
            Write {
                instance,
                claim: *claim,
                row,
                note,
            },
            tally,
        )?),
        Op::Resolve {
            claim,
            row,
            note,
            outcome,
            letter,
            ..
        } => Done::Written(resolve(
            tx,
            Write {
                instance,
                claim: *claim,
                row,
                note,
            },
            outcome,
            letter.as_deref(),
            tally,
        )?),
        Op::Reload { claim, .. } => Done::Row(reload(tx, instance, *claim)?),
        Op::MarkAudited { event_ids, .. } => {
            let mut stmt = tx.prepare_cached("UPDATE outcomes SET audited = 1 WHERE event_id = ?1")?;
            for id in event_ids {
                stmt.execute(params![id])?;
            }
            Done::Nothing
        }
        Op::Delivery {
            error_id,
            attempts,
            delivered,
            error,
            next_attempt_ms,
        } => {
            // Only under our lease: a letter whose lease ran out belongs to its new holder.
            tx.prepare_cached(
                "UPDATE dead_letters SET attempts = ?2, delivered = ?3, last_error = ?4, next_attempt_ms = ?6,
                        delivered_ms = CASE WHEN ?3 = 1 THEN ?5 ELSE delivered_ms END,
                        lease_owner = NULL, lease_until_ms = NULL
                 WHERE error_id = ?1 AND lease_owner = ?7",
            )?
            .execute(params![
                error_id,
                attempts,
                *delivered as i64,
                error,
                now_ms(),
                next_attempt_ms,
                instance
            ])?;
            Done::Nothing
        }
        Op::ClaimLetters { limit, lease_ms, .. } => Done::Letters(claim_letters(tx, instance, *limit, *lease_ms)?),
        Op::UndeliveredLetters(_) => Done::Count(
            tx.prepare_cached("SELECT COUNT(*) FROM dead_letters WHERE delivered = 0 AND discarded = 0")?
                .query_row([], |r| r.get::<_, i64>(0))? as u64,
        ),
        Op::TakeReplays(_) => Done::Replays(apply_replays(tx, instance, tally)?),
        Op::TakeDiscards(_) => Done::Discards(super::letters::apply_discards(tx)?),
        Op::Unresolved { batches, .. } => Done::Count(unresolved(tx, batches)?),
        Op::Counts { batches, .. } => Done::Counts(
            batches
                .iter()
                .map(|b| super::counts::counts(tx, b))
                .collect::<Result<_, _>>()?,
        ),
        Op::Prune { before_ms, from, .. } => Done::Pruned(prune(tx, *before_ms, *from)?),
        Op::Source { batch, path, .. } => Done::Source(
            tx.prepare_cached("SELECT hash FROM sources WHERE batch = ?1 AND path = ?2")?
                .query_row(params![batch.as_ref(), path], |r| r.get(0))
                .optional()?,
        ),
        Op::RecordSource {
            batch,
            path,
            hash,
            actions,
        } => {
            tx.prepare_cached(
                "INSERT INTO sources (batch, path, hash, actions, loaded_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (batch, path) DO UPDATE SET hash = excluded.hash, actions = excluded.actions,
                        loaded_ms = excluded.loaded_ms",
            )?
            .execute(params![batch.as_ref(), path, hash, *actions as i64, now_ms()])?;
            Done::Nothing
        }
        // One daemon owns a SQLite journal: nobody else to rescue from or tell.
        Op::RescueAudit(_) => Done::Lines(Vec::new()),
        Op::ClaimWriting { event_ids, .. } => Done::Ids(event_ids.clone()),
        Op::Snapshot(_) => Done::Snapshot(super::snapshot(tx)?),
        Op::Release => {
            tally.forget_all();
            Done::Nothing
        }
        Op::PublishPause { .. } | Op::Vacuum(_) | Op::Flush(_) => Done::Nothing,
    })
}

/// Claims up to `limit` due actions of `batch` in file order.
fn claim(
    tx: &Transaction<'_>,
    instance: &str,
    batch: &str,
    limit: usize,
    tally: &mut Tally,
) -> rusqlite::Result<Vec<Claimed>> {
    let mut stmt = tx.prepare_cached(&format!(
        "UPDATE actions SET owner = ?3, fence = fence + 1
         WHERE id IN (SELECT id FROM actions WHERE batch = ?1 AND open = 1 AND owner IS NULL AND body IS NOT NULL
                      ORDER BY id LIMIT ?2)
         RETURNING {ROW_COLUMNS}, fence, body"
    ))?;
    let mut claimed = stmt
        .query_map(params![batch, limit as i64, instance], |r| {
            Ok(Claimed {
                claim: Claim {
                    id: r.get(0)?,
                    fence: r.get(AFTER_ROW)?,
                },
                row: read_row(r)?,
                body: Bytes::from(r.get::<_, Vec<u8>>(AFTER_ROW + 1)?),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    claimed.sort_by_key(|c| c.claim.id);
    for c in &claimed {
        tally.remember(c.claim, Counted::of(&c.row));
    }
    Ok(claimed)
}

/// A state to write under a claim.
pub(crate) struct Write<'a> {
    /// The claim's owner, and the `instance` of the history event.
    pub instance: &'a str,
    pub claim: Claim,
    pub row: &'a ActionRow,
    /// Why, for the history event.
    pub note: &'a Note,
}

/// Writes a state under its claim; appends its history event and counts the change.
pub(crate) fn save(tx: &Connection, w: Write<'_>, tally: &mut Tally) -> rusqlite::Result<Written> {
    let Write {
        instance,
        claim,
        row,
        note,
    } = w;
    // What the row counted before: known when this writer claimed or wrote it last,
    // otherwise read (after a restarted poller's reload, say).
    let before = match tally.known(claim) {
        Some(counted) => Some(counted.clone()),
        None => tx
            .prepare_cached("SELECT state, retry_count, open, latency_ms FROM actions WHERE id = ?1")?
            .query_row(params![claim.id], |r| {
                Ok(Counted::stored(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?,
    };
    let compensating = row
        .compensating
        .as_ref()
        .map(|c| serde_json::to_string(c).expect("a payload serializes"));
    let resolved = row.state.is_outcome();
    let changed = tx
        .prepare_cached(
            "UPDATE actions SET state = ?4, open = ?5, attempt = ?6, retry_count = ?7, series = ?8, action_id = ?9,
                    poll_id = ?10, until_ms = ?11, first_submit_ms = ?12, latency_ms = ?13, compensating = ?14,
                    restarts = ?15, updated_ms = ?16, resolved_ms = CASE WHEN ?5 = 0 THEN ?16 END
             WHERE id = ?1 AND fence = ?2 AND owner = ?3",
        )?
        .execute(params![
            claim.id,
            claim.fence,
            instance,
            row.state.as_str(),
            !resolved as i64,
            row.attempt,
            row.retry_count,
            row.series,
            row.action_id,
            row.poll_id,
            row.until_ms,
            row.first_submit_ms,
            row.latency_ms,
            compensating,
            row.restarts,
            row.updated_ms,
        ])?;
    let Some(before) = before.filter(|_| changed > 0) else {
        tally.forget(claim.id);
        return Ok(Written::Lost);
    };
    let after = Counted::of(row);
    tally.change(&row.identity.batch, &before, &after);
    tally.remember(claim, after);
    event(tx, claim.id, row, note, instance)?;
    Ok(Written::Done)
}

/// Appends one history event.
pub(crate) fn event(
    tx: &Connection,
    action: i64,
    row: &ActionRow,
    note: &Note,
    instance: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO history (action, seq, at_ms, state, attempt, action_id, http_status, error_code, detail, instance)
         VALUES (?1, (SELECT IFNULL(MAX(seq), 0) + 1 FROM history WHERE action = ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        action,
        row.updated_ms,
        row.state.as_str(),
        row.attempt,
        row.poll_id.as_ref().or(row.action_id.as_ref()),
        note.http_status,
        note.error_code,
        note.detail,
        instance,
    ])?;
    Ok(())
}

/// The outcome, its audit line and its dead letter, all under the claim.
fn resolve(
    tx: &Transaction<'_>,
    w: Write<'_>,
    outcome: &OutcomeLine,
    letter: Option<&DeadLetter>,
    tally: &mut Tally,
) -> rusqlite::Result<Written> {
    let row = w.row;
    if save(tx, w, tally)? == Written::Lost {
        return Ok(Written::Lost);
    }
    tx.prepare_cached(
        "INSERT OR IGNORE INTO outcomes (event_id, batch, key, line, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        outcome.event_id,
        row.identity.batch.as_ref(),
        row.identity.key.as_ref(),
        outcome.line,
        row.updated_ms
    ])?;
    if let Some(letter) = letter {
        let body = serde_json::to_string(letter).expect("a letter serializes");
        tx.prepare_cached(
            "INSERT OR IGNORE INTO dead_letters (error_id, batch, key, error_code, body, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            letter.error_id.to_string(),
            letter.batch,
            letter.key,
            letter.error_code,
            body,
            row.updated_ms
        ])?;
    }
    Ok(Written::Done)
}

fn reload(tx: &Transaction<'_>, instance: &str, claim: Claim) -> rusqlite::Result<Option<ActionRow>> {
    tx.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM actions WHERE id = ?1 AND fence = ?2 AND owner = ?3"
    ))?
    .query_row(params![claim.id, claim.fence, instance], read_row)
    .optional()
}

/// Reads an action row from a statement whose first columns are `ROW_COLUMNS`, by
/// position: a lookup by name compares every column's name, and a claim reads a
/// thousand rows.
pub(crate) fn read_row(r: &Row<'_>) -> rusqlite::Result<ActionRow> {
    let batch: String = r.get(1)?;
    let key: String = r.get(2)?;
    let state: String = r.get(3)?;
    let compensating: Option<String> = r.get(12)?;
    Ok(ActionRow {
        identity: Identity::new(batch, key),
        state: StateWord::parse(&state).unwrap_or(StateWord::Pending),
        attempt: r.get(4)?,
        retry_count: r.get(5)?,
        series: r.get(6)?,
        action_id: r.get(7)?,
        poll_id: r.get(8)?,
        until_ms: r.get(9)?,
        first_submit_ms: r.get(10)?,
        latency_ms: r.get(11)?,
        compensating: compensating.and_then(|c| serde_json::from_str(&c).ok()),
        restarts: r.get(13)?,
        updated_ms: r.get(14)?,
    })
}

/// The position of the first column after `ROW_COLUMNS`.
pub(crate) const AFTER_ROW: usize = 15;

/// Applies pending `dlq replay` requests: marks each letter replayed and makes its action
/// due again as a new series (fresh Idempotency-Keys). The fencing token moves on, so a
/// poller still holding the old claim can write nothing more.
pub(super) fn apply_replays(tx: &Transaction<'_>, instance: &str, tally: &mut Tally) -> rusqlite::Result<Vec<Replay>> {
    let requests: Vec<(i64, String)> = tx
        .prepare_cached("SELECT id, error_id FROM replay_requests ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut replays = Vec::new();
    for (request, error_id) in requests {
        tx.prepare_cached("DELETE FROM replay_requests WHERE id = ?1")?
            .execute(params![request])?;
        let found: Option<(i64, String, String, u32, Counted)> = tx
            .prepare_cached(
                "SELECT a.id, a.batch, a.key, a.series, a.state, a.retry_count, a.open, a.latency_ms
                 FROM dead_letters d JOIN actions a ON a.batch = d.batch AND a.key = d.key
                 WHERE d.error_id = ?1 AND d.replayed = 0 AND a.body IS NOT NULL AND a.open = 0",
            )?
            .query_row(params![error_id], |r| {
                let before = Counted::stored(r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?);
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, before))
            })
            .optional()?;
        let Some((id, batch, key, series, before)) = found else {
            continue;
        };
        tx.prepare_cached("UPDATE dead_letters SET replayed = 1 WHERE error_id = ?1")?
            .execute(params![error_id])?;
        let identity = Identity::new(batch, key);
        let mut row = ActionRow::pending(&identity, series + 1);
        row.updated_ms = now_ms();
        tx.prepare_cached(
            "UPDATE actions SET state = 'pending', open = 1, attempt = 1, retry_count = 0, series = ?2, action_id = NULL,
                    poll_id = NULL, until_ms = NULL, first_submit_ms = NULL, latency_ms = NULL, compensating = NULL,
                    owner = NULL, fence = fence + 1, updated_ms = ?3, resolved_ms = NULL
             WHERE id = ?1",
        )?
        .execute(params![id, row.series, row.updated_ms])?;
        let pending = Counted::stored("pending".into(), 0, 1, None);
        tally.change(&identity.batch, &before, &pending);
        let note = Note {
            detail: Some(format!("dead letter {error_id} replayed")),
            ..Note::default()
        };
        event(tx, id, &row, &note, instance)?;
        replays.push(Replay {
            identity,
            series: row.series,
            error_id,
        });
    }
    Ok(replays)
}

/// Claims up to `limit` letters due now, leased to `instance` for `lease_ms`.
fn claim_letters(
    tx: &Transaction<'_>,
    instance: &str,
    limit: usize,
    lease_ms: i64,
) -> rusqlite::Result<Vec<(DeadLetter, u32)>> {
    let now = now_ms();
    let mut stmt = tx.prepare_cached(
        "UPDATE dead_letters SET lease_owner = ?3, lease_until_ms = ?4
         WHERE error_id IN (SELECT error_id FROM dead_letters
                            WHERE delivered = 0 AND discarded = 0 AND next_attempt_ms <= ?1
                              AND (lease_until_ms IS NULL OR lease_until_ms < ?1)
                            ORDER BY next_attempt_ms, created_ms LIMIT ?2)
         RETURNING body, attempts",
    )?;
    let rows = stmt.query_map(params![now, limit as i64, instance, now + lease_ms], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
    })?;
    let mut letters = Vec::new();
    for row in rows {
        let (body, attempts) = row?;
        match serde_json::from_str::<DeadLetter>(&body) {
            Ok(letter) => letters.push((letter, attempts)),
            Err(e) => tracing::error!(error = %e, "A journaled dead letter does not parse; it stays stored."),
        }
    }
    Ok(letters)
}

fn unresolved(tx: &Transaction<'_>, batches: &[Arc<str>]) -> rusqlite::Result<u64> {
    let mut stmt =
        tx.prepare_cached("SELECT COUNT(*) FROM actions WHERE batch = ?1 AND open = 1 AND body IS NOT NULL")?;
    let mut total = 0u64;
    for batch in batches {
        total += stmt.query_row(params![batch.as_ref()], |r| r.get::<_, i64>(0))? as u64;
    }
    Ok(total)
}

/// One round of pruning over the row ids `[from, from + PRUNE_ROUND)`.
pub(crate) fn prune(tx: &Connection, before_ms: i64, from: i64) -> rusqlite::Result<Pruned> {
    let to = from + PRUNE_ROUND;
    let old = "id >= ?1 AND id < ?2 AND open = 0 AND resolved_ms < ?3";
    let events = tx.execute(
        &format!("DELETE FROM history WHERE action IN (SELECT id FROM actions WHERE {old})"),
        params![from, to, before_ms],
    )? as u64;
    let mut pruned = Pruned {
        events,
        ..Pruned::default()
    };
    pruned.outcome_lines = tx.execute(
        &format!(
            "DELETE FROM outcomes WHERE audited = 1 AND (batch, key) IN (SELECT batch, key FROM actions WHERE {old} AND body IS NOT NULL)"
        ),
        params![from, to, before_ms],
    )? as u64;
    pruned.actions = tx.execute(
        &format!("UPDATE actions SET body = NULL, compensating = NULL WHERE {old} AND body IS NOT NULL"),
        params![from, to, before_ms],
    )? as u64;
    let max: i64 = tx.query_row("SELECT IFNULL(MAX(id), 0) FROM actions", [], |r| r.get(0))?;
    if to <= max {
        pruned.next = Some(to);
    } else {
        pruned.dead_letters = tx.execute(
            "DELETE FROM dead_letters WHERE created_ms < ?1 AND (delivered = 1 OR replayed = 1 OR discarded = 1)",
            params![before_ms],
        )? as u64;
    }
    Ok(pruned)
}

/// Returns the free pages to the file system. The pragma frees one page per step, so it
/// is stepped to its end (`execute_batch` would step it once: one page).
pub(crate) fn incremental_vacuum(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
    let mut freed = stmt.query([])?;
    while freed.next()?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::StateWord;

    /// The aggregates as kept and as a scan of the actions gives them.
    fn kept_and_scanned(conn: &Connection) -> (Vec<String>, Vec<String>) {
        let rows = |sql: &str| -> Vec<String> {
            conn.prepare(sql)
                .unwrap()
                .query_map([], |r| {
                    Ok(format!(
                        "{} {} {}",
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?
                    ))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let mut kept =
            rows("SELECT batch, state || ' ' || retries, actions FROM batch_states WHERE actions != 0 ORDER BY 1, 2");
        kept.extend(rows(
            "SELECT batch, CAST(latency_ms AS TEXT), actions FROM batch_latencies WHERE actions != 0 ORDER BY 1, latency_ms",
        ));
        let mut scanned = rows(
            "SELECT batch, state || ' ' || SUM(retry_count), COUNT(*) FROM actions GROUP BY batch, state ORDER BY 1, 2",
        );
        scanned.extend(rows(
            "SELECT batch, CAST(latency_ms AS TEXT), COUNT(*) FROM actions WHERE open = 0 AND latency_ms IS NOT NULL
             GROUP BY batch, latency_ms ORDER BY 1, latency_ms",
        ));
        (kept, scanned)
    }

    /// Applies `change` to `claimed`'s row and saves it in a group of its own.
    fn step(
        conn: &mut Connection,
        tally: &mut Tally,
        claimed: &mut Claimed,
        change: impl FnOnce(&mut ActionRow),
    ) -> Written {
        change(&mut claimed.row);
        let tx = conn.transaction().unwrap();
        let write = Write {
            instance: "me",
            claim: claimed.claim,
            row: &claimed.row,
            note: &Note::default(),
        };
        let written = save(&tx, write, tally).unwrap();
        tally.write(&tx).unwrap();
        tx.commit().unwrap();
        written
    }

    #[test]
    fn changes_under_a_claim_are_counted_from_what_the_writer_knows() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn, std::path::Path::new(":memory:")).unwrap();
        super::super::load_for_test(&conn, "a", &["k1", "k2", "k3"]);
        let mut tally = Tally::default();
        let tx = conn.transaction().unwrap();
        let mut claimed = claim(&tx, "me", "a", 3, &mut tally).unwrap();
        tx.commit().unwrap();
        assert!(tally.known(claimed[0].claim).is_some(), "claimed rows are known");
        for c in &mut claimed {
            let written = step(&mut conn, &mut tally, c, |row| row.state = StateWord::Submitting);
            assert_eq!(written, Written::Done);
        }
        step(&mut conn, &mut tally, &mut claimed[0], |row| {
            row.state = StateWord::Backoff;
            row.retry_count = 1;
        });
        step(&mut conn, &mut tally, &mut claimed[0], |row| {
            row.state = StateWord::Completed;
            row.latency_ms = Some(120);
        });
        assert!(tally.known(claimed[0].claim).is_none(), "a resolved row is forgotten");
        // A row that another claim took over: nothing written, nothing counted.
        conn.execute("UPDATE actions SET fence = fence + 1 WHERE key = 'k2'", [])
            .unwrap();
        let lost = step(&mut conn, &mut tally, &mut claimed[1], |row| {
            row.state = StateWord::Completed
        });
        assert_eq!(lost, Written::Lost);
        assert!(tally.known(claimed[1].claim).is_none());
        // A writer that knows nothing (restarted) reads the row first.
        let mut fresh = Tally::default();
        step(&mut conn, &mut fresh, &mut claimed[2], |row| {
            row.state = StateWord::DeadLettered;
            row.retry_count = 2;
            row.latency_ms = Some(300);
        });
        let (kept, scanned) = kept_and_scanned(&conn);
        assert_eq!(kept, scanned);
        assert_eq!(
            kept,
            [
                "a completed 1 1",
                "a dead_lettered 2 1",
                "a submitting 0 1",
                "a 120 1",
                "a 300 1"
            ]
        );
    }

    #[test]
    fn read_row_positions_match_row_columns() {
        let names: Vec<&str> = ROW_COLUMNS.split(',').map(str::trim).collect();
        assert_eq!(names.len(), AFTER_ROW);
        for (position, name) in [(1, "batch"), (3, "state"), (12, "compensating"), (14, "updated_ms")] {
            assert_eq!(names[position], name);
        }
    }
}
