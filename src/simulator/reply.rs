//! The answer the simulator decided for one request, before it becomes HTTP, and the
//! small helpers that build and check what goes on the wire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// The answer a request gets.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A JSON body with a status.
    Json { status: u16, body: Value },
    /// A 202 for a submit: body `{id, status}`, only `X-Action-Id`, or no id at all.
    Accepted { id: String, header_only: bool, no_id: bool },
    /// A 429, with the `Retry-After` value if any.
    RateLimited { retry_after: Option<String> },
    /// A 200 whose body is not JSON.
    Malformed,
    /// The connection is closed without an answer.
    Drop,
}

impl Reply {
    /// The status written to the request log (0 for a drop).
    pub fn status(&self) -> u16 {
        match self {
            Reply::Json { status, .. } => *status,
            Reply::Accepted { .. } => 202,
            Reply::RateLimited { .. } => 429,
            Reply::Malformed => 200,
            Reply::Drop => 0,
        }
    }
}

/// Checks `t=<unix secs>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>`.
pub fn verify_signature(key: &[u8], header: &str, body: &[u8]) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => timestamp = Some(t),
            Some(("v1", hex_sig)) => signatures.extend(hex::decode(hex_sig).ok()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return false;
    };
    signatures.iter().any(|sig| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            return false;
        };
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(sig).is_ok()
    })
}

/// An HTTP-date at least `secs` seconds from now (rounded up to a whole second).
pub fn http_date_in(secs: u64) -> String {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let whole = since_epoch.as_secs() + secs + u64::from(since_epoch.subsec_nanos() > 0);
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(whole))
}

pub fn json_reply(status: u16, body: Value) -> Reply {
    Reply::Json { status, body }
}

pub fn error_reply(status: u16, code: &str, message: &str) -> Reply {
    json_reply(status, json!({"errors": [{"code": code, "message": message}]}))
}

pub fn unauthorized() -> Reply {
    error_reply(401, "UNAUTHORIZED", "The access token is missing, invalid or expired")
}

pub fn invalid_request(message: &str) -> Reply {
    error_reply(400, "INVALID_REQUEST", message)
}

pub fn not_found(id: &str) -> Reply {
    error_reply(404, "NOT_FOUND", &format!("No action with id {id}"))
}
