//! The SQLite reader: its own connection (WAL lets it read while a daemon writes), every
//! answer a page or an aggregate.

use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::letters::{self, filter_params, FILTER};
use super::one;
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

/// A read connection on an existing journal.
pub struct Reader {
    conn: Connection,
    path: PathBuf,
    has_webhook: bool,
}

impl Reader {
    /// Opens an existing journal; `has_webhook` tells pending letters from stored ones.
    pub fn open(path: &Path, has_webhook: bool) -> Result<Self, JournalError> {
        if !path.exists() {
            let missing = std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no journal here yet (has `run` been started?)",
            );
            return Err(JournalError::io(path)(missing));
        }
        let sql = JournalError::sqlite(path);
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(&sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(&sql)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(&sql)?;
        if version != super::schema::VERSION {
            let message = format!(
                "journal schema version {version}, this actionwarden reads version {}; run the daemon once to migrate it",
                super::schema::VERSION
            );
            return Err(JournalError::io(path)(std::io::Error::other(message)));
        }
        Ok(Reader {
            conn,
            path: path.to_owned(),
            has_webhook,
        })
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> JournalError + '_ {
        JournalError::sqlite(&self.path)
    }
}

/// `Some(text)` for a filter that is set and not blank.
fn set(text: &Option<String>) -> Option<&str> {
    text.as_deref().filter(|t| !t.is_empty())
}

impl JournalRead for Reader {
    fn status(&self) -> Result<Vec<BatchCounts>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT batch, state, actions FROM batch_states WHERE actions != 0 ORDER BY batch")
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
            })
            .map_err(self.sql())?;
        let rows = rows
            .map(|row| row.map(|(batch, state, n)| (batch, state, n as u64)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        Ok(BatchCounts::from_state_counts(rows))
    }

    fn dead_letter_totals(&self) -> Result<(u64, u64), JournalError> {
        self.conn
            .query_row(
                "SELECT COUNT(*), IFNULL(SUM(CASE WHEN delivered = 0 AND discarded = 0 THEN 1 ELSE 0 END), 0) FROM dead_letters",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(self.sql())
    }

    fn actions(
        &self,
        filter: &ActionFilter,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Page<ActionSummary>, JournalError> {
        let limit = limit.clamp(1, MAX_PAGE);
        // The key range is always bound (everything when no prefix: any text is >= ''
        // and < any blob), so the index on (batch, key) serves it; batches come from
        // `batch_states`, only those with actions in the state asked for, so a state no
        // action is in costs nothing.
        let (lower, upper): (Value, Value) = match set(&filter.key_prefix) {
            Some(p) => (Value::Text(p.to_owned()), Value::Text(format!("{p}{MAX_CHAR}"))),
            None => (Value::Text(String::new()), Value::Blob(Vec::new())),
        };
        let (after_batch, after_key) = match after {
            Some(Cursor(parts)) => (Some(parts[0].as_str()), Some(parts[1].as_str())),
            None => (None, None),
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT batch, key, state, attempt, retry_count, action_id, updated_ms FROM actions
                 WHERE batch IN (SELECT batch FROM batch_states WHERE actions != 0
                                   AND (?1 IS NULL OR batch = ?1) AND (?2 IS NULL OR state = ?2))
                   AND (?2 IS NULL OR state = ?2)
                   AND key >= ?3 AND key < ?4
                   AND (?5 IS NULL OR (batch, key) > (?5, ?6))
                 ORDER BY batch, key LIMIT ?7",
            )
            .map_err(self.sql())?;
        let mut items = stmt
            .query_map(
                params![
                    set(&filter.batch),
                    filter.state.map(StateWord::as_str),
                    lower,
                    upper,
                    after_batch,
                    after_key,
                    limit as i64 + 1
                ],
                |r| {
                    let state: String = r.get(2)?;
                    let outcome = StateWord::parse(&state)
                        .filter(|w| w.is_outcome())
                        .map(|w| w.as_str().to_owned());
                    Ok(ActionSummary {
                        batch: r.get(0)?,
                        key: r.get(1)?,
                        state,
                        outcome,
                        attempt: r.get(3)?,
                        retry_count: r.get(4)?,
                        action_id: r.get(5)?,
                        updated_at: rfc3339_ms(r.get(6)?),
                    })
                },
            )
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        let next = (items.len() > limit).then(|| {
            items.truncate(limit);
            let last = items.last().expect("a full page");
            Cursor(vec![last.batch.clone(), last.key.clone()]).encode()
        });
        Ok(Page { items, next })
    }

    fn action(&self, identity: &Identity) -> Result<Option<ActionView>, JournalError> {
        let Some((id, mut view)) = one::head(&self.conn, identity, self.has_webhook).map_err(self.sql())? else {
            return Ok(None);
        };
        view.history = one::history(&self.conn, id, 0, i64::MAX)
            .map_err(self.sql())?
            .into_iter()
            .map(|(_, event)| event)
            .collect();
        Ok(Some(view))
    }

    fn action_head(&self, identity: &Identity) -> Result<Option<ActionView>, JournalError> {
        let head = one::head(&self.conn, identity, self.has_webhook).map_err(self.sql())?;
        Ok(head.map(|(_, view)| view))
    }

    fn action_history(
        &self,
        identity: &Identity,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Page<HistoryEvent>, JournalError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let Some(id) = one::row_id(&self.conn, identity).map_err(self.sql())? else {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        };
        let after = after
            .and_then(|Cursor(parts)| parts[0].parse::<i64>().ok())
            .unwrap_or(0);
        let mut events = one::history(&self.conn, id, after, limit as i64 + 1).map_err(self.sql())?;
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
        one::audit_lines(&self.conn, identity).map_err(self.sql())
    }

    fn activity(&self, since_ms: i64) -> Result<Vec<BatchActivity>, JournalError> {
        super::activity::activity(&self.conn, since_ms).map_err(self.sql())
    }

    fn dead_letter_counts(&self, filter: &DeadLetterFilter) -> Result<DeadLetterCounts, JournalError> {
        letters::counts(&self.conn, filter_params(filter, self.has_webhook)).map_err(self.sql())
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
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT * FROM dead_letters d WHERE {FILTER} AND (?6 IS NULL OR (d.created_ms, d.error_id) > (?6, ?7))
                 ORDER BY d.created_ms, d.error_id LIMIT ?8"
            ))
            .map_err(self.sql())?;
        let (batch, code, delivery, unsent, replayed) = filter_params(filter, self.has_webhook);
        let rows = stmt
            .query_map(
                params![
                    batch,
                    code,
                    delivery,
                    unsent,
                    replayed,
                    after_ms,
                    after_id,
                    limit as i64 + 1
                ],
                |r| Ok((r.get::<_, i64>("created_ms")?, letters::view(r, self.has_webhook)?)),
            )
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        let more = rows.len() > limit;
        let last = rows.get(limit.saturating_sub(1)).map(|(ms, view)| (*ms, view.clone()));
        let items: Vec<DeadLetterView> = rows.into_iter().take(limit).filter_map(|(_, v)| v).collect();
        let next = match (more, last) {
            (true, Some((ms, Some(view)))) => {
                Some(Cursor(vec![ms.to_string(), view.letter.error_id.to_string()]).encode())
            }
            _ => None,
        };
        Ok(Page { items, next })
    }

    fn request_replay(&self, error_ids: Option<&[String]>) -> Result<Vec<String>, JournalError> {
        let replayable = "SELECT d.error_id FROM dead_letters d JOIN actions a ON a.batch = d.batch AND a.key = d.key
                          WHERE d.replayed = 0 AND a.open = 0 AND a.body IS NOT NULL";
        let candidates: Vec<String> = match error_ids {
            Some(ids) => ids.to_vec(),
            None => self
                .conn
                .prepare(&format!("{replayable} ORDER BY d.created_ms"))
                .map_err(self.sql())?
                .query_map([], |r| r.get(0))
                .map_err(self.sql())?
                .collect::<Result<Vec<String>, _>>()
                .map_err(self.sql())?,
        };
        // One transaction: a request of thousands of letters costs one commit.
        let tx = self.conn.unchecked_transaction().map_err(self.sql())?;
        let mut accepted = Vec::new();
        for id in candidates {
            let known: Option<String> = tx
                .query_row(&format!("{replayable} AND d.error_id = ?1"), params![id], |r| r.get(0))
                .optional()
                .map_err(self.sql())?;
            if known.is_some() {
                tx.execute(
                    "INSERT INTO replay_requests (error_id, requested_ms) VALUES (?1, ?2)",
                    params![id, now_ms()],
                )
                .map_err(self.sql())?;
                accepted.push(id);
            }
        }
        tx.commit().map_err(self.sql())?;
        Ok(accepted)
    }

    fn request_replay_matching(&self, filter: &DeadLetterFilter, cap: usize) -> Result<Vec<String>, JournalError> {
        let ids = letters::replayable(&self.conn, filter_params(filter, self.has_webhook), cap).map_err(self.sql())?;
        self.request_replay(Some(&ids))
    }

    fn request_discard(&self, error_ids: &[String]) -> Result<Vec<String>, JournalError> {
        letters::request_discard(&self.conn, error_ids).map_err(self.sql())
    }

    fn prune(&self, before_ms: i64) -> Result<Pruned, JournalError> {
        let mut total = Pruned::default();
        let mut from = 0;
        loop {
            let tx = self.conn.unchecked_transaction().map_err(self.sql())?;
            let round = super::apply::prune(&tx, before_ms, from).map_err(self.sql())?;
            tx.commit().map_err(self.sql())?;
            let next = round.next;
            total.add(round);
            match next {
                Some(n) => from = n,
                None => break,
            }
        }
        super::apply::incremental_vacuum(&self.conn).map_err(self.sql())?;
        Ok(total)
    }

    fn instances(&self) -> Result<Vec<InstanceView>, JournalError> {
        Ok(Vec::new())
    }
}
