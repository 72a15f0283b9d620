//! Metric names (see `docs/metrics.md`) and the Prometheus recorder behind the `metrics` facade.
//! Beside the daemon's own metrics, `/metrics` carries `actionwarden_build_info` and the
//! standard `process_*` metrics, read from the OS at each scrape.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Counter: submits CXone accepted with an id (one per attempt, compensations
/// included), by batch.
pub const ACTIONS_SUBMITTED: &str = "actionwarden_actions_submitted_total";
/// Counter: outcomes, by batch and outcome.
pub const ACTIONS_FINISHED: &str = "actionwarden_actions_finished_total";
/// Counter: retries spent, by batch and reason.
pub const ACTION_RETRIES: &str = "actionwarden_action_retries_total";
/// Histogram: first submission -> outcome, seconds, by batch and outcome.
pub const ACTION_DURATION: &str = "actionwarden_action_duration_seconds";
/// Gauge: actions between first submit and outcome, by batch.
pub const ACTIONS_IN_FLIGHT: &str = "actionwarden_actions_in_flight";
/// Counter: HTTP requests, by endpoint and status (`error` when no response came).
pub const HTTP_REQUESTS: &str = "actionwarden_http_requests_total";
/// Histogram: HTTP request latency, seconds, by endpoint.
pub const HTTP_DURATION: &str = "actionwarden_http_request_duration_seconds";
/// Counter: 429 responses, by endpoint.
pub const RATE_LIMITED: &str = "actionwarden_rate_limited_total";
/// Counter: poller restarts, by batch.
pub const POLLER_RESTARTS: &str = "actionwarden_poller_restarts_total";
/// Counter: restarts of a singleton actor after a panic, by actor (`token`, `classifier`,
/// `dead_letter`, `audit`).
pub const ACTOR_RESTARTS: &str = "actionwarden_actor_restarts_total";
/// Counter: token requests, by result (`ok`, `rejected`, `error`).
pub const TOKEN_REFRESHES: &str = "actionwarden_token_refreshes_total";
/// Counter: dead letters, by batch and error code.
pub const DEAD_LETTERS: &str = "actionwarden_dead_letters_total";
/// Gauge: dead letters stored but not yet accepted by the webhook.
pub const DEAD_LETTERS_UNDELIVERED: &str = "actionwarden_dead_letters_undelivered";
/// Gauge: live instances of the cluster.
pub const CLUSTER_INSTANCES: &str = "actionwarden_cluster_instances";
/// Counter: actions claimed from the journal.
pub const ACTIONS_CLAIMED: &str = "actionwarden_actions_claimed_total";
/// Counter: actions claimed from a dead instance.
pub const ACTIONS_RESCUED: &str = "actionwarden_actions_rescued_total";
/// Histogram: seconds per journal group commit.
pub const JOURNAL_COMMIT: &str = "actionwarden_journal_commit_seconds";
/// Counter: actions dropped because another claim took them over.
pub const OWNERSHIP_LOST: &str = "actionwarden_ownership_lost_total";
/// Counter: audit records written, by event type.
pub const AUDIT_RECORDS: &str = "actionwarden_audit_records_total";
/// Counter: journal commits that failed (the work stays queued and is retried).
pub const JOURNAL_ERRORS: &str = "actionwarden_journal_errors_total";
/// Counter: audit writes that failed (the records stay queued and are retried).
pub const AUDIT_ERRORS: &str = "actionwarden_audit_errors_total";
/// Gauge: always 1, labelled with the `version` and `commit` of the running binary.
pub const BUILD_INFO: &str = "actionwarden_build_info";

/// Every `actionwarden_*` metric name above, for tools that check dashboards and alert
/// rules against what the daemon exports.
pub const ACTIONWARDEN_METRICS: [&str; 22] = [
    ACTIONS_SUBMITTED,
    ACTIONS_FINISHED,
    ACTION_RETRIES,
    ACTION_DURATION,
    ACTIONS_IN_FLIGHT,
    HTTP_REQUESTS,
    HTTP_DURATION,
    RATE_LIMITED,
    POLLER_RESTARTS,
    ACTOR_RESTARTS,
    TOKEN_REFRESHES,
    DEAD_LETTERS,
    DEAD_LETTERS_UNDELIVERED,
    AUDIT_RECORDS,
    JOURNAL_ERRORS,
    AUDIT_ERRORS,
    BUILD_INFO,
    OWNERSHIP_LOST,
    CLUSTER_INSTANCES,
    ACTIONS_CLAIMED,
    ACTIONS_RESCUED,
    JOURNAL_COMMIT,
];

/// The standard process metrics of Prometheus client libraries, as exported here (Linux
/// has them all; other systems a subset).
pub const PROCESS_METRICS: [&str; 8] = [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
    "process_threads",
];

/// The kinds of request, as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// The token endpoint.
    Token,
    /// Action submission.
    Submit,
    /// Action polling.
    Poll,
    /// Dead-letter webhook.
    Webhook,
}

impl Endpoint {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::Submit => "submit",
            Endpoint::Poll => "poll",
            Endpoint::Webhook => "webhook",
        }
    }
}

/// Buckets for HTTP latency: 1ms to 30s.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets for journal group commits: 0.5ms to 5s.
const COMMIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Buckets for action duration: 10ms to 4h.
const ACTION_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0,
];

/// Installs the global Prometheus recorder (once per process) and returns its handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), HTTP_BUCKETS)
                .expect("static buckets are valid")
                .set_buckets_for_metric(Matcher::Full(ACTION_DURATION.into()), ACTION_BUCKETS)
                .expect("static buckets are valid")
                .set_buckets_for_metric(Matcher::Full(JOURNAL_COMMIT.into()), COMMIT_BUCKETS)
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // A second install in one process (tests) keeps the first recorder.
            let _ = metrics::set_global_recorder(recorder);
            INSTALLED.store(true, Ordering::Release);
            describe();
            metrics::gauge!(
                BUILD_INFO,
                "version" => crate::version::VERSION,
                "commit" => crate::version::COMMIT
            )
            .set(1.0);
            process_collector().describe();
            process_collector().collect();
            handle
        })
        .clone()
}

/// Set once the global recorder is in place: from then on a resolved metric handle stays
/// valid for the life of the process (events.rs keeps them).
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Whether metric handles can be kept: one resolved before the recorder is installed
/// would count nothing, for good.
pub(super) fn installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

/// The exposition text for a scrape, with the process metrics read just before.
pub fn render(handle: &PrometheusHandle) -> String {
    process_collector().collect();
    handle.render()
}

/// The collector of the `process_*` metrics.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Registers the series that have no batch label at zero, so every metric shows from
/// the first scrape (a counter that never moved is still worth a line); the batches'
/// own series are registered by `register_batch` as admission learns of them.
pub fn register_globals() {
    use metrics::{counter, gauge};
    for endpoint in ["token", "submit", "poll", "webhook"] {
        counter!(RATE_LIMITED, "endpoint" => endpoint).increment(0);
    }
    for result in ["ok", "rejected", "error"] {
        counter!(TOKEN_REFRESHES, "result" => result).increment(0);
    }
    counter!(OWNERSHIP_LOST).increment(0);
    counter!(ACTIONS_CLAIMED).increment(0);
    counter!(ACTIONS_RESCUED).increment(0);
    for event_type in AUDIT_EVENT_TYPES {
        counter!(AUDIT_RECORDS, "event_type" => event_type).increment(0);
    }
    gauge!(DEAD_LETTERS_UNDELIVERED).set(0.0);
    counter!(JOURNAL_ERRORS).increment(0);
    counter!(AUDIT_ERRORS).increment(0);
    for actor in crate::config::Singleton::ALL {
        counter!(ACTOR_RESTARTS, "actor" => actor.as_str()).increment(0);
    }
}

/// Registers one batch's series at zero (at start, and for a batch a reload adds). Call
/// it before the batch has an action in flight: it sets the in-flight gauge to 0.
pub fn register_batch(batch: &str) {
    use metrics::{counter, gauge};
    let batch = batch.to_owned();
    counter!(ACTIONS_SUBMITTED, "batch" => batch.clone()).increment(0);
    for outcome in crate::action::Outcome::ALL {
        counter!(ACTIONS_FINISHED, "batch" => batch.clone(), "outcome" => outcome.as_str()).increment(0);
    }
    counter!(POLLER_RESTARTS, "batch" => batch.clone()).increment(0);
    for reason in RETRY_REASONS {
        counter!(ACTION_RETRIES, "batch" => batch.clone(), "reason" => reason).increment(0);
    }
    gauge!(ACTIONS_IN_FLIGHT, "batch" => batch).set(0.0);
}

/// Values of the `reason` label of `actionwarden_action_retries_total`.
pub const RETRY_REASONS: [&str; 6] = [
    "failed",
    "rate_limited",
    "http_error",
    "network_error",
    "timeout",
    "malformed_response",
];

/// Every audit `event_type` (docs/audit.md).
pub const AUDIT_EVENT_TYPES: [&str; 8] = [
    "ACTION_COMPLETED",
    "ACTION_CANCELLED",
    "ASYNC_ERROR_HANDLED",
    "ACTION_SUBMITTED",
    "RETRY_SCHEDULED",
    "POLLER_RESTARTED",
    "DEAD_LETTER_DELIVERED",
    "DEAD_LETTER_DISCARDED",
];

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        ACTIONS_SUBMITTED,
        "Submits CXone accepted with an action id (each attempt, compensations included)."
    );
    describe_counter!(ACTIONS_FINISHED, "Actions that reached an outcome.");
    describe_counter!(ACTION_RETRIES, "Retries spent from the actions' budgets.");
    describe_histogram!(ACTION_DURATION, Unit::Seconds, "First submission to outcome.");
    describe_gauge!(ACTIONS_IN_FLIGHT, "Actions between first submit and outcome.");
    describe_counter!(HTTP_REQUESTS, "HTTP requests by endpoint and status.");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP request latency.");
    describe_counter!(RATE_LIMITED, "429 responses by endpoint.");
    describe_counter!(POLLER_RESTARTS, "Poller restarts after a crash.");
    describe_counter!(ACTOR_RESTARTS, "Singleton actor restarts after a panic.");
    describe_counter!(TOKEN_REFRESHES, "Token requests by result.");
    describe_counter!(DEAD_LETTERS, "Dead letters by batch and error code.");
    describe_gauge!(
        DEAD_LETTERS_UNDELIVERED,
        "Dead letters not yet accepted by the webhook."
    );
    describe_counter!(AUDIT_RECORDS, "Audit records written by event type.");
    describe_counter!(OWNERSHIP_LOST, "Actions dropped because another claim took them over.");
    describe_gauge!(CLUSTER_INSTANCES, "Live instances of the cluster (PostgreSQL journal).");
    describe_counter!(ACTIONS_CLAIMED, "Actions claimed from the journal.");
    describe_counter!(ACTIONS_RESCUED, "Actions claimed from an instance that died.");
    describe_histogram!(JOURNAL_COMMIT, Unit::Seconds, "Journal group commits.");
    describe_counter!(
        JOURNAL_ERRORS,
        "Journal commits that failed (retried; nothing is lost)."
    );
    describe_counter!(AUDIT_ERRORS, "Audit writes that failed (retried; nothing is lost).");
    describe_gauge!(BUILD_INFO, "Always 1; the labels name the running version and commit.");
}
