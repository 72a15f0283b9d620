//! One action as readers see it: its row with body and latest dead letter, its history a
//! page at a time, and the audit lines the journal keeps for it.

use rusqlite::{params, Connection, OptionalExtension};

use super::apply::{read_row, ROW_COLUMNS};
use super::letters;
use crate::action::Identity;
use crate::journal::view::rfc3339_ms;
use crate::journal::{ActionView, HistoryEvent};

/// The action without its history, and its row id.
pub(crate) fn head(
    conn: &Connection,
    identity: &Identity,
    has_webhook: bool,
) -> rusqlite::Result<Option<(i64, ActionView)>> {
    let found = conn
        .prepare_cached(&format!(
            "SELECT {ROW_COLUMNS}, body FROM actions WHERE batch = ?1 AND key = ?2"
        ))?
        .query_row(params![identity.batch.as_ref(), identity.key.as_ref()], |r| {
            Ok((
                r.get::<_, i64>("id")?,
                read_row(r)?,
                r.get::<_, Option<Vec<u8>>>("body")?,
            ))
        })
        .optional()?;
    let Some((id, row, body)) = found else { return Ok(None) };
    let dead_letter = conn
        .prepare_cached("SELECT * FROM dead_letters WHERE batch = ?1 AND key = ?2 ORDER BY created_ms DESC LIMIT 1")?
        .query_row(params![identity.batch.as_ref(), identity.key.as_ref()], |r| {
            letters::view(r, has_webhook)
        })
        .optional()?
        .flatten();
    Ok(Some((
        id,
        ActionView {
            batch: identity.batch.to_string(),
            key: identity.key.to_string(),
            state: row.state.as_str().to_owned(),
            outcome: row.state.outcome().map(|o| o.as_str().to_owned()),
            attempt: row.attempt,
            retry_count: row.retry_count,
            action_id: row.action_id.clone(),
            body: body.and_then(|b| serde_json::from_slice(&b).ok()),
            dead_letter,
            history: Vec::new(),
        },
    )))
}

/// The row id of an action.
pub(crate) fn row_id(conn: &Connection, identity: &Identity) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM actions WHERE batch = ?1 AND key = ?2")?
        .query_row(params![identity.batch.as_ref(), identity.key.as_ref()], |r| r.get(0))
        .optional()
}

/// History events of action row `id` after sequence number `after`, oldest first, at most
/// `limit` (`i64::MAX`: all), each with its sequence number.
pub(crate) fn history(
    conn: &Connection,
    id: i64,
    after: i64,
    limit: i64,
) -> rusqlite::Result<Vec<(i64, HistoryEvent)>> {
    conn.prepare_cached(
        "SELECT seq, at_ms, state, attempt, action_id, http_status, error_code, detail, instance
         FROM history WHERE action = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?
    .query_map(params![id, after, limit], |r| {
        Ok((
            r.get(0)?,
            HistoryEvent {
                at: rfc3339_ms(r.get(1)?),
                state: r.get(2)?,
                attempt: r.get(3)?,
                action_id: r.get(4)?,
                http_status: r.get(5)?,
                error_code: r.get(6)?,
                detail: r.get(7)?,
                instance: r.get(8)?,
            },
        ))
    })?
    .collect()
}

/// The audit lines kept for an action, oldest first, without their newlines.
pub(crate) fn audit_lines(conn: &Connection, identity: &Identity) -> rusqlite::Result<Vec<String>> {
    conn.prepare_cached("SELECT line FROM outcomes WHERE batch = ?1 AND key = ?2 ORDER BY created_ms, rowid")?
        .query_map(params![identity.batch.as_ref(), identity.key.as_ref()], |r| {
            let line: Vec<u8> = r.get(0)?;
            Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
        })?
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::action::Identity;
    use crate::journal::sqlite::read::Reader;
    use crate::journal::{Cursor, JournalRead};

    #[test]
    fn a_long_history_is_read_page_by_page_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut conn = super::super::connect(&path, false).unwrap();
        super::super::schema::migrate(&mut conn, &path).unwrap();
        conn.execute(
            "INSERT INTO actions (batch, key, state, created_ms, updated_ms) VALUES ('b', 'k', 'backoff', 0, 0)",
            [],
        )
        .unwrap();
        for seq in 1..=25 {
            conn.execute(
                "INSERT INTO history (action, seq, at_ms, state, attempt, instance) VALUES (1, ?1, ?1, 'backoff', ?1, 'me')",
                [seq],
            )
            .unwrap();
        }
        let reader = Reader::open(&path, true).unwrap();
        let identity = Identity::new("b", "k");
        let mut attempts = Vec::new();
        let mut after: Option<Cursor> = None;
        loop {
            let page = reader.action_history(&identity, 10, after.as_ref()).unwrap();
            assert!(page.items.len() <= 10);
            attempts.extend(page.items.iter().map(|e| e.attempt));
            match page.next.and_then(|n| Cursor::decode(&n, 1)) {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(attempts, (1..=25).collect::<Vec<u32>>());
        let head = reader.action_head(&identity).unwrap().unwrap();
        assert!(head.history.is_empty(), "the head leaves the history to the pages");
        assert_eq!(reader.action(&identity).unwrap().unwrap().history.len(), 25);
        let unknown = reader.action_history(&Identity::new("b", "nope"), 10, None).unwrap();
        assert!(unknown.items.is_empty() && unknown.next.is_none());
    }
}
