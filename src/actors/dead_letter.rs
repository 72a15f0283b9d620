//! `DeadLetterActor`: stores each dead letter, then delivers it to the webhook until the
//! webhook accepts (2xx), with redelivery backoff (1s doubling, capped).
//!
//! Store-then-deliver is the contract of SPEC §9: a letter reaches this actor only after
//! the poller committed it to the journal with the action's outcome, and every delivery
//! attempt is journaled, so undelivered letters are picked up again after a restart.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::action::Identity;
use crate::actors::audit::{AppendAudit, AuditActor};
use crate::audit::AuditRecord;
use crate::backoff::redelivery_delay;
use crate::config::Secret;
use crate::dead_letter::{signature, DeadLetter};
use crate::health::{Blockers, WEBHOOK};
use crate::journal::Journal;
use crate::net::{self, Diagnosis, Egress};
use crate::telemetry::events::{DeadLettered, HttpRequestDone, UndeliveredDeadLetters};
use crate::telemetry::metrics::Endpoint;

/// A stored letter and its delivery state.
#[derive(Debug, Clone, Serialize)]
pub struct StoredLetter {
    /// The letter.
    pub letter: DeadLetter,
    /// Accepted by the webhook (or nothing to deliver to).
    pub delivered: bool,
    /// Delivery attempts made.
    pub attempts: u32,
    /// Last delivery error.
    pub last_error: Option<String>,
}

/// Store a letter and start delivering it. Resolves once stored.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StoreDeadLetter {
    /// The letter.
    pub letter: DeadLetter,
}

/// Resolves with the number of undelivered letters once none is left or `timeout` passed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct DrainDeadLetters {
    /// How long to wait.
    pub timeout: Duration,
}

/// Stop delivering a letter an operator discarded (the journal already marks it; its
/// audit record goes with the mark). A delivery already on the wire may still arrive.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DiscardDeadLetter {
    /// The letter.
    pub error_id: Uuid,
}

/// Lists every stored letter.
#[derive(Message)]
#[rtype(result = "Vec<StoredLetter>")]
pub struct ListDeadLetters;

/// Where and how letters are delivered.
#[derive(Clone)]
pub struct Webhook {
    /// URL; `None`: store only.
    pub url: Option<String>,
    /// HMAC key; `None`: unsigned.
    pub signing_key: Option<Secret>,
    /// Timeout of one delivery.
    pub timeout: Duration,
    /// Cap of the redelivery backoff.
    pub max_delay: Duration,
    /// Proxy and trusted roots.
    pub egress: Egress,
    /// Where a delivery blocked by the configuration (certificate, proxy credentials) is
    /// reported, and cleared once a delivery succeeds.
    pub blockers: Blockers,
}

/// Connections kept to the webhook (awc's default).
const WEBHOOK_MAX_CONNECTIONS: usize = 100;

/// The dead-letter actor.
pub struct DeadLetterActor {
    webhook: Webhook,
    client: awc::Client,
    audit: Addr<AuditActor>,
    journal: Journal,
    letters: BTreeMap<Uuid, StoredLetter>,
    drains: Vec<(Instant, oneshot::Sender<usize>)>,
}

impl DeadLetterActor {
    /// A dead-letter actor delivering to `webhook`.
    pub fn new(
        webhook: Webhook,
        audit: Addr<AuditActor>,
        journal: Journal,
        undelivered: Vec<(DeadLetter, u32)>,
    ) -> Self {
        let client = net::client(&webhook.egress, webhook.timeout, WEBHOOK_MAX_CONNECTIONS);
        let delivered = webhook.url.is_none();
        let letters = undelivered
            .into_iter()
            .map(|(letter, attempts)| {
                (
                    letter.error_id,
                    StoredLetter {
                        letter,
                        delivered,
                        attempts,
                        last_error: None,
                    },
                )
            })
            .collect();
        DeadLetterActor {
            webhook,
            client,
            audit,
            journal,
            letters,
            drains: Vec::new(),
        }
    }

    fn undelivered(&self) -> usize {
        self.letters.values().filter(|l| !l.delivered).count()
    }

    fn publish(&mut self) {
        let left = self.undelivered();
        UndeliveredDeadLetters { count: left }.emit();
        if left == 0 {
            for (_, tx) in self.drains.drain(..) {
                let _ = tx.send(0);
            }
        }
    }

    /// One delivery attempt of `error_id`; reschedules itself until accepted.
    fn deliver(&mut self, error_id: Uuid, ctx: &mut Context<Self>) {
        let (Some(url), Some(stored)) = (self.webhook.url.clone(), self.letters.get_mut(&error_id)) else {
            return;
        };
        if stored.delivered {
            return;
        }
        stored.attempts += 1;
        let body = serde_json::to_vec(&stored.letter).expect("a letter always serializes");
        let mut request = self
            .client
            .post(&url)
            .timeout(self.webhook.timeout)
            .insert_header(("Content-Type", "application/json"))
            .insert_header(("Idempotency-Key", error_id.to_string()));
        if let Some(key) = &self.webhook.signing_key {
            request = request.insert_header(("X-Actionwarden-Signature", signature(key, &body)));
        }
        let started = Instant::now();
        let (host, table) = (net::host_port(&url), self.webhook.egress.table);
        let send = async move {
            let result = request.send_body(body).await;
            let status = result.as_ref().ok().map(|r| r.status().as_u16());
            HttpRequestDone {
                endpoint: Endpoint::Webhook,
                status,
                elapsed: started.elapsed(),
            }
            .emit();
            match result {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) if r.status().as_u16() == net::PROXY_AUTHENTICATION_REQUIRED => {
                    Err(net::proxy_status(&host, table))
                }
                Ok(r) => Err(Diagnosis::Network(format!("webhook answered {}", r.status()))),
                Err(e) => Err(match net::diagnose(&e, &host, table) {
                    Diagnosis::Network(m) => Diagnosis::Network(format!("webhook unreachable: {m}")),
                    other => other,
                }),
            }
        };
        ctx.spawn(send.into_actor(self).map(move |result, act, ctx| {
            let Some(stored) = act.letters.get_mut(&error_id) else { return };
            match result {
                Ok(()) => {
                    act.webhook.blockers.clear(WEBHOOK);
                    stored.delivered = true;
                    stored.last_error = None;
                    act.journal.record_delivery(error_id.to_string(), stored.attempts, true, None);
                    tracing::info!(%error_id, batch = %stored.letter.batch, key = %stored.letter.key, attempts = stored.attempts, "Dead letter delivered.");
                    let identity = Identity::new(stored.letter.batch.as_str(), stored.letter.key.as_str());
                    let record = AuditRecord::new("DEAD_LETTER_DELIVERED", &identity)
                        .with("error_id", error_id.to_string())
                        .with("attempts", stored.attempts);
                    act.audit.do_send(AppendAudit { record });
                    act.publish();
                }
                Err(diagnosis) => {
                    let e = match diagnosis {
                        Diagnosis::Misconfigured { host, reason } => {
                            tracing::error!(%host, %reason, "Dead letters cannot be delivered until the configuration is fixed.");
                            act.webhook.blockers.block(WEBHOOK, reason.clone());
                            reason
                        }
                        Diagnosis::Timeout => "webhook unreachable: request timed out".to_owned(),
                        Diagnosis::Network(message) => message,
                    };
                    let delay = redelivery_delay(stored.attempts, act.webhook.max_delay);
                    tracing::warn!(%error_id, error = %e, retry_in = ?delay, "Dead letter delivery failed.");
                    act.journal.record_delivery(error_id.to_string(), stored.attempts, false, Some(e.clone()));
                    stored.last_error = Some(e);
                    ctx.run_later(delay, move |act, ctx| act.deliver(error_id, ctx));
                }
            }
        }));
    }
}

impl Actor for DeadLetterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(crate::actors::MAILBOX_CAPACITY);
        let pending: Vec<Uuid> = self
            .letters
            .iter()
            .filter(|(_, l)| !l.delivered)
            .map(|(id, _)| *id)
            .collect();
        if !pending.is_empty() {
            tracing::info!(count = pending.len(), "Redelivering dead letters from the journal.");
        }
        for id in pending {
            self.deliver(id, ctx);
        }
        self.publish();
        // Expire drain waits whose deadline passed.
        ctx.run_interval(Duration::from_millis(100), |act, _| {
            let now = Instant::now();
            let left = act.undelivered();
            let (due, keep): (Vec<_>, Vec<_>) = act.drains.drain(..).partition(|(deadline, _)| *deadline <= now);
            act.drains = keep;
            for (_, tx) in due {
                let _ = tx.send(left);
            }
        });
    }
}

impl Supervised for DeadLetterActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Stored letters survive in the struct and `started` (which runs again after this)
        // resumes their delivery; scheduling it here too would deliver twice.
    }
}

impl Handler<StoreDeadLetter> for DeadLetterActor {
    type Result = ();

    fn handle(&mut self, msg: StoreDeadLetter, ctx: &mut Context<Self>) {
        let error_id = msg.letter.error_id;
        if self.letters.contains_key(&error_id) {
            return;
        }
        DeadLettered {
            batch: &msg.letter.batch,
            error_code: &msg.letter.error_code,
        }
        .emit();
        let delivered = self.webhook.url.is_none();
        self.letters.insert(
            error_id,
            StoredLetter {
                letter: msg.letter,
                delivered,
                attempts: 0,
                last_error: None,
            },
        );
        self.publish();
        self.deliver(error_id, ctx);
    }
}

impl Handler<DrainDeadLetters> for DeadLetterActor {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, msg: DrainDeadLetters, _ctx: &mut Context<Self>) -> Self::Result {
        let left = self.undelivered();
        if left == 0 {
            return Box::pin(async { 0 });
        }
        let (tx, rx) = oneshot::channel();
        self.drains.push((Instant::now() + msg.timeout, tx));
        Box::pin(async move { rx.await.unwrap_or(left) })
    }
}

impl Handler<DiscardDeadLetter> for DeadLetterActor {
    type Result = ();

    fn handle(&mut self, msg: DiscardDeadLetter, _ctx: &mut Context<Self>) {
        // Scheduled redeliveries find the letter gone and stop.
        if let Some(stored) = self.letters.remove(&msg.error_id) {
            tracing::debug!(error_id = %msg.error_id, batch = %stored.letter.batch, key = %stored.letter.key, "Delivery of a discarded dead letter stopped.");
            self.publish();
        }
    }
}

impl Handler<ListDeadLetters> for DeadLetterActor {
    type Result = MessageResult<ListDeadLetters>;

    fn handle(&mut self, _: ListDeadLetters, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.letters.values().cloned().collect())
    }
}
