//! Crashes of the whole process: kill -9, SIGTERM, restarts, a second daemon.

mod common;

use std::time::Duration;

use common::*;

/// Polling slow enough that a run can be interrupted mid-way.
const SLOW_POLL: &str = "initial_delay = \"50ms\"\ninterval = \"100ms\"\ntimeout = \"60s\"";

fn slow_batch(n: usize, duration: &str) -> String {
    let mut text = batch("bulk", "");
    for i in 0..n {
        text.push_str(&action(&format!("a{i:04}"), &format!("duration = \"{duration}\"")));
    }
    text
}

#[test]
fn kill_9_loop_loses_and_duplicates_nothing() {
    // The shipped durability (fsync on): what an operator's kill -9 meets.
    let h = Harness::durable(&["--profile", "clean"]);
    let n = 300;
    let overrides = [("limits", "max_in_flight = 60"), ("poll", SLOW_POLL)];
    let config = h.write_config(&overrides, &slow_batch(n, "700ms"));
    let mut kills = 0;
    let mut seen_outcomes = 0;
    while kills < 6 {
        let mut daemon = h.spawn(&["run", "--once"], &config);
        // Kill once a few more actions were submitted or resolved: a moment chosen by
        // progress, not by a guessed sleep.
        let target = h.count("ACTION_SUBMITTED") + 25 + kills * 7;
        let finished = std::cell::Cell::new(false);
        wait_until(Duration::from_secs(30), "progress before the kill", || {
            if daemon.child.try_wait().ok().flatten().is_some() {
                finished.set(true);
                return true;
            }
            h.count("ACTION_SUBMITTED") >= target
        });
        if finished.get() {
            break;
        }
        daemon.signal("KILL");
        daemon.wait(Duration::from_secs(10));
        kills += 1;
        let now = h.outcomes().len();
        assert!(now >= seen_outcomes, "outcome records never disappear");
        seen_outcomes = now;
    }
    assert!(kills >= 5, "the batch finished before five kills ({kills})");
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));

    assert_exactly_once(&h, n);
    assert!(h.outcomes().iter().all(|r| r["event_type"] == "ACTION_COMPLETED"));
    if h.pg.is_none() {
        // The counts kept by the writer survived every kill with the changes they count.
        let (kept, scanned) = kept_and_scanned(&journal_path(&h));
        assert_eq!(kept, scanned, "the kept aggregates against a scan of the actions");
    }
    let stats = h.sim.stats();
    // Every action completes on its first attempt: any extra creation would be a
    // resubmission with a new Idempotency-Key. Repeats of the same key are allowed.
    assert_eq!(stats["actions_created"], n as u64, "{stats}");
    eprintln!(
        "kill loop: {kills} SIGKILLs, {n} actions, {} outcome records, {} repeated submits of a known Idempotency-Key",
        h.outcomes().len(),
        stats["duplicate_submits"]
    );
}

#[test]
fn rerunning_a_finished_file_submits_nothing() {
    let h = Harness::new(&["--profile", "clean"]);
    let config = h.write_config(&[], &slow_batch(20, "10ms"));
    assert_eq!(h.run_once(&config).status.code(), Some(0));
    let submits = h.sim.stats()["submits"].clone();
    let records = h.audit().len();
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(h.sim.stats()["submits"], submits, "nothing resubmitted");
    assert_eq!(h.audit().len(), records, "no new audit records");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("bulk"), "the summary still shows the batch: {stdout}");
}

#[test]
fn second_daemon_on_the_same_journal_exits_3() {
    if common::pg::sqlite_only("second_daemon_on_the_same_journal_exits_3") {
        return;
    }
    let h = Harness::new(&["--profile", "clean"]);
    let config = h.write_config(&[], &slow_batch(3, "10ms"));
    let mut first = h.spawn(&["run"], &config);
    wait_until(Duration::from_secs(20), "the first daemon's outcomes", || {
        h.outcomes().len() == 3
    });
    let output = run_to_end(&mut daemon_cmd(&["run", "--once"], &config), Duration::from_secs(20));
    assert_eq!(output.status.code(), Some(3), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("locked by pid"), "{stderr}");
    first.signal("TERM");
    assert_eq!(
        first.wait(Duration::from_secs(15)),
        Some(0),
        "daemon exits 0 on SIGTERM"
    );
}

#[test]
fn sigterm_mid_run_exits_4_and_the_next_start_resumes_without_resubmitting() {
    let h = Harness::durable(&["--profile", "clean"]);
    let n = 40;
    let overrides = [("shutdown", "timeout = \"3s\""), ("poll", SLOW_POLL)];
    let config = h.write_config(&overrides, &slow_batch(n, "1500ms"));
    let mut daemon = h.spawn(&["run", "--once"], &config);
    wait_until(Duration::from_secs(20), "every action submitted", || {
        h.count("ACTION_SUBMITTED") >= n
    });
    let asked = std::time::Instant::now();
    daemon.signal("TERM");
    let code = daemon.wait(Duration::from_secs(10));
    assert_eq!(code, Some(4), "log:\n{}", daemon.log_text());
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "stopped within shutdown.timeout"
    );
    assert!(h.outcomes().len() < n, "it really was mid-run");

    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_exactly_once(&h, n);
    assert_eq!(
        h.sim.stats()["actions_created"],
        n as u64,
        "resumed polling, no new submissions"
    );
}

#[test]
fn daemon_exits_0_on_sigint() {
    let h = Harness::new(&["--profile", "clean"]);
    let config = h.write_config(&[], &slow_batch(2, "10ms"));
    let mut daemon = h.spawn(&["run"], &config);
    wait_until(Duration::from_secs(20), "outcomes", || h.outcomes().len() == 2);
    daemon.signal("INT");
    assert_eq!(daemon.wait(Duration::from_secs(15)), Some(0));
}

#[test]
fn sighup_admits_new_actions_and_ignores_an_invalid_file() {
    let h = Harness::new(&["--profile", "clean"]);
    let config = h.write_config(&[], &slow_batch(2, "10ms"));
    let mut daemon = h.spawn(&["run"], &config);
    wait_until(Duration::from_secs(20), "first outcomes", || h.outcomes().len() == 2);

    // Invalid (an unknown key) and with a batch of its own: nothing of it may be admitted.
    let ghosts = batch("ghost", "") + &action("g1", "") + &action("g2", "");
    let invalid = h.config_text(
        &[("limits", "max_in_flight = 500\nnot_a_key = 1")],
        &(slow_batch(2, "10ms") + &ghosts),
    );
    std::fs::write(&config, invalid).unwrap();
    daemon.signal("HUP");
    wait_until(Duration::from_secs(20), "the reload error in the log", || {
        daemon.log_text().contains("Reload ignored")
    });
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "an invalid file does not stop the daemon"
    );

    std::fs::write(&config, h.config_text(&[], &slow_batch(5, "10ms"))).unwrap();
    daemon.signal("HUP");
    wait_until(Duration::from_secs(20), "the new actions' outcomes", || {
        h.outcomes().len() == 5
    });
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(15)), Some(0));
    assert_exactly_once(&h, 5);
}

#[test]
fn embedded_simulator_runs_resume_after_kill_9() {
    if common::pg::sqlite_only("embedded_simulator_runs_resume_after_kill_9") {
        return;
    }
    let h = Harness::new(&["--profile", "clean"]);
    let overrides = [
        ("cxone", "base_url = \"simulator\""),
        ("simulator", "profile = \"clean\"\nseed = 3"),
        ("dead_letter", "webhook_url = \"simulator\""),
        ("poll", SLOW_POLL),
    ];
    let mut batches = batch("bulk", "");
    for i in 0..20 {
        let duration = if i < 10 { "10ms" } else { "3s" };
        batches.push_str(&action(&format!("a{i:04}"), &format!("duration = \"{duration}\"")));
    }
    let config = h.write_config(&overrides, &batches);
    let mut daemon = h.spawn(&["run", "--once"], &config);
    wait_until(Duration::from_secs(20), "the short actions' outcomes", || {
        h.outcomes().len() >= 10 && h.count("ACTION_SUBMITTED") >= 20
    });
    daemon.signal("KILL");
    daemon.wait(Duration::from_secs(10));
    assert!(h.outcomes().len() < 20, "killed mid-run");

    let output = h.run_once(&config);
    assert_eq!(
        output.status.code(),
        Some(0),
        "resumed to completion: {}",
        show(&output)
    );
    assert_exactly_once(&h, 20);
    for i in 10..20 {
        let submitted = h.records("ACTION_SUBMITTED", &format!("a{i:04}"));
        let keys: std::collections::HashSet<&str> = submitted
            .iter()
            .map(|r| r["idempotency_key"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys.len(),
            1,
            "resubmitted with the same Idempotency-Key: {submitted:#?}"
        );
    }
}

#[test]
fn sigterm_during_the_dead_letter_drain_stops_promptly() {
    let h = Harness::new(&["--profile", "clean"]);
    h.sim.post("/sim/control", serde_json::json!({"webhook_down": true}));
    let dl = format!("webhook_url = \"{}/sim/webhook\"\ndrain_timeout = \"60s\"", h.sim.url);
    let config = h.write_config(
        &[("dead_letter", &dl)],
        &(batch("b", "") + &action("x", "outcome = \"FAILED\", code = \"BAD\"")),
    );
    let mut daemon = h.spawn(&["run", "--once"], &config);
    wait_until(Duration::from_secs(20), "the outcome", || h.outcomes().len() == 1);
    let asked = std::time::Instant::now();
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(15)), Some(2), "{}", daemon.log_text());
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "stopped without waiting for the drain"
    );
}

#[test]
fn a_compensation_whose_template_was_removed_is_rollback_failed() {
    if common::pg::sqlite_only("a_compensation_whose_template_was_removed_is_rollback_failed") {
        return;
    }
    let h = Harness::new(&["--profile", "clean"]);
    let overrides = [
        ("cxone", "base_url = \"simulator\""),
        ("simulator", "profile = \"clean\""),
        ("dead_letter", "webhook_url = \"\""),
        ("classifier", "rollback = [\"PARTIAL_WRITE\"]"),
    ];
    let action = action("c1", "outcome = \"FAILED\", code = \"PARTIAL_WRITE\"");
    let with_template = batch(
        "b",
        "rollback_action = { actionType = \"UNDO\", payload = { op = \"undo\", sim = { duration = \"30s\" } } }",
    ) + &action;
    let config = h.write_config(&overrides, &with_template);
    let mut daemon = h.spawn(&["run", "--once"], &config);
    wait_until(Duration::from_secs(20), "the compensation submitted", || {
        h.records("ACTION_SUBMITTED", "c1")
            .iter()
            .any(|r| r["compensation"] == true)
    });
    daemon.signal("KILL");
    daemon.wait(Duration::from_secs(10));

    let config = h.write_config(&overrides, &(batch("b", "") + &action));
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let outcome = h.outcome("b", "c1");
    assert_eq!(outcome["error_code"], "ROLLBACK_FAILED");
    assert!(
        outcome["message"].as_str().unwrap().contains("ROLLBACK_NOT_CONFIGURED"),
        "{outcome}"
    );
    assert_eq!(
        outcome["action_id"],
        h.records("ACTION_SUBMITTED", "c1")[0]["action_id"]
    );
}

#[test]
fn sigterm_with_requests_in_flight_waits_only_shutdown_timeout() {
    // Undirected actions get the simulator's latency: every submit hangs for 10s.
    let h = Harness::new(&["--profile", "clean", "--latency", "10s"]);
    let n = 5;
    let mut batches = batch("slow", "");
    for i in 0..n {
        batches.push_str(&format!(
            "  [[batch.action]]\n  key = \"s{i}\"\n  actionType = \"X\"\n  payload = {{ n = {i} }}\n\n"
        ));
    }
    let cxone = format!(
        "base_url = \"{}\"\nclient_id = \"simulator\"\nclient_secret_env = \"{SECRET_ENV}\"\nrequest_timeout = \"30s\"",
        h.sim.url
    );
    let overrides = [("cxone", cxone.as_str()), ("shutdown", "timeout = \"1s\"")];
    let config = h.write_config(&overrides, &batches);

    for (args, expected) in [(&["run", "--once"][..], 4), (&["run"][..], 0)] {
        let mut daemon = h.spawn(args, &config);
        let seen = h.sim.stats()["submits"].as_u64().unwrap();
        wait_until(Duration::from_secs(20), "submits in flight", || {
            h.sim.stats()["submits"].as_u64().unwrap() >= seen + n as u64
        });
        let asked = std::time::Instant::now();
        daemon.signal("TERM");
        assert_eq!(
            daemon.wait(Duration::from_secs(15)),
            Some(expected),
            "{args:?}: {}",
            daemon.log_text()
        );
        let took = asked.elapsed();
        assert!(
            took >= Duration::from_millis(900),
            "{args:?} waited for the requests in flight ({took:?})"
        );
        assert!(
            took < Duration::from_secs(4),
            "{args:?} gave up after shutdown.timeout ({took:?})"
        );
    }

    h.sim.post("/sim/control", serde_json::json!({"latency": "0ms"}));
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_exactly_once(&h, n);
    assert_eq!(
        h.sim.stats()["actions_created"],
        n as u64,
        "repeats of the same keys created nothing new"
    );
}

#[test]
fn a_reload_applies_each_batchs_limit_and_rollback_template() {
    let h = Harness::new(&["--profile", "clean"]);
    let overrides = [
        ("classifier", "retry = [\"TIMEOUT\"]\nrollback = [\"PARTIAL_WRITE\"]"),
        ("admin", "listen = \"127.0.0.1:0\""),
    ];
    let steady = |limit: usize| {
        let mut text = batch("steady", &format!("max_in_flight = {limit}"));
        for i in 0..10 {
            text.push_str(&action(&format!("s{i}"), "duration = \"400ms\""));
        }
        text
    };
    let config = h.write_config(&overrides, &steady(1));
    let mut daemon = h.spawn(&["run"], &config);
    let url = daemon.admin_url();
    wait_until(Duration::from_secs(20), "a first outcome", || !h.outcomes().is_empty());

    // The reload raises the existing batch's limit and adds a batch with its own limit
    // and a compensation template.
    let mut late = batch(
        "late",
        "max_in_flight = 1\nrollback_action = { actionType = \"UNDO\", payload = { op = \"undo\" } }",
    );
    for i in 0..4 {
        late.push_str(&action(&format!("l{i}"), "duration = \"300ms\""));
    }
    late.push_str(&action(
        "undo-me",
        "outcome = \"FAILED\", code = \"PARTIAL_WRITE\", duration = \"300ms\"",
    ));
    std::fs::write(&config, h.config_text(&overrides, &(steady(3) + &late))).unwrap();
    daemon.signal("HUP");
    wait_until(Duration::from_secs(30), "every outcome", || h.outcomes().len() == 15);

    let metrics = ureq::get(&format!("{url}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(15)), Some(0), "{}", daemon.log_text());
    assert_exactly_once(&h, 15);

    assert_eq!(max_in_flight_seen(&h, "late"), 1, "the new batch's own limit holds");
    assert_eq!(
        max_in_flight_seen(&h, "steady"),
        3,
        "the raised limit is used after the reload, and never exceeded"
    );
    let undone = h.outcome("late", "undo-me");
    assert_eq!(undone["resolution"], "ROLLED_BACK", "{undone}");
    assert!(h.sim.webhooks().is_empty(), "nothing was dead-lettered");
    assert!(
        metrics.contains("actionwarden_poller_restarts_total{batch=\"late\"} 0"),
        "the new batch's series are registered:\n{metrics}"
    );
}

#[test]
fn the_retry_budget_stays_exact_across_kill_9() {
    let h = Harness::durable(&["--profile", "clean"]);
    let overrides = [
        (
            "retry",
            "max_retries = 3\nbase_delay = \"2500ms\"\nbackoff_factor = 1.0\nmax_delay = \"2500ms\"\njitter = \"none\"",
        ),
        ("admin", "listen = \"127.0.0.1:0\""),
    ];
    let batches = batch("b", "") + &action("unlucky", "submit_status = [503, 503, 503, 503, 503, 503, 503, 503]");
    let config = h.write_config(&overrides, &batches);
    for spent in 1..=2u64 {
        let mut daemon = h.spawn(&["run", "--once"], &config);
        let row_url = format!("{}/v1/actions/b/unlucky", daemon.admin_url());
        // Killed while it waits out its backoff, once the spent retry is journaled.
        wait_until(Duration::from_secs(20), "the spent retry in the journal", || {
            let (code, row) = get_status(&row_url);
            code == 200 && row["retry_count"] == spent
        });
        daemon.signal("KILL");
        daemon.wait(Duration::from_secs(10));
        assert_eq!(h.sim.stats()["submits"], spent, "one submit per spent retry so far");
    }
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let outcome = h.outcome("b", "unlucky");
    assert_eq!(outcome["resolution"], "EXHAUSTED", "{outcome}");
    assert_eq!(outcome["error_code"], "HTTP_503", "{outcome}");
    assert_eq!(outcome["retry_count"], 3, "{outcome}");
    assert_eq!(
        h.sim.stats()["submits"],
        4,
        "the first submit and three retries, whatever the kills"
    );
}

#[test]
fn a_torn_last_audit_line_is_cut_on_restart() {
    let h = Harness::new(&["--profile", "clean"]);
    let n = 20;
    let config = h.write_config(&[("poll", SLOW_POLL)], &slow_batch(n, "1s"));
    let mut daemon = h.spawn(&["run", "--once"], &config);
    wait_until(Duration::from_secs(20), "every action submitted", || {
        h.count("ACTION_SUBMITTED") >= n
    });
    daemon.signal("KILL");
    daemon.wait(Duration::from_secs(10));
    assert!(h.outcomes().len() < n, "killed mid-run");

    // What a crash in the middle of a write leaves: half a record, no newline.
    let torn = r#"{"event_id":"0b6c7f52-torn","event_type":"ACTION_COMPLETED","batch":"bulk","key":"a00"#;
    let mut file = std::fs::OpenOptions::new().append(true).open(h.audit_path()).unwrap();
    std::io::Write::write_all(&mut file, torn.as_bytes()).unwrap();
    drop(file);

    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let text = std::fs::read_to_string(h.audit_path()).unwrap();
    assert!(text.ends_with('\n'), "the file ends with a complete line");
    assert!(!text.contains("0b6c7f52-torn"), "the torn line is gone");
    for line in text.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "every line parses: {line}"
        );
    }
    assert_exactly_once(&h, n);
}
