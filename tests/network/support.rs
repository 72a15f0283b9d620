//! Helpers of the network tests: configs for a TLS front, runs of `run --once` with extra
//! environment, and the assertion that a misconfiguration stopped a run early.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::pki::{Pki, TlsFront};

/// How long `run --once` may take to give up on a misconfiguration ("a few seconds").
pub const GIVE_UP_WITHIN: Duration = Duration::from_secs(10);

/// The simulator's address.
pub fn sim_addr(h: &Harness) -> SocketAddr {
    h.sim
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("simulator address")
}

/// `[cxone]` for `base_url` with optional extra lines.
pub fn cxone(base_url: &str, extra: &str) -> String {
    format!(
        "base_url = \"{base_url}\"\nclient_id = \"simulator\"\nclient_secret_env = \"{SECRET_ENV}\"\nrequest_timeout = \"2s\"\ntoken_refresh_skew = \"100ms\"\n{extra}"
    )
}

/// A `KEY = "PATH"` line.
pub fn ca_line(key: &str, path: &Path) -> String {
    format!("{key} = \"{}\"\n", path.display())
}

/// `n` actions that complete, plus one that is dead-lettered (so the webhook is used).
pub fn batch_with_a_dead_letter(n: usize) -> String {
    let mut text = batch("b", "");
    for i in 0..n {
        text += &action(&format!("ok{i}"), "");
    }
    text + &action("dead", "outcome = \"FAILED\", code = \"INVALID_CONTACT\"")
}

/// One counter of the simulator's `/sim/stats`.
pub fn stat(h: &Harness, name: &str) -> u64 {
    h.sim.stats()[name].as_u64().unwrap_or_default()
}

/// `run --once` with extra environment variables: its output and how long it took.
pub fn run_once_with(config: &Path, env: &[(&str, &str)]) -> (std::process::Output, Duration) {
    let mut command = daemon_cmd(&["run", "--once"], config);
    for (name, value) in env {
        command.env(name, value);
    }
    let started = Instant::now();
    let output = run_to_end(&mut command, Duration::from_secs(60));
    (output, started.elapsed())
}

/// Asserts a `run --once` that stopped on a misconfiguration: exit 3, soon, with `needles`
/// in its stderr, nothing submitted and no retry spent.
pub fn assert_stopped_unspent(h: &Harness, output: &std::process::Output, took: Duration, needles: &[&str]) {
    assert_eq!(output.status.code(), Some(3), "{}", show(output));
    assert!(took < GIVE_UP_WITHIN, "took {took:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in needles {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}:\n{stderr}");
    }
    assert_eq!(stat(h, "submits"), 0, "nothing may be submitted");
    assert_eq!(h.count("RETRY_SCHEDULED"), 0, "no retry may be spent");
}

/// `[dead_letter]` for a webhook behind a TLS front whose CA is not trusted.
pub fn untrusted_webhook(h: &Harness) -> (TlsFront, String, String) {
    let front = TlsFront::start(sim_addr(h), &Pki::new().leaf(&["127.0.0.1"]));
    let webhook = format!(
        "webhook_url = \"https://127.0.0.1:{}/sim/webhook\"\nsigning_secret_env = \"{WEBHOOK_KEY_ENV}\"",
        front.port
    );
    let host = format!("127.0.0.1:{}", front.port);
    (front, webhook, host)
}
