//! The live numbers of the console's overview, read from aggregates SQLite keeps current
//! (`batch_states`, kept by the loader and by triggers) and partial indexes (outcomes by batch and time,
//! unsent dead letters by batch): a read costs the same on a journal of a thousand
//! actions as on one of millions, plus what finished in the last minute.

use rusqlite::{params, Connection};

use crate::journal::record::StateWord;
use crate::journal::view::BatchActivity;

/// Counts by batch and state, retries, outcomes at or after `since_ms` and undelivered
/// dead letters of every journaled batch.
pub(crate) fn activity(conn: &Connection, since_ms: i64) -> rusqlite::Result<Vec<BatchActivity>> {
    let mut out: Vec<BatchActivity> = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT batch, state, actions, retries FROM batch_states WHERE actions != 0 ORDER BY batch, state",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    for row in rows {
        let (batch, state, n, retries) = row?;
        if out.last().is_none_or(|b| b.batch != batch) {
            out.push(BatchActivity {
                batch,
                ..BatchActivity::default()
            });
        }
        let entry = out.last_mut().expect("just pushed");
        if let Some(i) = StateWord::parse(&state).and_then(|w| StateWord::ALL.iter().position(|s| *s == w)) {
            entry.states[i] += n as u64;
        }
        entry.total += n as u64;
        entry.retries += retries as u64;
    }
    // Batch by batch over the index of outcomes by (batch, time): a range count, without
    // the sort a GROUP BY over the whole range would need.
    for (batch, n) in per_batch(
        conn,
        "SELECT b.batch, (SELECT COUNT(*) FROM actions a WHERE a.batch = b.batch AND a.resolved_ms >= ?1)
         FROM (SELECT DISTINCT batch FROM batch_states) b",
        params![since_ms],
    )? {
        if let Some(entry) = out.iter_mut().find(|b| b.batch == batch) {
            entry.finished_since = n;
        }
    }
    for (batch, n) in per_batch(
        conn,
        "SELECT batch, COUNT(*) FROM dead_letters WHERE delivered = 0 AND discarded = 0 GROUP BY batch",
        params![],
    )? {
        if let Some(entry) = out.iter_mut().find(|b| b.batch == batch) {
            entry.undelivered = n;
        }
    }
    Ok(out)
}

/// The `(batch, count)` rows of `sql`.
fn per_batch(conn: &Connection, sql: &str, args: &[&dyn rusqlite::ToSql]) -> rusqlite::Result<Vec<(String, u64)>> {
    conn.prepare_cached(sql)?
        .query_map(args, |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::StateWord;
    use crate::journal::sqlite::change_for_test;

    /// What a full scan of the actions says, to hold the kept counts against.
    fn scanned(conn: &Connection) -> Vec<(String, String, i64, i64)> {
        conn.prepare(
            "SELECT batch, state, COUNT(*), SUM(retry_count) FROM actions GROUP BY batch, state ORDER BY batch, state",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    fn kept(conn: &Connection) -> Vec<(String, String, i64, i64)> {
        conn.prepare("SELECT batch, state, actions, retries FROM batch_states WHERE actions != 0 ORDER BY batch, state")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn the_kept_counts_follow_every_load_change_and_delete() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn, std::path::Path::new(":memory:")).unwrap();
        super::super::load_for_test(&conn, "a", &["k1", "k2"]);
        super::super::load_for_test(&conn, "b", &["k1"]);
        // Loaded again: nothing new, nothing counted twice.
        super::super::load_for_test(&conn, "a", &["k1", "k2"]);
        for batch in ["a", "b"] {
            change_for_test(&conn, batch, "k1", |row| row.state = StateWord::Polling);
        }
        change_for_test(&conn, "a", "k1", |row| row.retry_count = 2);
        change_for_test(&conn, "a", "k1", |row| {
            row.state = StateWord::Completed;
            row.updated_ms = 5000;
        });
        conn.execute_batch(
            "UPDATE actions SET body = x'00' WHERE batch = 'a';
             DELETE FROM actions WHERE batch = 'b';",
        )
        .unwrap();
        assert_eq!(kept(&conn), scanned(&conn));
        let a = &activity(&conn, 4000).unwrap()[0];
        assert_eq!((a.batch.as_str(), a.total, a.retries, a.finished_since), ("a", 2, 2, 1));
        assert_eq!(a.states[0], 1, "one pending");
        assert_eq!(activity(&conn, 6000).unwrap()[0].finished_since, 0);
    }

    #[test]
    fn a_migrated_journal_starts_with_the_counts_of_its_actions() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn, std::path::Path::new(":memory:")).unwrap();
        conn.execute_batch(
            "DROP TRIGGER IF EXISTS batch_latencies_update; DROP TRIGGER batch_latencies_delete; DROP TABLE batch_latencies;
             DROP INDEX actions_restarted; DROP TRIGGER IF EXISTS batch_states_update; DROP TRIGGER batch_states_delete;
             DROP TABLE batch_states; DROP TABLE discard_requests; DROP INDEX replay_requests_letter;
             DROP INDEX actions_resolved; DROP INDEX dead_letters_unsent; PRAGMA user_version = 2;
             INSERT INTO actions (batch, key, state, retry_count, created_ms, updated_ms)
                 VALUES ('a', 'k1', 'completed', 3, 0, 0), ('a', 'k2', 'pending', 0, 0, 0);",
        )
        .unwrap();
        super::super::schema::migrate(&mut conn, std::path::Path::new(":memory:")).unwrap();
        assert_eq!(kept(&conn), scanned(&conn));
    }
}
