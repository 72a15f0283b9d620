//! How requests leave the host: proxies (environment or config), trusted roots, the
//! `User-Agent`, and the one function that builds an awc client from them, used by the
//! CXone client and the dead-letter webhook alike.
//!
//! awc has no proxy support of its own; it accepts a connector service, and ours
//! (connector.rs) opens the `CONNECT` tunnel or the absolute-form connection there. TLS is
//! then awc's rustls layer with our root store, end to end to the target.

mod absolute;
mod connector;
mod diagnose;
mod no_proxy;
pub mod proxy;
pub mod route;
pub mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use connector::TunnelError;
pub use diagnose::{diagnose, proxy_status, Diagnosis, PROXY_AUTHENTICATION_REQUIRED};
pub use proxy::{Proxy, ProxyUrlError};
pub use route::{EnvProxies, EnvProxyError, ProxyPolicy, Route};
pub use tls::CaFileError;

use crate::config::{Config, Secret};

/// The `User-Agent` of every request (and of every `CONNECT`).
pub const USER_AGENT: &str = concat!("actionwarden/", env!("CARGO_PKG_VERSION"));

/// Why the network settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// `*.proxy` is not a usable proxy URL.
    #[error("{table}.proxy: {source}")]
    ProxyUrl {
        /// `cxone` or `dead_letter`.
        table: &'static str,
        /// Why.
        source: ProxyUrlError,
    },
    /// `*.proxy_auth_env` is unset, empty or not `user:password`.
    #[error("{table}.proxy_auth_env: {message}")]
    Credentials {
        /// `cxone` or `dead_letter`.
        table: &'static str,
        /// Why (never the value).
        message: String,
    },
    /// `*.ca_file` cannot be used.
    #[error("{table}.ca_file: {source}")]
    CaFile {
        /// `cxone` or `dead_letter`.
        table: &'static str,
        /// Why.
        source: CaFileError,
    },
    /// A proxy environment variable holds an unusable URL.
    #[error(transparent)]
    Env(#[from] EnvProxyError),
}

/// The network settings of one config table: proxy policy and TLS configuration.
#[derive(Clone)]
pub struct Egress {
    /// `cxone` or `dead_letter`: named in hints.
    pub table: &'static str,
    /// Which proxy each target takes.
    pub policy: ProxyPolicy,
    /// Trusted roots and protocols.
    pub tls: Arc<rustls::ClientConfig>,
}

/// The settings of a table as written in the config file.
pub struct EgressSettings<'a> {
    /// `cxone` or `dead_letter`.
    pub table: &'static str,
    /// `proxy` key; empty: the environment decides.
    pub proxy: &'a str,
    /// `proxy_auth_env` key; empty: no credentials unless in the environment's URL.
    pub proxy_auth_env: &'a str,
    /// `ca_file` key; empty: none.
    pub ca_file: &'a str,
}

impl<'a> EgressSettings<'a> {
    /// The settings of `[cxone]`.
    pub fn cxone(config: &'a Config) -> Self {
        EgressSettings {
            table: "cxone",
            proxy: &config.cxone.proxy,
            proxy_auth_env: &config.cxone.proxy_auth_env,
            ca_file: &config.cxone.ca_file,
        }
    }

    /// The settings of `[dead_letter]`.
    pub fn dead_letter(config: &'a Config) -> Self {
        EgressSettings {
            table: "dead_letter",
            proxy: &config.dead_letter.proxy,
            proxy_auth_env: &config.dead_letter.proxy_auth_env,
            ca_file: &config.dead_letter.ca_file,
        }
    }

    /// The proxy policy without credentials (what `check` shows).
    pub fn policy(&self, env: &EnvProxies) -> Result<ProxyPolicy, NetError> {
        let configured = match self.proxy.trim() {
            "" => None,
            text => Some(Proxy::parse(text).map_err(|source| NetError::ProxyUrl {
                table: self.table,
                source,
            })?),
        };
        Ok(ProxyPolicy::new(self.table, configured, env.clone()))
    }

    /// The `ca_file` path, when set.
    pub fn ca_path(&self) -> Option<PathBuf> {
        (!self.ca_file.trim().is_empty()).then(|| PathBuf::from(self.ca_file.trim()))
    }

    /// Everything needed to connect: credentials read from the environment, the CA file
    /// read and the TLS configuration built.
    pub fn resolve(&self, env: &EnvProxies) -> Result<Egress, NetError> {
        let mut policy = self.policy(env)?;
        if !self.proxy_auth_env.is_empty() {
            let credentials = self.credentials()?;
            policy = policy.with_credentials(credentials);
        }
        let extra = match self.ca_path() {
            Some(path) => tls::read_ca_file(&path).map_err(|source| NetError::CaFile {
                table: self.table,
                source,
            })?,
            None => Vec::new(),
        };
        Ok(Egress {
            table: self.table,
            policy,
            tls: tls::client_config(&extra),
        })
    }

    fn credentials(&self) -> Result<Secret, NetError> {
        let fail = |message: String| NetError::Credentials {
            table: self.table,
            message,
        };
        let pair = Secret::from_env(self.proxy_auth_env).map_err(|e| fail(e.to_string()))?;
        proxy::authorization_from_pair(pair.expose())
            .ok_or_else(|| fail(format!("{} must hold user:password", self.proxy_auth_env)))
    }
}

/// The network settings of both tables, from the config file and the environment.
pub struct Egresses {
    /// For token, submit and poll.
    pub cxone: Egress,
    /// For the webhook.
    pub dead_letter: Egress,
}

impl Egresses {
    /// Reads the proxy environment once and resolves both tables.
    pub fn from_config(config: &Config) -> Result<Egresses, NetError> {
        let env = EnvProxies::from_env()?;
        Ok(Egresses {
            cxone: EgressSettings::cxone(config).resolve(&env)?,
            dead_letter: EgressSettings::dead_letter(config).resolve(&env)?,
        })
    }
}

/// An awc client for the targets of `egress`: its proxy routes, its trusted roots,
/// `timeout` for connecting, the TLS handshake and each request, at most
/// `max_connections` connections, no redirects, and our `User-Agent`.
pub fn client(egress: &Egress, timeout: Duration, max_connections: usize) -> awc::Client {
    let connector = awc::Connector::new()
        .connector(connector::EgressConnector::new(egress.policy.clone()))
        .rustls_0_23(egress.tls.clone())
        .limit(max_connections)
        .timeout(timeout)
        .handshake_timeout(timeout);
    awc::Client::builder()
        .connector(connector)
        .timeout(timeout)
        .disable_redirects()
        .add_default_header((awc::http::header::USER_AGENT, USER_AGENT))
        .finish()
}

/// `host:port` of a URL (its known default port when none is written), for messages.
pub fn host_port(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            _ => url.to_owned(),
        },
        Err(_) => url.to_owned(),
    }
}

/// The route `policy` gives `url`; `None` when it is not an http(s) URL.
pub fn route_of(policy: &ProxyPolicy, url: &str) -> Option<Route> {
    let url = url::Url::parse(url).ok()?;
    let port = url.port_or_known_default()?;
    Some(policy.route(url.scheme(), url.host_str()?, port))
}

/// The certificates a `ca_file` adds, for `check`.
pub fn count_ca_file(path: &Path) -> Result<usize, CaFileError> {
    tls::read_ca_file(path).map(|certs| certs.len())
}
