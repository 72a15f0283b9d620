//! `ClassifierActor`: turns a failure into a recovery directive and its `ErrorPayload`
//! (the rules and the payload are built in classify.rs; this actor only serves them).
//! It holds nothing but the rules, so a restart after a panic has nothing to rebuild.

use actix::prelude::*;

use super::singleton::{self, Life, Reply, Supervise};
use crate::classify::{classify, ErrorPayload, Failure, Rules};

/// Classify a failure.
#[derive(Message, Clone)]
#[rtype(result = "ErrorPayload")]
pub struct Classify {
    /// What happened.
    pub failure: Failure,
}

/// The classifier.
pub struct ClassifierActor {
    rules: Rules,
    life: Life,
}

impl ClassifierActor {
    /// A classifier over the configured rules.
    pub fn new(rules: Rules, life: Life) -> Self {
        ClassifierActor { rules, life }
    }
}

impl Actor for ClassifierActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(crate::actors::MAILBOX_CAPACITY);
    }
}

impl Supervised for ClassifierActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.life.restarted(std::time::Instant::now());
    }
}

impl Supervise for ClassifierActor {
    fn life(&mut self) -> &mut Life {
        &mut self.life
    }
}

impl Handler<Classify> for ClassifierActor {
    type Result = Reply<MessageResult<Classify>>;

    fn handle(&mut self, msg: Classify, ctx: &mut Context<Self>) -> Self::Result {
        singleton::handle(self, ctx, |act, _| MessageResult(classify(&act.rules, msg.failure)))
    }
}
