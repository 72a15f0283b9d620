//! Configuration: one struct per TOML table, with its defaults (docs/configuration.md).
//!
//! `load()` (in load.rs) reads the file and deserializes its settings with unknown keys
//! refused (recover.rs keeps going past the first problem), then runs the checks of
//! validate.rs and network.rs; `load_checked()` also reads every action (actions.rs) to
//! check it. Every problem comes back at once, each with `FILE:LINE:COLUMN` (or
//! `FILE:LINE` in an `actions_file`), the key and what was expected.

pub mod actions;
pub mod duration;
mod load;
mod location;
mod network;
mod optional;
mod recover;
pub mod secret;
mod store;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::simulator::SimulatorSettings;

pub use load::{check_text, load, load_checked, parse, table_to_json, ConfigError, Loaded};
pub use location::Problem;
pub use secret::{Secret, SecretError};
pub use store::{host_name, Backend, ClusterConfig, JournalConfig};

/// The literal `base_url` (and `webhook_url`) that selects the embedded simulator.
pub const SIMULATOR: &str = "simulator";

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How to reach CXone (or the embedded simulator).
    pub cxone: CxoneConfig,
    /// Concurrency and request-rate limits.
    pub limits: LimitsConfig,
    /// Polling cadence.
    pub poll: PollConfig,
    /// The single retry budget of each action and its backoff.
    pub retry: RetryConfig,
    /// Error code -> recovery directive rules.
    pub classifier: ClassifierConfig,
    /// Poller restart policy.
    pub supervisor: SupervisorConfig,
    /// Dead-letter webhook.
    pub dead_letter: DeadLetterConfig,
    /// Audit log file.
    pub audit: AuditConfig,
    /// Journal file.
    pub journal: JournalConfig,
    /// Admin HTTP server.
    pub admin: AdminConfig,
    /// Log output.
    pub log: LogConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Embedded simulator, used when `cxone.base_url = "simulator"`.
    pub simulator: SimulatorSettings,
    /// Fault injection for drills and tests.
    pub chaos: ChaosConfig,
    /// Cluster membership (PostgreSQL journal).
    pub cluster: ClusterConfig,
    /// The action batches.
    #[serde(rename = "batch", skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<BatchConfig>,
}

/// `[cxone]`: endpoints, credentials and HTTP limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CxoneConfig {
    /// API base URL; `"simulator"` starts the embedded simulator. Default `https://api.nicecxone.com`.
    pub base_url: String,
    /// Token endpoint. Default: `{base_url}/oauth/token`.
    pub token_url: String,
    /// OAuth2 client id; falls back to env `CXONE_CLIENT_ID`.
    pub client_id: String,
    /// Name of the environment variable holding the client secret. Default `CXONE_CLIENT_SECRET`.
    pub client_secret_env: String,
    /// File holding the client secret, read at every token request (so a rotated file
    /// is picked up); wins over `client_secret_env` when set. Default: none (`""`).
    #[serde(with = "optional")]
    pub client_secret_file: Option<PathBuf>,
    /// OAuth2 scopes, sent space-separated.
    pub scopes: Vec<String>,
    /// Submit path. Default `/api/v2/data/actions`.
    pub submit_path: String,
    /// Poll path with `{id}`. Default `/api/v2/data/actions/{id}`.
    pub poll_path: String,
    /// Timeout of one HTTP request, headers and body. Default `15s`.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Refresh a token this long before it expires. Default `60s`.
    #[serde(with = "duration")]
    pub token_refresh_skew: Duration,
    /// Connection pool size. Default 256.
    pub max_connections: usize,
    /// Largest response body read. Default 1 MiB.
    pub max_response_bytes: usize,
    /// Allow `http://` to a non-loopback host. Default false.
    pub allow_insecure_http: bool,
    /// Proxy for token, submit and poll, `http://HOST:PORT`; wins over `HTTPS_PROXY` and
    /// friends and applies to loopback targets too. Default empty: the environment decides.
    pub proxy: String,
    /// Env var holding `user:password` for `proxy` (sent as `Proxy-Authorization: Basic`).
    /// Default empty: no credentials.
    pub proxy_auth_env: String,
    /// PEM file of extra CA certificates to trust, on top of the bundled web PKI roots and
    /// the system store (for TLS-inspecting proxies and private CAs). Default empty.
    pub ca_file: String,
    /// A literal secret: refused by validation, present only to say so clearly.
    #[serde(skip_serializing)]
    pub client_secret: Option<toml::Value>,
}

impl Default for CxoneConfig {
    fn default() -> Self {
        CxoneConfig {
            base_url: "https://api.nicecxone.com".into(),
            token_url: String::new(),
            client_id: String::new(),
            client_secret_env: "CXONE_CLIENT_SECRET".into(),
            client_secret_file: None,
            scopes: vec!["data:actions:write".into(), "data:actions:read".into()],
            submit_path: "/api/v2/data/actions".into(),
            poll_path: "/api/v2/data/actions/{id}".into(),
            request_timeout: Duration::from_secs(15),
            token_refresh_skew: Duration::from_secs(60),
            max_connections: 256,
            max_response_bytes: 1_048_576,
            allow_insecure_http: false,
            proxy: String::new(),
            proxy_auth_env: String::new(),
            ca_file: String::new(),
            client_secret: None,
        }
    }
}

impl CxoneConfig {
    /// True when the embedded simulator plays CXone.
    pub fn uses_simulator(&self) -> bool {
        self.base_url == SIMULATOR
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Actions between first submit and outcome, all batches together. Default 1000.
    pub max_in_flight: usize,
    /// One token bucket for every CXone request; 0 = unlimited. Default 0.
    pub requests_per_second: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_in_flight: 1000,
            requests_per_second: 0,
        }
    }
}

/// `[poll]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollConfig {
    /// Submit -> first poll. Default `1s`.
    #[serde(with = "duration")]
    pub initial_delay: Duration,
    /// Between polls. Default `5s`.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Growth of the interval per poll; > 1.0 slows long-running actions. Default 1.0.
    pub backoff_factor: f64,
    /// Cap of the grown interval. Default `60s`.
    #[serde(with = "duration")]
    pub max_interval: Duration,
    /// First submit -> outcome; past it: dead letter `POLL_TIMEOUT`. Default `1h`.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            initial_delay: Duration::from_secs(1),
            interval: Duration::from_secs(5),
            backoff_factor: 1.0,
            max_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(3600),
        }
    }
}

/// `[retry]`: one budget per action for transient errors, 429s and RETRY resubmissions.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries per action. Default 5.
    pub max_retries: u32,
    /// Base of the exponential backoff. Default `2s`.
    #[serde(with = "duration")]
    pub base_delay: Duration,
    /// Growth per retry. Default 2.0.
    pub backoff_factor: f64,
    /// Cap of one backoff. Default `30s`.
    #[serde(with = "duration")]
    pub max_delay: Duration,
    /// Jitter mode. Default `full`.
    pub jitter: Jitter,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 5,
            base_delay: Duration::from_secs(2),
            backoff_factor: 2.0,
            max_delay: Duration::from_secs(30),
            jitter: Jitter::Full,
        }
    }
}

/// How a backoff delay is randomised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// Uniform in `[0, d]`.
    #[default]
    Full,
    /// `d/2 + uniform[0, d/2]`.
    Equal,
    /// Exactly `d`.
    None,
}

/// What to do about a failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Directive {
    /// Resubmit as a new attempt after a backoff.
    Retry,
    /// Compensate with the batch's `rollback_action`.
    Rollback,
    /// Give up and route to the dead-letter webhook.
    #[default]
    DeadLetter,
}

impl Directive {
    /// As written in the file and the audit log: `RETRY`, `ROLLBACK`, `DEAD_LETTER`.
    pub fn as_str(self) -> &'static str {
        match self {
            Directive::Retry => "RETRY",
            Directive::Rollback => "ROLLBACK",
            Directive::DeadLetter => "DEAD_LETTER",
        }
    }
}

impl fmt::Display for Directive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[classifier]`: error codes (a trailing `*` matches a prefix) -> directive.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifierConfig {
    /// Codes that are retried.
    pub retry: Vec<String>,
    /// Codes that are compensated.
    pub rollback: Vec<String>,
    /// Directive for every other code. Default `DEAD_LETTER`.
    pub default: Directive,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            retry: vec!["TIMEOUT".into(), "SERVICE_UNAVAILABLE".into(), "CONFLICT".into()],
            rollback: Vec::new(),
            default: Directive::DeadLetter,
        }
    }
}

/// `[supervisor]`: how often a poller may crash before its action is dead-lettered.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorConfig {
    /// Restarts per action inside `restart_window`; one more: `POLLER_CRASH_LOOP`. Default 5.
    pub max_restarts: u32,
    /// Window of the restart count. Default `60s`.
    #[serde(with = "duration")]
    pub restart_window: Duration,
    /// First restart delay, doubling inside the window up to 10s. Default `100ms`.
    #[serde(with = "duration")]
    pub restart_backoff: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            max_restarts: 5,
            restart_window: Duration::from_secs(60),
            restart_backoff: Duration::from_millis(100),
        }
    }
}

/// `[dead_letter]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    /// Where dead letters are POSTed: `""` (default): stored and listed only;
    /// `"simulator"`: the embedded simulator's `/sim/webhook`; else an http(s) URL.
    pub webhook_url: WebhookTarget,
    /// Env var holding the HMAC key; empty: unsigned.
    pub signing_secret_env: String,
    /// Timeout of one delivery. Default `10s`.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Cap of the redelivery backoff (1s doubling). Default `5m`.
    #[serde(with = "duration")]
    pub redelivery_max_delay: Duration,
    /// How long `run --once` waits for undelivered dead letters. Default `30s`.
    #[serde(with = "duration")]
    pub drain_timeout: Duration,
    /// Proxy for the webhook, `http://HOST:PORT`; wins over `HTTPS_PROXY` and friends and
    /// applies to loopback targets too. Default empty: the environment decides.
    pub proxy: String,
    /// Env var holding `user:password` for `proxy`. Default empty: no credentials.
    pub proxy_auth_env: String,
    /// PEM file of extra CA certificates to trust for the webhook. Default empty.
    pub ca_file: String,
    /// A literal signing secret: refused.
    #[serde(skip_serializing)]
    pub signing_secret: Option<toml::Value>,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            webhook_url: WebhookTarget::None,
            signing_secret_env: String::new(),
            timeout: Duration::from_secs(10),
            redelivery_max_delay: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(30),
            proxy: String::new(),
            proxy_auth_env: String::new(),
            ca_file: String::new(),
            signing_secret: None,
        }
    }
}

/// Where dead letters go, parsed once from `dead_letter.webhook_url`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum WebhookTarget {
    /// `""`: letters are stored and listed, not sent.
    #[default]
    None,
    /// `"simulator"`: the embedded simulator's `/sim/webhook`.
    Simulator,
    /// An http(s) URL.
    Url(url::Url),
}

impl WebhookTarget {
    /// True when letters are sent somewhere (then an unsent one is "pending").
    pub fn is_set(&self) -> bool {
        !matches!(self, WebhookTarget::None)
    }
}

/// A `webhook_url` that is neither empty, `"simulator"` nor a URL.
#[derive(Debug, thiserror::Error)]
#[error("expected an http(s) URL, \"simulator\" or \"\", found {text:?} ({source})")]
pub struct InvalidWebhookUrl {
    text: String,
    source: url::ParseError,
}

impl TryFrom<String> for WebhookTarget {
    type Error = InvalidWebhookUrl;

    fn try_from(text: String) -> Result<Self, InvalidWebhookUrl> {
        match text.as_str() {
            "" => Ok(WebhookTarget::None),
            SIMULATOR => Ok(WebhookTarget::Simulator),
            url => url::Url::parse(url)
                .map(WebhookTarget::Url)
                .map_err(|source| InvalidWebhookUrl { text, source }),
        }
    }
}

impl From<WebhookTarget> for String {
    fn from(target: WebhookTarget) -> String {
        match target {
            WebhookTarget::None => String::new(),
            WebhookTarget::Simulator => SIMULATOR.into(),
            WebhookTarget::Url(url) => url.into(),
        }
    }
}

/// `[audit]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// JSON Lines file. Default `audit.jsonl`.
    pub path: PathBuf,
    /// Sync each group of records to disk. Default true.
    pub fsync: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            path: "audit.jsonl".into(),
            fsync: true,
        }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Listen address; `""` disables the admin server. Default `127.0.0.1:9464`.
    #[serde(with = "optional")]
    pub listen: Option<SocketAddr>,
    /// Env var with the admin token: the bearer token of the API's POST endpoints and
    /// the console's login. Default `""`: none (replay over the API is refused and the
    /// console is read-only, served only on a loopback `listen`).
    pub token_env: String,
    /// Let the console be read without the token (changing anything still needs it);
    /// allowed only on a loopback `listen`. Default false.
    pub ui_read_only: bool,
    /// A literal admin token: refused.
    #[serde(skip_serializing)]
    pub token: Option<toml::Value>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            token_env: String::new(),
            ui_read_only: false,
            token: None,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`. Default `text`.
    pub format: LogFormat,
    /// Filter directive; `RUST_LOG` overrides. Default `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// `[shutdown]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Grace period for in-flight requests. Default `10s`.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            timeout: Duration::from_secs(10),
        }
    }
}

/// `[chaos]`: fault injection, off unless enabled.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChaosConfig {
    /// Master switch. Default false.
    pub enabled: bool,
    /// Probability that a poller panics on a message it handles. Default 0.0.
    pub poller_panic_probability: f64,
    /// Probability that a singleton actor (token, classifier, dead-letter, audit) panics
    /// on a message it handles. Default 0.0.
    pub singleton_panic_probability: f64,
    /// Which singletons `singleton_panic_probability` applies to: any of `token`,
    /// `classifier`, `dead_letter`, `audit` (a drill on one actor). Default: all four.
    pub singleton_panic_actors: Vec<Singleton>,
    /// Seed of the pollers' random draws (chaos panics and backoff jitter), so a failing
    /// drill can be replayed. Default: drawn from the OS at start and logged as `chaos_seed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            enabled: false,
            poller_panic_probability: 0.0,
            singleton_panic_probability: 0.0,
            singleton_panic_actors: Singleton::ALL.to_vec(),
            seed: None,
        }
    }
}

impl ChaosConfig {
    /// The seed of this run: the configured one, else a fresh draw from the OS.
    pub fn rng_seed(&self) -> u64 {
        self.seed.unwrap_or_else(rand::random)
    }

    /// The panic probability of `actor` per message: 0 unless chaos is enabled and the
    /// actor is one of `singleton_panic_actors`.
    pub fn singleton_probability(&self, actor: Singleton) -> f64 {
        if self.enabled && self.singleton_panic_actors.contains(&actor) {
            self.singleton_panic_probability
        } else {
            0.0
        }
    }
}

/// The singleton actors, by the names used in `[chaos]` and in the `actor` label of
/// `actionwarden_actor_restarts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Singleton {
    /// The `TokenActor`.
    Token,
    /// The `ClassifierActor`.
    Classifier,
    /// The `DeadLetterActor`.
    DeadLetter,
    /// The `AuditActor`.
    Audit,
}

impl Singleton {
    /// All four.
    pub const ALL: [Singleton; 4] = [
        Singleton::Token,
        Singleton::Classifier,
        Singleton::DeadLetter,
        Singleton::Audit,
    ];

    /// The name in the configuration and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Singleton::Token => "token",
            Singleton::Classifier => "classifier",
            Singleton::DeadLetter => "dead_letter",
            Singleton::Audit => "audit",
        }
    }

    /// A distinct number per actor, mixed into the chaos seed so each draws its own
    /// replayable sequence.
    pub fn salt(self) -> u64 {
        match self {
            Singleton::Token => 0x746f_6b65_6e00_0001,
            Singleton::Classifier => 0x636c_6173_7300_0002,
            Singleton::DeadLetter => 0x6465_6164_6c00_0003,
            Singleton::Audit => 0x6175_6469_7400_0004,
        }
    }
}

impl fmt::Display for Singleton {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[[batch]]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Unique name, `[A-Za-z0-9_.-]+`.
    pub name: String,
    /// Per-batch in-flight limit; 0: only the global one applies.
    pub max_in_flight: usize,
    /// Optional JSON Lines file of actions, relative to the config file.
    pub actions_file: String,
    /// Compensation template (docs/cxone.md, Rollback and compensation); empty: none.
    pub rollback_action: toml::Table,
    /// Inline actions.
    #[serde(rename = "action", skip_serializing)]
    pub actions: Vec<toml::Table>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_chaos_seed_is_used_and_an_absent_one_is_drawn() {
        let seeded: Config = toml::from_str("[chaos]\nseed = 7\n").unwrap();
        assert_eq!(seeded.chaos.rng_seed(), 7);
        let unseeded = Config::default();
        assert!(unseeded.chaos.seed.is_none());
        let draws: std::collections::HashSet<u64> = (0..4).map(|_| unseeded.chaos.rng_seed()).collect();
        assert!(draws.len() > 1, "fresh seeds differ: {draws:?}");
        assert!(
            !toml::to_string(&unseeded.chaos).unwrap().contains("seed"),
            "an absent seed is not printed"
        );
    }

    #[test]
    fn singleton_chaos_applies_only_when_enabled_and_to_the_named_actors() {
        let all: Config = toml::from_str("[chaos]\nenabled = true\nsingleton_panic_probability = 0.5\n").unwrap();
        for actor in Singleton::ALL {
            assert_eq!(all.chaos.singleton_probability(actor), 0.5, "{actor}");
        }
        let one: Config = toml::from_str(
            "[chaos]\nenabled = true\nsingleton_panic_probability = 1.0\nsingleton_panic_actors = [\"dead_letter\"]\n",
        )
        .unwrap();
        assert_eq!(one.chaos.singleton_probability(Singleton::DeadLetter), 1.0);
        assert_eq!(one.chaos.singleton_probability(Singleton::Audit), 0.0);
        let off: Config = toml::from_str("[chaos]\nsingleton_panic_probability = 1.0\n").unwrap();
        assert_eq!(off.chaos.singleton_probability(Singleton::Token), 0.0);
        assert!(toml::from_str::<Config>("[chaos]\nsingleton_panic_actors = [\"poller\"]\n").is_err());
        let salts: std::collections::HashSet<u64> = Singleton::ALL.iter().map(|s| s.salt()).collect();
        assert_eq!(salts.len(), 4);
    }
}
