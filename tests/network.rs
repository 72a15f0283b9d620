//! Corporate networks on loopback: private CAs, certificate failures, `CONNECT` proxies
//! with and without credentials, `NO_PROXY`, and the webhook through its own proxy.
//! Certificates are made per test; no outside network is used.

mod common;
#[path = "network/pki.rs"]
mod pki;
#[path = "network/proxy.rs"]
mod proxy;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use pki::{Pki, TlsFront};
use proxy::TestProxy;

/// A host name only the test proxy resolves: a direct connection to it cannot succeed.
const PROXIED_HOST: &str = "cxone.test";
/// Env var holding `user:password` for a configured proxy.
const PROXY_AUTH_ENV: &str = "AW_TEST_PROXY_AUTH";
/// What every request must carry.
const USER_AGENT: &str = concat!("actionwarden/", env!("CARGO_PKG_VERSION"));
/// How long `run --once` may take to give up on a misconfiguration ("a few seconds").
const GIVE_UP_WITHIN: Duration = Duration::from_secs(10);

fn sim_addr(h: &Harness) -> SocketAddr {
    h.sim
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("simulator address")
}

/// `[cxone]` for `base_url` with optional extra lines.
fn cxone(base_url: &str, extra: &str) -> String {
    format!(
        "base_url = \"{base_url}\"\nclient_id = \"simulator\"\nclient_secret_env = \"{SECRET_ENV}\"\nrequest_timeout = \"2s\"\ntoken_refresh_skew = \"100ms\"\n{extra}"
    )
}

fn ca_line(key: &str, path: &Path) -> String {
    format!("{key} = \"{}\"\n", path.display())
}

/// `n` actions that complete, plus one that is dead-lettered (so the webhook is used).
fn batch_with_a_dead_letter(n: usize) -> String {
    let mut text = batch("b", "");
    for i in 0..n {
        text += &action(&format!("ok{i}"), "");
    }
    text + &action("dead", "outcome = \"FAILED\", code = \"INVALID_CONTACT\"")
}

fn stat(h: &Harness, name: &str) -> u64 {
    h.sim.stats()[name].as_u64().unwrap_or_default()
}

fn run_once_with(config: &Path, env: &[(&str, &str)]) -> (std::process::Output, Duration) {
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
fn assert_stopped_unspent(h: &Harness, output: &std::process::Output, took: Duration, needles: &[&str]) {
    assert_eq!(output.status.code(), Some(3), "{}", show(output));
    assert!(took < GIVE_UP_WITHIN, "took {took:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in needles {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}:\n{stderr}");
    }
    assert_eq!(stat(h, "submits"), 0, "nothing may be submitted");
    assert_eq!(h.count("RETRY_SCHEDULED"), 0, "no retry may be spent");
}

#[test]
fn a_private_ca_file_lets_a_batch_complete_over_tls() {
    let h = Harness::new(&["--profile", "clean"]);
    let pki = Pki::new();
    let front = TlsFront::start(sim_addr(&h), &pki.leaf(&["127.0.0.1"]));
    let ca = pki.write_ca(h.dir.path());
    let cx = cxone(&format!("https://127.0.0.1:{}", front.port), &ca_line("ca_file", &ca));
    let config = h.write_config(&[("cxone", &cx)], &batch_with_a_dead_letter(5));
    let output = h.run_once(&config);
    assert_eq!(
        output.status.code(),
        Some(2),
        "one action is dead-lettered: {}",
        show(&output)
    );
    assert_exactly_once(&h, 6);
    assert_eq!(h.count("ACTION_COMPLETED"), 5);
    assert_eq!(stat(&h, "submits"), 6);
    assert!(!front.peers().is_empty(), "the requests went through the TLS front");
}

#[test]
fn an_unknown_issuer_stops_run_once_with_exit_3_before_any_submit() {
    let h = Harness::new(&["--profile", "clean"]);
    let front = TlsFront::start(sim_addr(&h), &Pki::new().leaf(&["127.0.0.1"]));
    let config = h.write_config(
        &[("cxone", &cxone(&format!("https://127.0.0.1:{}", front.port), ""))],
        &batch_with_a_dead_letter(3),
    );
    let (output, took) = run_once_with(&config, &[]);
    let host = format!("127.0.0.1:{}", front.port);
    assert_stopped_unspent(&h, &output, took, &[&host, "unknown issuer", "cxone.ca_file"]);
    assert!(!front.peers().is_empty(), "the daemon did try the TLS front");
}

#[test]
fn a_certificate_for_another_name_stops_run_once_with_exit_3() {
    let h = Harness::new(&["--profile", "clean"]);
    let pki = Pki::new();
    let front = TlsFront::start(sim_addr(&h), &pki.leaf(&["other.test"]));
    let ca = pki.write_ca(h.dir.path());
    let cx = cxone(&format!("https://127.0.0.1:{}", front.port), &ca_line("ca_file", &ca));
    let config = h.write_config(&[("cxone", &cx)], &batch_with_a_dead_letter(3));
    let (output, took) = run_once_with(&config, &[]);
    let host = format!("127.0.0.1:{}", front.port);
    assert_stopped_unspent(&h, &output, took, &[&host, "not valid for that name", "other.test"]);
}

#[test]
fn https_proxy_carries_every_cxone_request_and_tls_still_verifies_the_target() {
    let h = Harness::new(&["--profile", "clean"]);
    let pki = Pki::new();
    let front = TlsFront::start(sim_addr(&h), &pki.leaf(&[PROXIED_HOST]));
    let proxy = TestProxy::start(&[(PROXIED_HOST, "127.0.0.1:0".parse().unwrap())], None);
    let ca = pki.write_ca(h.dir.path());
    let base = format!("https://{PROXIED_HOST}:{}", front.port);
    let config = h.write_config(
        &[("cxone", &cxone(&base, &ca_line("ca_file", &ca)))],
        &batch_with_a_dead_letter(5),
    );
    let env = [("HTTPS_PROXY", proxy.url()), ("HTTP_PROXY", proxy.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (output, _) = run_once_with(&config, &env);
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    assert_exactly_once(&h, 6);
    assert_eq!(h.count("ACTION_COMPLETED"), 5);

    let seen = proxy.seen();
    assert!(!seen.tunnels.is_empty());
    for tunnel in &seen.tunnels {
        assert_eq!(tunnel.target, format!("{PROXIED_HOST}:{}", front.port));
        assert_eq!(tunnel.user_agent, USER_AGENT);
    }
    // Every connection the TLS front accepted was opened by the proxy for a tunnel, and
    // the simulator answered every CXone request: all of them went through the proxy.
    let upstreams: Vec<SocketAddr> = seen.tunnels.iter().map(|t| t.upstream).collect();
    let peers = front.peers();
    assert!(
        peers.iter().all(|p| upstreams.contains(p)),
        "{peers:?} vs {upstreams:?}"
    );
    let by_endpoint = &h.sim.stats()["requests_by_endpoint"];
    assert!(by_endpoint["token"].as_u64() >= Some(1) && by_endpoint["submit"].as_u64() == Some(6));
    // The webhook is a loopback target: environment proxies never apply to it.
    assert!(seen.forwarded.is_empty(), "{:?}", seen.forwarded);
    assert_eq!(h.sim.webhooks().len(), 1);
}

#[test]
fn tls_through_a_tunnel_verifies_the_target_name() {
    let h = Harness::new(&["--profile", "clean"]);
    let pki = Pki::new();
    let front = TlsFront::start(sim_addr(&h), &pki.leaf(&["impostor.test"]));
    let proxy = TestProxy::start(&[(PROXIED_HOST, "127.0.0.1:0".parse().unwrap())], None);
    let ca = pki.write_ca(h.dir.path());
    let base = format!("https://{PROXIED_HOST}:{}", front.port);
    let config = h.write_config(
        &[("cxone", &cxone(&base, &ca_line("ca_file", &ca)))],
        &batch_with_a_dead_letter(2),
    );
    let (output, took) = run_once_with(&config, &[("HTTPS_PROXY", &proxy.url())]);
    assert_stopped_unspent(&h, &output, took, &[PROXIED_HOST, "not valid for that name"]);
    assert!(
        !proxy.seen().tunnels.is_empty(),
        "the tunnel was made; TLS refused the target"
    );
}

#[test]
fn a_wrong_proxy_password_stops_run_once_with_the_407_and_never_shows_the_password() {
    let h = Harness::new(&["--profile", "clean"]);
    let pki = Pki::new();
    let front = TlsFront::start(sim_addr(&h), &pki.leaf(&[PROXIED_HOST]));
    let proxy = TestProxy::start(
        &[(PROXIED_HOST, "127.0.0.1:0".parse().unwrap())],
        Some(("aw", "pw-right-51c2")),
    );
    let ca = pki.write_ca(h.dir.path());
    let base = format!("https://{PROXIED_HOST}:{}", front.port);
    let config = h.write_config(
        &[("cxone", &cxone(&base, &ca_line("ca_file", &ca)))],
        &batch_with_a_dead_letter(2),
    );
    let (output, took) = run_once_with(&config, &[("HTTPS_PROXY", &proxy.url_with("aw", "pw-wrong-7d0e"))]);
    let proxy_host = format!("127.0.0.1:{}", proxy.port);
    assert_stopped_unspent(
        &h,
        &output,
        took,
        &[&proxy_host, "407", "Proxy Authentication Required"],
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!all.contains("pw-wrong-7d0e"), "{all}");
    assert!(proxy.seen().refused >= 1);
    assert!(proxy.seen().tunnels.is_empty());
}

#[test]
fn a_configured_proxy_with_auth_env_wins_over_the_environment() {
    let h = Harness::new(&["--profile", "clean"]);
    let pki = Pki::new();
    let front = TlsFront::start(sim_addr(&h), &pki.leaf(&[PROXIED_HOST]));
    let proxy = TestProxy::start(
        &[(PROXIED_HOST, "127.0.0.1:0".parse().unwrap())],
        Some(("aw", "pw-right-51c2")),
    );
    let ca = pki.write_ca(h.dir.path());
    let extra = format!(
        "{}proxy = \"{}\"\nproxy_auth_env = \"{PROXY_AUTH_ENV}\"\n",
        ca_line("ca_file", &ca),
        proxy.url()
    );
    let config = h.write_config(
        &[(
            "cxone",
            &cxone(&format!("https://{PROXIED_HOST}:{}", front.port), &extra),
        )],
        &batch_with_a_dead_letter(3),
    );
    // The environment points at a port nobody listens on: only the key may be used.
    let (output, _) = run_once_with(
        &config,
        &[
            ("HTTPS_PROXY", "http://127.0.0.1:9"),
            (PROXY_AUTH_ENV, "aw:pw-right-51c2"),
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    assert_eq!(h.count("ACTION_COMPLETED"), 3);
    let seen = proxy.seen();
    assert!(!seen.tunnels.is_empty() && seen.refused == 0, "{seen:?}");
}

#[test]
fn no_proxy_exempts_a_host() {
    let h = Harness::new(&["--profile", "clean"]);
    let pki = Pki::new();
    let front = TlsFront::start(sim_addr(&h), &pki.leaf(&[PROXIED_HOST]));
    let proxy = TestProxy::start(&[(PROXIED_HOST, "127.0.0.1:0".parse().unwrap())], None);
    let ca = pki.write_ca(h.dir.path());
    let mut cx = cxone(
        &format!("https://{PROXIED_HOST}:{}", front.port),
        &ca_line("ca_file", &ca),
    );
    cx.push_str("allow_insecure_http = true\n");
    // 0.0.0.0 reaches this machine but is not a loopback name, so without the NO_PROXY
    // entry the webhook would go to the proxy.
    let webhook = format!(
        "webhook_url = \"http://0.0.0.0:{}/sim/webhook\"\nsigning_secret_env = \"{WEBHOOK_KEY_ENV}\"\ndrain_timeout = \"20s\"",
        sim_addr(&h).port()
    );
    let config = h.write_config(
        &[("cxone", &cx), ("dead_letter", &webhook)],
        &batch_with_a_dead_letter(2),
    );
    let env = [
        ("HTTPS_PROXY", proxy.url()),
        ("HTTP_PROXY", proxy.url()),
        ("NO_PROXY", "example.com, 0.0.0.0".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (output, _) = run_once_with(&config, &env);
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    assert_eq!(h.sim.webhooks().len(), 1, "the dead letter arrived directly");
    let seen = proxy.seen();
    assert!(seen.forwarded.is_empty(), "{:?}", seen.forwarded);
    assert!(!seen.tunnels.is_empty(), "CXone itself still went through the proxy");
}

#[test]
fn dead_letters_go_through_the_dead_letter_proxy_with_credentials() {
    let h = Harness::new(&["--profile", "clean"]);
    let proxy = TestProxy::start(&[], Some(("hook", "pw-hook-33a9")));
    let webhook = format!(
        "webhook_url = \"{}/sim/webhook\"\nsigning_secret_env = \"{WEBHOOK_KEY_ENV}\"\ndrain_timeout = \"20s\"\nproxy = \"{}\"\nproxy_auth_env = \"{PROXY_AUTH_ENV}\"",
        h.sim.url,
        proxy.url()
    );
    let mut batches = batch("b", "") + &action("ok", "");
    for i in 0..3 {
        batches += &action(&format!("dead{i}"), "outcome = \"FAILED\", code = \"INVALID_CONTACT\"");
    }
    let config = h.write_config(&[("dead_letter", &webhook)], &batches);
    let (output, _) = run_once_with(&config, &[(PROXY_AUTH_ENV, "hook:pw-hook-33a9")]);
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let received = h.sim.webhooks();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|w| w["signature_valid"] == true), "{received:#?}");
    let seen = proxy.seen();
    assert_eq!(seen.forwarded.len() as u64, stat(&h, "webhooks_received"), "{seen:?}");
    for request in &seen.forwarded {
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.url,
            format!("{}/sim/webhook", h.sim.url),
            "absolute-form target"
        );
        assert_eq!(request.user_agent, USER_AGENT);
    }
    assert!(
        seen.tunnels.is_empty(),
        "CXone is not proxied: the key is the webhook's only"
    );
}

/// `[dead_letter]` for a webhook behind a TLS front whose CA is not trusted.
fn untrusted_webhook(h: &Harness) -> (TlsFront, String, String) {
    let front = TlsFront::start(sim_addr(h), &Pki::new().leaf(&["127.0.0.1"]));
    let webhook = format!(
        "webhook_url = \"https://127.0.0.1:{}/sim/webhook\"\nsigning_secret_env = \"{WEBHOOK_KEY_ENV}\"",
        front.port
    );
    let host = format!("127.0.0.1:{}", front.port);
    (front, webhook, host)
}

#[test]
fn a_webhook_certificate_failure_makes_readyz_503_naming_host_and_reason() {
    let h = Harness::new(&["--profile", "clean"]);
    let (_front, webhook, host) = untrusted_webhook(&h);
    let admin = "listen = \"127.0.0.1:0\"";
    let config = h.write_config(
        &[("dead_letter", &webhook), ("admin", admin)],
        &batch_with_a_dead_letter(1),
    );
    let daemon = h.spawn(&["run"], &config);
    let url = admin_url(&daemon);
    wait_until(
        Duration::from_secs(20),
        "readiness to name the webhook's certificate",
        || {
            let (code, body) = status_of(&format!("{url}/readyz"));
            let reason = body["reason"].as_str().unwrap_or_default().to_owned();
            code == 503 && reason.contains("webhook") && reason.contains(&host) && reason.contains("unknown issuer")
        },
    );
    let log = daemon.log_text();
    assert!(log.contains(&host) && log.contains("dead_letter.ca_file"), "{log}");
}

#[test]
fn a_webhook_certificate_failure_makes_run_once_exit_3() {
    let h = Harness::new(&["--profile", "clean"]);
    let (_front, webhook, host) = untrusted_webhook(&h);
    let config = h.write_config(&[("dead_letter", &webhook)], &batch_with_a_dead_letter(1));
    let (output, took) = run_once_with(&config, &[]);
    assert_eq!(output.status.code(), Some(3), "{}", show(&output));
    assert!(took < GIVE_UP_WITHIN, "took {took:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&host) && stderr.contains("unknown issuer"), "{stderr}");
    assert!(h.sim.webhooks().is_empty());
}

#[test]
fn a_configured_proxy_carries_plain_http_in_absolute_form_on_kept_alive_connections() {
    let h = Harness::new(&["--profile", "clean"]);
    let proxy = TestProxy::start(&[], None);
    // A loopback target still takes the proxy when the key names it.
    let cx = cxone(&h.sim.url, &format!("proxy = \"{}\"\n", proxy.url()));
    let config = h.write_config(&[("cxone", &cx)], &batch_with_a_dead_letter(8));
    let (output, _) = run_once_with(&config, &[]);
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    assert_eq!(h.count("ACTION_COMPLETED"), 8);

    let seen = proxy.seen();
    let by_endpoint = h.sim.stats()["requests_by_endpoint"].clone();
    let cxone_requests: u64 = ["token", "submit", "poll"]
        .iter()
        .map(|e| by_endpoint[e].as_u64().unwrap_or_default())
        .sum();
    assert_eq!(
        seen.forwarded.len() as u64,
        cxone_requests,
        "every CXone request went through the proxy"
    );
    for request in &seen.forwarded {
        assert!(request.url.starts_with(&format!("{}/", h.sim.url)), "{request:?}");
        assert_eq!(request.user_agent, USER_AGENT);
    }
    let mut per_connection = std::collections::HashMap::new();
    for request in &seen.forwarded {
        *per_connection.entry(request.connection).or_insert(0) += 1;
    }
    assert!(
        per_connection.values().any(|n| *n > 1),
        "a kept-alive connection carried several requests: {per_connection:?}"
    );
    assert!(
        seen.forwarded.iter().all(|r| !r.url.ends_with("/sim/webhook")),
        "the webhook has no proxy"
    );
    assert_eq!(h.sim.webhooks().len(), 1);
}

#[test]
fn check_shows_each_host_route_without_credentials_and_refuses_a_bad_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = "[cxone]\nbase_url = \"https://api.example.com\"\nclient_secret_env = \"X\"\ntoken_url = \"https://auth.corp.example/token\"\n[dead_letter]\nwebhook_url = \"https://hooks.example.net/dl\"\nproxy = \"http://dl-proxy:8080\"\n[[batch]]\nname = \"b\"\n  [[batch.action]]\n  actionType = \"X\"\n";
    std::fs::write(&path, text).unwrap();
    let mut command = daemon_cmd(&["check"], &path);
    command
        .env("HTTPS_PROXY", "http://jo:pw-a81f@proxy.corp.example:3128")
        .env("NO_PROXY", ".corp.example");
    let output = run_to_end(&mut command, Duration::from_secs(20));
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("pw-a81f") && !stdout.contains("jo:"), "{stdout}");
    let line = |key: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or_default()
    };
    assert!(
        line("cxone.base_url").ends_with("through proxy http://proxy.corp.example:3128 (HTTPS_PROXY)"),
        "{stdout}"
    );
    assert!(
        line("cxone.token_url").ends_with("direct (NO_PROXY entry \".corp.example\")"),
        "{stdout}"
    );
    assert!(
        line("dead_letter.webhook_url").ends_with("through proxy http://dl-proxy:8080 (dead_letter.proxy)"),
        "{stdout}"
    );

    std::fs::write(dir.path().join("not-a-ca.pem"), "hello\n").unwrap();
    let bad = text.replace(
        "[dead_letter]\n",
        &format!("ca_file = \"{}/not-a-ca.pem\"\n[dead_letter]\n", dir.path().display()),
    );
    std::fs::write(&path, bad).unwrap();
    let output = run_to_end(&mut daemon_cmd(&["check"], &path), Duration::from_secs(20));
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:5:1: cxone.ca_file:", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("holds no certificate"), "{stderr}");
}
