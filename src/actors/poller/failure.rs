//! How a poller decides about failures: repeat with backoff (spending the retry budget),
//! or dead-letter; and the classifier round trip.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use super::outcome::{dead_letter_payload, persist};
use super::{sleep_until, PollerEnv, Resolution, MAILBOX_RETRY};
use crate::action::ActionSpec;
use crate::actors::audit::{AppendAudit, AuditRecord};
use crate::actors::classifier::{Classify, Failure};
use crate::backoff;
use crate::classify::{ErrorPayload, UpstreamError};
use crate::cxone::{CallError, Endpoint};
use crate::state::{ActionState, Phase};
use crate::telemetry::events::RetrySpent;

/// Decides about a failed call: `None` to go on (after waiting), `Some` when finished.
pub(super) async fn on_call_error(
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
                // Durable: a kill must not hand the next run an unspent retry.
                persist(env, spec, st, true).await;
                tracing::debug!(error = %e, retry_in = ?delay, endpoint = endpoint.as_str(), "Repeating request.");
                sleep_until(env, st, Instant::now() + delay).await;
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
pub(super) fn spend_retry(
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

pub(super) async fn classify(env: &PollerEnv, failure: Failure) -> ErrorPayload {
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

/// Dead-letters a failure of our own making (classified as DEAD_LETTER by force). While
/// a compensation runs, any such failure is the rollback's: `ROLLBACK_FAILED` about the
/// original action, with the cause kept as the following error (SPEC §8).
pub(super) async fn dead_letter(
    env: &PollerEnv,
    spec: &ActionSpec,
    st: &RefCell<ActionState>,
    mut failure: Failure,
    exhausted: bool,
) -> Resolution {
    if let Some(original) = st.borrow_mut().compensating.take() {
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
        failure = Failure {
            action_id: original.action_id.clone(),
            errors,
            ..failure
        };
    }
    failure.retry_count = st.borrow().retry_count;
    failure.max_retries = env.retry.max_retries;
    let payload = classify(env, failure).await;
    dead_letter_payload(env, spec, st, payload, exhausted).await
}
