//! What the four singleton actors (token, classifier, dead letters, audit) share to
//! survive their own panics, and the chaos that proves it.
//!
//! A panic inside an actix handler does not make `actix::Supervisor` restart the actor: it
//! unwinds through the actor's task and kills it, and every later `send` fails. So each
//! handler body, and the completion of each future an actor spawns, runs under
//! `catch_unwind`; a panic becomes `ctx.stop()`, after which the Supervisor (which holds
//! the actor while a strong `Addr` exists) calls `restarting` then `started` on the same
//! instance, on the same address. Messages still queued stay in the mailbox for the
//! restarted actor; the one being handled is lost, and its sender, which sees its reply
//! lost as a `MailboxError`, sends it again.
//!
//! `Life` counts the restarts: each one is logged with its panic message and counted in
//! `actionwarden_actor_restarts_total{actor}`; more than `supervisor.max_restarts` inside
//! `restart_window` is a crash loop that dead-lettering one action cannot contain, so the
//! daemon stops (a fatal blocker, exit 3); until it has, the actor answers nothing.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use actix::dev::{MessageResponse, OneshotSender};
use actix::prelude::*;
use futures_util::FutureExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::{ChaosConfig, Singleton, SupervisorConfig};
use crate::health::{Blockers, SUPERVISOR};
use crate::telemetry::events::ActorRestarted;

/// A singleton's supervision state: its chaos draws, the panic that stopped it, and its
/// recent restarts.
pub struct Life {
    actor: Singleton,
    /// Panic probability per message (0 unless chaos is enabled for this actor).
    chaos: f64,
    /// The actor's own draws, seeded from `[chaos] seed`: a drill replays.
    rng: SmallRng,
    /// The message of the panic that stopped the actor, for `restarted`.
    panic: Option<String>,
    /// Restart times inside the window.
    restarts: VecDeque<Instant>,
    max_restarts: u32,
    window: Duration,
    blockers: Blockers,
    /// A crash loop was declared: the actor handles nothing more (the daemon is stopping).
    failed: bool,
}

impl Life {
    /// The supervision state of `actor`; `seed` is the run's chaos seed.
    pub fn new(
        actor: Singleton,
        chaos: &ChaosConfig,
        seed: u64,
        supervisor: &SupervisorConfig,
        blockers: Blockers,
    ) -> Self {
        Life {
            actor,
            chaos: chaos.singleton_probability(actor),
            rng: SmallRng::seed_from_u64(seed ^ actor.salt()),
            panic: None,
            restarts: VecDeque::new(),
            max_restarts: supervisor.max_restarts,
            window: supervisor.restart_window,
            blockers,
            failed: false,
        }
    }

    /// Which actor.
    pub fn actor(&self) -> Singleton {
        self.actor
    }

    /// Panics with the configured chaos probability (drills and tests only).
    fn chaos_point(&mut self) {
        if self.chaos > 0.0 && self.rng.random_bool(self.chaos) {
            panic!("chaos: injected {} actor panic", self.actor);
        }
    }

    /// Remembers why the actor is stopping.
    fn crashed(&mut self, panic: &Box<dyn std::any::Any + Send>) {
        self.panic = Some(panic_message(panic));
    }

    /// Called from `Supervised::restarting`: counts and logs the restart, and declares a
    /// crash loop past `max_restarts` inside the window. Returns the panic message.
    pub fn restarted(&mut self, now: Instant) -> String {
        let panic = self.panic.take().unwrap_or_else(|| "stopped without a panic".into());
        while self
            .restarts
            .front()
            .is_some_and(|at| now.duration_since(*at) > self.window)
        {
            self.restarts.pop_front();
        }
        self.restarts.push_back(now);
        let recent = self.restarts.len();
        ActorRestarted { actor: self.actor }.emit();
        tracing::warn!(actor = %self.actor, panic = %panic, restarts_in_window = recent, "Actor restarted after a panic.");
        if recent > self.max_restarts as usize && !self.failed {
            self.failed = true;
            let reason = format!(
                "the {} actor restarted {recent} times within {} (more than supervisor.max_restarts = {}); last panic: {panic}",
                self.actor,
                humantime::format_duration(self.window),
                self.max_restarts
            );
            tracing::error!(actor = %self.actor, %reason, "Actor in a crash loop; stopping the daemon.");
            self.blockers.fail(SUPERVISOR, reason);
        }
        panic
    }
}

/// A singleton actor: one that keeps a `Life`.
pub trait Supervise: Actor<Context = Context<Self>> + Supervised {
    /// Its supervision state.
    fn life(&mut self) -> &mut Life;
}

/// A handler's answer, or none when the handler panicked: the reply is then lost, as a
/// reply is lost when an actor dies, and the sender sees `MailboxError::Closed`.
pub struct Reply<R>(Option<R>);

impl<A, M, R> MessageResponse<A, M> for Reply<R>
where
    A: Actor,
    M: Message,
    R: MessageResponse<A, M>,
{
    fn handle(self, ctx: &mut A::Context, tx: Option<OneshotSender<M::Result>>) {
        if let Some(reply) = self.0 {
            reply.handle(ctx, tx);
        }
    }
}

/// A panic caught in work done outside a handler, carried to the actor by message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Panicked(pub String);

/// The text of a panic payload.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".into()
    }
}

/// Runs a handler's body: first the chaos point, then `body`; a panic in either stops
/// the actor for a supervised restart and loses the reply.
pub fn handle<A, R>(act: &mut A, ctx: &mut Context<A>, body: impl FnOnce(&mut A, &mut Context<A>) -> R) -> Reply<R>
where
    A: Supervise,
{
    if act.life().failed {
        // In a crash loop the daemon is stopping: answer nothing rather than crash again.
        return Reply(None);
    }
    let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
        act.life().chaos_point();
        body(act, ctx)
    }));
    match ran {
        Ok(reply) => Reply(Some(reply)),
        Err(panic) => {
            act.life().crashed(&panic);
            ctx.stop();
            Reply(None)
        }
    }
}

/// Runs work the actor does outside a handler (the completion of a spawned future, a
/// timer); a panic stops the actor for a supervised restart.
pub fn work<A, R>(act: &mut A, ctx: &mut Context<A>, body: impl FnOnce(&mut A, &mut Context<A>) -> R) -> Option<R>
where
    A: Supervise,
{
    match std::panic::catch_unwind(AssertUnwindSafe(|| body(act, ctx))) {
        Ok(value) => Some(value),
        Err(panic) => {
            act.life().crashed(&panic);
            ctx.stop();
            None
        }
    }
}

/// Spawns `future` into the actor's context and runs `then` with its output; a panic in
/// either stops the actor for a supervised restart (the future is dropped with it).
pub fn spawn<A, F>(
    act: &mut A,
    ctx: &mut Context<A>,
    future: F,
    then: impl FnOnce(F::Output, &mut A, &mut Context<A>) + 'static,
) where
    A: Supervise,
    F: Future + 'static,
{
    let guarded = AssertUnwindSafe(future).catch_unwind();
    ctx.spawn(guarded.into_actor(act).map(move |output, act, ctx| match output {
        Ok(output) => {
            work(act, ctx, move |act, ctx| then(output, act, ctx));
        }
        Err(panic) => {
            act.life().crashed(&panic);
            ctx.stop();
        }
    }));
}

/// Sends `msg` until the actor answers: a `MailboxError` (the reply lost to a restart) is
/// answered by sending the same message again after `pause`. For messages whose
/// handling is idempotent (deduplicated by the receiver).
pub async fn send_until_answered<A, M>(addr: &Addr<A>, msg: M, pause: Duration) -> M::Result
where
    A: Actor + Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: Message + Clone + Send + 'static,
    M::Result: Send,
{
    loop {
        match addr.send(msg.clone()).await {
            Ok(answer) => return answer,
            Err(_) => actix_rt::time::sleep(pause).await,
        }
    }
}
