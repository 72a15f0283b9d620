//! The lifecycle rules as tables: one test per rule, driven through the machine alone
//! (no actors, no network, no journal).

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::*;
use crate::classify::{classify, Rules, UpstreamError};
use crate::config::{ClassifierConfig, Jitter};

/// Settings of these tests: no jitter, so every delay is exact.
struct Fixture {
    retry: RetryConfig,
    poll: PollConfig,
    supervisor: SupervisorConfig,
    rules: Rules,
    can_compensate: bool,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            retry: RetryConfig {
                max_retries: 3,
                base_delay: Duration::from_millis(100),
                backoff_factor: 2.0,
                max_delay: Duration::from_secs(1),
                jitter: Jitter::None,
            },
            poll: PollConfig {
                initial_delay: Duration::from_millis(50),
                interval: Duration::from_millis(100),
                backoff_factor: 1.0,
                max_interval: Duration::from_secs(1),
                timeout: Duration::from_secs(60),
            },
            supervisor: SupervisorConfig {
                max_restarts: 2,
                restart_window: Duration::from_secs(60),
                restart_backoff: Duration::from_millis(10),
            },
            rules: Rules::new(&ClassifierConfig {
                retry: vec!["TIMEOUT".into()],
                rollback: vec!["PARTIAL_WRITE".into()],
                default: Directive::DeadLetter,
            }),
            can_compensate: false,
        }
    }

    fn policy(&self) -> Policy<'_> {
        Policy {
            retry: &self.retry,
            poll: &self.poll,
            supervisor: &self.supervisor,
            can_compensate: self.can_compensate,
        }
    }
}

fn rng() -> SmallRng {
    SmallRng::seed_from_u64(7)
}

fn identity() -> Identity {
    Identity::new("b", "k")
}

fn fresh() -> Machine {
    Machine::new(identity(), ActionState::default())
}

fn status(status: u16) -> CallError {
    CallError::Status {
        status,
        retry_after: None,
        code: None,
        message: None,
    }
}

fn accepted(id: &str) -> Result<Submitted, CallError> {
    Ok(Submitted {
        status: 202,
        id: Some(id.into()),
    })
}

fn failed(code: &str) -> PollStatus {
    PollStatus::Failed(vec![UpstreamError {
        code: code.into(),
        message: format!("{code} happened"),
        stack_trace: Vec::new(),
    }])
}

/// A machine that submitted and is polling `X-1`, at `t0`.
fn polling(f: &Fixture, t0: Instant) -> Machine {
    let mut m = fresh();
    m.next(&f.policy(), t0);
    m.on_submit(&f.policy(), accepted("X-1"), &mut rng(), t0);
    m
}

/// Runs a classification step the way the interpreter does (with the pure classifier).
fn classified(f: &Fixture, m: &mut Machine, decision: Decision, now: Instant) -> Decision {
    let Step::Classify(failure) = decision.step else {
        panic!("expected a classification, got {:?}", decision.step)
    };
    let payload = classify(&f.rules, failure);
    m.on_classified(&f.policy(), payload, &mut rng(), now)
}

fn resolution(decision: Decision) -> Resolution {
    match decision.step {
        Step::Resolve(r) => *r,
        other => panic!("expected a resolution, got {other:?}"),
    }
}

fn field<'a>(record: &'a AuditRecord, name: &str) -> &'a serde_json::Value {
    record.fields.get(name).unwrap_or(&serde_json::Value::Null)
}

fn durable_persists(decision: &Decision) -> usize {
    decision
        .effects
        .iter()
        .filter(|e| matches!(e, Effect::Persist { durable: true, .. }))
        .count()
}

#[test]
fn submitting_is_journaled_durably_before_the_first_post() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = fresh();
    let d = m.next(&f.policy(), t0);
    assert_eq!(durable_persists(&d), 1);
    assert_eq!(
        d.step,
        Step::Submit {
            key: idempotency_key(&identity(), 0, 1),
            compensation: false
        }
    );
    assert_eq!(m.state().phase, Phase::Submitting);
    assert_eq!(m.state().first_submit, Some(t0));
}

#[test]
fn the_cxone_id_is_journaled_durably_before_the_first_poll() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = fresh();
    m.next(&f.policy(), t0);
    let d = m.on_submit(&f.policy(), accepted("X-1"), &mut rng(), t0);
    assert_eq!(durable_persists(&d), 1);
    assert!(d.effects.contains(&Effect::Submitted {
        action_id: "X-1".into()
    }));
    assert_eq!(d.step, Step::Wait(t0 + f.poll.initial_delay));
    assert_eq!(m.state().action_id.as_deref(), Some("X-1"));
    let Effect::Audit(record) = &d.effects[1] else {
        panic!("expected ACTION_SUBMITTED, got {:?}", d.effects)
    };
    assert_eq!(record.event_type, "ACTION_SUBMITTED");
    assert_eq!(
        field(record, "idempotency_key"),
        &idempotency_key(&identity(), 0, 1).to_string()
    );
}

#[test]
fn a_submit_without_an_id_is_missing_action_id_and_never_resubmitted() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = fresh();
    m.next(&f.policy(), t0);
    let d = m.on_submit(&f.policy(), Ok(Submitted { status: 202, id: None }), &mut rng(), t0);
    let r = resolution(classified(&f, &mut m, d, t0));
    assert_eq!(r.outcome, Outcome::DeadLettered);
    let letter = r.letter.expect("a dead letter");
    assert_eq!(letter.error_code, "MISSING_ACTION_ID");
    assert_eq!(letter.status_code, 202);
    assert_eq!(letter.action_id, None);
}

#[test]
fn a_running_action_is_polled_again_after_the_interval() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    let t1 = t0 + f.poll.initial_delay;
    assert_eq!(
        m.next(&f.policy(), t1).step,
        Step::Poll {
            action_id: "X-1".into()
        }
    );
    let d = m.on_poll(&f.policy(), Ok(PollStatus::Running("RUNNING".into())), &mut rng(), t1);
    assert_eq!(d.step, Step::Wait(t1 + f.poll.interval));
    assert!(d.effects.is_empty(), "a running poll journals nothing");
}

#[test]
fn the_poll_interval_grows_with_its_backoff_factor() {
    let mut f = Fixture::new();
    f.poll.backoff_factor = 2.0;
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    let running = || Ok(PollStatus::Running("QUEUED".into()));
    let d1 = m.on_poll(&f.policy(), running(), &mut rng(), t0);
    assert_eq!(d1.step, Step::Wait(t0 + f.poll.interval));
    let d2 = m.on_poll(&f.policy(), running(), &mut rng(), t0);
    assert_eq!(d2.step, Step::Wait(t0 + f.poll.interval * 2));
}

#[test]
fn completed_resolves_with_its_attempts_and_retries() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    let r = resolution(m.on_poll(
        &f.policy(),
        Ok(PollStatus::Completed),
        &mut rng(),
        t0 + Duration::from_secs(2),
    ));
    assert_eq!(r.outcome, Outcome::Completed);
    assert_eq!(r.record.event_type, "ACTION_COMPLETED");
    assert_eq!(field(&r.record, "attempts"), 1);
    assert_eq!(field(&r.record, "retry_count"), 0);
    assert_eq!(r.latency, Duration::from_secs(2));
    assert!(r.letter.is_none());
    assert_eq!(m.state().phase, Phase::Done(Outcome::Completed));
}

#[test]
fn cancelled_resolves_as_cancelled() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    let r = resolution(m.on_poll(&f.policy(), Ok(PollStatus::Cancelled), &mut rng(), t0));
    assert_eq!(r.outcome, Outcome::Cancelled);
    assert_eq!(r.record.event_type, "ACTION_CANCELLED");
}

#[test]
fn a_5xx_repeats_the_same_attempt_and_spends_one_retry() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = fresh();
    let first = m.next(&f.policy(), t0);
    let d = m.on_submit(&f.policy(), Err(status(503)), &mut rng(), t0);
    assert_eq!(m.state().retry_count, 1);
    assert_eq!(m.state().attempt, 1);
    // The spent retry is on disk before the wait.
    assert_eq!(durable_persists(&d), 1);
    assert!(matches!(
        &d.effects[0],
        Effect::RetrySpent {
            reason: "http_error",
            ..
        }
    ));
    assert_eq!(d.step, Step::Wait(t0 + Duration::from_millis(200)));
    let again = m.next(&f.policy(), t0 + Duration::from_millis(200));
    assert_eq!(again.step, first.step, "same attempt, same Idempotency-Key");
}

#[test]
fn a_longer_retry_after_wins_over_the_backoff() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    let error = CallError::Status {
        status: 429,
        retry_after: Some(Duration::from_secs(5)),
        code: None,
        message: None,
    };
    let d = m.on_poll(&f.policy(), Err(error), &mut rng(), t0);
    assert_eq!(d.step, Step::Wait(t0 + Duration::from_secs(5)));
    assert!(matches!(
        &d.effects[0],
        Effect::RetrySpent {
            reason: "rate_limited",
            ..
        }
    ));
}

#[test]
fn a_shorter_retry_after_leaves_the_backoff() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    let error = CallError::Status {
        status: 429,
        retry_after: Some(Duration::from_millis(10)),
        code: None,
        message: None,
    };
    let d = m.on_poll(&f.policy(), Err(error), &mut rng(), t0);
    assert_eq!(d.step, Step::Wait(t0 + Duration::from_millis(200)));
}

/// Feeds `error` to a polling machine until the budget is spent; returns the resolution.
fn exhaust(error: CallError) -> Resolution {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    for spent in 1..=f.retry.max_retries {
        let d = m.on_poll(&f.policy(), Err(error.clone()), &mut rng(), t0);
        assert!(matches!(d.step, Step::Wait(_)), "retry {spent} waits");
        assert_eq!(m.state().retry_count, spent);
    }
    let d = m.on_poll(&f.policy(), Err(error), &mut rng(), t0);
    resolution(classified(&f, &mut m, d, t0))
}

#[test]
fn a_budget_spent_on_429s_is_rate_limit_exhausted() {
    let r = exhaust(status(429));
    let letter = r.letter.expect("dead letter");
    assert_eq!(letter.error_code, "RATE_LIMIT_EXHAUSTED");
    assert_eq!(letter.status_code, 429);
    assert!(letter.retry_exhausted);
    assert_eq!(letter.recovery_directive, Directive::DeadLetter);
    assert_eq!(field(&r.record, "resolution"), "EXHAUSTED");
    assert_eq!(field(&r.record, "retry_count"), 3);
}

#[test]
fn a_budget_spent_on_5xx_is_http_status() {
    let letter = exhaust(status(502)).letter.expect("dead letter");
    assert_eq!(letter.error_code, "HTTP_502");
    assert_eq!(letter.action_id.as_deref(), Some("X-1"));
}

#[test]
fn a_budget_spent_on_timeouts_is_request_timeout() {
    let letter = exhaust(CallError::Timeout).letter.expect("dead letter");
    assert_eq!(letter.error_code, "REQUEST_TIMEOUT");
    assert_eq!(letter.status_code, 0);
}

#[test]
fn a_budget_spent_on_network_errors_is_network_error() {
    let letter = exhaust(CallError::Network("connection reset".into()))
        .letter
        .expect("dead letter");
    assert_eq!(letter.error_code, "NETWORK_ERROR");
}

#[test]
fn a_budget_spent_on_malformed_bodies_is_malformed_response() {
    let letter = exhaust(CallError::Malformed("no status".into()))
        .letter
        .expect("dead letter");
    assert_eq!(letter.error_code, "MALFORMED_RESPONSE");
    assert_eq!(letter.status_code, 200);
}

#[test]
fn a_second_401_is_unauthorized_without_spending_the_budget() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    let d = m.on_poll(&f.policy(), Err(status(401)), &mut rng(), t0);
    let r = resolution(classified(&f, &mut m, d, t0));
    let letter = r.letter.expect("dead letter");
    assert_eq!(letter.error_code, "UNAUTHORIZED");
    assert_eq!(letter.retry_count, 0);
    assert!(!letter.retry_exhausted);
}

#[test]
fn forbidden_names_the_missing_scope_of_the_request() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut submit = fresh();
    submit.next(&f.policy(), t0);
    let d = submit.on_submit(&f.policy(), Err(status(403)), &mut rng(), t0);
    let letter = resolution(classified(&f, &mut submit, d, t0)).letter.unwrap();
    assert_eq!(letter.error_code, "FORBIDDEN");
    assert!(letter.message.contains("data:actions:write"), "{}", letter.message);
    let mut poll = polling(&f, t0);
    let d = poll.on_poll(&f.policy(), Err(status(403)), &mut rng(), t0);
    let letter = resolution(classified(&f, &mut poll, d, t0)).letter.unwrap();
    assert!(letter.message.contains("data:actions:read"), "{}", letter.message);
}

#[test]
fn a_404_on_poll_is_action_not_found_but_on_submit_an_http_code() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut poll = polling(&f, t0);
    let d = poll.on_poll(&f.policy(), Err(status(404)), &mut rng(), t0);
    assert_eq!(
        resolution(classified(&f, &mut poll, d, t0)).letter.unwrap().error_code,
        "ACTION_NOT_FOUND"
    );
    let mut submit = fresh();
    submit.next(&f.policy(), t0);
    let d = submit.on_submit(&f.policy(), Err(status(404)), &mut rng(), t0);
    assert_eq!(
        resolution(classified(&f, &mut submit, d, t0))
            .letter
            .unwrap()
            .error_code,
        "HTTP_404"
    );
}

#[test]
fn another_4xx_on_submit_takes_the_code_of_the_body_and_is_not_retried() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = fresh();
    m.next(&f.policy(), t0);
    let error = CallError::Status {
        status: 422,
        retry_after: None,
        code: Some("INVALID_PAYLOAD".into()),
        message: Some("contactId is required".into()),
    };
    let d = m.on_submit(&f.policy(), Err(error), &mut rng(), t0);
    let letter = resolution(classified(&f, &mut m, d, t0)).letter.unwrap();
    assert_eq!(letter.error_code, "INVALID_PAYLOAD");
    assert_eq!(letter.message, "contactId is required");
    assert_eq!(letter.retry_count, 0);
}

#[test]
fn retry_resubmits_after_the_backoff_as_a_new_attempt_with_a_new_key() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    let d = m.on_poll(&f.policy(), Ok(failed("TIMEOUT")), &mut rng(), t0);
    let d = classified(&f, &mut m, d, t0);
    assert_eq!(m.state().attempt, 2);
    assert_eq!(m.state().retry_count, 1);
    assert_eq!(d.step, Step::Wait(t0 + Duration::from_millis(200)));
    assert!(matches!(m.state().phase, Phase::Backoff { .. }));
    assert!(d
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Audit(r) if r.event_type == "RETRY_SCHEDULED")));
    let again = m.next(&f.policy(), t0 + Duration::from_millis(200));
    assert_eq!(
        again.step,
        Step::Submit {
            key: idempotency_key(&identity(), 0, 2),
            compensation: false
        }
    );
}

#[test]
fn retry_with_the_budget_spent_is_exhausted_with_the_last_code() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    for _ in 0..f.retry.max_retries {
        let d = m.on_poll(&f.policy(), Ok(failed("TIMEOUT")), &mut rng(), t0);
        classified(&f, &mut m, d, t0);
        m.next(&f.policy(), t0 + Duration::from_secs(5));
        m.on_submit(&f.policy(), accepted("X-2"), &mut rng(), t0);
    }
    let d = m.on_poll(&f.policy(), Ok(failed("TIMEOUT")), &mut rng(), t0);
    let r = resolution(classified(&f, &mut m, d, t0));
    let letter = r.letter.unwrap();
    assert_eq!(letter.error_code, "TIMEOUT");
    assert!(letter.retry_exhausted);
    assert_eq!(letter.recovery_directive, Directive::DeadLetter);
    assert_eq!(field(&r.record, "resolution"), "EXHAUSTED");
    assert_eq!(r.attempts, 4);
}

#[test]
fn dead_letter_directive_resolves_at_once() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    let d = m.on_poll(&f.policy(), Ok(failed("INVALID_VALUE")), &mut rng(), t0);
    let r = resolution(classified(&f, &mut m, d, t0));
    assert_eq!(field(&r.record, "resolution"), "DEAD_LETTERED");
    let letter = r.letter.unwrap();
    assert!(!letter.retry_exhausted);
    assert_eq!(letter.status_code, 200);
    assert_eq!(letter.stack_trace[0].function.as_deref(), Some("INVALID_VALUE"));
}

#[test]
fn rollback_without_a_template_dead_letters_and_keeps_the_directive() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    let d = m.on_poll(&f.policy(), Ok(failed("PARTIAL_WRITE")), &mut rng(), t0);
    let r = resolution(classified(&f, &mut m, d, t0));
    assert_eq!(r.outcome, Outcome::DeadLettered);
    assert_eq!(r.letter.unwrap().recovery_directive, Directive::Rollback);
}

/// A machine whose action failed with PARTIAL_WRITE and whose compensation was accepted
/// as `C-1`.
fn compensating(f: &Fixture, t0: Instant) -> Machine {
    let mut m = polling(f, t0);
    let d = m.on_poll(&f.policy(), Ok(failed("PARTIAL_WRITE")), &mut rng(), t0);
    let d = classified(f, &mut m, d, t0);
    assert_eq!(
        d.step,
        Step::Submit {
            key: rollback_idempotency_key(&identity(), 0, 1),
            compensation: true
        }
    );
    m.on_submit(&f.policy(), accepted("C-1"), &mut rng(), t0);
    m
}

#[test]
fn rollback_with_a_template_submits_the_compensation_and_keeps_the_original_id() {
    let mut f = Fixture::new();
    f.can_compensate = true;
    let t0 = Instant::now();
    let m = compensating(&f, t0);
    assert_eq!(m.state().action_id.as_deref(), Some("X-1"));
    assert!(matches!(&m.state().phase, Phase::Polling { action_id, .. } if action_id == "C-1"));
}

#[test]
fn a_completed_compensation_is_rolled_back() {
    let mut f = Fixture::new();
    f.can_compensate = true;
    let t0 = Instant::now();
    let mut m = compensating(&f, t0);
    let r = resolution(m.on_poll(&f.policy(), Ok(PollStatus::Completed), &mut rng(), t0));
    assert_eq!(r.outcome, Outcome::RolledBack);
    assert!(r.letter.is_none());
    assert_eq!(field(&r.record, "resolution"), "ROLLED_BACK");
    assert_eq!(field(&r.record, "error_code"), "PARTIAL_WRITE");
    assert_eq!(field(&r.record, "action_id"), "X-1");
}

#[test]
fn a_failed_compensation_is_rollback_failed_about_the_original_action() {
    let mut f = Fixture::new();
    f.can_compensate = true;
    let t0 = Instant::now();
    let mut m = compensating(&f, t0);
    let d = m.on_poll(&f.policy(), Ok(failed("LOCKED")), &mut rng(), t0);
    let letter = resolution(classified(&f, &mut m, d, t0)).letter.unwrap();
    assert_eq!(letter.error_code, "ROLLBACK_FAILED");
    assert_eq!(letter.action_id.as_deref(), Some("X-1"));
    assert!(letter.message.contains("PARTIAL_WRITE"), "{}", letter.message);
    assert_eq!(
        letter.stack_trace[1].function.as_deref(),
        Some("LOCKED"),
        "the cause follows"
    );
}

#[test]
fn a_cancelled_or_refused_compensation_is_rollback_failed() {
    let mut f = Fixture::new();
    f.can_compensate = true;
    let t0 = Instant::now();
    let mut cancelled = compensating(&f, t0);
    let d = cancelled.on_poll(&f.policy(), Ok(PollStatus::Cancelled), &mut rng(), t0);
    assert_eq!(
        resolution(classified(&f, &mut cancelled, d, t0))
            .letter
            .unwrap()
            .error_code,
        "ROLLBACK_FAILED"
    );

    let mut refused = polling(&f, t0);
    let d = refused.on_poll(&f.policy(), Ok(failed("PARTIAL_WRITE")), &mut rng(), t0);
    classified(&f, &mut refused, d, t0);
    let d = refused.on_submit(&f.policy(), Err(status(403)), &mut rng(), t0);
    let letter = resolution(classified(&f, &mut refused, d, t0)).letter.unwrap();
    assert_eq!(letter.error_code, "ROLLBACK_FAILED");
    assert!(letter.message.contains("FORBIDDEN"), "{}", letter.message);
}

#[test]
fn a_compensation_whose_template_was_removed_is_rollback_failed() {
    let mut f = Fixture::new();
    f.can_compensate = true;
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    let d = m.on_poll(&f.policy(), Ok(failed("PARTIAL_WRITE")), &mut rng(), t0);
    classified(&f, &mut m, d, t0);
    f.can_compensate = false;
    let d = m.next(&f.policy(), t0);
    let letter = resolution(classified(&f, &mut m, d, t0)).letter.unwrap();
    assert_eq!(letter.error_code, "ROLLBACK_FAILED");
    assert!(letter.message.contains("ROLLBACK_NOT_CONFIGURED"), "{}", letter.message);
}

#[test]
fn past_the_poll_timeout_the_action_is_dead_lettered() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    let d = m.next(&f.policy(), t0 + f.poll.timeout);
    let r = resolution(classified(&f, &mut m, d, t0 + f.poll.timeout));
    let letter = r.letter.unwrap();
    assert_eq!(letter.error_code, "POLL_TIMEOUT");
    assert_eq!(letter.action_id.as_deref(), Some("X-1"));
}

#[test]
fn no_wait_runs_past_the_poll_timeout() {
    let mut f = Fixture::new();
    f.poll.timeout = Duration::from_millis(150);
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    let d = m.on_poll(
        &f.policy(),
        Err(CallError::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(30)),
            code: None,
            message: None,
        }),
        &mut rng(),
        t0,
    );
    assert_eq!(d.step, Step::Wait(t0 + f.poll.timeout));
}

#[test]
fn too_many_restarts_inside_the_window_are_a_crash_loop_with_the_panic_messages() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    for n in 0..=f.supervisor.max_restarts {
        let (delay, record) = m.on_restart(&f.policy(), format!("boom {n}"), t0);
        assert_eq!(record.event_type, "POLLER_RESTARTED");
        assert!(delay >= f.supervisor.restart_backoff);
    }
    let d = m.next(&f.policy(), t0);
    let letter = resolution(classified(&f, &mut m, d, t0)).letter.unwrap();
    assert_eq!(letter.error_code, "POLLER_CRASH_LOOP");
    let messages: Vec<_> = letter.stack_trace.iter().map(|s| s.message.clone().unwrap()).collect();
    assert_eq!(messages, ["boom 0", "boom 1", "boom 2"]);
}

#[test]
fn restarts_within_the_limit_continue_the_action() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    m.on_restart(&f.policy(), "boom".into(), t0);
    assert!(!m.state().crash_loop);
    let d = m.next(&f.policy(), t0 + Duration::from_secs(1));
    assert_eq!(
        d.step,
        Step::Poll {
            action_id: "X-1".into()
        }
    );
}

#[test]
fn a_reload_resumes_the_same_id_attempt_and_budget() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = fresh();
    m.on_restart(&f.policy(), "boom".into(), t0);
    let journaled = ActionState {
        attempt: 2,
        retry_count: 1,
        action_id: Some("X-7".into()),
        first_submit: Some(t0),
        phase: Phase::Polling {
            action_id: "X-7".into(),
            polls: 0,
            next_at: t0,
        },
        ..ActionState::default()
    };
    m.reload(journaled);
    assert_eq!(
        m.next(&f.policy(), t0).step,
        Step::Poll {
            action_id: "X-7".into()
        }
    );
    assert_eq!((m.state().attempt, m.state().retry_count), (2, 1));
    assert_eq!(m.state().restart_total, 1, "restart bookkeeping survives the reload");
}

#[test]
fn a_journaled_submitting_state_repeats_the_post_with_the_same_key() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let state = ActionState {
        attempt: 3,
        phase: Phase::Submitting,
        first_submit: Some(t0),
        ..ActionState::default()
    };
    let mut m = Machine::new(identity(), state);
    let d = m.next(&f.policy(), t0);
    assert_eq!(
        d.step,
        Step::Submit {
            key: idempotency_key(&identity(), 0, 3),
            compensation: false
        }
    );
}

#[test]
fn a_journaled_backoff_waits_what_is_left() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let until = t0 + Duration::from_millis(300);
    let mut m = Machine::new(
        identity(),
        ActionState {
            phase: Phase::Backoff { until },
            first_submit: Some(t0),
            ..ActionState::default()
        },
    );
    assert_eq!(m.next(&f.policy(), t0).step, Step::Wait(until));
    assert!(matches!(m.next(&f.policy(), until).step, Step::Submit { .. }));
}

#[test]
fn a_replay_series_gets_new_keys() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = Machine::new(
        identity(),
        ActionState {
            series: 1,
            ..ActionState::default()
        },
    );
    let d = m.next(&f.policy(), t0);
    assert_eq!(
        d.step,
        Step::Submit {
            key: idempotency_key(&identity(), 1, 1),
            compensation: false
        }
    );
    assert_ne!(idempotency_key(&identity(), 1, 1), idempotency_key(&identity(), 0, 1));
}

#[test]
fn an_action_resolved_before_a_crash_is_only_reported() {
    let f = Fixture::new();
    let mut m = Machine::new(
        identity(),
        ActionState {
            phase: Phase::Done(Outcome::Cancelled),
            ..ActionState::default()
        },
    );
    assert_eq!(
        m.next(&f.policy(), Instant::now()).step,
        Step::Report(Outcome::Cancelled)
    );
}

#[test]
fn a_misconfiguration_waits_without_spending_the_budget() {
    let f = Fixture::new();
    let t0 = Instant::now();
    let mut m = polling(&f, t0);
    let error = CallError::Misconfigured {
        host: "api.example.com".into(),
        reason: "invalid peer certificate: UnknownIssuer".into(),
    };
    let d = m.on_poll(&f.policy(), Err(error), &mut rng(), t0);
    assert_eq!(m.state().retry_count, 0);
    assert_eq!(d.step, Step::Wait(t0 + BLOCKED_RETRY));
    assert!(matches!(&d.effects[..], [Effect::Blocked { reason }] if reason.contains("UnknownIssuer")));
}
