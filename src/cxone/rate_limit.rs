//! The shared gate in front of every CXone request: the 429 pause (one pause per kind of
//! request, not per poller; in a cluster, shared by every member) and the
//! `limits.requests_per_second` bucket.
//!
//! The bucket is GCRA (a virtual schedule of evenly spaced slots): one `Cell<Instant>`
//! and no background task, cheaper than a general-purpose limiter for one
//! single-threaded caller. It lives on the arbiter that owns the `CxoneClient`.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::telemetry::metrics::Endpoint;

/// Where 429 pauses are shared with the other members of a cluster.
pub trait SharedPauses {
    /// Tells the others that `endpoint` is paused until `until_ms` (Unix ms).
    fn publish(&self, endpoint: Endpoint, until_ms: i64);
    /// Until when (Unix ms) the cluster pauses `endpoint`, as last learned.
    fn until_ms(&self, endpoint: Endpoint) -> i64;
}

/// Pause-until per endpoint plus the request-rate schedule.
pub struct Gate {
    paused_until: [Cell<Option<Instant>>; 4],
    /// Pause applied after a 429 without `Retry-After`.
    default_pause: Duration,
    /// Spacing of request slots; `None` = unlimited.
    spacing: Option<Duration>,
    next_slot: Cell<Instant>,
    shared: Option<Box<dyn SharedPauses>>,
}

impl Gate {
    /// A gate with the given default 429 pause and request rate (0 = unlimited).
    pub fn new(default_pause: Duration, requests_per_second: u32) -> Self {
        Gate {
            paused_until: Default::default(),
            default_pause,
            spacing: (requests_per_second > 0).then(|| Duration::from_secs_f64(1.0 / requests_per_second as f64)),
            next_slot: Cell::new(Instant::now()),
            shared: None,
        }
    }

    /// The same gate, sharing its pauses with a cluster.
    pub fn shared(mut self, pauses: Box<dyn SharedPauses>) -> Self {
        self.shared = Some(pauses);
        self
    }

    /// Pauses every request to `endpoint` for `retry_after` (or the default pause).
    pub fn pause(&self, endpoint: Endpoint, retry_after: Option<Duration>) {
        let wait = retry_after.unwrap_or(self.default_pause);
        let until = Instant::now() + wait;
        let cell = &self.paused_until[endpoint as usize];
        if cell.get().is_none_or(|current| current < until) {
            cell.set(Some(until));
            if let Some(shared) = &self.shared {
                shared.publish(endpoint, unix_ms() + wait.as_millis() as i64);
            }
        }
    }

    /// When `endpoint` may be called again, if it is paused now (here or, in a cluster,
    /// by another member).
    pub fn paused_until(&self, endpoint: Endpoint) -> Option<Instant> {
        let now = Instant::now();
        let local = self.paused_until[endpoint as usize].get().filter(|t| *t > now);
        let cluster = self.shared.as_ref().and_then(|shared| {
            let ahead = shared.until_ms(endpoint) - unix_ms();
            (ahead > 0).then(|| now + Duration::from_millis(ahead as u64))
        });
        local.max(cluster)
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

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
