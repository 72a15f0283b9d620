//! Hostile or struggling upstreams and misuse: rollback, the shared 429 gate, the request
//! budget, poll timeout, every response row of docs/cxone.md (Answers that are not
//! success), chaos, file modes, secret files.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const ROLLBACK_CLASSIFIER: &str = "retry = [\"TIMEOUT\"]\nrollback = [\"PARTIAL_*\"]\ndefault = \"DEAD_LETTER\"";

#[test]
fn rollback_compensates_with_metadata_and_resolves_rolled_back() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch(
        "b",
        "rollback_action = { actionType = \"UNDO\", payload = { op = \"undo\" }, metadata = { source = \"aw\" } }",
    ) + &action("k1", "outcome = \"FAILED\", code = \"PARTIAL_WRITE\"");
    let output = h.run_once(&h.write_config(&[("classifier", ROLLBACK_CLASSIFIER)], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let outcome = h.outcome("b", "k1");
    assert_eq!(outcome["event_type"], "ASYNC_ERROR_HANDLED");
    assert_eq!(outcome["resolution"], "ROLLED_BACK");
    assert_eq!(outcome["recovery_directive"], "ROLLBACK");
    assert_eq!(outcome["error_code"], "PARTIAL_WRITE");
    let created = h.sim.get("/sim/actions");
    let created = created.as_array().unwrap();
    assert_eq!(created.len(), 2);
    let compensation = &created[1];
    assert_eq!(compensation["metadata"]["compensates"], outcome["action_id"]);
    assert_eq!(compensation["metadata"]["key"], "b/k1");
    assert_eq!(
        compensation["metadata"]["source"], "aw",
        "the template's metadata is kept"
    );
    assert!(h.sim.webhooks().is_empty(), "a rollback is not a dead letter");
}

#[test]
fn failed_compensation_is_rollback_failed() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "rollback_action = { actionType = \"UNDO\", payload = { op = \"undo\", sim = { outcome = \"FAILED\", code = \"LOCKED\" } } }")
        + &action("k2", "outcome = \"FAILED\", code = \"PARTIAL_WRITE\"");
    let output = h.run_once(&h.write_config(&[("classifier", ROLLBACK_CLASSIFIER)], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let outcome = h.outcome("b", "k2");
    assert_eq!(outcome["error_code"], "ROLLBACK_FAILED");
    assert_eq!(outcome["resolution"], "DEAD_LETTERED");
    assert_eq!(h.sim.webhooks()[0]["body"]["error_code"], "ROLLBACK_FAILED");
}

#[test]
fn rollback_without_a_template_is_a_dead_letter_that_keeps_the_directive() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("k3", "outcome = \"FAILED\", code = \"PARTIAL_WRITE\"");
    let output = h.run_once(&h.write_config(&[("classifier", ROLLBACK_CLASSIFIER)], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let outcome = h.outcome("b", "k3");
    assert_eq!(outcome["recovery_directive"], "ROLLBACK");
    assert_eq!(outcome["resolution"], "DEAD_LETTERED");
    assert_eq!(h.sim.webhooks()[0]["body"]["recovery_directive"], "ROLLBACK");
}

/// `at_ms` of requests to `endpoint`, sorted.
fn times(requests: &[Value], endpoint: &str) -> Vec<(f64, u64)> {
    let mut t: Vec<(f64, u64)> = requests
        .iter()
        .filter(|r| r["endpoint"] == endpoint)
        .map(|r| (r["at_ms"].as_f64().unwrap(), r["status"].as_u64().unwrap_or(0)))
        .collect();
    t.sort_by(|a, b| a.0.total_cmp(&b.0));
    t
}

#[test]
fn a_429_pauses_every_poller_of_that_endpoint() {
    let h = Harness::new(&["--profile", "clean"]);
    let mut batches = batch("many", "");
    for i in 0..99 {
        batches.push_str(&action(&format!("k{i}"), "duration = \"2500ms\""));
    }
    batches.push_str(&action(
        "limited",
        "duration = \"2500ms\", poll_status = [429], retry_after = \"2\"",
    ));
    let poll = "initial_delay = \"100ms\"\ninterval = \"50ms\"\ntimeout = \"60s\"";
    let output = h.run_once(&h.write_config(&[("poll", poll)], &batches));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let polls = times(&h.sim.requests(), "poll");
    let (at, _) = *polls.iter().find(|(_, status)| *status == 429).expect("the 429");
    // Requests already on the wire when the 429 left may still arrive just after it.
    let inside: Vec<f64> = polls
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t > at + 300.0 && *t < at + 1900.0)
        .collect();
    assert!(
        inside.is_empty(),
        "{} polls inside the pause window after {at}ms: first {:?}",
        inside.len(),
        &inside[..inside.len().min(10)]
    );
    assert!(
        polls.iter().any(|(t, _)| *t >= at + 2000.0),
        "polling resumed after the pause"
    );
    assert_eq!(h.outcomes().len(), 100);
}

#[test]
fn requests_per_second_caps_every_cxone_request() {
    let h = Harness::new(&["--profile", "clean"]);
    let mut batches = batch("many", "");
    for i in 0..80 {
        batches.push_str(&action(&format!("k{i}"), ""));
    }
    let output = h.run_once(&h.write_config(&[("limits", "max_in_flight = 500\nrequests_per_second = 50")], &batches));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let requests = h.sim.requests();
    let mut api: Vec<f64> = requests
        .iter()
        .filter(|r| r["endpoint"] == "submit" || r["endpoint"] == "poll")
        .map(|r| r["at_ms"].as_f64().unwrap())
        .collect();
    api.sort_by(f64::total_cmp);
    assert!(api.len() >= 160, "{} requests", api.len());
    let busiest = api
        .iter()
        .map(|start| api.iter().filter(|t| **t >= *start && **t < start + 1000.0).count())
        .max()
        .unwrap();
    // One second holds at most 50 slots, plus the one at its edge; loose on purpose.
    assert!(busiest <= 60, "{busiest} requests within one second at 50/s");
    let span = api.last().unwrap() - api.first().unwrap();
    assert!(
        span >= (api.len() as f64 / 50.0 - 1.5) * 1000.0,
        "{} requests in {span}ms",
        api.len()
    );
}

#[test]
fn poll_timeout_dead_letters_the_action() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("slow", "duration = \"30s\"");
    let poll = "initial_delay = \"20ms\"\ninterval = \"50ms\"\ntimeout = \"400ms\"";
    let output = h.run_once(&h.write_config(&[("poll", poll)], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let outcome = h.outcome("b", "slow");
    assert_eq!(outcome["error_code"], "POLL_TIMEOUT");
    let latency = outcome["latency_seconds"].as_f64().unwrap();
    assert!((0.4..2.0).contains(&latency), "{latency}");
}

#[test]
fn oversize_poll_bodies_take_the_malformed_path() {
    let h = Harness::new(&["--profile", "clean"]);
    let long = "x".repeat(600);
    let batches = batch("b", "")
        + &action("big", &format!("outcome = \"FAILED\", code = \"TIMEOUT\", stack = [{{ function = \"f\", file = \"F\", line = 1, message = \"{long}\" }}]"));
    let cxone = format!(
        "base_url = \"{}\"\nclient_id = \"simulator\"\nclient_secret_env = \"{SECRET_ENV}\"\nmax_response_bytes = 512",
        h.sim.url
    );
    let output = h.run_once(&h.write_config(&[("cxone", &cxone)], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let outcome = h.outcome("b", "big");
    assert_eq!(outcome["error_code"], "MALFORMED_RESPONSE");
    assert_eq!(outcome["resolution"], "EXHAUSTED");
    assert_eq!(h.sim.stats()["actions_created"], 1, "never resubmitted");
}

#[test]
fn every_transient_status_is_repeated_with_the_same_key() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "")
        + &action("s408", "submit_status = [408]")
        + &action("s425", "submit_status = [425]")
        + &action("s500", "submit_status = [500, 502]")
        + &action("p503", "poll_status = [503, 504]")
        + &action("p404", "poll_status = [404]")
        + &action("s422", "submit_body_status = 422");
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    for (key, retries) in [("s408", 1), ("s425", 1), ("s500", 2), ("p503", 2)] {
        let outcome = h.outcome("b", key);
        assert_eq!(outcome["event_type"], "ACTION_COMPLETED", "{key}");
        assert_eq!(outcome["retry_count"], retries, "{key}");
        assert_eq!(outcome["attempts"], 1, "{key}: same attempt, same key");
    }
    assert_eq!(h.outcome("b", "p404")["error_code"], "ACTION_NOT_FOUND");
    let rejected = h.outcome("b", "s422");
    assert_eq!(
        rejected["error_code"], "VALIDATION_FAILED",
        "other 4xx: the body's code"
    );
    assert_eq!(rejected["status_code"], 422);
    assert_eq!(rejected["retry_count"], 0, "not retried");
    let stats = h.sim.stats();
    assert_eq!(stats["actions_created"], 5, "{stats}");
    assert_eq!(
        stats["submits_by_idempotency_key_max"], 3,
        "s500's three submits share one key: {stats}"
    );
}

#[test]
fn dropped_connections_are_network_errors_and_repeated() {
    let h = Harness::new(&["--profile", "clean", "--drop-rate", "0.3", "--seed", "7"]);
    let mut batches = batch("b", "");
    for i in 0..30 {
        batches.push_str(&format!(
            "  [[batch.action]]\n  key = \"d{i}\"\n  actionType = \"X\"\n  payload = {{ n = {i} }}\n\n"
        ));
    }
    let retry = "max_retries = 10\nbase_delay = \"5ms\"\nmax_delay = \"20ms\"\njitter = \"full\"";
    let output = h.run_once(&h.write_config(&[("retry", retry)], &batches));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_exactly_once(&h, 30);
    let network = h
        .audit()
        .iter()
        .filter(|r| r["event_type"] == "RETRY_SCHEDULED" && r["reason"] == "network_error")
        .count();
    assert!(network > 0, "drops were seen as network errors");
    assert!(h.sim.stats()["dropped"].as_u64().unwrap() > 0);
}

#[test]
fn request_timeouts_spend_the_budget_then_dead_letter() {
    let h = Harness::new(&["--profile", "clean", "--latency", "2s"]);
    let batches = batch("b", "") + "  [[batch.action]]\n  key = \"t1\"\n  actionType = \"X\"\n  payload = { n = 1 }\n";
    let cxone = format!("base_url = \"{}\"\nclient_id = \"simulator\"\nclient_secret_env = \"{SECRET_ENV}\"\nrequest_timeout = \"150ms\"", h.sim.url);
    let retry = "max_retries = 2\nbase_delay = \"5ms\"\nmax_delay = \"10ms\"\njitter = \"none\"";
    let output = h.run_once(&h.write_config(&[("cxone", &cxone), ("retry", retry)], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let outcome = h.outcome("b", "t1");
    assert_eq!(outcome["error_code"], "REQUEST_TIMEOUT");
    assert_eq!(outcome["status_code"], 0);
    assert_eq!(outcome["resolution"], "EXHAUSTED");
}

#[test]
fn chaos_profile_run_gives_every_action_exactly_one_outcome() {
    // Tokens live 2s and are all rejected after half of it: the 401 path runs too.
    let h = Harness::new(&[
        "--profile",
        "chaos",
        "--seed",
        "11",
        "--token-ttl",
        "2s",
        "--early-expiry-rate",
        "1.0",
    ]);
    let mut batches = batch("chaos", "");
    for i in 0..500 {
        batches.push_str(&format!(
            "  [[batch.action]]\n  key = \"c{i}\"\n  actionType = \"X\"\n  payload = {{ n = {i} }}\n\n"
        ));
    }
    let retry = "max_retries = 6\nbase_delay = \"5ms\"\nmax_delay = \"50ms\"\njitter = \"full\"";
    // The simulator's faults come from its seed 11; the daemon's jitter from this one.
    let seed = chaos_seed();
    let replay = format!("simulator seed 11, {}", replay_hint(seed));
    let chaos = format!("seed = {seed}");
    let output = h.run_once(&h.write_config(&[("retry", retry), ("chaos", &chaos)], &batches));
    assert!(
        matches!(output.status.code(), Some(0 | 2)),
        "{replay}\n{}",
        show(&output)
    );
    assert_exactly_once_or(&h, 500, &replay);
    let stats = h.sim.stats();
    assert!(
        stats["unauthorized"].as_u64().unwrap() > 0,
        "early token expiry was exercised: {stats}; {replay}"
    );
    assert!(
        stats["rate_limited"].as_u64().unwrap() > 0 && stats["dropped"].as_u64().unwrap() > 0,
        "{stats}; {replay}"
    );
}

#[cfg(unix)]
#[test]
fn journal_and_audit_files_are_private() {
    if common::pg::sqlite_only("journal_and_audit_files_are_private") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::new(&["--profile", "clean"]);
    let output = h.run_once(&h.write_config(&[], &(batch("b", "") + &action("m", ""))));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    for name in ["audit.jsonl", "actionwarden.journal", "actionwarden.journal.lock"] {
        let mode = std::fs::metadata(h.dir.path().join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
    }
}

#[test]
fn client_secret_file_is_read() {
    let h = Harness::new(&["--profile", "clean"]);
    let secret_file = h.dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SIM_SECRET}\n")).unwrap();
    let cxone = format!(
        "base_url = \"{}\"\nclient_id = \"simulator\"\nclient_secret_file = \"{}\"",
        h.sim.url,
        secret_file.display()
    );
    let config = h.write_config(&[("cxone", &cxone)], &(batch("b", "") + &action("f", "")));
    let output = run_to_end(
        daemon_cmd(&["run", "--once"], &config).env_remove(SECRET_ENV),
        Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
}

#[test]
fn a_refused_compensation_submit_is_rollback_failed_about_the_original_action() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch(
        "b",
        "rollback_action = { actionType = \"UNDO\", payload = { op = \"undo\", sim = { submit_status = [403] } } }",
    ) + &action("k4", "outcome = \"FAILED\", code = \"PARTIAL_WRITE\"");
    let output = h.run_once(&h.write_config(&[("classifier", ROLLBACK_CLASSIFIER)], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let outcome = h.outcome("b", "k4");
    assert_eq!(outcome["error_code"], "ROLLBACK_FAILED");
    let original = h.records("ACTION_SUBMITTED", "k4")[0]["action_id"].clone();
    assert_eq!(
        outcome["action_id"], original,
        "the dead letter is about the original action"
    );
    assert!(outcome["message"].as_str().unwrap().contains("FORBIDDEN"), "{outcome}");
    let frames = h.sim.webhooks()[0]["body"]["stack_trace"].clone();
    assert_eq!(frames[1]["function"], "FORBIDDEN", "the cause follows: {frames}");
}

/// A token endpoint that relays its first request to the simulator (shortening the
/// token's life to one second) and answers 503 to every later one.
fn failing_token_endpoint(sim_url: String) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break Vec::new();
                }
                request.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break request[end + 4..end + 4 + length].to_vec();
                    }
                }
            };
            let (status, reply) = if i == 0 {
                let mut token: Value = ureq::post(&format!("{sim_url}/oauth/token"))
                    .content_type("application/x-www-form-urlencoded")
                    .send(&body[..])
                    .unwrap()
                    .body_mut()
                    .read_json()
                    .unwrap();
                token["expires_in"] = 1.into();
                ("200 OK", token.to_string())
            } else {
                ("503 Service Unavailable", "{}".to_string())
            };
            let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}", reply.len());
        }
    });
    format!("http://{addr}/oauth/token")
}

#[test]
fn poll_timeout_holds_while_the_token_endpoint_is_down() {
    let h = Harness::new(&["--profile", "clean"]);
    let token_url = failing_token_endpoint(h.sim.url.clone());
    let cxone = format!(
        "base_url = \"{}\"\ntoken_url = \"{token_url}\"\nclient_id = \"simulator\"\nclient_secret_env = \"{SECRET_ENV}\"\ntoken_refresh_skew = \"100ms\"",
        h.sim.url
    );
    let poll = "initial_delay = \"50ms\"\ninterval = \"100ms\"\ntimeout = \"2s\"";
    let batches = batch("b", "") + &action("stuck", "duration = \"30s\"");
    let output = h.run_once(&h.write_config(&[("cxone", &cxone), ("poll", poll)], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let outcome = h.outcome("b", "stuck");
    assert_eq!(outcome["error_code"], "POLL_TIMEOUT");
    let latency = outcome["latency_seconds"].as_f64().unwrap();
    assert!((2.0..5.0).contains(&latency), "{latency}");
}

#[test]
fn budgets_spent_on_responses_name_the_response() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "")
        + &action("r429", "submit_status = [429, 429, 429, 429], retry_after = \"0\"")
        + &action("r503", "poll_status = [503, 503, 503, 503]")
        + &action("u401", "submit_status = [401]");
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let limited = h.outcome("b", "r429");
    assert_eq!(limited["error_code"], "RATE_LIMIT_EXHAUSTED");
    assert_eq!(limited["status_code"], 429);
    assert_eq!(limited["resolution"], "EXHAUSTED");
    assert_eq!(limited["retry_count"], 3);
    let unavailable = h.outcome("b", "r503");
    assert_eq!(unavailable["error_code"], "HTTP_503");
    assert_eq!(unavailable["status_code"], 503);
    assert_eq!(unavailable["resolution"], "EXHAUSTED");
    let refreshed = h.outcome("b", "u401");
    assert_eq!(
        refreshed["event_type"], "ACTION_COMPLETED",
        "a 401 on submit is repeated with a fresh token"
    );
    assert_eq!(refreshed["retry_count"], 0);
}

#[test]
fn network_errors_spend_the_budget_then_dead_letter() {
    let h = Harness::new(&["--profile", "clean", "--drop-rate", "1.0"]);
    let batches = batch("b", "") + "  [[batch.action]]\n  key = \"n1\"\n  actionType = \"X\"\n  payload = { n = 1 }\n";
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let outcome = h.outcome("b", "n1");
    assert_eq!(outcome["error_code"], "NETWORK_ERROR");
    assert_eq!(outcome["status_code"], 0);
    assert_eq!(outcome["resolution"], "EXHAUSTED");
    assert!(outcome["action_id"].is_null());
}

#[test]
fn polling_slows_down_with_backoff_factor_up_to_max_interval() {
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("long", "duration = \"2500ms\"");
    let poll = "initial_delay = \"10ms\"\ninterval = \"50ms\"\nbackoff_factor = 2.0\nmax_interval = \"400ms\"\ntimeout = \"30s\"";
    let output = h.run_once(&h.write_config(&[("poll", poll)], &batches));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let polls: Vec<f64> = times(&h.sim.requests(), "poll").into_iter().map(|(t, _)| t).collect();
    let gaps: Vec<f64> = polls.windows(2).map(|w| w[1] - w[0]).collect();
    // 50, 100, 200, 400, 400, ... ms: growing, then capped.
    assert!(gaps.len() >= 6, "{gaps:?}");
    assert!(gaps[0] >= 45.0 && gaps[0] < 95.0, "{gaps:?}");
    assert!(gaps[1] >= 95.0 && gaps[2] >= 195.0, "{gaps:?}");
    assert!(
        gaps[3..].iter().all(|g| *g >= 390.0 && *g < 700.0),
        "capped at max_interval: {gaps:?}"
    );
}

#[test]
fn check_allows_plain_http_to_a_remote_host_only_when_told() {
    let h = Harness::new(&["--profile", "clean"]);
    let cxone = "base_url = \"http://cxone.internal.example\"\nclient_id = \"x\"\nallow_insecure_http = true";
    let config = h.write_config(&[("cxone", cxone)], &(batch("b", "") + &action("k", "")));
    let output = run_to_end(&mut daemon_cmd(&["check"], &config), Duration::from_secs(20));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
}
