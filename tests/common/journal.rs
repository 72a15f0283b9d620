//! Helpers for tests of the journal as the work queue: actions files, the journal read
//! straight from SQLite, and the read-only commands (`status`, `show`) as JSON.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{batch, daemon_cmd, run_to_end, show, Harness};

/// Deadline of a run that works through tens of thousands of actions (debug build).
pub const LONG_RUN: Duration = Duration::from_secs(600);
/// Deadline of the waits and commands of these tests.
pub const WAIT: Duration = Duration::from_secs(60);
/// Fast polling for runs of many actions.
pub const FAST_POLL: &str = "initial_delay = \"5ms\"\ninterval = \"20ms\"\ntimeout = \"120s\"";

/// Writes an actions file of `keys`, one JSON line each.
pub fn write_actions(path: &Path, keys: impl IntoIterator<Item = String>) {
    let file = std::fs::File::create(path).expect("creating the actions file");
    let mut out = std::io::BufWriter::new(file);
    for key in keys {
        writeln!(
            out,
            "{{\"key\": \"{key}\", \"actionType\": \"CUSTOM_ACTION\", \"payload\": {{\"contactId\": \"{key}\", \"dataField\": \"priority\", \"value\": \"HIGH\"}}}}"
        )
        .expect("writing the actions file");
    }
    out.flush().expect("writing the actions file");
}

/// Keys `PREFIX00000`... for `n` actions.
pub fn keys(prefix: &str, n: usize) -> impl Iterator<Item = String> + '_ {
    (0..n).map(move |i| format!("{prefix}{i:05}"))
}

/// A batch read from `file` (relative to the config's directory).
pub fn file_batch(name: &str, file: &str, extra: &str) -> String {
    batch(name, &format!("actions_file = \"{file}\"\n{extra}"))
}

/// The journal of a harness's configs.
pub fn journal_path(h: &Harness) -> PathBuf {
    h.dir.path().join("actionwarden.journal")
}

/// `[journal]` of the harness's configs with `extra` lines.
pub fn journal_table(h: &Harness, extra: &str) -> String {
    match &h.pg {
        Some(schema) => format!("{}\n{extra}", schema.journal_table()),
        None => format!("path = \"{}\"\nfsync = false\n{extra}", journal_path(h).display()),
    }
}

/// Actions journaled, read straight from the SQLite file, read-only (0 before it exists).
pub fn journaled_rows(journal: &Path) -> u64 {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let Ok(conn) = rusqlite::Connection::open_with_flags(journal, flags) else {
        return 0;
    };
    let _ = conn.busy_timeout(Duration::from_secs(1));
    conn.query_row("SELECT COUNT(*) FROM actions", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .unwrap_or(0)
}

/// The aggregates the SQLite writer keeps (`batch_states`, `batch_latencies`) and what a
/// scan of the actions says they should be, as (kept, scanned) text, one line per row.
pub fn kept_and_scanned(journal: &Path) -> (String, String) {
    let conn = rusqlite::Connection::open_with_flags(journal, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("opening the journal");
    let rows = |sql: &str| -> String {
        let mut stmt = conn.prepare(sql).expect("a query of the aggregates");
        let lines = stmt
            .query_map([], |r| {
                Ok(format!(
                    "{} {} {} {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?
                ))
            })
            .expect("reading the aggregates");
        lines.map(|l| l.expect("a row") + "\n").collect()
    };
    let kept = rows("SELECT batch, state, actions, retries FROM batch_states WHERE actions != 0 ORDER BY batch, state")
        + &rows(
            "SELECT batch, 'ms' || latency_ms, actions, 0 FROM batch_latencies WHERE actions != 0 ORDER BY batch, latency_ms",
        );
    let scanned = rows(
        "SELECT batch, state, COUNT(*), SUM(retry_count) FROM actions GROUP BY batch, state ORDER BY batch, state",
    ) + &rows(
        "SELECT batch, 'ms' || latency_ms, COUNT(*), 0 FROM actions WHERE open = 0 AND latency_ms IS NOT NULL
             GROUP BY batch, latency_ms ORDER BY batch, latency_ms",
    );
    (kept, scanned)
}

/// Bytes the journal takes on disk: the database and its write-ahead log.
pub fn journal_bytes(journal: &Path) -> u64 {
    let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    size(journal.to_owned()) + size(PathBuf::from(format!("{}-wal", journal.display())))
}

/// Runs `actionwarden ARGS -c CONFIG`; asserts exit 0 and returns stdout.
pub fn cli_ok(args: &[&str], config: &Path) -> String {
    let output = run_to_end(&mut daemon_cmd(args, config), WAIT);
    assert_eq!(output.status.code(), Some(0), "{args:?}: {}", show(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `status --json`.
pub fn status_json(config: &Path) -> Value {
    let text = cli_ok(&["status", "--json"], config);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {text}"))
}

/// `show BATCH/KEY --json`.
pub fn show_json(config: &Path, identity: &str) -> Value {
    let text = cli_ok(&["show", identity, "--json"], config);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("show --json is not JSON ({e}): {text}"))
}

/// A state count of a batch in a `status --json` document.
pub fn state_count(status: &Value, batch: &str, state: &str) -> u64 {
    status["batches"][batch]["states"][state].as_u64().unwrap_or(0)
}

/// Actions of `batch` between admission and outcome, per `status --json`.
pub fn in_flight(status: &Value, batch: &str) -> u64 {
    ["submitting", "polling", "backoff", "rolling_back"]
        .iter()
        .map(|s| state_count(status, batch, s))
        .sum()
}

/// Outcome records of `batch` in the audit file.
pub fn outcomes_of(h: &Harness, batch: &str) -> usize {
    h.outcomes().iter().filter(|r| r["batch"] == batch).count()
}
