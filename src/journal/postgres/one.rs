//! One action as the PostgreSQL reader shows it: its head (row, body, latest dead
//! letter), its history page by page, and the audit lines the journal keeps for it.

use postgres::Client;

use super::apply::{read_row, ROW_COLUMNS};
use super::letters;
use crate::action::Identity;
use crate::journal::view::rfc3339_ms;
use crate::journal::{ActionView, HistoryEvent};

/// The action's row id and view, without its history.
pub(super) fn head(
    client: &mut Client,
    identity: &Identity,
    has_webhook: bool,
) -> Result<Option<(i64, ActionView)>, postgres::Error> {
    let (batch, key) = (identity.batch.as_ref(), identity.key.as_ref());
    let Some(found) = client.query_opt(
        &format!("SELECT {ROW_COLUMNS}, body FROM actions WHERE batch = $1 AND key = $2"),
        &[&batch, &key],
    )?
    else {
        return Ok(None);
    };
    let (id, row, body): (i64, _, Option<Vec<u8>>) = (found.get("id"), read_row(&found), found.get("body"));
    let dead_letter = client
        .query_opt(
            "SELECT * FROM dead_letters WHERE batch = $1 AND key = $2 ORDER BY created_ms DESC LIMIT 1",
            &[&batch, &key],
        )?
        .and_then(|r| letters::view(&r, has_webhook));
    Ok(Some((
        id,
        ActionView {
            batch: batch.to_owned(),
            key: key.to_owned(),
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
pub(super) fn row_id(client: &mut Client, identity: &Identity) -> Result<Option<i64>, postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT id FROM actions WHERE batch = $1 AND key = $2",
            &[&identity.batch.as_ref(), &identity.key.as_ref()],
        )?
        .map(|r| r.get(0)))
}

/// Up to `limit` history events of action `id` after event id `after`, oldest first,
/// each with its event id (the cursor of the next page).
pub(super) fn history(
    client: &mut Client,
    id: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, HistoryEvent)>, postgres::Error> {
    Ok(client
        .query(
            "SELECT id, at_ms, state, attempt, action_id, http_status, error_code, detail, instance
             FROM history WHERE action = $1 AND id > $2 ORDER BY id LIMIT $3",
            &[&id, &after, &limit],
        )?
        .iter()
        .map(|r| {
            (
                r.get(0),
                HistoryEvent {
                    at: rfc3339_ms(r.get(1)),
                    state: r.get(2),
                    attempt: r.get::<_, i32>(3) as u32,
                    action_id: r.get(4),
                    http_status: r.get::<_, Option<i32>>(5).map(|s| s as u16),
                    error_code: r.get(6),
                    detail: r.get(7),
                    instance: r.get(8),
                },
            )
        })
        .collect())
}

/// The audit lines the journal keeps for an action, oldest first.
pub(super) fn audit_lines(client: &mut Client, identity: &Identity) -> Result<Vec<String>, postgres::Error> {
    Ok(client
        .query(
            "SELECT line FROM outcomes WHERE batch = $1 AND key = $2 ORDER BY created_ms, event_id",
            &[&identity.batch.as_ref(), &identity.key.as_ref()],
        )?
        .iter()
        .map(|r| {
            let line: Vec<u8> = r.get(0);
            String::from_utf8_lossy(&line).trim_end().to_owned()
        })
        .collect())
}
