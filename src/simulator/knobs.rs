//! The simulator's live fault knobs (profile rates plus overrides, changed through
//! `POST /sim/control`) and the counters `GET /sim/stats` returns.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Profile, RetryAfterForm, SimulatorSettings};

/// Latency bound of the `chaos` profile; each API response waits uniformly up to it.
const CHAOS_LATENCY: Duration = Duration::from_millis(50);

/// The live fault knobs: the profile's rates with the settings' overrides, changeable
/// through `POST /sim/control`.
#[derive(Debug, Clone, Serialize)]
pub struct Knobs {
    pub header_only_rate: f64,
    pub rate_limit_rate: f64,
    pub server_error_rate: f64,
    pub malformed_rate: f64,
    pub drop_rate: f64,
    pub early_expiry_rate: f64,
    /// Delay added to API responses (the bound of a uniform draw when `latency_random`).
    #[serde(with = "crate::config::duration")]
    pub latency: Duration,
    pub latency_random: bool,
    /// Delay before the token endpoint answers.
    #[serde(with = "crate::config::duration")]
    pub token_latency: Duration,
    pub retry_after_form: RetryAfterForm,
    pub retry_after_secs: u64,
    pub webhook_fail_first: u32,
    pub webhook_down: bool,
    /// Statuses answered, in order, to the next token requests (429 with the live
    /// `Retry-After` form); each is used once.
    pub token_status: VecDeque<u16>,
}

/// A `POST /sim/control` body: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnobUpdate {
    header_only_rate: Option<f64>,
    rate_limit_rate: Option<f64>,
    server_error_rate: Option<f64>,
    malformed_rate: Option<f64>,
    drop_rate: Option<f64>,
    early_expiry_rate: Option<f64>,
    #[serde(default, with = "crate::config::duration::optional")]
    latency: Option<Duration>,
    latency_random: Option<bool>,
    #[serde(default, with = "crate::config::duration::optional")]
    token_latency: Option<Duration>,
    retry_after_form: Option<RetryAfterForm>,
    retry_after_secs: Option<u64>,
    webhook_fail_first: Option<u32>,
    webhook_down: Option<bool>,
    /// Replaces the queue of forced token statuses.
    token_status: Option<Vec<u16>>,
    /// A new client secret for the token endpoint (a rotation).
    client_secret: Option<String>,
}

impl KnobUpdate {
    /// Takes the rotated client secret out of the update; it is state, not a knob.
    pub fn take_client_secret(&mut self) -> Option<String> {
        self.client_secret.take()
    }
}

impl Knobs {
    pub(super) fn new(s: &SimulatorSettings) -> Knobs {
        // (header_only, rate_limit, server_error, malformed, drop, early_expiry)
        let rates = match s.profile {
            Profile::Clean => (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
            Profile::Demo => (0.10, 0.03, 0.0, 0.0, 0.0, 0.0),
            Profile::Chaos => (0.30, 0.10, 0.10, 0.10, 0.05, 0.20),
        };
        let chaos = s.profile == Profile::Chaos;
        Knobs {
            header_only_rate: s.header_only_rate.unwrap_or(rates.0),
            rate_limit_rate: s.rate_limit_rate.unwrap_or(rates.1),
            server_error_rate: s.server_error_rate.unwrap_or(rates.2),
            malformed_rate: s.malformed_rate.unwrap_or(rates.3),
            drop_rate: s.drop_rate.unwrap_or(rates.4),
            early_expiry_rate: s.early_expiry_rate.unwrap_or(rates.5),
            latency: s.latency.unwrap_or(if chaos { CHAOS_LATENCY } else { Duration::ZERO }),
            latency_random: s.latency.is_none() && chaos,
            token_latency: s.token_latency,
            retry_after_form: s.retry_after_form,
            retry_after_secs: s.retry_after_secs,
            webhook_fail_first: s.webhook_fail_first,
            webhook_down: false,
            token_status: VecDeque::new(),
        }
    }

    /// Applies an update; setting `latency` alone makes it fixed.
    pub fn apply(&mut self, u: KnobUpdate) {
        let rates = [
            (u.header_only_rate, &mut self.header_only_rate),
            (u.rate_limit_rate, &mut self.rate_limit_rate),
            (u.server_error_rate, &mut self.server_error_rate),
            (u.malformed_rate, &mut self.malformed_rate),
            (u.drop_rate, &mut self.drop_rate),
            (u.early_expiry_rate, &mut self.early_expiry_rate),
        ];
        for (new, slot) in rates {
            if let Some(rate) = new {
                *slot = rate.clamp(0.0, 1.0);
            }
        }
        if let Some(latency) = u.latency {
            self.latency = latency;
            self.latency_random = false;
        }
        self.latency_random = u.latency_random.unwrap_or(self.latency_random);
        self.token_latency = u.token_latency.unwrap_or(self.token_latency);
        self.retry_after_form = u.retry_after_form.unwrap_or(self.retry_after_form);
        self.retry_after_secs = u.retry_after_secs.unwrap_or(self.retry_after_secs);
        self.webhook_fail_first = u.webhook_fail_first.unwrap_or(self.webhook_fail_first);
        self.webhook_down = u.webhook_down.unwrap_or(self.webhook_down);
        if let Some(statuses) = u.token_status {
            self.token_status = statuses.into();
        }
    }
}

/// `GET /sim/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub tokens_issued: u64,
    pub token_rejections: u64,
    pub submits: u64,
    pub actions_created: u64,
    pub duplicate_submits: u64,
    pub polls: u64,
    pub rate_limited: u64,
    pub server_errors: u64,
    pub dropped: u64,
    pub malformed: u64,
    pub webhooks_received: u64,
    pub webhook_signature_failures: u64,
    pub webhook_unavailable: u64,
    pub unauthorized: u64,
    pub requests_by_endpoint: ByEndpoint,
    pub submits_by_idempotency_key_max: u64,
}

/// Requests per endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ByEndpoint {
    pub token: u64,
    pub submit: u64,
    pub poll: u64,
    pub webhook: u64,
}
