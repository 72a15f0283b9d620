//! `DeadLetterActor`: delivers stored dead letters to the webhook until it accepts (2xx),
//! with redelivery backoff (1s doubling, capped).
//!
//! The letters live in the journal, not in this actor: a letter is committed with its
//! action's outcome before it reaches anyone. The actor claims due letters from the
//! journal under a short lease (one delivery attempt at a time per letter, whichever
//! daemon of a cluster holds the lease), posts them, and journals each attempt with the
//! time of the next one. A restart, a crash or the death of a cluster member loses
//! nothing: the letter is still in the journal, and its lease runs out.

use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::action::Identity;
use crate::actors::audit::{AppendAudit, AuditActor};
use crate::audit::AuditRecord;
use crate::backoff::redelivery_delay;
use crate::config::Secret;
use crate::dead_letter::{signature, DeadLetter};
use crate::health::{Blockers, WEBHOOK};
use crate::journal::{now_ms, Journal, JournalError};
use crate::net::{self, Diagnosis, Egress};
use crate::telemetry::events::{DeadLettered, HttpRequestDone, UndeliveredDeadLetters};
use crate::telemetry::metrics::Endpoint;

/// A letter was committed: count it and deliver it soon.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StoreDeadLetter {
    /// The letter (already in the journal).
    pub letter: DeadLetter,
}

/// Resolves with the number of undelivered letters once none is left or `timeout` passed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct DrainDeadLetters {
    /// How long to wait.
    pub timeout: Duration,
}

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
/// Deliveries in flight at once.
const MAX_DELIVERIES: usize = 32;
/// How often due letters are looked for (redeliveries, letters of other members).
const SCAN_INTERVAL: Duration = Duration::from_millis(250);
/// How long a claimed letter stays ours beyond the delivery timeout: a daemon that dies
/// mid-delivery lets another deliver it after that.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The dead-letter actor.
pub struct DeadLetterActor {
    webhook: Webhook,
    client: awc::Client,
    audit: Addr<AuditActor>,
    journal: Journal,
    /// Deliveries in flight.
    delivering: usize,
    /// A claim is under way.
    claiming: bool,
    /// Undelivered letters as last counted.
    undelivered: u64,
    drains: Vec<(Instant, oneshot::Sender<usize>)>,
}

impl DeadLetterActor {
    /// A dead-letter actor delivering to `webhook`.
    pub fn new(webhook: Webhook, audit: Addr<AuditActor>, journal: Journal) -> Self {
        let client = net::client(&webhook.egress, webhook.timeout, WEBHOOK_MAX_CONNECTIONS);
        DeadLetterActor {
            webhook,
            client,
            audit,
            journal,
            delivering: 0,
            claiming: false,
            undelivered: 0,
            drains: Vec::new(),
        }
    }

    /// Claims due letters while deliveries are free.
    fn scan(&mut self, ctx: &mut Context<Self>) {
        if self.webhook.url.is_none() || self.claiming || self.delivering >= MAX_DELIVERIES {
            return;
        }
        self.claiming = true;
        let lease = self.webhook.timeout + LEASE_MARGIN;
        let claim = self.journal.claim_letters(MAX_DELIVERIES - self.delivering, lease);
        ctx.spawn(claim.into_actor(self).map(|result, act, ctx| {
            act.claiming = false;
            match result {
                Ok(letters) => {
                    for (letter, attempts) in letters {
                        act.deliver(letter, attempts + 1, ctx);
                    }
                }
                Err(e) => tracing::error!(error = %e, "Cannot read dead letters from the journal."),
            }
        }));
    }

    /// One delivery attempt (number `attempts`) of `letter`.
    fn deliver(&mut self, letter: DeadLetter, attempts: u32, ctx: &mut Context<Self>) {
        let Some(url) = self.webhook.url.clone() else { return };
        self.delivering += 1;
        let send = post(&self.client, &self.webhook, &url, &letter);
        ctx.spawn(send.into_actor(self).map(move |result, act, ctx| {
            act.delivering -= 1;
            let error_id = letter.error_id;
            match result {
                Ok(()) => {
                    act.webhook.blockers.clear(WEBHOOK);
                    act.journal.record_delivery(error_id.to_string(), attempts, true, None, 0);
                    tracing::info!(%error_id, batch = %letter.batch, key = %letter.key, attempts, "Dead letter delivered.");
                    let identity = Identity::new(letter.batch.as_str(), letter.key.as_str());
                    let record = AuditRecord::new("DEAD_LETTER_DELIVERED", &identity)
                        .with("error_id", error_id.to_string())
                        .with("attempts", attempts);
                    act.audit.do_send(AppendAudit { record });
                }
                Err(diagnosis) => {
                    let error = match diagnosis {
                        Diagnosis::Misconfigured { host, reason } => {
                            tracing::error!(%host, %reason, "Dead letters cannot be delivered until the configuration is fixed.");
                            act.webhook.blockers.block(WEBHOOK, reason.clone());
                            reason
                        }
                        Diagnosis::Timeout => "webhook unreachable: request timed out".to_owned(),
                        Diagnosis::Network(message) => message,
                    };
                    let delay = redelivery_delay(attempts, act.webhook.max_delay);
                    tracing::warn!(%error_id, batch = %letter.batch, key = %letter.key, error = %error, retry_in = ?delay, "Dead letter delivery failed.");
                    let next = now_ms() + delay.as_millis() as i64;
                    act.journal.record_delivery(error_id.to_string(), attempts, false, Some(error), next);
                }
            }
            act.count(ctx);
            act.scan(ctx);
        }));
    }

    /// Counts the undelivered letters: the gauge, and the drains waiting for none.
    fn count(&mut self, ctx: &mut Context<Self>) {
        let counting = self.journal.undelivered_letters();
        ctx.spawn(
            counting
                .into_actor(self)
                .map(|result: Result<u64, JournalError>, act, _| {
                    let Ok(left) = result else { return };
                    act.undelivered = if act.webhook.url.is_some() { left } else { 0 };
                    UndeliveredDeadLetters {
                        count: act.undelivered as usize,
                    }
                    .emit();
                    if act.undelivered == 0 {
                        for (_, tx) in act.drains.drain(..) {
                            let _ = tx.send(0);
                        }
                    }
                }),
        );
    }
}

/// POSTs `letter` (signed when a key is set); `Err` says why it was not accepted.
fn post(
    client: &awc::Client,
    webhook: &Webhook,
    url: &str,
    letter: &DeadLetter,
) -> impl std::future::Future<Output = Result<(), Diagnosis>> + 'static {
    let body = serde_json::to_vec(letter).expect("a letter always serializes");
    let mut request = client
        .post(url)
        .timeout(webhook.timeout)
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("Idempotency-Key", letter.error_id.to_string()));
    if let Some(key) = &webhook.signing_key {
        request = request.insert_header(("X-Actionwarden-Signature", signature(key, &body)));
    }
    let started = Instant::now();
    let (host, table) = (net::host_port(url), webhook.egress.table);
    async move {
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
            Ok(r) if r.status().as_u16() == net::PROXY_AUTHENTICATION_REQUIRED => Err(net::proxy_status(&host, table)),
            Ok(r) => Err(Diagnosis::Network(format!("webhook answered {}", r.status()))),
            Err(e) => Err(match net::diagnose(&e, &host, table) {
                Diagnosis::Network(m) => Diagnosis::Network(format!("webhook unreachable: {m}")),
                other => other,
            }),
        }
    }
}

impl Actor for DeadLetterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(crate::actors::MAILBOX_CAPACITY);
        self.count(ctx);
        self.scan(ctx);
        ctx.run_interval(SCAN_INTERVAL, |act, ctx| {
            act.scan(ctx);
            act.count(ctx);
            // Drain waits whose deadline passed get the count as it stands.
            let now = Instant::now();
            let left = act.undelivered as usize;
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
        // The letters are in the journal; deliveries cut short by the crash keep their
        // lease until it runs out, then are claimed again. `started` resumes scanning.
        self.delivering = 0;
        self.claiming = false;
    }
}

impl Handler<StoreDeadLetter> for DeadLetterActor {
    type Result = ();

    fn handle(&mut self, msg: StoreDeadLetter, ctx: &mut Context<Self>) {
        DeadLettered {
            batch: &msg.letter.batch,
            error_code: &msg.letter.error_code,
        }
        .emit();
        self.count(ctx);
        self.scan(ctx);
    }
}

impl Handler<DrainDeadLetters> for DeadLetterActor {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, msg: DrainDeadLetters, _ctx: &mut Context<Self>) -> Self::Result {
        if self.webhook.url.is_none() {
            return Box::pin(async { 0 });
        }
        // Asked fresh: a letter stored a moment ago may not be counted yet.
        let counting = self.journal.undelivered_letters();
        let (tx, rx) = oneshot::channel();
        self.drains.push((Instant::now() + msg.timeout, tx));
        Box::pin(async move {
            match counting.await {
                Ok(0) => 0,
                _ => rx.await.unwrap_or(usize::MAX),
            }
        })
    }
}
