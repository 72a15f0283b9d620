//! Retention in the daemon: with `journal.retention` set, what resolved longer ago than
//! that is pruned at start and then every hour, through the journal's writer (so rounds
//! interleave with the daemon's own writes). Pruning touches only resolved actions and
//! finished dead letters, which nothing in flight writes.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::journal::{now_ms, Journal};

/// How often the journal is pruned while the daemon runs.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Starts pruning what resolved more than `keep` ago: once now, then every `PRUNE_EVERY`.
/// The caller aborts the task when the daemon stops; a prune cut short resumes at the
/// next start (every round is its own transaction).
pub fn start(journal: Journal, keep: Duration) -> JoinHandle<()> {
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        // A daemon that was busy for hours prunes once, not once per missed hour.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            prune(&journal, keep).await;
        }
    })
}

/// One pass: prunes and logs what was removed.
async fn prune(journal: &Journal, keep: Duration) {
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    let before_ms = now_ms().saturating_sub(keep_ms);
    match journal.prune(before_ms).await {
        Ok(p) if p.actions + p.events + p.outcome_lines + p.dead_letters + p.instances > 0 => tracing::info!(
            retention = ?keep,
            actions = p.actions,
            events = p.events,
            audit_lines = p.outcome_lines,
            dead_letters = p.dead_letters,
            instances = p.instances,
            "Journal pruned: bodies and histories of actions resolved before the retention removed (outcomes kept)."
        ),
        Ok(_) => tracing::debug!(retention = ?keep, "Journal pruned: nothing older than the retention."),
        Err(e) => tracing::warn!(error = %e, "Journal pruning failed; it runs again within the hour."),
    }
}
