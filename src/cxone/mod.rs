//! `CxoneClient`: the three CXone calls (token, submit, poll) over one pooled awc client,
//! each turned into a typed result or a `CallError` the poller can decide on.
//!
//! `awc::Client` is `!Send`, so a client lives on the arbiter that uses it (the main one).
//! Every body is read with a size cap and a deadline; the shared 429 pause of SPEC §4
//! lives in `rate_limit.rs`.

pub mod rate_limit;

use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use awc::error::{PayloadError, SendRequestError};
use awc::http::StatusCode;
use bytes::Bytes;
use serde::Deserialize;
use uuid::Uuid;

use crate::backoff::parse_retry_after;
use crate::classify::{UpstreamError, UpstreamFrame};
use crate::config::{CxoneConfig, Secret};
use crate::telemetry::events::HttpRequestDone;
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
}

impl CallError {
    /// True for failures that are repeated with backoff (SPEC §4): 408, 425, 429, 5xx,
    /// network errors, timeouts and malformed bodies.
    pub fn is_transient(&self) -> bool {
        match self {
            CallError::Status { status, .. } => matches!(status, 408 | 425 | 429 | 500..=599),
            CallError::Network(_) | CallError::Timeout | CallError::Malformed(_) => true,
            CallError::PollTimeout => false,
        }
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
        }
    }

    /// HTTP status of the response that carried the failure; 0 when none came.
    pub fn status_code(&self) -> u16 {
        match self {
            CallError::Status { status, .. } => *status,
            CallError::Malformed(_) => 200,
            CallError::Network(_) | CallError::Timeout | CallError::PollTimeout => 0,
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
    base_url: String,
    token_url: String,
    submit_url: String,
    poll_path: String,
    scopes: String,
    timeout: Duration,
    max_body: usize,
    gate: Rc<Gate>,
}

impl CxoneClient {
    /// Builds the client for `base_url` (the simulator's real address in embedded mode).
    pub fn new(config: &CxoneConfig, base_url: &str, gate: Rc<Gate>) -> Self {
        let base_url = base_url.trim_end_matches('/').to_owned();
        let token_url = if config.token_url.is_empty() || config.uses_simulator() {
            format!("{base_url}/oauth/token")
        } else {
            config.token_url.clone()
        };
        let connector = awc::Connector::new()
            .limit(config.max_connections)
            .timeout(config.request_timeout);
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(config.request_timeout)
            .disable_redirects()
            .finish();
        CxoneClient {
            client,
            submit_url: format!("{base_url}{}", config.submit_path),
            poll_path: config.poll_path.clone(),
            base_url,
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
        let (status, headers, body) = self.finish(Endpoint::Token, started, sent).await?;
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
        let (status, headers, body) = self.finish(Endpoint::Submit, started, sent).await?;
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
        let (status, headers, body) = self.finish(Endpoint::Poll, started, sent).await?;
        if status != StatusCode::OK {
            return Err(status_error(status, &headers, &body));
        }
        parse_poll(&body)
    }

    /// The gate shared by every request of this client.
    pub fn gate(&self) -> &Rc<Gate> {
        &self.gate
    }

    /// Reads the response (capped, with a deadline) and records the request's metrics.
    async fn finish<S>(
        &self,
        endpoint: Endpoint,
        started: Instant,
        sent: Result<awc::ClientResponse<S>, SendRequestError>,
    ) -> Result<(StatusCode, awc::http::header::HeaderMap, Bytes), CallError>
    where
        S: futures_util::Stream<Item = Result<Bytes, PayloadError>> + Unpin,
    {
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => {
                let error = match e {
                    SendRequestError::Timeout => CallError::Timeout,
                    other => CallError::Network(other.to_string()),
                };
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

fn retry_after(headers: &awc::http::header::HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// A non-success status with what its body and headers say.
fn status_error(status: StatusCode, headers: &awc::http::header::HeaderMap, body: &[u8]) -> CallError {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        errors: Vec<serde_json::Value>,
        #[serde(default)]
        error: Option<String>,
    }
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let first = parsed.as_ref().and_then(|p| p.errors.first());
    let code = first
        .and_then(|e| e.get("code"))
        .and_then(|c| c.as_str())
        .map(str::to_owned);
    let message = first
        .and_then(|e| e.get("message"))
        .and_then(|m| m.as_str())
        .map(str::to_owned)
        .or_else(|| parsed.as_ref().and_then(|p| p.error.clone()));
    CallError::Status {
        status: status.as_u16(),
        retry_after: retry_after(headers),
        code,
        message,
    }
}

/// The id of a submit response: the body's `id` wins over `X-Action-Id`.
fn submitted_id(headers: &awc::http::header::HeaderMap, body: &[u8]) -> Option<String> {
    let from_body = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| match v.get("id") {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        });
    from_body.or_else(|| {
        headers
            .get("x-action-id")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    })
}

/// Parses a poll body: a JSON object with a `status` string.
pub fn parse_poll(body: &[u8]) -> Result<PollStatus, CallError> {
    #[derive(Deserialize)]
    struct PollBody {
        status: Option<serde_json::Value>,
        #[serde(default)]
        errors: Option<serde_json::Value>,
    }
    let parsed: PollBody = serde_json::from_slice(body)
        .map_err(|e| CallError::Malformed(format!("poll body is not a JSON object: {e}")))?;
    let status = match parsed.status {
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err(CallError::Malformed("poll body `status` is not a string".into())),
        None => return Err(CallError::Malformed("poll body has no `status`".into())),
    };
    Ok(match status.to_ascii_uppercase().as_str() {
        "COMPLETED" => PollStatus::Completed,
        "CANCELLED" | "CANCELED" => PollStatus::Cancelled,
        "FAILED" => PollStatus::Failed(parse_errors(parsed.errors)),
        _ => PollStatus::Running(status),
    })
}

/// Reads `errors` leniently: what is there is kept, what is missing stays empty. A
/// `FAILED` without any error still yields one, named for what happened.
fn parse_errors(value: Option<serde_json::Value>) -> Vec<UpstreamError> {
    let items = match value {
        Some(serde_json::Value::Array(items)) if !items.is_empty() => items,
        _ => {
            return vec![UpstreamError {
                code: "UNKNOWN_ERROR".into(),
                message: "CXone reported FAILED without errors".into(),
                stack_trace: Vec::new(),
            }]
        }
    };
    items
        .into_iter()
        .map(|item| {
            let text = |k: &str| item.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            let stack_trace = match item.get("stackTrace") {
                Some(serde_json::Value::Array(frames)) => frames.iter().map(parse_frame).collect(),
                _ => Vec::new(),
            };
            UpstreamError {
                code: text("code").unwrap_or_else(|| "UNKNOWN_ERROR".into()),
                message: text("message").unwrap_or_default(),
                stack_trace,
            }
        })
        .collect()
}

/// One upstream frame; a field of an unexpected type is left out, not the whole frame.
fn parse_frame(frame: &serde_json::Value) -> UpstreamFrame {
    let text = |k: &str| frame.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let line = match frame.get("line") {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    UpstreamFrame {
        function: text("function"),
        file: text("file"),
        line,
        message: text("message"),
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
    fn poll_status_is_case_insensitive() {
        assert_eq!(parse_poll(br#"{"status":"completed"}"#).unwrap(), PollStatus::Completed);
        assert_eq!(parse_poll(br#"{"status":"Canceled"}"#).unwrap(), PollStatus::Cancelled);
        assert_eq!(parse_poll(br#"{"status":"CANCELLED"}"#).unwrap(), PollStatus::Cancelled);
        assert_eq!(
            parse_poll(br#"{"status":"IN_PROGRESS"}"#).unwrap(),
            PollStatus::Running("IN_PROGRESS".into())
        );
    }

    #[test]
    fn failed_poll_keeps_upstream_frames() {
        let body = br#"{"id":"1","status":"FAILED","errors":[{"code":"TIMEOUT","message":"slow","stackTrace":[{"function":"f","file":"F.java","line":12,"message":"m"}]}]}"#;
        let PollStatus::Failed(errors) = parse_poll(body).unwrap() else {
            panic!("not failed")
        };
        assert_eq!(errors[0].code, "TIMEOUT");
        assert_eq!(errors[0].stack_trace[0].line, Some(12));
    }

    #[test]
    fn frames_with_odd_fields_are_kept() {
        let body = br#"{"status":"FAILED","errors":[{"code":"X","stackTrace":[{"function":"f","line":"12"},{"function":7,"line":3}]}]}"#;
        let PollStatus::Failed(errors) = parse_poll(body).unwrap() else {
            panic!("not failed")
        };
        assert_eq!(errors[0].stack_trace.len(), 2);
        assert_eq!(errors[0].stack_trace[0].line, Some(12));
        assert_eq!(errors[0].stack_trace[1].function, None);
        let PollStatus::Failed(none) = parse_poll(br#"{"status":"FAILED","errors":[]}"#).unwrap() else {
            panic!()
        };
        assert_eq!(none[0].code, "UNKNOWN_ERROR");
    }

    #[test]
    fn malformed_polls_are_errors() {
        assert!(matches!(parse_poll(b"<html>"), Err(CallError::Malformed(_))));
        assert!(matches!(parse_poll(br#"{"id":"1"}"#), Err(CallError::Malformed(_))));
        assert!(matches!(parse_poll(br#"[1,2]"#), Err(CallError::Malformed(_))));
        assert!(matches!(parse_poll(br#"{"status":5}"#), Err(CallError::Malformed(_))));
    }

    #[test]
    fn body_id_wins_over_header() {
        let mut headers = awc::http::header::HeaderMap::new();
        headers.insert(
            awc::http::header::HeaderName::from_static("x-action-id"),
            "from-header".parse().unwrap(),
        );
        assert_eq!(
            submitted_id(&headers, br#"{"id":"from-body"}"#).as_deref(),
            Some("from-body")
        );
        assert_eq!(submitted_id(&headers, b"").as_deref(), Some("from-header"));
        assert_eq!(
            submitted_id(&headers, br#"{"status":"QUEUED"}"#).as_deref(),
            Some("from-header")
        );
        assert_eq!(submitted_id(&awc::http::header::HeaderMap::new(), b"{}"), None);
    }

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
}
