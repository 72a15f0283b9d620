//! The PostgreSQL reader: `status`, `show`, `dlq` and the admin views over their own
//! connection, every answer a page or an aggregate.

use std::cell::RefCell;

use postgres::{Client, Row};

use super::apply::{prune, read_row, ROW_COLUMNS};
use super::Target;
use crate::action::Identity;
use crate::journal::read::{JournalRead, MAX_PAGE};
use crate::journal::record::{now_ms, StateWord};
use crate::journal::view::{rfc3339_ms, DeadLetterFilter, InstanceView};
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

    fn letter(&self, r: &Row) -> Option<DeadLetterView> {
        let body: String = r.get("body");
        let (delivered, discarded): (bool, bool) = (r.get("delivered"), r.get("discarded"));
        serde_json::from_str(&body).ok().map(|letter| DeadLetterView {
            letter,
            delivered,
            delivery: DeadLetterView::delivery_word(delivered, discarded, self.has_webhook),
            attempts: r.get::<_, i32>("attempts") as u32,
            last_error: r.get("last_error"),
            replayed: r.get("replayed"),
            discarded,
        })
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
        let mut out: Vec<BatchCounts> = Vec::new();
        for r in rows {
            let (batch, state, n): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
            if out.last().is_none_or(|c| c.batch != batch) {
                out.push(BatchCounts {
                    batch,
                    ..BatchCounts::default()
                });
            }
            let counts = out.last_mut().expect("just pushed");
            if let Some(i) = StateWord::parse(&state).and_then(|w| StateWord::ALL.iter().position(|s| *s == w)) {
                counts.states[i] += n as u64;
            }
            counts.total += n as u64;
        }
        Ok(out)
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
        let (batch, key) = (identity.batch.as_ref(), identity.key.as_ref());
        let Some(found) = client
            .query_opt(
                &format!("SELECT {ROW_COLUMNS}, body FROM actions WHERE batch = $1 AND key = $2"),
                &[&batch, &key],
            )
            .map_err(self.pg())?
        else {
            return Ok(None);
        };
        let (id, row, body): (i64, _, Option<Vec<u8>>) = (found.get("id"), read_row(&found), found.get("body"));
        let dead_letter = client
            .query_opt(
                "SELECT * FROM dead_letters WHERE batch = $1 AND key = $2 ORDER BY created_ms DESC LIMIT 1",
                &[&batch, &key],
            )
            .map_err(self.pg())?
            .and_then(|r| self.letter(&r));
        let history = client
            .query(
                "SELECT at_ms, state, attempt, action_id, http_status, error_code, detail, instance
                 FROM history WHERE action = $1 ORDER BY id",
                &[&id],
            )
            .map_err(self.pg())?
            .iter()
            .map(|r| HistoryEvent {
                at: rfc3339_ms(r.get(0)),
                state: r.get(1),
                attempt: r.get::<_, i32>(2) as u32,
                action_id: r.get(3),
                http_status: r.get::<_, Option<i32>>(4).map(|s| s as u16),
                error_code: r.get(5),
                detail: r.get(6),
                instance: r.get(7),
            })
            .collect();
        Ok(Some(ActionView {
            batch: batch.to_owned(),
            key: key.to_owned(),
            state: row.state.as_str().to_owned(),
            outcome: row.state.outcome().map(|o| o.as_str().to_owned()),
            attempt: row.attempt,
            retry_count: row.retry_count,
            action_id: row.action_id.clone(),
            body: body.and_then(|b| serde_json::from_slice(&b).ok()),
            dead_letter,
            history,
        }))
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
        let unsent = if self.has_webhook { "pending" } else { "stored" };
        let rows = self
            .client
            .borrow_mut()
            .query(
                "SELECT * FROM dead_letters
                 WHERE ($1::text IS NULL OR batch = $1) AND ($2::text IS NULL OR error_code = $2)
                   AND ($3::text IS NULL OR ($3 = 'delivered' AND delivered)
                        OR ($3 = 'discarded' AND NOT delivered AND discarded)
                        OR ($3 = $4 AND NOT delivered AND NOT discarded))
                   AND ($5::bigint IS NULL OR (created_ms, error_id) > ($5, $6))
                 ORDER BY created_ms, error_id LIMIT $7",
                &[
                    &set(&filter.batch),
                    &set(&filter.error_code),
                    &set(&filter.delivery),
                    &unsent,
                    &after_ms,
                    &after_id,
                    &(limit as i64 + 1),
                ],
            )
            .map_err(self.pg())?;
        let more = rows.len() > limit;
        let next = match (more, rows.get(limit.saturating_sub(1))) {
            (true, Some(r)) => {
                Some(Cursor(vec![r.get::<_, i64>("created_ms").to_string(), r.get("error_id")]).encode())
            }
            _ => None,
        };
        let items = rows.iter().take(limit).filter_map(|r| self.letter(r)).collect();
        Ok(Page { items, next })
    }

    fn request_replay(&self, error_ids: Option<&[String]>) -> Result<Vec<String>, JournalError> {
        let replayable = "SELECT d.error_id FROM dead_letters d JOIN actions a ON a.batch = d.batch AND a.key = d.key
                          WHERE NOT d.replayed AND NOT a.open AND a.body IS NOT NULL";
        let mut client = self.client.borrow_mut();
        let candidates: Vec<String> = match error_ids {
            Some(ids) => ids.to_vec(),
            None => client
                .query(&format!("{replayable} ORDER BY d.created_ms"), &[])
                .map_err(self.pg())?
                .iter()
                .map(|r| r.get(0))
                .collect(),
        };
        let mut accepted = Vec::new();
        for id in candidates {
            let known = client
                .query_opt(&format!("{replayable} AND d.error_id = $1"), &[&id])
                .map_err(self.pg())?;
            if known.is_some() {
                client
                    .execute(
                        "INSERT INTO replay_requests (error_id, requested_ms) VALUES ($1, $2)",
                        &[&id, &now_ms()],
                    )
                    .map_err(self.pg())?;
                accepted.push(id);
            }
        }
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
