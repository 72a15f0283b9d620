//! Group commits under load: after a busy group, the next one waits a moment for more.
//!
//! The journal writer and the audit writer each commit whatever has queued up, one sync
//! per group. Under a sustained load their groups stay small when each commit starts as
//! soon as the last one ended; waiting a few milliseconds after a busy group lets one
//! sync, one pass over shared pages and one wake-up of the callers serve several times
//! as many writes (docs/journal.md, What is written when). Under light load groups stay
//! small and commit at once: a lone write never waits.

use std::time::Duration;

/// A group at least this large says writes arrive faster than they commit.
const BUSY_GROUP: usize = 32;
/// A group this large commits without waiting.
const ENOUGH: usize = 512;
/// How long the group after a busy one waits for more.
pub const LINGER: Duration = Duration::from_millis(3);

/// The size of the last group, to decide whether the next one waits.
#[derive(Debug, Default)]
pub struct Linger {
    previous: usize,
}

impl Linger {
    /// Whether a group of `queued` writes waits `LINGER` for more before it commits.
    pub fn waits(&self, queued: usize) -> bool {
        self.previous >= BUSY_GROUP && queued < ENOUGH
    }

    /// A group of `size` writes is being committed.
    pub fn committing(&mut self, size: usize) {
        self.previous = size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(previous: usize) -> Linger {
        Linger { previous }
    }

    #[test]
    fn only_a_group_after_a_busy_one_waits_and_only_while_it_is_small() {
        assert!(!Linger::default().waits(1), "a lone write commits at once");
        assert!(!after(BUSY_GROUP - 1).waits(1), "light load: no wait");
        assert!(after(BUSY_GROUP).waits(1));
        assert!(after(4096).waits(ENOUGH - 1));
        assert!(!after(4096).waits(ENOUGH), "large enough already");
    }
}
