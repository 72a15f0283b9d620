//! Reading CXone's answers: poll bodies, submit ids, error bodies and `Retry-After`.
//! Everything here is pure, and lenient where the contract allows: what the upstream
//! sent is kept, what it left out stays out, and nothing is invented.

use std::time::{Duration, SystemTime};

use awc::http::header::HeaderMap;
use awc::http::StatusCode;
use serde::Deserialize;

use super::{CallError, PollStatus};
use crate::backoff::parse_retry_after;
use crate::classify::{UpstreamError, UpstreamFrame};

pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// A non-success status with what its body and headers say.
pub(super) fn status_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> CallError {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        errors: Vec<serde_json::Value>,
        #[serde(default)]
        error: Option<String>,
    }
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let first = parsed.as_ref().and_then(|p| p.errors.first());
    let code = first
        .and_then(|e| e.get("code"))
        .and_then(|c| c.as_str())
        .map(str::to_owned);
    let message = first
        .and_then(|e| e.get("message"))
        .and_then(|m| m.as_str())
        .map(str::to_owned)
        .or_else(|| parsed.as_ref().and_then(|p| p.error.clone()));
    CallError::Status {
        status: status.as_u16(),
        retry_after: retry_after(headers),
        code,
        message,
    }
}

/// The id of a submit response: the body's `id` wins over `X-Action-Id`.
pub(super) fn submitted_id(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let from_body = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| match v.get("id") {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        });
    from_body.or_else(|| {
        headers
            .get("x-action-id")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    })
}

/// Parses a poll body: a JSON object with a `status` string.
pub fn parse_poll(body: &[u8]) -> Result<PollStatus, CallError> {
    #[derive(Deserialize)]
    struct PollBody {
        status: Option<serde_json::Value>,
        #[serde(default)]
        errors: Option<serde_json::Value>,
    }
    let parsed: PollBody = serde_json::from_slice(body)
        .map_err(|e| CallError::Malformed(format!("poll body is not a JSON object: {e}")))?;
    let status = match parsed.status {
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err(CallError::Malformed("poll body `status` is not a string".into())),
        None => return Err(CallError::Malformed("poll body has no `status`".into())),
    };
    Ok(match status.to_ascii_uppercase().as_str() {
        "COMPLETED" => PollStatus::Completed,
        "CANCELLED" | "CANCELED" => PollStatus::Cancelled,
        "FAILED" => PollStatus::Failed(parse_errors(parsed.errors)),
        _ => PollStatus::Running(status),
    })
}

/// Reads `errors` leniently: what is there is kept, what is missing stays empty. A
/// `FAILED` without any error still yields one, named for what happened.
fn parse_errors(value: Option<serde_json::Value>) -> Vec<UpstreamError> {
    let items = match value {
        Some(serde_json::Value::Array(items)) if !items.is_empty() => items,
        _ => {
            return vec![UpstreamError {
                code: "UNKNOWN_ERROR".into(),
                message: "CXone reported FAILED without errors".into(),
                stack_trace: Vec::new(),
            }]
        }
    };
    items
        .into_iter()
        .map(|item| {
            let text = |k: &str| item.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            let stack_trace = match item.get("stackTrace") {
                Some(serde_json::Value::Array(frames)) => frames.iter().map(parse_frame).collect(),
                _ => Vec::new(),
            };
            UpstreamError {
                code: text("code").unwrap_or_else(|| "UNKNOWN_ERROR".into()),
                message: text("message").unwrap_or_default(),
                stack_trace,
            }
        })
        .collect()
}

/// One upstream frame; a field of an unexpected type is left out, not the whole frame.
fn parse_frame(frame: &serde_json::Value) -> UpstreamFrame {
    let text = |k: &str| frame.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let line = match frame.get("line") {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    UpstreamFrame {
        function: text("function"),
        file: text("file"),
        line,
        message: text("message"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_status_is_case_insensitive() {
        assert_eq!(parse_poll(br#"{"status":"completed"}"#).unwrap(), PollStatus::Completed);
        assert_eq!(parse_poll(br#"{"status":"Canceled"}"#).unwrap(), PollStatus::Cancelled);
        assert_eq!(parse_poll(br#"{"status":"CANCELLED"}"#).unwrap(), PollStatus::Cancelled);
        assert_eq!(
            parse_poll(br#"{"status":"IN_PROGRESS"}"#).unwrap(),
            PollStatus::Running("IN_PROGRESS".into())
        );
    }

    #[test]
    fn failed_poll_keeps_upstream_frames() {
        let body = br#"{"id":"1","status":"FAILED","errors":[{"code":"TIMEOUT","message":"slow","stackTrace":[{"function":"f","file":"F.java","line":12,"message":"m"}]}]}"#;
        let PollStatus::Failed(errors) = parse_poll(body).unwrap() else {
            panic!("not failed")
        };
        assert_eq!(errors[0].code, "TIMEOUT");
        assert_eq!(errors[0].stack_trace[0].line, Some(12));
    }

    #[test]
    fn frames_with_odd_fields_are_kept() {
        let body = br#"{"status":"FAILED","errors":[{"code":"X","stackTrace":[{"function":"f","line":"12"},{"function":7,"line":3}]}]}"#;
        let PollStatus::Failed(errors) = parse_poll(body).unwrap() else {
            panic!("not failed")
        };
        assert_eq!(errors[0].stack_trace.len(), 2);
        assert_eq!(errors[0].stack_trace[0].line, Some(12));
        assert_eq!(errors[0].stack_trace[1].function, None);
        let PollStatus::Failed(none) = parse_poll(br#"{"status":"FAILED","errors":[]}"#).unwrap() else {
            panic!()
        };
        assert_eq!(none[0].code, "UNKNOWN_ERROR");
    }

    #[test]
    fn malformed_polls_are_errors() {
        assert!(matches!(parse_poll(b"<html>"), Err(CallError::Malformed(_))));
        assert!(matches!(parse_poll(br#"{"id":"1"}"#), Err(CallError::Malformed(_))));
        assert!(matches!(parse_poll(br#"[1,2]"#), Err(CallError::Malformed(_))));
        assert!(matches!(parse_poll(br#"{"status":5}"#), Err(CallError::Malformed(_))));
    }

    #[test]
    fn body_id_wins_over_header() {
        let mut headers = awc::http::header::HeaderMap::new();
        headers.insert(
            awc::http::header::HeaderName::from_static("x-action-id"),
            "from-header".parse().unwrap(),
        );
        assert_eq!(
            submitted_id(&headers, br#"{"id":"from-body"}"#).as_deref(),
            Some("from-body")
        );
        assert_eq!(submitted_id(&headers, b"").as_deref(), Some("from-header"));
        assert_eq!(
            submitted_id(&headers, br#"{"status":"QUEUED"}"#).as_deref(),
            Some("from-header")
        );
        assert_eq!(submitted_id(&awc::http::header::HeaderMap::new(), b"{}"), None);
    }
}
