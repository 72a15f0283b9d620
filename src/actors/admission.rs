//! Admission: reconciles the configured actions with the journal, holds the ones not yet
//! started and starts a supervised `PollerActor` for each as the in-flight limits allow
//! (global `limits.max_in_flight` and each batch's own), round-robin across batches so
//! one big batch cannot starve the others.
//!
//! Reconciliation (SPEC §6): a journaled outcome is counted and skipped; any other
//! journaled state is resumed by the poller (`polling` polls the same id, `submitting`
//! repeats the POST with the same Idempotency-Key, `backoff` waits what is left).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::watch;

use super::poller::PollerActor;
use super::poller::PollerEnv;
use crate::action::{ActionSpec, Identity, Outcome};
use crate::batch_settings::BatchSettings;
use crate::journal::{ActionRow, Replay};
use crate::report::{BatchSummary, Progress, Summary};
use crate::state::ActionState;
use crate::telemetry::events::InFlight;

/// Add actions (at start and on reload); identities already known are ignored.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Admit {
    /// The actions.
    pub actions: Vec<ActionSpec>,
    /// The settings of every batch the file names, applied before the actions (a reload
    /// changes them exactly as a start would).
    pub batches: HashMap<Arc<str>, BatchSettings>,
}

/// A poller reached its outcome.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ActionDone {
    /// Whose.
    pub identity: Identity,
    /// Outcome.
    pub outcome: Outcome,
    /// First submission -> outcome.
    pub latency: Duration,
    /// Retries spent.
    pub retries: u32,
    /// Restarts of its poller.
    pub restarts: u32,
}

/// Start dead-lettered actions again after `dlq replay` (the journal already reset them).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ReplayActions {
    /// What the journal reset.
    pub replays: Vec<Replay>,
}

/// Stop starting new pollers (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAdmitting;

/// The per-batch summary so far.
#[derive(Message)]
#[rtype(result = "Summary")]
pub struct GetSummary;

/// Whether every admitted action has an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idle(pub bool);

struct BatchSlot {
    limit: usize,
    in_flight: usize,
    queue: VecDeque<(ActionSpec, ActionState)>,
    summary: BatchSummary,
}

/// The admission actor.
pub struct AdmissionActor {
    env: Rc<PollerEnv>,
    global_limit: usize,
    in_flight: usize,
    batches: BTreeMap<Arc<str>, BatchSlot>,
    /// Each configured batch's own limit (0 = none), as the file last stated it.
    batch_limits: HashMap<Arc<str>, usize>,
    known: HashSet<Identity>,
    specs: HashMap<Identity, ActionSpec>,
    journaled: HashMap<Identity, ActionRow>,
    finished: HashMap<Identity, Outcome>,
    running: HashMap<Identity, Addr<PollerActor>>,
    /// Replays of actions whose poller had not reported its outcome yet.
    deferred: HashMap<Identity, Replay>,
    admitting: bool,
    idle: watch::Sender<Idle>,
    progress: Progress,
}

impl AdmissionActor {
    /// Admission with the global limit and the journal's rows to reconcile with; each
    /// batch's own settings come with every `Admit`.
    pub fn new(
        env: Rc<PollerEnv>,
        global_limit: usize,
        journaled: HashMap<Identity, ActionRow>,
        idle: watch::Sender<Idle>,
        progress: Progress,
    ) -> Self {
        AdmissionActor {
            env,
            global_limit,
            in_flight: 0,
            batches: BTreeMap::new(),
            batch_limits: HashMap::new(),
            known: HashSet::new(),
            specs: HashMap::new(),
            journaled,
            finished: HashMap::new(),
            running: HashMap::new(),
            deferred: HashMap::new(),
            admitting: true,
            idle,
            progress,
        }
    }

    /// Starts pollers while limits allow, one batch after another in turn.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        if !self.admitting {
            return;
        }
        let names: Vec<Arc<str>> = self.batches.keys().cloned().collect();
        loop {
            let mut started_any = false;
            for name in &names {
                if self.in_flight >= self.global_limit {
                    return;
                }
                let slot = self.batches.get_mut(name).expect("known batch");
                if slot.limit > 0 && slot.in_flight >= slot.limit {
                    continue;
                }
                let Some((spec, state)) = slot.queue.pop_front() else {
                    continue;
                };
                slot.in_flight += 1;
                self.in_flight += 1;
                InFlight {
                    batch: name,
                    count: slot.in_flight,
                }
                .emit();
                let env = self.env.clone();
                let me = ctx.address();
                let identity = spec.identity.clone();
                let addr = actix::Supervisor::start(move |_| PollerActor::new(env, spec, state, me));
                self.running.insert(identity, addr);
                started_any = true;
            }
            if !started_any {
                return;
            }
        }
    }

    fn slot(&mut self, batch: &Arc<str>) -> &mut BatchSlot {
        let limit = self.batch_limits.get(batch).copied().unwrap_or(0);
        self.batches.entry(batch.clone()).or_insert_with(|| BatchSlot {
            limit,
            in_flight: 0,
            queue: VecDeque::new(),
            summary: BatchSummary::new(batch),
        })
    }

    /// Applies the settings of each batch the file names: its limit (also for its actions
    /// already queued) and its rollback template; a batch seen for the first time gets
    /// its metric series. Batches the file no longer names keep what they had, since
    /// their admitted actions run on.
    fn configure(&mut self, batches: HashMap<Arc<str>, BatchSettings>) {
        for (name, settings) in batches {
            if self.batch_limits.insert(name.clone(), settings.max_in_flight).is_none() {
                crate::telemetry::metrics::register_batch(&name);
            }
            if let Some(slot) = self.batches.get_mut(&name) {
                slot.limit = settings.max_in_flight;
            }
            self.env.rollback_templates.set(&name, settings.rollback);
        }
    }

    fn publish_idle(&self) {
        let idle = self.running.is_empty() && self.batches.values().all(|b| b.queue.is_empty());
        self.idle.send_replace(Idle(idle));
    }
}

impl Actor for AdmissionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(crate::actors::MAILBOX_CAPACITY);
    }
}

impl Handler<Admit> for AdmissionActor {
    type Result = usize;

    fn handle(&mut self, msg: Admit, ctx: &mut Context<Self>) -> usize {
        self.configure(msg.batches);
        let mut added = 0;
        for spec in msg.actions {
            if !self.known.insert(spec.identity.clone()) {
                continue;
            }
            let batch = spec.identity.batch.clone();
            let row = self.journaled.remove(&spec.identity);
            self.specs.insert(spec.identity.clone(), spec.clone());
            self.progress.add(&batch, 1);
            added += 1;
            let slot = self.slot(&batch);
            slot.summary.total += 1;
            match row {
                Some(row) if row.state.outcome().is_some() => {
                    // Resolved in an earlier run: counted, never resubmitted.
                    let outcome = row.state.outcome().expect("checked");
                    let latency = Duration::from_millis(row.latency_ms.unwrap_or(0).max(0) as u64);
                    slot.summary.record(outcome, latency, row.retry_count, 0);
                    self.finished.insert(spec.identity.clone(), outcome);
                    self.progress.finish_one(&batch, outcome);
                }
                Some(row) => slot.queue.push_back((spec, row.to_state())),
                None => slot.queue.push_back((spec, ActionState::default())),
            }
        }
        self.fill(ctx);
        self.publish_idle();
        added
    }
}

impl Handler<ActionDone> for AdmissionActor {
    type Result = ();

    fn handle(&mut self, msg: ActionDone, ctx: &mut Context<Self>) {
        // Dropping the last Addr lets the poller (and its Supervisor) stop for good.
        if self.running.remove(&msg.identity).is_none() {
            return;
        }
        self.in_flight -= 1;
        if let Some(slot) = self.batches.get_mut(&msg.identity.batch) {
            slot.in_flight -= 1;
            InFlight {
                batch: &msg.identity.batch,
                count: slot.in_flight,
            }
            .emit();
            slot.summary.record(msg.outcome, msg.latency, msg.retries, msg.restarts);
        }
        self.finished.insert(msg.identity.clone(), msg.outcome);
        self.progress.finish_one(&msg.identity.batch, msg.outcome);
        if let Some(replay) = self.deferred.remove(&msg.identity) {
            self.start_replay(replay);
        }
        self.fill(ctx);
        self.publish_idle();
    }
}

impl Handler<ReplayActions> for AdmissionActor {
    type Result = usize;

    fn handle(&mut self, msg: ReplayActions, ctx: &mut Context<Self>) -> usize {
        let mut started = 0;
        for replay in msg.replays {
            if self.running.contains_key(&replay.identity) {
                // Its dead letter is journaled but its poller has not reported back yet:
                // start the replay when it does.
                self.deferred.insert(replay.identity.clone(), replay);
                continue;
            }
            if self.start_replay(replay) {
                started += 1;
            }
        }
        self.fill(ctx);
        self.publish_idle();
        started
    }
}

impl AdmissionActor {
    /// Queues a replayed action as a fresh attempt series; false when it is not configured
    /// (then it starts when a reload configures it again).
    fn start_replay(&mut self, replay: Replay) -> bool {
        let Some(spec) = self.specs.get(&replay.identity).cloned() else {
            tracing::warn!(identity = %replay.identity, "Replay of an action no longer in the configuration; it starts when it is configured again.");
            self.journaled.insert(
                replay.identity.clone(),
                ActionRow::pending(&replay.identity, replay.series),
            );
            return false;
        };
        let previous = self.finished.remove(&replay.identity);
        let batch = replay.identity.batch.clone();
        let slot = self.slot(&batch);
        if let Some(outcome) = previous {
            slot.summary.forget(outcome);
        }
        let state = ActionState {
            series: replay.series,
            ..ActionState::default()
        };
        slot.queue.push_back((spec, state));
        tracing::info!(identity = %replay.identity, error_id = %replay.error_id, series = replay.series, "Dead letter replayed.");
        true
    }
}

impl Handler<StopAdmitting> for AdmissionActor {
    type Result = ();

    fn handle(&mut self, _: StopAdmitting, _ctx: &mut Context<Self>) {
        self.admitting = false;
    }
}

impl Handler<GetSummary> for AdmissionActor {
    type Result = MessageResult<GetSummary>;

    fn handle(&mut self, _: GetSummary, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(Summary {
            batches: self.batches.values().map(|b| b.summary.clone()).collect(),
        })
    }
}
