//! Each outcome end to end: the daemon binary against the simulator over loopback.

mod common;

use std::collections::HashSet;

use common::*;

#[test]
fn happy_path_over_two_batches_fetches_one_token() {
    let h = Harness::new(&["--profile", "clean"]);
    let mut batches = batch("alpha", "");
    for k in ["a1", "a2", "a3"] {
        batches.push_str(&action(k, ""));
    }
    batches.push_str(&batch("beta", "max_in_flight = 1"));
    for k in ["b1", "b2"] {
        batches.push_str(&action(k, ""));
    }
    let config = h.write_config(&[], &batches);
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));

    let outcomes = h.outcomes();
    assert_eq!(outcomes.len(), 5, "{outcomes:#?}");
    let identities: HashSet<(String, String)> = outcomes
        .iter()
        .map(|r| {
            (
                r["batch"].as_str().unwrap().to_owned(),
                r["key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(identities.len(), 5, "one outcome per identity");
    for r in &outcomes {
        assert_eq!(r["event_type"], "ACTION_COMPLETED");
        assert_eq!(r["attempts"], 1);
        assert_eq!(r["retry_count"], 0);
        assert!(r["action_id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(r["latency_seconds"].as_f64().is_some());
        assert!(r["event_id"].as_str().is_some() && r["timestamp"].as_str().is_some());
    }
    let stats = h.sim.stats();
    assert_eq!(stats["tokens_issued"], 1, "{stats}");
    assert_eq!(stats["actions_created"], 5, "{stats}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("alpha") && stdout.contains("beta") && stdout.contains("p99"),
        "summary table missing: {stdout}"
    );
}

#[test]
fn header_only_id_is_polled() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("h1", "header_only = true");
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let outcome = h.outcome("b", "h1");
    assert_eq!(outcome["event_type"], "ACTION_COMPLETED");
    let submitted = h.records("ACTION_SUBMITTED", "h1");
    assert_eq!(submitted[0]["action_id"], outcome["action_id"]);
}

#[test]
fn failed_timeout_twice_then_completed_resubmits_with_new_keys() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("flaky", "outcome = \"FAILED\", code = \"TIMEOUT\", times = 2");
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));

    let outcome = h.outcome("b", "flaky");
    assert_eq!(outcome["event_type"], "ACTION_COMPLETED");
    assert_eq!(outcome["retry_count"], 2);
    assert_eq!(outcome["attempts"], 3);
    let submitted = h.records("ACTION_SUBMITTED", "flaky");
    assert_eq!(submitted.len(), 3);
    let keys: HashSet<&str> = submitted
        .iter()
        .map(|r| r["idempotency_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 3, "three distinct Idempotency-Keys: {submitted:#?}");
    let stats = h.sim.stats();
    assert_eq!(stats["submits"], 3, "{stats}");
    assert_eq!(stats["duplicate_submits"], 0, "{stats}");
    assert_eq!(h.records("RETRY_SCHEDULED", "flaky").len(), 2);
}

#[test]
fn permanent_failure_is_dead_lettered_with_signature_and_upstream_frames() {
    let h = Harness::new(&["--profile", "clean"]);
    let stack = r#"stack = [{ function = "CrmWriter.write", file = "CrmWriter.java", line = 88, message = "contact locked" }, { function = "Executor.run", file = "Executor.java", line = 12, message = "step 3" }]"#;
    let batches = batch("b", "")
        + &action(
            "bad",
            &format!("outcome = \"FAILED\", code = \"INVALID_CONTACT\", message = \"no such contact\", {stack}"),
        );
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));

    let outcome = h.outcome("b", "bad");
    assert_eq!(outcome["event_type"], "ASYNC_ERROR_HANDLED");
    assert_eq!(outcome["error_code"], "INVALID_CONTACT");
    assert_eq!(outcome["recovery_directive"], "DEAD_LETTER");
    assert_eq!(outcome["resolution"], "DEAD_LETTERED");
    assert_eq!(outcome["status_code"], 200);
    assert_eq!(outcome["retry_count"], 0);

    let hooks = h.sim.webhooks();
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    let hook = &hooks[0];
    assert_eq!(hook["signature_valid"], true);
    assert!(
        hook["signature"]
            .as_str()
            .is_some_and(|s| s.starts_with("t=") && s.contains(",v1=")),
        "{hook}"
    );
    let body = &hook["body"];
    assert_eq!(hook["idempotency_key"], body["error_id"]);
    assert_eq!(body["error_id"], outcome["error_id"]);
    assert_eq!(body["batch"], "b");
    assert_eq!(body["key"], "bad");
    assert_eq!(body["error_code"], "INVALID_CONTACT");
    assert_eq!(body["message"], "no such contact");
    assert_eq!(body["retry_exhausted"], false);
    let frames = body["stack_trace"].as_array().unwrap();
    assert_eq!(frames.len(), 2, "{frames:#?}");
    assert_eq!(frames[0]["frame_index"], 0);
    assert_eq!(frames[0]["function"], "CrmWriter.write");
    assert_eq!(frames[0]["file"], "CrmWriter.java");
    assert_eq!(frames[0]["line"], 88);
    assert_eq!(frames[1]["frame_index"], 1);
    assert_eq!(frames[1]["message"], "step 3");
    assert_eq!(h.records("DEAD_LETTER_DELIVERED", "bad").len(), 1);
}

#[test]
fn spent_retry_budget_is_exhausted() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("doomed", "outcome = \"FAILED\", code = \"SERVICE_UNAVAILABLE\"");
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let outcome = h.outcome("b", "doomed");
    assert_eq!(outcome["resolution"], "EXHAUSTED");
    assert_eq!(outcome["recovery_directive"], "DEAD_LETTER");
    assert_eq!(outcome["retry_count"], 3);
    assert_eq!(outcome["error_code"], "SERVICE_UNAVAILABLE");
    let hooks = h.sim.webhooks();
    assert_eq!(hooks[0]["body"]["retry_exhausted"], true);
    assert_eq!(hooks[0]["body"]["max_retries"], 3);
    assert_eq!(h.sim.stats()["submits"], 4, "first attempt plus three resubmissions");
}

/// Milliseconds between the first two submits the simulator saw.
fn gap_between_submits(h: &Harness) -> f64 {
    let submits: Vec<f64> = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r["endpoint"] == "submit")
        .map(|r| r["at_ms"].as_f64().unwrap())
        .collect();
    assert!(submits.len() >= 2, "expected a repeated submit: {submits:?}");
    submits[1] - submits[0]
}

#[test]
fn rate_limit_retry_after_seconds_is_honoured() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("r1", "submit_status = [429], retry_after = \"1\"");
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let gap = gap_between_submits(&h);
    assert!(gap >= 950.0, "repeat came after {gap}ms, before Retry-After: 1");
    let outcome = h.outcome("b", "r1");
    assert_eq!(outcome["retry_count"], 1);
    assert_eq!(outcome["attempts"], 1, "a 429 repeat is the same attempt");
    assert_eq!(h.sim.stats()["actions_created"], 1);
}

#[test]
fn rate_limit_retry_after_http_date_is_honoured() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("r2", "submit_status = [429], retry_after = \"date:2\"");
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    // An HTTP-date has one-second resolution: "2s from now" is at least 1s away.
    let gap = gap_between_submits(&h);
    assert!(gap >= 1000.0, "repeat came after {gap}ms, before the Retry-After date");
    assert_eq!(h.outcome("b", "r2")["event_type"], "ACTION_COMPLETED");
}

#[test]
fn token_expiry_mid_run_refreshes_without_failing_actions() {
    let h = Harness::new(&["--profile", "clean", "--token-ttl", "1s"]);
    let cxone = format!(
        "base_url = \"{}\"\nclient_id = \"simulator\"\nclient_secret_env = \"{SECRET_ENV}\"\ntoken_refresh_skew = \"500ms\"",
        h.sim.url
    );
    let mut batches = batch("b", "");
    for i in 0..5 {
        batches.push_str(&action(&format!("slow{i}"), "duration = \"2500ms\""));
    }
    let output = h.run_once(&h.write_config(&[("cxone", &cxone)], &batches));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(h.outcomes().len(), 5);
    assert!(h.outcomes().iter().all(|r| r["event_type"] == "ACTION_COMPLETED"));
    let stats = h.sim.stats();
    assert!(
        stats["tokens_issued"].as_u64().unwrap() >= 2,
        "token refreshed: {stats}"
    );
    assert_eq!(
        stats["unauthorized"], 0,
        "refreshed before it expired, not after a 401: {stats}"
    );
}

#[test]
fn forced_401_refreshes_once_and_repeats() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("u1", "poll_status = [401]");
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let outcome = h.outcome("b", "u1");
    assert_eq!(outcome["event_type"], "ACTION_COMPLETED");
    assert_eq!(outcome["retry_count"], 0, "the repeat after a 401 spends no retry");
    let stats = h.sim.stats();
    assert_eq!(stats["tokens_issued"], 2);
    assert_eq!(
        stats["submits"], 1,
        "the poll was repeated, nothing resubmitted: {stats}"
    );
    assert_eq!(stats["actions_created"], 1);
}

#[test]
fn second_401_with_a_fresh_token_is_unauthorized() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("u2", "poll_status = [401, 401]");
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let outcome = h.outcome("b", "u2");
    assert_eq!(outcome["error_code"], "UNAUTHORIZED");
    assert_eq!(outcome["status_code"], 401);
}

#[test]
fn forbidden_names_the_scope() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("f1", "submit_status = [403]") + &action("f2", "poll_status = [403]");
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let submit = h.outcome("b", "f1");
    assert_eq!(submit["error_code"], "FORBIDDEN");
    assert_eq!(submit["status_code"], 403);
    assert!(
        submit["message"].as_str().unwrap().contains("data:actions:write"),
        "{submit}"
    );
    assert!(submit["action_id"].is_null());
    let poll = h.outcome("b", "f2");
    assert_eq!(poll["error_code"], "FORBIDDEN");
    assert!(
        poll["message"].as_str().unwrap().contains("data:actions:read"),
        "{poll}"
    );
}

#[test]
fn malformed_poll_bodies_are_repeated() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("m1", "malformed_polls = 2") + &action("m2", "missing_status_polls = 1");
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let m1 = h.outcome("b", "m1");
    assert_eq!(m1["event_type"], "ACTION_COMPLETED");
    assert_eq!(m1["retry_count"], 2);
    assert_eq!(h.outcome("b", "m2")["retry_count"], 1);
    assert_eq!(h.sim.stats()["actions_created"], 2, "malformed polls never resubmit");
}

#[test]
fn malformed_polls_beyond_the_budget_are_dead_lettered() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("m3", "malformed_polls = 10");
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let outcome = h.outcome("b", "m3");
    assert_eq!(outcome["error_code"], "MALFORMED_RESPONSE");
    assert_eq!(outcome["resolution"], "EXHAUSTED");
}

#[test]
fn webhook_down_for_a_while_delivers_later_exactly_once() {
    let h = Harness::new(&["--profile", "clean", "--webhook-fail-first", "2"]);
    let batches = batch("b", "") + &action("w1", "outcome = \"FAILED\", code = \"INVALID_CONTACT\"");
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let hooks = h.sim.webhooks();
    assert_eq!(hooks.len(), 1, "delivered exactly once: {hooks:#?}");
    let delivered = h.records("DEAD_LETTER_DELIVERED", "w1");
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["attempts"], 3, "two refusals, then accepted");
    assert_eq!(delivered[0]["error_id"], hooks[0]["body"]["error_id"]);
}

#[test]
fn missing_action_id_is_dead_lettered_without_resubmitting() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("n1", "no_id = true");
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let outcome = h.outcome("b", "n1");
    assert_eq!(outcome["error_code"], "MISSING_ACTION_ID");
    assert_eq!(h.sim.stats()["submits"], 1);
}

#[test]
fn cancelled_action_is_an_outcome() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("c1", "outcome = \"CANCELLED\"");
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    assert_eq!(h.outcome("b", "c1")["event_type"], "ACTION_CANCELLED");
}

#[test]
fn hundred_concurrent_pollers_cause_one_token_request() {
    // Every token lives 2s and is refreshed 500ms early: all 100 pollers ask for one at
    // the same moments (start, then each refresh), so only single flight keeps it low.
    let h = Harness::new(&["--profile", "clean", "--token-ttl", "2s"]);
    let cxone = format!(
        "base_url = \"{}\"\nclient_id = \"simulator\"\nclient_secret_env = \"{SECRET_ENV}\"\ntoken_refresh_skew = \"500ms\"",
        h.sim.url
    );
    let mut batches = batch("many", "");
    for i in 0..100 {
        batches.push_str(&action(&format!("k{i}"), "duration = \"2500ms\""));
    }
    let output = h.run_once(&h.write_config(&[("cxone", &cxone)], &batches));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(h.outcomes().len(), 100);
    let stats = h.sim.stats();
    let issued = stats["tokens_issued"].as_u64().unwrap();
    assert!(
        (1..=4).contains(&issued),
        "{issued} token requests for 100 pollers over ~3s"
    );
    assert_eq!(stats["unauthorized"], 0, "refreshed before expiry: {stats}");
}

#[test]
fn rejected_credentials_exit_3_with_a_clear_message() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("x", "");
    let config = h.write_config(&[], &batches);
    let output = run_to_end(
        daemon_cmd(&["run", "--once"], &config).env(SECRET_ENV, "wrong-secret"),
        std::time::Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(3), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("credentials rejected"), "{stderr}");
    assert!(!stderr.contains("wrong-secret"), "the secret leaked: {stderr}");
    assert!(h.outcomes().is_empty(), "no action failed for it");
}

/// Most actions of `batch` (all batches: `None`) between submission and outcome at any
/// moment, from the audit timestamps.
fn max_concurrent(h: &Harness, batch_name: Option<&str>) -> usize {
    use time::format_description::well_known::Rfc3339;
    let at = |r: &serde_json::Value| {
        time::OffsetDateTime::parse(r["timestamp"].as_str().unwrap(), &Rfc3339)
            .unwrap()
            .unix_timestamp_nanos()
    };
    let mut events: Vec<(i128, i32)> = Vec::new();
    for r in h.audit().iter().filter(|r| batch_name.is_none_or(|b| r["batch"] == b)) {
        match r["event_type"].as_str().unwrap() {
            "ACTION_SUBMITTED" => events.push((at(r), 1)),
            "ACTION_COMPLETED" => events.push((at(r), -1)),
            _ => {}
        }
    }
    // At equal times, count the end first: a slot freed and reused in the same instant.
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, delta) in events {
        now += delta;
        max = max.max(now);
    }
    max as usize
}

#[test]
fn in_flight_limits_hold_per_batch_and_globally() {
    let h = Harness::new(&["--profile", "clean"]);
    let mut batches = batch("narrow", "max_in_flight = 2");
    for i in 0..8 {
        batches.push_str(&action(&format!("n{i}"), "duration = \"150ms\""));
    }
    batches.push_str(&batch("wide", ""));
    for i in 0..8 {
        batches.push_str(&action(&format!("w{i}"), "duration = \"150ms\""));
    }
    let output = h.run_once(&h.write_config(&[("limits", "max_in_flight = 5")], &batches));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(h.outcomes().len(), 16);
    let narrow = max_concurrent(&h, Some("narrow"));
    assert_eq!(narrow, 2, "the batch limit is used and never exceeded");
    let all = max_concurrent(&h, None);
    assert_eq!(all, 5, "the global limit is used and never exceeded");
}

#[test]
fn a_token_shorter_lived_than_the_skew_is_not_refetched_in_a_loop() {
    let h = Harness::new(&["--profile", "clean", "--token-ttl", "1s"]);
    let cxone = format!("base_url = \"{}\"\nclient_id = \"simulator\"\nclient_secret_env = \"{SECRET_ENV}\"\ntoken_refresh_skew = \"60s\"", h.sim.url);
    let batches = batch("b", "") + &action("t1", "duration = \"2500ms\"") + &action("t2", "duration = \"2500ms\"");
    let output = h.run_once(&h.write_config(&[("cxone", &cxone)], &batches));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let issued = h.sim.stats()["tokens_issued"].as_u64().unwrap();
    assert!((2..=8).contains(&issued), "{issued} tokens in 2.5s with a 1s lifetime");
}

#[test]
fn usage_errors_exit_1() {
    let output = run_to_end(
        std::process::Command::new(BIN).args(["run", "--bogus"]),
        std::time::Duration::from_secs(10),
    );
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    let output = run_to_end(
        std::process::Command::new(BIN).args(["dlq", "replay"]),
        std::time::Duration::from_secs(10),
    );
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    let output = run_to_end(
        std::process::Command::new(BIN).arg("--help"),
        std::time::Duration::from_secs(10),
    );
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn the_summary_table_counts_each_batchs_fates() {
    let h = Harness::new(&["--profile", "clean"]);
    let mixed = batch(
        "mixed",
        "rollback_action = { actionType = \"UNDO\", payload = { op = \"undo\" } }",
    ) + &action("ok", "")
        + &action("flaky", "outcome = \"FAILED\", code = \"TIMEOUT\", times = 1")
        + &action("limited", "submit_status = [429], retry_after = \"0\"")
        + &action("cancel", "outcome = \"CANCELLED\"")
        + &action("dead", "outcome = \"FAILED\", code = \"INVALID_CONTACT\"")
        + &action("undo", "outcome = \"FAILED\", code = \"PARTIAL_WRITE\"");
    let plain = batch("plain", "") + &action("p1", "") + &action("p2", "");
    let classifier = "retry = [\"TIMEOUT\"]\nrollback = [\"PARTIAL_WRITE\"]";
    let config = h.write_config(&[("classifier", classifier)], &(mixed + &plain));
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        summary_row(&stdout, "mixed"),
        SummaryRow {
            total: 6,
            completed: 3,
            cancelled: 1,
            dead_lettered: 1,
            rolled_back: 1,
            retries: 2,
            restarts: 0,
        },
        "{stdout}"
    );
    assert_eq!(
        summary_row(&stdout, "plain"),
        SummaryRow {
            total: 2,
            completed: 2,
            cancelled: 0,
            dead_lettered: 0,
            rolled_back: 0,
            retries: 0,
            restarts: 0,
        },
        "{stdout}"
    );
}

#[test]
fn summary_rows_read_the_same_in_plain_and_boxed_styles() {
    let expected = SummaryRow {
        total: 6,
        completed: 3,
        cancelled: 1,
        dead_lettered: 1,
        rolled_back: 1,
        retries: 2,
        restarts: 0,
    };
    let plain =
        "batch total completed cancelled dead-lettered rolled back retries restarts p50\nmixed 6 3 1 1 1 2 0 12ms\n";
    let boxed = "┌───────┬───────┐\n│ batch ┆ total │\n╞═══════╪═══════╡\n│ mixed ┆ 6 ┆ 3 ┆ 1 ┆ 1 ┆ 1 ┆ 2 ┆ 0 ┆ 12ms │\n└───────┴───────┘\n";
    let ascii = "+-------+\n| mixed | 6 | 3 | 1 | 1 | 1 | 2 | 0 | - |\n";
    for table in [plain, boxed, ascii] {
        assert_eq!(summary_row(table, "mixed"), expected, "{table}");
    }
}
