//! 429s on the submit and token endpoints: with `Retry-After` every request of that kind
//! waits it out, without one the action waits its backoff delay; either way the action
//! ends well. (The 429 on poll is in hardening.rs.)

mod common;

use common::*;
use serde_json::Value;

/// Requests to `endpoint` as (`at_ms`, status), in arrival order.
fn arrivals(h: &Harness, endpoint: &str) -> Vec<(f64, u64)> {
    let mut found: Vec<(f64, u64)> = h
        .sim
        .requests()
        .iter()
        .filter(|r| r["endpoint"] == endpoint)
        .map(|r| (r["at_ms"].as_f64().unwrap(), r["status"].as_u64().unwrap_or(0)))
        .collect();
    found.sort_by(|a, b| a.0.total_cmp(&b.0));
    found
}

/// A batch whose first action's first submit is answered 429 (`directive` adds to its
/// `sim`), followed by `others` quick actions, two in flight at a time so that submits
/// keep arriving while the 429's pause lasts.
fn limited_batch(directive: &str, others: usize) -> String {
    let mut text = batch("b", "") + &action("limited", &format!("submit_status = [429]{directive}"));
    for i in 0..others {
        text.push_str(&action(&format!("k{i:02}"), ""));
    }
    text
}

/// The arrival of the 429 and the submits that arrived up to `window` milliseconds after
/// it, leaving out the first `grace` ms (requests that passed the pause before the 429
/// came back).
fn submits_inside(h: &Harness, grace: f64, window: f64) -> (f64, Vec<f64>) {
    let submits = arrivals(h, "submit");
    let (at, _) = *submits.iter().find(|(_, status)| *status == 429).expect("the 429");
    let inside = submits
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t > at + grace && *t < at + window)
        .collect();
    (at, inside)
}

#[test]
fn a_429_on_submit_pauses_every_submit_for_its_retry_after() {
    let h = Harness::new(&["--profile", "clean"]);
    let config = h.write_config(
        &[("limits", "max_in_flight = 2")],
        &limited_batch(", retry_after = \"1\"", 30),
    );
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let (at, inside) = submits_inside(&h, 300.0, 950.0);
    assert!(
        inside.is_empty(),
        "submits inside the 1s pause after {at}ms: {inside:?}"
    );
    let submits = arrivals(&h, "submit");
    assert!(
        submits.iter().any(|(t, _)| *t >= at + 1000.0),
        "submitting resumed after the pause: {submits:?}"
    );
    assert_exactly_once(&h, 31);
    assert_eq!(h.outcome("b", "limited")["retry_count"], 1);
}

#[test]
fn a_429_without_retry_after_waits_the_backoff_delay() {
    let h = Harness::new(&["--profile", "clean", "--retry-after-form", "none"]);
    // Backoff of the first retry: min(600ms * 2, 2s) = 1.2s, without jitter.
    let retry = "max_retries = 3\nbase_delay = \"600ms\"\nbackoff_factor = 2.0\nmax_delay = \"2s\"\njitter = \"none\"";
    let config = h.write_config(
        &[("limits", "max_in_flight = 2"), ("retry", retry)],
        &limited_batch("", 30),
    );
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));

    let limited = h.outcome("b", "limited");
    assert_eq!(limited["event_type"], "ACTION_COMPLETED", "{limited}");
    assert_eq!(limited["retry_count"], 1, "{limited}");
    let scheduled = h.records("RETRY_SCHEDULED", "limited");
    assert_eq!(scheduled.len(), 1, "{scheduled:#?}");
    assert_eq!(scheduled[0]["reason"], "rate_limited");
    assert_eq!(scheduled[0]["delay_seconds"].as_f64(), Some(1.2), "{scheduled:#?}");
    assert!(
        limited["latency_seconds"].as_f64().unwrap() >= 1.2,
        "the action waited its backoff delay: {limited}"
    );
    // Every other submit pauses too, at least for the base delay (600ms).
    let (at, inside) = submits_inside(&h, 250.0, 580.0);
    assert!(inside.is_empty(), "submits inside the pause after {at}ms: {inside:?}");
    assert_exactly_once(&h, 31);
}

#[test]
fn a_429_from_the_token_endpoint_is_waited_out() {
    let h = Harness::new(&["--profile", "clean"]);
    // Longer than the token actor's own first retry delay, so only Retry-After explains it.
    let control: Value = serde_json::json!({"token_status": [429], "retry_after_secs": 2});
    h.sim.post("/sim/control", control);
    let mut batches = batch("b", "");
    for i in 0..3 {
        batches.push_str(&action(&format!("t{i}"), ""));
    }
    let output = h.run_once(&h.write_config(&[], &batches));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));

    let tokens = arrivals(&h, "token");
    assert_eq!(tokens.len(), 2, "one 429, then one token: {tokens:?}");
    assert_eq!(tokens[0].1, 429);
    assert_eq!(tokens[1].1, 200);
    let gap = tokens[1].0 - tokens[0].0;
    assert!(
        gap >= 1950.0,
        "the token request came back after {gap}ms, before Retry-After: 2"
    );
    let first_submit = arrivals(&h, "submit")[0].0;
    assert!(first_submit >= tokens[1].0, "no submit without a token");
    assert_exactly_once(&h, 3);
    assert_eq!(h.sim.stats()["tokens_issued"], 1);
}
