//! The closing summary's numbers of one batch, read from aggregates the journal keeps
//! (`batch_states`, `batch_latencies`, the index of restarted actions): the cost depends on
//! the number of states and of distinct durations, not on the number of actions.

use rusqlite::{params, Connection};

use crate::journal::record::StateWord;
use crate::journal::view::{percentile, BatchCounts};

/// One batch's numbers: actions per state, retries spent by resolved actions, restarts,
/// and the duration percentiles of resolved actions.
pub(crate) fn counts(conn: &Connection, batch: &str) -> rusqlite::Result<BatchCounts> {
    let mut counts = BatchCounts {
        batch: batch.to_owned(),
        ..BatchCounts::default()
    };
    let mut stmt =
        conn.prepare_cached("SELECT state, actions, retries FROM batch_states WHERE batch = ?1 AND actions != 0")?;
    let rows = stmt.query_map(params![batch], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    })?;
    for row in rows {
        let (state, n, retries) = row?;
        let word = StateWord::parse(&state);
        if let Some(i) = word.and_then(|w| StateWord::ALL.iter().position(|s| *s == w)) {
            counts.states[i] += n as u64;
        }
        counts.total += n as u64;
        // Resolved actions are those in an outcome state (`open = 0`).
        if word.is_some_and(StateWord::is_outcome) {
            counts.retries += retries as u64;
        }
    }
    counts.restarts = conn
        .prepare_cached("SELECT IFNULL(SUM(restarts), 0) FROM actions WHERE batch = ?1 AND restarts > 0")?
        .query_row(params![batch], |r| r.get::<_, i64>(0))? as u64;
    let latencies: Vec<(i64, u64)> = conn
        .prepare_cached(
            "SELECT latency_ms, actions FROM batch_latencies WHERE batch = ?1 AND actions > 0 ORDER BY latency_ms",
        )?
        .query_map(params![batch], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
        .collect::<Result<_, _>>()?;
    counts.p50 = percentile(&latencies, 0.50);
    counts.p95 = percentile(&latencies, 0.95);
    counts.p99 = percentile(&latencies, 0.99);
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::StateWord;
    use crate::journal::sqlite::change_for_test;

    /// The numbers as a scan of every action gives them (what version 3 computed).
    fn scanned(conn: &Connection, batch: &str) -> BatchCounts {
        let mut counts = BatchCounts {
            batch: batch.to_owned(),
            ..BatchCounts::default()
        };
        let mut stmt = conn
            .prepare(
                "SELECT state, COUNT(*), SUM(CASE WHEN open = 0 THEN retry_count ELSE 0 END), SUM(restarts)
                 FROM actions WHERE batch = ?1 GROUP BY state",
            )
            .unwrap();
        let rows = stmt
            .query_map(params![batch], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .unwrap();
        for row in rows {
            let (state, n, retries, restarts) = row.unwrap();
            let word = StateWord::parse(&state).unwrap();
            counts.states[StateWord::ALL.iter().position(|s| *s == word).unwrap()] += n as u64;
            counts.total += n as u64;
            counts.retries += retries as u64;
            counts.restarts += restarts as u64;
        }
        let latencies: Vec<(i64, u64)> = conn
            .prepare(
                "SELECT latency_ms, 1 FROM actions WHERE batch = ?1 AND open = 0 AND latency_ms IS NOT NULL
                 ORDER BY latency_ms",
            )
            .unwrap()
            .query_map(params![batch], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        counts.p50 = percentile(&latencies, 0.50);
        counts.p95 = percentile(&latencies, 0.95);
        counts.p99 = percentile(&latencies, 0.99);
        counts
    }

    fn journal() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn, std::path::Path::new(":memory:")).unwrap();
        conn
    }

    /// Resolves `key` of `batch` after `latency_ms` with `retries` retries.
    fn resolve(conn: &Connection, batch: &str, key: &str, latency_ms: i64, retries: u32) {
        change_for_test(conn, batch, key, |row| {
            row.state = StateWord::Completed;
            row.latency_ms = Some(latency_ms);
            row.retry_count = retries;
        });
    }

    #[test]
    fn the_kept_numbers_follow_resolutions_replays_restarts_and_deletes() {
        let conn = journal();
        let keys: Vec<String> = (0..20).map(|key| format!("k{key}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        super::super::load_for_test(&conn, "a", &keys);
        super::super::load_for_test(&conn, "b", &keys);
        for key in 0..15 {
            resolve(&conn, "a", &format!("k{key}"), 100 + key % 4 * 50, (key % 2) as u32);
        }
        resolve(&conn, "b", "k0", 7000, 0);
        for key in ["k1", "k16"] {
            change_for_test(&conn, "a", key, |row| row.restarts = 2);
        }
        change_for_test(&conn, "a", "k17", |row| {
            row.state = StateWord::Polling;
            row.retry_count = 3;
        });
        // Open again, without a duration (as a replay leaves it).
        change_for_test(&conn, "a", "k2", |row| {
            row.state = StateWord::Pending;
            row.latency_ms = None;
            row.retry_count = 0;
        });
        // A duration rewritten on a resolved action.
        change_for_test(&conn, "a", "k3", |row| row.latency_ms = Some(900));
        conn.execute_batch("DELETE FROM actions WHERE batch = 'a' AND key IN ('k4', 'k19');")
            .unwrap();
        for batch in ["a", "b", "none"] {
            let (kept, scan) = (counts(&conn, batch).unwrap(), scanned(&conn, batch));
            assert_eq!(format!("{kept:?}"), format!("{scan:?}"), "batch {batch}");
        }
        let a = counts(&conn, "a").unwrap();
        assert_eq!((a.total, a.finished(), a.restarts), (18, 13, 4));
        assert!(a.p50.is_some() && a.p99 == Some(0.9));
    }

    #[test]
    fn a_replay_takes_its_action_out_of_the_resolved_numbers() {
        let mut conn = journal();
        super::super::load_for_test(&conn, "a", &["k1", "k2"]);
        for (key, ms) in [("k1", 300), ("k2", 500)] {
            change_for_test(&conn, "a", key, |row| {
                row.state = StateWord::DeadLettered;
                row.latency_ms = Some(ms);
                row.retry_count = 2;
            });
        }
        conn.execute_batch(
            "INSERT INTO dead_letters (error_id, batch, key, body, created_ms) VALUES ('e1', 'a', 'k1', '{}', 0);
             INSERT INTO replay_requests (error_id, requested_ms) VALUES ('e1', 0), ('unknown', 0);",
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        let mut tally = super::super::tally::Tally::default();
        let replays = super::super::apply::apply_replays(&tx, "test", &mut tally).unwrap();
        tally.write(&tx).unwrap();
        tx.commit().unwrap();
        assert_eq!(replays.len(), 1);
        let a = counts(&conn, "a").unwrap();
        assert_eq!(format!("{a:?}"), format!("{:?}", scanned(&conn, "a")));
        assert_eq!((a.finished(), a.retries, a.p50), (1, 2, Some(0.5)));
    }

    #[test]
    fn a_version_3_journal_migrates_with_the_numbers_of_its_actions() {
        let mut conn = journal();
        conn.execute_batch(
            "DROP TRIGGER IF EXISTS batch_latencies_update; DROP TRIGGER batch_latencies_delete; DROP TABLE batch_latencies;
             DROP INDEX actions_restarted; PRAGMA user_version = 3;
             CREATE TRIGGER batch_states_insert AFTER INSERT ON actions BEGIN
                 INSERT INTO batch_states (batch, state, actions, retries) VALUES (NEW.batch, NEW.state, 1, NEW.retry_count)
                 ON CONFLICT (batch, state) DO UPDATE SET actions = actions + 1, retries = retries + excluded.retries;
             END;
             INSERT INTO actions (batch, key, state, open, retry_count, restarts, latency_ms, created_ms, updated_ms)
                 VALUES ('a', 'k1', 'completed', 0, 3, 1, 250, 0, 0), ('a', 'k2', 'dead_lettered', 0, 1, 0, 900, 0, 0),
                        ('a', 'k3', 'completed', 0, 0, 0, 250, 0, 0), ('a', 'k4', 'polling', 1, 2, 0, NULL, 0, 0);",
        )
        .unwrap();
        super::super::schema::migrate(&mut conn, std::path::Path::new(":memory:")).unwrap();
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, super::super::schema::VERSION);
        let a = counts(&conn, "a").unwrap();
        assert_eq!(format!("{a:?}"), format!("{:?}", scanned(&conn, "a")));
        assert_eq!(
            (a.total, a.retries, a.restarts, a.p50, a.p99),
            (4, 4, 1, Some(0.25), Some(0.9))
        );
        // The writer counts from now on; loading counts its rows without the old trigger.
        resolve(&conn, "a", "k4", 100, 2);
        super::super::load_for_test(&conn, "a", &["k4", "k5"]);
        let trigger: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'batch_states_insert'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(trigger, 0);
        assert_eq!(counts(&conn, "a").unwrap().p50, Some(0.25));
        assert_eq!(
            format!("{:?}", counts(&conn, "a").unwrap()),
            format!("{:?}", scanned(&conn, "a"))
        );
    }
}
