//! `DeadLetterActor`: delivers stored dead letters to the webhook until it accepts (2xx),
//! with redelivery backoff (1s doubling, capped).
//!
//! The letters live in the journal, not in this actor: a letter is committed with its
//! action's outcome before it reaches anyone. The actor claims due letters from the
//! journal under a short lease (one delivery attempt at a time per letter, whichever
//! daemon of a cluster holds the lease) and hands each to a delivery task of its own
//! (delivery.rs), which posts it and journals the attempt with the time of the next one.
//!
//! Nothing is lost to a restart: after a panic of the actor, `restarting` keeps the
//! delivery tasks still running (a POST in flight is not cut off, so a 2xx the webhook
//! already counted is not followed by a second delivery) and scanning resumes; a letter
//! whose task died with the daemon keeps its lease until it runs out, then is claimed
//! again, here or by another member of the cluster.

mod delivery;

use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::singleton::{self, Life, Reply, Supervise};
use crate::actors::audit::AuditActor;
use crate::config::Secret;
use crate::dead_letter::DeadLetter;
use crate::health::Blockers;
use crate::journal::Journal;
use crate::net::{self, Egress};
use crate::telemetry::events::{DeadLettered, UndeliveredDeadLetters};
use delivery::Delivery;

/// A letter was committed: count it and deliver it soon. Idempotent (the letter is in
/// the journal): a sender whose reply was lost sends it again.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct StoreDeadLetter {
    /// The letter (already in the journal).
    pub letter: DeadLetter,
}

/// Resolves with the number of undelivered letters once none is left or `timeout` passed.
#[derive(Message, Clone, Copy)]
#[rtype(result = "usize")]
pub struct DrainDeadLetters {
    /// How long to wait.
    pub timeout: Duration,
}

/// Stops claiming letters (the daemon is closing); resolves once the deliveries in
/// flight have journaled their attempt, or after the delivery timeout and the lease
/// margin: a POST the webhook answered is not left unrecorded.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct StopDelivering;

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

/// A delivery task is done (journaled its attempt), or panicked.
#[derive(Message)]
#[rtype(result = "()")]
struct DeliveryReport {
    /// The task's panic message: a panic of the actor's spawned work.
    panicked: Option<String>,
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
    /// Delivery tasks that may still run.
    deliveries: Vec<actix_rt::task::JoinHandle<()>>,
    /// A claim is under way.
    claiming: bool,
    /// The daemon is closing: no more claims.
    stopping: bool,
    /// The periodic pass, cancelled at the stop so that the actor ends (and releases the
    /// journal) once nothing addresses it.
    ticking: Option<SpawnHandle>,
    /// Undelivered letters as last counted.
    undelivered: u64,
    drains: Vec<(Instant, oneshot::Sender<usize>)>,
    life: Life,
}

impl DeadLetterActor {
    /// A dead-letter actor delivering to `webhook`.
    pub fn new(webhook: Webhook, audit: Addr<AuditActor>, journal: Journal, life: Life) -> Self {
        let client = net::client(&webhook.egress, webhook.timeout, WEBHOOK_MAX_CONNECTIONS);
        DeadLetterActor {
            webhook,
            client,
            audit,
            journal,
            deliveries: Vec::new(),
            claiming: false,
            stopping: false,
            ticking: None,
            undelivered: 0,
            drains: Vec::new(),
            life,
        }
    }

    /// Claims due letters while deliveries are free.
    fn scan(&mut self, ctx: &mut Context<Self>) {
        self.deliveries.retain(|task| !task.is_finished());
        let free = MAX_DELIVERIES.saturating_sub(self.deliveries.len());
        if self.webhook.url.is_none() || self.claiming || self.stopping || free == 0 {
            return;
        }
        self.claiming = true;
        let lease = self.webhook.timeout + LEASE_MARGIN;
        let claim = self.journal.claim_letters(free, lease);
        singleton::spawn(self, ctx, claim, |result, act, ctx| {
            act.claiming = false;
            match result {
                Ok(letters) => {
                    for (letter, attempts) in letters {
                        act.deliver(letter, attempts + 1, ctx);
                    }
                }
                Err(e) => tracing::error!(error = %e, "Cannot read dead letters from the journal."),
            }
        });
    }

    /// Starts delivery attempt number `attempt` of `letter`.
    fn deliver(&mut self, letter: DeadLetter, attempt: u32, ctx: &mut Context<Self>) {
        let Some(url) = self.webhook.url.clone() else { return };
        let task = Delivery {
            letter,
            attempt,
            url,
            webhook: self.webhook.clone(),
            client: self.client.clone(),
            audit: self.audit.clone(),
            journal: self.journal.clone(),
            actor: ctx.address(),
        }
        .spawn();
        self.deliveries.push(task);
    }

    /// Counts the undelivered letters: the gauge, and the drains waiting for none.
    fn count(&mut self, ctx: &mut Context<Self>) {
        let counting = self.journal.undelivered_letters();
        singleton::spawn(self, ctx, counting, |result, act, _| {
            let Ok(left) = result else { return };
            act.undelivered = if act.webhook.url.is_some() { left } else { 0 };
            UndeliveredDeadLetters {
                count: act.undelivered as usize,
            }
            .emit();
            act.settle_drains();
        });
    }

    /// Answers the drain waits once no letter is left and no delivery task runs (a task
    /// journals a delivery before it has appended its audit record).
    fn settle_drains(&mut self) {
        self.deliveries.retain(|task| !task.is_finished());
        if self.undelivered == 0 && self.deliveries.is_empty() {
            for (_, tx) in self.drains.drain(..) {
                let _ = tx.send(0);
            }
        }
    }

    /// The periodic pass: claims due letters, counts, and answers the drain waits whose
    /// deadline passed with the count as it stands.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.scan(ctx);
        self.count(ctx);
        self.settle_drains();
        let now = Instant::now();
        let left = self.undelivered as usize;
        let (due, keep): (Vec<_>, Vec<_>) = self.drains.drain(..).partition(|(deadline, _)| *deadline <= now);
        self.drains = keep;
        for (_, tx) in due {
            let _ = tx.send(left);
        }
    }
}

impl Actor for DeadLetterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(crate::actors::MAILBOX_CAPACITY);
        self.count(ctx);
        self.scan(ctx);
        if !self.stopping {
            self.ticking = Some(ctx.run_interval(SCAN_INTERVAL, |act, ctx| {
                singleton::work(act, ctx, Self::tick);
            }));
        }
    }
}

impl Supervised for DeadLetterActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.life.restarted(Instant::now());
        // The letters are in the journal. Delivery tasks run on (they journal their own
        // attempt); the claim and counts the crash cut short are made again by
        // `started`; drain waits stay (their answers are futures of their own).
        self.claiming = false;
    }
}

impl Supervise for DeadLetterActor {
    fn life(&mut self) -> &mut Life {
        &mut self.life
    }
}

impl Handler<StoreDeadLetter> for DeadLetterActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: StoreDeadLetter, ctx: &mut Context<Self>) -> Self::Result {
        singleton::handle(self, ctx, |act, ctx| {
            DeadLettered {
                batch: &msg.letter.batch,
                error_code: &msg.letter.error_code,
            }
            .emit();
            act.count(ctx);
            act.scan(ctx);
        })
    }
}

impl Handler<DeliveryReport> for DeadLetterActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: DeliveryReport, ctx: &mut Context<Self>) -> Self::Result {
        singleton::handle(self, ctx, |act, ctx| {
            if let Some(panic) = msg.panicked {
                panic!("{panic}");
            }
            act.count(ctx);
            act.scan(ctx);
        })
    }
}

impl Handler<DrainDeadLetters> for DeadLetterActor {
    type Result = Reply<ResponseFuture<usize>>;

    fn handle(&mut self, msg: DrainDeadLetters, ctx: &mut Context<Self>) -> Self::Result {
        singleton::handle(self, ctx, |act, ctx| -> ResponseFuture<usize> {
            if act.webhook.url.is_none() {
                return Box::pin(async { 0 });
            }
            // Counted afresh: a letter stored a moment ago may not be counted yet.
            let (tx, rx) = oneshot::channel();
            act.drains.push((Instant::now() + msg.timeout, tx));
            act.count(ctx);
            Box::pin(async move { rx.await.unwrap_or(usize::MAX) })
        })
    }
}

impl Handler<StopDelivering> for DeadLetterActor {
    type Result = Reply<ResponseFuture<()>>;

    fn handle(&mut self, _: StopDelivering, ctx: &mut Context<Self>) -> Self::Result {
        singleton::handle(self, ctx, |act, ctx| -> ResponseFuture<()> {
            act.stopping = true;
            if let Some(ticking) = act.ticking.take() {
                ctx.cancel_future(ticking);
            }
            let tasks = std::mem::take(&mut act.deliveries);
            let limit = act.webhook.timeout + LEASE_MARGIN;
            Box::pin(async move {
                let all = futures_util::future::join_all(tasks);
                if tokio::time::timeout(limit, all).await.is_err() {
                    tracing::warn!("Dead-letter deliveries still in flight at the stop; their leases run out and they are tried again.");
                }
            })
        })
    }
}
