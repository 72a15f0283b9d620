//! One delivery attempt of a claimed dead letter, as a task of its own: POST to the
//! webhook, then journal the attempt (delivered, or when the next one is due) before the
//! actor hears of it, so the journal always knows the latest state.
//!
//! The task lives outside the actor's context: a restart of the actor does not abort a
//! POST in flight, whose answer (a 2xx the webhook already counted) would otherwise be
//! lost and the letter delivered twice.

use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::FutureExt;

use super::{DeadLetterActor, DeliveryReport, Webhook};
use crate::action::Identity;
use crate::actors::audit::{AppendAudit, AuditActor};
use crate::actors::singleton::send_until_answered;
use crate::audit::AuditRecord;
use crate::backoff::redelivery_delay;
use crate::dead_letter::{signature, DeadLetter};
use crate::health::WEBHOOK;
use crate::journal::{now_ms, Journal};
use crate::net::{self, Diagnosis};
use crate::telemetry::events::HttpRequestDone;
use crate::telemetry::metrics::Endpoint;

/// How long a delivery waits before asking a restarting actor again.
const MAILBOX_RETRY: Duration = Duration::from_millis(20);

/// What a delivery task needs.
pub(super) struct Delivery {
    pub(super) letter: DeadLetter,
    /// The number of this attempt (1 for the first).
    pub(super) attempt: u32,
    pub(super) url: String,
    pub(super) webhook: Webhook,
    pub(super) client: awc::Client,
    pub(super) audit: Addr<AuditActor>,
    pub(super) journal: Journal,
    pub(super) actor: Addr<DeadLetterActor>,
}

impl Delivery {
    /// Spawns the task on this arbiter; its end (or its panic) is reported to the actor.
    pub(super) fn spawn(self) -> actix_rt::task::JoinHandle<()> {
        let actor = self.actor.clone();
        actix_rt::spawn(async move {
            let panicked = std::panic::AssertUnwindSafe(self.run())
                .catch_unwind()
                .await
                .err()
                .map(|panic| {
                    format!(
                        "delivery task panicked: {}",
                        crate::actors::singleton::panic_message(&panic)
                    )
                });
            // A lost report only delays the next claim until the actor's next scan.
            let _ = actor.send(DeliveryReport { panicked }).await;
        })
    }

    async fn run(self) {
        let letter = &self.letter;
        let (error_id, attempt) = (letter.error_id, self.attempt);
        let action_id = letter.action_id.as_deref().unwrap_or_default();
        match self.post().await {
            Ok(()) => {
                self.webhook.blockers.clear(WEBHOOK);
                self.journal
                    .record_delivery(error_id.to_string(), attempt, true, None, 0);
                tracing::info!(%error_id, batch = %letter.batch, key = %letter.key, action_id, attempts = attempt, "Dead letter delivered.");
                let identity = Identity::new(letter.batch.as_str(), letter.key.as_str());
                let record = AuditRecord::new("DEAD_LETTER_DELIVERED", &identity)
                    .with("error_id", error_id.to_string())
                    .with("attempts", attempt);
                send_until_answered(&self.audit, AppendAudit::new(record), MAILBOX_RETRY).await;
            }
            Err(error) => {
                let delay = redelivery_delay(attempt, self.webhook.max_delay);
                tracing::warn!(%error_id, batch = %letter.batch, key = %letter.key, action_id, error = %error, retry_in = ?delay, "Dead letter delivery failed.");
                let next = now_ms() + delay.as_millis() as i64;
                self.journal
                    .record_delivery(error_id.to_string(), attempt, false, Some(error.0), next);
            }
        }
    }

    /// One POST (signed when a key is set); the error says why it was not accepted.
    async fn post(&self) -> Result<(), NotAccepted> {
        let body = serde_json::to_vec(&self.letter).expect("a letter always serializes");
        let mut request = self
            .client
            .post(&self.url)
            .timeout(self.webhook.timeout)
            .insert_header(("Content-Type", "application/json"))
            .insert_header(("Idempotency-Key", self.letter.error_id.to_string()));
        if let Some(key) = &self.webhook.signing_key {
            request = request.insert_header(("X-Actionwarden-Signature", signature(key, &body)));
        }
        let started = Instant::now();
        let (host, table) = (net::host_port(&self.url), self.webhook.egress.table);
        let result = request.send_body(body).await;
        let status = result.as_ref().ok().map(|r| r.status().as_u16());
        HttpRequestDone {
            endpoint: Endpoint::Webhook,
            status,
            elapsed: started.elapsed(),
        }
        .emit();
        let diagnosis = match result {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().as_u16() == net::PROXY_AUTHENTICATION_REQUIRED => net::proxy_status(&host, table),
            Ok(r) => Diagnosis::Network(format!("webhook answered {}", r.status())),
            Err(e) => match net::diagnose(&e, &host, table) {
                Diagnosis::Network(m) => Diagnosis::Network(format!("webhook unreachable: {m}")),
                other => other,
            },
        };
        Err(NotAccepted(match diagnosis {
            Diagnosis::Misconfigured { host, reason } => {
                tracing::error!(%host, %reason, "Dead letters cannot be delivered until the configuration is fixed.");
                self.webhook.blockers.block(WEBHOOK, reason.clone());
                reason
            }
            Diagnosis::Timeout => "webhook unreachable: request timed out".to_owned(),
            Diagnosis::Network(message) => message,
        }))
    }
}

/// Why the webhook did not accept a delivery (shown in `dlq list` as the last error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NotAccepted(String);
