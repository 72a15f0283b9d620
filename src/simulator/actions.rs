//! The action side of the simulator state: submits create actions (one per attempt) and
//! polls report them, each as its fate says. Counters and faults come from state.rs.
//!
//! Random faults are drawn per attempt (dice.rs), on its submits and on the polls that
//! answer it once it has finished. Polls of an attempt still running are never faulted:
//! how many of those a daemon makes depends on timing, and faulting them would make one
//! seed tell different stories.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use super::dice::{attempt_hash, subject_hash, Dice, Topic};
use super::fate::{self, Draw, Fate, Outcome};
use super::reply::{invalid_request, json_reply, not_found, unauthorized, Reply};
use super::state::{Config, Endpoint, Inner};

/// Namespace of the action ids derived from the seed and an attempt, so one seed gives
/// the same ids on every run.
const ACTION_ID_NAMESPACE: Uuid = Uuid::from_u128(0x3c1d_9a7e_52f0_4b8e_a6d2_17e9_c40b_5f38);

/// Everything the simulator remembers about one fate key.
pub struct FateEntry {
    pub(super) fate: Fate,
    /// Hash of the fate key: the subject of draws about attempts without an Idempotency-Key.
    pub(super) subject: u64,
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
    /// The subject of this attempt's draws.
    subject: u64,
    /// Polls answered since the attempt finished: the rank of the next poll's draws.
    answering_polls: u32,
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
        let (reply, directed) = self.decide_poll(cfg, bearer, id, now);
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
        // The attempt, its action if one exists, and the subject and rank of its draws.
        let (attempt, existing, subject, rank) = match idempotency_key {
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
                (known.attempt, known.action.clone(), subject_hash(key), known.submits)
            }
            None => {
                entry.attempts += 1;
                (entry.attempts, None, attempt_hash(entry.subject, entry.attempts), 1)
            }
        };
        let mut dice = Dice::new(cfg.seed, subject, Topic::Submit, rank);

        let directed = self.fates[index].fate.directed;
        if !directed {
            if let Some(fault) = self.random_fault(&mut dice, false) {
                return (fault, false);
            }
        }
        let fate = &self.fates[index].fate;
        if let Some(&status) = fate.submit_status.get(nth_submit - 1) {
            let retry_after = fate.retry_after;
            return (self.forced(status, retry_after, &mut dice), directed);
        }
        let (header_only, no_id) = (fate.header_only, fate.no_id);
        if let Some(id) = existing {
            self.stats.duplicate_submits += 1;
            return (Reply::Accepted { id, header_only, no_id }, directed);
        }
        if let Some((status, errors)) = &fate.submit_body {
            return (json_reply(*status, json!({ "errors": errors })), directed);
        }

        let id = self.action_id(cfg.seed, subject);
        self.actions.insert(
            id.clone(),
            ActionRecord {
                fate: index,
                attempt,
                submitted: now,
                subject,
                answering_polls: 0,
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

    fn decide_poll(&mut self, cfg: &Config, bearer: Option<&str>, id: &str, now: Instant) -> (Reply, bool) {
        self.stats.polls += 1;
        if !self.authorized(bearer, now) {
            return (unauthorized(), false);
        }
        let Some(record) = self.actions.get_mut(id) else {
            let mut dice = self.loose_dice(cfg);
            let reply = self.random_fault(&mut dice, true).unwrap_or_else(|| not_found(id));
            return (reply, false);
        };
        let entry = &mut self.fates[record.fate];
        entry.polls += 1;
        let nth_poll = entry.polls as usize;
        let directed = entry.fate.directed;
        let finished = now.saturating_duration_since(record.submitted) >= entry.fate.duration;
        if !directed && finished {
            record.answering_polls += 1;
            let rank = u64::from(record.answering_polls);
            let mut dice = Dice::new(cfg.seed, record.subject, Topic::Poll, rank);
            if let Some(fault) = self.random_fault(&mut dice, true) {
                return (fault, false);
            }
        }
        let record = &self.actions[id];
        let (index, attempt, submitted) = (record.fate, record.attempt, record.submitted);
        let mut dice = Dice::new(cfg.seed, record.subject, Topic::Poll, nth_poll as u64);

        let fate = &self.fates[index].fate;
        if let Some(&status) = fate.poll_status.get(nth_poll - 1) {
            let retry_after = fate.retry_after;
            return (self.forced(status, retry_after, &mut dice), directed);
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

    /// The id of the action created for an attempt: derived from the seed and the
    /// attempt, so one seed gives the same ids; random on the rare clash of two hashes.
    fn action_id(&mut self, seed: u64, subject: u64) -> String {
        let mut name = [0u8; 16];
        name[..8].copy_from_slice(&seed.to_le_bytes());
        name[8..].copy_from_slice(&subject.to_le_bytes());
        let id = Uuid::new_v5(&ACTION_ID_NAMESPACE, &name).to_string();
        if self.actions.contains_key(&id) {
            self.new_uuid().to_string()
        } else {
            id
        }
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
            subject: subject_hash(&key),
            attempts: 0,
            submits: 0,
            polls: 0,
        });
        self.fate_index.insert(key, self.fates.len() - 1);
        Ok(self.fates.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::state::Shared;
    use super::super::{Profile, SimulatorSettings};
    use super::*;

    /// A `chaos`-like simulator whose faults hit often, with a token to use.
    fn simulator() -> (Shared, String) {
        let settings = SimulatorSettings {
            profile: Profile::Demo,
            seed: 42,
            rate_limit_rate: Some(0.2),
            server_error_rate: Some(0.1),
            malformed_rate: Some(0.1),
            ..SimulatorSettings::default()
        };
        let sim = Shared::new(&settings, "secret".into(), None);
        let reply = sim.lock().token(
            &sim.config,
            Some("client_credentials"),
            Some("simulator"),
            Some("secret"),
            Instant::now(),
        );
        let Reply::Json { body, .. } = reply else {
            panic!("a token: {reply:?}")
        };
        let token = body["access_token"].as_str().unwrap().to_owned();
        (sim, token)
    }

    /// The story of `keys`, submitted (each up to three times, as a daemon repeats a
    /// refused submit) and polled (until answered) in the given order: per key, what
    /// every request got.
    fn story(keys: &[String]) -> Vec<(String, Vec<String>)> {
        let (sim, token) = simulator();
        let later = Instant::now() + Duration::from_secs(5);
        let mut told: Vec<(String, Vec<String>)> = Vec::new();
        for key in keys {
            let body = serde_json::to_vec(&json!({"actionType": "X", "payload": {"contact": key}})).unwrap();
            let mut seen = Vec::new();
            let mut id = None;
            for _ in 0..3 {
                let (reply, _) = sim.lock().submit(&sim.config, Some(&token), Some(key), &body, later);
                seen.push(format!("submit {}", reply.status()));
                if let Reply::Accepted { id: accepted, .. } = reply {
                    seen.push(format!("id {accepted}"));
                    id = Some(accepted);
                    break;
                }
            }
            let Some(id) = id else {
                told.push((key.clone(), seen));
                continue;
            };
            // Long after the drawn duration: every poll answers the finished attempt.
            let polled = later + Duration::from_secs(5);
            for _ in 0..5 {
                let (reply, _) = sim.lock().poll(&sim.config, Some(&token), &id, polled);
                let status = match &reply {
                    Reply::Json { body, .. } => body["status"].as_str().map(str::to_owned),
                    _ => None,
                };
                seen.push(format!("poll {} {status:?}", reply.status()));
                if status.is_some() {
                    break;
                }
            }
            told.push((key.clone(), seen));
        }
        told.sort();
        told
    }

    #[test]
    fn one_seed_tells_one_story_whatever_the_request_order() {
        let keys: Vec<String> = (0..200).map(|i| format!("idem-{i}")).collect();
        let mut reversed = keys.clone();
        reversed.reverse();
        let forward = story(&keys);
        assert_eq!(forward, story(&reversed));
        let faults = forward
            .iter()
            .flat_map(|(_, seen)| seen)
            .filter(|s| s.contains(" 429") || s.contains(" 503") || s.starts_with("poll 200 None"))
            .count();
        assert!(faults > 20, "the faults were exercised: {faults}");
    }

    #[test]
    fn polls_of_a_running_attempt_are_never_faulted() {
        let (sim, token) = simulator();
        let now = Instant::now();
        let body = serde_json::to_vec(&json!({"actionType": "X", "payload": {"contact": "slow"}})).unwrap();
        let mut id = None;
        for n in 0..20 {
            let (reply, _) = sim
                .lock()
                .submit(&sim.config, Some(&token), Some(&format!("k{n}")), &body, now);
            if let Reply::Accepted { id: accepted, .. } = reply {
                id = Some(accepted);
                break;
            }
        }
        let id = id.expect("one submit got through");
        for _ in 0..200 {
            let (reply, _) = sim.lock().poll(&sim.config, Some(&token), &id, now);
            let Reply::Json { status: 200, body } = reply else {
                panic!("a running attempt's poll was faulted: {reply:?}")
            };
            assert!(
                matches!(body["status"].as_str(), Some("QUEUED" | "IN_PROGRESS")),
                "{body}"
            );
        }
    }
}
