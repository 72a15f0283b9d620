//! Dead letters in PostgreSQL beyond storing and delivering them: the filter every list,
//! count and bulk request shares, the requests other processes leave for the daemons
//! (replays of everything a filter matches, discards), and a daemon's side of a discard.

use postgres::{GenericClient, Row, Transaction};
use uuid::Uuid;

use crate::action::Identity;
use crate::audit::{AuditRecord, DEAD_LETTER_DISCARDED};
use crate::journal::record::now_ms;
use crate::journal::view::{DeadLetterCounts, DeadLetterFilter};
use crate::journal::{DeadLetterView, Discard, OutcomeLine};

/// The conditions of a `DeadLetterFilter` on `dead_letters d`, with parameters $1 batch,
/// $2 error code, $3 delivery word, $4 the word of an unsent letter (`pending` with a
/// webhook, `stored` without) and $5 replayed (a requested replay counts as replayed, so
/// a list of letters to deal with drops a letter as soon as it is asked for).
pub(super) const FILTER: &str = "($1::text IS NULL OR d.batch = $1) AND ($2::text IS NULL OR d.error_code = $2)
    AND ($3::text IS NULL OR ($3 = 'delivered' AND d.delivered)
         OR ($3 = 'discarded' AND NOT d.delivered AND d.discarded)
         OR ($3 = $4::text AND NOT d.delivered AND NOT d.discarded))
    AND ($5::boolean IS NULL
         OR (d.replayed OR EXISTS (SELECT 1 FROM replay_requests r WHERE r.error_id = d.error_id)) = $5)";

/// A letter a replay would start again: not replayed or asked to be, its action resolved
/// and not pruned (needs `actions a` joined on the identity).
pub(super) const REPLAYABLE: &str = "NOT d.replayed AND NOT a.open AND a.body IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM replay_requests r WHERE r.error_id = d.error_id)";

/// A letter a discard would stop: neither delivered nor discarded.
const DISCARDABLE: &str = "NOT d.delivered AND NOT d.discarded";

/// A discard of the letter is requested and not carried out yet.
const DISCARD_REQUESTED: &str = "EXISTS (SELECT 1 FROM discard_requests q WHERE q.error_id = d.error_id)";

/// The five parameters of `FILTER`, in order.
pub(super) struct FilterParams<'a> {
    batch: Option<&'a str>,
    code: Option<&'a str>,
    delivery: Option<&'a str>,
    unsent: &'static str,
    replayed: Option<bool>,
}

impl<'a> FilterParams<'a> {
    /// `filter` as the parameters of `FILTER`; `has_webhook` names the unsent word.
    pub(super) fn new(filter: &'a DeadLetterFilter, has_webhook: bool) -> Self {
        fn set(text: &Option<String>) -> Option<&str> {
            text.as_deref().filter(|t| !t.is_empty())
        }
        FilterParams {
            batch: set(&filter.batch),
            code: set(&filter.error_code),
            delivery: set(&filter.delivery),
            unsent: if has_webhook { "pending" } else { "stored" },
            replayed: filter.replayed,
        }
    }

    /// The parameters, to be followed by the query's own from `$6` on.
    pub(super) fn with<'b>(
        &'b self,
        more: &[&'b (dyn postgres::types::ToSql + Sync)],
    ) -> Vec<&'b (dyn postgres::types::ToSql + Sync)> {
        let mut all: Vec<&(dyn postgres::types::ToSql + Sync)> =
            vec![&self.batch, &self.code, &self.delivery, &self.unsent, &self.replayed];
        all.extend_from_slice(more);
        all
    }
}

/// A `dead_letters` row as readers see it (`None` for a body that no longer parses).
pub(super) fn view(r: &Row, has_webhook: bool) -> Option<DeadLetterView> {
    let body: String = r.get("body");
    let (delivered, discarded): (bool, bool) = (r.get("delivered"), r.get("discarded"));
    serde_json::from_str(&body).ok().map(|letter| DeadLetterView {
        letter,
        delivered,
        delivery: DeadLetterView::delivery_word(delivered, discarded, has_webhook),
        attempts: r.get::<_, i32>("attempts") as u32,
        last_error: r.get("last_error"),
        replayed: r.get("replayed"),
        discarded,
    })
}

/// How many letters `filter` matches and how many of them can be replayed or discarded.
pub(super) fn counts(
    client: &mut impl GenericClient,
    filter: &FilterParams<'_>,
) -> Result<DeadLetterCounts, postgres::Error> {
    let r = client.query_one(
        &format!(
            "SELECT count(*), count(*) FILTER (WHERE {REPLAYABLE}),
                    count(*) FILTER (WHERE {DISCARDABLE} AND NOT {DISCARD_REQUESTED})
             FROM dead_letters d LEFT JOIN actions a ON a.batch = d.batch AND a.key = d.key
             WHERE {FILTER}"
        ),
        &filter.with(&[]),
    )?;
    Ok(DeadLetterCounts {
        matching: r.get::<_, i64>(0) as u64,
        replayable: r.get::<_, i64>(1) as u64,
        discardable: r.get::<_, i64>(2) as u64,
    })
}

/// The replayable letters `filter` matches, oldest first, at most `cap`.
pub(super) fn replayable(
    client: &mut impl GenericClient,
    filter: &FilterParams<'_>,
    cap: usize,
) -> Result<Vec<String>, postgres::Error> {
    let cap = cap as i64;
    Ok(client
        .query(
            &format!(
                "SELECT d.error_id FROM dead_letters d JOIN actions a ON a.batch = d.batch AND a.key = d.key
                 WHERE {FILTER} AND {REPLAYABLE} ORDER BY d.created_ms, d.error_id LIMIT $6"
            ),
            &filter.with(&[&cap]),
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Leaves a discard request for each of `error_ids` that can be discarded, in one
/// transaction; returns the ids accepted.
pub(super) fn request_discard(tx: &mut Transaction<'_>, error_ids: &[String]) -> Result<Vec<String>, postgres::Error> {
    let mut accepted: Vec<String> = Vec::new();
    for id in error_ids {
        if accepted.contains(id) {
            continue;
        }
        let known = tx.query_opt(
            &format!(
                "SELECT 1 FROM dead_letters d WHERE d.error_id = $1 AND {DISCARDABLE} AND NOT {DISCARD_REQUESTED}"
            ),
            &[id],
        )?;
        if known.is_some() {
            tx.execute(
                "INSERT INTO discard_requests (error_id, requested_ms) VALUES ($1, $2)",
                &[id, &now_ms()],
            )?;
            accepted.push(id.clone());
        }
    }
    Ok(accepted)
}

/// Carries out the pending discard requests (each by exactly one daemon): each letter
/// still discardable is marked discarded and its `DEAD_LETTER_DISCARDED` line is
/// committed with the mark for this daemon (`me`) to audit, like an outcome line.
pub(super) fn apply_discards(tx: &mut Transaction<'_>, me: &str) -> Result<Vec<Discard>, postgres::Error> {
    let taken = tx.query(
        &format!(
            "WITH taken AS (DELETE FROM discard_requests WHERE id IN (SELECT id FROM discard_requests FOR UPDATE SKIP LOCKED)
                            RETURNING error_id)
             UPDATE dead_letters d SET discarded = TRUE FROM (SELECT DISTINCT error_id FROM taken) t
             WHERE d.error_id = t.error_id AND {DISCARDABLE}
             RETURNING d.error_id, d.batch, d.key, d.error_code, d.attempts"
        ),
        &[],
    )?;
    let mut discards = Vec::new();
    for r in taken {
        let (error_id, batch, key, error_code): (String, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let attempts = r.get::<_, i32>(4) as u32;
        let identity = Identity::new(batch, key);
        let event_id = Uuid::new_v4();
        let line = AuditRecord::new(DEAD_LETTER_DISCARDED, &identity)
            .with("error_id", error_id.as_str())
            .with("error_code", error_code)
            .with("attempts", attempts)
            .to_line(event_id);
        tx.execute(
            "INSERT INTO outcomes (event_id, batch, key, line, created_ms, auditor) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &event_id.to_string(),
                &identity.batch.as_ref(),
                &identity.key.as_ref(),
                &line,
                &now_ms(),
                &me,
            ],
        )?;
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
