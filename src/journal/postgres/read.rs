//! The PostgreSQL reader: `status`, `show`, `dlq` and the admin views over their own
//! connection, every answer a page or an aggregate.

use std::cell::RefCell;

use postgres::Client;

use super::apply::prune;
use super::letters::{self, FilterParams, FILTER, REPLAYABLE};
use super::{one, Target};
use crate::action::Identity;
use crate::journal::read::{JournalRead, MAX_PAGE};
use crate::journal::record::{now_ms, StateWord};
use crate::journal::view::{rfc3339_ms, BatchActivity, DeadLetterCounts, DeadLetterFilter, InstanceView};
use crate::journal::{
    ActionFilter, ActionSummary, ActionView, BatchCounts, Cursor, DeadLetterView, HistoryEvent, JournalError, Page,
    Pruned,
};

/// The highest code point: `prefix || MAX_CHAR` bounds every key starting with `prefix`.
const MAX_CHAR: char = '\u{10FFFF}';

/// A read connection on the journal schema.
pub struct Reader {
    client: RefCell<Client>,
    target: Target,
    has_webhook: bool,
    lease_ms: i64,
}

impl Reader {
    /// Connects; `has_webhook` tells pending letters from stored ones.
    pub fn open(target: Target, has_webhook: bool, lease: std::time::Duration) -> Result<Self, JournalError> {
        let client = target.connect()?;
        Ok(Reader {
            client: RefCell::new(client),
            target,
            has_webhook,
            lease_ms: lease.as_millis() as i64,
        })
    }

    fn pg(&self) -> impl Fn(postgres::Error) -> JournalError + '_ {
        self.target.error()
    }
}

fn set(text: &Option<String>) -> Option<&str> {
    text.as_deref().filter(|t| !t.is_empty())
}

impl JournalRead for Reader {
    fn status(&self) -> Result<Vec<BatchCounts>, JournalError> {
        let rows = self
            .client
            .borrow_mut()
            .query(
                "SELECT batch, state, count(*) FROM actions GROUP BY batch, state ORDER BY batch",
                &[],
            )
            .map_err(self.pg())?;
        Ok(BatchCounts::from_state_counts(
            rows.iter().map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2) as u64)),
        ))
    }

    fn dead_letter_totals(&self) -> Result<(u64, u64), JournalError> {
        let r = self
            .client
            .borrow_mut()
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE NOT delivered AND NOT discarded) FROM dead_letters",
                &[],
            )
            .map_err(self.pg())?;
        Ok((r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64))
    }

    fn actions(
        &self,
        filter: &ActionFilter,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Page<ActionSummary>, JournalError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let prefix = set(&filter.key_prefix);
        let upper = prefix.map(|p| format!("{p}{MAX_CHAR}"));
        let (after_batch, after_key) = match after {
            Some(Cursor(parts)) => (Some(parts[0].as_str()), Some(parts[1].as_str())),
            None => (None, None),
        };
        let rows = self
            .client
            .borrow_mut()
            .query(
                "SELECT batch, key, state, attempt, retry_count, action_id, updated_ms FROM actions
                 WHERE ($1::text IS NULL OR batch = $1) AND ($2::text IS NULL OR state = $2)
                   AND ($3::text IS NULL OR (key >= $3 AND key < $4))
                   AND ($5::text IS NULL OR (batch, key) > ($5, $6))
                 ORDER BY batch, key LIMIT $7",
                &[
                    &set(&filter.batch),
                    &filter.state.map(StateWord::as_str),
                    &prefix,
                    &upper,
                    &after_batch,
                    &after_key,
                    &(limit as i64 + 1),
                ],
            )
            .map_err(self.pg())?;
        let mut items: Vec<ActionSummary> = rows
            .iter()
            .map(|r| {
                let state: String = r.get(2);
                let outcome = StateWord::parse(&state)
                    .filter(|w| w.is_outcome())
                    .map(|w| w.as_str().to_owned());
                ActionSummary {
                    batch: r.get(0),
                    key: r.get(1),
                    state,
                    outcome,
                    attempt: r.get::<_, i32>(3) as u32,
                    retry_count: r.get::<_, i32>(4) as u32,
                    action_id: r.get(5),
                    updated_at: rfc3339_ms(r.get(6)),
                }
            })
            .collect();
        let next = (items.len() > limit).then(|| {
            items.truncate(limit);
            let last = items.last().expect("a full page");
            Cursor(vec![last.batch.clone(), last.key.clone()]).encode()
        });
        Ok(Page { items, next })
    }

    fn action(&self, identity: &Identity) -> Result<Option<ActionView>, JournalError> {
        let mut client = self.client.borrow_mut();
        let Some((id, mut view)) = one::head(&mut client, identity, self.has_webhook).map_err(self.pg())? else {
            return Ok(None);
        };
        view.history = one::history(&mut client, id, 0, i64::MAX)
            .map_err(self.pg())?
            .into_iter()
            .map(|(_, event)| event)
            .collect();
        Ok(Some(view))
    }

    fn action_head(&self, identity: &Identity) -> Result<Option<ActionView>, JournalError> {
        let head = one::head(&mut self.client.borrow_mut(), identity, self.has_webhook).map_err(self.pg())?;
        Ok(head.map(|(_, view)| view))
    }

    fn action_history(
        &self,
        identity: &Identity,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Page<HistoryEvent>, JournalError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut client = self.client.borrow_mut();
        let Some(id) = one::row_id(&mut client, identity).map_err(self.pg())? else {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        };
        let after = after
            .and_then(|Cursor(parts)| parts[0].parse::<i64>().ok())
            .unwrap_or(0);
        let mut events = one::history(&mut client, id, after, limit as i64 + 1).map_err(self.pg())?;
        let next = (events.len() > limit).then(|| {
            events.truncate(limit);
            let (seq, _) = events.last().expect("a full page");
            Cursor(vec![seq.to_string()]).encode()
        });
        Ok(Page {
            items: events.into_iter().map(|(_, event)| event).collect(),
            next,
        })
    }

    fn audit_lines(&self, identity: &Identity) -> Result<Vec<String>, JournalError> {
        one::audit_lines(&mut self.client.borrow_mut(), identity).map_err(self.pg())
    }

    fn activity(&self, since_ms: i64) -> Result<Vec<BatchActivity>, JournalError> {
        // One scan of the actions, one of the unsent letters: no counters kept by
        // triggers, which would make every member's commits queue on the same rows.
        let mut client = self.client.borrow_mut();
        let rows = client
            .query(
                "SELECT batch, state, count(*), coalesce(sum(retry_count), 0)::bigint,
                        count(*) FILTER (WHERE resolved_ms >= $1)
                 FROM actions GROUP BY batch, state ORDER BY batch",
                &[&since_ms],
            )
            .map_err(self.pg())?;
        let mut out: Vec<BatchActivity> = Vec::new();
        for r in rows {
            let (batch, state): (String, String) = (r.get(0), r.get(1));
            if out.last().is_none_or(|b| b.batch != batch) {
                out.push(BatchActivity {
                    batch,
                    ..BatchActivity::default()
                });
            }
            let entry = out.last_mut().expect("just pushed");
            let n = r.get::<_, i64>(2) as u64;
            if let Some(i) = StateWord::parse(&state).and_then(|w| StateWord::ALL.iter().position(|s| *s == w)) {
                entry.states[i] += n;
            }
            entry.total += n;
            entry.retries += r.get::<_, i64>(3) as u64;
            entry.finished_since += r.get::<_, i64>(4) as u64;
        }
        let unsent = client
            .query(
                "SELECT batch, count(*) FROM dead_letters WHERE NOT delivered AND NOT discarded GROUP BY batch",
                &[],
            )
            .map_err(self.pg())?;
        for r in unsent {
            let batch: String = r.get(0);
            if let Some(entry) = out.iter_mut().find(|b| b.batch == batch) {
                entry.undelivered = r.get::<_, i64>(1) as u64;
            }
        }
        Ok(out)
    }

    fn dead_letter_counts(&self, filter: &DeadLetterFilter) -> Result<DeadLetterCounts, JournalError> {
        let params = FilterParams::new(filter, self.has_webhook);
        letters::counts(&mut *self.client.borrow_mut(), &params).map_err(self.pg())
    }

    fn dead_letters(
        &self,
        filter: &DeadLetterFilter,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Page<DeadLetterView>, JournalError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let (after_ms, after_id) = match after {
            Some(Cursor(parts)) => (parts[0].parse::<i64>().ok(), Some(parts[1].as_str())),
            None => (None, None),
        };
        let params = FilterParams::new(filter, self.has_webhook);
        let limit_plus = limit as i64 + 1;
        let rows = self
            .client
            .borrow_mut()
            .query(
                &format!(
                    "SELECT * FROM dead_letters d
                     WHERE {FILTER} AND ($6::bigint IS NULL OR (d.created_ms, d.error_id) > ($6, $7))
                     ORDER BY d.created_ms, d.error_id LIMIT $8"
                ),
                &params.with(&[&after_ms, &after_id, &limit_plus]),
            )
            .map_err(self.pg())?;
        let more = rows.len() > limit;
        let next = match (more, rows.get(limit.saturating_sub(1))) {
            (true, Some(r)) => {
                Some(Cursor(vec![r.get::<_, i64>("created_ms").to_string(), r.get("error_id")]).encode())
            }
            _ => None,
        };
        let items = rows
            .iter()
            .take(limit)
            .filter_map(|r| letters::view(r, self.has_webhook))
            .collect();
        Ok(Page { items, next })
    }

    fn request_replay(&self, error_ids: Option<&[String]>) -> Result<Vec<String>, JournalError> {
        let replayable = format!(
            "SELECT d.error_id FROM dead_letters d JOIN actions a ON a.batch = d.batch AND a.key = d.key
             WHERE {REPLAYABLE}"
        );
        let mut client = self.client.borrow_mut();
        // One transaction: a request of thousands of letters costs one commit.
        let mut tx = client.transaction().map_err(self.pg())?;
        let candidates: Vec<String> = match error_ids {
            Some(ids) => ids.to_vec(),
            None => tx
                .query(&format!("{replayable} ORDER BY d.created_ms"), &[])
                .map_err(self.pg())?
                .iter()
                .map(|r| r.get(0))
                .collect(),
        };
        let mut accepted: Vec<String> = Vec::new();
        for id in candidates {
            if accepted.contains(&id) {
                continue;
            }
            let known = tx
                .query_opt(&format!("{replayable} AND d.error_id = $1"), &[&id])
                .map_err(self.pg())?;
            if known.is_some() {
                tx.execute(
                    "INSERT INTO replay_requests (error_id, requested_ms) VALUES ($1, $2)",
                    &[&id, &now_ms()],
                )
                .map_err(self.pg())?;
                accepted.push(id);
            }
        }
        tx.commit().map_err(self.pg())?;
        Ok(accepted)
    }

    fn request_replay_matching(&self, filter: &DeadLetterFilter, cap: usize) -> Result<Vec<String>, JournalError> {
        let params = FilterParams::new(filter, self.has_webhook);
        let ids = letters::replayable(&mut *self.client.borrow_mut(), &params, cap).map_err(self.pg())?;
        self.request_replay(Some(&ids))
    }

    fn request_discard(&self, error_ids: &[String]) -> Result<Vec<String>, JournalError> {
        let mut client = self.client.borrow_mut();
        let mut tx = client.transaction().map_err(self.pg())?;
        let accepted = letters::request_discard(&mut tx, error_ids).map_err(self.pg())?;
        tx.commit().map_err(self.pg())?;
        Ok(accepted)
    }

    fn prune(&self, before_ms: i64) -> Result<Pruned, JournalError> {
        let mut client = self.client.borrow_mut();
        let mut total = Pruned::default();
        let mut from = 0;
        loop {
            let mut tx = client.transaction().map_err(self.pg())?;
            let round = prune(&mut tx, before_ms, from).map_err(self.pg())?;
            tx.commit().map_err(self.pg())?;
            let next = round.next;
            total.add(round);
            match next {
                Some(n) => from = n,
                None => return Ok(total),
            }
        }
    }

    fn instances(&self) -> Result<Vec<InstanceView>, JournalError> {
        let rows = self
            .client
            .borrow_mut()
            .query(
                "SELECT i.id, i.name, i.host, i.pid, i.started_at, i.heartbeat_at,
                        i.stopped_at IS NULL AND i.heartbeat_at > now() - $1::bigint * interval '1 millisecond' AS live,
                        (SELECT count(*) FROM actions a WHERE a.owner = i.id AND a.open) AS owned
                 FROM instances i ORDER BY i.started_at DESC LIMIT 100",
                &[&self.lease_ms],
            )
            .map_err(self.pg())?;
        Ok(rows
            .iter()
            .map(|r| InstanceView {
                id: r.get(0),
                name: r.get(1),
                host: r.get(2),
                pid: r.get::<_, i32>(3) as u32,
                started: rfc3339(r.get(4)),
                last_heartbeat: rfc3339(r.get(5)),
                live: r.get(6),
                owned_actions: r.get::<_, i64>(7) as u64,
            })
            .collect())
    }
}

fn rfc3339(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    rfc3339_ms(ms)
}
