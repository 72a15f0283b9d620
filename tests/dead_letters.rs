//! Dead letters across restarts, `status`, `dlq list`, `dlq replay`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn permanent(key: &str) -> String {
    action(key, "outcome = \"FAILED\", code = \"INVALID_CONTACT\", times = 1")
}

fn cli_json(args: &[&str], config: &std::path::Path) -> Value {
    let output = run_to_end(&mut daemon_cmd(args, config), Duration::from_secs(20));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

#[test]
fn webhook_down_across_a_restart_is_delivered_after_it_exactly_once() {
    let h = Harness::new(&["--profile", "clean"]);
    h.sim.post("/sim/control", json!({"webhook_down": true}));
    let overrides = [(
        "dead_letter",
        format!(
            "webhook_url = \"{}/sim/webhook\"\nsigning_secret_env = \"{WEBHOOK_KEY_ENV}\"\ndrain_timeout = \"300ms\"",
            h.sim.url
        ),
    )];
    let overrides: Vec<(&str, &str)> = overrides.iter().map(|(t, b)| (*t, b.as_str())).collect();
    let config = h.write_config(&overrides, &(batch("b", "") + &permanent("d1")));
    let output = h.run_once(&config);
    assert_eq!(
        output.status.code(),
        Some(2),
        "undelivered after drain_timeout: {}",
        show(&output)
    );
    assert!(h.sim.webhooks().is_empty());
    let listed = cli_json(&["dlq", "list", "--json"], &config);
    assert_eq!(listed[0]["delivered"], false, "{listed}");
    assert_eq!(listed[0]["delivery"], "pending", "{listed}");

    h.sim.post("/sim/control", json!({"webhook_down": false}));
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let hooks = h.sim.webhooks();
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    assert_eq!(hooks[0]["signature_valid"], true);
    assert_eq!(
        h.records("DEAD_LETTER_DELIVERED", "d1").len(),
        1,
        "{:#?}\n{}",
        h.audit(),
        show(&output)
    );
    assert_eq!(h.outcomes().len(), 1, "the outcome was not written again");
    let listed = cli_json(&["dlq", "list", "--json"], &config);
    assert_eq!(listed[0]["delivered"], true, "{listed}");
    assert_eq!(listed[0]["delivery"], "delivered", "{listed}");

    // A third run has nothing left to deliver.
    assert_eq!(h.run_once(&config).status.code(), Some(2));
    assert_eq!(h.sim.webhooks().len(), 1);
}

#[test]
fn status_and_dlq_replay_end_to_end() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &permanent("r1") + &action("ok1", "");
    let config = h.write_config(&[], &batches);
    assert_eq!(h.run_once(&config).status.code(), Some(2));

    let status = cli_json(&["status", "--json"], &config);
    assert_eq!(status["batches"]["b"]["states"]["completed"], 1, "{status}");
    assert_eq!(status["batches"]["b"]["states"]["dead_lettered"], 1, "{status}");
    assert_eq!(status["dead_letters"]["total"], 1);

    let letters = cli_json(&["dlq", "list", "--json"], &config);
    let error_id = letters[0]["letter"]["error_id"].as_str().unwrap().to_owned();
    assert_eq!(letters[0]["letter"]["key"], "r1");

    let unknown = run_to_end(
        &mut daemon_cmd(&["dlq", "replay", "no-such-id"], &config),
        Duration::from_secs(20),
    );
    assert_eq!(unknown.status.code(), Some(1), "{}", show(&unknown));

    let replay = run_to_end(
        &mut daemon_cmd(&["dlq", "replay", &error_id], &config),
        Duration::from_secs(20),
    );
    assert_eq!(replay.status.code(), Some(0), "{}", show(&replay));
    let output = h.run_once(&config);
    assert_eq!(
        output.status.code(),
        Some(0),
        "the replayed action completed: {}",
        show(&output)
    );
    let r1: Vec<Value> = h.outcomes().into_iter().filter(|r| r["key"] == "r1").collect();
    assert_eq!(r1.len(), 2, "one outcome per resolution");
    assert_eq!(r1[1]["event_type"], "ACTION_COMPLETED");
    assert_eq!(
        h.sim.stats()["actions_created"],
        3,
        "the replay is a fresh attempt series"
    );
    let letters = cli_json(&["dlq", "list", "--json"], &config);
    assert_eq!(letters[0]["replayed"], true);
}

#[test]
fn dlq_replay_reaches_a_running_daemon() {
    let h = Harness::new(&["--profile", "clean"]);
    let config = h.write_config(&[], &(batch("b", "") + &permanent("live")));
    let mut daemon = h.spawn(&["run"], &config);
    wait_until(Duration::from_secs(20), "the dead letter", || {
        h.sim.webhooks().len() == 1
    });
    let status = cli_json(&["status", "--json"], &config);
    assert_eq!(
        status["batches"]["b"]["states"]["dead_lettered"], 1,
        "status reads while the daemon runs: {status}"
    );
    let letters = cli_json(&["dlq", "list", "--json"], &config);
    assert_eq!(letters.as_array().unwrap().len(), 1);
    let replay = run_to_end(
        &mut daemon_cmd(&["dlq", "replay", "--all"], &config),
        Duration::from_secs(20),
    );
    assert_eq!(replay.status.code(), Some(0), "{}", show(&replay));
    wait_until(Duration::from_secs(20), "the replayed action's completion", || {
        h.records("ACTION_COMPLETED", "live").len() == 1
    });
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(15)), Some(0));
}

#[test]
fn without_a_webhook_dead_letters_are_stored_not_pending() {
    let h = Harness::new(&["--profile", "clean"]);
    let config = h.write_config(
        &[("dead_letter", "webhook_url = \"\"")],
        &(batch("b", "") + &permanent("s1")),
    );
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    assert!(h.sim.webhooks().is_empty());
    let listed = cli_json(&["dlq", "list", "--json"], &config);
    assert_eq!(listed[0]["delivery"], "stored", "{listed}");
    let status = cli_json(&["status", "--json"], &config);
    assert_eq!(status["dead_letters"]["total"], 1);
    assert_eq!(status["dead_letters"]["undelivered"], 0, "{status}");
}

#[test]
fn unsigned_mode_sends_no_signature_header() {
    let h = Harness::unsigned(&["--profile", "clean"]);
    let dead_letter = format!("webhook_url = \"{}/sim/webhook\"\ndrain_timeout = \"20s\"", h.sim.url);
    let config = h.write_config(&[("dead_letter", &dead_letter)], &(batch("b", "") + &permanent("u1")));
    let output = run_to_end(
        daemon_cmd(&["run", "--once"], &config).env_remove(WEBHOOK_KEY_ENV),
        Duration::from_secs(60),
    );
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let hooks = h.sim.webhooks();
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    assert_eq!(hooks[0]["body"]["key"], "u1");
    assert_eq!(hooks[0]["signature_checked"], false);
    assert_eq!(
        hooks[0]["signature"],
        Value::Null,
        "no X-Actionwarden-Signature header: {hooks:#?}"
    );
}

#[test]
fn dlq_discard_while_stopped_is_applied_at_the_next_start_and_never_delivered() {
    let h = Harness::new(&["--profile", "clean"]);
    h.sim.post("/sim/control", json!({"webhook_down": true}));
    let dead_letter = format!(
        "webhook_url = \"{}/sim/webhook\"\nsigning_secret_env = \"{WEBHOOK_KEY_ENV}\"\ndrain_timeout = \"300ms\"",
        h.sim.url
    );
    let config = h.write_config(&[("dead_letter", &dead_letter)], &(batch("b", "") + &permanent("d1")));
    assert_eq!(h.run_once(&config).status.code(), Some(2));
    let letters = cli_json(&["dlq", "list", "--json"], &config);
    let error_id = letters[0]["letter"]["error_id"].as_str().unwrap().to_owned();
    assert_eq!(letters[0]["delivery"], "pending");

    let discard = run_to_end(
        &mut daemon_cmd(&["dlq", "discard", &error_id], &config),
        Duration::from_secs(20),
    );
    assert_eq!(discard.status.code(), Some(0), "{}", show(&discard));
    assert!(String::from_utf8_lossy(&discard.stdout).contains(&format!("discard requested: {error_id}")));
    for refused in [error_id.as_str(), "no-such-id"] {
        let again = run_to_end(
            &mut daemon_cmd(&["dlq", "discard", refused], &config),
            Duration::from_secs(20),
        );
        assert_eq!(
            again.status.code(),
            Some(1),
            "already requested or unknown: {}",
            show(&again)
        );
    }

    h.sim.post("/sim/control", json!({"webhook_down": false}));
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    assert!(h.sim.webhooks().is_empty(), "a discarded letter is never delivered");
    let listed = cli_json(&["dlq", "list", "--json"], &config);
    assert_eq!(listed[0]["delivery"], "discarded", "{listed}");
    assert_eq!(listed[0]["discarded"], true, "{listed}");
    assert_eq!(h.records("DEAD_LETTER_DISCARDED", "d1").len(), 1);
    let record = &h.records("DEAD_LETTER_DISCARDED", "d1")[0];
    assert_eq!(record["error_id"], error_id.as_str());
    assert_eq!(record["batch"], "b");

    // A later run neither delivers it nor audits the discard again.
    assert_eq!(h.run_once(&config).status.code(), Some(2));
    assert!(h.sim.webhooks().is_empty());
    assert_eq!(h.records("DEAD_LETTER_DISCARDED", "d1").len(), 1);
}
