//! `DeadLetterActor`: stores each dead letter, then delivers it to the webhook until the
//! webhook accepts (2xx), with redelivery backoff (1s doubling, capped); each delivery is
//! a task of its own (delivery.rs).
//!
//! Store, then deliver: a letter reaches this actor only after the poller committed it
//! to the journal with the action's outcome, and every delivery attempt is journaled, so
//! undelivered letters are picked up again after a restart of the daemon. After a
//! restart of the actor (a panic), `restarting` rebuilds the letters and their delivery
//! schedule from the journal before the next message: a letter whose `StoreDeadLetter`
//! was lost is found there, one whose delivery task still runs is left to it, and the
//! others are scheduled by their attempts so far. Letters are kept by `error_id`, so a
//! `StoreDeadLetter` sent again is applied once.

mod delivery;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::singleton::{self, Life, Reply, Supervise};
use crate::actors::audit::AuditActor;
use crate::backoff::redelivery_delay;
use crate::config::Secret;
use crate::dead_letter::DeadLetter;
use crate::health::Blockers;
use crate::journal::{Journal, JournalError, Snapshot};
use crate::net::{self, Egress};
use crate::telemetry::events::{DeadLettered, UndeliveredDeadLetters};
use delivery::Delivery;

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

/// Store a letter and start delivering it. Resolves once stored; send it again if the
/// reply is lost (a letter is stored once per `error_id`).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct StoreDeadLetter {
    /// The letter.
    pub letter: DeadLetter,
}

/// Resolves with the number of undelivered letters once none is left or `timeout` passed.
#[derive(Message, Clone, Copy)]
#[rtype(result = "usize")]
pub struct DrainDeadLetters {
    /// How long to wait.
    pub timeout: Duration,
}

/// Lists every stored letter.
#[derive(Message, Clone, Copy)]
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

/// A delivery task's report of one attempt (or of its own panic).
#[derive(Message)]
#[rtype(result = "()")]
struct DeliveryReport {
    error_id: Uuid,
    attempts: u32,
    /// `Err`: why the webhook did not accept it.
    result: Result<(), String>,
    /// The task itself panicked: a panic of the actor's spawned work.
    panicked: bool,
}

/// Connections kept to the webhook (awc's default).
const WEBHOOK_MAX_CONNECTIONS: usize = 100;
/// How often drain waits whose deadline passed are answered.
const DRAIN_TICK: Duration = Duration::from_millis(100);

/// The dead-letter actor.
pub struct DeadLetterActor {
    webhook: Webhook,
    client: awc::Client,
    audit: Addr<AuditActor>,
    journal: Journal,
    letters: BTreeMap<Uuid, StoredLetter>,
    /// The delivery task of each letter being delivered.
    deliveries: HashMap<Uuid, actix_rt::task::JoinHandle<()>>,
    drains: Vec<(Instant, oneshot::Sender<usize>)>,
    /// Set by `restarting`: `started` leaves the deliveries to the rebuild.
    rebuilding: bool,
    life: Life,
}

impl DeadLetterActor {
    /// A dead-letter actor delivering to `webhook`; `undelivered` are the letters the
    /// journal held at open, with their attempts so far.
    pub fn new(
        webhook: Webhook,
        audit: Addr<AuditActor>,
        journal: Journal,
        undelivered: Vec<(DeadLetter, u32)>,
        life: Life,
    ) -> Self {
        let client = net::client(&webhook.egress, webhook.timeout, WEBHOOK_MAX_CONNECTIONS);
        let delivered = webhook.url.is_none();
        let letters = undelivered
            .into_iter()
            .map(|(letter, attempts)| (letter.error_id, stored(letter, attempts, delivered)))
            .collect();
        DeadLetterActor {
            webhook,
            client,
            audit,
            journal,
            letters,
            deliveries: HashMap::new(),
            drains: Vec::new(),
            rebuilding: false,
            life,
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

    /// Starts the delivery task of `error_id` after `delay`, unless it has one running.
    fn deliver(&mut self, error_id: Uuid, delay: Duration, ctx: &mut Context<Self>) {
        if self.webhook.url.is_none() || self.deliveries.get(&error_id).is_some_and(|t| !t.is_finished()) {
            return;
        }
        let Some(stored) = self.letters.get(&error_id).filter(|l| !l.delivered) else {
            return;
        };
        let task = Delivery {
            letter: stored.letter.clone(),
            attempts: stored.attempts,
            delay,
            webhook: self.webhook.clone(),
            client: self.client.clone(),
            audit: self.audit.clone(),
            journal: self.journal.clone(),
            actor: ctx.address(),
        }
        .spawn();
        self.deliveries.insert(error_id, task);
    }

    /// Starts delivering every undelivered letter without a task, except those in `busy`.
    /// At the daemon's start (`scheduled` false) at once: the webhook may be back. After a
    /// restart of the actor at once if it was never tried, else after the redelivery
    /// delay its attempts so far call for.
    fn resume(&mut self, scheduled: bool, busy: &HashSet<Uuid>, ctx: &mut Context<Self>) {
        let pending: Vec<(Uuid, u32)> = self
            .letters
            .iter()
            .filter(|(id, l)| !l.delivered && !busy.contains(id))
            .map(|(id, l)| (*id, l.attempts))
            .collect();
        for (id, attempts) in pending {
            let delay = match attempts {
                n if n > 0 && scheduled => redelivery_delay(n, self.webhook.max_delay),
                _ => Duration::ZERO,
            };
            self.deliver(id, delay, ctx);
        }
        self.publish();
    }

    /// After a restart: the journal's undelivered letters are the truth, except for the
    /// letters in `busy`, whose delivery task ran when the journal was asked (it may have
    /// delivered since; its report is on the way). A letter the journal no longer lists
    /// was delivered (or replayed); one it lists that is not known here was stored while
    /// its message was lost.
    fn rebuild(&mut self, snapshot: Result<Snapshot, JournalError>, busy: HashSet<Uuid>, ctx: &mut Context<Self>) {
        self.rebuilding = false;
        match snapshot {
            Ok(snapshot) => {
                let store_only = self.webhook.url.is_none();
                let mut listed = HashSet::new();
                for (letter, attempts) in snapshot.undelivered {
                    listed.insert(letter.error_id);
                    let known = self.letters.entry(letter.error_id).or_insert_with(|| {
                        DeadLettered {
                            batch: &letter.batch,
                            error_code: &letter.error_code,
                        }
                        .emit();
                        stored(letter, attempts, store_only)
                    });
                    known.attempts = known.attempts.max(attempts);
                }
                for (id, stored) in self.letters.iter_mut() {
                    if !stored.delivered && !listed.contains(id) && !busy.contains(id) {
                        stored.delivered = true;
                    }
                }
                tracing::info!(undelivered = listed.len(), "Dead letters rebuilt from the journal.");
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read the journal to rebuild the dead letters; going on with those held.")
            }
        }
        self.resume(true, &busy, ctx);
    }
}

/// A letter as held by the actor.
fn stored(letter: DeadLetter, attempts: u32, delivered: bool) -> StoredLetter {
    StoredLetter {
        letter,
        delivered,
        attempts,
        last_error: None,
    }
}

impl Actor for DeadLetterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(crate::actors::MAILBOX_CAPACITY);
        if !self.rebuilding {
            let pending = self.undelivered();
            if pending > 0 && self.webhook.url.is_some() {
                tracing::info!(count = pending, "Redelivering dead letters from the journal.");
            }
            self.resume(false, &HashSet::new(), ctx);
        }
        // Expire drain waits whose deadline passed.
        ctx.run_interval(DRAIN_TICK, |act, _| {
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
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        self.life.restarted(Instant::now());
        // Rebuild before the next message: `wait` holds the mailbox until it is done.
        // The letters whose delivery runs now: the journal may not show their outcome.
        self.rebuilding = true;
        self.deliveries.retain(|_, task| !task.is_finished());
        let busy: HashSet<Uuid> = self.deliveries.keys().copied().collect();
        let snapshot = self.journal.snapshot();
        ctx.wait(snapshot.into_actor(self).map(|result, act, ctx| {
            singleton::work(act, ctx, |act, ctx| act.rebuild(result, busy, ctx));
        }));
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
            let error_id = msg.letter.error_id;
            if act.letters.contains_key(&error_id) {
                return;
            }
            DeadLettered {
                batch: &msg.letter.batch,
                error_code: &msg.letter.error_code,
            }
            .emit();
            let store_only = act.webhook.url.is_none();
            act.letters.insert(error_id, stored(msg.letter, 0, store_only));
            act.publish();
            act.deliver(error_id, Duration::ZERO, ctx);
        })
    }
}

impl Handler<DeliveryReport> for DeadLetterActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: DeliveryReport, ctx: &mut Context<Self>) -> Self::Result {
        singleton::handle(self, ctx, |act, _| {
            if msg.panicked {
                act.deliveries.remove(&msg.error_id);
                panic!("{}", msg.result.err().unwrap_or_default());
            }
            let Some(stored) = act.letters.get_mut(&msg.error_id) else {
                return;
            };
            stored.attempts = stored.attempts.max(msg.attempts);
            match msg.result {
                Ok(()) => {
                    stored.delivered = true;
                    stored.last_error = None;
                    act.deliveries.remove(&msg.error_id);
                    act.publish();
                }
                Err(e) => stored.last_error = Some(e),
            }
        })
    }
}

impl Handler<DrainDeadLetters> for DeadLetterActor {
    type Result = Reply<ResponseFuture<usize>>;

    fn handle(&mut self, msg: DrainDeadLetters, ctx: &mut Context<Self>) -> Self::Result {
        singleton::handle(self, ctx, |act, _| -> ResponseFuture<usize> {
            let left = act.undelivered();
            if left == 0 {
                return Box::pin(async { 0 });
            }
            let (tx, rx) = oneshot::channel();
            act.drains.push((Instant::now() + msg.timeout, tx));
            Box::pin(async move { rx.await.unwrap_or(left) })
        })
    }
}

impl Handler<ListDeadLetters> for DeadLetterActor {
    type Result = Reply<MessageResult<ListDeadLetters>>;

    fn handle(&mut self, _: ListDeadLetters, ctx: &mut Context<Self>) -> Self::Result {
        singleton::handle(self, ctx, |act, _| {
            MessageResult(act.letters.values().cloned().collect())
        })
    }
}
