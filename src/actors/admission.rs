//! Admission: claims due actions of the configured batches from the journal, in chunks,
//! as the in-flight limits allow (global `limits.max_in_flight` and each batch's own),
//! round-robin across batches so one big batch cannot starve the others, and starts a
//! supervised `PollerActor` for each. Only claimed actions are in memory.
//!
//! A batch whose claim came back short is drained until something makes it due again
//! (a reload, a replay). When every batch is drained and nothing is in flight, the
//! journal is asked whether any action of the configured batches is still unresolved;
//! when none is, admission reports idle (`run --once` ends).

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::watch;

use super::poller::{ActionDone, PollerActor, PollerEnv};
use crate::action::{ActionSpec, Identity};
use crate::journal::{Claimed, Journal, JournalError};
use crate::report::Progress;
use crate::telemetry::events::{InFlight, OwnershipLost};
use crate::telemetry::throttle::{Throttle, FAILURE_LOG_PERIOD};

/// Log lines about failed claims (a full disk fails every one).
static CLAIM_FAILED: Throttle = Throttle::new(FAILURE_LOG_PERIOD);
/// Most actions claimed in one request.
const CLAIM_CHUNK: usize = 512;
/// Wait before claiming again after the journal failed, or when actions of the
/// configured batches are unresolved but none could be claimed.
const RECLAIM_DELAY: Duration = Duration::from_millis(500);

/// A batch's settings, at start and after every reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSettings {
    /// Name.
    pub name: Arc<str>,
    /// Its own in-flight limit; 0: only the global one applies.
    pub max_in_flight: usize,
    /// Journaled actions, and how many have an outcome (for the progress bar).
    pub total: u64,
    /// Actions with an outcome.
    pub finished: u64,
}

/// The configured batches (at start, and after each reload): their limits apply from
/// now on, and each is due again. Batches not listed are no longer claimed from.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Configure {
    /// Every configured batch.
    pub batches: Vec<BatchSettings>,
}

/// Actions of these batches became due (replays).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake {
    /// The batches.
    pub batches: Vec<Arc<str>>,
}

/// Stop starting new pollers (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAdmitting;

/// Whether every action of the configured batches has an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idle(pub bool);

#[derive(Debug, Default)]
struct BatchSlot {
    limit: usize,
    in_flight: usize,
    /// Actions asked for by the claim under way.
    reserved: usize,
    /// The last claim came back short: nothing due until woken.
    drained: bool,
    /// Named by the configuration; a batch removed by a reload stays only until its
    /// running actions finish, and is never claimed from.
    configured: bool,
}

impl BatchSlot {
    /// Actions this batch may still claim (`usize::MAX` without a limit of its own).
    fn free(&self) -> usize {
        match self.limit {
            0 => usize::MAX,
            limit => limit.saturating_sub(self.in_flight + self.reserved),
        }
    }

    fn claiming(&self) -> bool {
        self.reserved > 0
    }
}

/// The admission actor.
pub struct AdmissionActor {
    env: Rc<PollerEnv>,
    journal: Journal,
    global_limit: usize,
    in_flight: usize,
    reserved: usize,
    batches: BTreeMap<Arc<str>, BatchSlot>,
    /// Where the next round-robin pass starts.
    turn: usize,
    running: HashMap<Identity, (i64, Addr<PollerActor>)>,
    admitting: bool,
    idle: watch::Sender<Idle>,
    checking_idle: bool,
    progress: Progress,
    rescan: Option<Duration>,
    /// The rescan timer, cancelled when admission stops.
    rescanning: Option<SpawnHandle>,
}

impl AdmissionActor {
    /// Admission under the global limit; `Configure` names the batches.
    /// `rescan`: in a cluster, how often drained batches are looked at again (the actions
    /// of a member that died become due then).
    pub fn new(
        env: Rc<PollerEnv>,
        journal: Journal,
        global_limit: usize,
        idle: watch::Sender<Idle>,
        rescan: Option<Duration>,
    ) -> Self {
        AdmissionActor {
            rescan,
            rescanning: None,
            env,
            journal,
            global_limit,
            in_flight: 0,
            reserved: 0,
            batches: BTreeMap::new(),
            turn: 0,
            running: HashMap::new(),
            admitting: true,
            idle,
            checking_idle: false,
            progress: Progress::new(),
        }
    }

    /// Claims for the batches with due actions while the limits allow, in turn.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        if !self.admitting {
            return;
        }
        let busy = self.in_flight + self.reserved;
        let free = self.global_limit.saturating_sub(busy);
        // Refill in chunks, not one slot per finished action.
        if free == 0 || (busy > 0 && free < refill_at(self.global_limit)) {
            return;
        }
        let names: Vec<Arc<str>> = self.configured().collect();
        let candidates: Vec<Arc<str>> = (0..names.len())
            .map(|i| names[(self.turn + i) % names.len()].clone())
            .filter(|name| {
                let slot = &self.batches[name];
                let busy = slot.in_flight + slot.reserved;
                !slot.drained
                    && !slot.claiming()
                    && slot.free() > 0
                    && (busy == 0 || slot.free() >= refill_at(slot.limit))
            })
            .collect();
        if candidates.is_empty() {
            return self.check_idle(ctx);
        }
        self.turn = (self.turn + 1) % names.len().max(1);
        let share = free.div_ceil(candidates.len());
        let mut left = free;
        for name in candidates {
            let slot = self.batches.get_mut(&name).expect("a known batch");
            let ask = share.min(slot.free()).min(CLAIM_CHUNK).min(left);
            if ask == 0 {
                break;
            }
            left -= ask;
            slot.reserved += ask;
            self.reserved += ask;
            let claim = self.journal.claim(name.clone(), ask);
            ctx.spawn(
                claim
                    .into_actor(self)
                    .map(move |result, act, ctx| act.claimed(name, ask, result, ctx)),
            );
        }
    }

    /// A claim came back: start a poller per action.
    fn claimed(
        &mut self,
        batch: Arc<str>,
        asked: usize,
        result: Result<Vec<Claimed>, JournalError>,
        ctx: &mut Context<Self>,
    ) {
        self.reserved -= asked;
        let Some(slot) = self.batches.get_mut(&batch) else {
            return;
        };
        slot.reserved -= asked;
        let claimed = match result {
            Ok(claimed) => claimed,
            Err(e) => {
                if let Some(suppressed) = CLAIM_FAILED.allow() {
                    tracing::error!(%batch, error = %e, suppressed, "Cannot claim actions; trying again.");
                }
                ctx.run_later(RECLAIM_DELAY, |act, ctx| act.fill(ctx));
                return;
            }
        };
        if claimed.len() < asked {
            slot.drained = true;
        }
        slot.in_flight += claimed.len();
        self.in_flight += claimed.len();
        InFlight {
            batch: &batch,
            count: slot.in_flight,
        }
        .emit();
        for Claimed { claim, row, body } in claimed {
            let spec = ActionSpec {
                identity: row.identity.clone(),
                body_bytes: body,
            };
            let (env, done) = (self.env.clone(), ctx.address().recipient());
            let state = row.to_state();
            let addr = actix::Supervisor::start(move |_| PollerActor::new(env, spec, claim, state, done));
            self.running.insert(row.identity, (claim.fence, addr));
        }
        self.fill(ctx);
    }

    /// Nothing to claim and nothing in flight: asks the journal whether anything of the
    /// configured batches is unresolved.
    fn check_idle(&mut self, ctx: &mut Context<Self>) {
        let waiting = self.batches.values().any(|b| b.configured && !b.drained);
        if self.in_flight + self.reserved > 0 || self.checking_idle || waiting {
            return;
        }
        self.checking_idle = true;
        let unresolved = self.journal.unresolved(self.configured().collect());
        ctx.spawn(unresolved.into_actor(self).map(|result, act, ctx| {
            act.checking_idle = false;
            match result {
                Ok(0) => {
                    act.idle.send_replace(Idle(true));
                }
                // Unresolved but not claimable now (claimed elsewhere, or the journal
                // failed): look again shortly.
                _ => {
                    ctx.run_later(RECLAIM_DELAY, |act, ctx| {
                        act.batches.values_mut().for_each(|b| b.drained = false);
                        act.fill(ctx);
                    });
                }
            }
        }));
    }

    /// The names of the configured batches.
    fn configured(&self) -> impl Iterator<Item = Arc<str>> + '_ {
        self.batches
            .iter()
            .filter(|(_, b)| b.configured)
            .map(|(name, _)| name.clone())
    }

    fn wake(&mut self, batch: &Arc<str>) {
        if let Some(slot) = self.batches.get_mut(batch).filter(|b| b.configured) {
            slot.drained = false;
            self.idle.send_replace(Idle(false));
        }
    }
}

/// The free slots worth a claim under `limit`: an eighth of it (capped by the chunk),
/// so a big limit refills in chunks and a small one slot by slot.
fn refill_at(limit: usize) -> usize {
    match limit {
        0 => 1,
        limit => (limit / 8).clamp(1, CLAIM_CHUNK),
    }
}

impl Actor for AdmissionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(crate::actors::MAILBOX_CAPACITY);
        if let Some(every) = self.rescan {
            self.rescanning = Some(ctx.run_interval(every, |act, ctx| {
                for slot in act.batches.values_mut().filter(|b| b.configured) {
                    slot.drained = false;
                }
                act.fill(ctx);
            }));
        }
    }
}

impl Handler<Configure> for AdmissionActor {
    type Result = ();

    fn handle(&mut self, msg: Configure, ctx: &mut Context<Self>) {
        // Batches no longer configured: their running actions finish, nothing new starts.
        for slot in self.batches.values_mut() {
            slot.configured = false;
        }
        for settings in msg.batches {
            if !self.batches.contains_key(&settings.name) {
                crate::telemetry::metrics::register_batch(&settings.name);
            }
            let slot = self.batches.entry(settings.name.clone()).or_default();
            slot.limit = settings.max_in_flight;
            slot.drained = false;
            slot.configured = true;
            self.progress.set(&settings.name, settings.total, settings.finished);
        }
        self.batches.retain(|_, b| b.configured || b.in_flight + b.reserved > 0);
        self.idle.send_replace(Idle(false));
        self.fill(ctx);
    }
}

impl Handler<Wake> for AdmissionActor {
    type Result = ();

    fn handle(&mut self, msg: Wake, ctx: &mut Context<Self>) {
        for batch in &msg.batches {
            self.wake(batch);
        }
        self.fill(ctx);
    }
}

impl Handler<ActionDone> for AdmissionActor {
    type Result = ();

    fn handle(&mut self, msg: ActionDone, ctx: &mut Context<Self>) {
        // Dropping the last Addr lets the poller (and its Supervisor) stop for good.
        if self
            .running
            .get(&msg.identity)
            .is_some_and(|(fence, _)| *fence == msg.claim.fence)
        {
            self.running.remove(&msg.identity);
        }
        self.in_flight -= 1;
        if let Some(slot) = self.batches.get_mut(&msg.identity.batch) {
            slot.in_flight -= 1;
            InFlight {
                batch: &msg.identity.batch,
                count: slot.in_flight,
            }
            .emit();
            if !slot.configured && slot.in_flight + slot.reserved == 0 {
                self.batches.remove(&msg.identity.batch);
            }
        }
        match msg.outcome {
            Some(outcome) => self.progress.finish_one(&msg.identity.batch, outcome),
            None => OwnershipLost.emit(),
        }
        self.fill(ctx);
        self.check_idle(ctx);
    }
}

impl Handler<StopAdmitting> for AdmissionActor {
    type Result = ();

    fn handle(&mut self, _: StopAdmitting, ctx: &mut Context<Self>) {
        self.admitting = false;
        // Nothing to rescan any more: without its timer the actor ends (and releases the
        // journal) once nothing addresses it.
        if let Some(rescanning) = self.rescanning.take() {
            ctx.cancel_future(rescanning);
        }
    }
}
