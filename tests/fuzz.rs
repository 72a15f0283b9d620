//! Property-based fuzzing (proptest) of the three parsers that take outside input: the
//! config loader, the poll-response parser and `Retry-After`. Each target runs
//! `CASES` generated inputs per CI run; none may panic, and each keeps its contract.

use std::path::Path;
use std::time::{Duration, SystemTime};

use actionwarden::backoff::{parse_retry_after, MAX_RETRY_AFTER};
use actionwarden::config;
use actionwarden::cxone::{parse_poll, CallError, PollStatus};
use proptest::prelude::*;

/// Inputs per target per run.
const CASES: u32 = 3000;

const VALID: &str = r#"[cxone]
base_url = "simulator"
[poll]
interval = "5s"
[retry]
max_retries = 3
jitter = "equal"
[[batch]]
name = "b"
  [[batch.action]]
  key = "k"
  actionType = "X"
  payload = { a = 1 }
"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn config_loader_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
        let _ = config::check_text(Path::new("fuzz.toml"), &text);
    }

    #[test]
    fn config_loader_locates_every_error_in_mutated_configs(
        position in 0usize..VALID.len(),
        cut in 0usize..20,
        insert in "[=\\[\\]\"a-z0-9 .\n{}]{0,12}",
    ) {
        let mut text = VALID.to_string();
        let start = text.floor_char_boundary(position);
        let end = text.floor_char_boundary((start + cut).min(text.len()));
        text.replace_range(start..end, &insert);
        if let Err(config::ConfigError::Invalid(problems)) = config::check_text(Path::new("fuzz.toml"), &text) {
            prop_assert!(!problems.is_empty());
            for p in problems {
                prop_assert!(p.line >= 1 && p.column >= 1, "{p}");
                prop_assert!(p.line <= text.lines().count().max(1) + 1, "{p}");
            }
        }
    }

    #[test]
    fn poll_parser_never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_poll(&body);
    }

    #[test]
    fn poll_parser_reads_any_status_spelling(
        status in prop_oneof![Just("COMPLETED"), Just("completed"), Just("Cancelled"), Just("CANCELED"), Just("FAILED"), Just("RUNNING"), Just("queued")],
        extra in "[a-z]{0,8}",
        errors in proptest::option::of(proptest::collection::vec(("[A-Z_]{0,10}", "\\PC{0,20}", proptest::option::of(0i64..10_000)), 0..3)),
    ) {
        let errors_json = errors.as_ref().map(|list| {
            serde_json::Value::Array(list.iter().map(|(code, message, line)| serde_json::json!({
                "code": code, "message": message, "stackTrace": [{"function": "f", "line": line}],
            })).collect())
        });
        let mut body = serde_json::json!({"id": "x", "status": status, "extra": extra});
        if let Some(e) = errors_json { body["errors"] = e; }
        let parsed = parse_poll(body.to_string().as_bytes()).expect("a JSON object with a status parses");
        match status.to_ascii_uppercase().as_str() {
            "COMPLETED" => prop_assert_eq!(parsed, PollStatus::Completed),
            "CANCELLED" | "CANCELED" => prop_assert_eq!(parsed, PollStatus::Cancelled),
            "FAILED" => {
                let PollStatus::Failed(found) = parsed else { panic!("not failed") };
                prop_assert!(!found.is_empty(), "a FAILED poll always yields at least one error");
                if let Some(list) = errors.filter(|l| !l.is_empty()) {
                    prop_assert_eq!(found.len(), list.len());
                    prop_assert_eq!(found[0].stack_trace[0].line, list[0].2);
                }
            }
            _ => prop_assert!(matches!(parsed, PollStatus::Running(_))),
        }
    }

    #[test]
    fn poll_parser_reports_missing_status_as_malformed(key in "[a-rt-z]{1,8}", value in any::<i64>()) {
        let body = serde_json::json!({ key: value }).to_string();
        prop_assert!(matches!(parse_poll(body.as_bytes()), Err(CallError::Malformed(_))));
    }

    #[test]
    fn retry_after_never_panics(text in "\\PC{0,60}") {
        if let Some(wait) = parse_retry_after(&text, SystemTime::now()) {
            prop_assert!(wait <= MAX_RETRY_AFTER);
        }
    }

    #[test]
    fn retry_after_delta_seconds_round_trip(secs in 0u64..100_000) {
        let expected = Duration::from_secs(secs).min(MAX_RETRY_AFTER);
        prop_assert_eq!(parse_retry_after(&secs.to_string(), SystemTime::now()), Some(expected));
    }

    #[test]
    fn retry_after_http_dates_round_trip(offset in 0u64..3000) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let date = httpdate::fmt_http_date(now + Duration::from_secs(offset));
        prop_assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(offset)));
    }
}
