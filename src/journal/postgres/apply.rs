//! The journal's operations in PostgreSQL: one transaction per group. Runs of state
//! writes are applied together, many changes per statement (`write.rs`); the other
//! operations one statement each. Claims skip rows other instances hold locked
//! (`FOR UPDATE SKIP LOCKED`) and take over the actions of dead instances.

use std::sync::Arc;

use bytes::Bytes;
use postgres::{Client, GenericClient, Row, Transaction};

use super::write::{self, Me};
use super::{Cluster, Target};
use crate::action::Identity;
use crate::dead_letter::DeadLetter;
use crate::journal::record::{now_ms, ActionRow, StateWord};
use crate::journal::view::BatchCounts;
use crate::journal::writer::{Backend, Done};
use crate::journal::{Claim, Claimed, Inserted, JournalError, Op, OutcomeLine, Pruned, Replay, Snapshot};
use crate::state::Note;
use crate::telemetry::events::ActionsClaimed;

/// Actions examined per pruning round (a range of row ids).
const PRUNE_ROUND: i64 = 10_000;

/// The columns of an action row, in `read_row`'s order.
pub(crate) const ROW_COLUMNS: &str = "id, batch, key, state, attempt, retry_count, series, action_id, poll_id, \
     until_ms, first_submit_ms, latency_ms, compensating, restarts, updated_ms";

/// "Alive": an instance whose heartbeat is younger than the lease (ms in `$lease`).
pub(crate) const LIVE: &str =
    "SELECT id FROM instances WHERE stopped_at IS NULL AND heartbeat_at > now() - $LEASE::bigint * interval '1 millisecond'";

/// The PostgreSQL backend of the writer thread.
pub struct Postgres {
    target: Target,
    client: Option<Client>,
    pub(super) cluster: Arc<Cluster>,
    /// This daemon's name, written into every history event.
    pub(super) name: String,
}

impl Postgres {
    /// The backend, with its own connection.
    pub fn new(target: Target, cluster: Arc<Cluster>, name: String) -> Result<Self, JournalError> {
        let client = Some(target.connect()?);
        Ok(Postgres {
            target,
            client,
            cluster,
            name,
        })
    }
}

impl Backend for Postgres {
    fn apply(&mut self, ops: &[Op]) -> Result<Vec<Done>, JournalError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = Some(self.target.connect()?);
        }
        let client = self.client.as_mut().expect("connected above");
        let result = (|| {
            let mut tx = client.transaction()?;
            let mut done = Vec::with_capacity(ops.len());
            let mut i = 0;
            while i < ops.len() {
                let run = ops[i..].iter().take_while(|op| write::is_state_write(op)).count();
                if run > 0 {
                    done.extend(write::apply(
                        &mut tx,
                        self_ref(&self.cluster, &self.name),
                        &ops[i..i + run],
                    )?);
                    i += run;
                } else {
                    done.push(apply_one(&mut tx, &self.cluster, &self.name, &ops[i])?);
                    i += 1;
                }
            }
            tx.commit()?;
            Ok::<_, postgres::Error>(done)
        })();
        result.map_err(|e| {
            let error = self.target.error()(e);
            if self.client.as_ref().is_some_and(|c| c.is_closed()) {
                self.client = None;
            }
            error
        })
    }
}

fn self_ref<'a>(cluster: &'a Cluster, name: &'a str) -> Me<'a> {
    Me {
        owner: &cluster.instance,
        name,
    }
}

fn lease_sql(sql: &str, lease_param: usize) -> String {
    sql.replace("$LEASE", &format!("${lease_param}"))
}

fn apply_one(tx: &mut Transaction<'_>, cluster: &Cluster, name: &str, op: &Op) -> Result<Done, postgres::Error> {
    let me = cluster.instance.as_str();
    let lease = cluster.lease_timeout.as_millis() as i64;
    Ok(match op {
        Op::Insert { batch, rows, .. } => Done::Inserted(insert(tx, batch, rows)?),
        Op::Claim { batch, limit, .. } => Done::Claimed(claim(tx, me, name, lease, batch, *limit)?),
        Op::Reload { claim, .. } => Done::Row(
            tx.query_opt(
                &format!("SELECT {ROW_COLUMNS} FROM actions WHERE id = $1 AND fence = $2 AND owner = $3"),
                &[&claim.id, &claim.fence, &me],
            )?
            .map(|r| read_row(&r)),
        ),
        Op::MarkAudited { event_ids, .. } => {
            tx.execute(
                "UPDATE outcomes SET audited = TRUE WHERE event_id = ANY($1) AND auditor = $2",
                &[event_ids, &me],
            )?;
            Done::Nothing
        }
        Op::Delivery {
            error_id,
            attempts,
            delivered,
            error,
            next_attempt_ms,
        } => {
            tx.execute(
                "UPDATE dead_letters SET attempts = $2, delivered = $3, last_error = $4, next_attempt_ms = $5,
                        delivered_ms = CASE WHEN $3 THEN $6 ELSE delivered_ms END, lease_owner = NULL, lease_until_ms = NULL
                 WHERE error_id = $1 AND lease_owner = $7",
                &[error_id, &(*attempts as i32), delivered, error, next_attempt_ms, &now_ms(), &me],
            )?;
            Done::Nothing
        }
        Op::ClaimLetters { limit, lease_ms, .. } => Done::Letters(claim_letters(tx, me, *limit as i64, *lease_ms)?),
        Op::UndeliveredLetters(_) => Done::Count(
            tx.query_one(
                "SELECT count(*) FROM dead_letters WHERE NOT delivered AND NOT discarded",
                &[],
            )?
            .get::<_, i64>(0) as u64,
        ),
        Op::TakeReplays(_) => Done::Replays(take_replays(tx, name)?),
        Op::TakeDiscards(_) => Done::Discards(super::letters::apply_discards(tx, me)?),
        Op::Unresolved { batches, .. } => {
            let names: Vec<&str> = batches.iter().map(|b| b.as_ref()).collect();
            Done::Count(
                tx.query_one(
                    "SELECT count(*) FROM actions WHERE batch = ANY($1) AND open AND body IS NOT NULL",
                    &[&names],
                )?
                .get::<_, i64>(0) as u64,
            )
        }
        Op::Counts { batches, .. } => Done::Counts(batches.iter().map(|b| counts(tx, b)).collect::<Result<_, _>>()?),
        Op::Prune { before_ms, from, .. } => Done::Pruned(prune(tx, *before_ms, *from)?),
        Op::Source { batch, path, .. } => Done::Source(
            tx.query_opt(
                "SELECT hash FROM sources WHERE batch = $1 AND path = $2",
                &[&batch.as_ref(), path],
            )?
            .map(|r| r.get(0)),
        ),
        Op::RecordSource {
            batch,
            path,
            hash,
            actions,
        } => {
            tx.execute(
                "INSERT INTO sources (batch, path, hash, actions, loaded_ms) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (batch, path) DO UPDATE SET hash = excluded.hash, actions = excluded.actions,
                        loaded_ms = excluded.loaded_ms",
                &[&batch.as_ref(), path, hash, &(*actions as i64), &now_ms()],
            )?;
            Done::Nothing
        }
        Op::RescueAudit(_) => Done::Lines(rescue_audit(tx, me, lease)?),
        // This instance's own lines not yet confirmed in its audit file.
        Op::Snapshot(_) => Done::Snapshot(Snapshot {
            unaudited: tx
                .query(
                    "SELECT event_id, line FROM outcomes WHERE NOT audited AND auditor = $1",
                    &[&me],
                )?
                .iter()
                .map(|r| OutcomeLine {
                    event_id: r.get(0),
                    line: r.get(1),
                })
                .collect(),
        }),
        Op::ClaimWriting { event_ids, .. } => Done::Ids(
            tx.query(
                "UPDATE outcomes SET writing = TRUE WHERE event_id = ANY($1) AND auditor = $2 AND NOT audited
                 RETURNING event_id",
                &[event_ids, &me],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect(),
        ),
        Op::PublishPause { endpoint, until_ms } => {
            tx.execute(
                "INSERT INTO pauses (endpoint, until_ms) VALUES ($1, $2)
                 ON CONFLICT (endpoint) DO UPDATE SET until_ms = GREATEST(pauses.until_ms, excluded.until_ms)",
                &[&endpoint.as_str(), until_ms],
            )?;
            Done::Nothing
        }
        Op::Release => {
            tx.execute("UPDATE actions SET owner = NULL WHERE owner = $1 AND open", &[&me])?;
            tx.execute("UPDATE instances SET stopped_at = now() WHERE id = $1", &[&me])?;
            Done::Nothing
        }
        Op::Vacuum(_) | Op::Flush(_) => Done::Nothing,
        Op::Save { .. } | Op::Resolve { .. } => unreachable!("state writes are applied in runs"),
    })
}

/// Loads a chunk: new identities are inserted; one already journaled keeps its body (a
/// missing body is filled in).
fn insert(
    tx: &mut Transaction<'_>,
    batch: &str,
    rows: &[crate::config::actions::ConfiguredAction],
) -> Result<Inserted, postgres::Error> {
    let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    let bodies: Vec<&[u8]> = rows.iter().map(|r| r.body.as_slice()).collect();
    let inserted: std::collections::HashSet<String> = tx
        .query(
            "INSERT INTO actions (batch, key, body, created_ms, updated_ms)
             SELECT $1, k, b, $4, $4 FROM unnest($2::text[], $3::bytea[]) AS u(k, b)
             ON CONFLICT (batch, key) DO NOTHING RETURNING key",
            &[&batch, &keys, &bodies, &now_ms()],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut counts = Inserted {
        inserted: inserted.len(),
        ..Inserted::default()
    };
    let rest: Vec<&crate::config::actions::ConfiguredAction> =
        rows.iter().filter(|r| !inserted.contains(&r.key)).collect();
    if rest.is_empty() {
        return Ok(counts);
    }
    let rest_keys: Vec<&str> = rest.iter().map(|r| r.key.as_str()).collect();
    let journaled: std::collections::HashMap<String, Option<Vec<u8>>> = tx
        .query(
            "SELECT key, body FROM actions WHERE batch = $1 AND key = ANY($2)",
            &[&batch, &rest_keys],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for row in rest {
        match journaled.get(&row.key) {
            // A body the journal lacks is filled in where it is still needed (no outcome
            // yet, or a dead letter that can be replayed); a pruned action stays small.
            Some(None) => {
                tx.execute(
                    "UPDATE actions SET body = $3 WHERE batch = $1 AND key = $2
                       AND (open OR EXISTS (SELECT 1 FROM dead_letters d
                                            WHERE d.batch = actions.batch AND d.key = actions.key AND NOT d.replayed))",
                    &[&batch, &row.key, &row.body],
                )?;
                counts.unchanged += 1;
            }
            Some(Some(body)) if *body == row.body => counts.unchanged += 1,
            _ => counts.differing += 1,
        }
    }
    Ok(counts)
}

/// Claims up to `limit` due actions of `batch`: first those of instances that are no
/// longer alive (rescued), then unclaimed ones, each in file order.
///
/// Two statements, each reading only rows it may take: the actions of dead instances
/// through `actions_owner` (and only when a dead instance holds any), the unclaimed ones
/// through `actions_unowned`. One statement over every open row of the batch would read
/// the in-flight actions at each claim, and the planner, without statistics on a freshly
/// loaded table, sorted the whole batch to find the first few.
fn claim(
    tx: &mut Transaction<'_>,
    me: &str,
    name: &str,
    lease: i64,
    batch: &str,
    limit: usize,
) -> Result<Vec<Claimed>, postgres::Error> {
    let take =
        |tx: &mut Transaction<'_>, owners: &str, limit: usize, extra: &[&(dyn postgres::types::ToSql + Sync)]| {
            let sql = format!(
                "WITH due AS (
                 SELECT id, owner AS previous FROM actions
                 WHERE batch = $1 AND open AND body IS NOT NULL AND {owners}
                 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
             UPDATE actions a SET owner = $3, fence = a.fence + 1 FROM due WHERE a.id = due.id
             RETURNING a.{}, a.fence, a.body, due.previous IS NOT NULL AS rescued",
                ROW_COLUMNS.replace(", ", ", a.")
            );
            let limit = limit as i64;
            let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&batch, &limit, &me];
            params.extend_from_slice(extra);
            tx.query(&sql, &params)
        };
    let dead: Vec<String> = tx
        .query(
            &lease_sql(
                &format!(
                    "SELECT i.id FROM instances i WHERE i.id NOT IN ({LIVE})
                       AND EXISTS (SELECT 1 FROM actions a WHERE a.owner = i.id AND a.open)"
                ),
                1,
            ),
            &[&lease],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut rows = if dead.is_empty() {
        Vec::new()
    } else {
        take(tx, "owner = ANY($4)", limit, &[&dead])?
    };
    if rows.len() < limit {
        rows.extend(take(tx, "owner IS NULL", limit - rows.len(), &[])?);
    }
    let mut rescued = 0;
    let taken_over = Note {
        detail: Some("taken over from an instance that stopped renewing its heartbeat".into()),
        ..Note::default()
    };
    for r in rows.iter().filter(|r| r.get::<_, bool>("rescued")) {
        rescued += 1;
        let mut row = read_row(r);
        row.updated_ms = now_ms();
        write::event(tx, r.get("id"), &row, &taken_over, name)?;
    }
    let mut claimed: Vec<Claimed> = rows
        .iter()
        .map(|r| Claimed {
            claim: Claim {
                id: r.get("id"),
                fence: r.get("fence"),
            },
            row: read_row(r),
            body: Bytes::from(r.get::<_, Vec<u8>>("body")),
        })
        .collect();
    claimed.sort_by_key(|c| c.claim.id);
    ActionsClaimed {
        claimed: claimed.len(),
        rescued,
    }
    .emit();
    if rescued > 0 {
        tracing::info!(batch, rescued, "Actions of a dead instance rescued.");
    }
    Ok(claimed)
}

/// Reads an action row (the columns of `ROW_COLUMNS`).
pub(crate) fn read_row(r: &Row) -> ActionRow {
    let state: String = r.get("state");
    let compensating: Option<String> = r.get("compensating");
    let int = |name: &str| r.get::<_, i32>(name) as u32;
    ActionRow {
        identity: Identity::new(r.get::<_, String>("batch"), r.get::<_, String>("key")),
        state: StateWord::parse(&state).unwrap_or(StateWord::Pending),
        attempt: int("attempt"),
        retry_count: int("retry_count"),
        series: int("series"),
        action_id: r.get("action_id"),
        poll_id: r.get("poll_id"),
        until_ms: r.get("until_ms"),
        first_submit_ms: r.get("first_submit_ms"),
        latency_ms: r.get("latency_ms"),
        compensating: compensating.and_then(|c| serde_json::from_str(&c).ok()),
        restarts: int("restarts"),
        updated_ms: r.get("updated_ms"),
    }
}

/// Claims up to `limit` dead letters due now, leased to `me` for `lease_ms` (the
/// database's clock decides, the same for every instance).
fn claim_letters(
    tx: &mut Transaction<'_>,
    me: &str,
    limit: i64,
    lease_ms: i64,
) -> Result<Vec<(DeadLetter, u32)>, postgres::Error> {
    let rows = tx.query(
        "WITH clock AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now),
              due AS (SELECT error_id FROM dead_letters, clock
                      WHERE NOT delivered AND NOT discarded AND next_attempt_ms <= clock.now
                        AND (lease_until_ms IS NULL OR lease_until_ms < clock.now)
                      ORDER BY next_attempt_ms, created_ms LIMIT $1 FOR UPDATE SKIP LOCKED)
         UPDATE dead_letters d SET lease_owner = $2, lease_until_ms = clock.now + $3
         FROM due, clock WHERE d.error_id = due.error_id
         RETURNING d.body, d.attempts",
        &[&limit, &me, &lease_ms],
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let body: String = r.get(0);
            serde_json::from_str::<DeadLetter>(&body)
                .ok()
                .map(|letter| (letter, r.get::<_, i32>(1) as u32))
        })
        .collect())
}

/// Takes over the outcome lines that dead instances committed but never began to write:
/// they are in no audit file, and this instance appends them. (A line a dead instance
/// was writing may be in its file: the instance restarted on its host reconciles it.)
fn rescue_audit(tx: &mut Transaction<'_>, me: &str, lease: i64) -> Result<Vec<OutcomeLine>, postgres::Error> {
    let sql = lease_sql(
        &format!(
            "UPDATE outcomes SET auditor = $1
             WHERE event_id IN (SELECT event_id FROM outcomes WHERE NOT audited AND NOT writing AND auditor <> $1
                                  AND auditor NOT IN ({LIVE}) FOR UPDATE SKIP LOCKED)
             RETURNING event_id, line"
        ),
        2,
    );
    Ok(tx
        .query(&sql, &[&me, &lease])?
        .iter()
        .map(|r| OutcomeLine {
            event_id: r.get(0),
            line: r.get(1),
        })
        .collect())
}

/// Applies pending `dlq replay` requests (each by exactly one instance).
fn take_replays(tx: &mut Transaction<'_>, name: &str) -> Result<Vec<Replay>, postgres::Error> {
    let requests: Vec<String> = tx
        .query(
            "DELETE FROM replay_requests WHERE id IN (SELECT id FROM replay_requests ORDER BY id FOR UPDATE SKIP LOCKED)
             RETURNING error_id",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut replays = Vec::new();
    for error_id in requests {
        let found = tx.query_opt(
            "SELECT a.id, a.batch, a.key, a.series FROM dead_letters d JOIN actions a ON a.batch = d.batch AND a.key = d.key
             WHERE d.error_id = $1 AND NOT d.replayed AND a.body IS NOT NULL AND NOT a.open FOR UPDATE OF a, d",
            &[&error_id],
        )?;
        let Some(found) = found else { continue };
        let (id, batch, key, series): (i64, String, String, i32) =
            (found.get(0), found.get(1), found.get(2), found.get(3));
        tx.execute(
            "UPDATE dead_letters SET replayed = TRUE WHERE error_id = $1",
            &[&error_id],
        )?;
        let identity = Identity::new(batch, key);
        let mut row = ActionRow::pending(&identity, series as u32 + 1);
        row.updated_ms = now_ms();
        tx.execute(
            "UPDATE actions SET state = 'pending', open = TRUE, attempt = 1, retry_count = 0, series = $2, action_id = NULL,
                    poll_id = NULL, until_ms = NULL, first_submit_ms = NULL, latency_ms = NULL, compensating = NULL,
                    owner = NULL, fence = fence + 1, updated_ms = $3, resolved_ms = NULL
             WHERE id = $1",
            &[&id, &(row.series as i32), &row.updated_ms],
        )?;
        let note = Note {
            detail: Some(format!("dead letter {error_id} replayed")),
            ..Note::default()
        };
        write::event(tx, id, &row, &note, name)?;
        replays.push(Replay {
            identity,
            series: row.series,
            error_id,
        });
    }
    Ok(replays)
}

/// One batch's numbers; the percentiles are computed by the database.
pub(crate) fn counts(client: &mut impl GenericClient, batch: &str) -> Result<BatchCounts, postgres::Error> {
    let mut counts = BatchCounts {
        batch: batch.to_owned(),
        ..BatchCounts::default()
    };
    for r in client.query(
        "SELECT state, count(*), sum(CASE WHEN NOT open THEN retry_count ELSE 0 END)::bigint, sum(restarts)::bigint
         FROM actions WHERE batch = $1 GROUP BY state",
        &[&batch],
    )? {
        let (state, n, retries, restarts): (String, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
        if let Some(i) = StateWord::parse(&state).and_then(|w| StateWord::ALL.iter().position(|s| *s == w)) {
            counts.states[i] += n as u64;
        }
        counts.total += n as u64;
        counts.retries += retries as u64;
        counts.restarts += restarts as u64;
    }
    let row = client.query_one(
        "SELECT percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms)
         FROM actions WHERE batch = $1 AND NOT open AND latency_ms IS NOT NULL",
        &[&batch],
    )?;
    if let Some(p) = row.get::<_, Option<Vec<i64>>>(0) {
        let secs = |i: usize| p.get(i).map(|ms| *ms as f64 / 1000.0);
        (counts.p50, counts.p95, counts.p99) = (secs(0), secs(1), secs(2));
    }
    Ok(counts)
}

/// One round of pruning over the row ids `[from, from + PRUNE_ROUND)`.
pub(crate) fn prune(client: &mut impl GenericClient, before_ms: i64, from: i64) -> Result<Pruned, postgres::Error> {
    let to = from + PRUNE_ROUND;
    let old = "id >= $1 AND id < $2 AND NOT open AND resolved_ms < $3";
    let events = client.execute(
        &format!("DELETE FROM history WHERE action IN (SELECT id FROM actions WHERE {old})"),
        &[&from, &to, &before_ms],
    )?;
    let outcome_lines = client.execute(
        "DELETE FROM outcomes o USING actions a WHERE o.audited AND o.batch = a.batch AND o.key = a.key
           AND a.id >= $1 AND a.id < $2 AND NOT a.open AND a.resolved_ms < $3 AND a.body IS NOT NULL",
        &[&from, &to, &before_ms],
    )?;
    let actions = client.execute(
        &format!("UPDATE actions SET body = NULL, compensating = NULL WHERE {old} AND body IS NOT NULL"),
        &[&from, &to, &before_ms],
    )?;
    let max: i64 = client
        .query_one("SELECT coalesce(max(id), 0) FROM actions", &[])?
        .get(0);
    let mut pruned = Pruned {
        actions,
        events,
        outcome_lines,
        ..Pruned::default()
    };
    if to <= max {
        pruned.next = Some(to);
    } else {
        pruned.dead_letters = client.execute(
            "DELETE FROM dead_letters WHERE created_ms < $1 AND (delivered OR replayed OR discarded)",
            &[&before_ms],
        )?;
        // A row per start: members gone (stopped, or silent) since before the cutoff
        // that hold nothing any more would otherwise pile up for the cluster's life.
        pruned.instances = client.execute(
            "DELETE FROM instances i
              WHERE coalesce(i.stopped_at, i.heartbeat_at) < to_timestamp($1::bigint / 1000.0)
                AND NOT EXISTS (SELECT 1 FROM actions a WHERE a.open AND a.owner = i.id)
                AND NOT EXISTS (SELECT 1 FROM outcomes o WHERE NOT o.audited AND o.auditor = i.id)
                AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.lease_owner = i.id)",
            &[&before_ms],
        )?;
    }
    Ok(pruned)
}
