//! Unit tests of fate.rs: directive parsing and seeded profile draws.

use serde_json::json;

use super::*;

fn demo(seed: u64) -> Draw {
    Draw {
        profile: Profile::Demo,
        seed,
        header_only_rate: 0.1,
    }
}

fn resolve(payload: Value) -> Result<Fate, FateError> {
    let key = fate_key(&payload);
    Fate::resolve(&payload, &demo(42), &key)
}

#[test]
fn reads_the_spec_example() {
    let fate =
        resolve(json!({"sim": {"outcome": "FAILED", "code": "TIMEOUT", "times": 2, "duration": "300ms"}})).unwrap();
    assert!(fate.directed);
    assert_eq!(fate.duration, Duration::from_millis(300));
    assert!(matches!(fate.outcome_of(1), Outcome::Failed { code, .. } if code == "TIMEOUT"));
    assert!(matches!(fate.outcome_of(2), Outcome::Failed { .. }));
    assert_eq!(fate.outcome_of(3), &Outcome::Completed);
}

#[test]
fn failed_defaults_to_timeout_on_every_attempt() {
    let fate = resolve(json!({"sim": {"outcome": "FAILED"}})).unwrap();
    assert!(matches!(fate.outcome_of(9), Outcome::Failed { code, .. } if code == "TIMEOUT"));
    assert_eq!(fate.duration, Duration::ZERO);
}

#[test]
fn reads_every_field() {
    let fate = resolve(json!({"contactId": "c-1", "sim": {
        "outcome": "CANCELED", "header_only": true, "no_id": true,
        "submit_status": [429, 503], "poll_status": [401], "retry_after": "date:2",
        "malformed_polls": 2, "missing_status_polls": 1,
        "stack": [{"function": "f", "file": "F.java", "line": 1, "message": "m"}],
        "submit_body_status": 422
    }}))
    .unwrap();
    assert_eq!(fate.outcome, Outcome::Cancelled);
    assert!(fate.header_only && fate.no_id);
    assert_eq!(fate.submit_status, vec![429, 503]);
    assert_eq!(fate.poll_status, vec![401]);
    assert_eq!(fate.retry_after, Some(RetryAfter::DateIn(2)));
    assert_eq!((fate.malformed_polls, fate.missing_status_polls), (2, 1));
    assert_eq!(fate.stack_for("X")[0].function, "f");
    let (status, errors) = fate.submit_body.unwrap();
    assert_eq!(status, 422);
    assert_eq!(errors[0]["code"], "VALIDATION_FAILED");
}

#[test]
fn refuses_malformed_directives() {
    assert!(resolve(json!({"sim": {"outcom": "FAILED"}})).is_err());
    assert!(resolve(json!({"sim": {"duration": "fast"}})).is_err());
    assert!(resolve(json!({"sim": {"submit_status": [42]}})).is_err());
    assert!(resolve(json!({"sim": {"retry_after": "soon"}})).is_err());
    assert!(resolve(json!({"sim": "FAILED"})).is_err());
}

#[test]
fn parses_retry_after_forms() {
    assert_eq!(parse_retry_after("2").unwrap(), RetryAfter::Seconds(2));
    assert_eq!(parse_retry_after("date:3").unwrap(), RetryAfter::DateIn(3));
}

#[test]
fn fate_key_is_canonical() {
    let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": "s"}}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{"a": {"x": "s", "y": [1, 2]}, "b": 1}"#).unwrap();
    assert_eq!(fate_key(&a), fate_key(&b));
    assert_eq!(fate_key(&a), r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
}

#[test]
fn draws_are_reproducible_for_a_seed() {
    let first: Vec<Fate> = (0..200).map(|i| Fate::drawn(&demo(7), &format!("k{i}"))).collect();
    let again: Vec<Fate> = (0..200).map(|i| Fate::drawn(&demo(7), &format!("k{i}"))).collect();
    let other: Vec<Fate> = (0..200).map(|i| Fate::drawn(&demo(8), &format!("k{i}"))).collect();
    assert_eq!(first, again);
    assert_ne!(first, other);
}

#[test]
fn demo_rates_are_roughly_right() {
    let n = 20_000;
    let fates: Vec<Fate> = (0..n).map(|i| Fate::drawn(&demo(42), &format!("c-{i}"))).collect();
    let share = |pred: &dyn Fn(&Fate) -> bool| fates.iter().filter(|f| pred(f)).count() as f64 / f64::from(n);
    let transient = share(&|f| f.times == Some(1));
    let permanent = share(&|f| f.times.is_none() && matches!(f.outcome, Outcome::Failed { .. }));
    let cancelled = share(&|f| f.outcome == Outcome::Cancelled);
    let header_only = share(&|f| f.header_only);
    assert!((transient - 0.08).abs() < 0.01, "transient {transient}");
    assert!((permanent - 0.05).abs() < 0.01, "permanent {permanent}");
    assert!((cancelled - 0.04).abs() < 0.01, "cancelled {cancelled}");
    assert!((header_only - 0.10).abs() < 0.015, "header_only {header_only}");
    assert!(fates
        .iter()
        .all(|f| !f.directed && (100..=600).contains(&u64::try_from(f.duration.as_millis()).unwrap())));
}

#[test]
fn clean_completes_everything_at_once() {
    let clean = Draw {
        profile: Profile::Clean,
        seed: 1,
        header_only_rate: 0.0,
    };
    for i in 0..500 {
        let fate = Fate::drawn(&clean, &i.to_string());
        assert_eq!(fate.outcome_of(1), &Outcome::Completed);
        assert_eq!(fate.duration, Duration::ZERO);
        assert!(!fate.header_only);
    }
}

#[test]
fn stacks_are_deterministic_per_code() {
    for code in ["TIMEOUT", "INVALID_CONTACT", "X_Y"] {
        let stack = generated_stack(code);
        assert_eq!(stack, generated_stack(code));
        assert!((2..=3).contains(&stack.len()));
        assert!(stack.iter().any(|f| f.function == "DataActionExecutor.execute"));
    }
}
