//! The shared gate in front of every CXone request: the 429 pause of SPEC §4 (one pause
//! per kind of request, not per poller) and the `limits.requests_per_second` bucket.
//!
//! The bucket is GCRA (a virtual schedule of evenly spaced slots): one `Cell<Instant>`
//! and no background task, cheaper than a general-purpose limiter for one
//! single-threaded caller. It lives on the arbiter that owns the `CxoneClient`.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::telemetry::metrics::Endpoint;

/// Pause-until per endpoint plus the request-rate schedule.
pub struct Gate {
    paused_until: [Cell<Option<Instant>>; 4],
    /// Pause applied after a 429 without `Retry-After`.
    default_pause: Duration,
    /// Spacing of request slots; `None` = unlimited.
    spacing: Option<Duration>,
    next_slot: Cell<Instant>,
}

impl Gate {
    /// A gate with the given default 429 pause and request rate (0 = unlimited).
    pub fn new(default_pause: Duration, requests_per_second: u32) -> Self {
        Gate {
            paused_until: Default::default(),
            default_pause,
            spacing: (requests_per_second > 0).then(|| Duration::from_secs_f64(1.0 / requests_per_second as f64)),
            next_slot: Cell::new(Instant::now()),
        }
    }

    /// Pauses every request to `endpoint` for `retry_after` (or the default pause).
    pub fn pause(&self, endpoint: Endpoint, retry_after: Option<Duration>) {
        let until = Instant::now() + retry_after.unwrap_or(self.default_pause);
        let cell = &self.paused_until[endpoint as usize];
        if cell.get().is_none_or(|current| current < until) {
            cell.set(Some(until));
        }
    }

    /// When `endpoint` may be called again, if it is paused now.
    pub fn paused_until(&self, endpoint: Endpoint) -> Option<Instant> {
        self.paused_until[endpoint as usize]
            .get()
            .filter(|t| *t > Instant::now())
    }

    /// Waits out a pause of `endpoint`, then takes a slot of the request-rate schedule.
    pub async fn wait(&self, endpoint: Endpoint) {
        // A pause may be extended by another 429 while we sleep: check again after it.
        while let Some(until) = self.paused_until(endpoint) {
            actix_rt::time::sleep_until(until.into()).await;
        }
        if let Some(spacing) = self.spacing {
            let now = Instant::now();
            let slot = self.next_slot.get().max(now);
            self.next_slot.set(slot + spacing);
            if slot > now {
                actix_rt::time::sleep_until(slot.into()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_only_grows() {
        let gate = Gate::new(Duration::from_secs(1), 0);
        gate.pause(Endpoint::Poll, Some(Duration::from_secs(10)));
        let long = gate.paused_until(Endpoint::Poll).unwrap();
        gate.pause(Endpoint::Poll, Some(Duration::from_millis(1)));
        assert_eq!(gate.paused_until(Endpoint::Poll), Some(long));
        assert!(gate.paused_until(Endpoint::Submit).is_none());
    }

    #[actix_rt::test]
    async fn rate_schedule_spaces_requests() {
        let gate = Gate::new(Duration::from_secs(1), 100);
        let start = Instant::now();
        for _ in 0..11 {
            gate.wait(Endpoint::Submit).await;
        }
        // 11 slots at 10ms spacing: the last one starts no earlier than 100ms in.
        assert!(start.elapsed() >= Duration::from_millis(95));
    }
}
