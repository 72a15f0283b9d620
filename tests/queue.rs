//! The journal as the work queue: loading resumed after kill -9, batches leaving and
//! rejoining the configuration, an action's history (`show`, the admin API), pruning and
//! retention, cursor pagination, and readers that never read the actions file.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Rows the loader writes per transaction: a kill mid-load leaves a multiple of it.
const LOAD_CHUNK: u64 = 10_000;
/// Deadline of a run that works through tens of thousands of actions (debug build).
const LONG_RUN: Duration = Duration::from_secs(600);
/// Deadline of every shorter wait.
const WAIT: Duration = Duration::from_secs(60);
/// Fast polling for runs of many actions.
const FAST_POLL: &str = "initial_delay = \"5ms\"\ninterval = \"20ms\"\ntimeout = \"120s\"";

/// Writes an actions file of `keys` (one JSON line each) whose payloads carry `sim`
/// (a JSON object text, or "" for none).
fn write_actions(path: &Path, keys: impl IntoIterator<Item = String>, sim: &str) {
    let file = std::fs::File::create(path).expect("creating the actions file");
    let mut out = std::io::BufWriter::new(file);
    let sim = if sim.is_empty() {
        String::new()
    } else {
        format!(", \"sim\": {sim}")
    };
    for key in keys {
        writeln!(
            out,
            "{{\"key\": \"{key}\", \"actionType\": \"CUSTOM_ACTION\", \"payload\": {{\"contactId\": \"{key}\", \"dataField\": \"priority\", \"value\": \"HIGH\"{sim}}}}}"
        )
        .expect("writing the actions file");
    }
    out.flush().expect("writing the actions file");
}

/// Keys `PREFIX00000`... for `n` actions.
fn keys(prefix: &str, n: usize) -> impl Iterator<Item = String> + '_ {
    (0..n).map(move |i| format!("{prefix}{i:05}"))
}

/// A batch read from `file` (relative to the config's directory).
fn file_batch(name: &str, file: &str, extra: &str) -> String {
    batch(name, &format!("actions_file = \"{file}\"\n{extra}"))
}

/// The journal of a harness's configs.
fn journal_path(h: &Harness) -> PathBuf {
    h.dir.path().join("actionwarden.journal")
}

/// `[journal]` of the harness's configs with `extra` lines.
fn journal_table(h: &Harness, extra: &str) -> String {
    format!("path = \"{}\"\nfsync = false\n{extra}", journal_path(h).display())
}

/// Actions journaled, read straight from the SQLite file, read-only (0 before it exists).
fn journaled_rows(journal: &Path) -> u64 {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let Ok(conn) = rusqlite::Connection::open_with_flags(journal, flags) else {
        return 0;
    };
    let _ = conn.busy_timeout(Duration::from_secs(1));
    conn.query_row("SELECT COUNT(*) FROM actions", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .unwrap_or(0)
}

/// Bytes the journal takes on disk: the database and its write-ahead log.
fn journal_bytes(journal: &Path) -> u64 {
    let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    size(journal.to_owned()) + size(PathBuf::from(format!("{}-wal", journal.display())))
}

/// Runs `actionwarden ARGS -c CONFIG`; asserts exit 0 and returns stdout.
fn cli_ok(args: &[&str], config: &Path) -> String {
    let output = run_to_end(&mut daemon_cmd(args, config), WAIT);
    assert_eq!(output.status.code(), Some(0), "{args:?}: {}", show(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `status --json`.
fn status_json(config: &Path) -> Value {
    let text = cli_ok(&["status", "--json"], config);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {text}"))
}

/// `show BATCH/KEY --json`.
fn show_json(config: &Path, identity: &str) -> Value {
    let text = cli_ok(&["show", identity, "--json"], config);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("show --json is not JSON ({e}): {text}"))
}

/// A state count of a batch in a `status --json` document.
fn state_count(status: &Value, batch: &str, state: &str) -> u64 {
    status["batches"][batch]["states"][state].as_u64().unwrap_or(0)
}

/// Actions of `batch` between admission and outcome, per `status --json`.
fn in_flight(status: &Value, batch: &str) -> u64 {
    ["submitting", "polling", "backoff", "rolling_back"]
        .iter()
        .map(|s| state_count(status, batch, s))
        .sum()
}

/// Outcome records of `batch` in the audit file.
fn outcomes_of(h: &Harness, batch: &str) -> usize {
    h.outcomes().iter().filter(|r| r["batch"] == batch).count()
}

#[test]
fn kill_9_mid_load_resumes_loading_and_loses_nothing() {
    let h = Harness::new(&["--profile", "clean"]);
    // Two and a half chunks: a kill lands after one or two committed chunks.
    let n = 25_000usize;
    write_actions(&h.dir.path().join("big.jsonl"), keys("a", n), "");
    let overrides = [("limits", "max_in_flight = 1000"), ("poll", FAST_POLL)];
    let config = h.write_config(&overrides, &file_batch("big", "big.jsonl", ""));
    let journal = journal_path(&h);

    let mut daemon = h.spawn(&["run", "--once"], &config);
    let mut seen = 0;
    wait_until(WAIT, "a journal holding part of the file", || {
        seen = journaled_rows(&journal);
        assert!(
            seen < n as u64,
            "the whole file was loaded before the kill; log:\n{}",
            daemon.log_text()
        );
        seen > 0
    });
    daemon.signal("KILL");
    daemon.wait(WAIT);
    let after_kill = journaled_rows(&journal);
    assert!(
        after_kill > 0 && after_kill < n as u64 && after_kill % LOAD_CHUNK == 0,
        "killed mid-load with whole chunks committed: {after_kill} rows"
    );
    assert_eq!(h.sim.stats()["submits"], 0, "nothing is admitted while loading");

    let output = run_to_end(&mut daemon_cmd(&["run", "--once"], &config), LONG_RUN);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_exactly_once(&h, n);
    let stats = h.sim.stats();
    assert_eq!(
        stats["actions_created"], n as u64,
        "each action submitted once: {stats}"
    );
    let status = status_json(&config);
    assert_eq!(status["batches"]["big"]["total"], n as u64, "{status}");
    assert_eq!(state_count(&status, "big", "completed"), n as u64, "{status}");
    eprintln!("killed mid-load with {after_kill} of {n} rows journaled (first seen: {seen})");
}

#[test]
fn a_batch_left_out_of_the_configuration_waits_and_resumes_when_named_again() {
    let h = Harness::new(&["--profile", "clean"]);
    let paused_n = 30;
    let other_n = 10;
    // Two at a time, each taking a while: the batch is still going when it is removed.
    let paused = {
        let mut text = batch("paused", "max_in_flight = 2");
        for i in 0..paused_n {
            text.push_str(&action(&format!("p{i:02}"), "duration = \"300ms\""));
        }
        text
    };
    let other = {
        let mut text = batch("other", "max_in_flight = 2");
        for i in 0..other_n {
            text.push_str(&action(&format!("o{i:02}"), "duration = \"100ms\""));
        }
        text
    };
    let config = h.write_config(&[], &paused);
    let mut daemon = h.spawn(&["run"], &config);
    wait_until(WAIT, "a few outcomes of the batch", || outcomes_of(&h, "paused") >= 4);

    // Reload without it; another batch arrives instead.
    h.write_config(&[], &other);
    daemon.signal("HUP");
    wait_until(WAIT, "the reload", || {
        daemon.log_text().contains("Configuration reloaded.")
    });
    // What was running when it was removed may finish; then nothing more starts.
    wait_until(WAIT, "the removed batch's running actions to finish", || {
        in_flight(&status_json(&config), "paused") == 0
    });
    let done_before = outcomes_of(&h, "paused");
    wait_until(WAIT, "every action of the other batch", || {
        outcomes_of(&h, "other") == other_n
    });
    let status = status_json(&config);
    assert_eq!(
        outcomes_of(&h, "paused"),
        done_before,
        "nothing of the removed batch was admitted"
    );
    assert_eq!(in_flight(&status, "paused"), 0, "{status}");
    let pending = state_count(&status, "paused", "pending");
    assert!(pending > 0, "the removed batch still had work: {status}");
    assert_eq!(pending as usize, paused_n - done_before, "{status}");
    assert_eq!(
        h.sim.stats()["actions_created"],
        (done_before + other_n) as u64,
        "submissions: the removed batch's finished ones and the other batch"
    );

    // Named again: its pending actions run to the end.
    h.write_config(&[], &(paused + &other));
    daemon.signal("HUP");
    wait_until(WAIT, "every action of the batch named again", || {
        outcomes_of(&h, "paused") == paused_n
    });
    assert_exactly_once(&h, paused_n + other_n);
    assert_eq!(h.sim.stats()["actions_created"], (paused_n + other_n) as u64);
    daemon.signal("TERM");
    assert_eq!(daemon.wait(WAIT), Some(0), "log:\n{}", daemon.log_text());
}

#[test]
fn show_lists_a_retried_actions_history_and_the_admin_api_returns_the_same_object() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("flaky", "outcome = \"FAILED\", code = \"TIMEOUT\", times = 1");
    let overrides = [
        ("admin", "listen = \"127.0.0.1:0\""),
        ("classifier", "retry = [\"TIMEOUT\"]"),
    ];
    let config = h.write_config(&overrides, &batches);
    let mut daemon = h.spawn(&["run"], &config);
    let url = daemon.admin_url();
    wait_until(WAIT, "the outcome", || h.outcomes().len() == 1);

    let shown = show_json(&config, "b/flaky");
    let keys: BTreeSet<&str> = shown
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "batch",
        "key",
        "state",
        "outcome",
        "attempt",
        "retry_count",
        "action_id",
        "body",
        "dead_letter",
        "history",
    ]
    .into();
    assert_eq!(keys, expected, "{shown:#}");
    assert_eq!(shown["batch"], "b");
    assert_eq!(shown["key"], "flaky");
    assert_eq!(shown["state"], "completed");
    assert_eq!(shown["outcome"], "completed");
    assert_eq!(shown["attempt"], 2);
    assert_eq!(shown["retry_count"], 1);
    assert!(shown["action_id"].is_string(), "{shown:#}");
    assert_eq!(shown["body"]["payload"]["contactId"], "flaky", "{shown:#}");
    assert_eq!(shown["dead_letter"], Value::Null);

    let history = shown["history"].as_array().expect("history is a list");
    let states: Vec<&str> = history.iter().map(|e| e["state"].as_str().unwrap_or("?")).collect();
    assert_eq!(
        states,
        ["submitting", "polling", "backoff", "submitting", "polling", "completed"],
        "{shown:#}"
    );
    let attempts: Vec<u64> = history.iter().map(|e| e["attempt"].as_u64().unwrap_or(0)).collect();
    assert_eq!(&attempts[..2], [1, 1], "{shown:#}");
    assert_eq!(&attempts[3..], [2, 2, 2], "{shown:#}");
    let event_keys: BTreeSet<&str> = [
        "at",
        "state",
        "attempt",
        "action_id",
        "http_status",
        "error_code",
        "detail",
        "instance",
    ]
    .into();
    let mut previous = String::new();
    for event in history {
        let found: BTreeSet<&str> = event
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(found, event_keys, "{event}");
        let at = event["at"].as_str().expect("at is text");
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("at is not RFC 3339 ({e}): {at}"));
        assert!(at.ends_with('Z'), "UTC: {at}");
        assert!(event["instance"].as_str().is_some_and(|i| !i.is_empty()), "{event}");
        // Timestamps of equal length compare as text; oldest first.
        if previous.len() == at.len() {
            assert!(previous.as_str() <= at, "oldest first: {previous} then {at}");
        }
        previous = at.to_owned();
    }
    assert_eq!(
        history[2]["error_code"], "TIMEOUT",
        "the backoff names its cause: {shown:#}"
    );

    let (code, served) = status_of(&format!("{url}/v1/actions/b/flaky"));
    assert_eq!(code, 200);
    assert_eq!(served, shown, "the admin API returns the same object as show --json");

    let output = run_to_end(&mut daemon_cmd(&["show", "b/nope", "--json"], &config), WAIT);
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no action b/nope"), "{stderr}");
    assert!(output.stdout.is_empty(), "{}", show(&output));
    daemon.signal("TERM");
    assert_eq!(daemon.wait(WAIT), Some(0));
}

#[test]
fn pruning_keeps_reruns_idempotent_and_shrinks_the_journal() {
    let h = Harness::new(&["--profile", "clean"]);
    let n = 3_000;
    let file = h.dir.path().join("work.jsonl");
    write_actions(&file, keys("k", n), "");
    let overrides = [("limits", "max_in_flight = 1000"), ("poll", FAST_POLL)];
    let config = h.write_config(&overrides, &file_batch("work", "work.jsonl", ""));
    let output = run_to_end(&mut daemon_cmd(&["run", "--once"], &config), LONG_RUN);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let before = show_json(&config, "work/k00007");
    assert!(before["body"].is_object() && !before["history"].as_array().unwrap().is_empty());
    let journal = journal_path(&h);
    let size_before = journal_bytes(&journal);

    let printed = cli_ok(&["journal", "prune", "--older-than", "0s"], &config);
    assert!(printed.contains(&format!("pruned: {n} actions")), "{printed}");
    let size_after = journal_bytes(&journal);
    // Bodies, histories and audited outcome lines are most of an action's bytes.
    assert!(
        size_after <= size_before / 2,
        "freed pages go back to the file system: {size_before} -> {size_after} bytes"
    );
    let after = show_json(&config, "work/k00007");
    assert_eq!(after["body"], Value::Null, "{after:#}");
    assert_eq!(after["history"], serde_json::json!([]), "{after:#}");
    for field in ["state", "outcome", "attempt", "action_id"] {
        assert_eq!(after[field], before[field], "{field} is kept");
    }
    let status = status_json(&config);
    assert_eq!(state_count(&status, "work", "completed"), n as u64, "{status}");

    // The same file again: nothing to do.
    let submits = h.sim.stats()["submits"].as_u64().unwrap();
    let records = h.audit().len();
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(h.sim.stats()["submits"], submits, "nothing resubmitted");
    assert_eq!(h.audit().len(), records, "no new audit records");

    // A changed file is read again line by line: its pruned actions still have their
    // outcome and only the new line runs.
    let mut out = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
    writeln!(
        out,
        "{{\"key\": \"new\", \"actionType\": \"CUSTOM_ACTION\", \"payload\": {{\"contactId\": \"new\"}}}}"
    )
    .unwrap();
    drop(out);
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(
        h.sim.stats()["submits"],
        submits + 1,
        "only the new action is submitted"
    );
    assert_exactly_once(&h, n + 1);
    eprintln!("journal of {n} actions: {size_before} bytes, {size_after} after pruning");
}

#[test]
fn retention_prunes_when_the_daemon_starts() {
    let h = Harness::new(&["--profile", "clean"]);
    let mut batches = batch("b", "");
    for i in 0..20 {
        batches.push_str(&action(&format!("r{i:02}"), ""));
    }
    let config = h.write_config(&[], &batches);
    assert_eq!(h.run_once(&config).status.code(), Some(0));
    assert!(show_json(&config, "b/r03")["body"].is_object());

    let journal = journal_table(&h, "retention = \"1ms\"");
    let config = h.write_config(&[("journal", &journal)], &batches);
    let mut daemon = h.spawn(&["run"], &config);
    wait_until(WAIT, "the pruning at start", || {
        daemon.log_text().contains("Journal pruned")
    });
    let log = daemon.log_text();
    let line = log.lines().find(|l| l.contains("Journal pruned")).unwrap();
    assert!(line.contains("actions=20"), "{line}");
    let shown = show_json(&config, "b/r03");
    assert_eq!(shown["body"], Value::Null, "{shown:#}");
    assert_eq!(shown["history"], serde_json::json!([]), "{shown:#}");
    assert_eq!(shown["outcome"], "completed", "{shown:#}");
    daemon.signal("TERM");
    assert_eq!(daemon.wait(WAIT), Some(0), "log:\n{log}");
    assert_eq!(h.sim.stats()["actions_created"], 20, "nothing resubmitted");
}

/// Walks `/v1/actions` of `url` with pages of `limit`; returns every (batch, key) in order
/// and the number of pages.
fn walk(url: &str, limit: usize) -> (Vec<(String, String)>, usize) {
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut after: Option<String> = None;
    loop {
        let page_url = match &after {
            Some(cursor) => format!("{url}/v1/actions?limit={limit}&after={cursor}"),
            None => format!("{url}/v1/actions?limit={limit}"),
        };
        let (code, page) = status_of(&page_url);
        assert_eq!(code, 200, "{page}");
        pages += 1;
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= limit, "a page holds at most the limit");
        seen.extend(items.iter().map(|i| {
            (
                i["batch"].as_str().unwrap().to_owned(),
                i["key"].as_str().unwrap().to_owned(),
            )
        }));
        match &page["next"] {
            Value::Null => return (seen, pages),
            Value::String(next) => after = Some(next.clone()),
            other => panic!("next is a cursor or null, found {other}"),
        }
        assert!(pages < 100, "the walk ends");
    }
}

#[test]
fn the_cursor_walks_every_action_once_and_bad_parameters_answer_400() {
    let h = Harness::new(&["--profile", "clean"]);
    write_actions(&h.dir.path().join("p.jsonl"), keys("p", 1_200), "");
    write_actions(&h.dir.path().join("q.jsonl"), keys("q", 1_300), "");
    let overrides = [("admin", "listen = \"127.0.0.1:0\""), ("poll", FAST_POLL)];
    let batches = file_batch("p", "p.jsonl", "") + &file_batch("q", "q.jsonl", "");
    let config = h.write_config(&overrides, &batches);
    let mut daemon = h.spawn(&["run"], &config);
    // The admin server starts once every action is loaded; the walk runs while they run.
    let url = daemon.admin_url();

    let (seen, pages) = walk(&url, 1_000);
    assert_eq!(pages, 3, "2,500 actions in pages of 1,000");
    let expected: Vec<(String, String)> = keys("p", 1_200)
        .map(|k| ("p".to_owned(), k))
        .chain(keys("q", 1_300).map(|k| ("q".to_owned(), k)))
        .collect();
    assert_eq!(seen.len(), expected.len(), "none missed or repeated");
    assert_eq!(seen, expected, "every action once, by batch then key");

    let reason = |query: &str, list: &str| {
        let (code, body) = status_of(&format!("{url}/v1/{list}?{query}"));
        assert_eq!(code, 400, "{list}?{query}: {body}");
        body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{list}?{query}: no JSON reason: {body}"))
            .to_owned()
    };
    assert!(reason("state=bogus", "actions").contains("bogus"));
    assert!(reason("after=not-a-cursor", "actions").contains("after"));
    for list in ["actions", "dead-letters"] {
        assert!(reason("limit=0", list).contains("limit"));
        assert!(reason("limit=1001", list).contains("limit"));
        assert!(reason("limit=ten", list).contains("limit"));
        assert!(reason("after=zz", list).contains("after"));
    }
    let (code, page) = status_of(&format!("{url}/v1/actions?limit=1000&batch=q&key_prefix=q012"));
    assert_eq!(code, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 100, "q01200..q01299: {page}");
    assert_eq!(page["next"], Value::Null);
    daemon.signal("TERM");
    assert_eq!(daemon.wait(WAIT), Some(0), "a graceful stop");
}

#[test]
fn status_and_dlq_list_work_without_the_actions_file() {
    let h = Harness::new(&["--profile", "clean"]);
    let file = h.dir.path().join("gone.jsonl");
    write_actions(&file, keys("g", 50), "");
    let config = h.write_config(&[], &file_batch("gone", "gone.jsonl", ""));
    assert_eq!(h.run_once(&config).status.code(), Some(0));
    std::fs::remove_file(&file).unwrap();

    let status = status_json(&config);
    assert_eq!(status["batches"]["gone"]["total"], 50, "{status}");
    assert_eq!(state_count(&status, "gone", "completed"), 50, "{status}");
    assert_eq!(status["dead_letters"]["total"], 0, "{status}");
    let table = cli_ok(&["status"], &config);
    assert!(table.contains("gone"), "{table}");
    let letters: Value = serde_json::from_str(&cli_ok(&["dlq", "list", "--json"], &config)).unwrap();
    assert_eq!(letters, serde_json::json!([]));
    cli_ok(&["dlq", "list"], &config);
    assert_eq!(show_json(&config, "gone/g00049")["outcome"], "completed");
}
