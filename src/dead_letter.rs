//! Dead letters as data: the webhook body (with the failure's own fields) and its
//! HMAC signature. The `DeadLetterActor` delivers them; the journal stores them.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::action::Identity;
use crate::classify::{ErrorPayload, StackFrame};
use crate::config::{Directive, Secret};

/// The body POSTed to the dead-letter webhook.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetter {
    /// The failure's UUID, also the `Idempotency-Key` of every delivery.
    pub error_id: Uuid,
    /// Batch name.
    pub batch: String,
    /// Action key.
    pub key: String,
    /// CXone id, if any.
    pub action_id: Option<String>,
    /// Error code.
    pub error_code: String,
    /// Message.
    pub message: String,
    /// HTTP status that carried the failure; 0 when none came.
    pub status_code: u16,
    /// The directive (DEAD_LETTER, or ROLLBACK when no compensation is configured).
    pub recovery_directive: Directive,
    /// Retries spent.
    pub retry_count: u32,
    /// Budget.
    pub max_retries: u32,
    /// True when the budget ran out.
    pub retry_exhausted: bool,
    /// The `stack_trace_matrix`.
    pub stack_trace: Vec<StackFrame>,
    /// Unix seconds.
    pub created_at: f64,
    /// Unix seconds.
    pub resolved_at: Option<f64>,
    /// RFC 3339 time the letter was made.
    pub timestamp: String,
}

impl DeadLetter {
    /// Builds the letter of `payload` for `identity`.
    pub fn new(identity: &Identity, payload: &ErrorPayload, retry_exhausted: bool) -> Self {
        DeadLetter {
            error_id: payload.error_id,
            batch: identity.batch.to_string(),
            key: identity.key.to_string(),
            action_id: payload.action_id.clone(),
            error_code: payload.error_code.clone(),
            message: payload.message.clone(),
            status_code: payload.status_code,
            recovery_directive: payload.recovery_directive,
            retry_count: payload.retry_count,
            max_retries: payload.max_retries,
            retry_exhausted,
            stack_trace: payload.stack_trace_matrix.clone(),
            created_at: payload.created_at,
            resolved_at: payload.resolved_at,
            timestamp: crate::clock::rfc3339_now(),
        }
    }
}

/// The `X-Actionwarden-Signature` header of `body`, signed now with `key`.
pub fn signature(key: &Secret, body: &[u8]) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    signature_at(key, t, body)
}

/// `t=<t>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>`: the signature at Unix second `t`.
pub fn signature_at(key: &Secret, t: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_answer() {
        // Computed once outside this code: python3 hmac.new(key, b"1700000000." + body,
        // hashlib.sha256).hexdigest(), confirmed with `openssl dgst -sha256 -hmac`.
        let key = Secret::new("whsec-known-answer-2024");
        let body = br#"{"error_id":"3f2b8c1e-0000-4000-8000-000000000001","error_code":"INVALID_CONTACT"}"#;
        assert_eq!(
            signature_at(&key, 1_700_000_000, body),
            "t=1700000000,v1=6c9bc6dd5f186595ab82a47db934f70e88c938ac3fd9f8fb4c3d1d843d27efb3"
        );
    }

    #[test]
    fn signature_is_stamped_with_the_current_second() {
        let key = Secret::new("k");
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = signature(&key, b"{}");
        let t: u64 = header
            .strip_prefix("t=")
            .and_then(|rest| rest.split(',').next())
            .and_then(|t| t.parse().ok())
            .unwrap();
        assert!(t >= before && t <= before + 1, "{header}");
        assert_eq!(header, signature_at(&key, t, b"{}"));
    }
}
