//! `CxoneClient`: the three CXone calls (token, submit, poll) over one pooled awc client,
//! each turned into a typed result or a `CallError` the poller can decide on.
//!
//! `awc::Client` is `!Send`, so a client lives on the arbiter that uses it (the main one).
//! Every body is read with a size cap and a deadline; the shared 429 pause (every request
//! of that kind to the host waits) lives in `rate_limit.rs`. How connections are made
//! (proxies, trusted roots) is net/'s; what a failure means is error.rs's.

mod error;
mod parse;
pub mod rate_limit;

use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::error::{PayloadError, SendRequestError};
use awc::http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use awc::http::{StatusCode, Uri};
use bytes::Bytes;
use serde::Deserialize;
use uuid::Uuid;

use crate::classify::UpstreamError;
use crate::config::{CxoneConfig, Secret};
use crate::net::{self, Egress};
use crate::telemetry::events::HttpRequestDone;
use crate::telemetry::metrics::Endpoint;
use error::call_error;
pub use error::CallError;
pub use parse::parse_poll;
use parse::{retry_after, status_error, submitted_id};
pub use rate_limit::{Gate, SharedPauses};

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
    /// `submit_url` parsed once (`None` if it does not parse: each submit then fails as
    /// awc reports it, as before).
    submit_uri: Option<Uri>,
    /// `poll_path` split at each `{id}`.
    poll_parts: Vec<String>,
    scopes: String,
    timeout: Duration,
    max_body: usize,
    gate: Rc<Gate>,
    /// The `Authorization` value of the last token used, built once per token rather
    /// than formatted for every request.
    bearer: RefCell<Option<(Secret, HeaderValue)>>,
}

/// `Idempotency-Key` (docs/cxone.md, Submit and the Idempotency-Key).
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The submit body's media type.
const JSON: HeaderValue = HeaderValue::from_static("application/json");

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
        let submit_url = format!("{base_url}{}", config.submit_path);
        CxoneClient {
            client: net::client(egress, config.request_timeout, config.max_connections),
            table: egress.table,
            submit_uri: submit_url.parse().ok(),
            submit_url,
            poll_parts: config.poll_path.split("{id}").map(str::to_owned).collect(),
            api_host: net::host_port(&base_url),
            base_url,
            token_host: net::host_port(&token_url),
            token_url,
            scopes: config.scopes.join(" "),
            timeout: config.request_timeout,
            max_body: config.max_response_bytes,
            gate,
            bearer: RefCell::new(None),
        }
    }

    /// `request` with `Authorization: Bearer <token>`, the value built once per token
    /// rather than formatted for every request.
    fn authorized(&self, request: awc::ClientRequest, token: &Secret) -> awc::ClientRequest {
        let mut cached = self.bearer.borrow_mut();
        if let Some((known, value)) = cached.as_ref() {
            if known.expose() == token.expose() {
                return request.insert_header((AUTHORIZATION, value.clone()));
            }
        }
        let text = format!("Bearer {}", token.expose());
        match HeaderValue::from_str(&text) {
            Ok(mut value) => {
                value.set_sensitive(true);
                *cached = Some((token.clone(), value.clone()));
                request.insert_header((AUTHORIZATION, value))
            }
            // A token no header can carry: awc refuses the request, as it always did.
            Err(_) => request.insert_header((AUTHORIZATION, text)),
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
        let (response, body) = self.finish(Endpoint::Token, &self.token_host, started, sent).await?;
        if !response.status().is_success() {
            return Err(status_error(response.status(), response.headers(), &body));
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

    /// Submits an action. A success without any id has `id: None` (dead letter
    /// `MISSING_ACTION_ID`: docs/cxone.md, Submit and the Idempotency-Key).
    pub async fn submit(&self, token: &Secret, body: Bytes, key: Uuid) -> Result<Submitted, CallError> {
        self.gate.wait(Endpoint::Submit).await;
        let started = Instant::now();
        let request = match &self.submit_uri {
            Some(uri) => self.client.post(uri.clone()),
            None => self.client.post(&self.submit_url),
        };
        let mut key_text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let key_text = key.hyphenated().encode_lower(&mut key_text);
        let sent = self
            .authorized(request.timeout(self.timeout), token)
            .insert_header((
                IDEMPOTENCY_KEY,
                HeaderValue::from_str(key_text).expect("a UUID is a header value"),
            ))
            .insert_header((CONTENT_TYPE, JSON))
            .send_body(body)
            .await;
        let (response, body) = self.finish(Endpoint::Submit, &self.api_host, started, sent).await?;
        let status = response.status();
        if !matches!(status.as_u16(), 200..=202) {
            return Err(status_error(status, response.headers(), &body));
        }
        Ok(Submitted {
            status: status.as_u16(),
            id: submitted_id(response.headers(), &body),
        })
    }

    /// Polls an action by its CXone id.
    pub async fn poll(&self, token: &Secret, action_id: &str) -> Result<PollStatus, CallError> {
        self.gate.wait(Endpoint::Poll).await;
        let segment = percent_encoding::utf8_percent_encode(action_id, SEGMENT);
        let mut url = String::with_capacity(self.base_url.len() + 64);
        url.push_str(&self.base_url);
        for (i, part) in self.poll_parts.iter().enumerate() {
            if i > 0 {
                let _ = write!(url, "{segment}");
            }
            url.push_str(part);
        }
        let started = Instant::now();
        let sent = self
            .authorized(self.client.get(url).timeout(self.timeout), token)
            .send()
            .await;
        let (response, body) = self.finish(Endpoint::Poll, &self.api_host, started, sent).await?;
        if response.status() != StatusCode::OK {
            return Err(status_error(response.status(), response.headers(), &body));
        }
        parse_poll(&body)
    }

    /// Reads the response (capped, with a deadline) and records the request's metrics.
    /// `host` (`host:port`) is named when the connection is misconfigured. The response
    /// comes back with the body for its status and headers (not copied out of it).
    async fn finish<S>(
        &self,
        endpoint: Endpoint,
        host: &str,
        started: Instant,
        sent: Result<awc::ClientResponse<S>, SendRequestError>,
    ) -> Result<(awc::ClientResponse<S>, Bytes), CallError>
    where
        S: futures_util::Stream<Item = Result<Bytes, PayloadError>> + Unpin,
    {
        let response = match sent {
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
        // The body's deadline re-arms the timer awc kept from the request: one timer per
        // request, not a second one around the body.
        let mut response = response.timeout(remaining);
        let body = match response.body().limit(self.max_body).await {
            Ok(b) => Ok(b),
            Err(PayloadError::Overflow) => Err(CallError::Malformed(format!("body over {} bytes", self.max_body))),
            Err(PayloadError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => Err(CallError::Timeout),
            Err(e) => Err(CallError::Network(format!("reading body: {e}"))),
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
            Ok(b) => Ok((response, b)),
            // An oversize or broken body on an error status still tells us the status.
            Err(_) if !status.is_success() => Ok((response, Bytes::new())),
            Err(e) => Err(e),
        }
    }
}

/// What an id is percent-encoded from in a path segment: every byte but ASCII letters,
/// digits and `*-._` (what `application/x-www-form-urlencoded` keeps, with a space as
/// `%20`, not `+`).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

#[cfg(test)]
mod tests {
    use super::SEGMENT;

    /// The segment encoding is the form encoding with `%20` for a space.
    #[test]
    fn ids_encode_as_form_encoding_with_percent_20() {
        for id in ["abc-123", "a b+c/d?e#f%g", "é*._~!", ""] {
            let form = url::form_urlencoded::byte_serialize(id.as_bytes())
                .collect::<String>()
                .replace('+', "%20");
            assert_eq!(
                percent_encoding::utf8_percent_encode(id, SEGMENT).to_string(),
                form,
                "{id}"
            );
        }
    }
}
