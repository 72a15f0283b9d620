//! How a poller ends: the outcome committed to the journal with its audit line (and dead
//! letter) in one transaction, then handed to the audit and dead-letter actors; and the
//! journaling of intermediate states.

use std::cell::RefCell;
use std::time::Duration;

use super::{PollerEnv, Resolution, JOURNAL_RETRY, MAILBOX_RETRY};
use crate::action::{ActionSpec, Outcome};
use crate::actors::audit::{AppendOutcome, AuditRecord};
use crate::actors::dead_letter::{DeadLetter, StoreDeadLetter};
use crate::classify::{unix_now, ErrorPayload};
use crate::config::Directive;
use crate::journal::{ActionRow, OutcomeLine};
use crate::state::{ActionState, Phase};
use crate::telemetry::events::ActionFinished;

/// Resolves as dead-lettered: the letter is committed with the outcome, then delivered.
pub(super) async fn dead_letter_payload(
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

pub(super) async fn rolled_back(
    env: &PollerEnv,
    spec: &ActionSpec,
    st: &RefCell<ActionState>,
    mut payload: ErrorPayload,
) -> Resolution {
    payload.resolved_at = Some(unix_now());
    tracing::info!(error_code = %payload.error_code, "Action rolled back.");
    resolve_with_error(env, spec, st, &payload, "ROLLED_BACK", Outcome::RolledBack, None).await
}

pub(super) async fn resolve_with_error(
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

pub(super) async fn finished(
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
    tracing::info!(attempts = attempt, retry_count, "Action {}.", outcome);
    resolve(env, spec, st, outcome, latency, record, None).await
}

/// Commits the outcome, its audit line and dead letter in one journal transaction,
/// then hands the line to the audit actor (journal/mod.rs explains why this order makes
/// the audit record exactly-once).
pub(super) async fn resolve(
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
pub(super) async fn persist(env: &PollerEnv, spec: &ActionSpec, st: &RefCell<ActionState>, durable: bool) {
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
pub(super) async fn reload_state(env: &PollerEnv, spec: &ActionSpec, st: &RefCell<ActionState>) {
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
