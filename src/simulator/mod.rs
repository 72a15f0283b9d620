//! The CXone simulator: an actix-web server on loopback that plays NICE CXone for demos,
//! tests and benchmarks (docs/simulator.md). Settings and `start` live here; the
//! endpoints in routes.rs, their decisions in state.rs and actions.rs, and each action's
//! fate in fate.rs.
//!
//! Shared state sits behind one `std::sync::Mutex`: every request takes it once, decides
//! its whole answer inside, and releases it before any simulated latency, so the lock is
//! held for microseconds and the server stays correct with any number of workers.

mod actions;
mod dice;
mod fate;
mod knobs;
mod reply;
mod routes;
mod state;

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use serde::{Deserialize, Serialize};

/// Client secret accepted when `client_secret_env` is empty.
pub const DEFAULT_CLIENT_SECRET: &str = "simulator-secret";

/// Client id accepted by default.
pub const DEFAULT_CLIENT_ID: &str = "simulator";

/// Connections the simulator accepts at once; benchmarks open many.
const MAX_CONNECTIONS: usize = 25_000;

/// Listen backlog, so connection bursts from benchmarks are not refused.
const BACKLOG: u32 = 4096;

/// The `[simulator]` table of the daemon config and the knobs of `actionwarden simulate`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorSettings {
    /// Fault and outcome profile: `demo` (default), `clean` or `chaos`.
    pub profile: Profile,
    /// Seed of the random draws. One seed gives one story on every run, whatever order the
    /// requests arrive in: each action's drawn outcome, duration and header-only answer,
    /// and the faults on each attempt's submits and on the polls that answer it once it
    /// has finished (polls of a running attempt are never faulted). Latency is not fixed.
    /// Default 42.
    pub seed: u64,
    /// Client id the token endpoint accepts. Default `"simulator"`.
    pub client_id: String,
    /// Env var holding the accepted client secret; empty: `"simulator-secret"`.
    pub client_secret_env: String,
    /// Lifetime of issued tokens. Default `"1h"`.
    #[serde(with = "crate::config::duration")]
    pub token_ttl: Duration,
    /// Share of submits answered with only `X-Action-Id`; unset: the profile's rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_only_rate: Option<f64>,
    /// Share of API requests answered 429; unset: the profile's rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_rate: Option<f64>,
    /// Form of `Retry-After` on 429s: `seconds` (default), `http_date`, `mixed` or `none`.
    pub retry_after_form: RetryAfterForm,
    /// Seconds announced by `Retry-After`. Default 1.
    pub retry_after_secs: u64,
    /// Share of API requests answered 503; unset: the profile's rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_error_rate: Option<f64>,
    /// Delay added to every API response; unset: the profile's (0, or 0–50ms in `chaos`).
    #[serde(with = "crate::config::duration::optional", skip_serializing_if = "Option::is_none")]
    pub latency: Option<Duration>,
    /// Delay before the token endpoint answers (a slow identity provider). Default 0.
    #[serde(with = "crate::config::duration")]
    pub token_latency: Duration,
    /// Share of polls answered 200 with a non-JSON body; unset: the profile's rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub malformed_rate: Option<f64>,
    /// Share of API requests whose connection is dropped unanswered; unset: the profile's rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_rate: Option<f64>,
    /// Share of tokens rejected (401) after half their lifetime; unset: the profile's rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_expiry_rate: Option<f64>,
    /// Env var holding the webhook HMAC key; empty: signatures are not checked.
    pub webhook_secret_env: String,
    /// The first N webhook POSTs are answered 503 (redelivery tests). Default 0.
    pub webhook_fail_first: u32,
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        SimulatorSettings {
            profile: Profile::Demo,
            seed: 42,
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret_env: String::new(),
            token_ttl: Duration::from_secs(3600),
            header_only_rate: None,
            rate_limit_rate: None,
            retry_after_form: RetryAfterForm::Seconds,
            retry_after_secs: 1,
            server_error_rate: None,
            latency: None,
            token_latency: Duration::ZERO,
            malformed_rate: None,
            drop_rate: None,
            early_expiry_rate: None,
            webhook_secret_env: String::new(),
            webhook_fail_first: 0,
        }
    }
}

/// Which outcomes and faults the simulator draws for actions without a `sim` directive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Mostly completed; some transient and permanent failures, a few cancelled, some 429s.
    #[default]
    Demo,
    /// Everything completes at once, no faults: for benchmarks.
    Clean,
    /// Every fault at a high rate.
    Chaos,
}

/// How a 429 announces when to come back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum RetryAfterForm {
    /// `Retry-After: 1`.
    #[default]
    Seconds,
    /// `Retry-After: <HTTP-date>`.
    HttpDate,
    /// Either form, drawn per response.
    Mixed,
    /// No `Retry-After` header.
    None,
}

/// A simulator serving on loopback.
#[derive(Debug, Clone)]
pub struct RunningSimulator {
    /// The bound address (the real port when asked for port 0).
    pub addr: SocketAddr,
    /// Stops the server: `handle.stop(true).await`.
    pub handle: ServerHandle,
}

impl RunningSimulator {
    /// `http://IP:PORT`, the `base_url` to give the daemon.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Why the simulator did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A secret its settings name cannot be read (a configuration error).
    #[error("simulator.{key}: environment variable {var} is {problem}")]
    Secret {
        /// The setting naming the variable.
        key: &'static str,
        /// The variable.
        var: String,
        /// `not set` or `empty`.
        problem: &'static str,
    },
    /// The listener cannot be bound.
    #[error("cannot start the simulator: {0}")]
    Bind(#[from] std::io::Error),
}

/// Binds `listen` (e.g. `"127.0.0.1:0"`), spawns the server on the current actix System
/// and returns once bound.
pub async fn start(listen: &str, settings: SimulatorSettings) -> Result<RunningSimulator, StartError> {
    let client_secret = read_env_secret(&settings.client_secret_env, "client_secret_env")?
        .unwrap_or_else(|| DEFAULT_CLIENT_SECRET.into());
    let webhook_key = read_env_secret(&settings.webhook_secret_env, "webhook_secret_env")?;
    let shared = web::Data::new(state::Shared::new(
        &settings,
        client_secret,
        webhook_key.map(String::into_bytes),
    ));
    let server = HttpServer::new(move || App::new().app_data(shared.clone()).configure(routes::configure))
        .workers(1)
        .disable_signals()
        .max_connections(MAX_CONNECTIONS)
        .backlog(BACKLOG)
        .bind(listen)?;
    let addr = server.addrs().first().copied().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("simulator: {listen} resolved to no address"),
        )
    })?;
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    tracing::info!(%addr, profile = ?settings.profile, seed = settings.seed, "CXone simulator listening.");
    Ok(RunningSimulator { addr, handle })
}

/// Reads the secret named by a `*_env` setting; `None` when the setting is empty.
fn read_env_secret(var: &str, key: &'static str) -> Result<Option<String>, StartError> {
    if var.is_empty() {
        return Ok(None);
    }
    let problem = match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => return Ok(Some(value.trim().to_owned())),
        Ok(_) => "empty",
        Err(_) => "not set",
    };
    Err(StartError::Secret {
        key,
        var: var.to_owned(),
        problem,
    })
}
