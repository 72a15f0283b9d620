//! `CallError`: why a CXone call did not succeed, and the verdicts callers decide on
//! (`is_transient`, `is_misconfiguration`, the dead-letter code).

use std::time::Duration;

use crate::net::Diagnosis;

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
    /// True for failures that are repeated with backoff: 408, 425, 429, 5xx,
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

/// The `CallError` of a request that got no usable response.
pub(super) fn call_error(diagnosis: Diagnosis) -> CallError {
    match diagnosis {
        Diagnosis::Misconfigured { host, reason } => CallError::Misconfigured { host, reason },
        Diagnosis::Timeout => CallError::Timeout,
        Diagnosis::Network(message) => CallError::Network(message),
    }
}

#[cfg(test)]
mod tests {
    use awc::error::{ConnectError, SendRequestError};

    use super::*;
    use crate::net;

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
        let tunnel = SendRequestError::Connect(ConnectError::Io(std::io::Error::other(net::TunnelError::Refused {
            proxy: "p:3128".into(),
            target: "api.example.com:443".into(),
            status: 502,
            reason: "Bad Gateway".into(),
        })));
        let refused = call_error(net::diagnose(&tunnel, "api.example.com:443", "cxone"));
        assert!(
            refused.is_transient(),
            "a proxy that cannot reach the target is a network error"
        );
        assert_eq!(refused.error_code(), "NETWORK_ERROR");
    }
}
