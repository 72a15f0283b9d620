//! Who the daemon talks to and with which secrets: the CXone base URL and credentials
//! (or the embedded simulator and its own), the webhook URL and signing key, the admin
//! token. Everything here is resolved once at start; a missing secret stops the start
//! with a clear error before anything is contacted.

use std::path::PathBuf;

use crate::actors::token::SecretSource;
use crate::config::{Config, Secret, SecretError, WebhookTarget};
use crate::error::Error;
use crate::simulator::{self, RunningSimulator};

/// The resolved endpoints and secrets.
pub struct Credentials {
    /// The CXone base URL (the embedded simulator's real address in embedded mode).
    pub base_url: String,
    /// OAuth2 client id.
    pub client_id: String,
    /// Where the client secret comes from.
    pub secret: SecretSource,
    /// The dead-letter webhook; `None`: letters are stored only.
    pub webhook_url: Option<String>,
    /// HMAC key of webhook signatures.
    pub signing_key: Option<Secret>,
    /// Bearer token of the admin API's POST endpoints.
    pub admin_token: Option<Secret>,
    /// The embedded simulator, when it plays CXone.
    pub simulator: Option<RunningSimulator>,
}

/// Resolves everything; starts the embedded simulator when `cxone.base_url = "simulator"`
/// and none was handed in (`given`, for in-process tests).
pub async fn resolve(cfg: &Config, given: Option<RunningSimulator>) -> Result<Credentials, Error> {
    let (base_url, client_id, secret, simulator) = if cfg.cxone.uses_simulator() {
        let running = match given {
            Some(running) => running,
            None => simulator::start("127.0.0.1:0", cfg.simulator.clone()).await?,
        };
        let url = running.base_url();
        tracing::info!(url = %url, profile = ?cfg.simulator.profile, "Embedded simulator listening.");
        let secret = if cfg.simulator.client_secret_env.is_empty() {
            Secret::new(simulator::DEFAULT_CLIENT_SECRET)
        } else {
            Secret::from_env(&cfg.simulator.client_secret_env).map_err(secret_error("simulator.client_secret_env"))?
        };
        let id = if cfg.simulator.client_id.is_empty() {
            simulator::DEFAULT_CLIENT_ID.to_owned()
        } else {
            cfg.simulator.client_id.clone()
        };
        (url, id, SecretSource::Fixed(secret), Some(running))
    } else {
        let id = if cfg.cxone.client_id.is_empty() {
            std::env::var("CXONE_CLIENT_ID").map_err(|_| Error::MissingClientId)?
        } else {
            cfg.cxone.client_id.clone()
        };
        (cfg.cxone.base_url.clone(), id, client_secret(cfg)?, None)
    };
    let webhook_url = match &cfg.dead_letter.webhook_url {
        WebhookTarget::None => None,
        WebhookTarget::Simulator => Some(format!("{base_url}/sim/webhook")),
        WebhookTarget::Url(url) => Some(url.to_string()),
    };
    Ok(Credentials {
        base_url,
        client_id,
        secret,
        webhook_url,
        signing_key: optional_env(&cfg.dead_letter.signing_secret_env, "dead_letter.signing_secret_env")?,
        admin_token: optional_env(&cfg.admin.token_env, "admin.token_env")?,
        simulator,
    })
}

/// The client secret: a file (read again at every token request, so a rotated file is
/// picked up; it must be readable now) or an environment variable.
fn client_secret(cfg: &Config) -> Result<SecretSource, Error> {
    match &cfg.cxone.client_secret_file {
        Some(path) => {
            Secret::from_file(path).map_err(secret_error("cxone.client_secret_file"))?;
            Ok(SecretSource::File(PathBuf::from(path)))
        }
        None => Secret::from_env(&cfg.cxone.client_secret_env)
            .map(SecretSource::Fixed)
            .map_err(secret_error("cxone.client_secret_env")),
    }
}

/// The secret in the env var named by a `*_env` key; `None` when the key is empty.
fn optional_env(name: &str, key: &'static str) -> Result<Option<Secret>, Error> {
    if name.is_empty() {
        return Ok(None);
    }
    Secret::from_env(name).map(Some).map_err(secret_error(key))
}

fn secret_error(key: &'static str) -> impl Fn(SecretError) -> Error {
    move |source| Error::Secret { key, source }
}
