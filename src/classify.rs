//! Classification (docs/cxone.md, Classification): error code -> recovery directive by
//! the `[classifier]` rules, and the `ErrorPayload` that records a failure with the
//! upstream's own frames.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{ClassifierConfig, Directive};

/// One frame of an upstream `stackTrace`, as CXone sent it. Missing fields stay missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpstreamFrame {
    /// Function or method name.
    pub function: Option<String>,
    /// Source file.
    pub file: Option<String>,
    /// Line number.
    pub line: Option<i64>,
    /// Frame message.
    pub message: Option<String>,
}

/// One entry of an upstream `errors` list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpstreamError {
    /// Error code, e.g. `TIMEOUT`.
    pub code: String,
    /// Human message.
    pub message: String,
    /// The upstream's frames, possibly empty.
    #[serde(rename = "stackTrace")]
    pub stack_trace: Vec<UpstreamFrame>,
}

/// One row of the `stack_trace_matrix`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackFrame {
    /// Position, from 0.
    pub frame_index: usize,
    /// Function (or the error code for an error without frames).
    pub function: Option<String>,
    /// File.
    pub file: Option<String>,
    /// Line.
    pub line: Option<i64>,
    /// Message.
    pub message: Option<String>,
}

/// The seed's `ErrorPayload`, built by the `ClassifierActor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorPayload {
    /// UUID v4 of this failure.
    pub error_id: Uuid,
    /// The CXone id; `None` if none was ever obtained.
    pub action_id: Option<String>,
    /// HTTP status of the response that carried the failure; 0 when none came.
    pub status_code: u16,
    /// Error code.
    pub error_code: String,
    /// Message.
    pub message: String,
    /// Upstream frames, numbered.
    pub stack_trace_matrix: Vec<StackFrame>,
    /// What was decided.
    pub recovery_directive: Directive,
    /// Retries spent.
    pub retry_count: u32,
    /// Budget.
    pub max_retries: u32,
    /// Unix seconds when the failure was classified.
    pub created_at: f64,
    /// Unix seconds when it was resolved (dead-lettered or rolled back).
    pub resolved_at: Option<f64>,
}

/// A failure to classify.
#[derive(Debug, Clone, PartialEq)]
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

/// A code rule: exact, or a prefix when written with a trailing `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn new(text: &str) -> Self {
        match text.strip_suffix('*') {
            Some(prefix) => Pattern::Prefix(prefix.to_owned()),
            None => Pattern::Exact(text.to_owned()),
        }
    }

    fn matches(&self, code: &str) -> bool {
        match self {
            Pattern::Exact(c) => c == code,
            Pattern::Prefix(p) => code.starts_with(p.as_str()),
        }
    }
}

/// The compiled `[classifier]` rules.
#[derive(Debug, Clone)]
pub struct Rules {
    retry: Vec<Pattern>,
    rollback: Vec<Pattern>,
    default: Directive,
}

impl Rules {
    /// Compiles the configured rules.
    pub fn new(config: &ClassifierConfig) -> Self {
        Rules {
            retry: config.retry.iter().map(|c| Pattern::new(c)).collect(),
            rollback: config.rollback.iter().map(|c| Pattern::new(c)).collect(),
            default: config.default,
        }
    }

    /// The directive for `code`: `retry` rules first, then `rollback`, else the default.
    pub fn directive(&self, code: &str) -> Directive {
        if self.retry.iter().any(|p| p.matches(code)) {
            Directive::Retry
        } else if self.rollback.iter().any(|p| p.matches(code)) {
            Directive::Rollback
        } else {
            self.default
        }
    }
}

/// Numbers the upstream frames of every error in order; an error without frames
/// contributes one frame made from its code and message. Nothing is invented.
pub fn stack_trace_matrix(errors: &[UpstreamError]) -> Vec<StackFrame> {
    let mut rows = Vec::new();
    for error in errors {
        if error.stack_trace.is_empty() {
            rows.push(StackFrame {
                frame_index: rows.len(),
                function: Some(error.code.clone()),
                file: None,
                line: None,
                message: Some(error.message.clone()),
            });
        }
        for frame in &error.stack_trace {
            rows.push(StackFrame {
                frame_index: rows.len(),
                function: frame.function.clone(),
                file: frame.file.clone(),
                line: frame.line,
                message: frame.message.clone(),
            });
        }
    }
    rows
}

/// Builds the `ErrorPayload` of a failure: its code and message from the first error, its
/// directive from the rules (unless forced), its frames numbered in order.
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
        error_id: crate::audit::new_event_id(),
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

/// Current time as fractional Unix seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(retry: &[&str], rollback: &[&str], default: Directive) -> Rules {
        Rules::new(&ClassifierConfig {
            retry: retry.iter().map(|s| s.to_string()).collect(),
            rollback: rollback.iter().map(|s| s.to_string()).collect(),
            default,
        })
    }

    #[test]
    fn exact_codes_pick_their_list() {
        let r = rules(&["TIMEOUT"], &["PARTIAL_WRITE"], Directive::DeadLetter);
        assert_eq!(r.directive("TIMEOUT"), Directive::Retry);
        assert_eq!(r.directive("PARTIAL_WRITE"), Directive::Rollback);
        assert_eq!(r.directive("TIMEOUTX"), Directive::DeadLetter);
        assert_eq!(r.directive("timeout"), Directive::DeadLetter);
    }

    #[test]
    fn trailing_star_matches_a_prefix() {
        let r = rules(&["NET_*"], &["TX*"], Directive::DeadLetter);
        assert_eq!(r.directive("NET_RESET"), Directive::Retry);
        assert_eq!(r.directive("NET_"), Directive::Retry);
        assert_eq!(r.directive("NE"), Directive::DeadLetter);
        assert_eq!(r.directive("TX_ABORTED"), Directive::Rollback);
    }

    #[test]
    fn retry_wins_over_rollback_and_default_applies_last() {
        let r = rules(&["A*"], &["AB"], Directive::Rollback);
        assert_eq!(r.directive("AB"), Directive::Retry);
        assert_eq!(r.directive("ZZZ"), Directive::Rollback);
    }

    #[test]
    fn matrix_keeps_upstream_frames_in_order() {
        let errors = vec![
            UpstreamError {
                code: "X".into(),
                message: "m".into(),
                stack_trace: vec![
                    UpstreamFrame {
                        function: Some("f1".into()),
                        file: Some("a.java".into()),
                        line: Some(3),
                        message: Some("one".into()),
                    },
                    UpstreamFrame {
                        function: Some("f2".into()),
                        file: None,
                        line: None,
                        message: None,
                    },
                ],
            },
            UpstreamError {
                code: "Y".into(),
                message: "no frames".into(),
                stack_trace: vec![],
            },
        ];
        let m = stack_trace_matrix(&errors);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].frame_index, 0);
        assert_eq!(m[0].function.as_deref(), Some("f1"));
        assert_eq!(m[1].file, None);
        assert_eq!(m[2].function.as_deref(), Some("Y"));
        assert_eq!(m[2].message.as_deref(), Some("no frames"));
    }
}
