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
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::FutureExt;
use tracing::Instrument;

use crate::action::{idempotency_key, rollback_idempotency_key, ActionSpec, Outcome};
use crate::actors::admission::{ActionDone, AdmissionActor};
use crate::actors::audit::{AppendAudit, AuditRecord};
use crate::actors::classifier::Failure;
use crate::classify::StackFrame;
use crate::config::Directive;
use crate::cxone::{CallError, Endpoint, PollStatus};
use crate::state::{poll_interval, ActionState, Phase};
use crate::telemetry::events::{ActionSubmitted, PollerRestarted};

mod env;
mod failure;
mod outcome;

pub use env::{PollerEnv, PollerRng, RollbackTemplates};
use failure::{classify, dead_letter, on_call_error, spend_retry};
use outcome::{dead_letter_payload, finished, persist, reload_state, rolled_back};

/// How long a caller waits before asking a restarting singleton again.
pub(super) const MAILBOX_RETRY: Duration = Duration::from_millis(20);
/// How long to wait before retrying a failed journal write.
pub(super) const JOURNAL_RETRY: Duration = Duration::from_millis(500);

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
            // A resumed or restarted poller may never submit again: name its action now.
            {
                let s = state.borrow();
                let span = tracing::Span::current();
                let id = match &s.phase {
                    Phase::Polling { action_id, .. } => Some(action_id.clone()),
                    _ => s.action_id.clone(),
                };
                if let Some(id) = id {
                    span.record("attempt", s.attempt);
                    span.record("action_id", id.as_str());
                }
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
        // The next run starts from the journal, not from what the crashed one left.
        self.reload = true;
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
                    Box::pin(env.call(deadline(&env, &st), async |token| {
                        env.client.poll(&token, &action_id).await
                    }))
                    .await
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
        let Some(body) = env.rollback_body(spec, failed_id.as_deref()) else {
            let failure = Failure::local(
                failed_id,
                0,
                "ROLLBACK_NOT_CONFIGURED",
                format!("batch {} has no rollback_action any more", spec.identity.batch),
            );
            return Ok(Some(dead_letter(env, spec, st, failure, false).await));
        };
        (body, rollback_idempotency_key(&spec.identity, series, attempt))
    } else {
        (
            spec.body_bytes.clone(),
            idempotency_key(&spec.identity, series, attempt),
        )
    };
    // Write-ahead: `submitting(attempt)` is on disk before the POST.
    persist(env, spec, st, true).await;
    let result = env
        .call(deadline(env, st), async |token| {
            env.client.submit(&token, body.clone(), key).await
        })
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
    tracing::debug!(idempotency_key = %key, "Action submitted.");
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
    // Taken: the dead letter below is already the rollback's own failure.
    let payload = *st.borrow_mut().compensating.take().expect("compensating");
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

/// When the action's `poll.timeout` runs out (none before its first submission).
fn deadline(env: &PollerEnv, st: &RefCell<ActionState>) -> Option<Instant> {
    st.borrow().first_submit.map(|t| t + env.poll.timeout)
}

/// Sleeps until `at`, but not past the action's poll timeout.
pub(super) async fn sleep_until(env: &PollerEnv, st: &RefCell<ActionState>, at: Instant) {
    let deadline = st.borrow().first_submit.map(|t| t + env.poll.timeout);
    let at = deadline.map_or(at, |d| at.min(d));
    actix_rt::time::sleep_until(at.into()).await;
}
