//! systemd's notify protocol, for a `Type=notify` unit: `READY=1` once the daemon admits
//! actions, `STATUS=` with its progress, `STOPPING=1` when shutdown begins, and, when the
//! unit sets `WatchdogSec` (`WATCHDOG_USEC`), `WATCHDOG=1` at half that interval from the
//! event loop that runs the actors: a wedged loop stops the pings and systemd restarts
//! the service. Without `NOTIFY_SOCKET` nothing is sent.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

/// How often `STATUS=` reports progress.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// Sends the daemon's state to systemd.
pub struct Notifier {
    /// `NOTIFY_SOCKET` is set.
    enabled: bool,
    /// `WATCHDOG_USEC`, when the watchdog is on for this process.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` (and `WATCHDOG_PID`, when set, must be us).
    pub fn from_env() -> Self {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        Notifier {
            enabled,
            watchdog: sd_notify::watchdog_enabled().filter(|d| enabled && !d.is_zero()),
        }
    }

    /// Whether anything is sent at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The daemon admits actions.
    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    /// A line of progress for `systemctl status`.
    pub fn status(&self, text: &str) {
        self.send(&[NotifyState::Status(text)]);
    }

    /// Shutdown began.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// Pings the watchdog at half its interval from a task on the current event loop (the
    /// one running the actors); the task ends when the handle is aborted or dropped with
    /// the loop. `None` without a watchdog.
    pub fn spawn_watchdog(&self) -> Option<actix_rt::task::JoinHandle<()>> {
        let every = self.watchdog? / 2;
        tracing::info!(every = ?every, "Pinging the systemd watchdog.");
        Some(actix_rt::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = sd_notify::notify(&[NotifyState::Watchdog]) {
                    tracing::debug!(error = %e, "Watchdog ping not sent.");
                }
            }
        }))
    }

    fn send(&self, state: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(state) {
            tracing::warn!(error = %e, "Cannot notify systemd.");
        }
    }
}

/// What `STATUS=` counts: the configured batches and their actions, as of the start or
/// the last reload.
#[derive(Default)]
pub struct Tracked {
    batches: RefCell<Vec<Arc<str>>>,
    total: Cell<u64>,
}

impl Tracked {
    /// The batches now configured and how many actions they hold.
    pub fn set(&self, batches: Vec<Arc<str>>, total: u64) {
        *self.batches.borrow_mut() = batches;
        self.total.set(total);
    }

    /// The batches.
    pub fn batches(&self) -> Vec<Arc<str>> {
        self.batches.borrow().clone()
    }

    /// Their actions.
    pub fn total(&self) -> u64 {
        self.total.get()
    }
}

/// The `STATUS=` text: how many of the configured actions have an outcome.
pub fn progress(total: u64, unresolved: u64) -> String {
    format!("{} of {total} actions resolved", total.saturating_sub(unresolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_resolved_actions() {
        assert_eq!(progress(1000, 250), "750 of 1000 actions resolved");
        assert_eq!(progress(0, 0), "0 of 0 actions resolved");
        assert_eq!(progress(5, 9), "0 of 5 actions resolved", "never negative");
    }
}
