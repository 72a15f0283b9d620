//! The SQLite schema and its migrations, versioned with `PRAGMA user_version`.
//!
//! Version 1 (the first releases) kept one row per action keyed by identity and held
//! the configured actions in memory; version 2 makes the journal the work queue: rows
//! carry their body, an owner and a fencing token, every transition is kept in
//! `history`, and `sources` remembers which action files were loaded. Version 3 adds
//! what the console needs: `discard_requests` (dead letters an operator gave up, carried
//! out by the daemon like replay requests), the request tables indexed by letter, and
//! aggregates that cost the same on a journal of any size: `batch_states` (actions and
//! retries per batch and state, kept by triggers) and an index of outcomes by time.
//! Version 4 makes the closing summary an aggregate as well: `batch_latencies` (resolved
//! actions per batch and duration in milliseconds, kept by triggers, so the percentiles
//! are a walk over distinct durations) and an index of the actions that restarted.
//! Version 5 keeps both aggregates from the writer instead of an update trigger per
//! state change (`tally.rs`).

use std::path::Path;

use rusqlite::Connection;

use crate::journal::JournalError;

/// The version this binary writes.
pub const VERSION: i64 = 5;

const TABLES: &str = "
CREATE TABLE actions (
    id INTEGER PRIMARY KEY,
    batch TEXT NOT NULL,
    key TEXT NOT NULL,
    body BLOB,
    state TEXT NOT NULL DEFAULT 'pending',
    open INTEGER NOT NULL DEFAULT 1,
    attempt INTEGER NOT NULL DEFAULT 1,
    retry_count INTEGER NOT NULL DEFAULT 0,
    series INTEGER NOT NULL DEFAULT 0,
    restarts INTEGER NOT NULL DEFAULT 0,
    action_id TEXT,
    poll_id TEXT,
    until_ms INTEGER,
    first_submit_ms INTEGER,
    latency_ms INTEGER,
    compensating TEXT,
    owner TEXT,
    fence INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    resolved_ms INTEGER
);
CREATE UNIQUE INDEX actions_identity ON actions (batch, key);
CREATE INDEX actions_open ON actions (batch, id) WHERE open = 1;
CREATE TABLE history (
    action INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    action_id TEXT,
    http_status INTEGER,
    error_code TEXT,
    detail TEXT,
    instance TEXT NOT NULL,
    PRIMARY KEY (action, seq)
) WITHOUT ROWID;
CREATE TABLE outcomes (
    event_id TEXT PRIMARY KEY,
    batch TEXT NOT NULL,
    key TEXT NOT NULL,
    line BLOB NOT NULL,
    audited INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outcomes_unaudited ON outcomes (audited) WHERE audited = 0;
CREATE INDEX outcomes_identity ON outcomes (batch, key);
CREATE TABLE dead_letters (
    error_id TEXT PRIMARY KEY,
    batch TEXT NOT NULL,
    key TEXT NOT NULL,
    error_code TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    replayed INTEGER NOT NULL DEFAULT 0,
    discarded INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    delivered_ms INTEGER,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until_ms INTEGER
);
CREATE INDEX dead_letters_created ON dead_letters (created_ms, error_id);
CREATE INDEX dead_letters_due ON dead_letters (next_attempt_ms) WHERE delivered = 0 AND discarded = 0;
CREATE INDEX dead_letters_identity ON dead_letters (batch, key);
CREATE TABLE IF NOT EXISTS replay_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    error_id TEXT NOT NULL,
    requested_ms INTEGER NOT NULL
);
CREATE TABLE sources (
    batch TEXT NOT NULL,
    path TEXT NOT NULL,
    hash TEXT NOT NULL,
    actions INTEGER NOT NULL,
    loaded_ms INTEGER NOT NULL,
    PRIMARY KEY (batch, path)
);
";

/// Brings the database to `VERSION`; refuses a newer one.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), JournalError> {
    let sql = JournalError::sqlite(path);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(&sql)?;
    if version > VERSION {
        return Err(JournalError::TooNew {
            path: path.to_owned(),
            found: version,
            known: VERSION,
        });
    }
    if version == VERSION {
        return Ok(());
    }
    if (2..VERSION).contains(&version) {
        let tx = conn.transaction().map_err(&sql)?;
        for (from, step) in [(2, FROM_V2), (3, FROM_V3), (4, FROM_V4)] {
            if version <= from {
                tx.execute_batch(step).map_err(&sql)?;
            }
        }
        tx.pragma_update(None, "user_version", VERSION).map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        tracing::info!(journal = %path.display(), from = version, "Journal migrated to version 5 (aggregates kept by the writer).");
        return Ok(());
    }
    let has_v1: bool = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'actions'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(&sql)?
        > 0;
    // A new database is already in incremental auto-vacuum mode (`connect` chose it
    // before the first page was written); a version 1 one is switched below.
    let tx = conn.transaction().map_err(&sql)?;
    if has_v1 {
        tx.execute_batch(
            "ALTER TABLE actions RENAME TO actions_v1;
             ALTER TABLE outcomes RENAME TO outcomes_v1;
             ALTER TABLE dead_letters RENAME TO dead_letters_v1;
             DROP INDEX IF EXISTS outcomes_unaudited;",
        )
        .map_err(&sql)?;
    }
    tx.execute_batch(TABLES).map_err(&sql)?;
    if has_v1 {
        tx.execute_batch(FROM_V1).map_err(&sql)?;
    }
    tx.execute_batch(FROM_V2).map_err(&sql)?;
    tx.execute_batch(FROM_V3).map_err(&sql)?;
    tx.execute_batch(FROM_V4).map_err(&sql)?;
    if has_v1 {
        tracing::info!(journal = %path.display(), "Journal migrated to version 5 (the journal is now the work queue).");
    }
    tx.pragma_update(None, "user_version", VERSION).map_err(&sql)?;
    tx.commit().map_err(&sql)?;
    if has_v1 {
        // Once, so that pruning can return space from now on.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(&sql)?;
        conn.execute_batch("VACUUM").map_err(&sql)?;
    }
    Ok(())
}

/// Version 1 rows into version 2: states, counters and ids are kept; bodies come from
/// the configuration at the next load (a version 1 journal did not keep them).
const FROM_V1: &str = "
INSERT INTO actions (batch, key, body, state, open, attempt, retry_count, series, action_id, poll_id,
                     until_ms, first_submit_ms, latency_ms, compensating, created_ms, updated_ms, resolved_ms)
SELECT batch, key, NULL, state,
       CASE WHEN state IN ('completed', 'cancelled', 'dead_lettered', 'rolled_back') THEN 0 ELSE 1 END,
       attempt, retry_count, series, action_id, poll_id, until_ms, first_submit_ms, latency_ms, compensating,
       updated_ms, updated_ms,
       CASE WHEN state IN ('completed', 'cancelled', 'dead_lettered', 'rolled_back') THEN updated_ms END
FROM actions_v1 ORDER BY batch, key;
INSERT INTO outcomes (event_id, batch, key, line, audited, created_ms)
SELECT event_id, batch, key, line, audited, 0 FROM outcomes_v1;
INSERT INTO dead_letters (error_id, batch, key, error_code, body, delivered, attempts, last_error, replayed,
                          created_ms, delivered_ms)
SELECT error_id, batch, key, COALESCE(json_extract(body, '$.error_code'), ''), body, delivered, attempts,
       last_error, replayed, created_ms, delivered_ms
FROM dead_letters_v1;
DROP TABLE actions_v1;
DROP TABLE outcomes_v1;
DROP TABLE dead_letters_v1;
";

/// Version 2 into version 3 (also the last step of a new journal): discard requests,
/// request tables indexed by letter, the per-batch, per-state counts and the triggers
/// that keep them (filled once from the actions already journaled), outcomes indexed by
/// batch and time for the rate of the last minute, and the unsent dead letters by batch.
const FROM_V2: &str = "
CREATE TABLE discard_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    error_id TEXT NOT NULL,
    requested_ms INTEGER NOT NULL
);
CREATE INDEX discard_requests_letter ON discard_requests (error_id);
CREATE INDEX replay_requests_letter ON replay_requests (error_id);
CREATE TABLE batch_states (
    batch TEXT NOT NULL,
    state TEXT NOT NULL,
    actions INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    PRIMARY KEY (batch, state)
) WITHOUT ROWID;
INSERT INTO batch_states (batch, state, actions, retries)
SELECT batch, state, COUNT(*), SUM(retry_count) FROM actions GROUP BY batch, state;
CREATE TRIGGER batch_states_insert AFTER INSERT ON actions BEGIN
    INSERT INTO batch_states (batch, state, actions, retries) VALUES (NEW.batch, NEW.state, 1, NEW.retry_count)
    ON CONFLICT (batch, state) DO UPDATE SET actions = actions + 1, retries = retries + excluded.retries;
END;
CREATE TRIGGER batch_states_update AFTER UPDATE OF state, retry_count ON actions
WHEN OLD.state IS NOT NEW.state OR OLD.retry_count IS NOT NEW.retry_count BEGIN
    UPDATE batch_states SET actions = actions - 1, retries = retries - OLD.retry_count
    WHERE batch = OLD.batch AND state = OLD.state;
    INSERT INTO batch_states (batch, state, actions, retries) VALUES (NEW.batch, NEW.state, 1, NEW.retry_count)
    ON CONFLICT (batch, state) DO UPDATE SET actions = actions + 1, retries = retries + excluded.retries;
END;
CREATE TRIGGER batch_states_delete AFTER DELETE ON actions BEGIN
    UPDATE batch_states SET actions = actions - 1, retries = retries - OLD.retry_count
    WHERE batch = OLD.batch AND state = OLD.state;
END;
CREATE INDEX actions_resolved ON actions (batch, resolved_ms) WHERE resolved_ms IS NOT NULL;
CREATE INDEX dead_letters_unsent ON dead_letters (batch) WHERE delivered = 0 AND discarded = 0;
";

/// Version 3 into version 4 (also the last step of a new journal): resolved actions per
/// batch and duration, kept by triggers (filled once from the actions already resolved),
/// so that the summary's percentiles read one row per distinct duration instead of every
/// action; and the actions that restarted, indexed, so their sum reads only those. An
/// action counts in `batch_latencies` while it is resolved (`open = 0`) with a duration;
/// a replay reopens it and takes it out again.
///
/// New rows are no longer counted by a trigger: the only statement that inserts actions
/// (`insert::insert`, loading) adds its chunk's count to `batch_states` once. A trigger per
/// row made every insert a statement that can fail halfway, with a statement journal, and
/// cost about half of the loading rate. Rows are inserted pending and open, so
/// `batch_latencies` has nothing to count for them.
const FROM_V3: &str = "
DROP TRIGGER batch_states_insert;
CREATE TABLE batch_latencies (
    batch TEXT NOT NULL,
    latency_ms INTEGER NOT NULL,
    actions INTEGER NOT NULL,
    PRIMARY KEY (batch, latency_ms)
) WITHOUT ROWID;
INSERT INTO batch_latencies (batch, latency_ms, actions)
SELECT batch, latency_ms, COUNT(*) FROM actions WHERE open = 0 AND latency_ms IS NOT NULL GROUP BY batch, latency_ms;
CREATE TRIGGER batch_latencies_update AFTER UPDATE OF open, latency_ms ON actions
WHEN OLD.open IS NOT NEW.open OR OLD.latency_ms IS NOT NEW.latency_ms BEGIN
    UPDATE batch_latencies SET actions = actions - 1
    WHERE OLD.open = 0 AND batch = OLD.batch AND latency_ms = OLD.latency_ms;
    INSERT INTO batch_latencies (batch, latency_ms, actions)
    SELECT NEW.batch, NEW.latency_ms, 1 WHERE NEW.open = 0 AND NEW.latency_ms IS NOT NULL
    ON CONFLICT (batch, latency_ms) DO UPDATE SET actions = actions + 1;
END;
CREATE TRIGGER batch_latencies_delete AFTER DELETE ON actions
WHEN OLD.open = 0 AND OLD.latency_ms IS NOT NULL BEGIN
    UPDATE batch_latencies SET actions = actions - 1 WHERE batch = OLD.batch AND latency_ms = OLD.latency_ms;
END;
CREATE INDEX actions_restarted ON actions (batch) WHERE restarts > 0;
";

/// Version 4 into version 5 (also the last step of a new journal): the update triggers
/// of the aggregates go; the writer counts each state change itself and writes the sums
/// once per group commit (`tally.rs`). The counts already kept stay as they are. Deletes
/// are still counted by their triggers.
const FROM_V4: &str = "
DROP TRIGGER IF EXISTS batch_states_update;
DROP TRIGGER IF EXISTS batch_latencies_update;
";
