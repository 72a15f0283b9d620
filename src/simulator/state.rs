//! Shared state of the simulator: tokens, webhooks, the request log and the random faults.
//! Each request method decides the complete answer under the lock and returns it as a
//! `Reply`; routes.rs only turns that into HTTP after any simulated latency. Actions
//! (submit and poll) are in actions.rs, the knobs and counters in knobs.rs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};

use super::actions::{ActionRecord, FateEntry, KeyEntry};
use super::dice::{subject_hash, Dice, Topic};
use super::fate::RetryAfter;
use super::knobs::{Knobs, Stats};
use super::reply::{error_reply, http_date_in, json_reply, verify_signature, Reply};
use super::{Profile, RetryAfterForm, SimulatorSettings};

/// Entries kept by the request log; the oldest fall off first.
const REQUEST_LOG_CAP: usize = 200_000;
/// Most created actions remembered for `GET /sim/actions` (the oldest are dropped).
pub const CREATED_LOG_CAP: usize = 10_000;

/// Token count above which expired tokens are swept on issue.
const TOKEN_SWEEP_THRESHOLD: usize = 10_000;

/// Salt that separates the random stream (latency, token names, unknown ids) from the
/// keyed draws of dice.rs.
const REQUEST_RNG_SALT: u64 = 0x5EED_0F0F_C0DE;

/// The subject of the early-expiry draws, which are keyed by a token's rank.
const TOKEN_SUBJECT: &str = "token";

/// What never changes after start.
pub struct Config {
    pub started: Instant,
    client_id: String,
    webhook_key: Option<Vec<u8>>,
    pub(super) profile: Profile,
    pub(super) seed: u64,
    token_ttl: Duration,
}

/// The state every worker shares.
pub struct Shared {
    pub config: Config,
    inner: Mutex<Inner>,
}

impl Shared {
    pub fn new(settings: &SimulatorSettings, client_secret: String, webhook_key: Option<Vec<u8>>) -> Self {
        let config = Config {
            started: Instant::now(),
            client_id: settings.client_id.clone(),
            webhook_key,
            profile: settings.profile,
            seed: settings.seed,
            token_ttl: settings.token_ttl,
        };
        let inner = Inner {
            client_secret,
            knobs: Knobs::new(settings),
            rng: SmallRng::seed_from_u64(settings.seed ^ REQUEST_RNG_SALT),
            tokens: HashMap::new(),
            fates: Vec::new(),
            fate_index: HashMap::new(),
            keys: HashMap::new(),
            actions: HashMap::new(),
            stats: Stats::default(),
            log: VecDeque::new(),
            created: VecDeque::new(),
            webhooks: Vec::new(),
        };
        Shared {
            config,
            inner: Mutex::new(inner),
        }
    }

    /// Locks the state; a panic elsewhere never makes the simulator unusable.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The endpoints the request log tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Token,
    Submit,
    Poll,
    Webhook,
}

/// One line of `GET /sim/requests`; `status` 0 means the connection was dropped.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LogEntry {
    endpoint: Endpoint,
    at_ms: u64,
    status: u16,
}

/// One accepted webhook delivery, as `GET /sim/webhook` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Webhook {
    idempotency_key: Option<String>,
    /// The `X-Actionwarden-Signature` header as received, if any.
    signature: Option<String>,
    signature_checked: bool,
    signature_valid: bool,
    body: Value,
}

/// The mutable state behind the lock.
pub struct Inner {
    /// The client secret the token endpoint accepts (rotated through `/sim/control`).
    pub client_secret: String,
    pub knobs: Knobs,
    rng: SmallRng,
    /// Token -> the instant from which the API rejects it.
    tokens: HashMap<String, Instant>,
    pub(super) fates: Vec<FateEntry>,
    /// Fate key (canonical payload text) -> index into `fates`.
    pub(super) fate_index: HashMap<String, usize>,
    /// Idempotency-Key -> its attempt and action.
    pub(super) keys: HashMap<String, KeyEntry>,
    /// CXone action id -> its record.
    pub(super) actions: HashMap<String, ActionRecord>,
    pub stats: Stats,
    pub log: VecDeque<LogEntry>,
    /// The last `CREATED_LOG_CAP` created actions: `{id, idempotency_key, metadata}`.
    pub created: VecDeque<Value>,
    pub webhooks: Vec<Webhook>,
}

impl Inner {
    /// `POST /oauth/token`.
    pub fn token(
        &mut self,
        cfg: &Config,
        grant_type: Option<&str>,
        client_id: Option<&str>,
        client_secret: Option<&str>,
        now: Instant,
    ) -> Reply {
        let reply = if let Some(status) = self.knobs.token_status.pop_front() {
            let mut dice = self.loose_dice(cfg);
            self.forced(status, None, &mut dice)
        } else if grant_type != Some("client_credentials") {
            self.stats.token_rejections += 1;
            json_reply(400, json!({"error": "unsupported_grant_type"}))
        } else if client_id != Some(cfg.client_id.as_str()) || client_secret != Some(self.client_secret.as_str()) {
            self.stats.token_rejections += 1;
            json_reply(401, json!({"error": "invalid_client"}))
        } else {
            self.issue_token(cfg, now)
        };
        self.finish(cfg, Endpoint::Token, now, reply)
    }

    /// `POST /sim/webhook`.
    pub fn webhook(
        &mut self,
        cfg: &Config,
        idempotency_key: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: Instant,
    ) -> Reply {
        let reply = if self.knobs.webhook_down || self.knobs.webhook_fail_first > 0 {
            self.knobs.webhook_fail_first = self.knobs.webhook_fail_first.saturating_sub(1);
            self.stats.webhook_unavailable += 1;
            error_reply(503, "SERVICE_UNAVAILABLE", "The webhook receiver is unavailable")
        } else {
            let valid = cfg
                .webhook_key
                .as_deref()
                .is_some_and(|key| signature.is_some_and(|sig| verify_signature(key, sig, body)));
            if cfg.webhook_key.is_some() && !valid {
                self.stats.webhook_signature_failures += 1;
                json_reply(401, json!({"error": "invalid_signature"}))
            } else {
                let body = serde_json::from_slice(body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
                self.webhooks.push(Webhook {
                    idempotency_key: idempotency_key.map(str::to_string),
                    signature: signature.map(str::to_string),
                    signature_checked: cfg.webhook_key.is_some(),
                    signature_valid: valid,
                    body,
                });
                self.stats.webhooks_received += 1;
                json_reply(200, json!({"received": true}))
            }
        };
        self.finish(cfg, Endpoint::Webhook, now, reply)
    }

    fn issue_token(&mut self, cfg: &Config, now: Instant) -> Reply {
        if self.tokens.len() > TOKEN_SWEEP_THRESHOLD {
            self.tokens.retain(|_, rejected_from| *rejected_from > now);
        }
        let token = format!("sim-{}", self.new_uuid().simple());
        let rank = self.stats.tokens_issued + 1;
        let mut dice = Dice::new(cfg.seed, subject_hash(TOKEN_SUBJECT), Topic::Token, rank);
        let lifetime = if dice.chance(self.knobs.early_expiry_rate) {
            cfg.token_ttl / 2
        } else {
            cfg.token_ttl
        };
        self.tokens.insert(token.clone(), now + lifetime);
        self.stats.tokens_issued += 1;
        let expires_in = cfg.token_ttl.as_secs().max(1);
        json_reply(
            200,
            json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}),
        )
    }

    pub(super) fn authorized(&self, bearer: Option<&str>, now: Instant) -> bool {
        bearer
            .and_then(|token| self.tokens.get(token))
            .is_some_and(|rejected_from| now < *rejected_from)
    }

    /// A random fault for an undirected API request, drawn from the live knobs with the
    /// request's own dice.
    pub(super) fn random_fault(&mut self, dice: &mut Dice, poll: bool) -> Option<Reply> {
        if dice.chance(self.knobs.drop_rate) {
            Some(Reply::Drop)
        } else if dice.chance(self.knobs.server_error_rate) {
            Some(error_reply(
                503,
                "SERVICE_UNAVAILABLE",
                "The service is temporarily unavailable",
            ))
        } else if dice.chance(self.knobs.rate_limit_rate) {
            Some(Reply::RateLimited {
                retry_after: self.retry_after(None, dice),
            })
        } else if poll && dice.chance(self.knobs.malformed_rate) {
            Some(Reply::Malformed)
        } else {
            None
        }
    }

    /// The answer for a status a directive forces.
    pub(super) fn forced(&mut self, status: u16, retry_after: Option<RetryAfter>, dice: &mut Dice) -> Reply {
        if status == 429 {
            return Reply::RateLimited {
                retry_after: self.retry_after(retry_after, dice),
            };
        }
        let code = match status {
            400 => "INVALID_REQUEST".to_string(),
            401 => "UNAUTHORIZED".into(),
            403 => "FORBIDDEN".into(),
            404 => "NOT_FOUND".into(),
            408 => "REQUEST_TIMEOUT".into(),
            409 => "CONFLICT".into(),
            422 => "VALIDATION_FAILED".into(),
            500 => "INTERNAL_ERROR".into(),
            502 => "BAD_GATEWAY".into(),
            503 => "SERVICE_UNAVAILABLE".into(),
            504 => "GATEWAY_TIMEOUT".into(),
            other => format!("HTTP_{other}"),
        };
        error_reply(status, &code, &format!("Simulated HTTP {status}"))
    }

    /// The `Retry-After` value of a 429: the directive's, else the live form.
    fn retry_after(&self, directed: Option<RetryAfter>, dice: &mut Dice) -> Option<String> {
        let secs = self.knobs.retry_after_secs;
        match directed {
            Some(RetryAfter::Seconds(n)) => Some(n.to_string()),
            Some(RetryAfter::DateIn(n)) => Some(http_date_in(n)),
            None => match self.knobs.retry_after_form {
                RetryAfterForm::Seconds => Some(secs.to_string()),
                RetryAfterForm::HttpDate => Some(http_date_in(secs)),
                RetryAfterForm::Mixed if dice.chance(0.5) => Some(http_date_in(secs)),
                RetryAfterForm::Mixed => Some(secs.to_string()),
                RetryAfterForm::None => None,
            },
        }
    }

    /// Dice for a request about no known action (an unknown id): from the random stream.
    pub(super) fn loose_dice(&mut self, cfg: &Config) -> Dice {
        Dice::new(cfg.seed, self.rng.random(), Topic::Poll, 0)
    }

    pub(super) fn latency(&mut self) -> Duration {
        let bound = self.knobs.latency;
        if bound.is_zero() || !self.knobs.latency_random {
            return bound;
        }
        let micros = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(self.rng.random_range(0..=micros))
    }

    pub(super) fn new_uuid(&mut self) -> uuid::Uuid {
        uuid::Builder::from_random_bytes(self.rng.random()).into_uuid()
    }

    /// Counts a reply and logs it.
    pub(super) fn finish(&mut self, cfg: &Config, endpoint: Endpoint, arrived: Instant, reply: Reply) -> Reply {
        let status = reply.status();
        let by = &mut self.stats.requests_by_endpoint;
        match endpoint {
            Endpoint::Token => by.token += 1,
            Endpoint::Submit => by.submit += 1,
            Endpoint::Poll => by.poll += 1,
            Endpoint::Webhook => by.webhook += 1,
        }
        if matches!(endpoint, Endpoint::Submit | Endpoint::Poll) {
            let stats = &mut self.stats;
            match (&reply, status) {
                (Reply::Drop, _) => stats.dropped += 1,
                (Reply::Malformed, _) => stats.malformed += 1,
                (_, 401) => stats.unauthorized += 1,
                (_, 429) => stats.rate_limited += 1,
                (_, 500..=599) => stats.server_errors += 1,
                _ => {}
            }
        }
        if self.log.len() >= REQUEST_LOG_CAP {
            self.log.pop_front();
        }
        self.log.push_back(LogEntry {
            endpoint,
            at_ms: u64::try_from(arrived.saturating_duration_since(cfg.started).as_millis()).unwrap_or(u64::MAX),
            status,
        });
        reply
    }
}
