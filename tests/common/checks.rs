//! Checks on what a run left behind: outcomes exactly once, actions in flight at once,
//! the summary table's numbers; and the seeds chaos tests print so a failure replays.

use serde_json::Value;

use super::{rand_suffix, Harness};

/// Asserts exactly one outcome record per identity of `expected` and no duplicate event_id.
pub fn assert_exactly_once(h: &Harness, expected: usize) {
    assert_exactly_once_or(h, expected, "");
}

/// `assert_exactly_once` whose failure messages end with `context` (e.g. a chaos seed).
pub fn assert_exactly_once_or(h: &Harness, expected: usize, context: &str) {
    let outcomes = h.outcomes();
    let mut by_identity = std::collections::HashMap::new();
    for r in &outcomes {
        *by_identity
            .entry((r["batch"].to_string(), r["key"].to_string()))
            .or_insert(0) += 1;
    }
    let duplicated: Vec<_> = by_identity.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "duplicated outcomes: {duplicated:?} {context}");
    assert_eq!(by_identity.len(), expected, "every action has an outcome {context}");
    let audit = h.audit();
    let ids: std::collections::HashSet<String> = audit.iter().map(|r| r["event_id"].to_string()).collect();
    assert_eq!(ids.len(), audit.len(), "duplicate event_id in the audit file {context}");
}

/// One batch's row of the closing summary table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryRow {
    pub total: u64,
    pub completed: u64,
    pub cancelled: u64,
    pub dead_lettered: u64,
    pub rolled_back: u64,
    pub retries: u64,
    pub restarts: u64,
}

/// The numbers of `batch`'s row in the summary printed on stdout. Cells are split on
/// whitespace, `|` and any box-drawing character (`│`, `┆`, ...), so plain, ASCII and
/// boxed table styles read the same; the first seven numbers after the name are total,
/// completed, cancelled, dead-lettered, rolled back, retries and restarts.
pub fn summary_row(stdout: &str, batch: &str) -> SummaryRow {
    let is_rule = |c: char| c.is_whitespace() || c == '|' || ('\u{2500}'..='\u{257F}').contains(&c);
    let row = stdout
        .lines()
        .map(|line| line.split(is_rule).filter(|cell| !cell.is_empty()).collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&batch))
        .unwrap_or_else(|| panic!("no summary row for {batch} in:\n{stdout}"));
    let numbers: Vec<u64> = row[1..].iter().map_while(|cell| cell.parse().ok()).collect();
    assert!(
        numbers.len() >= 7,
        "summary row of {batch} has too few numbers: {row:?}"
    );
    SummaryRow {
        total: numbers[0],
        completed: numbers[1],
        cancelled: numbers[2],
        dead_lettered: numbers[3],
        rolled_back: numbers[4],
        retries: numbers[5],
        restarts: numbers[6],
    }
}

/// Most actions of `batch` in flight at once, from the audit file: an action counts from
/// its first submission (a compensation's submission is the same action still in flight)
/// to its outcome record.
pub fn max_in_flight_seen(h: &Harness, batch: &str) -> usize {
    use time::format_description::well_known::Rfc3339;
    let at = |r: &Value| {
        time::OffsetDateTime::parse(r["timestamp"].as_str().expect("timestamp"), &Rfc3339)
            .expect("RFC 3339 timestamp")
            .unix_timestamp_nanos()
    };
    let mut started = std::collections::HashSet::new();
    let mut events: Vec<(i128, i32)> = Vec::new();
    for r in h.audit().iter().filter(|r| r["batch"] == batch) {
        match r["event_type"].as_str().unwrap_or_default() {
            "ACTION_SUBMITTED" if started.insert(r["key"].to_string()) => events.push((at(r), 1)),
            "ACTION_COMPLETED" | "ACTION_CANCELLED" | "ASYNC_ERROR_HANDLED" => events.push((at(r), -1)),
            _ => {}
        }
    }
    // At equal times the end sorts first: a slot freed and reused in the same instant.
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, delta) in events {
        now += delta;
        max = max.max(now);
    }
    usize::try_from(max).unwrap_or(0)
}

/// Env var that replays a chaos test with the seed its failure message printed.
pub const CHAOS_SEED_ENV: &str = "AW_TEST_CHAOS_SEED";

/// The `[chaos] seed` for a chaos test: `$AW_TEST_CHAOS_SEED` when set (a replay), else
/// a fresh one per run, so runs cover different draws; assertion messages print it.
pub fn chaos_seed() -> u64 {
    match std::env::var(CHAOS_SEED_ENV) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{CHAOS_SEED_ENV} is not a u64: {text:?}")),
        Err(_) => {
            let nanos = rand_suffix();
            (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
        }
    }
}

/// How to replay a chaos test, for its assertion messages.
pub fn replay_hint(seed: u64) -> String {
    format!("chaos seed {seed} (replay with {CHAOS_SEED_ENV}={seed})")
}
