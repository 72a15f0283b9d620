//! `ClassifierActor`: turns a failure into a recovery directive and its `ErrorPayload`
//! (the rules and the payload are built in classify.rs; this actor only serves them).

use crate::classify::{classify, ErrorPayload, Failure, Rules};
use actix::prelude::*;

/// Classify a failure.
#[derive(Message)]
#[rtype(result = "ErrorPayload")]
pub struct Classify {
    /// What happened.
    pub failure: Failure,
}

/// The classifier.
pub struct ClassifierActor {
    rules: Rules,
}

impl ClassifierActor {
    /// A classifier over the configured rules.
    pub fn new(rules: Rules) -> Self {
        ClassifierActor { rules }
    }
}

impl Actor for ClassifierActor {
    type Context = Context<Self>;
}

impl Supervised for ClassifierActor {}

impl Handler<Classify> for ClassifierActor {
    type Result = MessageResult<Classify>;

    fn handle(&mut self, msg: Classify, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(classify(&self.rules, msg.failure))
    }
}
