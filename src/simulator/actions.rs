//! The action side of the simulator state: submits create actions (one per attempt) and
//! polls report them, each as its fate says. Counters and faults come from state.rs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::fate::{self, Draw, Fate, Outcome};
use super::reply::{invalid_request, json_reply, not_found, unauthorized, Reply};
use super::state::{Config, Endpoint, Inner};

/// Everything the simulator remembers about one fate key.
pub struct FateEntry {
    pub(super) fate: Fate,
    /// Attempts seen: distinct Idempotency-Keys, plus every submit without one.
    pub(super) attempts: u32,
    pub(super) submits: u32,
    pub(super) polls: u32,
}

/// What the simulator remembers about one Idempotency-Key.
pub struct KeyEntry {
    attempt: u32,
    /// The action created for it, once one is.
    action: Option<String>,
    submits: u64,
}

/// One CXone action: one attempt of one fate key.
pub struct ActionRecord {
    fate: usize,
    attempt: u32,
    submitted: Instant,
}

impl Inner {
    /// `POST /api/v2/data/actions`; also returns the latency to add.
    pub fn submit(
        &mut self,
        cfg: &Config,
        bearer: Option<&str>,
        idempotency_key: Option<&str>,
        body: &[u8],
        now: Instant,
    ) -> (Reply, Duration) {
        let (reply, directed) = self.decide_submit(cfg, bearer, idempotency_key, body, now);
        let delay = if directed { Duration::ZERO } else { self.latency() };
        (self.finish(cfg, Endpoint::Submit, now, reply), delay)
    }

    /// `GET /api/v2/data/actions/{id}`; also returns the latency to add.
    pub fn poll(&mut self, cfg: &Config, bearer: Option<&str>, id: &str, now: Instant) -> (Reply, Duration) {
        let (reply, directed) = self.decide_poll(bearer, id, now);
        let delay = if directed { Duration::ZERO } else { self.latency() };
        (self.finish(cfg, Endpoint::Poll, now, reply), delay)
    }

    /// The submit's reply and whether its action is directed (no random faults, no latency).
    fn decide_submit(
        &mut self,
        cfg: &Config,
        bearer: Option<&str>,
        idempotency_key: Option<&str>,
        body: &[u8],
        now: Instant,
    ) -> (Reply, bool) {
        self.stats.submits += 1;
        if !self.authorized(bearer, now) {
            return (unauthorized(), false);
        }
        let request: Value = match serde_json::from_slice(body) {
            Ok(value @ Value::Object(_)) => value,
            Ok(_) => return (invalid_request("the body must be a JSON object"), false),
            Err(e) => return (invalid_request(&format!("the body is not JSON: {e}")), false),
        };
        let payload = request.get("payload").unwrap_or(&Value::Null);
        // The compensations of one rollback template share a payload; the daemon's
        // `metadata.key` tells them apart.
        let owner = request.pointer("/metadata/key").and_then(Value::as_str);
        let index = match self.fate_for(cfg, payload, owner) {
            Ok(index) => index,
            Err(e) => return (invalid_request(&e.to_string()), false),
        };

        let entry = &mut self.fates[index];
        entry.submits += 1;
        let nth_submit = entry.submits as usize;
        let (attempt, existing) = match idempotency_key {
            Some(key) => {
                let known = self.keys.entry(key.to_string()).or_insert_with(|| {
                    entry.attempts += 1;
                    KeyEntry {
                        attempt: entry.attempts,
                        action: None,
                        submits: 0,
                    }
                });
                known.submits += 1;
                let max = &mut self.stats.submits_by_idempotency_key_max;
                *max = (*max).max(known.submits);
                (known.attempt, known.action.clone())
            }
            None => {
                entry.attempts += 1;
                (entry.attempts, None)
            }
        };

        let directed = self.fates[index].fate.directed;
        if !directed {
            if let Some(fault) = self.random_fault(false) {
                return (fault, false);
            }
        }
        let fate = &self.fates[index].fate;
        if let Some(&status) = fate.submit_status.get(nth_submit - 1) {
            let retry_after = fate.retry_after;
            return (self.forced(status, retry_after), directed);
        }
        let (header_only, no_id) = (fate.header_only, fate.no_id);
        if let Some(id) = existing {
            self.stats.duplicate_submits += 1;
            return (Reply::Accepted { id, header_only, no_id }, directed);
        }
        if let Some((status, errors)) = &fate.submit_body {
            return (json_reply(*status, json!({ "errors": errors })), directed);
        }

        let id = self.new_uuid().to_string();
        self.actions.insert(
            id.clone(),
            ActionRecord {
                fate: index,
                attempt,
                submitted: now,
            },
        );
        if let Some(known) = idempotency_key.and_then(|key| self.keys.get_mut(key)) {
            known.action = Some(id.clone());
        }
        self.stats.actions_created += 1;
        if self.created.len() >= super::state::CREATED_LOG_CAP {
            self.created.pop_front();
        }
        self.created.push_back(json!({
            "id": id,
            "idempotency_key": idempotency_key,
            "metadata": request.get("metadata").cloned().unwrap_or(Value::Null),
            "payload": payload.clone(),
        }));
        (Reply::Accepted { id, header_only, no_id }, directed)
    }

    fn decide_poll(&mut self, bearer: Option<&str>, id: &str, now: Instant) -> (Reply, bool) {
        self.stats.polls += 1;
        if !self.authorized(bearer, now) {
            return (unauthorized(), false);
        }
        let Some(record) = self.actions.get(id) else {
            let reply = self.random_fault(true).unwrap_or_else(|| not_found(id));
            return (reply, false);
        };
        let (index, attempt, submitted) = (record.fate, record.attempt, record.submitted);
        let entry = &mut self.fates[index];
        entry.polls += 1;
        let nth_poll = entry.polls as usize;
        let directed = entry.fate.directed;
        if !directed {
            if let Some(fault) = self.random_fault(true) {
                return (fault, false);
            }
        }

        let fate = &self.fates[index].fate;
        if let Some(&status) = fate.poll_status.get(nth_poll - 1) {
            let retry_after = fate.retry_after;
            return (self.forced(status, retry_after), directed);
        }
        // Polls after the forced statuses: first the malformed ones, then those without status.
        let after_forced = nth_poll - fate.poll_status.len();
        let malformed = fate.malformed_polls as usize;
        if after_forced <= malformed {
            return (Reply::Malformed, directed);
        }
        if after_forced <= malformed + fate.missing_status_polls as usize {
            return (json_reply(200, json!({ "id": id })), directed);
        }

        let elapsed = now.saturating_duration_since(submitted);
        let body = if elapsed < fate.duration {
            let status = if elapsed < fate.duration / 4 {
                "QUEUED"
            } else {
                "IN_PROGRESS"
            };
            json!({ "id": id, "status": status })
        } else {
            match fate.outcome_of(attempt) {
                Outcome::Completed => {
                    json!({"id": id, "status": "COMPLETED", "result": {"updated": true}})
                }
                Outcome::Cancelled => json!({"id": id, "status": "CANCELLED"}),
                Outcome::Failed { code, message } => json!({
                    "id": id,
                    "status": "FAILED",
                    "errors": [{"code": code, "message": message, "stackTrace": fate.stack_for(code)}],
                }),
            }
        };
        (json_reply(200, body), directed)
    }

    /// The index of the fate of `payload`, resolving it on first sight.
    fn fate_for(&mut self, cfg: &Config, payload: &Value, owner: Option<&str>) -> Result<usize, fate::FateError> {
        let mut key = fate::fate_key(payload);
        if let Some(owner) = owner {
            key.push('\u{0}');
            key.push_str(owner);
        }
        if let Some(&index) = self.fate_index.get(&key) {
            return Ok(index);
        }
        let draw = Draw {
            profile: cfg.profile,
            seed: cfg.seed,
            header_only_rate: self.knobs.header_only_rate,
        };
        let fate = Fate::resolve(payload, &draw, &key)?;
        self.fates.push(FateEntry {
            fate,
            attempts: 0,
            submits: 0,
            polls: 0,
        });
        self.fate_index.insert(key, self.fates.len() - 1);
        Ok(self.fates.len() - 1)
    }
}
