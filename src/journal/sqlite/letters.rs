//! Dead letters in SQLite beyond storing and delivering them: the filter every list,
//! count and bulk request shares, the requests other processes leave for the daemon
//! (replays of everything a filter matches, discards), and the daemon's side of a discard.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use uuid::Uuid;

use crate::action::Identity;
use crate::audit::{AuditRecord, DEAD_LETTER_DISCARDED};
use crate::journal::record::now_ms;
use crate::journal::view::{DeadLetterCounts, DeadLetterFilter};
use crate::journal::{DeadLetterView, Discard, OutcomeLine};

/// The conditions of a `DeadLetterFilter` on `dead_letters d`, with parameters ?1 batch,
/// ?2 error code, ?3 delivery word, ?4 the word of an unsent letter (`pending` with a
/// webhook, `stored` without) and ?5 replayed (0 or 1; a requested replay counts as
/// replayed, so a list of letters to deal with drops a letter as soon as it is asked for).
pub(crate) const FILTER: &str = "(?1 IS NULL OR d.batch = ?1) AND (?2 IS NULL OR d.error_code = ?2)
    AND (?3 IS NULL OR (?3 = 'delivered' AND d.delivered = 1)
         OR (?3 = 'discarded' AND d.delivered = 0 AND d.discarded = 1)
         OR (?3 = ?4 AND d.delivered = 0 AND d.discarded = 0))
    AND (?5 IS NULL OR (d.replayed = 1 OR EXISTS (SELECT 1 FROM replay_requests r WHERE r.error_id = d.error_id)) = ?5)";

/// A letter a replay would start again: not replayed or asked to be, its action resolved
/// and not pruned (needs `actions a` joined on the identity).
const REPLAYABLE: &str = "d.replayed = 0 AND a.open = 0 AND a.body IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM replay_requests r WHERE r.error_id = d.error_id)";

/// A letter a discard would stop: neither delivered nor discarded.
const DISCARDABLE: &str = "d.delivered = 0 AND d.discarded = 0";

/// A discard of the letter is requested and not carried out yet.
const DISCARD_REQUESTED: &str = "EXISTS (SELECT 1 FROM discard_requests q WHERE q.error_id = d.error_id)";

/// The five filter parameters of `FILTER`, in order.
pub(crate) type FilterParams<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    &'static str,
    Option<i64>,
);

/// `filter` as the parameters of `FILTER`; `has_webhook` names the unsent word.
pub(crate) fn filter_params(filter: &DeadLetterFilter, has_webhook: bool) -> FilterParams<'_> {
    fn set(text: &Option<String>) -> Option<&str> {
        text.as_deref().filter(|t| !t.is_empty())
    }
    (
        set(&filter.batch),
        set(&filter.error_code),
        set(&filter.delivery),
        if has_webhook { "pending" } else { "stored" },
        filter.replayed.map(i64::from),
    )
}

/// A `dead_letters` row as readers see it (`None` for a body that no longer parses);
/// `has_webhook` tells pending letters from stored ones.
pub(crate) fn view(r: &rusqlite::Row<'_>, has_webhook: bool) -> rusqlite::Result<Option<DeadLetterView>> {
    let body: String = r.get("body")?;
    let (delivered, discarded): (bool, bool) = (r.get("delivered")?, r.get("discarded")?);
    Ok(serde_json::from_str(&body).ok().map(|letter| DeadLetterView {
        letter,
        delivered,
        delivery: DeadLetterView::delivery_word(delivered, discarded, has_webhook),
        attempts: r.get("attempts").unwrap_or(0),
        last_error: r.get("last_error").unwrap_or(None),
        replayed: r.get("replayed").unwrap_or(false),
        discarded,
    }))
}

/// How many letters `filter` matches and how many of them can be replayed or discarded.
pub(crate) fn counts(conn: &Connection, filter: FilterParams<'_>) -> rusqlite::Result<DeadLetterCounts> {
    let (batch, code, delivery, unsent, replayed) = filter;
    conn.prepare_cached(&format!(
        "SELECT COUNT(*), IFNULL(SUM(CASE WHEN {REPLAYABLE} THEN 1 ELSE 0 END), 0),
                IFNULL(SUM(CASE WHEN {DISCARDABLE} AND NOT {DISCARD_REQUESTED} THEN 1 ELSE 0 END), 0)
         FROM dead_letters d LEFT JOIN actions a ON a.batch = d.batch AND a.key = d.key
         WHERE {FILTER}"
    ))?
    .query_row(params![batch, code, delivery, unsent, replayed], |r| {
        Ok(DeadLetterCounts {
            matching: r.get::<_, i64>(0)? as u64,
            replayable: r.get::<_, i64>(1)? as u64,
            discardable: r.get::<_, i64>(2)? as u64,
        })
    })
}

/// The replayable letters `filter` matches, oldest first, at most `cap`.
pub(crate) fn replayable(conn: &Connection, filter: FilterParams<'_>, cap: usize) -> rusqlite::Result<Vec<String>> {
    let (batch, code, delivery, unsent, replayed) = filter;
    conn.prepare_cached(&format!(
        "SELECT d.error_id FROM dead_letters d JOIN actions a ON a.batch = d.batch AND a.key = d.key
         WHERE {FILTER} AND {REPLAYABLE} ORDER BY d.created_ms, d.error_id LIMIT ?6"
    ))?
    .query_map(params![batch, code, delivery, unsent, replayed, cap as i64], |r| {
        r.get(0)
    })?
    .collect()
}

/// Leaves a discard request for each of `error_ids` that can be discarded, in one
/// transaction; returns the ids accepted.
pub(crate) fn request_discard(conn: &Connection, error_ids: &[String]) -> rusqlite::Result<Vec<String>> {
    let tx = conn.unchecked_transaction()?;
    let mut accepted = Vec::new();
    {
        let mut known = tx.prepare_cached(&format!(
            "SELECT 1 FROM dead_letters d WHERE d.error_id = ?1 AND {DISCARDABLE} AND NOT {DISCARD_REQUESTED}"
        ))?;
        let mut insert = tx.prepare_cached("INSERT INTO discard_requests (error_id, requested_ms) VALUES (?1, ?2)")?;
        for id in error_ids {
            if !accepted.contains(id) && known.exists(params![id])? {
                insert.execute(params![id, now_ms()])?;
                accepted.push(id.clone());
            }
        }
    }
    tx.commit()?;
    Ok(accepted)
}

/// Carries out the pending discard requests: each letter still discardable is marked
/// discarded and its `DEAD_LETTER_DISCARDED` line is committed with the mark, to be
/// audited like an outcome line (appended once, even across a crash).
pub(crate) fn apply_discards(tx: &Transaction<'_>) -> rusqlite::Result<Vec<Discard>> {
    let requests: Vec<(i64, String)> = tx
        .prepare_cached("SELECT id, error_id FROM discard_requests ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut discards = Vec::new();
    for (request, error_id) in requests {
        tx.prepare_cached("DELETE FROM discard_requests WHERE id = ?1")?
            .execute(params![request])?;
        let found: Option<(String, String, String, u32)> = tx
            .prepare_cached(&format!(
                "SELECT d.batch, d.key, d.error_code, d.attempts FROM dead_letters d WHERE d.error_id = ?1 AND {DISCARDABLE}"
            ))?
            .query_row(params![error_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?;
        let Some((batch, key, error_code, attempts)) = found else {
            continue;
        };
        tx.prepare_cached("UPDATE dead_letters SET discarded = 1 WHERE error_id = ?1")?
            .execute(params![error_id])?;
        let identity = Identity::new(batch, key);
        let event_id = Uuid::new_v4();
        let line = AuditRecord::new(DEAD_LETTER_DISCARDED, &identity)
            .with("error_id", error_id.as_str())
            .with("error_code", error_code)
            .with("attempts", attempts)
            .to_line(event_id);
        tx.prepare_cached("INSERT INTO outcomes (event_id, batch, key, line, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![
                event_id.to_string(),
                identity.batch.as_ref(),
                identity.key.as_ref(),
                line,
                now_ms()
            ])?;
        discards.push(Discard {
            error_id,
            identity,
            audit: OutcomeLine {
                event_id: event_id.to_string(),
                line,
            },
        });
    }
    Ok(discards)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn, std::path::Path::new(":memory:")).unwrap();
        conn.execute_batch(
            "INSERT INTO actions (batch, key, body, state, open, created_ms, updated_ms)
                 VALUES ('b', 'k1', x'7b7d', 'dead_lettered', 0, 0, 0), ('b', 'k2', x'7b7d', 'pending', 1, 0, 0);
             INSERT INTO dead_letters (error_id, batch, key, error_code, body, delivered, replayed, created_ms)
                 VALUES ('e1', 'b', 'k1', 'INVALID_CONTACT', '{}', 0, 0, 1),
                        ('e2', 'b', 'k2', 'INVALID_CONTACT', '{}', 0, 1, 2),
                        ('e3', 'b', 'k1', 'TIMEOUT', '{}', 1, 1, 3);",
        )
        .unwrap();
        conn
    }

    fn all() -> DeadLetterFilter {
        DeadLetterFilter::default()
    }

    #[test]
    fn counts_tell_matching_from_replayable_and_discardable() {
        let conn = journal();
        let counts = counts(&conn, filter_params(&all(), true)).unwrap();
        assert_eq!(
            counts,
            DeadLetterCounts {
                matching: 3,
                replayable: 1,
                discardable: 2
            }
        );
        let code = DeadLetterFilter {
            error_code: Some("TIMEOUT".into()),
            ..all()
        };
        assert_eq!(counts_of(&conn, &code).matching, 1);
        let not_replayed = DeadLetterFilter {
            replayed: Some(false),
            ..all()
        };
        assert_eq!(counts_of(&conn, &not_replayed).matching, 1);
    }

    fn counts_of(conn: &Connection, filter: &DeadLetterFilter) -> DeadLetterCounts {
        counts(conn, filter_params(filter, true)).unwrap()
    }

    #[test]
    fn replay_matching_takes_only_replayable_letters_up_to_the_cap() {
        let conn = journal();
        assert_eq!(replayable(&conn, filter_params(&all(), true), 10).unwrap(), ["e1"]);
        assert!(replayable(&conn, filter_params(&all(), true), 0).unwrap().is_empty());
    }

    #[test]
    fn discards_are_requested_once_and_carried_out_with_their_audit_line() {
        let mut conn = journal();
        let asked = ["e1", "e3", "nope", "e1"].map(String::from);
        assert_eq!(
            request_discard(&conn, &asked).unwrap(),
            ["e1"],
            "delivered and unknown refused"
        );
        let tx = conn.transaction().unwrap();
        let done = apply_discards(&tx).unwrap();
        tx.commit().unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].error_id, "e1");
        let line: serde_json::Value = serde_json::from_slice(&done[0].audit.line).unwrap();
        assert_eq!(line["event_type"], DEAD_LETTER_DISCARDED);
        assert_eq!(line["error_id"], "e1");
        assert_eq!(line["key"], "k1");
        let (discarded, audited): (i64, i64) = conn
            .query_row(
                "SELECT d.discarded, (SELECT COUNT(*) FROM outcomes o WHERE o.audited = 0) FROM dead_letters d WHERE error_id = 'e1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((discarded, audited), (1, 1));
        // A second request for the same letter is refused; nothing is left to apply.
        assert!(request_discard(&conn, &asked).unwrap().is_empty());
        let tx = conn.transaction().unwrap();
        assert!(apply_discards(&tx).unwrap().is_empty());
    }
}
