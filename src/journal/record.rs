//! What the journal stores about an action, and its conversion to and from the poller's
//! in-memory `ActionState` (wall-clock milliseconds on disk, `Instant`s in memory).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::action::{Identity, Outcome};
use crate::classify::ErrorPayload;
use crate::state::{ActionState, Phase};

/// The journaled state words (docs/journal.md, States), as stored in the `state` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateWord {
    /// Not submitted.
    Pending,
    /// The POST of `attempt` is (about to be) in flight.
    Submitting,
    /// `poll_id` is being polled.
    Polling,
    /// Waiting until `until_ms` before resubmitting.
    Backoff,
    /// The compensation is running (`compensating` holds the failure).
    RollingBack,
    /// Outcome `completed`.
    Completed,
    /// Outcome `cancelled`.
    Cancelled,
    /// Outcome `dead_lettered`.
    DeadLettered,
    /// Outcome `rolled_back`.
    RolledBack,
}

impl StateWord {
    /// The column spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StateWord::Pending => "pending",
            StateWord::Submitting => "submitting",
            StateWord::Polling => "polling",
            StateWord::Backoff => "backoff",
            StateWord::RollingBack => "rolling_back",
            StateWord::Completed => "completed",
            StateWord::Cancelled => "cancelled",
            StateWord::DeadLettered => "dead_lettered",
            StateWord::RolledBack => "rolled_back",
        }
    }

    /// Parses the column spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => StateWord::Pending,
            "submitting" => StateWord::Submitting,
            "polling" => StateWord::Polling,
            "backoff" => StateWord::Backoff,
            "rolling_back" => StateWord::RollingBack,
            "completed" => StateWord::Completed,
            "cancelled" => StateWord::Cancelled,
            "dead_lettered" => StateWord::DeadLettered,
            "rolled_back" => StateWord::RolledBack,
            _ => return None,
        })
    }

    /// The outcome, for the four outcome words.
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            StateWord::Completed => Some(Outcome::Completed),
            StateWord::Cancelled => Some(Outcome::Cancelled),
            StateWord::DeadLettered => Some(Outcome::DeadLettered),
            StateWord::RolledBack => Some(Outcome::RolledBack),
            _ => None,
        }
    }

    /// True for the four outcome words.
    pub fn is_outcome(self) -> bool {
        self.outcome().is_some()
    }

    /// Every word, in lifecycle order.
    pub const ALL: [StateWord; 9] = [
        StateWord::Pending,
        StateWord::Submitting,
        StateWord::Polling,
        StateWord::Backoff,
        StateWord::RollingBack,
        StateWord::Completed,
        StateWord::Cancelled,
        StateWord::DeadLettered,
        StateWord::RolledBack,
    ];

    /// The word of an outcome.
    pub fn of_outcome(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Completed => StateWord::Completed,
            Outcome::Cancelled => StateWord::Cancelled,
            Outcome::DeadLettered => StateWord::DeadLettered,
            Outcome::RolledBack => StateWord::RolledBack,
        }
    }
}

/// One row of the `actions` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionRow {
    /// `BATCH/KEY`.
    pub identity: Identity,
    /// State word.
    pub state: StateWord,
    /// Attempt, from 1.
    pub attempt: u32,
    /// Retries spent.
    pub retry_count: u32,
    /// Replay series: 0 for the first run, +1 per `dlq replay` (new Idempotency-Keys).
    pub series: u32,
    /// CXone id of the action (the original, also while compensating).
    pub action_id: Option<String>,
    /// Id being polled (the compensation's id while rolling back).
    pub poll_id: Option<String>,
    /// Backoff end, Unix ms.
    pub until_ms: Option<i64>,
    /// First submission, Unix ms.
    pub first_submit_ms: Option<i64>,
    /// Outcome latency, ms (outcomes only).
    pub latency_ms: Option<i64>,
    /// The failure being compensated (rolling back only).
    pub compensating: Option<Box<ErrorPayload>>,
    /// Poller restarts so far.
    pub restarts: u32,
    /// Last change, Unix ms.
    pub updated_ms: i64,
}

pub use crate::clock::now_ms;

/// The `Instant` of a Unix-ms time (clamped to now for the future/past arithmetic).
fn instant_of(ms: i64) -> Instant {
    let now = Instant::now();
    let delta = ms - now_ms();
    if delta >= 0 {
        now + Duration::from_millis(delta as u64)
    } else {
        now.checked_sub(Duration::from_millis((-delta) as u64)).unwrap_or(now)
    }
}

/// Unix ms of an `Instant`.
fn ms_of(at: Instant) -> i64 {
    let now = Instant::now();
    if at >= now {
        now_ms() + at.duration_since(now).as_millis() as i64
    } else {
        now_ms() - now.duration_since(at).as_millis() as i64
    }
}

impl ActionRow {
    /// A not-yet-submitted action in replay `series` (what a `dlq replay` leaves).
    pub fn pending(identity: &Identity, series: u32) -> Self {
        ActionRow {
            identity: identity.clone(),
            state: StateWord::Pending,
            attempt: 1,
            retry_count: 0,
            series,
            action_id: None,
            poll_id: None,
            until_ms: None,
            first_submit_ms: None,
            latency_ms: None,
            compensating: None,
            restarts: 0,
            updated_ms: now_ms(),
        }
    }

    /// The row for an in-memory state.
    pub fn from_state(identity: &Identity, st: &ActionState) -> Self {
        let (state, poll_id, until_ms, latency_ms) = match &st.phase {
            Phase::Pending => (StateWord::Pending, None, None, None),
            Phase::Submitting if st.compensating.is_some() => (StateWord::RollingBack, None, None, None),
            Phase::Submitting => (StateWord::Submitting, None, None, None),
            Phase::Polling { action_id, .. } if st.compensating.is_some() => {
                (StateWord::RollingBack, Some(action_id.clone()), None, None)
            }
            Phase::Polling { action_id, .. } => (StateWord::Polling, Some(action_id.clone()), None, None),
            Phase::Backoff { until } => (StateWord::Backoff, None, Some(ms_of(*until)), None),
            Phase::Done(outcome) => (
                StateWord::of_outcome(*outcome),
                None,
                None,
                Some(st.latency_at(Instant::now()).as_millis() as i64),
            ),
        };
        ActionRow {
            identity: identity.clone(),
            state,
            attempt: st.attempt,
            retry_count: st.retry_count,
            series: st.series,
            action_id: st.action_id.clone(),
            poll_id,
            until_ms,
            first_submit_ms: st.first_submit.map(ms_of),
            latency_ms,
            compensating: st.compensating.clone(),
            restarts: st.restart_total,
            updated_ms: now_ms(),
        }
    }

    /// The in-memory state to resume from (restart bookkeeping stays with the caller).
    pub fn to_state(&self) -> ActionState {
        let phase = match self.state {
            StateWord::Pending => Phase::Pending,
            StateWord::Submitting => Phase::Submitting,
            StateWord::Polling | StateWord::RollingBack => match &self.poll_id {
                // Resume polling the same id at once: the wait before it was already spent.
                Some(id) => Phase::Polling {
                    action_id: id.clone(),
                    polls: 0,
                    next_at: Instant::now(),
                },
                None => Phase::Submitting,
            },
            StateWord::Backoff => Phase::Backoff {
                until: self.until_ms.map(instant_of).unwrap_or_else(Instant::now),
            },
            other => Phase::Done(other.outcome().expect("the remaining words are outcomes")),
        };
        ActionState {
            attempt: self.attempt.max(1),
            retry_count: self.retry_count,
            series: self.series,
            phase,
            action_id: self.action_id.clone(),
            first_submit: self.first_submit_ms.map(instant_of),
            compensating: self.compensating.clone(),
            restart_total: self.restarts,
            ..ActionState::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_words_round_trip() {
        for word in [
            StateWord::Pending,
            StateWord::Submitting,
            StateWord::Polling,
            StateWord::Backoff,
            StateWord::RollingBack,
            StateWord::Completed,
            StateWord::Cancelled,
            StateWord::DeadLettered,
            StateWord::RolledBack,
        ] {
            assert_eq!(StateWord::parse(word.as_str()), Some(word));
        }
    }

    #[test]
    fn polling_state_resumes_the_same_id() {
        let id = Identity::new("b", "k");
        let st = ActionState {
            attempt: 2,
            retry_count: 1,
            phase: Phase::Polling {
                action_id: "X-1".into(),
                polls: 3,
                next_at: Instant::now(),
            },
            action_id: Some("X-1".into()),
            first_submit: Some(Instant::now()),
            ..ActionState::default()
        };
        let row = ActionRow::from_state(&id, &st);
        assert_eq!(row.state, StateWord::Polling);
        let back = row.to_state();
        assert_eq!(back.attempt, 2);
        assert_eq!(back.retry_count, 1);
        assert!(matches!(back.phase, Phase::Polling { ref action_id, .. } if action_id == "X-1"));
    }

    #[test]
    fn backoff_keeps_what_is_left() {
        let id = Identity::new("b", "k");
        let st = ActionState {
            phase: Phase::Backoff {
                until: Instant::now() + Duration::from_secs(5),
            },
            ..ActionState::default()
        };
        let back = ActionRow::from_state(&id, &st).to_state();
        let Phase::Backoff { until } = back.phase else {
            panic!("not backoff")
        };
        let left = until.saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_secs(4) && left <= Duration::from_secs(5),
            "{left:?}"
        );
    }
}
