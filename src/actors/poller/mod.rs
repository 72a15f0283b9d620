//! The `PollerActor`: one CXone action from submit to outcome, under `actix::Supervisor`.
//! The decisions live in `machine.rs`; this file performs them.
//!
//! The actor runs its action as one task (`drive`) spawned into its context. The task
//! asks the machine what to do, does it (a wait, a request, a classification) and feeds
//! the result back. The machine is held by the actor, so it outlives the task: a panic
//! inside the task is caught (`catch_unwind`) and turned into `ctx.stop()`, the
//! Supervisor calls `restarting` then `started` on the same instance, and the new task
//! continues from the journaled state (same CXone id, attempt, retry count) instead of
//! submitting again. Too many restarts inside the window end in `POLLER_CRASH_LOOP`.

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::FutureExt;
use tracing::Instrument;

use crate::action::{ActionSpec, Identity, Outcome};
use crate::actors::audit::AppendAudit;
use crate::actors::singleton::send_until_answered;
use crate::cxone::PollStatus;
use crate::journal::Claim;
use crate::state::ActionState;
use crate::telemetry::events::PollerRestarted;

mod effects;
mod env;
pub mod machine;

use effects::Held;
pub use env::{PollerEnv, PollerRng, RollbackTemplates};
use machine::{Decision, Machine, Step};

/// How long a caller waits before asking a restarting singleton again.
const MAILBOX_RETRY: Duration = Duration::from_millis(20);
/// How long to wait before retrying a failed journal write.
const JOURNAL_RETRY: Duration = Duration::from_millis(500);

/// A poller is done with its action (sent to whoever started it): the action reached
/// its outcome, or the claim was lost (another owner took it over).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct ActionDone {
    /// Whose.
    pub identity: Identity,
    /// The claim the poller held.
    pub claim: Claim,
    /// The outcome; `None` when the claim was lost and the action dropped.
    pub outcome: Option<Outcome>,
    /// First submission -> outcome.
    pub latency: Duration,
    /// Retries spent.
    pub retries: u32,
    /// Restarts of its poller.
    pub restarts: u32,
}

/// The poller of one action.
pub struct PollerActor {
    env: Rc<PollerEnv>,
    spec: ActionSpec,
    claim: Claim,
    machine: Rc<RefCell<Machine>>,
    done: Recipient<ActionDone>,
    /// Set by `restarting`: the next run first reloads the journaled state.
    reload: bool,
    /// The message of the panic that stopped the last run, for `restarting`.
    panic: Option<String>,
}

impl PollerActor {
    /// A poller for `spec` starting from `state` (fresh, or resumed), reporting its
    /// outcome to `done`.
    pub fn new(
        env: Rc<PollerEnv>,
        spec: ActionSpec,
        claim: Claim,
        state: ActionState,
        done: Recipient<ActionDone>,
    ) -> Self {
        let machine = Machine::new(spec.identity.clone(), state);
        PollerActor {
            env,
            spec,
            claim,
            machine: Rc::new(RefCell::new(machine)),
            done,
            reload: false,
            panic: None,
        }
    }

    fn spawn_drive(&mut self, ctx: &mut Context<Self>) {
        // At error level, so its fields (batch, key, action_id) are on every line about the
        // action whatever level the filter lets through.
        let span = tracing::error_span!(
            "action",
            batch = %self.spec.identity.batch,
            key = %self.spec.identity.key,
            action_id = tracing::field::Empty,
            attempt = tracing::field::Empty,
        );
        let (env, spec, machine, claim) = (self.env.clone(), self.spec.clone(), self.machine.clone(), self.claim);
        let reload = std::mem::take(&mut self.reload);
        let work = async move {
            if reload {
                match Box::pin(effects::reload(&env, claim)).await {
                    Some(row) => machine.borrow_mut().reload(row.to_state()),
                    None => return effects::lost(&machine, claim),
                }
            }
            // A resumed or restarted poller may never submit again: name its action now.
            {
                let m = machine.borrow();
                if let Some(id) = m.current_id() {
                    let span = tracing::Span::current();
                    span.record("attempt", m.state().attempt);
                    span.record("action_id", id);
                }
            }
            drive(env, spec, claim, machine).await
        }
        .instrument(span);
        let guarded = AssertUnwindSafe(work).catch_unwind();
        ctx.spawn(guarded.into_actor(self).map(|result, act, ctx| match result {
            Ok(done) => {
                act.done.do_send(ActionDone {
                    restarts: act.machine.borrow().state().restart_total,
                    ..done
                });
            }
            Err(panic) => {
                let message = crate::actors::singleton::panic_message(&panic);
                let action_id = act.machine.borrow().current_id().map(str::to_owned).unwrap_or_default();
                tracing::warn!(batch = %act.spec.identity.batch, key = %act.spec.identity.key, %action_id, panic = %message, "Poller crashed; restarting from its last known state.");
                act.panic = Some(message);
                ctx.stop();
            }
        }));
    }
}

impl Actor for PollerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let restarted = !self.machine.borrow().state().restarts.is_empty();
        if restarted {
            let delay = self
                .machine
                .borrow()
                .state()
                .restart_delay(self.env.supervisor.restart_backoff);
            ctx.run_later(delay, |act, ctx| act.spawn_drive(ctx));
        } else {
            self.spawn_drive(ctx);
        }
    }
}

impl Supervised for PollerActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        let panic = self.panic.take().unwrap_or_default();
        let policy = self.env.policy(&self.spec.identity.batch);
        let (_, record) = self.machine.borrow_mut().on_restart(&policy, panic, Instant::now());
        // The next run starts from the journal, not from what the crashed one left.
        self.reload = true;
        PollerRestarted {
            batch: &self.spec.identity.batch,
        }
        .emit();
        let audit = self.env.audit.clone();
        actix_rt::spawn(async move {
            send_until_answered(&audit, AppendAudit::new(record), MAILBOX_RETRY).await;
        });
    }
}

/// Runs the action from its current state to an outcome: asks the machine, performs the
/// effects, runs the step, feeds the result back.
///
/// Every step is awaited through `Box::pin`: an async fn is as large as its largest
/// await point, and this one lives as long as its action (100,000 of them may be in
/// flight), so the request futures are allocated only while they run.
async fn drive(env: Rc<PollerEnv>, spec: ActionSpec, claim: Claim, machine: Rc<RefCell<Machine>>) -> ActionDone {
    let batch = spec.identity.batch.clone();
    let mut decision = machine.borrow_mut().next(&env.policy(&batch), Instant::now());
    loop {
        let Decision { effects, step } = decision;
        if Box::pin(effects::perform(&env, claim, &machine, effects)).await == Held::Lost {
            return effects::lost(&machine, claim);
        }
        // A crash loop ends here, before the chaos point that may have caused it.
        if !machine.borrow().state().crash_loop {
            env.chaos_point();
        }
        let policy = env.policy(&batch);
        let deadline = machine.borrow().deadline(&policy);
        decision = match step {
            Step::Wait(at) => {
                actix_rt::time::sleep_until(at.into()).await;
                machine.borrow_mut().next(&env.policy(&batch), Instant::now())
            }
            Step::Submit { key, compensation } => {
                let body = if compensation {
                    let failed_id = machine.borrow().state().action_id.clone();
                    match env.rollback_body(&spec, failed_id.as_deref()) {
                        Some(body) => body,
                        // The template went away with a reload: the machine says what now.
                        None => {
                            decision = machine.borrow_mut().next(&env.policy(&batch), Instant::now());
                            continue;
                        }
                    }
                } else {
                    spec.body_bytes.clone()
                };
                let result = {
                    let _slot = env.request_slot().await;
                    Box::pin(env.call(deadline, async |token| {
                        env.client.submit(&token, body.clone(), key).await
                    }))
                    .await
                };
                let policy = env.policy(&batch);
                machine
                    .borrow_mut()
                    .on_submit(&policy, result, &mut *env.rng.borrow_mut(), Instant::now())
            }
            Step::Poll { action_id } => {
                let result = {
                    let _slot = env.request_slot().await;
                    Box::pin(env.call(deadline, async |token| env.client.poll(&token, &action_id).await)).await
                };
                if let Ok(PollStatus::Running(status)) = &result {
                    tracing::debug!(%status, "Action still running.");
                }
                let policy = env.policy(&batch);
                machine
                    .borrow_mut()
                    .on_poll(&policy, result, &mut *env.rng.borrow_mut(), Instant::now())
            }
            Step::Classify(failure) => {
                let payload = Box::pin(env.classify(failure)).await;
                let policy = env.policy(&batch);
                machine
                    .borrow_mut()
                    .on_classified(&policy, payload, &mut *env.rng.borrow_mut(), Instant::now())
            }
            Step::Resolve(resolution) => {
                return Box::pin(effects::resolve(&env, claim, &machine, *resolution)).await;
            }
            Step::Report(outcome) => {
                let m = machine.borrow();
                let state = m.state();
                return ActionDone {
                    identity: spec.identity.clone(),
                    claim,
                    outcome: Some(outcome),
                    latency: state.latency_at(Instant::now()),
                    retries: state.retry_count,
                    restarts: state.restart_total,
                };
            }
        };
    }
}
