//! Configuration errors with locations, refused secrets and `check` output.

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
