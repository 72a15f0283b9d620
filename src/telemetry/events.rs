//! One struct per event; `emit()` logs and counts together, so a log line and its metric
//! never disagree. Labels stay bounded: never a key or a CXone id.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::thread::LocalKey;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

pub use super::metrics::Endpoint;
use super::metrics::*;
use crate::action::Outcome;

thread_local! {
    /// The request metrics by endpoint and status label.
    static HTTP: Handles<(Endpoint, &'static str), (Counter, Histogram)> = RefCell::default();
    /// The per-batch metrics of the action events.
    static BATCHES: Handles<String, BatchHandles> = RefCell::default();
    /// The audit record counters by event type.
    static AUDIT: Handles<&'static str, Counter> = RefCell::default();
}

/// Metric handles resolved once per thread. A `counter!` with labels builds, hashes and
/// looks up its key (copying a `batch` label) at every call; the events of every request
/// and action find their handles here by a small key instead.
type Handles<K, H> = RefCell<HashMap<K, H>>;

/// Runs `act` on the handle `resolve` (a `counter!`-style call) gives for `key`, resolved
/// once per thread; before the recorder is installed it is resolved and not kept.
fn with_handle<K, Q, H, R>(
    cache: &'static LocalKey<Handles<K, H>>,
    key: &Q,
    resolve: impl FnOnce() -> H,
    act: impl FnOnce(&mut H) -> R,
) -> R
where
    K: Eq + Hash + std::borrow::Borrow<Q>,
    Q: Eq + Hash + ToOwned<Owned = K> + ?Sized,
{
    if !super::metrics::installed() {
        return act(&mut resolve());
    }
    cache.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(key) {
            cache.insert(key.to_owned(), resolve());
        }
        act(cache.get_mut(key).expect("just inserted"))
    })
}

/// A batch's handles; those of an outcome are resolved at its first action, so a
/// histogram series appears only once it has a value (as with `histogram!`).
struct BatchHandles {
    submitted: Counter,
    in_flight: Gauge,
    finished: [Option<(Counter, Histogram)>; Outcome::ALL.len()],
}

impl BatchHandles {
    fn new(batch: &str) -> Self {
        BatchHandles {
            submitted: counter!(ACTIONS_SUBMITTED, "batch" => batch.to_owned()),
            in_flight: gauge!(ACTIONS_IN_FLIGHT, "batch" => batch.to_owned()),
            finished: Default::default(),
        }
    }

    /// Runs `act` on the handles of `batch`.
    fn with<R>(batch: &str, act: impl FnOnce(&mut BatchHandles) -> R) -> R {
        with_handle(&BATCHES, batch, || BatchHandles::new(batch), act)
    }

    /// The outcome counter and duration histogram of `outcome` in this batch.
    fn finished(&mut self, batch: &str, outcome: Outcome) -> &(Counter, Histogram) {
        let index = Outcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .expect("every outcome is in ALL");
        self.finished[index].get_or_insert_with(|| {
            (
                counter!(ACTIONS_FINISHED, "batch" => batch.to_owned(), "outcome" => outcome.as_str()),
                histogram!(ACTION_DURATION, "batch" => batch.to_owned(), "outcome" => outcome.as_str()),
            )
        })
    }
}

/// An HTTP request finished (or failed without a response when `status` is `None`).
pub struct HttpRequestDone {
    /// Which call.
    pub endpoint: Endpoint,
    /// Status, or `None` for a network error or timeout.
    pub status: Option<u16>,
    /// Time until the body was read.
    pub elapsed: Duration,
}

impl HttpRequestDone {
    /// Counts the request, its latency and a 429.
    pub fn emit(self) {
        let endpoint = self.endpoint.as_str();
        let status = match self.status {
            Some(code) => status_label(code),
            None => "error",
        };
        let resolve = || {
            (
                counter!(HTTP_REQUESTS, "endpoint" => endpoint, "status" => status),
                histogram!(HTTP_DURATION, "endpoint" => endpoint),
            )
        };
        with_handle(&HTTP, &(self.endpoint, status), resolve, |(requests, duration)| {
            requests.increment(1);
            duration.record(self.elapsed.as_secs_f64());
        });
        if self.status == Some(429) {
            counter!(RATE_LIMITED, "endpoint" => endpoint).increment(1);
        }
    }
}

/// Status codes worth their own label; others fall into their class (`4xx`).
const KNOWN_STATUSES: [(u16, &str); 17] = [
    (200, "200"),
    (201, "201"),
    (202, "202"),
    (204, "204"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (408, "408"),
    (409, "409"),
    (422, "422"),
    (425, "425"),
    (429, "429"),
    (500, "500"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
];

/// Status codes as static labels (no allocation per request).
fn status_label(code: u16) -> &'static str {
    if let Some((_, label)) = KNOWN_STATUSES.iter().find(|(known, _)| *known == code) {
        return label;
    }
    match code / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// An attempt was submitted.
pub struct ActionSubmitted<'a> {
    /// Batch name.
    pub batch: &'a str,
}

impl ActionSubmitted<'_> {
    /// Counts it.
    pub fn emit(self) {
        BatchHandles::with(self.batch, |h| h.submitted.increment(1));
    }
}

/// A retry was spent.
pub struct RetrySpent<'a> {
    /// Batch name.
    pub batch: &'a str,
    /// Why (`failed`, `rate_limited`, `http_error`, `network_error`, `timeout`, `malformed_response`).
    pub reason: &'static str,
}

impl RetrySpent<'_> {
    /// Counts it.
    pub fn emit(self) {
        counter!(ACTION_RETRIES, "batch" => self.batch.to_owned(), "reason" => self.reason).increment(1);
    }
}

/// An action reached its outcome.
pub struct ActionFinished<'a> {
    /// Batch name.
    pub batch: &'a str,
    /// Outcome.
    pub outcome: Outcome,
    /// First submission -> outcome.
    pub latency: Duration,
}

impl ActionFinished<'_> {
    /// Counts it and records its duration.
    pub fn emit(self) {
        BatchHandles::with(self.batch, |h| {
            let (finished, duration) = h.finished(self.batch, self.outcome);
            finished.increment(1);
            duration.record(self.latency.as_secs_f64());
        });
    }
}

/// The in-flight count of a batch changed.
pub struct InFlight<'a> {
    /// Batch name.
    pub batch: &'a str,
    /// New value.
    pub count: usize,
}

impl InFlight<'_> {
    /// Sets the gauge.
    pub fn emit(self) {
        BatchHandles::with(self.batch, |h| h.in_flight.set(self.count as f64));
    }
}

/// A token request ended.
pub struct TokenRefreshed {
    /// `ok`, `rejected` or `error`.
    pub result: &'static str,
}

impl TokenRefreshed {
    /// Counts it.
    pub fn emit(self) {
        counter!(TOKEN_REFRESHES, "result" => self.result).increment(1);
    }
}

/// A dead letter was stored.
pub struct DeadLettered<'a> {
    /// Batch name.
    pub batch: &'a str,
    /// Error code.
    pub error_code: &'a str,
}

impl DeadLettered<'_> {
    /// Counts it.
    pub fn emit(self) {
        counter!(DEAD_LETTERS, "batch" => self.batch.to_owned(), "error_code" => self.error_code.to_owned())
            .increment(1);
    }
}

/// The number of undelivered dead letters changed.
pub struct UndeliveredDeadLetters {
    /// New value.
    pub count: usize,
}

impl UndeliveredDeadLetters {
    /// Sets the gauge.
    pub fn emit(self) {
        gauge!(DEAD_LETTERS_UNDELIVERED).set(self.count as f64);
    }
}

/// A poller was restarted after a crash.
pub struct PollerRestarted<'a> {
    /// Batch name.
    pub batch: &'a str,
}

impl PollerRestarted<'_> {
    /// Counts it.
    pub fn emit(self) {
        counter!(POLLER_RESTARTS, "batch" => self.batch.to_owned()).increment(1);
    }
}

/// Audit records were written.
pub struct AuditWritten {
    /// Event type.
    pub event_type: &'static str,
}

impl AuditWritten {
    /// Counts it.
    pub fn emit(self) {
        let event_type = self.event_type;
        let resolve = || counter!(AUDIT_RECORDS, "event_type" => event_type);
        with_handle(&AUDIT, &event_type, resolve, |records| records.increment(1));
    }
}

/// A poller found its claim taken over and dropped its action.
pub struct OwnershipLost;

impl OwnershipLost {
    /// Counts it.
    pub fn emit(self) {
        counter!(OWNERSHIP_LOST).increment(1);
    }
}

/// Actions were claimed from the journal, some of them from dead instances.
pub struct ActionsClaimed {
    /// Claimed.
    pub claimed: usize,
    /// Of those, taken from a dead instance.
    pub rescued: usize,
}

impl ActionsClaimed {
    /// Counts them.
    pub fn emit(self) {
        counter!(ACTIONS_CLAIMED).increment(self.claimed as u64);
        counter!(ACTIONS_RESCUED).increment(self.rescued as u64);
    }
}

/// The live instances of the cluster were counted.
pub struct ClusterInstances {
    /// Live instances.
    pub live: usize,
}

impl ClusterInstances {
    /// Sets the gauge.
    pub fn emit(self) {
        gauge!(CLUSTER_INSTANCES).set(self.live as f64);
    }
}

/// A journal group commit finished.
pub struct JournalCommitted {
    /// Its duration.
    pub elapsed: Duration,
}

impl JournalCommitted {
    /// Records it.
    pub fn emit(self) {
        histogram!(JOURNAL_COMMIT).record(self.elapsed.as_secs_f64());
    }
}

/// A singleton actor was restarted after a panic.
pub struct ActorRestarted {
    /// Which actor.
    pub actor: crate::config::Singleton,
}

impl ActorRestarted {
    /// Counts it.
    pub fn emit(self) {
        counter!(ACTOR_RESTARTS, "actor" => self.actor.as_str()).increment(1);
    }
}

/// An audit write failed (the lines stay queued and are retried).
pub struct AuditFailed;

impl AuditFailed {
    /// Counts it.
    pub fn emit(self) {
        counter!(AUDIT_ERRORS).increment(1);
    }
}

/// A journal commit failed (the operations are answered with the error; writers retry).
pub struct JournalFailed;

impl JournalFailed {
    /// Counts it.
    pub fn emit(self) {
        counter!(JOURNAL_ERRORS).increment(1);
    }
}
