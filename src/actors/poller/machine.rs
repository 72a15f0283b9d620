//! The poller's decisions, with no I/O: given where an action stands and what just
//! happened, what changes and what to do next.
//!
//! Every rule of the action lifecycle lives here as a pure function of (state, event,
//! policy, clock, random source) that returns a [`Decision`]: the effects to perform now
//! (journal the state, append a progress record, count a retry) and the one [`Step`] that
//! follows (wait, submit, poll, classify a failure, resolve). The poller's interpreter
//! (`mod.rs`) performs the effects in order, runs the step, and feeds its result back in
//! through `on_submit`, `on_poll`, `on_classified`. Nothing here awaits, sends or writes;
//! the tests below drive the rules as tables.
//!
//! The rules, in short:
//! - An attempt's repetitions (after a 401 with a fresh token, a 429, 408/425/5xx, a
//!   network error, a timeout or a malformed body) keep its `Idempotency-Key`. Each one
//!   but the 401 repeat spends one retry of the action's single budget; when the budget
//!   is spent, the action is dead-lettered with `retry_exhausted`.
//! - A `Retry-After` longer than the backoff delay wins.
//! - `FAILED` goes to classification: RETRY resubmits as a new attempt (new key) after the
//!   backoff, ROLLBACK runs the batch's compensation (or, without one, dead-letters with
//!   the ROLLBACK directive kept), DEAD_LETTER resolves at once.
//! - While a compensation runs, any failure of it becomes `ROLLBACK_FAILED` about the
//!   original action, its own cause kept as the following error.
//! - `poll.timeout` counts from the first submission; past it: `POLL_TIMEOUT`.
//! - Write-ahead: `submitting` is journaled durably before each POST, the CXone id before
//!   the first poll, a spent retry before the wait that follows it.

use std::time::{Duration, Instant};

use rand::Rng;
use uuid::Uuid;

use crate::action::{idempotency_key, rollback_idempotency_key, Identity, Outcome};
use crate::audit::AuditRecord;
use crate::backoff;
use crate::classify::{unix_now, ErrorPayload, Failure, StackFrame, UpstreamError};
use crate::config::{duration, Directive, PollConfig, RetryConfig, SupervisorConfig};
use crate::cxone::{CallError, PollStatus, Submitted};
use crate::dead_letter::DeadLetter;
use crate::state::{poll_interval, ActionState, Note, Phase};
use crate::telemetry::metrics::Endpoint;

/// The settings a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// `[retry]`: the budget and its backoff.
    pub retry: &'a RetryConfig,
    /// `[poll]`: cadence and timeout.
    pub poll: &'a PollConfig,
    /// `[supervisor]`: the restart window.
    pub supervisor: &'a SupervisorConfig,
    /// The action's batch has a compensation template now.
    pub can_compensate: bool,
}

/// Something to do before the next step.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Journal the current state; `durable` waits for the commit (a write-ahead point).
    Persist {
        /// Wait for the commit.
        durable: bool,
        /// Why, for the action's history.
        note: Note,
    },
    /// Append a progress record to the audit log.
    Audit(AuditRecord),
    /// A retry was spent (metric and log).
    RetrySpent {
        /// The metric's `reason` label.
        reason: &'static str,
        /// The error that cost it.
        error_code: String,
        /// The wait before repeating.
        delay: Duration,
    },
    /// An attempt (or compensation) was accepted upstream.
    Submitted {
        /// The CXone id.
        action_id: String,
    },
    /// A failure nobody can fix by retrying (certificate, proxy credentials): waiting,
    /// not spending the budget, until an operator fixes it.
    Blocked {
        /// What is wrong, safe to show.
        reason: String,
    },
}

/// What the poller does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Wait until then (never past the action's poll timeout), then ask `next` again.
    Wait(Instant),
    /// POST the current attempt, or the compensation, with this key.
    Submit {
        /// `Idempotency-Key`.
        key: Uuid,
        /// The batch's compensation is being submitted, not the action.
        compensation: bool,
    },
    /// GET the status of this CXone id.
    Poll {
        /// The id polled (the compensation's while compensating).
        action_id: String,
    },
    /// Build the failure's `ErrorPayload` (classifier), then `on_classified`.
    Classify(Failure),
    /// The action is finished: commit the outcome with its record and letter.
    Resolve(Box<Resolution>),
    /// Resolved before a crash (already committed): only report it.
    Report(Outcome),
}

/// Effects to perform in order, then one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Done first, in order.
    pub effects: Vec<Effect>,
    /// Then this.
    pub step: Step,
}

impl Decision {
    fn step(step: Step) -> Self {
        Decision {
            effects: Vec::new(),
            step,
        }
    }

    fn then(effects: Vec<Effect>, step: Step) -> Self {
        Decision { effects, step }
    }
}

/// How an action ended, ready to commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The outcome.
    pub outcome: Outcome,
    /// Its audit record (committed with the outcome, then appended).
    pub record: AuditRecord,
    /// The dead letter, for `dead_lettered`.
    pub letter: Option<DeadLetter>,
    /// The payload of a failed action (dead-lettered or rolled back).
    pub payload: Option<ErrorPayload>,
    /// First submission -> outcome.
    pub latency: Duration,
    /// Retries spent.
    pub retry_count: u32,
    /// Attempts made.
    pub attempts: u32,
}

/// What a failure sent to classification means when its payload comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Classifying {
    /// An upstream `FAILED`: the rules decide.
    Upstream,
    /// A failure of our own making: dead letter; `exhausted` when the budget ran out.
    Local { exhausted: bool },
}

/// How long an action waits before trying again after a failure an operator must fix.
pub const BLOCKED_RETRY: Duration = Duration::from_secs(5);

/// One action's state and the rules that move it.
#[derive(Debug, Clone)]
pub struct Machine {
    identity: Identity,
    state: ActionState,
    classifying: Option<Classifying>,
}

impl Machine {
    /// A machine for `identity` starting from `state` (fresh, resumed or replayed).
    pub fn new(identity: Identity, state: ActionState) -> Self {
        Machine {
            identity,
            state,
            classifying: None,
        }
    }

    /// The action's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Where it stands.
    pub fn state(&self) -> &ActionState {
        &self.state
    }

    /// When its poll timeout runs out (none before its first submission).
    pub fn deadline(&self, policy: &Policy<'_>) -> Option<Instant> {
        self.state.first_submit.map(|t| t + policy.poll.timeout)
    }

    /// The CXone id the action is known by now: the one polled, else the original.
    pub fn current_id(&self) -> Option<&str> {
        match &self.state.phase {
            Phase::Polling { action_id, .. } => Some(action_id),
            _ => self.state.action_id.as_deref(),
        }
    }

    /// What to do now.
    pub fn next(&mut self, policy: &Policy<'_>, now: Instant) -> Decision {
        if self.state.crash_loop {
            return self.crash_loop(policy);
        }
        if let Phase::Done(outcome) = self.state.phase {
            return Decision::step(Step::Report(outcome));
        }
        if self.deadline(policy).is_some_and(|d| now >= d) {
            let message = format!(
                "no outcome within poll.timeout ({})",
                duration::format(policy.poll.timeout)
            );
            return self.fail(policy, self.local(0, "POLL_TIMEOUT", message), false);
        }
        match self.state.phase.clone() {
            Phase::Pending | Phase::Submitting => self.submit(policy, now),
            Phase::Backoff { until } if until > now => Decision::step(Step::Wait(self.capped(policy, until))),
            Phase::Backoff { .. } => {
                self.state.phase = Phase::Submitting;
                self.submit(policy, now)
            }
            Phase::Polling { next_at, .. } if next_at > now => Decision::step(Step::Wait(self.capped(policy, next_at))),
            Phase::Polling { action_id, .. } => Decision::step(Step::Poll { action_id }),
            Phase::Done(_) => unreachable!("handled above"),
        }
    }

    /// Submitting: journal `submitting` durably, then POST (the action or its compensation).
    fn submit(&mut self, policy: &Policy<'_>, now: Instant) -> Decision {
        let compensation = self.state.compensating.is_some();
        if compensation && !policy.can_compensate {
            let message = format!("batch {} has no rollback_action any more", self.identity.batch);
            return self.fail(policy, self.local(0, "ROLLBACK_NOT_CONFIGURED", message), false);
        }
        self.state.phase = Phase::Submitting;
        self.state.first_submit.get_or_insert(now);
        let (series, attempt) = (self.state.series, self.state.attempt);
        let key = if compensation {
            rollback_idempotency_key(&self.identity, series, attempt)
        } else {
            idempotency_key(&self.identity, series, attempt)
        };
        Decision::then(vec![persist(true, Note::default())], Step::Submit { key, compensation })
    }

    /// The POST answered (or failed).
    pub fn on_submit(
        &mut self,
        policy: &Policy<'_>,
        result: Result<Submitted, CallError>,
        rng: &mut impl Rng,
        now: Instant,
    ) -> Decision {
        let submitted = match result {
            Ok(submitted) => submitted,
            Err(error) => return self.on_call_error(policy, Endpoint::Submit, error, rng, now),
        };
        let Some(action_id) = submitted.id else {
            let message = "CXone accepted the action without an id (no body id, no X-Action-Id); it may exist upstream, so it is not resubmitted";
            let failure = self.local(submitted.status, "MISSING_ACTION_ID", message.into());
            return self.fail(policy, failure, false);
        };
        let compensation = self.state.compensating.is_some();
        let record = AuditRecord::new("ACTION_SUBMITTED", &self.identity)
            .with("action_id", action_id.as_str())
            .with("attempt", self.state.attempt)
            .with("idempotency_key", self.key_now().to_string())
            .with("compensation", compensation);
        if !compensation {
            self.state.action_id = Some(action_id.clone());
        }
        self.state.phase = Phase::Polling {
            action_id: action_id.clone(),
            polls: 0,
            next_at: now + policy.poll.initial_delay,
        };
        let mut effects = vec![
            Effect::Submitted { action_id },
            Effect::Audit(record),
            persist(true, Note::default()),
        ];
        // Moved, not `concat`ed: that clones every effect, the audit record with it.
        let next = self.next(policy, now);
        effects.extend(next.effects);
        Decision::then(effects, next.step)
    }

    /// The GET answered (or failed).
    pub fn on_poll(
        &mut self,
        policy: &Policy<'_>,
        result: Result<PollStatus, CallError>,
        rng: &mut impl Rng,
        now: Instant,
    ) -> Decision {
        let status = match result {
            Ok(status) => status,
            Err(error) => return self.on_call_error(policy, Endpoint::Poll, error, rng, now),
        };
        let Phase::Polling { action_id, polls, .. } = self.state.phase.clone() else {
            unreachable!("a poll result arrives only while polling")
        };
        if self.state.compensating.is_some() {
            return match status {
                PollStatus::Running(_) => self.poll_later(policy, action_id, polls, now),
                PollStatus::Completed => self.rolled_back(now),
                PollStatus::Cancelled => {
                    let failure = self.local(200, "CANCELLED", format!("compensation {action_id} was cancelled"));
                    self.fail(policy, failure, false)
                }
                PollStatus::Failed(errors) => {
                    let mut failure = self.local(200, "FAILED", format!("compensation {action_id} failed"));
                    failure.errors = errors;
                    self.fail(policy, failure, false)
                }
            };
        }
        match status {
            PollStatus::Running(_) => self.poll_later(policy, action_id, polls, now),
            PollStatus::Completed => self.finished(Outcome::Completed, &action_id, now),
            PollStatus::Cancelled => self.finished(Outcome::Cancelled, &action_id, now),
            PollStatus::Failed(errors) => {
                let failure = Failure {
                    action_id: Some(action_id),
                    status_code: 200,
                    errors,
                    forced: None,
                    extra_frames: Vec::new(),
                    retry_count: self.state.retry_count,
                    max_retries: policy.retry.max_retries,
                };
                self.classifying = Some(Classifying::Upstream);
                Decision::step(Step::Classify(failure))
            }
        }
    }

    /// Not terminal yet: poll again after the interval (growing with `backoff_factor`).
    fn poll_later(&mut self, policy: &Policy<'_>, action_id: String, polls: u32, now: Instant) -> Decision {
        let wait = poll_interval(
            policy.poll.interval,
            policy.poll.backoff_factor,
            policy.poll.max_interval,
            polls,
        );
        self.state.phase = Phase::Polling {
            action_id,
            polls: polls + 1,
            next_at: now + wait,
        };
        self.next(policy, now)
    }

    /// A request failed: repeat it (spending budget), wait for an operator, or give up.
    pub fn on_call_error(
        &mut self,
        policy: &Policy<'_>,
        endpoint: Endpoint,
        error: CallError,
        rng: &mut impl Rng,
        now: Instant,
    ) -> Decision {
        let status = error.status_code();
        let failure = match &error {
            e if e.is_misconfiguration() => {
                let effects = vec![Effect::Blocked { reason: e.to_string() }];
                return Decision::then(effects, Step::Wait(self.capped(policy, now + BLOCKED_RETRY)));
            }
            CallError::Status { status: 401, .. } => self.local(
                status,
                "UNAUTHORIZED",
                "CXone refused a freshly issued token (second 401)".into(),
            ),
            CallError::Status { status: 403, .. } => {
                let scope = if endpoint == Endpoint::Submit {
                    "data:actions:write"
                } else {
                    "data:actions:read"
                };
                let message = format!(
                    "CXone refused the {} request (403): the client needs scope {scope}",
                    endpoint.as_str()
                );
                self.local(status, "FORBIDDEN", message)
            }
            CallError::Status { status: 404, .. } if endpoint == Endpoint::Poll => {
                let message = format!("CXone does not know action {}", self.current_id().unwrap_or("?"));
                self.local(status, "ACTION_NOT_FOUND", message)
            }
            e if e.is_transient() => return self.repeat(policy, endpoint, e, rng, now),
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
                self.local(*status, &code, text)
            }
            other => self.local(status, &other.error_code(), other.to_string()),
        };
        self.fail(policy, failure, false)
    }

    /// A transient error: the same request again after the backoff (same key), or the
    /// budget is spent.
    fn repeat(
        &mut self,
        policy: &Policy<'_>,
        endpoint: Endpoint,
        error: &CallError,
        rng: &mut impl Rng,
        now: Instant,
    ) -> Decision {
        let max = policy.retry.max_retries;
        if self.state.retry_count >= max {
            let message = format!("{} {}: retry budget of {max} spent", endpoint.as_str(), describe(error));
            let failure = self.local(error.status_code(), &error.error_code(), message);
            return self.fail(policy, failure, true);
        }
        let retry_after = match error {
            CallError::Status { retry_after, .. } => *retry_after,
            _ => None,
        };
        let (delay, mut effects) = self.spend_retry(policy, error.reason(), &error.error_code(), retry_after, rng);
        // Durable: a kill must not hand the next run an unspent retry.
        effects.push(persist(
            true,
            Note {
                http_status: Some(error.status_code()).filter(|s| *s != 0),
                error_code: Some(error.error_code()),
                detail: Some(format!("{} {}; repeating", endpoint.as_str(), describe(error))),
            },
        ));
        Decision::then(effects, Step::Wait(self.capped(policy, now + delay)))
    }

    /// Spends one retry: returns the wait (a longer `Retry-After` wins) and its effects.
    fn spend_retry(
        &mut self,
        policy: &Policy<'_>,
        reason: &'static str,
        error_code: &str,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> (Duration, Vec<Effect>) {
        self.state.retry_count += 1;
        let n = self.state.retry_count;
        let delay = backoff::with_retry_after(backoff::delay(policy.retry, n, rng), retry_after);
        let record = AuditRecord::new("RETRY_SCHEDULED", &self.identity)
            .with("action_id", self.state.action_id.clone())
            .with("attempt", self.state.attempt)
            .with("retry_count", n)
            .with("reason", reason)
            .with("error_code", error_code)
            .with("delay_seconds", delay.as_secs_f64());
        let effects = vec![
            Effect::RetrySpent {
                reason,
                error_code: error_code.to_owned(),
                delay,
            },
            Effect::Audit(record),
        ];
        (delay, effects)
    }

    /// The classifier built the payload of the failure sent with `Step::Classify`.
    pub fn on_classified(
        &mut self,
        policy: &Policy<'_>,
        payload: ErrorPayload,
        rng: &mut impl Rng,
        now: Instant,
    ) -> Decision {
        let classifying = self
            .classifying
            .take()
            .unwrap_or(Classifying::Local { exhausted: false });
        if let Classifying::Local { exhausted } = classifying {
            return self.dead_lettered(payload, exhausted, now);
        }
        match payload.recovery_directive {
            Directive::Retry if self.state.retry_count < policy.retry.max_retries => {
                let (delay, mut effects) = self.spend_retry(policy, "failed", &payload.error_code, None, rng);
                self.state.attempt += 1;
                let until = now + delay;
                self.state.phase = Phase::Backoff { until };
                effects.push(persist(false, note_of(&payload, "resubmitting as a new attempt")));
                Decision::then(effects, Step::Wait(self.capped(policy, until)))
            }
            Directive::Retry => self.dead_lettered(payload, true, now),
            Directive::Rollback if policy.can_compensate => {
                let note = note_of(&payload, "compensating");
                self.state.compensating = Some(Box::new(payload));
                self.state.attempt = 1;
                self.state.phase = Phase::Submitting;
                let next = self.next(policy, now);
                let mut effects = vec![persist(false, note)];
                effects.extend(next.effects);
                Decision::then(effects, next.step)
            }
            Directive::Rollback | Directive::DeadLetter => self.dead_lettered(payload, false, now),
        }
    }

    /// Sends a failure of our own making to classification as a dead letter. While a
    /// compensation runs, it becomes `ROLLBACK_FAILED` about the original action, with
    /// its own cause kept as the following error.
    fn fail(&mut self, policy: &Policy<'_>, mut failure: Failure, exhausted: bool) -> Decision {
        if let Some(original) = self.state.compensating.take() {
            let cause = failure
                .errors
                .first()
                .map(|e| format!("{}: {}", e.code, e.message))
                .unwrap_or_default();
            let message = format!(
                "compensation of {} ({}) failed: {cause}",
                original.action_id.as_deref().unwrap_or("?"),
                original.error_code
            );
            let mut errors = vec![UpstreamError {
                code: "ROLLBACK_FAILED".into(),
                message,
                stack_trace: Vec::new(),
            }];
            errors.append(&mut failure.errors);
            failure.action_id = original.action_id.clone();
            failure.errors = errors;
            failure.forced = Some(Directive::DeadLetter);
        }
        failure.retry_count = self.state.retry_count;
        failure.max_retries = policy.retry.max_retries;
        self.classifying = Some(Classifying::Local { exhausted });
        Decision::step(Step::Classify(failure))
    }

    /// More restarts than allowed inside the window: dead letter `POLLER_CRASH_LOOP`
    /// whose frames are the panic messages.
    fn crash_loop(&mut self, policy: &Policy<'_>) -> Decision {
        let message = format!(
            "the poller crashed more than {} times within {}",
            policy.supervisor.max_restarts,
            duration::format(policy.supervisor.restart_window)
        );
        let mut failure = self.local(0, "POLLER_CRASH_LOOP", message);
        failure.extra_frames = self
            .state
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
        self.fail(policy, failure, false)
    }

    /// The poller crashed: counts the restart; returns the delay before the next run and
    /// the restart's audit record. The next run starts from the journaled state.
    pub fn on_restart(&mut self, policy: &Policy<'_>, panic: String, now: Instant) -> (Duration, AuditRecord) {
        self.state.panic_messages.push(panic);
        let sup = policy.supervisor;
        if self.state.record_restart(now, sup.restart_window, sup.max_restarts) {
            self.state.crash_loop = true;
        }
        self.classifying = None;
        let record = AuditRecord::new("POLLER_RESTARTED", &self.identity)
            .with("restarts", self.state.restart_total)
            .with("attempt", self.state.attempt)
            .with("action_id", self.state.action_id.clone())
            .with("panic", self.state.panic_messages.last().cloned());
        (self.state.restart_delay(sup.restart_backoff), record)
    }

    /// After a restart: continue from the journaled state (same CXone id, attempt and
    /// retry count), keeping this instance's restart bookkeeping.
    pub fn reload(&mut self, journaled: ActionState) {
        let s = &mut self.state;
        s.attempt = journaled.attempt;
        s.retry_count = journaled.retry_count;
        s.series = journaled.series;
        s.phase = journaled.phase;
        s.action_id = journaled.action_id;
        s.first_submit = journaled.first_submit.or(s.first_submit);
        s.compensating = journaled.compensating;
    }

    fn finished(&mut self, outcome: Outcome, action_id: &str, now: Instant) -> Decision {
        let latency = self.state.latency_at(now);
        let event = if outcome == Outcome::Completed {
            "ACTION_COMPLETED"
        } else {
            "ACTION_CANCELLED"
        };
        let record = AuditRecord::new(event, &self.identity)
            .with("action_id", action_id)
            .with("attempts", self.state.attempt)
            .with("retry_count", self.state.retry_count)
            .with("latency_seconds", latency.as_secs_f64());
        self.resolve(outcome, record, None, None, now)
    }

    fn rolled_back(&mut self, now: Instant) -> Decision {
        let mut payload = *self.state.compensating.take().expect("compensating");
        payload.resolved_at = Some(unix_now());
        let record = self.error_record(&payload, "ROLLED_BACK", now);
        self.resolve(Outcome::RolledBack, record, None, Some(payload), now)
    }

    fn dead_lettered(&mut self, mut payload: ErrorPayload, exhausted: bool, now: Instant) -> Decision {
        if exhausted {
            payload.recovery_directive = Directive::DeadLetter;
        }
        payload.resolved_at = Some(unix_now());
        let letter = DeadLetter::new(&self.identity, &payload, exhausted);
        let resolution = if exhausted { "EXHAUSTED" } else { "DEAD_LETTERED" };
        let record = self.error_record(&payload, resolution, now);
        self.resolve(Outcome::DeadLettered, record, Some(letter), Some(payload), now)
    }

    /// The `ASYNC_ERROR_HANDLED` record of a failed action.
    fn error_record(&self, payload: &ErrorPayload, resolution: &str, now: Instant) -> AuditRecord {
        AuditRecord::new("ASYNC_ERROR_HANDLED", &self.identity)
            .with("error_id", payload.error_id.to_string())
            .with("action_id", payload.action_id.clone())
            .with("status_code", payload.status_code)
            .with("error_code", payload.error_code.as_str())
            .with("message", payload.message.as_str())
            .with("recovery_directive", payload.recovery_directive.as_str())
            .with("retry_count", payload.retry_count)
            .with("max_retries", payload.max_retries)
            .with("latency_seconds", self.state.latency_at(now).as_secs_f64())
            .with("resolved_at", payload.resolved_at)
            .with("resolution", resolution)
    }

    fn resolve(
        &mut self,
        outcome: Outcome,
        record: AuditRecord,
        letter: Option<DeadLetter>,
        payload: Option<ErrorPayload>,
        now: Instant,
    ) -> Decision {
        let latency = self.state.latency_at(now);
        self.state.phase = Phase::Done(outcome);
        self.state.compensating = None;
        Decision::step(Step::Resolve(Box::new(Resolution {
            outcome,
            record,
            letter,
            payload,
            latency,
            retry_count: self.state.retry_count,
            attempts: self.state.attempt,
        })))
    }

    /// A failure of our own making about the action's current CXone id.
    fn local(&self, status: u16, code: &str, message: String) -> Failure {
        Failure::local(self.current_id().map(str::to_owned), status, code, message)
    }

    /// The key of the current attempt (or compensation attempt).
    fn key_now(&self) -> Uuid {
        let (series, attempt) = (self.state.series, self.state.attempt);
        if self.state.compensating.is_some() {
            rollback_idempotency_key(&self.identity, series, attempt)
        } else {
            idempotency_key(&self.identity, series, attempt)
        }
    }

    /// `at`, but not past the poll timeout.
    fn capped(&self, policy: &Policy<'_>, at: Instant) -> Instant {
        self.deadline(policy).map_or(at, |d| at.min(d))
    }
}

fn persist(durable: bool, note: Note) -> Effect {
    Effect::Persist { durable, note }
}

fn note_of(payload: &ErrorPayload, detail: &str) -> Note {
    Note {
        http_status: Some(payload.status_code),
        error_code: Some(payload.error_code.clone()),
        detail: Some(detail.to_owned()),
    }
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

#[cfg(test)]
mod tests;
