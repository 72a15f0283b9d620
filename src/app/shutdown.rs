//! How a run ends: the exit code of each ending (a pure table, tested row by row) and
//! the drain that precedes it.
//!
//! | ending | `run --once` | daemon |
//! |---|---|---|
//! | every action has an outcome | 0 if all completed and every dead letter was delivered, else 2 | – |
//! | SIGTERM/SIGINT, drained | 0/2 as above if every action has an outcome, else 4 | 0 |
//! | a second signal during the drain | the same as the row above (nothing is lost: the journal holds the state) | 0 |
//! | a problem only an operator can fix (credentials rejected, certificate refused) | 3 | – |

use crate::error::exit;

/// Why the main loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// `--once`: every action has an outcome.
    Finished,
    /// SIGTERM/SIGINT (or the caller's stop request).
    Stopped,
    /// A problem only an operator can fix stopped `--once`; the reason is safe to show.
    Blocked(String),
}

/// Where the actions stand when the run ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Every configured action has an outcome.
    pub all_finished: bool,
    /// Every configured action completed.
    pub all_completed: bool,
    /// Dead letters the webhook has not accepted.
    pub undelivered: usize,
}

/// The exit code of a run that ended so.
pub fn exit_code(ending: &Ending, once: bool, tally: Tally) -> u8 {
    let finished = || {
        if tally.all_completed && tally.undelivered == 0 {
            exit::OK
        } else {
            exit::NOT_ALL_COMPLETED
        }
    };
    match ending {
        Ending::Blocked(_) => exit::CANNOT_RUN,
        Ending::Finished => finished(),
        Ending::Stopped if !once => exit::OK,
        Ending::Stopped if tally.all_finished => finished(),
        Ending::Stopped => exit::INTERRUPTED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(all_finished: bool, all_completed: bool, undelivered: usize) -> Tally {
        Tally {
            all_finished,
            all_completed,
            undelivered,
        }
    }

    #[test]
    fn once_finished_with_everything_completed_and_delivered_is_success() {
        assert_eq!(exit_code(&Ending::Finished, true, tally(true, true, 0)), exit::OK);
    }

    #[test]
    fn once_finished_with_some_action_not_completed_is_two() {
        assert_eq!(
            exit_code(&Ending::Finished, true, tally(true, false, 0)),
            exit::NOT_ALL_COMPLETED
        );
    }

    #[test]
    fn once_finished_with_letters_undelivered_after_the_drain_is_two() {
        assert_eq!(
            exit_code(&Ending::Finished, true, tally(true, true, 3)),
            exit::NOT_ALL_COMPLETED
        );
    }

    #[test]
    fn a_daemon_stopped_by_a_signal_is_success() {
        assert_eq!(exit_code(&Ending::Stopped, false, tally(false, false, 9)), exit::OK);
    }

    #[test]
    fn once_stopped_before_every_action_had_an_outcome_is_four() {
        assert_eq!(
            exit_code(&Ending::Stopped, true, tally(false, false, 0)),
            exit::INTERRUPTED
        );
    }

    #[test]
    fn once_stopped_after_every_action_had_an_outcome_reports_the_outcomes() {
        assert_eq!(exit_code(&Ending::Stopped, true, tally(true, true, 0)), exit::OK);
        assert_eq!(
            exit_code(&Ending::Stopped, true, tally(true, false, 0)),
            exit::NOT_ALL_COMPLETED
        );
    }

    #[test]
    fn a_problem_only_an_operator_can_fix_is_three() {
        let ending = Ending::Blocked("credentials rejected".into());
        assert_eq!(exit_code(&ending, true, tally(false, false, 0)), exit::CANNOT_RUN);
    }
}
