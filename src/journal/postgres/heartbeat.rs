//! The heartbeat thread: registers this instance, renews its heartbeat every
//! `cluster.heartbeat`, reads the cluster-wide 429 pauses, and counts the live
//! instances. A database that does not answer leaves the heartbeat unrenewed: the
//! instance fences itself (`Cluster::fenced`) and carries on when it answers again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use postgres::Client;

use super::{Cluster, Target};
use crate::journal::{JournalError, OutcomeLine};
use crate::telemetry::metrics::Endpoint;

/// How often the pauses are read at most apart, whatever the heartbeat: a 429 learned by
/// one instance is honoured by the others within a second.
const PAUSE_POLL: Duration = Duration::from_secs(1);
/// Wait before reconnecting after the database failed.
const RECONNECT: Duration = Duration::from_millis(500);

/// Registers this instance (a fresh id, its name, host, pid and start time).
pub(super) fn register(
    client: &mut Client,
    target: &Target,
    cluster: &Cluster,
    name: &str,
    audit_path: &str,
) -> Result<(), JournalError> {
    client
        .execute(
            "INSERT INTO instances (id, name, host, pid, started_at, heartbeat_at, audit_path)
             VALUES ($1, $2, $3, $4, now(), now(), $5)",
            &[
                &cluster.instance,
                &name,
                &crate::config::host_name(),
                &(std::process::id() as i32),
                &audit_path,
            ],
        )
        .map_err(target.error())?;
    Ok(())
}

/// Takes over the outcome lines that dead instances of this host, writing to this audit
/// file, had begun to write: the file tells whether they made it.
pub(super) fn predecessors_lines(
    client: &mut Client,
    target: &Target,
    cluster: &Cluster,
    audit_path: &str,
) -> Result<Vec<OutcomeLine>, JournalError> {
    let lease = cluster.lease_timeout.as_millis() as i64;
    let rows = client
        .query(
            "UPDATE outcomes SET auditor = $1
             WHERE NOT audited AND writing AND auditor IN (
                 SELECT id FROM instances WHERE host = $2 AND audit_path = $3 AND id <> $1
                   AND (stopped_at IS NOT NULL OR heartbeat_at <= now() - $4::bigint * interval '1 millisecond'))
             RETURNING event_id, line",
            &[&cluster.instance, &crate::config::host_name(), &audit_path, &lease],
        )
        .map_err(target.error())?;
    Ok(rows
        .iter()
        .map(|r| OutcomeLine {
            event_id: r.get(0),
            line: r.get(1),
        })
        .collect())
}

/// A start tries every undelivered letter not leased to a live delivery at once (the
/// webhook may be back) instead of after its redelivery delay.
pub(super) fn letters_due_now(client: &mut Client, target: &Target) -> Result<(), JournalError> {
    client
        .execute(
            "WITH clock AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now)
             UPDATE dead_letters SET next_attempt_ms = 0 FROM clock
             WHERE NOT delivered AND NOT discarded AND next_attempt_ms > 0
               AND (lease_until_ms IS NULL OR lease_until_ms < clock.now)",
            &[],
        )
        .map_err(target.error())?;
    Ok(())
}

/// The embedded simulator restarted with this process: actions a dead instance was
/// polling repeat their POST with the same key instead (nothing else can know them).
pub(super) fn forget_poll_ids(client: &mut Client, target: &Target, cluster: &Cluster) -> Result<(), JournalError> {
    let lease = cluster.lease_timeout.as_millis() as i64;
    let sql = format!(
        "UPDATE actions SET state = CASE state WHEN 'polling' THEN 'submitting' ELSE state END, poll_id = NULL
         WHERE open AND poll_id IS NOT NULL AND (owner IS NULL OR owner NOT IN ({}))",
        super::apply::LIVE.replace("$LEASE", "$1")
    );
    client.execute(&sql, &[&lease]).map_err(target.error())?;
    Ok(())
}

/// Starts the heartbeat thread; it stops when the cluster handle is dropped.
pub(super) fn spawn(target: Target, cluster: Arc<Cluster>) -> Result<(), JournalError> {
    std::thread::Builder::new()
        .name("journal-heartbeat".into())
        .spawn(move || run(target, cluster))
        .map_err(JournalError::io(std::path::Path::new("journal-heartbeat")))?;
    Ok(())
}

fn run(target: Target, cluster: Arc<Cluster>) {
    let tick = cluster.heartbeat.min(PAUSE_POLL);
    let mut client: Option<Client> = None;
    let mut since_beat = cluster.heartbeat;
    while !cluster.stop.load(Ordering::Relaxed) && Arc::strong_count(&cluster) > 1 {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = target.connect().ok();
        }
        let Some(c) = client.as_mut() else {
            cluster.reachable.store(false, Ordering::Relaxed);
            std::thread::sleep(RECONNECT);
            continue;
        };
        since_beat += tick;
        let beat = since_beat >= cluster.heartbeat;
        match round(c, &cluster, beat) {
            Ok(()) => {
                if beat {
                    since_beat = Duration::ZERO;
                }
            }
            Err(e) => {
                cluster.reachable.store(false, Ordering::Relaxed);
                tracing::warn!(database = %target.shown, error = %e, "Cluster heartbeat failed; retrying.");
                client = None;
            }
        }
        std::thread::sleep(tick);
    }
    if let Some(c) = client.as_mut() {
        let _ = c.execute(
            "UPDATE instances SET stopped_at = now() WHERE id = $1",
            &[&cluster.instance],
        );
    }
}

/// One round: renew the heartbeat (when due), read the pauses and the live count.
fn round(client: &mut Client, cluster: &Cluster, beat: bool) -> Result<(), postgres::Error> {
    if beat {
        client.execute(
            "UPDATE instances SET heartbeat_at = now(), stopped_at = NULL WHERE id = $1",
            &[&cluster.instance],
        )?;
        cluster.renewed();
        let lease = cluster.lease_timeout.as_millis() as i64;
        let live: i64 = client
            .query_one(
                "SELECT count(*) FROM instances WHERE stopped_at IS NULL AND heartbeat_at > now() - $1::bigint * interval '1 millisecond'",
                &[&lease],
            )?
            .get(0);
        crate::telemetry::events::ClusterInstances { live: live as usize }.emit();
    }
    for row in client.query("SELECT endpoint, until_ms FROM pauses", &[])? {
        let (endpoint, until): (String, i64) = (row.get(0), row.get(1));
        let endpoint = match endpoint.as_str() {
            "token" => Endpoint::Token,
            "submit" => Endpoint::Submit,
            "poll" => Endpoint::Poll,
            _ => continue,
        };
        cluster.set_pause(endpoint, until);
    }
    Ok(())
}
