//! `ClassifierActor`: turns a failure into a recovery directive and its `ErrorPayload`
//! (rules in classify.rs).

use actix::prelude::*;
use uuid::Uuid;

use crate::classify::{stack_trace_matrix, unix_now, ErrorPayload, Rules, StackFrame, UpstreamError};
use crate::config::Directive;

/// A failure to classify.
#[derive(Debug, Clone)]
pub struct Failure {
    /// CXone id, if one was obtained.
    pub action_id: Option<String>,
    /// HTTP status of the response that carried the failure; 0 when none came.
    pub status_code: u16,
    /// The upstream's errors (the first one gives code and message).
    pub errors: Vec<UpstreamError>,
    /// `Some` when the directive is not up to the rules (HTTP errors, timeouts, crash
    /// loops are dead letters whatever the codes say).
    pub forced: Option<Directive>,
    /// Frames that do not come from `errors` (panic messages of a crash loop); when
    /// present they are the whole matrix.
    pub extra_frames: Vec<StackFrame>,
    /// Retries spent so far.
    pub retry_count: u32,
    /// The budget.
    pub max_retries: u32,
}

impl Failure {
    /// A failure of our own making (HTTP status, timeout): one error, no upstream frames.
    pub fn local(action_id: Option<String>, status_code: u16, code: &str, message: String) -> Self {
        Failure {
            action_id,
            status_code,
            errors: vec![UpstreamError {
                code: code.to_owned(),
                message,
                stack_trace: Vec::new(),
            }],
            forced: Some(Directive::DeadLetter),
            extra_frames: Vec::new(),
            retry_count: 0,
            max_retries: 0,
        }
    }
}

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

/// The pure part of the handler.
pub fn classify(rules: &Rules, failure: Failure) -> ErrorPayload {
    let (code, message) = failure
        .errors
        .first()
        .map(|e| (e.code.clone(), e.message.clone()))
        .unwrap_or_else(|| ("UNKNOWN_ERROR".into(), String::new()));
    let directive = failure.forced.unwrap_or_else(|| rules.directive(&code));
    // Frames of our own (a crash loop's panic messages) replace the code-and-message
    // frame an error without upstream frames would otherwise contribute.
    let matrix = if failure.extra_frames.is_empty() {
        stack_trace_matrix(&failure.errors)
    } else {
        failure
            .extra_frames
            .into_iter()
            .enumerate()
            .map(|(i, frame)| StackFrame {
                frame_index: i,
                ..frame
            })
            .collect()
    };
    ErrorPayload {
        error_id: Uuid::new_v4(),
        action_id: failure.action_id,
        status_code: failure.status_code,
        error_code: code,
        message,
        stack_trace_matrix: matrix,
        recovery_directive: directive,
        retry_count: failure.retry_count,
        max_retries: failure.max_retries,
        created_at: unix_now(),
        resolved_at: None,
    }
}
