//! State writes in batches: a run of `Save`/`Resolve` operations becomes one `UPDATE ...
//! FROM unnest(...)` conditional on owner and fencing token, one history `INSERT`, and
//! one `INSERT` each for the outcome lines and dead letters of the resolutions that
//! were written. A group of a thousand state changes costs a handful of statements.

use std::collections::{HashMap, HashSet};

use postgres::Transaction;

use crate::journal::record::ActionRow;
use crate::journal::writer::Done;
use crate::journal::{Op, Written};
use crate::state::Note;

/// True for the operations applied in runs.
pub(super) fn is_state_write(op: &Op) -> bool {
    matches!(op, Op::Save { .. } | Op::Resolve { .. })
}

/// The parts of a state write.
fn parts(op: &Op) -> (crate::journal::Claim, &ActionRow, &Note) {
    match op {
        Op::Save { claim, row, note, .. } | Op::Resolve { claim, row, note, .. } => (*claim, row, note),
        _ => unreachable!("a state write"),
    }
}

/// What the batched writes need to know about this instance.
pub(super) struct Me<'a> {
    pub owner: &'a str,
    pub name: &'a str,
}

/// Applies a run of state writes; one `Done::Written` per operation, in order.
pub(super) fn apply(tx: &mut Transaction<'_>, me: Me<'_>, ops: &[Op]) -> Result<Vec<Done>, postgres::Error> {
    // The row an action ends up with is its last write under each claim.
    let mut last: HashMap<(i64, i64), usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        let (claim, _, _) = parts(op);
        last.insert((claim.id, claim.fence), i);
    }
    let mut finals: Vec<usize> = last.into_values().collect();
    finals.sort_unstable();
    let written = update(tx, me.owner, finals.iter().map(|i| parts(&ops[*i])))?;
    let kept: Vec<&Op> = ops
        .iter()
        .filter(|op| {
            let (claim, _, _) = parts(op);
            written.contains(&(claim.id, claim.fence))
        })
        .collect();
    history(tx, me.name, kept.iter().map(|op| parts(op)))?;
    resolutions(tx, me.owner, &kept)?;
    Ok(ops
        .iter()
        .map(|op| {
            let (claim, _, _) = parts(op);
            Done::Written(if written.contains(&(claim.id, claim.fence)) {
                Written::Done
            } else {
                Written::Lost
            })
        })
        .collect())
}

/// The conditional update of every final row; returns the (id, fence) pairs written.
///
/// The plan must not depend on statistics, which a freshly loaded table lacks:
/// - `a.id = ANY($1)` repeats the join key as an index condition: joined with `unnest`
///   alone, the planner hashed a sequential scan of the whole table at every group commit;
/// - the owner check is written so that the planner cannot take it as selective: as
///   `a.owner = $16` it estimated one matching row and looped over the whole `unnest` for
///   each row (quadratic in the group). `coalesce(.., FALSE)` matches exactly the same
///   rows (a NULL owner never matches).
fn update<'a>(
    tx: &mut Transaction<'_>,
    owner: &str,
    writes: impl Iterator<Item = (crate::journal::Claim, &'a ActionRow, &'a Note)>,
) -> Result<HashSet<(i64, i64)>, postgres::Error> {
    let mut c = Columns::default();
    for (claim, row, _) in writes {
        c.push(claim, row);
    }
    let rows = tx.query(
        "UPDATE actions a SET state = u.state, open = u.open, attempt = u.attempt, retry_count = u.retry_count,
                series = u.series, action_id = u.action_id, poll_id = u.poll_id, until_ms = u.until_ms,
                first_submit_ms = u.first_submit_ms, latency_ms = u.latency_ms, compensating = u.compensating,
                restarts = u.restarts, updated_ms = u.updated_ms,
                resolved_ms = CASE WHEN u.open THEN NULL ELSE u.updated_ms END
         FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bool[], $5::int[], $6::int[], $7::int[],
                     $8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::int[],
                     $15::bigint[])
              AS u(id, fence, state, open, attempt, retry_count, series, action_id, poll_id, until_ms,
                   first_submit_ms, latency_ms, compensating, restarts, updated_ms)
         WHERE a.id = ANY($1) AND a.id = u.id AND a.fence = u.fence AND coalesce(a.owner = $16, FALSE)
         RETURNING a.id, a.fence",
        &[
            &c.id,
            &c.fence,
            &c.state,
            &c.open,
            &c.attempt,
            &c.retry_count,
            &c.series,
            &c.action_id,
            &c.poll_id,
            &c.until_ms,
            &c.first_submit_ms,
            &c.latency_ms,
            &c.compensating,
            &c.restarts,
            &c.updated_ms,
            &owner,
        ],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The update's arrays, one element per row.
#[derive(Default)]
struct Columns {
    id: Vec<i64>,
    fence: Vec<i64>,
    state: Vec<&'static str>,
    open: Vec<bool>,
    attempt: Vec<i32>,
    retry_count: Vec<i32>,
    series: Vec<i32>,
    action_id: Vec<Option<String>>,
    poll_id: Vec<Option<String>>,
    until_ms: Vec<Option<i64>>,
    first_submit_ms: Vec<Option<i64>>,
    latency_ms: Vec<Option<i64>>,
    compensating: Vec<Option<String>>,
    restarts: Vec<i32>,
    updated_ms: Vec<i64>,
}

impl Columns {
    fn push(&mut self, claim: crate::journal::Claim, row: &ActionRow) {
        self.id.push(claim.id);
        self.fence.push(claim.fence);
        self.state.push(row.state.as_str());
        self.open.push(!row.state.is_outcome());
        self.attempt.push(row.attempt as i32);
        self.retry_count.push(row.retry_count as i32);
        self.series.push(row.series as i32);
        self.action_id.push(row.action_id.clone());
        self.poll_id.push(row.poll_id.clone());
        self.until_ms.push(row.until_ms);
        self.first_submit_ms.push(row.first_submit_ms);
        self.latency_ms.push(row.latency_ms);
        self.compensating.push(
            row.compensating
                .as_ref()
                .map(|c| serde_json::to_string(c).expect("a payload serializes")),
        );
        self.restarts.push(row.restarts as i32);
        self.updated_ms.push(row.updated_ms);
    }
}

/// One history event per written state, in order.
fn history<'a>(
    tx: &mut Transaction<'_>,
    instance: &str,
    events: impl Iterator<Item = (crate::journal::Claim, &'a ActionRow, &'a Note)>,
) -> Result<(), postgres::Error> {
    let (mut action, mut at, mut state, mut attempt) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut id, mut status, mut code, mut detail) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (claim, row, note) in events {
        action.push(claim.id);
        at.push(row.updated_ms);
        state.push(row.state.as_str());
        attempt.push(row.attempt as i32);
        id.push(row.poll_id.clone().or_else(|| row.action_id.clone()));
        status.push(note.http_status.map(i32::from));
        code.push(note.error_code.clone());
        detail.push(note.detail.clone());
    }
    if action.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO history (action, at_ms, state, attempt, action_id, http_status, error_code, detail, instance)
         SELECT action, at_ms, state, attempt, action_id, http_status, error_code, detail, $9
         FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[], $5::text[], $6::int[], $7::text[], $8::text[])
              WITH ORDINALITY AS u(action, at_ms, state, attempt, action_id, http_status, error_code, detail, n)
         ORDER BY n",
        &[&action, &at, &state, &attempt, &id, &status, &code, &detail, &instance],
    )?;
    Ok(())
}

/// One event for a transition written alone (a replay).
pub(super) fn event(
    tx: &mut Transaction<'_>,
    action: i64,
    row: &ActionRow,
    note: &Note,
    instance: &str,
) -> Result<(), postgres::Error> {
    let claim = crate::journal::Claim { id: action, fence: 0 };
    history(tx, instance, std::iter::once((claim, row, note)))
}

/// The outcome lines and dead letters of the resolutions written.
fn resolutions(tx: &mut Transaction<'_>, auditor: &str, written: &[&Op]) -> Result<(), postgres::Error> {
    let (mut event, mut batch, mut key, mut line, mut at) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut error, mut l_batch, mut l_key, mut l_code, mut body, mut l_at) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for op in written {
        let Op::Resolve {
            row, outcome, letter, ..
        } = op
        else {
            continue;
        };
        event.push(outcome.event_id.as_str());
        batch.push(row.identity.batch.as_ref());
        key.push(row.identity.key.as_ref());
        line.push(outcome.line.as_slice());
        at.push(row.updated_ms);
        if let Some(letter) = letter {
            error.push(letter.error_id.to_string());
            l_batch.push(letter.batch.as_str());
            l_key.push(letter.key.as_str());
            l_code.push(letter.error_code.as_str());
            body.push(serde_json::to_string(letter).expect("a letter serializes"));
            l_at.push(row.updated_ms);
        }
    }
    if !event.is_empty() {
        tx.execute(
            "INSERT INTO outcomes (event_id, batch, key, line, created_ms, auditor)
             SELECT e, b, k, l, c, $6 FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bigint[]) AS u(e, b, k, l, c)
             ON CONFLICT (event_id) DO NOTHING",
            &[&event, &batch, &key, &line, &at, &auditor],
        )?;
    }
    if !error.is_empty() {
        tx.execute(
            "INSERT INTO dead_letters (error_id, batch, key, error_code, body, created_ms)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
             ON CONFLICT (error_id) DO NOTHING",
            &[&error, &l_batch, &l_key, &l_code, &body, &l_at],
        )?;
    }
    Ok(())
}
