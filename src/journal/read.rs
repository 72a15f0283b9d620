//! Reading the journal from outside the writer: `status`, `dlq`, the admin views. SQLite
//! in WAL mode lets these read while a daemon writes; replay requests are rows the
//! daemon picks up (at once if it runs, at its next start otherwise).

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use super::record::{now_ms, ActionRow};
use super::writer::read_action;
use super::JournalError;
use crate::action::Identity;
use crate::dead_letter::DeadLetter;

/// A dead letter with its delivery state.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterView {
    /// The letter as sent to the webhook.
    pub letter: DeadLetter,
    /// Accepted by the webhook.
    pub delivered: bool,
    /// `delivered`, `pending` (the webhook has not accepted it yet) or `stored` (no
    /// webhook is configured: stored and listed only).
    pub delivery: &'static str,
    /// Delivery attempts.
    pub attempts: u32,
    /// Last delivery error.
    pub last_error: Option<String>,
    /// Replayed with `dlq replay`.
    pub replayed: bool,
}

/// A connection for reading (and requesting replays).
pub struct JournalReader {
    conn: Connection,
    path: PathBuf,
}

impl JournalReader {
    /// Opens an existing journal.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        if !path.exists() {
            return Err(JournalError::Io {
                path: path.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no journal here yet (has `run` been started?)",
                ),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| JournalError::Sqlite {
            path: path.to_owned(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|source| JournalError::Sqlite {
                path: path.to_owned(),
                source,
            })?;
        Ok(JournalReader {
            conn,
            path: path.to_owned(),
        })
    }

    fn sql(&self, source: rusqlite::Error) -> JournalError {
        JournalError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Actions, optionally filtered by batch and state word, ordered by identity.
    pub fn actions(&self, batch: Option<&str>, state: Option<&str>) -> Result<Vec<ActionRow>, JournalError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT * FROM actions WHERE (?1 IS NULL OR batch = ?1) AND (?2 IS NULL OR state = ?2) ORDER BY batch, key",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![batch, state], read_action)
            .map_err(|e| self.sql(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sql(e))?;
        Ok(rows)
    }

    /// One action.
    pub fn action(&self, identity: &Identity) -> Result<Option<ActionRow>, JournalError> {
        self.conn
            .query_row(
                "SELECT * FROM actions WHERE batch = ?1 AND key = ?2",
                params![identity.batch.as_ref(), identity.key.as_ref()],
                read_action,
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Counts of actions by batch and state word.
    pub fn counts(&self) -> Result<Vec<(String, String, u64)>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT batch, state, COUNT(*) FROM actions GROUP BY batch, state ORDER BY batch, state")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.sql(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sql(e))?;
        Ok(rows)
    }

    /// Every dead letter, oldest first; `has_webhook` tells `pending` from `stored`.
    pub fn dead_letters(&self, has_webhook: bool) -> Result<Vec<DeadLetterView>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT body, delivered, attempts, last_error, replayed FROM dead_letters ORDER BY created_ms, error_id")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get::<_, bool>(4)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (body, delivered, attempts, last_error, replayed) = row.map_err(|e| self.sql(e))?;
            if let Ok(letter) = serde_json::from_str(&body) {
                let delivery = match (delivered, has_webhook) {
                    (true, _) => "delivered",
                    (false, true) => "pending",
                    (false, false) => "stored",
                };
                out.push(DeadLetterView {
                    letter,
                    delivered,
                    delivery,
                    attempts,
                    last_error,
                    replayed,
                });
            }
        }
        Ok(out)
    }

    /// Requests replays of the given dead letters (all not yet replayed when `None`);
    /// returns the ids accepted. Unknown or already replayed ids are not accepted.
    pub fn request_replay(&self, error_ids: Option<&[String]>) -> Result<Vec<String>, JournalError> {
        let candidates: Vec<String> = match error_ids {
            Some(ids) => ids.to_vec(),
            None => {
                let mut stmt = self
                    .conn
                    .prepare("SELECT error_id FROM dead_letters WHERE replayed = 0 ORDER BY created_ms")
                    .map_err(|e| self.sql(e))?;
                let ids = stmt
                    .query_map([], |r| r.get(0))
                    .map_err(|e| self.sql(e))?
                    .collect::<Result<Vec<String>, _>>()
                    .map_err(|e| self.sql(e))?;
                ids
            }
        };
        let mut accepted = Vec::new();
        for id in candidates {
            let known: Option<bool> = self
                .conn
                .query_row(
                    "SELECT replayed FROM dead_letters WHERE error_id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.sql(e))?;
            if known == Some(false) {
                self.conn
                    .execute(
                        "INSERT INTO replay_requests (error_id, requested_ms) VALUES (?1, ?2)",
                        params![id, now_ms()],
                    )
                    .map_err(|e| self.sql(e))?;
                accepted.push(id);
            }
        }
        Ok(accepted)
    }
}
