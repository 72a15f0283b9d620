//! Rate-limited logging for failures that repeat (a full disk fails every commit): at most
//! one line per period per kind, carrying the number of repeats suppressed since the
//! last line. The failures are still counted, each one, in their metrics.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one kind of repeating failure may be logged.
pub const FAILURE_LOG_PERIOD: Duration = Duration::from_secs(10);

/// One kind of repeating log line. Thread-safe, so a `static` serves every caller.
pub struct Throttle {
    period: Duration,
    /// When the last line was let through, and the repeats suppressed since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// A throttle letting one line through per `period`.
    pub const fn new(period: Duration) -> Self {
        Throttle {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(suppressed)` when a line may be written now (with the number of repeats
    /// suppressed since the last one); `None` when this repeat is to be suppressed.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|at| now.duration_since(at) < self.period) {
            *suppressed += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_of_repeats_suppressed() {
        let throttle = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(throttle.allow_at(at(0)), Some(0), "the first line goes through");
        assert_eq!(throttle.allow_at(at(1)), None);
        assert_eq!(throttle.allow_at(at(9_999)), None);
        assert_eq!(
            throttle.allow_at(at(10_000)),
            Some(2),
            "then one with the repeats counted"
        );
        assert_eq!(throttle.allow_at(at(10_500)), None);
        assert_eq!(throttle.allow_at(at(30_000)), Some(1));
        assert_eq!(throttle.allow_at(at(40_000)), Some(0));
    }
}
