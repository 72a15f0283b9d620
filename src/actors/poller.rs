//! The `PollerActor`: one CXone action from submit to outcome, under `actix::Supervisor`.
//! Retry timing lives in backoff.rs, the state and its rules in state.rs.
//!
//! The actor runs its action as one task (`drive`) spawned into its context. The task
//! reads and writes the `ActionState` held by the actor, so the state outlives the task:
//! a panic inside the task is caught (`catch_unwind`) and turned into `ctx.stop()`, the
//! Supervisor calls `restarting` then `started` on the same instance, and the new task
//! continues from the last known state (same CXone id, attempt, retry count) instead of
//! submitting again. Too many restarts inside the window end in `POLLER_CRASH_LOOP`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::FutureExt;
use rand::rngs::SmallRng;
use rand::Rng;
use tracing::Instrument;

use super::poller_env::PollerEnv;
use crate::action::{idempotency_key, rollback_idempotency_key, ActionSpec, Outcome};
use crate::actors::admission::{ActionDone, AdmissionActor};
use crate::actors::audit::{AppendAudit, AppendOutcome, AuditRecord};
use crate::actors::classifier::{Classify, Failure};
use crate::actors::dead_letter::{DeadLetter, StoreDeadLetter};
use crate::actors::token::{GetToken, InvalidateToken};
use crate::backoff;
use crate::classify::{unix_now, ErrorPayload, StackFrame};
use crate::config::{Directive, Secret};
use crate::cxone::{CallError, Endpoint, PollStatus};
use crate::journal::{ActionRow, OutcomeLine};
use crate::state::{poll_interval, ActionState, Phase};
use crate::telemetry::events::{ActionFinished, ActionSubmitted, PollerRestarted, RetrySpent};

/// How long a caller waits before asking a restarting singleton again.
const MAILBOX_RETRY: Duration = Duration::from_millis(20);
/// How long to wait before retrying a failed journal write.
const JOURNAL_RETRY: Duration = Duration::from_millis(500);

/// How a run of `drive` ended.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The outcome.
    pub outcome: Outcome,
    /// First submission -> outcome.
    pub latency: Duration,
    /// Retries spent.
    pub retry_count: u32,
}

/// The poller of one action.
pub struct PollerActor {
    env: Rc<PollerEnv>,
    spec: ActionSpec,
    state: Rc<RefCell<ActionState>>,
    admission: Addr<AdmissionActor>,
    /// Set by `restarting`: the next run first reloads the journaled state.
    reload: bool,
}

impl PollerActor {
    /// A poller for `spec` starting from `state` (fresh, or resumed).
    pub fn new(env: Rc<PollerEnv>, spec: ActionSpec, state: ActionState, admission: Addr<AdmissionActor>) -> Self {
        PollerActor {
            env,
            spec,
            state: Rc::new(RefCell::new(state)),
            admission,
            reload: false,
        }
    }

    fn spawn_drive(&mut self, ctx: &mut Context<Self>) {
        let span = tracing::info_span!(
            "action",
            batch = %self.spec.identity.batch,
            key = %self.spec.identity.key,
            action_id = tracing::field::Empty,
            attempt = tracing::field::Empty,
        );
        let (env, spec, state) = (self.env.clone(), self.spec.clone(), self.state.clone());
        let reload = std::mem::take(&mut self.reload);
        let work = async move {
            if reload {
                reload_state(&env, &spec, &state).await;
            }
            drive(env, spec, state).await
        }
        .instrument(span);
        let guarded = AssertUnwindSafe(work).catch_unwind();
        ctx.spawn(guarded.into_actor(self).map(|result, act, ctx| match result {
            Ok(resolution) => {
                act.admission.do_send(ActionDone {
                    identity: act.spec.identity.clone(),
                    outcome: resolution.outcome,
                    latency: resolution.latency,
                    retries: resolution.retry_count,
                    restarts: act.state.borrow().restart_total,
                });
            }
            Err(panic) => {
                let message = panic_message(&panic);
                tracing::warn!(batch = %act.spec.identity.batch, key = %act.spec.identity.key, panic = %message, "Poller crashed; restarting from its last known state.");
                act.state.borrow_mut().panic_messages.push(message);
                ctx.stop();
            }
        }));
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".into()
    }
}

impl Actor for PollerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let restarted = !self.state.borrow().restarts.is_empty();
        if restarted {
            let delay = self.state.borrow().restart_delay(self.env.supervisor.restart_backoff);
            ctx.run_later(delay, |act, ctx| act.spawn_drive(ctx));
        } else {
            self.spawn_drive(ctx);
        }
    }
}

impl Supervised for PollerActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        let sup = &self.env.supervisor;
        let mut st = self.state.borrow_mut();
        if st.record_restart(Instant::now(), sup.restart_window, sup.max_restarts) {
            st.crash_loop = true;
        }
        PollerRestarted {
            batch: &self.spec.identity.batch,
        }
        .emit();
        let record = AuditRecord::new("POLLER_RESTARTED", &self.spec.identity)
            .with("restarts", st.restart_total)
            .with("attempt", st.attempt)
            .with("action_id", st.action_id.clone())
            .with("panic", st.panic_messages.last().cloned());
        self.env.audit.do_send(AppendAudit { record });
    }
}

/// Runs the action from its current state to an outcome.
///
/// Every step is awaited through `Box::pin`: an async fn is as large as its largest
/// await point, and this one lives as long as its action (100,000 of them may be in
/// flight), so the request futures are allocated only while they run.
async fn drive(env: Rc<PollerEnv>, spec: ActionSpec, st: Rc<RefCell<ActionState>>) -> Resolution {
    let retry = &env.retry;
    loop {
        // A crash loop ends here, before the chaos point that may have caused it.
        if st.borrow().crash_loop {
            let frames: Vec<StackFrame> = st
                .borrow()
                .panic_messages
                .iter()
                .map(|m| StackFrame {
                    frame_index: 0,
                    function: Some("panic".into()),
                    file: None,
                    line: None,
                    message: Some(m.clone()),
                })
                .collect();
            let mut failure = Failure::local(
                st.borrow().action_id.clone(),
                0,
                "POLLER_CRASH_LOOP",
                format!(
                    "the poller crashed more than {} times within {}",
                    env.supervisor.max_restarts,
                    crate::config::duration::format(env.supervisor.restart_window)
                ),
            );
            failure.extra_frames = frames;
            return Box::pin(dead_letter(&env, &spec, &st, failure, false)).await;
        }
        env.chaos_point();
        let timed_out = st
            .borrow()
            .first_submit
            .is_some_and(|t| t.elapsed() >= env.poll.timeout);
        if timed_out {
            let failure = Failure::local(
                st.borrow().action_id.clone(),
                0,
                "POLL_TIMEOUT",
                format!(
                    "no outcome within poll.timeout ({})",
                    crate::config::duration::format(env.poll.timeout)
                ),
            );
            return Box::pin(dead_letter(&env, &spec, &st, failure, false)).await;
        }
        let phase = st.borrow().phase.clone();
        match phase {
            Phase::Pending => st.borrow_mut().phase = Phase::Submitting,
            Phase::Done(outcome) => {
                // Resolved before a crash (journaled, audit line handed over): report it.
                let s = st.borrow();
                return Resolution {
                    outcome,
                    latency: s.latency(),
                    retry_count: s.retry_count,
                };
            }
            Phase::Backoff { until } => {
                sleep_until(&env, &st, until).await;
                st.borrow_mut().phase = Phase::Submitting;
            }
            Phase::Submitting => {
                let step = {
                    let _slot = env.request_slot().await;
                    Box::pin(submit(&env, &spec, &st)).await
                };
                match step {
                    Ok(None) => {}
                    Ok(Some(done)) => return done,
                    Err(error) => {
                        if let Some(done) = Box::pin(on_call_error(&env, &spec, &st, error, Endpoint::Submit)).await {
                            return done;
                        }
                    }
                }
            }
            Phase::Polling {
                action_id,
                polls,
                next_at,
            } => {
                sleep_until(&env, &st, next_at).await;
                if st
                    .borrow()
                    .first_submit
                    .is_some_and(|t| t.elapsed() >= env.poll.timeout)
                {
                    continue;
                }
                let result = {
                    let _slot = env.request_slot().await;
                    Box::pin(env.call(async |token| env.client.poll(&token, &action_id).await)).await
                };
                let compensating = st.borrow().compensating.is_some();
                match result {
                    Ok(PollStatus::Running(status)) => {
                        tracing::debug!(%status, polls = polls + 1, "Action still running.");
                        let wait =
                            poll_interval(env.poll.interval, env.poll.backoff_factor, env.poll.max_interval, polls);
                        st.borrow_mut().phase = Phase::Polling {
                            action_id,
                            polls: polls + 1,
                            next_at: Instant::now() + wait,
                        };
                    }
                    Ok(status) if compensating => {
                        return Box::pin(compensation_ended(&env, &spec, &st, &action_id, status)).await
                    }
                    Ok(PollStatus::Completed) => {
                        return Box::pin(finished(&env, &spec, &st, Outcome::Completed, &action_id)).await
                    }
                    Ok(PollStatus::Cancelled) => {
                        return Box::pin(finished(&env, &spec, &st, Outcome::Cancelled, &action_id)).await
                    }
                    Ok(PollStatus::Failed(errors)) => {
                        let failure = Failure {
                            action_id: Some(action_id.clone()),
                            status_code: 200,
                            errors,
                            forced: None,
                            extra_frames: Vec::new(),
                            retry_count: st.borrow().retry_count,
                            max_retries: retry.max_retries,
                        };
                        let payload = Box::pin(classify(&env, failure)).await;
                        match payload.recovery_directive {
                            Directive::Retry if st.borrow().retry_count < retry.max_retries => {
                                let delay = spend_retry(&env, &spec, &st, "failed", &payload.error_code, None);
                                {
                                    let mut s = st.borrow_mut();
                                    s.attempt += 1;
                                    s.phase = Phase::Backoff {
                                        until: Instant::now() + delay,
                                    };
                                }
                                Box::pin(persist(&env, &spec, &st, false)).await;
                            }
                            Directive::Retry => {
                                return Box::pin(dead_letter_payload(&env, &spec, &st, payload, true)).await
                            }
                            Directive::Rollback if env.rollback_templates.contains_key(&spec.identity.batch) => {
                                tracing::info!(error_code = %payload.error_code, "Action failed; compensating.");
                                {
                                    let mut s = st.borrow_mut();
                                    s.compensating = Some(Box::new(payload));
                                    s.attempt = 1;
                                    s.phase = Phase::Submitting;
                                }
                                Box::pin(persist(&env, &spec, &st, false)).await;
                            }
                            Directive::Rollback | Directive::DeadLetter => {
                                return Box::pin(dead_letter_payload(&env, &spec, &st, payload, false)).await;
                            }
                        }
                    }
                    Err(error) => {
                        if let Some(done) = Box::pin(on_call_error(&env, &spec, &st, error, Endpoint::Poll)).await {
                            return done;
                        }
                    }
                }
            }
        }
    }
}

/// POSTs the current attempt (or the compensation): `Ok(Some)` when that ended the
/// action, `Err` for the caller to decide on (outside the request slot: a backoff must
/// not hold one).
async fn submit(
    env: &PollerEnv,
    spec: &ActionSpec,
    st: &RefCell<ActionState>,
) -> Result<Option<Resolution>, CallError> {
    let (attempt, series, compensating) = {
        let mut s = st.borrow_mut();
        s.first_submit.get_or_insert_with(Instant::now);
        (s.attempt, s.series, s.compensating.is_some())
    };
    tracing::Span::current().record("attempt", attempt);
    let (body, key) = if compensating {
        let failed_id = st.borrow().action_id.clone();
        (
            env.rollback_body(spec, failed_id.as_deref()),
            rollback_idempotency_key(&spec.identity, series, attempt),
        )
    } else {
        (
            spec.body_bytes.clone(),
            idempotency_key(&spec.identity, series, attempt),
        )
    };
    // Write-ahead: `submitting(attempt)` is on disk before the POST.
    persist(env, spec, st, true).await;
    let result = env
        .call(async |token| env.client.submit(&token, body.clone(), key).await)
        .await;
    let submitted = match result {
        Ok(submitted) => submitted,
        Err(error) => return Err(error),
    };
    let Some(action_id) = submitted.id else {
        let failure = Failure::local(
            None,
            submitted.status,
            "MISSING_ACTION_ID",
            "CXone accepted the action without an id (no body id, no X-Action-Id); it may exist upstream, so it is not resubmitted".into(),
        );
        return Ok(Some(dead_letter(env, spec, st, failure, false).await));
    };
    tracing::Span::current().record("action_id", action_id.as_str());
    tracing::debug!(%action_id, attempt, idempotency_key = %key, "Action submitted.");
    ActionSubmitted {
        batch: &spec.identity.batch,
    }
    .emit();
    let record = AuditRecord::new("ACTION_SUBMITTED", &spec.identity)
        .with("action_id", action_id.as_str())
        .with("attempt", attempt)
        .with("idempotency_key", key.to_string())
        .with("compensation", compensating);
    env.audit.do_send(AppendAudit { record });
    {
        let mut s = st.borrow_mut();
        if !compensating {
            s.action_id = Some(action_id.clone());
        }
        s.phase = Phase::Polling {
            action_id,
            polls: 0,
            next_at: Instant::now() + env.poll.initial_delay,
        };
    }
    // Write-ahead: the CXone id is on disk before the first poll.
    persist(env, spec, st, true).await;
    Ok(None)
}

/// The compensation reached a terminal status: rolled back, or `ROLLBACK_FAILED`.
async fn compensation_ended(
    env: &PollerEnv,
    spec: &ActionSpec,
    st: &RefCell<ActionState>,
    compensation_id: &str,
    status: PollStatus,
) -> Resolution {
    let payload = *st.borrow().compensating.clone().expect("compensating");
    if status == PollStatus::Completed {
        return rolled_back(env, spec, st, payload).await;
    }
    let what = match &status {
        PollStatus::Cancelled => "was cancelled".to_owned(),
        PollStatus::Failed(errors) => {
            format!(
                "failed with {}",
                errors.first().map(|e| e.code.as_str()).unwrap_or("an error")
            )
        }
        PollStatus::Completed | PollStatus::Running(_) => unreachable!("handled by the caller"),
    };
    let mut failure = Failure::local(
        payload.action_id.clone(),
        200,
        "ROLLBACK_FAILED",
        format!(
            "compensation {compensation_id} of {} ({}) {what}",
            payload.action_id.as_deref().unwrap_or("?"),
            payload.error_code
        ),
    );
    if let PollStatus::Failed(errors) = status {
        failure.errors.extend(errors);
    }
    dead_letter(env, spec, st, failure, false).await
}

/// Sleeps until `at`, but not past the action's poll timeout.
async fn sleep_until(env: &PollerEnv, st: &RefCell<ActionState>, at: Instant) {
    let deadline = st.borrow().first_submit.map(|t| t + env.poll.timeout);
    let at = deadline.map_or(at, |d| at.min(d));
    actix_rt::time::sleep_until(at.into()).await;
}

/// Decides about a failed call: `None` to go on (after waiting), `Some` when finished.
async fn on_call_error(
    env: &PollerEnv,
    spec: &ActionSpec,
    st: &RefCell<ActionState>,
    error: CallError,
    endpoint: Endpoint,
) -> Option<Resolution> {
    let action_id = match &st.borrow().phase {
        Phase::Polling { action_id, .. } => Some(action_id.clone()),
        _ => st.borrow().action_id.clone(),
    };
    let max = env.retry.max_retries;
    let status = error.status_code();
    let local = |code: &str, message: String| Failure::local(action_id.clone(), status, code, message);
    let failure = match &error {
        CallError::Status { status: 401, .. } => local(
            "UNAUTHORIZED",
            "CXone refused a freshly issued token (second 401)".into(),
        ),
        CallError::Status { status: 403, .. } => {
            let scope = if endpoint == Endpoint::Submit {
                "data:actions:write"
            } else {
                "data:actions:read"
            };
            local(
                "FORBIDDEN",
                format!(
                    "CXone refused the {} request (403): the client needs scope {scope}",
                    endpoint.as_str()
                ),
            )
        }
        CallError::Status { status: 404, .. } if endpoint == Endpoint::Poll => local(
            "ACTION_NOT_FOUND",
            format!("CXone does not know action {}", action_id.as_deref().unwrap_or("?")),
        ),
        e if e.is_transient() => {
            if st.borrow().retry_count < max {
                let retry_after = match e {
                    CallError::Status { retry_after, .. } => *retry_after,
                    _ => None,
                };
                let delay = spend_retry(env, spec, st, e.reason(), &e.error_code(), retry_after);
                persist(env, spec, st, false).await;
                tracing::debug!(error = %e, retry_in = ?delay, endpoint = endpoint.as_str(), "Repeating request.");
                actix_rt::time::sleep(delay).await;
                return None;
            }
            let message = format!("{} {}: retry budget of {max} spent", endpoint.as_str(), describe(e));
            return Some(dead_letter(env, spec, st, local(&e.error_code(), message), true).await);
        }
        CallError::Status {
            status, code, message, ..
        } => {
            let code = match (endpoint, code) {
                (Endpoint::Submit, Some(c)) => c.clone(),
                _ => format!("HTTP_{status}"),
            };
            let text = message
                .clone()
                .unwrap_or_else(|| format!("CXone answered {status} to {}", endpoint.as_str()));
            local(&code, text)
        }
        other => local(&other.error_code(), other.to_string()),
    };
    Some(dead_letter(env, spec, st, failure, false).await)
}

fn describe(error: &CallError) -> String {
    match error {
        CallError::Status {
            status,
            message: Some(m),
            ..
        } => format!("answered {status} ({m})"),
        other => other.to_string(),
    }
}

/// Spends one retry: counts it, audits it and returns the wait (Retry-After wins if longer).
fn spend_retry(
    env: &PollerEnv,
    spec: &ActionSpec,
    st: &RefCell<ActionState>,
    reason: &'static str,
    error_code: &str,
    retry_after: Option<Duration>,
) -> Duration {
    let mut s = st.borrow_mut();
    s.retry_count += 1;
    let n = s.retry_count;
    let delay = backoff::with_retry_after(backoff::delay(&env.retry, n, &mut *env.rng.borrow_mut()), retry_after);
    RetrySpent {
        batch: &spec.identity.batch,
        reason,
    }
    .emit();
    let record = AuditRecord::new("RETRY_SCHEDULED", &spec.identity)
        .with("action_id", s.action_id.clone())
        .with("attempt", s.attempt)
        .with("retry_count", n)
        .with("reason", reason)
        .with("error_code", error_code)
        .with("delay_seconds", delay.as_secs_f64());
    env.audit.do_send(AppendAudit { record });
    delay
}

async fn classify(env: &PollerEnv, failure: Failure) -> ErrorPayload {
    loop {
        match env
            .classifier
            .send(Classify {
                failure: failure.clone(),
            })
            .await
        {
            Ok(payload) => return payload,
            Err(_) => actix_rt::time::sleep(MAILBOX_RETRY).await,
        }
    }
}

/// Dead-letters a failure of our own making (classified as DEAD_LETTER by force).
async fn dead_letter(
    env: &PollerEnv,
    spec: &ActionSpec,
    st: &RefCell<ActionState>,
    mut failure: Failure,
    exhausted: bool,
) -> Resolution {
    failure.retry_count = st.borrow().retry_count;
    failure.max_retries = env.retry.max_retries;
    let payload = classify(env, failure).await;
    dead_letter_payload(env, spec, st, payload, exhausted).await
}

/// Resolves as dead-lettered: the letter is committed with the outcome, then delivered.
async fn dead_letter_payload(
    env: &PollerEnv,
    spec: &ActionSpec,
    st: &RefCell<ActionState>,
    mut payload: ErrorPayload,
    exhausted: bool,
) -> Resolution {
    if exhausted {
        payload.recovery_directive = Directive::DeadLetter;
    }
    payload.resolved_at = Some(unix_now());
    let letter = DeadLetter::new(&spec.identity, &payload, exhausted);
    tracing::warn!(error_code = %payload.error_code, error_id = %payload.error_id, directive = %payload.recovery_directive, "Action dead-lettered.");
    let resolution = if exhausted { "EXHAUSTED" } else { "DEAD_LETTERED" };
    let done = resolve_with_error(
        env,
        spec,
        st,
        &payload,
        resolution,
        Outcome::DeadLettered,
        Some(letter.clone()),
    )
    .await;
    while env
        .dead_letter
        .send(StoreDeadLetter { letter: letter.clone() })
        .await
        .is_err()
    {
        actix_rt::time::sleep(MAILBOX_RETRY).await;
    }
    done
}

async fn rolled_back(
    env: &PollerEnv,
    spec: &ActionSpec,
    st: &RefCell<ActionState>,
    mut payload: ErrorPayload,
) -> Resolution {
    payload.resolved_at = Some(unix_now());
    tracing::info!(error_code = %payload.error_code, "Action rolled back.");
    resolve_with_error(env, spec, st, &payload, "ROLLED_BACK", Outcome::RolledBack, None).await
}

async fn resolve_with_error(
    env: &PollerEnv,
    spec: &ActionSpec,
    st: &RefCell<ActionState>,
    payload: &ErrorPayload,
    resolution: &'static str,
    outcome: Outcome,
    letter: Option<DeadLetter>,
) -> Resolution {
    let latency = st.borrow().latency();
    let record = AuditRecord::new("ASYNC_ERROR_HANDLED", &spec.identity)
        .with("error_id", payload.error_id.to_string())
        .with("action_id", payload.action_id.clone())
        .with("status_code", payload.status_code)
        .with("error_code", payload.error_code.as_str())
        .with("message", payload.message.as_str())
        .with("recovery_directive", payload.recovery_directive.as_str())
        .with("retry_count", payload.retry_count)
        .with("max_retries", payload.max_retries)
        .with("latency_seconds", latency.as_secs_f64())
        .with("resolved_at", payload.resolved_at)
        .with("resolution", resolution);
    resolve(env, spec, st, outcome, latency, record, letter).await
}

async fn finished(
    env: &PollerEnv,
    spec: &ActionSpec,
    st: &RefCell<ActionState>,
    outcome: Outcome,
    action_id: &str,
) -> Resolution {
    let (latency, attempt, retry_count) = {
        let s = st.borrow();
        (s.latency(), s.attempt, s.retry_count)
    };
    let event = if outcome == Outcome::Completed {
        "ACTION_COMPLETED"
    } else {
        "ACTION_CANCELLED"
    };
    let record = AuditRecord::new(event, &spec.identity)
        .with("action_id", action_id)
        .with("attempts", attempt)
        .with("retry_count", retry_count)
        .with("latency_seconds", latency.as_secs_f64());
    tracing::info!(%action_id, attempts = attempt, retry_count, "Action {}.", outcome);
    resolve(env, spec, st, outcome, latency, record, None).await
}

/// Commits the outcome, its audit line and dead letter in one journal transaction,
/// then hands the line to the audit actor (journal/mod.rs explains why this order makes
/// the audit record exactly-once).
async fn resolve(
    env: &PollerEnv,
    spec: &ActionSpec,
    st: &RefCell<ActionState>,
    outcome: Outcome,
    latency: Duration,
    record: AuditRecord,
    letter: Option<DeadLetter>,
) -> Resolution {
    st.borrow_mut().phase = Phase::Done(outcome);
    let row = ActionRow::from_state(&spec.identity, &st.borrow());
    let event_id = uuid::Uuid::new_v4();
    let line = OutcomeLine {
        event_id: event_id.to_string(),
        line: record.to_line(event_id),
    };
    while let Err(e) = env.journal.resolve(row.clone(), line.clone(), letter.clone()).await {
        tracing::error!(error = %e, "Cannot journal the outcome; retrying.");
        actix_rt::time::sleep(JOURNAL_RETRY).await;
    }
    env.audit.do_send(AppendOutcome {
        event_type: record.event_type,
        outcome: line,
    });
    ActionFinished {
        batch: &spec.identity.batch,
        outcome,
        latency,
    }
    .emit();
    Resolution {
        outcome,
        latency,
        retry_count: st.borrow().retry_count,
    }
}

/// Journals the current state; `durable` waits for the commit (the write-ahead points).
async fn persist(env: &PollerEnv, spec: &ActionSpec, st: &RefCell<ActionState>, durable: bool) {
    let row = ActionRow::from_state(&spec.identity, &st.borrow());
    if !durable {
        env.journal.save(row);
        return;
    }
    while let Err(e) = env.journal.save_durable(row.clone()).await {
        tracing::error!(error = %e, "Cannot journal the action state; retrying.");
        actix_rt::time::sleep(JOURNAL_RETRY).await;
    }
}

/// After a crash: continue from the journaled state (same CXone id, attempt, retry
/// count), keeping this instance's restart bookkeeping.
async fn reload_state(env: &PollerEnv, spec: &ActionSpec, st: &RefCell<ActionState>) {
    let Some(row) = env.journal.load(spec.identity.clone()).await else {
        return;
    };
    let fresh = row.to_state();
    let mut s = st.borrow_mut();
    s.attempt = fresh.attempt;
    s.retry_count = fresh.retry_count;
    s.series = fresh.series;
    s.phase = fresh.phase;
    s.action_id = fresh.action_id;
    s.first_submit = fresh.first_submit.or(s.first_submit);
    s.compensating = fresh.compensating;
}

impl PollerEnv {
    /// A bearer token, asking again while the token actor restarts.
    async fn token(&self) -> Secret {
        loop {
            match self.token.send(GetToken).await {
                Ok(Ok(token)) => return token,
                _ => actix_rt::time::sleep(MAILBOX_RETRY).await,
            }
        }
    }

    /// Runs `call` with a token; after a 401 invalidates it and repeats once with a fresh
    /// one (not counted as a retry). A second 401 is returned to the caller.
    async fn call<T>(&self, call: impl AsyncFn(Secret) -> Result<T, CallError>) -> Result<T, CallError> {
        let token = self.token().await;
        let result = self.one_request(&call, token.clone()).await;
        match result {
            Err(CallError::Status { status: 401, .. }) => {
                self.token.do_send(InvalidateToken { token });
                let fresh = self.token().await;
                self.one_request(&call, fresh).await
            }
            other => other,
        }
    }

    /// One request, counted as in flight; none starts once shutdown began (the action
    /// stays journaled and resumes at the next start).
    async fn one_request<T>(
        &self,
        call: &impl AsyncFn(Secret) -> Result<T, CallError>,
        token: Secret,
    ) -> Result<T, CallError> {
        if self.stopping.get() {
            std::future::pending::<()>().await;
        }
        self.requests_in_flight.set(self.requests_in_flight.get() + 1);
        let result = call(token).await;
        self.requests_in_flight.set(self.requests_in_flight.get() - 1);
        result
    }

    /// One of the request slots: at most `cxone.max_connections` steps with a request in
    /// flight. More could not use a connection anyway, and a waiting step's request
    /// future is only allocated once it holds a slot (SPEC §16 memory target).
    async fn request_slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.request_slots
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }

    /// Panics with the configured chaos probability (drills and tests only).
    fn chaos_point(&self) {
        if self.chaos_probability > 0.0 && self.rng.borrow_mut().random_bool(self.chaos_probability) {
            panic!("chaos: injected poller panic");
        }
    }

    /// The compensation body of SPEC §8: the batch template with `metadata.compensates`
    /// and `metadata.key`.
    fn rollback_body(&self, spec: &ActionSpec, failed_id: Option<&str>) -> bytes::Bytes {
        let mut body = self
            .rollback_templates
            .get(&spec.identity.batch)
            .cloned()
            .unwrap_or_default();
        let object = body.as_object_mut().expect("templates are objects");
        let metadata = object.entry("metadata").or_insert_with(|| serde_json::json!({}));
        if !metadata.is_object() {
            *metadata = serde_json::json!({});
        }
        let metadata = metadata.as_object_mut().expect("just made an object");
        metadata.insert("compensates".into(), failed_id.into());
        metadata.insert("key".into(), spec.identity.to_string().into());
        bytes::Bytes::from(serde_json::to_vec(&body).expect("JSON serializes"))
    }
}

/// Rollback templates by batch name.
pub type RollbackTemplates = HashMap<Arc<str>, serde_json::Value>;

/// The random source of pollers (jitter, chaos).
pub type PollerRng = RefCell<SmallRng>;
