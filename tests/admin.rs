//! The admin server: metrics, health, readiness, journal views, replay, logs, secrets.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::Value;

const ADMIN_TOKEN_ENV: &str = "AW_TEST_ADMIN_TOKEN";
const ADMIN_TOKEN: &str = "admin-token-5d1f0c";

fn admin_overrides(extra_token: bool) -> String {
    if extra_token {
        format!("listen = \"127.0.0.1:0\"\ntoken_env = \"{ADMIN_TOKEN_ENV}\"")
    } else {
        "listen = \"127.0.0.1:0\"".to_string()
    }
}

fn every_outcome_kind() -> String {
    batch(
        "mixed",
        "rollback_action = { actionType = \"UNDO\", payload = { op = \"undo\", sim = { outcome = \"COMPLETED\" } } }",
    ) + &action("ok1", "")
        + &action("ok2", "outcome = \"FAILED\", code = \"TIMEOUT\", times = 1")
        + &action("cancel", "outcome = \"CANCELLED\"")
        + &action("dead", "outcome = \"FAILED\", code = \"INVALID_CONTACT\"")
        + &action("undo", "outcome = \"FAILED\", code = \"PARTIAL_WRITE\"")
        + &action("limited", "submit_status = [429], retry_after = \"0\"")
}

fn post_status(url: &str, token: Option<&str>) -> u16 {
    let mut request = ureq::post(url).config().http_status_as_error(false).build();
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    request.send_empty().expect("POST").status().as_u16()
}

#[test]
fn metrics_match_the_audit_file_and_parse_as_prometheus_text() {
    let h = Harness::new(&["--profile", "clean"]);
    let admin = admin_overrides(false);
    let classifier = "retry = [\"TIMEOUT\"]\nrollback = [\"PARTIAL_WRITE\"]\ndefault = \"DEAD_LETTER\"";
    let config = h.write_config(&[("admin", &admin), ("classifier", classifier)], &every_outcome_kind());
    let mut daemon = h.spawn(&["run"], &config);
    let url = daemon.admin_url();
    wait_until(Duration::from_secs(30), "every outcome", || h.outcomes().len() == 6);
    wait_until(Duration::from_secs(10), "dead letter delivered", || {
        h.count("DEAD_LETTER_DELIVERED") == 1
    });

    let text = ureq::get(&format!("{url}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition format");
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape.samples.iter().find_map(|s| {
            let matches = s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v));
            let number = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            matches.then_some(number)
        })
    };
    for name in [
        "actionwarden_actions_submitted_total",
        "actionwarden_actions_finished_total",
        "actionwarden_action_retries_total",
        "actionwarden_action_duration_seconds_bucket",
        "actionwarden_actions_in_flight",
        "actionwarden_http_requests_total",
        "actionwarden_http_request_duration_seconds_bucket",
        "actionwarden_rate_limited_total",
        "actionwarden_poller_restarts_total",
        "actionwarden_token_refreshes_total",
        "actionwarden_dead_letters_total",
        "actionwarden_dead_letters_undelivered",
        "actionwarden_audit_records_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    promtool_check(&text);
    // The parser skips what it cannot read: check every line's shape ourselves.
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        assert!(is_sample_line(line), "not a Prometheus sample line: {line:?}");
    }
    for (name, labels) in [
        (
            "actionwarden_http_requests_total",
            &[("endpoint", "submit"), ("status", "202")][..],
        ),
        (
            "actionwarden_http_request_duration_seconds",
            &[("endpoint", "poll")][..],
        ),
        (
            "actionwarden_action_duration_seconds",
            &[("batch", "mixed"), ("outcome", "completed")][..],
        ),
        ("actionwarden_poller_restarts_total", &[("batch", "mixed")][..]),
    ] {
        assert!(
            scrape
                .samples
                .iter()
                .any(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))),
            "{name} with labels {labels:?} missing"
        );
    }
    let mut audit_counts: HashMap<&str, f64> = HashMap::new();
    for r in h.outcomes() {
        let outcome = match (r["event_type"].as_str().unwrap(), r["resolution"].as_str()) {
            ("ACTION_COMPLETED", _) => "completed",
            ("ACTION_CANCELLED", _) => "cancelled",
            (_, Some("ROLLED_BACK")) => "rolled_back",
            _ => "dead_lettered",
        };
        *audit_counts.entry(outcome).or_default() += 1.0;
    }
    for outcome in ["completed", "cancelled", "dead_lettered", "rolled_back"] {
        let metric = value(
            "actionwarden_actions_finished_total",
            &[("batch", "mixed"), ("outcome", outcome)],
        );
        assert_eq!(
            metric,
            Some(audit_counts.get(outcome).copied().unwrap_or(0.0)),
            "{outcome}"
        );
    }
    assert_eq!(audit_counts.get("completed"), Some(&3.0));
    assert_eq!(
        value("actionwarden_actions_submitted_total", &[("batch", "mixed")]),
        Some(h.count("ACTION_SUBMITTED") as f64)
    );
    assert_eq!(
        value(
            "actionwarden_dead_letters_total",
            &[("batch", "mixed"), ("error_code", "INVALID_CONTACT")]
        ),
        Some(1.0)
    );
    assert_eq!(value("actionwarden_dead_letters_undelivered", &[]), Some(0.0));
    assert_eq!(
        value("actionwarden_rate_limited_total", &[("endpoint", "submit")]),
        Some(1.0)
    );
    assert_eq!(
        value("actionwarden_token_refreshes_total", &[("result", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            "actionwarden_action_retries_total",
            &[("batch", "mixed"), ("reason", "failed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value("actionwarden_actions_in_flight", &[("batch", "mixed")]),
        Some(0.0)
    );
    let audit_total: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "actionwarden_audit_records_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(
        audit_total,
        h.audit().len() as f64,
        "audit records metric matches the file"
    );

    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(15)), Some(0));
}

#[test]
fn health_and_readiness() {
    let h = Harness::new(&["--profile", "clean"]);
    // A token endpoint that accepts connections and never answers: no token yet.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cxone = format!(
        "base_url = \"{}\"\ntoken_url = \"http://{}/oauth/token\"\nclient_id = \"simulator\"\nclient_secret_env = \"{SECRET_ENV}\"\nrequest_timeout = \"30s\"",
        h.sim.url,
        silent.local_addr().unwrap()
    );
    let admin = admin_overrides(false);
    let config = h.write_config(
        &[("admin", &admin), ("cxone", &cxone)],
        &(batch("b", "") + &action("x", "")),
    );
    let daemon = h.spawn(&["run"], &config);
    let url = daemon.admin_url();
    assert_eq!(status_of(&format!("{url}/healthz")).0, 200);
    let (code, body) = status_of(&format!("{url}/readyz"));
    assert_eq!(code, 503, "{body}");
    assert!(body["reason"].as_str().unwrap().contains("no token"), "{body}");
    drop(daemon);

    // Rejected credentials.
    let config = h.write_config(&[("admin", &admin)], &(batch("b", "") + &action("x", "")));
    let daemon = h.spawn_with(&["run"], &config, &[(SECRET_ENV, "wrong")]);
    let url = daemon.admin_url();
    wait_until(Duration::from_secs(10), "readiness to report the rejection", || {
        let (code, body) = status_of(&format!("{url}/readyz"));
        code == 503
            && body["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("credentials rejected")
    });
    drop(daemon);

    // Running.
    let mut daemon = h.spawn(&["run"], &config);
    let url = daemon.admin_url();
    wait_until(Duration::from_secs(10), "ready", || {
        status_of(&format!("{url}/readyz")).0 == 200
    });
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(15)), Some(0));
}

#[test]
fn journal_views_and_replay_endpoint() {
    let h = Harness::new(&["--profile", "clean"]);
    let admin = admin_overrides(true);
    let batches = batch("b", "")
        + &action("good", "")
        + &action("bad", "outcome = \"FAILED\", code = \"INVALID_CONTACT\", times = 1");
    let config = h.write_config(&[("admin", &admin)], &batches);
    let mut daemon = h.spawn_with(&["run"], &config, &[(ADMIN_TOKEN_ENV, ADMIN_TOKEN)]);
    let url = daemon.admin_url();
    wait_until(Duration::from_secs(20), "both outcomes", || h.outcomes().len() == 2);

    let (code, all) = status_of(&format!("{url}/v1/actions"));
    assert_eq!(code, 200);
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    assert_eq!(all["next"], Value::Null);
    let (_, dead) = status_of(&format!("{url}/v1/actions?batch=b&state=dead_lettered"));
    assert_eq!(dead["items"].as_array().unwrap().len(), 1, "{dead}");
    let (code, one) = status_of(&format!("{url}/v1/actions/b/good"));
    assert_eq!(code, 200);
    assert_eq!(one["state"], "completed");
    assert_eq!(one["outcome"], "completed");
    assert_eq!(status_of(&format!("{url}/v1/actions/b/nope")).0, 404);
    let (code, reason) = status_of(&format!("{url}/v1/actions?state=bogus"));
    assert_eq!(code, 400);
    assert!(reason["error"].as_str().unwrap().contains("bogus"), "{reason}");
    let (code, reason) = status_of(&format!("{url}/v1/actions?after=not-a-cursor"));
    assert_eq!(code, 400, "{reason}");
    assert_eq!(status_of(&format!("{url}/v1/dead-letters?after=zz")).0, 400);
    let (code, letters) = status_of(&format!("{url}/v1/dead-letters"));
    assert_eq!(code, 200);
    let error_id = letters["items"][0]["letter"]["error_id"].as_str().unwrap().to_owned();

    let replay = format!("{url}/v1/dead-letters/{error_id}/replay");
    assert_eq!(post_status(&replay, None), 401);
    assert_eq!(post_status(&replay, Some("wrong-token")), 401);
    assert_eq!(post_status(&replay, Some(ADMIN_TOKEN)), 200);
    wait_until(Duration::from_secs(20), "the replayed action's outcome", || {
        h.records("ACTION_COMPLETED", "bad").len() == 1
    });
    assert_eq!(post_status(&replay, Some(ADMIN_TOKEN)), 404, "already replayed");
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(15)), Some(0));
}

#[test]
fn replay_is_refused_without_a_configured_token() {
    let h = Harness::new(&["--profile", "clean"]);
    let admin = admin_overrides(false);
    let config = h.write_config(&[("admin", &admin)], &(batch("b", "") + &action("x", "")));
    let daemon = h.spawn(&["run"], &config);
    let url = daemon.admin_url();
    assert_eq!(
        post_status(&format!("{url}/v1/dead-letters/abc/replay"), Some("anything")),
        403
    );
}

#[test]
fn json_logs_carry_the_action_and_no_secret_leaks_anywhere() {
    let secret = "client-secret-7a9e2b";
    let h = Harness::new(&["--profile", "clean"]);
    // A simulator that expects our unique client secret.
    let sim = {
        let mut child = std::process::Command::new(BIN)
            .args([
                "simulate",
                "--listen",
                "127.0.0.1:0",
                "--profile",
                "clean",
                "--client-secret-env",
                "AW_SIM_SECRET",
            ])
            .env("AW_SIM_SECRET", secret)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        (child, line.trim().trim_start_matches("listening on ").to_owned())
    };
    let (mut sim_child, sim_url) = sim;
    let admin = admin_overrides(true);
    let cxone = format!("base_url = \"{sim_url}\"\nclient_id = \"simulator\"\nclient_secret_env = \"{SECRET_ENV}\"");
    let dl = format!("webhook_url = \"{sim_url}/sim/webhook\"\nsigning_secret_env = \"{WEBHOOK_KEY_ENV}\"");
    let config = h.write_config(
        &[("admin", &admin), ("cxone", &cxone), ("dead_letter", &dl)],
        &(batch("b", "")
            + &action("slow", "duration = \"200ms\"")
            + &action("bad", "outcome = \"FAILED\", code = \"X\"")),
    );
    let env = [
        (SECRET_ENV, secret),
        (ADMIN_TOKEN_ENV, ADMIN_TOKEN),
        ("RUST_LOG", "debug"),
    ];
    let mut daemon = h.spawn_with(&["run", "--log-format", "json"], &config, &env);
    wait_until(Duration::from_secs(20), "outcomes", || h.outcomes().len() == 2);
    let admin_line = daemon
        .log_text()
        .lines()
        .find(|l| l.contains("Admin server listening"))
        .map(str::to_owned)
        .unwrap();
    let admin_addr: Value = serde_json::from_str(&admin_line).unwrap();
    let url = format!("http://{}", admin_addr["addr"].as_str().unwrap());
    let metrics = ureq::get(&format!("{url}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(15)), Some(0));
    let _ = sim_child.kill();

    let logs = daemon.log_text();
    let mut poll_line = None;
    for line in logs.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if v["message"] == "Action still running." {
            poll_line = Some(v);
        }
    }
    let poll_line = poll_line.expect("a debug line per poll");
    assert_eq!(poll_line["batch"], "b");
    assert_eq!(poll_line["key"], "slow");
    assert!(
        poll_line["action_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{poll_line}"
    );
    assert_eq!(poll_line["attempt"], 1);

    let check = run_to_end(
        daemon_cmd(&["check"], &config)
            .env(SECRET_ENV, secret)
            .env(ADMIN_TOKEN_ENV, ADMIN_TOKEN),
        Duration::from_secs(20),
    );
    assert!(check.status.success(), "{}", show(&check));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("admin token: from env"),
        "{}",
        show(&check)
    );
    let audit = std::fs::read_to_string(h.audit_path()).unwrap();
    let everything = [
        logs,
        metrics,
        audit,
        String::from_utf8_lossy(&check.stdout).into_owned(),
        String::from_utf8_lossy(&check.stderr).into_owned(),
    ];
    for (i, text) in everything.iter().enumerate() {
        for needle in [secret, WEBHOOK_KEY, ADMIN_TOKEN] {
            assert!(!text.contains(needle), "secret {needle:?} leaked into output #{i}");
        }
        assert!(
            !text.contains("sim-")
                || !text
                    .split("sim-")
                    .skip(1)
                    .any(|rest| rest.len() >= 32 && rest[..32].chars().all(|c| c.is_ascii_hexdigit())),
            "a bearer token leaked into output #{i}"
        );
    }
}

/// `name{labels} value`: a metric name, optional braces, one value.
fn is_sample_line(line: &str) -> bool {
    let (series, value) = match line.rsplit_once(' ') {
        Some(parts) => parts,
        None => return false,
    };
    let name_end = series.find('{').unwrap_or(series.len());
    let name = &series[..name_end];
    let labels_ok = name_end == series.len() || series.ends_with('}');
    let name_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    let value_ok = value.parse::<f64>().is_ok() || matches!(value, "+Inf" | "-Inf" | "NaN");
    labels_ok && name_ok && value_ok
}

/// `promtool check metrics` when promtool is installed; the parser check above runs
/// either way. Under CI (`ACTIONWARDEN_CI`, set by `.ci/run`, which installs Debian's
/// `prometheus` package) a missing promtool fails the test instead.
fn promtool_check(text: &str) {
    use std::io::Write;
    let spawned = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if under_ci() => panic!("promtool is required under CI and cannot run: {e}"),
        Err(_) => {
            eprintln!("promtool not installed: exposition format checked by the parser only");
            return;
        }
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn readyz_answers_503_once_shutdown_begins() {
    // Every submit hangs 10s: the daemon has requests in flight when it is told to stop.
    let h = Harness::new(&["--profile", "clean", "--latency", "10s"]);
    let cxone = format!(
        "base_url = \"{}\"\nclient_id = \"simulator\"\nclient_secret_env = \"{SECRET_ENV}\"\nrequest_timeout = \"30s\"",
        h.sim.url
    );
    let admin = admin_overrides(false);
    let overrides = [
        ("admin", admin.as_str()),
        ("cxone", cxone.as_str()),
        ("shutdown", "timeout = \"3s\""),
    ];
    let batches =
        batch("b", "") + "  [[batch.action]]\n  key = \"slow\"\n  actionType = \"X\"\n  payload = { n = 1 }\n\n";
    let mut daemon = h.spawn(&["run"], &h.write_config(&overrides, &batches));
    let url = daemon.admin_url();
    wait_until(Duration::from_secs(20), "ready with a submit in flight", || {
        status_of(&format!("{url}/readyz")).0 == 200 && h.sim.stats()["submits"] == 1
    });
    daemon.signal("TERM");
    let mut answer = None;
    wait_until(Duration::from_secs(3), "readiness to turn 503", || {
        let (code, body) = status_of(&format!("{url}/readyz"));
        answer = Some((code, body));
        code == 503
    });
    let (_, body) = answer.unwrap();
    assert!(body["reason"].as_str().unwrap().contains("shutdown"), "{body}");
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "still draining the request in flight while it answers 503"
    );
    assert_eq!(daemon.wait(Duration::from_secs(15)), Some(0), "{}", daemon.log_text());
}

#[test]
fn an_admin_address_in_use_exits_3() {
    let h = Harness::new(&["--profile", "clean"]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let admin = format!("listen = \"{addr}\"");
    let config = h.write_config(&[("admin", &admin)], &(batch("b", "") + &action("x", "")));
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(3), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&addr.to_string()) && stderr.to_lowercase().contains("in use"),
        "{stderr}"
    );
    assert_eq!(h.sim.stats()["submits"], 0, "nothing ran");
}

#[test]
fn metrics_carry_build_info_and_process_metrics() {
    let h = Harness::new(&["--profile", "clean"]);
    let config = h.write_config(
        &[("admin", &admin_overrides(false))],
        &(batch("b", "") + &action("k1", "")),
    );
    let daemon = h.spawn(&["run"], &config);
    let url = admin_url(&daemon);
    wait_until(Duration::from_secs(30), "the action's outcome", || {
        h.outcomes().len() == 1
    });
    let text = ureq::get(&format!("{url}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition format");
    let sample = |name: &str| scrape.samples.iter().find(|s| s.metric == name);

    let info = sample("actionwarden_build_info").unwrap_or_else(|| panic!("build_info missing:\n{text}"));
    assert!(
        matches!(info.value, prometheus_parse::Value::Gauge(v) if v == 1.0),
        "{info:?}"
    );
    assert_eq!(info.labels.get("version"), Some(env!("CARGO_PKG_VERSION")));
    let commit = info.labels.get("commit").unwrap_or_default();
    assert!(!commit.is_empty(), "{info:?}");
    let version = run_to_end(
        std::process::Command::new(BIN).arg("--version"),
        Duration::from_secs(10),
    );
    assert!(
        String::from_utf8_lossy(&version.stdout).contains(&format!("({commit})")),
        "the same commit as --version"
    );

    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        let found = sample(name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        let value = match found.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            ref other => panic!("{name}: {other:?}"),
        };
        // A quiet daemon can have used less than one clock tick of CPU.
        let floor_ok = if name == "process_cpu_seconds_total" {
            value >= 0.0
        } else {
            value > 0.0
        };
        assert!(floor_ok, "{name} = {value}");
    }
    for name in ["actionwarden_journal_errors_total", "actionwarden_audit_errors_total"] {
        assert!(sample(name).is_some(), "{name} at zero from the start:\n{text}");
    }
    promtool_check(&text);
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        assert!(is_sample_line(line), "not a Prometheus sample line: {line:?}");
    }
}
