//! `actionwarden journal prune [--older-than DUR]`: removes the bodies and histories of
//! actions resolved before the cut-off (their outcome stays, so a re-run never resubmits
//! them) and delivered or replayed dead letters older than it; undelivered letters are
//! never pruned. Safe while a daemon runs: it touches only resolved actions.

use std::path::Path;
use std::time::Duration;

use crate::config::{self, duration};
use crate::error::{exit, Error};
use crate::journal::{now_ms, open_reader};

/// Prunes and prints what was removed.
pub fn prune(path: &Path, older_than: Option<&str>) -> Result<u8, Error> {
    let loaded = config::load(path)?;
    let age: Duration = match older_than {
        Some(text) => duration::parse(text).map_err(|e| Error::Argument {
            flag: "--older-than",
            problem: e.to_string(),
        })?,
        None => loaded.config.journal.retention.ok_or(Error::Argument {
            flag: "--older-than",
            problem: "give --older-than, or set journal.retention".into(),
        })?,
    };
    let before = now_ms() - i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
    let pruned = open_reader(&loaded.config)?.prune(before)?;
    let mut printed = format!(
        "pruned: {} actions (body and history; outcome kept), {} history events, {} audit lines, {} dead letters",
        pruned.actions, pruned.events, pruned.outcome_lines, pruned.dead_letters
    );
    if pruned.instances > 0 {
        printed.push_str(&format!(", {} departed cluster members", pruned.instances));
    }
    super::output::print(&format!("{printed}\n"))?;
    Ok(exit::OK)
}
