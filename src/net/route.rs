//! Which way a request leaves: the proxy environment variables and the route of one
//! target. Pure decisions, taken per connection; connector.rs acts on them.
//!
//! A config key (`cxone.proxy`, `dead_letter.proxy`) wins over the environment and applies
//! to every target of its table, loopback included. Environment proxies follow the usual
//! conventions: `HTTPS_PROXY` for https targets, `HTTP_PROXY` for http ones, `ALL_PROXY`
//! as a fallback for both, the lowercase spelling before the uppercase one, and `NO_PROXY`
//! for exemptions. They never apply to loopback targets (the embedded simulator, local
//! receivers): a corporate proxy cannot reach them anyway.

use std::fmt;
use std::net::IpAddr;

use super::no_proxy::{normalise, NoProxy};
use super::proxy::{Proxy, ProxyUrlError};
use crate::config::Secret;

/// An environment variable that holds an unusable proxy URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var}: {source}")]
pub struct EnvProxyError {
    /// The variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub source: ProxyUrlError,
}

/// A proxy and the variable it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EnvProxy {
    proxy: Proxy,
    var: &'static str,
}

/// The proxy environment variables, read once at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvProxies {
    https: Option<EnvProxy>,
    http: Option<EnvProxy>,
    all: Option<EnvProxy>,
    no_proxy: NoProxy,
    no_proxy_var: &'static str,
}

impl EnvProxies {
    /// Reads the process environment.
    pub fn from_env() -> Result<EnvProxies, EnvProxyError> {
        EnvProxies::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `get` (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<EnvProxies, EnvProxyError> {
        let first = |names: [&'static str; 2]| {
            names
                .into_iter()
                .find_map(|name| get(name).filter(|v| !v.trim().is_empty()).map(|v| (name, v)))
        };
        let proxy = |names| match first(names) {
            None => Ok(None),
            Some((var, value)) => Proxy::parse(&value)
                .map(|proxy| Some(EnvProxy { proxy, var }))
                .map_err(|source| EnvProxyError { var, source }),
        };
        let (no_proxy_var, no_proxy) = match first(["no_proxy", "NO_PROXY"]) {
            Some((var, list)) => (var, NoProxy::parse(&list)),
            None => ("NO_PROXY", NoProxy::default()),
        };
        Ok(EnvProxies {
            https: proxy(["https_proxy", "HTTPS_PROXY"])?,
            http: proxy(["http_proxy", "HTTP_PROXY"])?,
            all: proxy(["all_proxy", "ALL_PROXY"])?,
            no_proxy,
            no_proxy_var,
        })
    }
}

/// How one table's requests pick their way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPolicy {
    /// The table's own proxy key, when set: wins over the environment.
    configured: Option<Proxy>,
    /// The table, named in routes (`cxone`, `dead_letter`).
    table: &'static str,
    env: EnvProxies,
}

impl ProxyPolicy {
    /// The policy of `table`, with its configured proxy (if any) and the environment.
    pub fn new(table: &'static str, configured: Option<Proxy>, env: EnvProxies) -> ProxyPolicy {
        ProxyPolicy { configured, table, env }
    }

    /// The same policy, sending `authorization` to the configured proxy.
    pub fn with_credentials(mut self, authorization: Secret) -> ProxyPolicy {
        if let Some(proxy) = &mut self.configured {
            proxy.authorization = Some(authorization);
        }
        self
    }

    /// The route to `scheme://host:port`.
    pub fn route(&self, scheme: &str, host: &str, port: u16) -> Route {
        if let Some(proxy) = &self.configured {
            return Route::Proxy {
                proxy: proxy.clone(),
                source: Source::Config(self.table),
            };
        }
        if is_loopback(host) {
            return Route::Direct(Direct::Loopback);
        }
        let chosen = match scheme {
            "https" => self.env.https.as_ref(),
            _ => self.env.http.as_ref(),
        }
        .or(self.env.all.as_ref());
        let Some(chosen) = chosen else {
            return Route::Direct(Direct::NoProxy);
        };
        if let Some(entry) = self.env.no_proxy.matching(host, port) {
            return Route::Direct(Direct::Exempt {
                var: self.env.no_proxy_var,
                entry: entry.to_owned(),
            });
        }
        Route::Proxy {
            proxy: chosen.proxy.clone(),
            source: Source::Env(chosen.var),
        }
    }
}

/// The way to one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A direct connection, and why.
    Direct(Direct),
    /// Through a proxy: `CONNECT` for https, absolute-form requests for http.
    Proxy {
        /// The proxy.
        proxy: Proxy,
        /// Where it was configured.
        source: Source,
    },
}

/// Why a connection goes direct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direct {
    /// No proxy is configured for this kind of target.
    NoProxy,
    /// Loopback targets never take an environment proxy.
    Loopback,
    /// A `NO_PROXY` entry exempts the target.
    Exempt {
        /// `NO_PROXY` or `no_proxy`.
        var: &'static str,
        /// The entry that matched.
        entry: String,
    },
}

/// Where a proxy was configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The `proxy` key of this table.
    Config(&'static str),
    /// An environment variable.
    Env(&'static str),
}

/// As `check` prints it: never credentials.
impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Direct(Direct::NoProxy) => f.write_str("direct (no proxy configured)"),
            Route::Direct(Direct::Loopback) => f.write_str("direct (loopback target)"),
            Route::Direct(Direct::Exempt { var, entry }) => write!(f, "direct ({var} entry {entry:?})"),
            Route::Proxy {
                proxy,
                source: Source::Config(table),
            } => write!(f, "through proxy {proxy} ({table}.proxy)"),
            Route::Proxy {
                proxy,
                source: Source::Env(var),
            } => write!(f, "through proxy {proxy} ({var})"),
        }
    }
}

/// `localhost`, 127.0.0.0/8 and ::1 (also as IPv4-mapped addresses).
pub fn is_loopback(host: &str) -> bool {
    let host = normalise(host);
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> EnvProxies {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        EnvProxies::from_lookup(|name| map.get(name).cloned()).unwrap()
    }

    #[test]
    fn environment_routes_by_scheme_with_fallback_and_lowercase_first() {
        let policy = ProxyPolicy::new(
            "cxone",
            None,
            env(&[
                ("HTTPS_PROXY", "http://upper:1"),
                ("https_proxy", "http://lower:2"),
                ("ALL_PROXY", "http://all:3"),
            ]),
        );
        let via = |scheme, host| match policy.route(scheme, host, 443) {
            Route::Proxy { proxy, source } => format!("{} {source:?}", proxy.authority()),
            Route::Direct(why) => format!("direct {why:?}"),
        };
        assert_eq!(via("https", "api.nicecxone.com"), "lower:2 Env(\"https_proxy\")");
        assert_eq!(via("http", "hooks.corp"), "all:3 Env(\"ALL_PROXY\")");
        assert_eq!(via("https", "127.0.0.1"), "direct Loopback");
        assert_eq!(via("https", "[::1]"), "direct Loopback");
        assert_eq!(via("https", "LOCALHOST"), "direct Loopback");
        let none = ProxyPolicy::new("cxone", None, EnvProxies::default());
        assert_eq!(
            none.route("https", "api.nicecxone.com", 443),
            Route::Direct(Direct::NoProxy)
        );
    }

    #[test]
    fn no_proxy_exempts_and_a_configured_proxy_wins_everywhere() {
        let vars = env(&[("HTTPS_PROXY", "http://p:1"), ("no_proxy", ".corp,10.0.0.0/8")]);
        let policy = ProxyPolicy::new("dead_letter", None, vars.clone());
        assert_eq!(
            policy.route("https", "hooks.corp", 443),
            Route::Direct(Direct::Exempt {
                var: "no_proxy",
                entry: ".corp".into()
            })
        );
        assert!(matches!(
            policy.route("https", "10.2.3.4", 443),
            Route::Direct(Direct::Exempt { .. })
        ));
        assert!(matches!(
            policy.route("https", "api.nicecxone.com", 443),
            Route::Proxy { .. }
        ));

        let configured = Proxy::parse("http://explicit:8080").unwrap();
        let policy = ProxyPolicy::new("dead_letter", Some(configured), vars);
        for host in ["hooks.corp", "127.0.0.1", "api.nicecxone.com"] {
            let route = policy.route("http", host, 80);
            assert_eq!(
                route.to_string(),
                "through proxy http://explicit:8080 (dead_letter.proxy)",
                "{host}"
            );
        }
    }

    #[test]
    fn loopback_covers_the_whole_block_and_mapped_addresses() {
        for host in [
            "127.0.0.1",
            "127.9.8.7",
            "::1",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "localhost.",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["10.0.0.1", "0.0.0.0", "localhost.example.com", "api.nicecxone.com"] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
