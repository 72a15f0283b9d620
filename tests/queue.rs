//! The journal as the work queue: loading resumed after kill -9, batches leaving and
//! rejoining the configuration, readers that never read the actions file.

mod common;

use common::*;
use serde_json::Value;

/// Rows the loader writes per transaction: a kill mid-load leaves a multiple of it.
const LOAD_CHUNK: u64 = 10_000;

#[test]
fn kill_9_mid_load_resumes_loading_and_loses_nothing() {
    let h = Harness::new(&["--profile", "clean"]);
    // Two and a half chunks: a kill lands after one or two committed chunks.
    let n = 25_000usize;
    write_actions(&h.dir.path().join("big.jsonl"), keys("a", n));
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
        after_kill > 0 && after_kill < n as u64 && after_kill.is_multiple_of(LOAD_CHUNK),
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
fn status_and_dlq_list_work_without_the_actions_file() {
    let h = Harness::new(&["--profile", "clean"]);
    let file = h.dir.path().join("gone.jsonl");
    write_actions(&file, keys("g", 50));
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
