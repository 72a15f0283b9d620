//! One dead letter's delivery, as a task of its own: POST to the webhook until it answers
//! 2xx, with redelivery backoff (1s doubling, capped). Each attempt is journaled before
//! the actor hears of it, so the journal always knows the latest state.
//!
//! The task lives outside the actor's context: a restart of the actor does not abort a
//! POST in flight, whose answer (a 2xx the webhook already counted) would otherwise be
//! lost and the letter delivered twice.

use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::FutureExt;
use uuid::Uuid;

use super::{DeadLetterActor, DeliveryReport, Webhook};
use crate::action::Identity;
use crate::actors::audit::{AppendAudit, AuditActor};
use crate::actors::singleton::send_until_answered;
use crate::audit::AuditRecord;
use crate::backoff::redelivery_delay;
use crate::dead_letter::{signature, DeadLetter};
use crate::health::WEBHOOK;
use crate::journal::Journal;
use crate::net::{self, Diagnosis};
use crate::telemetry::events::HttpRequestDone;
use crate::telemetry::metrics::Endpoint;

/// How long a delivery waits before asking a restarting audit actor again.
const MAILBOX_RETRY: Duration = Duration::from_millis(20);

/// What a delivery task needs.
pub(super) struct Delivery {
    pub(super) letter: DeadLetter,
    /// Attempts made before this task.
    pub(super) attempts: u32,
    /// Wait before the first attempt (the schedule of a letter that failed before).
    pub(super) delay: Duration,
    pub(super) webhook: Webhook,
    pub(super) client: awc::Client,
    pub(super) audit: Addr<AuditActor>,
    pub(super) journal: Journal,
    pub(super) actor: Addr<DeadLetterActor>,
}

impl Delivery {
    /// Spawns the task on this arbiter.
    pub(super) fn spawn(self) -> actix_rt::task::JoinHandle<()> {
        let (error_id, actor) = (self.letter.error_id, self.actor.clone());
        actix_rt::spawn(async move {
            if let Err(panic) = std::panic::AssertUnwindSafe(self.run()).catch_unwind().await {
                actor.do_send(DeliveryReport {
                    error_id,
                    attempts: 0,
                    result: Err(format!(
                        "delivery task panicked: {}",
                        crate::actors::poller::panic_message(&panic)
                    )),
                    panicked: true,
                });
            }
        })
    }

    async fn run(mut self) {
        let error_id = self.letter.error_id;
        let Some(url) = self.webhook.url.clone() else { return };
        let body = serde_json::to_vec(&self.letter).expect("a letter always serializes");
        if !self.delay.is_zero() {
            actix_rt::time::sleep(self.delay).await;
        }
        loop {
            self.attempts += 1;
            let result = self.attempt(&url, error_id, body.clone()).await;
            match &result {
                Ok(()) => {
                    self.webhook.blockers.clear(WEBHOOK);
                    self.journal
                        .record_delivery(error_id.to_string(), self.attempts, true, None);
                    tracing::info!(%error_id, batch = %self.letter.batch, key = %self.letter.key, action_id = self.letter.action_id.as_deref().unwrap_or_default(), attempts = self.attempts, "Dead letter delivered.");
                    let identity = Identity::new(self.letter.batch.as_str(), self.letter.key.as_str());
                    let record = AuditRecord::new("DEAD_LETTER_DELIVERED", &identity)
                        .with("error_id", error_id.to_string())
                        .with("attempts", self.attempts);
                    send_until_answered(&self.audit, AppendAudit::new(record), MAILBOX_RETRY).await;
                }
                Err(e) => {
                    self.journal
                        .record_delivery(error_id.to_string(), self.attempts, false, Some(e.clone()));
                }
            }
            self.actor.do_send(DeliveryReport {
                error_id,
                attempts: self.attempts,
                result: result.clone(),
                panicked: false,
            });
            if result.is_ok() {
                return;
            }
            let delay = redelivery_delay(self.attempts, self.webhook.max_delay);
            let action_id = self.letter.action_id.as_deref().unwrap_or_default();
            tracing::warn!(%error_id, batch = %self.letter.batch, key = %self.letter.key, action_id, error = result.err().unwrap_or_default(), retry_in = ?delay, "Dead letter delivery failed.");
            actix_rt::time::sleep(delay).await;
        }
    }

    /// One POST; the error says why it was not accepted.
    async fn attempt(&self, url: &str, error_id: Uuid, body: Vec<u8>) -> Result<(), String> {
        let mut request = self
            .client
            .post(url)
            .timeout(self.webhook.timeout)
            .insert_header(("Content-Type", "application/json"))
            .insert_header(("Idempotency-Key", error_id.to_string()));
        if let Some(key) = &self.webhook.signing_key {
            request = request.insert_header(("X-Actionwarden-Signature", signature(key, &body)));
        }
        let started = Instant::now();
        let (host, table) = (net::host_port(url), self.webhook.egress.table);
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
        Err(match diagnosis {
            Diagnosis::Misconfigured { host, reason } => {
                tracing::error!(%host, %reason, "Dead letters cannot be delivered until the configuration is fixed.");
                self.webhook.blockers.block(WEBHOOK, reason.clone());
                reason
            }
            Diagnosis::Timeout => "webhook unreachable: request timed out".to_owned(),
            Diagnosis::Network(message) => message,
        })
    }
}
