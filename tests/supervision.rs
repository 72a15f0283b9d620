//! Poller crashes: restart from the journaled state, crash loops, chaos.

mod common;

use common::*;

fn chaos(probability: &str, max_restarts: u32, seed: u64) -> [(&'static str, String); 3] {
    [
        (
            "chaos",
            format!("enabled = true\npoller_panic_probability = {probability}\nseed = {seed}"),
        ),
        (
            "supervisor",
            format!("max_restarts = {max_restarts}\nrestart_window = \"60s\"\nrestart_backoff = \"1ms\""),
        ),
        (
            "poll",
            "initial_delay = \"20ms\"\ninterval = \"30ms\"\ntimeout = \"60s\"".to_string(),
        ),
    ]
}

fn overrides<'a>(c: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    c.iter().map(|(t, b)| (*t, b.as_str())).collect()
}

#[test]
fn a_poller_panic_mid_poll_resumes_the_same_cxone_id() {
    let h = Harness::new(&["--profile", "clean"]);
    let seed = chaos_seed();
    let replay = replay_hint(seed);
    let c = chaos("0.3", 1000, seed);
    let mut batches = batch("b", "");
    for i in 0..10 {
        batches.push_str(&action(&format!("p{i}"), "duration = \"600ms\""));
    }
    let output = h.run_once(&h.write_config(&overrides(&c), &batches));
    assert_eq!(output.status.code(), Some(0), "{replay}\n{}", show(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&format!("chaos_seed={seed}")),
        "the seed is logged at start: {}",
        show(&output)
    );
    assert_exactly_once_or(&h, 10, &replay);
    assert!(
        h.outcomes().iter().all(|r| r["event_type"] == "ACTION_COMPLETED"),
        "{replay}"
    );
    let restarts = h.count("POLLER_RESTARTED");
    assert!(
        restarts >= 5,
        "chaos at 0.3 per step should crash pollers often ({restarts}); {replay}"
    );
    let stats = h.sim.stats();
    assert_eq!(
        stats["actions_created"], 10,
        "a restart never submits anew: {stats}; {replay}"
    );
    assert_eq!(
        stats["submits"], 10,
        "the simulator saw no second submit: {stats}; {replay}"
    );
    assert_eq!(stats["duplicate_submits"], 0, "{stats}; {replay}");
    for r in h.outcomes() {
        assert_eq!(r["attempts"], 1, "{r}; {replay}");
    }
}

#[test]
fn a_crash_loop_ends_in_poller_crash_loop() {
    let h = Harness::new(&["--profile", "clean"]);
    let c = chaos("1.0", 3, chaos_seed());
    let batches = batch("b", "") + &action("doomed", "");
    let output = h.run_once(&h.write_config(&overrides(&c), &batches));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let outcome = h.outcome("b", "doomed");
    assert_eq!(outcome["error_code"], "POLLER_CRASH_LOOP");
    assert_eq!(
        h.records("POLLER_RESTARTED", "doomed").len(),
        4,
        "three allowed restarts, the fourth ends it"
    );
    let hooks = h.sim.webhooks();
    let frames = hooks[0]["body"]["stack_trace"].as_array().unwrap().clone();
    assert!(frames.len() >= 4, "{frames:#?}");
    assert!(
        frames
            .iter()
            .all(|f| f["message"].as_str().unwrap().contains("chaos: injected poller panic")),
        "{frames:#?}"
    );
    assert_eq!(frames[1]["frame_index"], 1);
}

#[test]
fn chaos_run_resolves_every_action_exactly_once() {
    let h = Harness::new(&["--profile", "clean"]);
    let seed = chaos_seed();
    let replay = replay_hint(seed);
    let c = chaos("0.05", 1000, seed);
    let mut batches = batch("chaos", "");
    for i in 0..120 {
        batches.push_str(&action(&format!("c{i:03}"), "duration = \"100ms\""));
    }
    let output = h.run_once(&h.write_config(&overrides(&c), &batches));
    assert_eq!(output.status.code(), Some(0), "{replay}\n{}", show(&output));
    assert_exactly_once_or(&h, 120, &replay);
    assert!(h.count("POLLER_RESTARTED") > 0, "{replay}");
    assert_eq!(h.sim.stats()["actions_created"], 120, "{replay}");
}
