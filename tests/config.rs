//! The configuration: errors with locations, refused and rotated secrets, where the file
//! is found, `check` output, and the shipped demo run as-is.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn check(dir: &Path, text: &str) -> std::process::Output {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    run_to_end(
        daemon_cmd(&["check"], &path).env("AW_TEST_SECRET_VALUE", "s3cr3t-Value-123"),
        Duration::from_secs(20),
    )
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const BATCH: &str = "[[batch]]\nname = \"b\"\n  [[batch.action]]\n  key = \"k1\"\n  actionType = \"X\"\n";

#[test]
fn unknown_key_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[cxone]\nbase_url = \"simulator\"\n\n[poll]\ninterval = \"1s\"\nintervall = \"2s\"\n\n{BATCH}");
    let output = check(dir.path(), &text);
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    let err = stderr(&output);
    assert!(err.contains("config.toml:6:1"), "{err}");
    assert!(err.contains("intervall"), "{err}");
}

#[test]
fn bad_duration_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[cxone]\nbase_url = \"simulator\"\n\n[retry]\nbase_delay = \"soon\"\n\n{BATCH}");
    let output = check(dir.path(), &text);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("config.toml:5:"), "{err}");
    assert!(err.contains("retry.base_delay"), "{err}");
    assert!(err.contains("250ms"), "says what was expected: {err}");
}

#[test]
fn literal_secret_is_refused_at_its_line_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[cxone]\nbase_url = \"https://api.example.com\"\nclient_id = \"abc\"\nclient_secret = \"hunter2-literal\"\n\n{BATCH}");
    let output = check(dir.path(), &text);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("config.toml:4:1"), "{err}");
    assert!(err.contains("cxone.client_secret"), "{err}");
    assert!(err.contains("literal secrets are refused"), "{err}");
    assert!(!err.contains("hunter2-literal"), "secret echoed: {err}");
}

#[test]
fn secret_pasted_into_an_env_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        format!("[cxone]\nbase_url = \"simulator\"\n\n[dead_letter]\nsigning_secret_env = \"k3y-Value!\"\n\n{BATCH}");
    let output = check(dir.path(), &text);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("config.toml:5:1") && err.contains("dead_letter.signing_secret_env"),
        "{err}"
    );
    assert!(!err.contains("k3y-Value!"), "{err}");
}

#[test]
fn duplicate_identity_points_at_the_second_occurrence() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[cxone]\nbase_url = \"simulator\"\n\n[[batch]]\nname = \"b\"\n  [[batch.action]]\n  key = \"same\"\n  actionType = \"X\"\n  [[batch.action]]\n  key = \"same\"\n  actionType = \"X\"\n";
    let output = check(dir.path(), text);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("config.toml:10:"), "{err}");
    assert!(err.contains("duplicate action identity b/same"), "{err}");
}

#[test]
fn duplicate_in_actions_file_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("acts.jsonl"), "{\"key\":\"a\",\"actionType\":\"X\"}\n{\"key\":\"b\",\"actionType\":\"X\"}\n{\"key\":\"a\",\"actionType\":\"X\"}\nnot json\n").unwrap();
    let text = "[cxone]\nbase_url = \"simulator\"\n\n[[batch]]\nname = \"b\"\nactions_file = \"acts.jsonl\"\n";
    let output = check(dir.path(), text);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("acts.jsonl:3:") && err.contains("duplicate action identity b/a"),
        "{err}"
    );
    assert!(
        err.contains("acts.jsonl:4:") && err.contains("invalid JSON"),
        "every problem at once: {err}"
    );
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[cxone]\nbase_url = \"http://api.example.com\"\nclient_id = \"abc\"\n\n{BATCH}");
    let output = check(dir.path(), &text);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("config.toml:2:") && err.contains("plain http"), "{err}");
}

#[test]
fn check_prints_the_plan_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("acts.jsonl"),
        "{\"actionType\":\"X\"}\n{\"actionType\":\"Y\"}\n",
    )
    .unwrap();
    let text = "[cxone]\nbase_url = \"https://api.example.com\"\nclient_id = \"abc\"\nclient_secret_env = \"AW_TEST_SECRET_VALUE\"\n\n[[batch]]\nname = \"first\"\nactions_file = \"acts.jsonl\"\n  [[batch.action]]\n  actionType = \"X\"\n\n[[batch]]\nname = \"second\"\nmax_in_flight = 3\n  [[batch.action]]\n  actionType = \"Z\"\n";
    let output = check(dir.path(), text);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.contains("batches: 2, actions: 4"), "{out}");
    assert!(out.contains("first") && out.contains("second"), "{out}");
    assert!(out.contains("AW_TEST_SECRET_VALUE (set)"), "{out}");
    assert!(
        out.contains("request_timeout = \"15s\""),
        "effective defaults shown: {out}"
    );
    assert!(!out.contains("s3cr3t-Value-123"), "secret printed: {out}");
}

#[test]
fn the_shipped_config_is_valid() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = run_to_end(
        &mut daemon_cmd(&["check"], &manifest.join("config.toml")),
        Duration::from_secs(20),
    );
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
}

/// A minimal valid file whose one batch is called `name`.
fn named_config(name: &str) -> String {
    format!(
        "[cxone]\nbase_url = \"simulator\"\n\n[[batch]]\nname = \"{name}\"\n  [[batch.action]]\n  actionType = \"X\"\n"
    )
}

#[test]
fn the_config_file_defaults_to_the_env_var_then_to_the_working_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("config.toml"), named_config("from-cwd")).unwrap();
    let env_file = elsewhere.path().join("other.toml");
    std::fs::write(&env_file, named_config("from-env")).unwrap();
    let flag_file = elsewhere.path().join("flag.toml");
    std::fs::write(&flag_file, named_config("from-flag")).unwrap();

    let check = |env: Option<&Path>, flag: Option<&Path>| {
        let mut command = std::process::Command::new(BIN);
        command
            .arg("check")
            .current_dir(cwd.path())
            .env_remove("ACTIONWARDEN_CONFIG");
        if let Some(path) = env {
            command.env("ACTIONWARDEN_CONFIG", path);
        }
        if let Some(path) = flag {
            command.arg("-c").arg(path);
        }
        let output = run_to_end(&mut command, Duration::from_secs(20));
        assert_eq!(output.status.code(), Some(0), "{}", show(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let out = check(None, None);
    assert!(out.contains("from-cwd"), "./config.toml is the default: {out}");
    let out = check(Some(&env_file), None);
    assert!(
        out.contains("from-env") && !out.contains("from-cwd"),
        "$ACTIONWARDEN_CONFIG wins over ./config.toml: {out}"
    );
    let out = check(Some(&env_file), Some(&flag_file));
    assert!(
        out.contains("from-flag") && !out.contains("from-env"),
        "-c wins over $ACTIONWARDEN_CONFIG: {out}"
    );
}

#[test]
fn a_rotated_client_secret_file_is_used_by_the_next_token_fetch() {
    // Tokens live 2s: actions of 3s need a second one, fetched after the rotation.
    let h = Harness::new(&["--profile", "clean", "--token-ttl", "2s"]);
    let secret_file = h.dir.path().join("client-secret");
    std::fs::write(&secret_file, format!("{SIM_SECRET}\n")).unwrap();
    let cxone = format!(
        "base_url = \"{}\"\nclient_id = \"simulator\"\nclient_secret_file = \"{}\"\ntoken_refresh_skew = \"100ms\"",
        h.sim.url,
        secret_file.display()
    );
    let mut batches = batch("b", "");
    for i in 0..3 {
        batches.push_str(&action(&format!("r{i}"), "duration = \"3s\""));
    }
    let config = h.write_config(&[("cxone", &cxone)], &batches);
    let mut command = daemon_cmd(&["run", "--once"], &config);
    command.env_remove(SECRET_ENV);
    let log = h.dir.path().join("daemon.log");
    let mut daemon = Daemon {
        child: command
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        log,
    };
    wait_until(Duration::from_secs(20), "the first token", || {
        h.sim.stats()["tokens_issued"] == 1
    });
    // Rotate: the file first, then the upstream (well before the refresh is due).
    let rotated = "rotated-secret-0c41";
    std::fs::write(&secret_file, format!("{rotated}\n")).unwrap();
    h.sim
        .post("/sim/control", serde_json::json!({ "client_secret": rotated }));

    assert_eq!(daemon.wait(Duration::from_secs(30)), Some(0), "{}", daemon.log_text());
    let stats = h.sim.stats();
    assert!(
        stats["tokens_issued"].as_u64().unwrap() >= 2,
        "a token was fetched after the rotation: {stats}"
    );
    assert_eq!(
        stats["token_rejections"], 0,
        "the old secret was never sent again: {stats}"
    );
    assert!(!daemon.log_text().contains(rotated), "the secret stays out of the log");
    assert_exactly_once(&h, 3);
}

#[test]
fn the_shipped_demo_ends_every_action_once_with_exit_2() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(manifest.join("config.toml"), dir.path().join("config.toml")).unwrap();
    std::fs::create_dir(dir.path().join("examples")).unwrap();
    for entry in std::fs::read_dir(manifest.join("examples")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join("examples").join(entry.file_name())).unwrap();
    }
    // As the README runs it: `run --once` in the directory, the file found by default.
    let mut command = std::process::Command::new(BIN);
    command
        .args(["run", "--once"])
        .current_dir(dir.path())
        .env_remove("ACTIONWARDEN_CONFIG")
        .env_remove("RUST_LOG");
    let output = run_to_end(&mut command, Duration::from_secs(90));
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));

    let outcomes: Vec<serde_json::Value> = read_jsonl(&dir.path().join("audit.jsonl"))
        .into_iter()
        .filter(|r| {
            matches!(
                r["event_type"].as_str(),
                Some("ACTION_COMPLETED" | "ACTION_CANCELLED" | "ASYNC_ERROR_HANDLED")
            )
        })
        .collect();
    assert_eq!(outcomes.len(), 206, "200 from the actions file and 6 inline");
    let identities: std::collections::HashSet<(String, String)> = outcomes
        .iter()
        .map(|r| (r["batch"].to_string(), r["key"].to_string()))
        .collect();
    assert_eq!(identities.len(), 206, "exactly one outcome per identity");

    let kind = |r: &serde_json::Value| match r["event_type"].as_str().unwrap() {
        "ASYNC_ERROR_HANDLED" => r["resolution"].as_str().unwrap().to_owned(),
        other => other.to_owned(),
    };
    let count = |batch: &str, k: &str| outcomes.iter().filter(|r| r["batch"] == batch && kind(r) == k).count() as u64;
    let summary = String::from_utf8_lossy(&output.stdout).into_owned();
    for batch in ["priority-updates", "dispositions"] {
        let row = summary_row(&summary, batch);
        let retries: u64 = outcomes
            .iter()
            .filter(|r| r["batch"] == batch)
            .map(|r| r["retry_count"].as_u64().unwrap())
            .sum();
        assert_eq!(row.completed, count(batch, "ACTION_COMPLETED"), "{batch}: {row:?}");
        assert_eq!(row.cancelled, count(batch, "ACTION_CANCELLED"), "{batch}: {row:?}");
        assert_eq!(
            row.dead_lettered,
            count(batch, "DEAD_LETTERED") + count(batch, "EXHAUSTED"),
            "{batch}: {row:?}"
        );
        assert_eq!(row.rolled_back, count(batch, "ROLLED_BACK"), "{batch}: {row:?}");
        assert_eq!(row.retries, retries, "{batch}: {row:?}");
    }

    // The fates the demo fixes, inline or by its seeded draws. Only 429s are drawn in
    // request order (3% of requests); each costs a retry, so an action that met several
    // could exhaust its budget: completed and exhausted are checked together.
    let dispositions = summary_row(&summary, "dispositions");
    assert_eq!(
        (
            dispositions.total,
            dispositions.completed,
            dispositions.cancelled,
            dispositions.rolled_back
        ),
        (3, 1, 1, 1),
        "{dispositions:?}"
    );
    assert_eq!(count("priority-updates", "ACTION_CANCELLED"), 8);
    assert_eq!(count("priority-updates", "DEAD_LETTERED"), 9);
    assert_eq!(
        count("priority-updates", "ACTION_COMPLETED") + count("priority-updates", "EXHAUSTED"),
        186
    );
    assert_eq!(summary_row(&summary, "priority-updates").total, 203);
    let codes: std::collections::BTreeMap<String, usize> =
        outcomes
            .iter()
            .filter(|r| kind(r) == "DEAD_LETTERED")
            .fold(Default::default(), |mut m, r| {
                *m.entry(r["error_code"].as_str().unwrap().to_owned()).or_default() += 1;
                m
            });
    let expected = [("INVALID_CONTACT", 4), ("INVALID_VALUE", 1), ("VALIDATION_FAILED", 4)];
    assert_eq!(
        codes,
        expected.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
        "the permanent failures"
    );
    assert_eq!(
        outcomes.iter().find(|r| r["key"] == "call-1002").unwrap()["resolution"],
        "ROLLED_BACK"
    );
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

#[test]
fn actions_file_with_a_byte_order_mark_and_crlf_lines_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("acts.jsonl"),
        "\u{FEFF}{\"key\":\"a\",\"actionType\":\"X\"}\r\n{\"key\":\"b\",\"actionType\":\"X\"}\r\n",
    )
    .unwrap();
    let text = "[cxone]\nbase_url = \"simulator\"\n\n[[batch]]\nname = \"b\"\nactions_file = \"acts.jsonl\"\n";
    let output = check(dir.path(), text);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.contains("batches: 1, actions: 2"), "{out}");
}

#[test]
fn action_without_an_action_type_is_refused_at_its_location() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("acts.jsonl"),
        "{\"key\":\"a\",\"actionType\":\"X\"}\n{\"key\":\"b\",\"payload\":{}}\n{\"key\":\"c\",\"actionType\":5}\n",
    )
    .unwrap();
    let text = "[cxone]\nbase_url = \"simulator\"\n\n[[batch]]\nname = \"b\"\nactions_file = \"acts.jsonl\"\n  [[batch.action]]\n  key = \"inline\"\n  payload = { n = 1 }\n  [[batch.action]]\n  key = \"typed\"\n  actionType = [\"X\"]\n";
    let output = check(dir.path(), text);
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    let err = stderr(&output);
    assert!(
        err.contains("acts.jsonl:2:1: missing actionType"),
        "the file's line without one: {err}"
    );
    assert!(
        err.contains("acts.jsonl:3:1: actionType: expected a non-empty string"),
        "the file's non-string one: {err}"
    );
    assert!(
        err.contains("config.toml:7:") && err.contains("batch[0].action[0].actionType: missing actionType"),
        "the inline action without one, at its table: {err}"
    );
    assert!(
        err.contains("config.toml:12:3: batch[0].action[1].actionType"),
        "the inline non-string one, at its key: {err}"
    );
}

#[test]
fn every_type_error_and_unknown_key_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[cxone]\nbase_url = \"simulator\"\nmax_connections = \"many\"\n\n[poll]\nintervall = \"2s\"\n\n[retry]\nbase_delay = \"soon\"\njitter = \"lots\"\n\n[admin]\ntoken_env = 98765432\n\n[limits]\nmax_in_flight = 0\n\n{BATCH}"
    );
    let output = check(dir.path(), &text);
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    let err = stderr(&output);
    for (location, what) in [
        ("config.toml:3:", "cxone.max_connections"),
        ("config.toml:6:1", "intervall"),
        ("config.toml:9:", "retry.base_delay"),
        ("config.toml:10:", "retry.jitter"),
        ("config.toml:13:", "admin.token_env"),
        ("config.toml:16:", "limits.max_in_flight"),
    ] {
        assert!(
            err.lines().any(|l| l.contains(location) && l.contains(what)),
            "{what} at {location}: {err}"
        );
    }
    assert_eq!(err.lines().count(), 6, "one line per problem: {err}");
    assert!(!err.contains("98765432"), "a secret key's value is never echoed: {err}");
}

#[test]
fn a_log_level_that_names_no_level_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[cxone]\nbase_url = \"simulator\"\n\n[log]\nlevel = \"verbose\"\n\n{BATCH}");
    let output = check(dir.path(), &text);
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    let err = stderr(&output);
    assert!(err.contains("config.toml:5:1: log.level"), "{err}");
    assert!(err.contains("\"verbose\" is not a level"), "{err}");

    let text = format!("[cxone]\nbase_url = \"simulator\"\n\n[log]\nlevel = \"warn,actionwarden=debug\"\n\n{BATCH}");
    let output = check(dir.path(), &text);
    assert_eq!(
        output.status.code(),
        Some(0),
        "a filter of levels is fine: {}",
        show(&output)
    );
}

#[test]
fn chaos_probabilities_outside_zero_to_one_are_refused_at_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[cxone]\nbase_url = \"simulator\"\n\n[chaos]\nenabled = true\nsingleton_panic_probability = 1.5\npoller_panic_probability = -0.1\n\n{BATCH}"
    );
    let output = check(dir.path(), &text);
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    let err = stderr(&output);
    assert!(
        err.contains("config.toml:6:1: chaos.singleton_panic_probability"),
        "{err}"
    );
    assert!(err.contains("config.toml:7:1: chaos.poller_panic_probability"), "{err}");
    assert!(err.contains("expected a probability between 0.0 and 1.0"), "{err}");

    let text = format!(
        "[cxone]\nbase_url = \"simulator\"\n\n[chaos]\nsingleton_panic_actors = [\"audit\", \"poller\"]\n\n{BATCH}"
    );
    let output = check(dir.path(), &text);
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    let err = stderr(&output);
    assert!(
        err.contains("config.toml:5:"),
        "an unknown actor is refused at its line: {err}"
    );
    assert!(err.contains("poller"), "{err}");
}

/// An environment variable the configuration names but nobody set is a configuration
/// error (exit 1) that names the key and the variable, not a failure to run (exit 3).
#[test]
fn an_unset_journal_url_or_simulator_secret_variable_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[journal]\nbackend = \"postgres\"\nurl_env = \"AW_TEST_UNSET_URL\"\n",
            "AW_TEST_UNSET_URL",
        ),
        (
            "[simulator]\nclient_secret_env = \"AW_TEST_UNSET_SECRET\"\n",
            "simulator.client_secret_env",
        ),
    ];
    for (table, named) in cases {
        let path = dir.path().join("config.toml");
        let text = format!(
            "[cxone]\nbase_url = \"simulator\"\n\n[admin]\nlisten = \"\"\n\n[audit]\npath = \"{}/audit.jsonl\"\n\n{table}\n{BATCH}",
            dir.path().display()
        );
        std::fs::write(&path, text).unwrap();
        let output = run_to_end(
            daemon_cmd(&["run", "--once"], &path)
                .current_dir(dir.path())
                .env_remove("AW_TEST_UNSET_URL")
                .env_remove("AW_TEST_UNSET_SECRET"),
            Duration::from_secs(20),
        );
        assert_eq!(output.status.code(), Some(1), "{table}: {}", show(&output));
        let err = stderr(&output);
        assert!(err.contains(named) && err.contains("not set"), "{table}: {err}");
    }
}
