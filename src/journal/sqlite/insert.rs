//! Loading a chunk of configured actions into the SQLite journal: new identities are
//! inserted many rows per statement and counted once per chunk; identities already
//! journaled are compared with what the file says.

use rusqlite::{params, Connection};

use crate::config::actions::ConfiguredAction;
use crate::journal::record::now_ms;
use crate::journal::Inserted;

/// Loads a chunk: new identities are inserted (and counted in `batch_states`, pending);
/// an identity already journaled keeps its body. A body the journal lacks is filled in
/// where it is still needed: an action without an outcome (from a version 1 journal) or
/// one whose dead letter can still be replayed. A pruned action with nothing left to do
/// stays a small row.
pub(super) fn insert(tx: &Connection, batch: &str, rows: &[ConfiguredAction]) -> rusqlite::Result<Inserted> {
    let now = now_ms();
    // A new row's id is one more than the largest id before it (SQLite's rule without
    // AUTOINCREMENT), so a row found with a larger id than `before` was inserted by this
    // call.
    let before: i64 = tx
        .prepare_cached("SELECT IFNULL(MAX(id), 0) FROM actions")?
        .query_row([], |r| r.get(0))?;
    let mut counts = Inserted::default();
    for group in rows.chunks(INSERT_GROUP) {
        let inserted = insert_group(tx, batch, group, now)?;
        counts.inserted += inserted;
        if inserted < group.len() {
            compare_known(tx, batch, group, before, &mut counts)?;
        }
    }
    // The counts of new rows, kept here rather than by a trigger per row (schema v4).
    if counts.inserted > 0 {
        tx.prepare_cached(
            "INSERT INTO batch_states (batch, state, actions, retries) VALUES (?1, 'pending', ?2, 0)
             ON CONFLICT (batch, state) DO UPDATE SET actions = actions + excluded.actions",
        )?
        .execute(params![batch, counts.inserted as i64])?;
    }
    Ok(counts)
}

/// Rows per insert statement while loading: the cost of starting and ending a statement
/// is spread over many rows.
const INSERT_GROUP: usize = 50;

/// Inserts the rows of `group` whose identity is new, in one statement; returns how many.
fn insert_group(tx: &Connection, batch: &str, group: &[ConfiguredAction], now: i64) -> rusqlite::Result<usize> {
    // `OR IGNORE`: only the identity can conflict (every other column is bound or has a
    // default). Unlike `ON CONFLICT DO NOTHING` nothing in it can abort halfway, so SQLite
    // keeps no statement journal for it (with the trigger gone: schema v4).
    let values: Vec<String> = (0..group.len())
        .map(|i| format!("(?1, ?{}, ?{}, ?2, ?2)", 3 + 2 * i, 4 + 2 * i))
        .collect();
    let mut stmt = tx.prepare_cached(&format!(
        "INSERT OR IGNORE INTO actions (batch, key, body, created_ms, updated_ms) VALUES {}",
        values.join(", ")
    ))?;
    let mut args: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(2 + 2 * group.len());
    args.push(&batch);
    args.push(&now);
    for row in group {
        args.push(&row.key);
        args.push(&row.body);
    }
    stmt.execute(args.as_slice())
}

/// The rows of `group` that were journaled before this load (an id up to `before`): an
/// equal body is unchanged, a missing one is filled in where needed, another is counted.
fn compare_known(
    tx: &Connection,
    batch: &str,
    group: &[ConfiguredAction],
    before: i64,
    counts: &mut Inserted,
) -> rusqlite::Result<()> {
    let mut existing = tx.prepare_cached("SELECT id, body FROM actions WHERE batch = ?1 AND key = ?2")?;
    let mut fill = tx.prepare_cached(
        "UPDATE actions SET body = ?2 WHERE id = ?1
           AND (open = 1 OR EXISTS (SELECT 1 FROM dead_letters d
                                    WHERE d.batch = actions.batch AND d.key = actions.key AND d.replayed = 0))",
    )?;
    for row in group {
        let (id, body): (i64, Option<Vec<u8>>) =
            existing.query_row(params![batch, row.key], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if id > before {
            continue;
        }
        match body {
            None => {
                fill.execute(params![id, row.body])?;
                counts.unchanged += 1;
            }
            Some(body) if body == row.body => counts.unchanged += 1,
            Some(_) => counts.differing += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(key: &str, body: &str) -> ConfiguredAction {
        ConfiguredAction {
            key: key.to_owned(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn pending(conn: &Connection, batch: &str) -> i64 {
        conn.query_row(
            "SELECT IFNULL(SUM(actions), 0) FROM batch_states WHERE batch = ?1 AND state = 'pending'",
            params![batch],
            |r| r.get(0),
        )
        .unwrap()
    }

    #[test]
    fn a_second_load_inserts_only_new_identities_and_keeps_journaled_bodies() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn, std::path::Path::new(":memory:")).unwrap();
        // More rows than one statement takes, so that groups and their remainder both run.
        let first: Vec<ConfiguredAction> = (0..120).map(|i| action(&format!("k{i}"), "{\"v\":1}")).collect();
        let loaded = insert(&conn, "b", &first).unwrap();
        assert_eq!((loaded.inserted, loaded.unchanged, loaded.differing), (120, 0, 0));
        // Again, with 3 bodies changed and 70 new identities mixed in; one body pruned.
        conn.execute("UPDATE actions SET body = NULL WHERE key = 'k7'", [])
            .unwrap();
        let mut second: Vec<ConfiguredAction> = Vec::new();
        for i in 0..190 {
            let body = if [5, 60, 119].contains(&i) {
                "{\"v\":2}"
            } else {
                "{\"v\":1}"
            };
            second.push(action(&format!("k{i}"), body));
        }
        let loaded = insert(&conn, "b", &second).unwrap();
        assert_eq!((loaded.inserted, loaded.unchanged, loaded.differing), (70, 117, 3));
        assert_eq!(pending(&conn, "b"), 190);
        let (rows, changed, filled): (i64, i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), SUM(body = CAST('{\"v\":2}' AS BLOB)), SUM(key = 'k7' AND body IS NOT NULL) FROM actions",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (rows, changed, filled),
            (190, 0, 1),
            "journaled bodies win; an open action's is filled in"
        );
        // The same identities in another batch are other actions.
        assert_eq!(insert(&conn, "c", &first[..3]).unwrap().inserted, 3);
        assert_eq!(pending(&conn, "c"), 3);
    }
}
