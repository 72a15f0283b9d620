//! The fate of a simulated action: the `sim` directive of its payload, or a seeded draw
//! from the profile when it has none. Pure functions; the HTTP side lives in routes.rs.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::dice::{fnv1a, mix, subject_hash};
use super::Profile;

/// Code of the transient failure the `demo` and `chaos` profiles draw (the daemon retries it).
pub const TRANSIENT_CODE: &str = "TIMEOUT";

/// Codes of the permanent failures the `demo` and `chaos` profiles draw.
pub const PERMANENT_CODES: [&str; 2] = ["INVALID_CONTACT", "VALIDATION_FAILED"];

/// Share of drawn actions that fail with `TIMEOUT` on their first attempt only.
const TRANSIENT_SHARE: f64 = 0.08;
/// Share of drawn actions that fail with a permanent code on every attempt.
const PERMANENT_SHARE: f64 = 0.05;
/// Share of drawn actions that end `CANCELLED`.
const CANCELLED_SHARE: f64 = 0.04;
/// Bounds of the per-attempt duration drawn by `demo` and `chaos`, in milliseconds.
const DRAWN_DURATION_MS: (u64, u64) = (100, 600);

/// An invalid `sim` directive; the submit answers 400 with this text.
#[derive(Debug, thiserror::Error)]
pub enum FateError {
    /// The directive does not have the documented shape.
    #[error("invalid sim directive: {0}")]
    Shape(#[from] serde_json::Error),
    /// A status code outside 100..=599.
    #[error("invalid sim directive: {0} is not an HTTP status")]
    Status(u16),
    /// `retry_after` is neither `"N"` nor `"date:N"`.
    #[error("invalid sim directive: retry_after {0:?} is neither \"N\" nor \"date:N\"")]
    RetryAfter(String),
}

/// How one attempt of an action ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `COMPLETED` with a result.
    Completed,
    /// `FAILED` with one error.
    Failed { code: String, message: String },
    /// `CANCELLED`.
    Cancelled,
}

/// One upstream stack frame, as CXone reports it in `errors[*].stackTrace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: u32,
    pub message: String,
}

/// The `Retry-After` a directive asks for on its 429s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `"2"`: delta-seconds.
    Seconds(u64),
    /// `"date:2"`: an HTTP-date that many seconds in the future.
    DateIn(u64),
}

/// What the simulator does with every request about one action (one fate key).
#[derive(Debug, Clone, PartialEq)]
pub struct Fate {
    /// True when the payload carried a `sim` directive: no random faults apply.
    pub directed: bool,
    /// How the first `times` attempts end (every attempt when `times` is `None`).
    pub outcome: Outcome,
    pub times: Option<u32>,
    /// Submit -> terminal status, per attempt.
    pub duration: Duration,
    pub header_only: bool,
    pub no_id: bool,
    /// Statuses answered, in order, to the first submit requests.
    pub submit_status: Vec<u16>,
    /// Statuses answered, in order, to the first polls.
    pub poll_status: Vec<u16>,
    pub retry_after: Option<RetryAfter>,
    /// Polls after `poll_status` answered 200 with a non-JSON body.
    pub malformed_polls: u32,
    /// Polls after those answered 200 JSON without `status`.
    pub missing_status_polls: u32,
    /// Frames returned instead of the generated ones.
    pub stack: Option<Vec<Frame>>,
    /// A non-retriable answer to every submit: status and `errors` value.
    pub submit_body: Option<(u16, Value)>,
}

/// The profile inputs of a draw.
#[derive(Debug, Clone, Copy)]
pub struct Draw {
    pub profile: Profile,
    pub seed: u64,
    pub header_only_rate: f64,
}

/// The `sim` object of a payload, as written by a test or a demo file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Directive {
    outcome: Option<DirectedOutcome>,
    code: Option<String>,
    message: Option<String>,
    times: Option<u32>,
    #[serde(default, with = "crate::config::duration::optional")]
    duration: Option<Duration>,
    header_only: Option<bool>,
    no_id: Option<bool>,
    submit_status: Option<Vec<u16>>,
    poll_status: Option<Vec<u16>>,
    retry_after: Option<String>,
    malformed_polls: Option<u32>,
    missing_status_polls: Option<u32>,
    stack: Option<Vec<Frame>>,
    submit_body_status: Option<u16>,
    errors: Option<Value>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum DirectedOutcome {
    Completed,
    Failed,
    #[serde(alias = "CANCELED")]
    Cancelled,
}

impl Fate {
    /// The fate of the action whose payload is `payload`: its `sim` directive if present,
    /// else a draw seeded by `draw.seed` and the fate key, so runs are reproducible.
    pub fn resolve(payload: &Value, draw: &Draw, fate_key: &str) -> Result<Fate, FateError> {
        match payload.get("sim") {
            Some(sim) => Fate::directed(Directive::deserialize(sim)?),
            None => Ok(Fate::drawn(draw, fate_key)),
        }
    }

    /// How attempt `attempt` (1-based) ends.
    pub fn outcome_of(&self, attempt: u32) -> &Outcome {
        match self.times {
            Some(times) if attempt > times => &Outcome::Completed,
            _ => &self.outcome,
        }
    }

    /// The frames a `FAILED` attempt reports for `code`.
    pub fn stack_for(&self, code: &str) -> Vec<Frame> {
        self.stack.clone().unwrap_or_else(|| generated_stack(code))
    }

    fn directed(d: Directive) -> Result<Fate, FateError> {
        let outcome = match d.outcome {
            Some(DirectedOutcome::Completed) | None => Outcome::Completed,
            Some(DirectedOutcome::Cancelled) => Outcome::Cancelled,
            Some(DirectedOutcome::Failed) => {
                let code = d.code.clone().unwrap_or_else(|| TRANSIENT_CODE.into());
                let message = d.message.clone().unwrap_or_else(|| default_message(&code));
                Outcome::Failed { code, message }
            }
        };
        let submit_status = checked_statuses(d.submit_status.unwrap_or_default())?;
        let poll_status = checked_statuses(d.poll_status.unwrap_or_default())?;
        let retry_after = d.retry_after.as_deref().map(parse_retry_after).transpose()?;
        let submit_body = match d.submit_body_status {
            None => None,
            Some(status) => {
                checked_statuses(vec![status])?;
                let code = d.code.unwrap_or_else(|| "VALIDATION_FAILED".into());
                let errors = d.errors.unwrap_or_else(|| {
                    let message = d.message.unwrap_or_else(|| default_message(&code));
                    serde_json::json!([{ "code": code, "message": message }])
                });
                Some((status, errors))
            }
        };
        Ok(Fate {
            directed: true,
            outcome,
            times: d.times,
            duration: d.duration.unwrap_or_default(),
            header_only: d.header_only.unwrap_or(false),
            no_id: d.no_id.unwrap_or(false),
            submit_status,
            poll_status,
            retry_after,
            malformed_polls: d.malformed_polls.unwrap_or(0),
            missing_status_polls: d.missing_status_polls.unwrap_or(0),
            stack: d.stack,
            submit_body,
        })
    }

    fn drawn(draw: &Draw, fate_key: &str) -> Fate {
        let mut rng = SmallRng::seed_from_u64(mix(draw.seed, subject_hash(fate_key)));
        let header_only = rng.random_bool(draw.header_only_rate.clamp(0.0, 1.0));
        let (outcome, times, duration) = match draw.profile {
            Profile::Clean => (Outcome::Completed, None, Duration::ZERO),
            Profile::Demo | Profile::Chaos => {
                let roll: f64 = rng.random();
                let code_pick = rng.random_range(0..PERMANENT_CODES.len());
                let millis = rng.random_range(DRAWN_DURATION_MS.0..=DRAWN_DURATION_MS.1);
                let (outcome, times) = if roll < TRANSIENT_SHARE {
                    (failed(TRANSIENT_CODE), Some(1))
                } else if roll < TRANSIENT_SHARE + PERMANENT_SHARE {
                    (failed(PERMANENT_CODES[code_pick]), None)
                } else if roll < TRANSIENT_SHARE + PERMANENT_SHARE + CANCELLED_SHARE {
                    (Outcome::Cancelled, None)
                } else {
                    (Outcome::Completed, None)
                };
                (outcome, times, Duration::from_millis(millis))
            }
        };
        Fate {
            directed: false,
            outcome,
            times,
            duration,
            header_only,
            no_id: false,
            submit_status: Vec::new(),
            poll_status: Vec::new(),
            retry_after: None,
            malformed_polls: 0,
            missing_status_polls: 0,
            stack: None,
            submit_body: None,
        }
    }
}

/// The canonical JSON text of a payload (object keys sorted at every level): the fate key.
pub fn fate_key(payload: &Value) -> String {
    let mut out = String::new();
    write_canonical(payload, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Parses `"2"` (delta-seconds) or `"date:2"` (an HTTP-date 2s ahead).
pub fn parse_retry_after(text: &str) -> Result<RetryAfter, FateError> {
    let bad = || FateError::RetryAfter(text.to_string());
    match text.trim().strip_prefix("date:") {
        Some(secs) => secs.trim().parse().map(RetryAfter::DateIn).map_err(|_| bad()),
        None => text.trim().parse().map(RetryAfter::Seconds).map_err(|_| bad()),
    }
}

/// The message CXone gives for a code when the directive names none.
pub fn default_message(code: &str) -> String {
    match code {
        "TIMEOUT" => "The data action did not finish within 30000 ms".into(),
        "INVALID_CONTACT" => "The contact does not exist or is closed".into(),
        "VALIDATION_FAILED" => "The payload failed validation".into(),
        other => format!("The data action failed with {other}"),
    }
}

/// Realistic upstream frames, 2 or 3, the same for the same code.
pub fn generated_stack(code: &str) -> Vec<Frame> {
    let hash = fnv1a(code.as_bytes());
    let shift = u32::try_from(hash % 17).unwrap_or(0);
    let frame = |function: &str, file: &str, line: u32, message: String| Frame {
        function: function.into(),
        file: file.into(),
        line: line + shift,
        message,
    };
    let innermost = match code {
        "TIMEOUT" => frame(
            "RestConnector.invoke",
            "RestConnector.java",
            88,
            "Read timed out after 30000 ms".into(),
        ),
        "INVALID_CONTACT" => frame(
            "ContactRepository.update",
            "ContactRepository.java",
            131,
            "Contact not found or closed".into(),
        ),
        "VALIDATION_FAILED" => frame(
            "PayloadValidator.validate",
            "PayloadValidator.java",
            57,
            "Field 'value' failed validation".into(),
        ),
        other => frame(
            "CrmGateway.send",
            "CrmGateway.java",
            163,
            format!("Upstream answered {other}"),
        ),
    };
    let mut frames = vec![
        innermost,
        frame(
            "DataActionExecutor.execute",
            "DataActionExecutor.java",
            214,
            format!("Data action failed with {code}"),
        ),
    ];
    if hash.is_multiple_of(2) {
        frames.push(frame(
            "ActionWorker.run",
            "ActionWorker.java",
            402,
            "Attempt aborted".into(),
        ));
    }
    frames
}

fn failed(code: &str) -> Outcome {
    Outcome::Failed {
        code: code.into(),
        message: default_message(code),
    }
}

fn checked_statuses(statuses: Vec<u16>) -> Result<Vec<u16>, FateError> {
    match statuses.iter().find(|s| !(100..=599).contains(*s)) {
        Some(bad) => Err(FateError::Status(*bad)),
        None => Ok(statuses),
    }
}

#[cfg(test)]
mod tests;
