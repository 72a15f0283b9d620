//! What the journal keeps of an action: its history (`show`, the admin API), pruning on
//! demand and by retention, and the cursor pages of the admin lists.

mod common;

use std::collections::BTreeSet;
use std::io::Write;

use common::*;
use serde_json::Value;

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
    write_actions(&file, keys("k", n));
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
    // Bodies, histories and audited outcome lines are most of an action's bytes. (A
    // PostgreSQL journal leaves freeing its pages to VACUUM.)
    assert!(
        h.pg.is_some() || size_after <= size_before / 2,
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
    let reread = show_json(&config, "work/k00007");
    assert_eq!(
        reread["body"],
        Value::Null,
        "reading the file again does not undo pruning: {reread:#}"
    );
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
    write_actions(&h.dir.path().join("p.jsonl"), keys("p", 1_200));
    write_actions(&h.dir.path().join("q.jsonl"), keys("q", 1_300));
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
