//! Corporate networks on loopback: private CAs, certificate failures, `CONNECT` proxies
//! with and without credentials, `NO_PROXY`, and the webhook through its own proxy.
//! Certificates are made per test; no outside network is used.

mod common;
#[path = "network/pki.rs"]
mod pki;
#[path = "network/proxy.rs"]
mod proxy;
#[path = "network/support.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use pki::{Pki, TlsFront};
use proxy::TestProxy;
use support::*;

/// A host name only the test proxy resolves: a direct connection to it cannot succeed.
const PROXIED_HOST: &str = "cxone.test";
/// Env var holding `user:password` for a configured proxy.
const PROXY_AUTH_ENV: &str = "AW_TEST_PROXY_AUTH";
/// What every request must carry.
const USER_AGENT: &str = concat!("actionwarden/", env!("CARGO_PKG_VERSION"));

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
