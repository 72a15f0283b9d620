//! Running for months: the audit file rotated under a running daemon, a full disk, the
//! systemd notify protocol and watchdog, quiet logs that still name their action, and
//! a second stop request.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Outcome records of `records`, by `batch/key`.
fn outcomes_by_identity(records: &[Value]) -> HashMap<String, usize> {
    let mut by_identity = HashMap::new();
    for r in records.iter().filter(|r| {
        matches!(
            r["event_type"].as_str(),
            Some("ACTION_COMPLETED" | "ACTION_CANCELLED" | "ASYNC_ERROR_HANDLED")
        )
    }) {
        *by_identity.entry(format!("{}/{}", r["batch"], r["key"])).or_insert(0) += 1;
    }
    by_identity
}

#[test]
fn a_rotated_audit_file_is_reopened_on_sighup_and_no_record_is_lost_or_doubled() {
    let h = Harness::new(&["--profile", "clean"]);
    let mut batches = batch("rot", "max_in_flight = 10");
    for i in 0..120 {
        batches.push_str(&action(&format!("r{i:03}"), "duration = \"150ms\""));
    }
    let config = h.write_config(&[], &batches);
    let mut daemon = h.spawn(&["run", "--once"], &config);
    wait_until(Duration::from_secs(30), "a third of the outcomes", || {
        h.outcomes().len() >= 40
    });

    let rotated = h.dir.path().join("audit.jsonl.1");
    std::fs::rename(h.audit_path(), &rotated).unwrap();
    daemon.signal("HUP");
    wait_until(Duration::from_secs(10), "a new audit file", || h.audit_path().exists());
    assert_eq!(daemon.wait(Duration::from_secs(60)), Some(0), "{}", daemon.log_text());

    let old = read_jsonl(&rotated);
    let new = read_jsonl(&h.audit_path());
    assert!(
        !outcomes_by_identity(&old).is_empty(),
        "outcomes before the rotation stayed in the renamed file"
    );
    assert!(
        !outcomes_by_identity(&new).is_empty(),
        "outcomes after it went to the new file"
    );
    let mut both = old.clone();
    both.extend(new.iter().cloned());
    let by_identity = outcomes_by_identity(&both);
    assert_eq!(
        by_identity.len(),
        120,
        "every action has an outcome across the two files"
    );
    assert!(by_identity.values().all(|n| *n == 1), "none twice: {by_identity:?}");
    let ids: HashSet<String> = both.iter().map(|r| r["event_id"].to_string()).collect();
    assert_eq!(ids.len(), both.len(), "no event_id in both files");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(h.audit_path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the new audit file is private: {mode:o}");
}
