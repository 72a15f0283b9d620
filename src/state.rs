//! `ActionState`: where one action stands, as the poller and (later) the journal see it.
//!
//! The state lives outside the poller's running task (in an `Rc<RefCell<_>>` owned by
//! the actor) so that when a panic tears the task down, `Supervised::restarting` finds
//! the last known state intact: the same CXone id, attempt and retry count. The rules:
//! - `attempt` numbers submissions that count as new (first submit, each RETRY
//!   resubmission); repetitions after 401/429/5xx/timeouts/malformed bodies keep it, so
//!   they keep the `Idempotency-Key`.
//! - `retry_count` is the single budget (docs/cxone.md, Retries and backoff): every
//!   repetition except after a 401, and every RETRY resubmission, spends one.
//! - `compensating` is set while the rollback action (docs/cxone.md, Rollback and
//!   compensation) runs; `Submitting` and `Polling` then concern the compensation, not
//!   the original action.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::action::Outcome;
use crate::classify::ErrorPayload;

/// The phase of an action.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Not submitted yet.
    Pending,
    /// About to POST (or repeating the POST of) the current attempt.
    Submitting,
    /// Submitted as `action_id`; next poll at `next_at`.
    Polling {
        /// The CXone id.
        action_id: String,
        /// Polls answered "not yet" so far (drives `poll.backoff_factor`).
        polls: u32,
        /// When to poll next.
        next_at: Instant,
    },
    /// Waiting before resubmitting as a new attempt.
    Backoff {
        /// When to resubmit.
        until: Instant,
    },
    /// Finished.
    Done(Outcome),
}

/// The state of one action.
#[derive(Debug, Clone)]
pub struct ActionState {
    /// Current attempt, from 1.
    pub attempt: u32,
    /// Retries spent.
    pub retry_count: u32,
    /// Replay series (0, then +1 per `dlq replay`): part of the `Idempotency-Key`.
    pub series: u32,
    /// Where it stands.
    pub phase: Phase,
    /// The CXone id of the original action once known (kept while compensating).
    pub action_id: Option<String>,
    /// First submission, for `latency_seconds` and `poll.timeout`.
    pub first_submit: Option<Instant>,
    /// Set while the compensation runs: the failure being compensated.
    pub compensating: Option<Box<ErrorPayload>>,
    /// Restart times inside the supervisor window.
    pub restarts: VecDeque<Instant>,
    /// Total restarts, for the summary.
    pub restart_total: u32,
    /// Messages of the panics that caused the restarts, for `POLLER_CRASH_LOOP`.
    pub panic_messages: Vec<String>,
    /// More restarts than allowed inside the window: dead-letter at once.
    pub crash_loop: bool,
}

impl Default for ActionState {
    fn default() -> Self {
        ActionState {
            attempt: 1,
            retry_count: 0,
            series: 0,
            phase: Phase::Pending,
            action_id: None,
            first_submit: None,
            compensating: None,
            restarts: VecDeque::new(),
            restart_total: 0,
            panic_messages: Vec::new(),
            crash_loop: false,
        }
    }
}

impl ActionState {
    /// Time from the first submission to `now` (zero before it).
    pub fn latency_at(&self, now: Instant) -> Duration {
        self.first_submit
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default()
    }

    /// Records a restart at `now`; true when the restarts inside `window` exceed `max`.
    pub fn record_restart(&mut self, now: Instant, window: Duration, max: u32) -> bool {
        while self.restarts.front().is_some_and(|t| now.duration_since(*t) > window) {
            self.restarts.pop_front();
        }
        self.restarts.push_back(now);
        self.restart_total += 1;
        self.restarts.len() as u32 > max
    }

    /// The delay before restart number `n` inside the window: `base` doubling, at most 10s.
    pub fn restart_delay(&self, base: Duration) -> Duration {
        let n = self.restarts.len().saturating_sub(1).min(16) as u32;
        base.saturating_mul(1 << n).min(MAX_RESTART_BACKOFF)
    }
}

/// What the journal remembers about a transition besides the state itself (the
/// action's history).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Note {
    /// HTTP status of the response that caused it.
    pub http_status: Option<u16>,
    /// Error code that caused it.
    pub error_code: Option<String>,
    /// A short explanation.
    pub detail: Option<String>,
}

/// Cap of the restart backoff (docs/configuration.md, `[supervisor]`).
pub const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(10);

/// The wait before poll number `polls + 1`: `interval * factor^polls`, capped.
pub fn poll_interval(interval: Duration, factor: f64, max: Duration, polls: u32) -> Duration {
    let secs = interval.as_secs_f64() * factor.powi(polls.min(1024) as i32);
    if !secs.is_finite() || secs >= max.as_secs_f64() {
        max
    } else {
        Duration::from_secs_f64(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_window_counts_only_recent_restarts() {
        let mut st = ActionState::default();
        let t0 = Instant::now();
        let window = Duration::from_secs(60);
        for i in 0..3 {
            assert!(!st.record_restart(t0 + Duration::from_secs(i), window, 3));
        }
        assert!(st.record_restart(t0 + Duration::from_secs(3), window, 3));
        // Far later, the old restarts fall out of the window.
        assert!(!st.record_restart(t0 + Duration::from_secs(200), window, 3));
        assert_eq!(st.restart_total, 5);
    }

    #[test]
    fn restart_delay_doubles_and_caps() {
        let mut st = ActionState::default();
        let base = Duration::from_millis(100);
        let t0 = Instant::now();
        st.record_restart(t0, Duration::from_secs(60), 100);
        assert_eq!(st.restart_delay(base), base);
        st.record_restart(t0, Duration::from_secs(60), 100);
        assert_eq!(st.restart_delay(base), base * 2);
        for _ in 0..20 {
            st.record_restart(t0, Duration::from_secs(60), 100);
        }
        assert_eq!(st.restart_delay(base), MAX_RESTART_BACKOFF);
    }

    #[test]
    fn poll_interval_grows_with_factor() {
        let i = Duration::from_secs(5);
        let max = Duration::from_secs(60);
        assert_eq!(poll_interval(i, 1.0, max, 10), i);
        assert_eq!(poll_interval(i, 2.0, max, 1), Duration::from_secs(10));
        assert_eq!(poll_interval(i, 2.0, max, 10), max);
    }
}
