//! Proxy URLs (`http://[user:password@]HOST:PORT`) and the `Proxy-Authorization`
//! credentials they carry. Which target takes which proxy is route.rs's.

use std::fmt;

use base64::Engine as _;

use crate::config::Secret;

const DEFAULT_PROXY_PORT: u16 = 80;

/// A forward proxy, spoken to in plain HTTP (`CONNECT` for https targets).
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// Host name or address (IPv6 in brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// The `Proxy-Authorization` value (`Basic ...`), when credentials are known.
    pub authorization: Option<Secret>,
}

impl Proxy {
    /// Parses `[http://][user:password@]host[:port][/]`. A missing scheme means http and
    /// a missing port 80. User and password (percent-decoded) become the
    /// `Proxy-Authorization` header. Errors never quote the text: it may hold a password.
    pub fn parse(text: &str) -> Result<Proxy, ProxyUrlError> {
        let text = text.trim();
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let url = url::Url::parse(&with_scheme).map_err(|_| ProxyUrlError::NotAUrl)?;
        if url.scheme() != "http" {
            return Err(ProxyUrlError::Scheme(url.scheme().to_owned()));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            _ => return Err(ProxyUrlError::NoHost),
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(ProxyUrlError::Path);
        }
        let authorization = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
            Some(basic_authorization(
                &decode(url.username()),
                &decode(url.password().unwrap_or_default()),
            ))
        };
        Ok(Proxy {
            host,
            port: url.port().unwrap_or(DEFAULT_PROXY_PORT),
            authorization,
        })
    }

    /// `host:port`, as named in messages.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// `http://host:port`: never the credentials.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = if self.authorization.is_some() {
            " (with credentials)"
        } else {
            ""
        };
        write!(f, "{self}{auth}")
    }
}

/// Why a proxy URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyUrlError {
    /// Not parseable at all.
    #[error("expected a proxy URL such as http://proxy.example.com:3128")]
    NotAUrl,
    /// `https://`, `socks5://`, ...
    #[error("unsupported proxy scheme {0:?}: only http:// proxies are supported (https targets stay encrypted end to end through CONNECT)")]
    Scheme(String),
    /// No host.
    #[error("the proxy URL has no host")]
    NoHost,
    /// A path (often a PAC file), query or fragment.
    #[error("expected http://HOST:PORT without a path (proxy auto-config files are not supported)")]
    Path,
}

/// The `Proxy-Authorization` value for `user` and `password`.
pub fn basic_authorization(user: &str, password: &str) -> Secret {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    Secret::new(format!("Basic {token}"))
}

/// The `Proxy-Authorization` value for `user:password` as a `proxy_auth_env` variable
/// holds it; `None` when there is no colon.
pub fn authorization_from_pair(pair: &str) -> Option<Secret> {
    let (user, password) = pair.split_once(':')?;
    Some(basic_authorization(user, password))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::route::EnvProxies;

    #[test]
    fn parses_proxy_urls_with_and_without_scheme_port_and_credentials() {
        let p = Proxy::parse("http://proxy.corp:3128").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.authorization.is_none()),
            ("proxy.corp", 3128, true)
        );
        assert_eq!(Proxy::parse("proxy.corp:8080").unwrap().port, 8080);
        assert_eq!(Proxy::parse("http://proxy.corp/").unwrap().port, DEFAULT_PROXY_PORT);
        assert_eq!(Proxy::parse("http://[::1]:3128").unwrap().authority(), "[::1]:3128");
        let p = Proxy::parse("http://j%40doe:p%3Ass@10.0.0.1:3128").unwrap();
        assert_eq!(p.authorization, Some(basic_authorization("j@doe", "p:ss")));
        assert_eq!(p.to_string(), "http://10.0.0.1:3128", "Display never shows credentials");
        assert_eq!(format!("{p:?}"), "http://10.0.0.1:3128 (with credentials)");
    }

    #[test]
    fn refuses_unusable_proxy_urls_without_quoting_them() {
        assert_eq!(
            Proxy::parse("socks5://u:secret@h:1080"),
            Err(ProxyUrlError::Scheme("socks5".into()))
        );
        assert_eq!(
            Proxy::parse("https://h:443"),
            Err(ProxyUrlError::Scheme("https".into()))
        );
        assert_eq!(Proxy::parse("http://h:3128/proxy.pac"), Err(ProxyUrlError::Path));
        assert_eq!(Proxy::parse("http://:3128"), Err(ProxyUrlError::NotAUrl));
        let error = EnvProxies::from_lookup(|n| (n == "HTTPS_PROXY").then(|| "ftp://u:hunter2@h".into())).unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(
            error.to_string().starts_with("environment variable HTTPS_PROXY"),
            "{error}"
        );
    }

    #[test]
    fn builds_basic_proxy_authorization_headers() {
        // The example of RFC 7617.
        assert_eq!(
            basic_authorization("Aladdin", "open sesame").expose(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(
            authorization_from_pair("user:pa:ss").unwrap(),
            basic_authorization("user", "pa:ss")
        );
        assert!(authorization_from_pair("no-colon").is_none());
    }
}
