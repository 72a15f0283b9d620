//! The singleton actors (token, classifier, dead letters, audit) under chaos: each panic is
//! a supervised restart rebuilt from the journal, every promise still holds, and a crash
//! loop stops the daemon with exit 3.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;

/// `[chaos]` and `[supervisor]` tables: singletons of `actors` panic with `probability`.
fn chaos(probability: &str, actors: &str, seed: u64, max_restarts: u32) -> Vec<(&'static str, String)> {
    vec![
        (
            "chaos",
            format!(
                "enabled = true\nsingleton_panic_probability = {probability}\nsingleton_panic_actors = [{actors}]\nseed = {seed}"
            ),
        ),
        (
            "supervisor",
            format!("max_restarts = {max_restarts}\nrestart_window = \"60s\"\nrestart_backoff = \"1ms\""),
        ),
    ]
}

fn overrides<'a>(c: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    c.iter().map(|(t, b)| (*t, b.as_str())).collect()
}

/// Every singleton, as `singleton_panic_actors` names them.
const ALL: &str = "\"token\", \"classifier\", \"dead_letter\", \"audit\"";

#[test]
fn singleton_panics_keep_every_promise_over_500_mixed_actions() {
    let h = Harness::new(&[
        "--profile",
        "clean",
        "--webhook-fail-first",
        "20",
        "--token-ttl",
        "2s",
        "--token-latency",
        "200ms",
    ]);
    let seed = chaos_seed();
    let replay = replay_hint(seed);
    let mut c = chaos("0.02", ALL, seed, 1_000_000);
    c.push(("admin", "listen = \"127.0.0.1:0\"".into()));
    // Tokens live 2s (whole seconds, as OAuth counts them) and are refreshed 500ms before
    // they expire; each refresh takes 200ms, during which pollers ask the token actor.
    let cxone = format!(
        "base_url = \"{}\"\nclient_id = \"simulator\"\nclient_secret_env = \"{SECRET_ENV}\"\nrequest_timeout = \"2s\"\ntoken_refresh_skew = \"500ms\"",
        h.sim.url
    );
    c.push(("cxone", cxone));
    c.push((
        "classifier",
        "retry = [\"TIMEOUT\"]\nrollback = [\"PARTIAL_WRITE\"]".into(),
    ));
    let mut batches = batch(
        "mixed",
        "rollback_action = { actionType = \"UNDO\", payload = { op = \"undo\" } }",
    );
    for i in 0..500 {
        let fate = match i % 5 {
            0 | 1 => "duration = \"50ms\"",
            2 => "outcome = \"FAILED\", code = \"TIMEOUT\", times = 1",
            3 => "outcome = \"FAILED\", code = \"INVALID_CONTACT\"",
            _ => "outcome = \"FAILED\", code = \"PARTIAL_WRITE\"",
        };
        batches.push_str(&action(&format!("m{i:03}"), fate));
    }
    let config = h.write_config(&overrides(&c), &batches);
    let mut daemon = h.spawn(&["run"], &config);
    let url = daemon.admin_url();
    wait_until(Duration::from_secs(90), &format!("500 outcomes; {replay}"), || {
        h.outcomes().len() >= 500
    });
    wait_until(Duration::from_secs(60), &format!("100 deliveries; {replay}"), || {
        h.count("DEAD_LETTER_DELIVERED") >= 100
    });
    let restarts: HashMap<&str, f64> = ["token", "classifier", "dead_letter", "audit"]
        .into_iter()
        .map(|actor| {
            let n = metric(&url, "actionwarden_actor_restarts_total", &[("actor", actor)]);
            (actor, n.unwrap_or_else(|| panic!("no restart counter for {actor}")))
        })
        .collect();
    daemon.signal("TERM");
    assert_eq!(
        daemon.wait(Duration::from_secs(30)),
        Some(0),
        "{replay}\n{}",
        daemon.log_text()
    );

    assert_exactly_once_or(&h, 500, &replay);
    let outcomes = h.outcomes();
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for r in &outcomes {
        let kind = format!("{} {} {}", r["event_type"], r["resolution"], r["error_code"]);
        *kinds.entry(kind).or_default() += 1;
    }
    let replay = format!("{replay}; outcomes: {kinds:?}");
    let count = |f: &dyn Fn(&serde_json::Value) -> bool| outcomes.iter().filter(|r| f(r)).count();
    assert_eq!(count(&|r| r["event_type"] == "ACTION_COMPLETED"), 300, "{replay}");
    assert_eq!(count(&|r| r["resolution"] == "DEAD_LETTERED"), 100, "{replay}");
    assert_eq!(count(&|r| r["resolution"] == "ROLLED_BACK"), 100, "{replay}");

    let mut accepted: HashMap<String, usize> = HashMap::new();
    for hook in h.sim.webhooks() {
        *accepted.entry(hook["idempotency_key"].to_string()).or_default() += 1;
    }
    assert_eq!(accepted.len(), 100, "every dead letter reached the webhook; {replay}");
    let twice: Vec<_> = accepted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "accepted more than once: {twice:?}; {replay}");
    let delivered: std::collections::HashSet<String> = h
        .audit()
        .iter()
        .filter(|r| r["event_type"] == "DEAD_LETTER_DELIVERED")
        .map(|r| r["error_id"].to_string())
        .collect();
    assert_eq!(delivered.len(), 100, "one delivery record per letter; {replay}");
    assert_eq!(h.count("DEAD_LETTER_DELIVERED"), 100, "{replay}");
    assert_eq!(
        h.sim.stats()["actions_created"],
        700,
        "500 actions, 100 retries and 100 compensations; {replay}"
    );
    for (actor, n) in &restarts {
        assert!(*n > 0.0, "the {actor} actor never restarted ({restarts:?}); {replay}");
    }
    let log = daemon.log_text();
    assert!(
        log.contains("Actor restarted after a panic.") && log.contains("chaos: injected"),
        "each restart is logged with its panic message; {replay}"
    );
}

#[test]
fn the_token_actor_restarting_mid_refresh_answers_every_waiting_poller_one_request_at_a_time() {
    /// The token endpoint's latency: a refresh is in flight this long.
    const TOKEN_LATENCY_MS: u64 = 300;
    let h = Harness::new(&[
        "--profile",
        "clean",
        "--token-ttl",
        "1s",
        "--token-latency",
        &format!("{TOKEN_LATENCY_MS}ms"),
    ]);
    let seed = chaos_seed();
    let replay = replay_hint(seed);
    let c = chaos("0.3", "\"token\"", seed, 1_000_000);
    let mut batches = batch("t", "");
    for i in 0..60 {
        batches.push_str(&action(&format!("t{i:02}"), "duration = \"3s\""));
    }
    let output = h.run_once(&h.write_config(&overrides(&c), &batches));
    assert_eq!(output.status.code(), Some(0), "{replay}\n{}", show(&output));
    assert_exactly_once_or(&h, 60, &replay);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("The token request in flight goes on after the restart."),
        "the actor restarted while a refresh was in flight; {replay}\n{log}"
    );
    let mut token_at: Vec<u64> = h
        .sim
        .requests()
        .iter()
        .filter(|r| r["endpoint"] == "token")
        .map(|r| r["at_ms"].as_u64().expect("at_ms"))
        .collect();
    token_at.sort_unstable();
    assert!(token_at.len() >= 4, "tokens were refreshed: {token_at:?}; {replay}");
    for pair in token_at.windows(2) {
        // The next request starts only after the last one's answer, which takes the
        // latency (a millisecond of rounding either side).
        assert!(
            pair[1] - pair[0] + 2 >= TOKEN_LATENCY_MS,
            "two token requests in flight at once: {token_at:?}; {replay}"
        );
    }
}

#[test]
fn a_singleton_crash_loop_stops_the_daemon_with_exit_3_losing_nothing() {
    let h = Harness::new(&["--profile", "clean"]);
    let seed = chaos_seed();
    let replay = replay_hint(seed);
    let c = chaos("1.0", "\"audit\"", seed, 3);
    let mut batches = batch("loop", "");
    for i in 0..20 {
        batches.push_str(&action(&format!("l{i:02}"), "duration = \"200ms\""));
    }
    let started = Instant::now();
    let output = h.run_once(&h.write_config(&overrides(&c), &batches));
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(3), "{replay}\n{}", show(&output));
    assert!(took < Duration::from_secs(10), "stopped within a few seconds: {took:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot run: supervisor: the audit actor restarted 4 times"),
        "{stderr}"
    );

    // Nothing journaled is lost: the next run (without chaos) ends every action once,
    // submitting none again.
    let config = h.write_config(&[], &batches);
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(0), "{replay}\n{}", show(&output));
    assert_exactly_once_or(&h, 20, &replay);
    assert_eq!(h.sim.stats()["actions_created"], 20, "{replay}");
}
