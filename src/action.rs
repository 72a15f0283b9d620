//! What an action is: its identity `BATCH/KEY`, the body sent to CXone, its outcome,
//! and the `Idempotency-Key` of each attempt.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace of the v5 UUIDs used as `Idempotency-Key`s (fixed forever: changing it would
/// make a resumed daemon resubmit attempts it already made).
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6f1e_2c9a_4b7d_4e21_9a3c_5d8e_7f60_1b24);

/// An action's identity: unique across the whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identity {
    /// Batch name.
    pub batch: Arc<str>,
    /// Key inside the batch (explicit, or the 1-based position).
    pub key: Arc<str>,
}

impl Identity {
    /// Builds an identity.
    pub fn new(batch: impl Into<Arc<str>>, key: impl Into<Arc<str>>) -> Self {
        Identity {
            batch: batch.into(),
            key: key.into(),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.batch, self.key)
    }
}

/// One configured action, ready to submit.
#[derive(Debug, Clone)]
pub struct ActionSpec {
    /// `BATCH/KEY`.
    pub identity: Identity,
    /// The action table without `key`, serialized once as JSON and sent as is on every
    /// submit (the parsed form is not kept: 100,000 of them would cost more than the bytes).
    pub body_bytes: Bytes,
}

impl ActionSpec {
    /// Builds a spec from its identity and JSON body.
    pub fn new(identity: Identity, body: serde_json::Value) -> Self {
        let body_bytes = Bytes::from(serde_json::to_vec(&body).expect("a JSON value always serializes"));
        ActionSpec { identity, body_bytes }
    }
}

/// The final outcome of an action (docs/cxone.md, Outcomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// CXone reported `COMPLETED`.
    Completed,
    /// CXone reported `CANCELLED`.
    Cancelled,
    /// Routed to the dead-letter webhook.
    DeadLettered,
    /// Failed, then compensated by a completed rollback action.
    RolledBack,
}

impl Outcome {
    /// Every outcome, in summary-table order.
    pub const ALL: [Outcome; 4] = [
        Outcome::Completed,
        Outcome::Cancelled,
        Outcome::DeadLettered,
        Outcome::RolledBack,
    ];

    /// The metric label / audit spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Cancelled => "cancelled",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::RolledBack => "rolled_back",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `Idempotency-Key` of `attempt` (1-based) of `identity` in replay `series` (0 until
/// a `dlq replay`): the same for every repetition of that attempt, in this process or
/// after a restart; different for the next attempt and for a replay.
pub fn idempotency_key(identity: &Identity, series: u32, attempt: u32) -> Uuid {
    let name = match series {
        0 => format!("{}\u{0}{}\u{0}{}", identity.batch, identity.key, attempt),
        n => format!("{}\u{0}{}\u{0}s{n}\u{0}{}", identity.batch, identity.key, attempt),
    };
    Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, name.as_bytes())
}

/// The `Idempotency-Key` of the compensation of `identity` (attempt `attempt` of it).
pub fn rollback_idempotency_key(identity: &Identity, series: u32, attempt: u32) -> Uuid {
    let name = format!(
        "{}\u{0}{}\u{0}rollback\u{0}s{series}\u{0}{}",
        identity.batch, identity.key, attempt
    );
    Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_key_is_stable_per_attempt_and_differs_between_attempts() {
        let id = Identity::new("b", "k");
        assert_eq!(idempotency_key(&id, 0, 1), idempotency_key(&id, 0, 1));
        assert_ne!(idempotency_key(&id, 0, 1), idempotency_key(&id, 0, 2));
        assert_ne!(
            idempotency_key(&id, 0, 1),
            idempotency_key(&id, 1, 1),
            "a replay gets new keys"
        );
        assert_ne!(
            idempotency_key(&id, 0, 1),
            idempotency_key(&Identity::new("b", "k2"), 0, 1)
        );
        assert_ne!(idempotency_key(&id, 0, 1), rollback_idempotency_key(&id, 0, 1));
        // No ambiguity between "a/bc" and "ab/c".
        let a = idempotency_key(&Identity::new("a", "bc"), 0, 1);
        assert_ne!(a, idempotency_key(&Identity::new("ab", "c"), 0, 1));
    }
}
