//! Performing the machine's effects: journal writes, progress records, metrics and log
//! lines; and the resolution of an action (outcome, audit line and dead letter committed
//! in one journal transaction, then handed to the audit and dead-letter actors).

use std::cell::RefCell;

use super::machine::{Effect, Machine, Resolution};
use super::{ActionDone, PollerEnv, JOURNAL_RETRY, MAILBOX_RETRY};
use crate::action::Outcome;
use crate::actors::audit::{AppendAudit, AppendOutcome};
use crate::actors::dead_letter::StoreDeadLetter;
use crate::journal::{ActionRow, OutcomeLine};
use crate::telemetry::events::{ActionFinished, ActionSubmitted, RetrySpent};

/// Performs `effects` in order.
pub(super) async fn perform(env: &PollerEnv, machine: &RefCell<Machine>, effects: Vec<Effect>) {
    for effect in effects {
        match effect {
            Effect::Persist { durable, note: _ } => {
                let row = {
                    let m = machine.borrow();
                    ActionRow::from_state(m.identity(), m.state())
                };
                if durable {
                    save_durable(env, row).await;
                } else {
                    env.journal.save(row);
                }
            }
            Effect::Audit(record) => env.audit.do_send(AppendAudit { record }),
            Effect::RetrySpent {
                reason,
                error_code,
                delay,
            } => {
                let m = machine.borrow();
                RetrySpent {
                    batch: &m.identity().batch,
                    reason,
                }
                .emit();
                tracing::debug!(%error_code, reason, retry_in = ?delay, retry_count = m.state().retry_count, "Retry scheduled.");
            }
            Effect::Submitted { action_id } => {
                let m = machine.borrow();
                let span = tracing::Span::current();
                span.record("attempt", m.state().attempt);
                span.record("action_id", action_id.as_str());
                ActionSubmitted {
                    batch: &m.identity().batch,
                }
                .emit();
                tracing::debug!("Action submitted.");
            }
            Effect::Blocked { reason } => {
                tracing::warn!(%reason, "Request refused for a reason only an operator can fix; waiting.");
            }
        }
    }
}

/// Journals a state change and waits for the commit, retrying while the journal fails.
async fn save_durable(env: &PollerEnv, row: ActionRow) {
    while let Err(e) = env.journal.save_durable(row.clone()).await {
        tracing::error!(error = %e, "Cannot journal the action state; retrying.");
        actix_rt::time::sleep(JOURNAL_RETRY).await;
    }
}

/// Commits the outcome, its audit line and dead letter in one journal transaction, then
/// hands the line to the audit actor and the letter to the dead-letter actor (the
/// journal's module documentation explains why this order makes the record exactly-once).
pub(super) async fn resolve(env: &PollerEnv, machine: &RefCell<Machine>, resolution: Resolution) -> ActionDone {
    let Resolution {
        outcome,
        record,
        letter,
        payload,
        latency,
        retry_count,
        attempts,
    } = resolution;
    let (identity, row) = {
        let m = machine.borrow();
        (m.identity().clone(), ActionRow::from_state(m.identity(), m.state()))
    };
    match (&payload, outcome) {
        (Some(p), Outcome::DeadLettered) => {
            tracing::warn!(error_code = %p.error_code, error_id = %p.error_id, directive = %p.recovery_directive, "Action dead-lettered.")
        }
        (Some(p), _) => tracing::info!(error_code = %p.error_code, "Action rolled back."),
        (None, _) => tracing::info!(attempts, retry_count, "Action {}.", outcome),
    }
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
    if let Some(letter) = letter {
        while env
            .dead_letter
            .send(StoreDeadLetter { letter: letter.clone() })
            .await
            .is_err()
        {
            actix_rt::time::sleep(MAILBOX_RETRY).await;
        }
    }
    ActionFinished {
        batch: &identity.batch,
        outcome,
        latency,
    }
    .emit();
    let restarts = machine.borrow().state().restart_total;
    ActionDone {
        identity,
        outcome,
        latency,
        retries: retry_count,
        restarts,
    }
}
