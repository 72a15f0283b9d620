//! The connector awc calls for every new connection: straight to the target, or to a
//! proxy, where an https target gets a `CONNECT` tunnel (awc then runs TLS end to end
//! through it, verifying the target's name) and an http target gets absolute-form
//! requests (absolute.rs).
//!
//! Failures reach awc as `ConnectError::Io` wrapping a `TunnelError`, so diagnose.rs can
//! tell a proxy that demands credentials from one that is merely unreachable.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_rt::net::{ActixStream, Ready, TcpStream};
use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, ConnectorService};
use awc::http::Uri;
use futures_util::future::LocalBoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::absolute::AbsoluteForm;
use super::proxy::Proxy;
use super::route::{ProxyPolicy, Route};
use super::USER_AGENT;
use crate::config::Secret;

/// Largest `CONNECT` response head read from a proxy.
const MAX_CONNECT_RESPONSE: usize = 16 * 1024;

/// Why a connection through a proxy could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The proxy itself could not be reached.
    #[error("cannot reach proxy {proxy}: {message}")]
    Unreachable {
        /// `host:port` of the proxy.
        proxy: String,
        /// Why.
        message: String,
    },
    /// The proxy answered `CONNECT` with a non-2xx status.
    #[error("proxy {proxy} refused CONNECT to {target}: {status} {reason}")]
    Refused {
        /// `host:port` of the proxy.
        proxy: String,
        /// `host:port` of the target.
        target: String,
        /// The status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The proxy's answer was not HTTP, too long, or cut short.
    #[error("proxy {proxy} failed during CONNECT to {target}: {message}")]
    Broken {
        /// `host:port` of the proxy.
        proxy: String,
        /// `host:port` of the target.
        target: String,
        /// What went wrong.
        message: String,
    },
}

/// What awc reads and writes: a TCP stream (direct, or a tunnel through a proxy), or a
/// connection to a proxy in absolute-form mode.
#[derive(Debug)]
pub enum EgressStream {
    /// Direct, or a `CONNECT` tunnel.
    Tcp(TcpStream),
    /// Plain http through a proxy.
    Absolute(AbsoluteForm),
}

/// The awc connector service of one table.
#[derive(Clone)]
pub struct EgressConnector {
    policy: Rc<ProxyPolicy>,
    tcp: ConnectorService,
}

impl EgressConnector {
    /// A connector following `policy`.
    pub fn new(policy: ProxyPolicy) -> Self {
        EgressConnector {
            policy: Rc::new(policy),
            tcp: ConnectorService::default(),
        }
    }
}

impl Service<ConnectInfo<Uri>> for EgressConnector {
    type Response = Connection<Uri, EgressStream>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, ConnectError>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let uri = req.request().clone();
        let host = req.hostname().to_owned();
        let port = req.port();
        let https = matches!(uri.scheme_str(), Some("https" | "wss"));
        let route = self.policy.route(if https { "https" } else { "http" }, &host, port);
        let tcp = self.tcp.clone();
        Box::pin(async move {
            let proxy = match route {
                Route::Direct(_) => {
                    let (io, uri) = tcp.call(req).await?.into_parts();
                    return Ok(Connection::new(uri, EgressStream::Tcp(io)));
                }
                Route::Proxy { proxy, .. } => proxy,
            };
            let target = authority(&host, port);
            let mut stream = reach(&tcp, &proxy).await?;
            if https {
                tunnel(&mut stream, &proxy, &target).await.map_err(into_connect_error)?;
                tracing::debug!(proxy = %proxy, %target, "Tunnel established.");
                Ok(Connection::new(uri, EgressStream::Tcp(stream)))
            } else {
                let origin = format!("http://{target}");
                let stream = AbsoluteForm::new(stream, origin, proxy.authorization.clone());
                Ok(Connection::new(uri, EgressStream::Absolute(stream)))
            }
        })
    }
}

/// `host:port`, IPv6 addresses in brackets.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn into_connect_error(error: TunnelError) -> ConnectError {
    ConnectError::Io(io::Error::other(error))
}

/// Opens a TCP connection to the proxy.
async fn reach(tcp: &ConnectorService, proxy: &Proxy) -> Result<TcpStream, ConnectError> {
    let info = ConnectInfo::new(proxy.authority());
    match tcp.call(info).await {
        Ok(connection) => Ok(connection.into_parts().0),
        Err(error) => {
            let message = match &error {
                ConnectError::Resolver(e) => format!("cannot resolve its name: {e}"),
                ConnectError::Io(e) => e.to_string(),
                other => other.to_string(),
            };
            Err(into_connect_error(TunnelError::Unreachable {
                proxy: proxy.authority(),
                message,
            }))
        }
    }
}

/// The `CONNECT` request for `target` (`host:port`).
pub fn connect_request(target: &str, authorization: Option<&Secret>) -> Vec<u8> {
    let mut request =
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: {USER_AGENT}\r\n").into_bytes();
    if let Some(value) = authorization {
        request.extend_from_slice(b"Proxy-Authorization: ");
        request.extend_from_slice(value.expose().as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request
}

/// Status and reason phrase of a response head (`HTTP/1.1 407 Proxy Authentication Required`).
pub fn parse_status_line(head: &[u8]) -> Option<(u16, String)> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let reason = parts.next().unwrap_or_default().trim();
    let reason = if reason.is_empty() {
        awc::http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or_default()
    } else {
        reason
    };
    Some((status, reason.to_owned()))
}

/// Asks the proxy for a tunnel to `target`.
async fn tunnel(stream: &mut TcpStream, proxy: &Proxy, target: &str) -> Result<(), TunnelError> {
    let broken = |message: String| TunnelError::Broken {
        proxy: proxy.authority(),
        target: target.to_owned(),
        message,
    };
    let request = connect_request(target, proxy.authorization.as_ref());
    stream
        .write_all(&request)
        .await
        .map_err(|e| broken(format!("sending CONNECT: {e}")))?;
    // Byte by byte: nothing after the head may be consumed, it belongs to TLS.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_RESPONSE {
            return Err(broken(format!("response head over {MAX_CONNECT_RESPONSE} bytes")));
        }
        match stream.read_u8().await {
            Ok(byte) => head.push(byte),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(broken("connection closed before a response".into()))
            }
            Err(e) => return Err(broken(format!("reading the response: {e}"))),
        }
    }
    let (status, reason) = parse_status_line(&head).ok_or_else(|| broken("the response is not HTTP/1.x".into()))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(TunnelError::Refused {
            proxy: proxy.authority(),
            target: target.to_owned(),
            status,
            reason,
        })
    }
}

impl AsyncRead for EgressStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EgressStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            EgressStream::Absolute(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for EgressStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            EgressStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            EgressStream::Absolute(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EgressStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            EgressStream::Absolute(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EgressStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            EgressStream::Absolute(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl ActixStream for EgressStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        match self {
            EgressStream::Tcp(s) => ActixStream::poll_read_ready(s, cx),
            EgressStream::Absolute(s) => ActixStream::poll_read_ready(s, cx),
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        match self {
            EgressStream::Tcp(s) => ActixStream::poll_write_ready(s, cx),
            EgressStream::Absolute(s) => ActixStream::poll_write_ready(s, cx),
        }
    }
}

impl fmt::Debug for EgressConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressConnector").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::proxy::basic_authorization;

    #[test]
    fn connect_requests_carry_host_agent_and_credentials() {
        let plain = String::from_utf8(connect_request("cxone.test:443", None)).unwrap();
        assert_eq!(
            plain,
            format!("CONNECT cxone.test:443 HTTP/1.1\r\nHost: cxone.test:443\r\nUser-Agent: {USER_AGENT}\r\n\r\n")
        );
        let auth = basic_authorization("u", "p");
        let with = String::from_utf8(connect_request("[::1]:8443", Some(&auth))).unwrap();
        assert!(with.starts_with("CONNECT [::1]:8443 HTTP/1.1\r\n"), "{with}");
        assert!(with.ends_with("Proxy-Authorization: Basic dTpw\r\n\r\n"), "{with}");
    }

    #[test]
    fn status_lines_of_proxies_are_read_with_a_reason() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some((200, "Connection established".into()))
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.0 407\r\nProxy-Authenticate: Basic\r\n\r\n"),
            Some((407, "Proxy Authentication Required".into()))
        );
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(authority("::1", 443), "[::1]:443");
        assert_eq!(authority("[::1]", 443), "[::1]:443");
    }

    #[test]
    fn refusals_name_proxy_target_and_status() {
        let error = TunnelError::Refused {
            proxy: "127.0.0.1:3128".into(),
            target: "api.example.com:443".into(),
            status: 502,
            reason: "Bad Gateway".into(),
        };
        assert_eq!(
            error.to_string(),
            "proxy 127.0.0.1:3128 refused CONNECT to api.example.com:443: 502 Bad Gateway"
        );
    }
}
