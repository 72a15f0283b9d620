//! The PostgreSQL schema and its migrations. Instances starting together never race:
//! the schema is created and migrated under a session advisory lock, and a schema
//! written by a newer actionwarden is refused.

use postgres::Client;

use super::Target;
use crate::journal::JournalError;

/// The version this binary writes.
pub const VERSION: i64 = 3;

/// The advisory lock key of migrations ("actionwarden" in ASCII, truncated to 8 bytes).
const MIGRATION_LOCK: i64 = 0x6163_7469_6f6e_7761;

const TABLES: &str = "
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL,
    stopped_at TIMESTAMPTZ,
    audit_path TEXT NOT NULL DEFAULT ''
);
CREATE TABLE actions (
    id BIGSERIAL PRIMARY KEY,
    batch TEXT NOT NULL,
    key TEXT NOT NULL,
    body BYTEA,
    state TEXT NOT NULL DEFAULT 'pending',
    open BOOLEAN NOT NULL DEFAULT TRUE,
    attempt INTEGER NOT NULL DEFAULT 1,
    retry_count INTEGER NOT NULL DEFAULT 0,
    series INTEGER NOT NULL DEFAULT 0,
    restarts INTEGER NOT NULL DEFAULT 0,
    action_id TEXT,
    poll_id TEXT,
    until_ms BIGINT,
    first_submit_ms BIGINT,
    latency_ms BIGINT,
    compensating TEXT,
    owner TEXT,
    fence BIGINT NOT NULL DEFAULT 0,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    resolved_ms BIGINT,
    UNIQUE (batch, key)
);
CREATE INDEX actions_open ON actions (batch, id) WHERE open;
CREATE INDEX actions_owner ON actions (owner) WHERE open AND owner IS NOT NULL;
CREATE TABLE history (
    id BIGSERIAL PRIMARY KEY,
    action BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    action_id TEXT,
    http_status INTEGER,
    error_code TEXT,
    detail TEXT,
    instance TEXT NOT NULL
);
CREATE INDEX history_action ON history (action, id);
CREATE TABLE outcomes (
    event_id TEXT PRIMARY KEY,
    batch TEXT NOT NULL,
    key TEXT NOT NULL,
    line BYTEA NOT NULL,
    audited BOOLEAN NOT NULL DEFAULT FALSE,
    writing BOOLEAN NOT NULL DEFAULT FALSE,
    auditor TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX outcomes_unaudited ON outcomes (auditor) WHERE NOT audited;
CREATE INDEX outcomes_identity ON outcomes (batch, key);
CREATE TABLE dead_letters (
    error_id TEXT PRIMARY KEY,
    batch TEXT NOT NULL,
    key TEXT NOT NULL,
    error_code TEXT NOT NULL,
    body TEXT NOT NULL,
    delivered BOOLEAN NOT NULL DEFAULT FALSE,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    replayed BOOLEAN NOT NULL DEFAULT FALSE,
    discarded BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms BIGINT NOT NULL,
    delivered_ms BIGINT,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until_ms BIGINT
);
CREATE INDEX dead_letters_created ON dead_letters (created_ms, error_id);
CREATE INDEX dead_letters_identity ON dead_letters (batch, key);
CREATE INDEX dead_letters_due ON dead_letters (next_attempt_ms) WHERE NOT delivered AND NOT discarded;
CREATE TABLE replay_requests (
    id BIGSERIAL PRIMARY KEY,
    error_id TEXT NOT NULL,
    requested_ms BIGINT NOT NULL
);
CREATE TABLE sources (
    batch TEXT NOT NULL,
    path TEXT NOT NULL,
    hash TEXT NOT NULL,
    actions BIGINT NOT NULL,
    loaded_ms BIGINT NOT NULL,
    PRIMARY KEY (batch, path)
);
CREATE TABLE pauses (
    endpoint TEXT PRIMARY KEY,
    until_ms BIGINT NOT NULL
);
";

/// Version 1 to 2: discard requests (the console and `dlq discard`), and the request
/// tables looked up by letter.
const FROM_V1: &str = "
CREATE TABLE discard_requests (
    id BIGSERIAL PRIMARY KEY,
    error_id TEXT NOT NULL,
    requested_ms BIGINT NOT NULL
);
CREATE INDEX discard_requests_letter ON discard_requests (error_id);
CREATE INDEX replay_requests_letter ON replay_requests (error_id);
";

/// Version 2 to 3: the unclaimed actions of a batch in file order, so that a claim reads
/// only the rows it takes (not every open row of the batch, the in-flight ones included);
/// free room in the pages of the rows updated in place (an action's states, an outcome
/// line's `writing`), so that those updates stay on their page and add no index entries
/// (HOT updates). Pages written before the change fill up as they were.
const FROM_V2: &str = "
CREATE INDEX IF NOT EXISTS actions_unowned ON actions (batch, id) WHERE open AND owner IS NULL;
ALTER TABLE actions SET (fillfactor = 50);
ALTER TABLE outcomes SET (fillfactor = 70);
";

/// The steps from each version to the next, in order: step `i` leads from version
/// `i + 1` to `i + 2`.
const STEPS: [&str; 2] = [FROM_V1, FROM_V2];

/// Connects and brings the schema to `VERSION`; refuses a newer one.
pub fn connect_and_migrate(target: &Target) -> Result<Client, JournalError> {
    let mut client = target.connect()?;
    let pg = target.error();
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .map_err(&pg)?;
    let migrated = migrate(&mut client, target);
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .map_err(&pg);
    migrated?;
    unlocked?;
    Ok(client)
}

fn migrate(client: &mut Client, target: &Target) -> Result<(), JournalError> {
    let pg = target.error();
    let schema = &target.schema;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);"
        ))
        .map_err(&pg)?;
    let found: Option<i64> = client
        .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .map_err(&pg)?
        .map(|row| row.get(0));
    match found {
        Some(version) if version > VERSION => Err(JournalError::TooNewSchema {
            target: target.shown.clone(),
            found: version,
            known: VERSION,
        }),
        Some(version) if version == VERSION => Ok(()),
        found => {
            let mut tx = client.transaction().map_err(&pg)?;
            let from = match found {
                Some(version) => version,
                None => {
                    tx.batch_execute(TABLES).map_err(&pg)?;
                    tx.execute("INSERT INTO meta (key, value) VALUES ('schema_version', 1)", &[])
                        .map_err(&pg)?;
                    1
                }
            };
            for step in STEPS.iter().skip(usize::try_from(from - 1).unwrap_or(0)) {
                tx.batch_execute(step).map_err(&pg)?;
            }
            tx.execute("UPDATE meta SET value = $1 WHERE key = 'schema_version'", &[&VERSION])
                .map_err(&pg)?;
            tx.commit().map_err(&pg)?;
            match found {
                None => tracing::info!(database = %target.shown, schema = %schema, "Journal schema created."),
                Some(from) => {
                    tracing::info!(database = %target.shown, schema = %schema, from, to = VERSION, "Journal schema migrated.")
                }
            }
            Ok(())
        }
    }
}
