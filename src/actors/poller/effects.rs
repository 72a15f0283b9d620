//! Performing the machine's effects: journal writes, progress records, metrics and log
//! lines; and the resolution of an action (outcome, audit line and dead letter committed
//! in one journal transaction, then handed to the audit and dead-letter actors).

use std::cell::RefCell;

use std::time::Instant;

use super::machine::{Effect, Machine, Resolution};
use super::{ActionDone, PollerEnv, JOURNAL_RETRY, MAILBOX_RETRY};
use crate::action::Outcome;
use crate::actors::audit::{AppendAudit, AppendOutcome};
use crate::actors::dead_letter::StoreDeadLetter;
use crate::actors::singleton::send_until_answered;
use crate::health::CXONE_API;
use crate::journal::{ActionRow, Claim, JournalError, OutcomeLine, Written};
use crate::state::Note;
use crate::telemetry::events::{ActionFinished, ActionSubmitted, RetrySpent};
use crate::telemetry::throttle::{Throttle, FAILURE_LOG_PERIOD};

/// Log lines of pollers retrying a journal write (every poller retries on a full disk).
static JOURNAL_RETRIES: Throttle = Throttle::new(FAILURE_LOG_PERIOD);

/// Whether the poller still holds its action's claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Held {
    /// Go on.
    Yes,
    /// The journal says another claim owns the action now: drop it.
    Lost,
}

/// Performs `effects` in order; stops at a journal write that finds the claim lost.
pub(super) async fn perform(env: &PollerEnv, claim: Claim, machine: &RefCell<Machine>, effects: Vec<Effect>) -> Held {
    for effect in effects {
        match effect {
            Effect::Persist { durable, note } => {
                let row = row_of(machine);
                if !durable {
                    env.journal.save(claim, row, note);
                } else if save_durable(env, claim, machine, row, note).await == Written::Lost {
                    return Held::Lost;
                }
            }
            Effect::Audit(record) => {
                send_until_answered(&env.audit, AppendAudit::new(record), MAILBOX_RETRY).await;
            }
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
                tracing::info!(%error_code, reason, retry_in = ?delay, retry_count = m.state().retry_count, "Retry scheduled.");
            }
            Effect::Submitted { action_id } => {
                env.blockers.clear(CXONE_API);
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
                env.blockers.block(CXONE_API, reason);
            }
        }
    }
    Held::Yes
}

/// The journal row of the machine's state now.
fn row_of(machine: &RefCell<Machine>) -> ActionRow {
    let m = machine.borrow();
    ActionRow::from_state(m.identity(), m.state())
}

/// Journals a state change and waits for the commit, retrying while the journal fails.
/// The first write takes `row` itself; a retry (a full disk) builds the row again from
/// the machine, whose state does not move while its poller waits here.
async fn save_durable(
    env: &PollerEnv,
    claim: Claim,
    machine: &RefCell<Machine>,
    row: ActionRow,
    note: Note,
) -> Written {
    let mut first = Some(row);
    retry_journal(|| {
        let row = first.take().unwrap_or_else(|| row_of(machine));
        env.journal.save_durable(claim, row, note.clone())
    })
    .await
}

/// Runs a journal write until it commits: a failed commit (a full disk) is retried,
/// never skipped, because the next step depends on it being on disk.
async fn retry_journal<T, F>(mut write: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Result<T, JournalError>>,
{
    loop {
        match write().await {
            Ok(value) => return value,
            Err(e) => {
                if let Some(suppressed) = JOURNAL_RETRIES.allow() {
                    tracing::error!(error = %e, retry_in = ?JOURNAL_RETRY, suppressed, "Cannot write the journal; retrying.");
                }
                actix_rt::time::sleep(JOURNAL_RETRY).await;
            }
        }
    }
}

/// The journaled state under `claim` after a restart; `None` when the claim was lost.
pub(super) async fn reload(env: &PollerEnv, claim: Claim) -> Option<ActionRow> {
    retry_journal(|| env.journal.reload(claim)).await
}

/// The report of a poller whose claim was lost: no outcome, no record, no letter.
pub(super) fn lost(machine: &RefCell<Machine>, claim: Claim) -> ActionDone {
    let m = machine.borrow();
    tracing::warn!("Action taken over by another claim; dropping it here.");
    ActionDone {
        identity: m.identity().clone(),
        claim,
        outcome: None,
        latency: m.state().latency_at(Instant::now()),
        retries: m.state().retry_count,
        restarts: m.state().restart_total,
    }
}

/// Commits the outcome, its audit line and dead letter in one journal transaction, then
/// hands the line to the audit actor and the letter to the dead-letter actor (the
/// journal's module documentation explains why this order makes the record exactly-once).
pub(super) async fn resolve(
    env: &PollerEnv,
    claim: Claim,
    machine: &RefCell<Machine>,
    resolution: Resolution,
) -> ActionDone {
    let Resolution {
        outcome,
        record,
        letter,
        payload,
        latency,
        retry_count,
        attempts,
    } = resolution;
    let identity = machine.borrow().identity().clone();
    let row = row_of(machine);
    match (&payload, outcome) {
        (Some(p), Outcome::DeadLettered) => {
            tracing::warn!(error_code = %p.error_code, error_id = %p.error_id, directive = %p.recovery_directive, "Action dead-lettered.")
        }
        (Some(p), _) => tracing::info!(error_code = %p.error_code, "Action rolled back."),
        // Quiet by default: a million completed actions must not write a million lines.
        (None, _) => tracing::debug!(attempts, retry_count, "Action {}.", outcome),
    }
    let event_id = crate::audit::new_outcome_id();
    let line = OutcomeLine {
        event_id: event_id.to_string(),
        line: record.to_line(event_id),
    };
    let note = Note {
        http_status: payload.as_ref().map(|p| p.status_code),
        error_code: payload.as_ref().map(|p| p.error_code.clone()),
        detail: payload
            .as_ref()
            .map(|p| p.message.chars().take(NOTE_DETAIL_CHARS).collect()),
    };
    // The row is rebuilt only for a retry, as in `save_durable`; the line and the letter
    // are handed on after the commit, so the journal gets copies.
    let mut first = Some(row);
    let written = retry_journal(|| {
        let row = first.take().unwrap_or_else(|| row_of(machine));
        env.journal
            .resolve(claim, row, note.clone(), line.clone(), letter.clone())
    })
    .await;
    if written == Written::Lost {
        return lost(machine, claim);
    }
    // Both are committed already: a lost message is sent again, and the receivers apply
    // each once (by event id, by error id).
    let append = AppendOutcome {
        event_type: record.event_type,
        outcome: line,
    };
    send_until_answered(&env.audit, append, MAILBOX_RETRY).await;
    if let Some(letter) = letter {
        send_until_answered(&env.dead_letter, StoreDeadLetter { letter }, MAILBOX_RETRY).await;
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
        claim,
        outcome: Some(outcome),
        latency,
        retries: retry_count,
        restarts,
    }
}

/// Longest `detail` kept in a history event (the full message is in the dead letter).
const NOTE_DETAIL_CHARS: usize = 200;
