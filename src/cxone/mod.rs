//! `CxoneClient`: the three CXone calls (token, submit, poll) over one pooled awc client,
//! each turned into a typed result or a `CallError` the poller can decide on.
//!
//! `awc::Client` is `!Send`, so a client lives on the arbiter that uses it (the main one).
//! Every body is read with a size cap and a deadline; the shared 429 pause of SPEC §4
//! lives in `rate_limit.rs`. How connections are made (proxies, trusted roots) is net/'s.

mod parse;
pub mod rate_limit;

use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::error::{PayloadError, SendRequestError};
use awc::http::StatusCode;
use bytes::Bytes;
use serde::Deserialize;
use uuid::Uuid;

use crate::classify::UpstreamError;
use crate::config::{CxoneConfig, Secret};
use crate::net::{self, Diagnosis, Egress};
use crate::telemetry::events::HttpRequestDone;
pub use parse::parse_poll;
use parse::{retry_after, status_error, submitted_id};
pub use rate_limit::{Endpoint, Gate};

/// Why a CXone call did not succeed. Matched on the hot path: no boxing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The upstream answered with a non-success status.
    #[error("HTTP {status}")]
    Status {
        /// The status.
        status: u16,
        /// Parsed `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// `errors[0].code` of the body, if any.
        code: Option<String>,
        /// `errors[0].message` (or `error`) of the body, if any.
        message: Option<String>,
    },
    /// No response: connect error, reset, TLS failure.
    #[error("network error: {0}")]
    Network(String),
    /// No response within `request_timeout`.
    #[error("request timed out")]
    Timeout,
    /// A success status with a body we cannot use (not JSON, too big, fields missing).
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The action's `poll.timeout` passed before the request could be sent (no token).
    #[error("poll.timeout passed while waiting for a token")]
    PollTimeout,
    /// A problem only an operator can fix: the server's certificate fails verification
    /// (unknown issuer, wrong name, expired) or the proxy refuses the credentials.
    /// Repeating cannot help, so it spends no retry budget: the caller waits.
    #[error("{reason}")]
    Misconfigured {
        /// The host the problem is about (the target, or the proxy).
        host: String,
        /// What is wrong and what to check, naming the host.
        reason: String,
    },
}

impl CallError {
    /// True for failures that are repeated with backoff (SPEC §4): 408, 425, 429, 5xx,
    /// network errors, timeouts and malformed bodies.
    pub fn is_transient(&self) -> bool {
        match self {
            CallError::Status { status, .. } => matches!(status, 408 | 425 | 429 | 500..=599),
            CallError::Network(_) | CallError::Timeout | CallError::Malformed(_) => true,
            CallError::PollTimeout | CallError::Misconfigured { .. } => false,
        }
    }

    /// True for failures only an operator can fix (certificates, proxy credentials):
    /// the action should wait, not spend its retry budget nor be dead-lettered.
    pub fn is_misconfiguration(&self) -> bool {
        matches!(self, CallError::Misconfigured { .. })
    }

    /// The dead-letter code when the retry budget runs out on this error.
    pub fn error_code(&self) -> String {
        match self {
            CallError::Status { status: 429, .. } => "RATE_LIMIT_EXHAUSTED".into(),
            CallError::Status { status, .. } => format!("HTTP_{status}"),
            CallError::Network(_) => "NETWORK_ERROR".into(),
            CallError::Timeout => "REQUEST_TIMEOUT".into(),
            CallError::Malformed(_) => "MALFORMED_RESPONSE".into(),
            CallError::PollTimeout => "POLL_TIMEOUT".into(),
            CallError::Misconfigured { .. } => "CONNECTION_MISCONFIGURED".into(),
        }
    }

    /// HTTP status of the response that carried the failure; 0 when none came.
    pub fn status_code(&self) -> u16 {
        match self {
            CallError::Status { status, .. } => *status,
            CallError::Malformed(_) => 200,
            CallError::Network(_) | CallError::Timeout | CallError::PollTimeout | CallError::Misconfigured { .. } => 0,
        }
    }

    /// The short label of this error for the retries metric.
    pub fn reason(&self) -> &'static str {
        match self {
            CallError::Status { status: 429, .. } => "rate_limited",
            CallError::Status { status: 401, .. } => "unauthorized",
            CallError::Status { .. } => "http_error",
            CallError::Network(_) => "network_error",
            CallError::Timeout => "timeout",
            CallError::Malformed(_) => "malformed_response",
            CallError::PollTimeout => "timeout",
            CallError::Misconfigured { .. } => "misconfigured",
        }
    }
}

/// A poll's verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum PollStatus {
    /// Not terminal yet; the upstream's status word.
    Running(String),
    /// `COMPLETED`.
    Completed,
    /// `CANCELLED` / `CANCELED`.
    Cancelled,
    /// `FAILED` with the upstream's errors.
    Failed(Vec<UpstreamError>),
}

/// A successful submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The success status (200, 201 or 202).
    pub status: u16,
    /// The CXone id, from the body or `X-Action-Id`.
    pub id: Option<String>,
}

/// A token as the endpoint returned it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// Bearer value.
    pub access_token: Secret,
    /// Lifetime from now.
    pub expires_in: Duration,
}

/// The three calls, configured once.
pub struct CxoneClient {
    client: awc::Client,
    /// The config table of the network settings, named in hints.
    table: &'static str,
    base_url: String,
    /// `host:port` of the API, named in errors.
    api_host: String,
    token_url: String,
    /// `host:port` of the token endpoint.
    token_host: String,
    submit_url: String,
    poll_path: String,
    scopes: String,
    timeout: Duration,
    max_body: usize,
    gate: Rc<Gate>,
}

impl CxoneClient {
    /// Builds the client for `base_url` (the simulator's real address in embedded mode),
    /// connecting as `egress` says.
    pub fn new(config: &CxoneConfig, base_url: &str, gate: Rc<Gate>, egress: &Egress) -> Self {
        let base_url = base_url.trim_end_matches('/').to_owned();
        let token_url = if config.token_url.is_empty() || config.uses_simulator() {
            format!("{base_url}/oauth/token")
        } else {
            config.token_url.clone()
        };
        CxoneClient {
            client: net::client(egress, config.request_timeout, config.max_connections),
            table: egress.table,
            submit_url: format!("{base_url}{}", config.submit_path),
            poll_path: config.poll_path.clone(),
            api_host: net::host_port(&base_url),
            base_url,
            token_host: net::host_port(&token_url),
            token_url,
            scopes: config.scopes.join(" "),
            timeout: config.request_timeout,
            max_body: config.max_response_bytes,
            gate,
        }
    }

    /// Client-credentials token request.
    pub async fn fetch_token(&self, client_id: &str, secret: &Secret) -> Result<IssuedToken, CallError> {
        self.gate.wait(Endpoint::Token).await;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret.expose()),
            ("scope", self.scopes.as_str()),
        ];
        let started = Instant::now();
        let sent = self
            .client
            .post(&self.token_url)
            .timeout(self.timeout)
            .send_form(&form)
            .await;
        let (status, headers, body) = self.finish(Endpoint::Token, &self.token_host, started, sent).await?;
        if !status.is_success() {
            return Err(status_error(status, &headers, &body));
        }
        #[derive(Deserialize)]
        struct TokenBody {
            access_token: String,
            expires_in: Option<f64>,
        }
        let parsed: TokenBody =
            serde_json::from_slice(&body).map_err(|e| CallError::Malformed(format!("token response: {e}")))?;
        if parsed.access_token.is_empty() {
            return Err(CallError::Malformed("token response without access_token".into()));
        }
        let secs = parsed
            .expires_in
            .filter(|s| s.is_finite() && *s > 0.0)
            .unwrap_or(3600.0);
        Ok(IssuedToken {
            access_token: Secret::new(parsed.access_token),
            expires_in: Duration::from_secs_f64(secs.min(86_400.0 * 365.0)),
        })
    }

    /// Submits an action. A success without any id has `id: None` (SPEC: `MISSING_ACTION_ID`).
    pub async fn submit(&self, token: &Secret, body: Bytes, key: Uuid) -> Result<Submitted, CallError> {
        self.gate.wait(Endpoint::Submit).await;
        let started = Instant::now();
        let sent = self
            .client
            .post(&self.submit_url)
            .timeout(self.timeout)
            .insert_header(("Authorization", format!("Bearer {}", token.expose())))
            .insert_header(("Idempotency-Key", key.to_string()))
            .insert_header(("Content-Type", "application/json"))
            .send_body(body)
            .await;
        let (status, headers, body) = self.finish(Endpoint::Submit, &self.api_host, started, sent).await?;
        if !matches!(status.as_u16(), 200..=202) {
            return Err(status_error(status, &headers, &body));
        }
        Ok(Submitted {
            status: status.as_u16(),
            id: submitted_id(&headers, &body),
        })
    }

    /// Polls an action by its CXone id.
    pub async fn poll(&self, token: &Secret, action_id: &str) -> Result<PollStatus, CallError> {
        self.gate.wait(Endpoint::Poll).await;
        let url = format!(
            "{}{}",
            self.base_url,
            self.poll_path.replace("{id}", &encode_segment(action_id))
        );
        let started = Instant::now();
        let sent = self
            .client
            .get(&url)
            .timeout(self.timeout)
            .insert_header(("Authorization", format!("Bearer {}", token.expose())))
            .send()
            .await;
        let (status, headers, body) = self.finish(Endpoint::Poll, &self.api_host, started, sent).await?;
        if status != StatusCode::OK {
            return Err(status_error(status, &headers, &body));
        }
        parse_poll(&body)
    }

    /// Reads the response (capped, with a deadline) and records the request's metrics.
    /// `host` (`host:port`) is named when the connection is misconfigured.
    async fn finish<S>(
        &self,
        endpoint: Endpoint,
        host: &str,
        started: Instant,
        sent: Result<awc::ClientResponse<S>, SendRequestError>,
    ) -> Result<(StatusCode, awc::http::header::HeaderMap, Bytes), CallError>
    where
        S: futures_util::Stream<Item = Result<Bytes, PayloadError>> + Unpin,
    {
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => {
                let error = call_error(net::diagnose(&e, host, self.table));
                HttpRequestDone {
                    endpoint,
                    status: None,
                    elapsed: started.elapsed(),
                }
                .emit();
                return Err(error);
            }
        };
        let status = response.status();
        let remaining = self
            .timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        let body = match tokio::time::timeout(remaining, response.body().limit(self.max_body)).await {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(PayloadError::Overflow)) => Err(CallError::Malformed(format!("body over {} bytes", self.max_body))),
            Ok(Err(e)) => Err(CallError::Network(format!("reading body: {e}"))),
            Err(_) => Err(CallError::Timeout),
        };
        HttpRequestDone {
            endpoint,
            status: Some(status.as_u16()),
            elapsed: started.elapsed(),
        }
        .emit();
        if status.as_u16() == net::PROXY_AUTHENTICATION_REQUIRED {
            // Only a proxy answers 407 (plain http through a proxy); no origin server does.
            return Err(call_error(net::proxy_status(host, self.table)));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = retry_after(response.headers());
            self.gate.pause(endpoint, wait);
        }
        match body {
            Ok(b) => Ok((status, response.headers().clone(), b)),
            // An oversize or broken body on an error status still tells us the status.
            Err(_) if !status.is_success() => Ok((status, response.headers().clone(), Bytes::new())),
            Err(e) => Err(e),
        }
    }
}

/// The `CallError` of a request that got no usable response.
fn call_error(diagnosis: Diagnosis) -> CallError {
    match diagnosis {
        Diagnosis::Misconfigured { host, reason } => CallError::Misconfigured { host, reason },
        Diagnosis::Timeout => CallError::Timeout,
        Diagnosis::Network(message) => CallError::Network(message),
    }
}

/// Percent-encodes an id for use as one path segment.
fn encode_segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_and_codes() {
        let s = |status| CallError::Status {
            status,
            retry_after: None,
            code: None,
            message: None,
        };
        assert!(s(503).is_transient() && s(408).is_transient() && s(425).is_transient() && s(429).is_transient());
        assert!(!s(400).is_transient() && !s(403).is_transient());
        assert_eq!(s(429).error_code(), "RATE_LIMIT_EXHAUSTED");
        assert_eq!(s(503).error_code(), "HTTP_503");
        assert_eq!(CallError::Timeout.error_code(), "REQUEST_TIMEOUT");
        assert_eq!(CallError::Network("x".into()).status_code(), 0);
    }

    #[test]
    fn misconfiguration_is_neither_transient_nor_a_dead_letter_reason() {
        let e = CallError::Misconfigured {
            host: "api.example.com:443".into(),
            reason: "the TLS certificate of api.example.com:443 is signed by an unknown issuer".into(),
        };
        assert!(e.is_misconfiguration() && !e.is_transient());
        assert!(!CallError::Network("reset".into()).is_misconfiguration());
        assert_eq!(
            e.to_string(),
            "the TLS certificate of api.example.com:443 is signed by an unknown issuer"
        );
        let tunnel = SendRequestError::Connect(awc::error::ConnectError::Io(std::io::Error::other(
            net::TunnelError::Refused {
                proxy: "p:3128".into(),
                target: "api.example.com:443".into(),
                status: 502,
                reason: "Bad Gateway".into(),
            },
        )));
        let refused = call_error(net::diagnose(&tunnel, "api.example.com:443", "cxone"));
        assert!(
            refused.is_transient(),
            "a proxy that cannot reach the target is a network error"
        );
        assert_eq!(refused.error_code(), "NETWORK_ERROR");
    }
}
