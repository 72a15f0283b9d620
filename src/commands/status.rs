//! `actionwarden status [--json]`: what the journal says, readable while a daemon runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use crate::config;
use crate::error::{exit, Error};
use crate::journal::JournalReader;

/// Prints action counts by batch and state, and the dead-letter backlog.
pub fn status(path: &Path, as_json: bool) -> Result<u8, Error> {
    let loaded = config::load(path)?;
    let reader = JournalReader::open(&loaded.config.journal.path)?;
    let counts = reader.counts()?;
    let has_webhook = loaded.config.dead_letter.webhook_url.is_set();
    let letters = reader.dead_letters(has_webhook)?;
    let mut batches: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (batch, state, n) in counts {
        batches.entry(batch).or_default().insert(state, n);
    }
    let configured: BTreeMap<&str, usize> = loaded.actions.iter().fold(BTreeMap::new(), |mut m, a| {
        *m.entry(a.identity.batch.as_ref()).or_default() += 1;
        m
    });
    // Without a webhook, letters are stored and listed, never "undelivered".
    let has_webhook = loaded.config.dead_letter.webhook_url.is_set();
    let undelivered = if has_webhook {
        letters.iter().filter(|l| !l.delivered).count()
    } else {
        0
    };
    if as_json {
        let doc = json!({
            "journal": loaded.config.journal.path,
            "batches": batches.iter().map(|(name, states)| (name.clone(), json!({
                "configured": configured.get(name.as_str()).copied().unwrap_or(0),
                "states": states,
            }))).collect::<serde_json::Map<_, _>>(),
            "dead_letters": { "total": letters.len(), "undelivered": undelivered },
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON serializes"));
        return Ok(exit::OK);
    }
    let mut out = String::new();
    let _ = writeln!(out, "journal: {}", loaded.config.journal.path.display());
    let states = [
        "pending",
        "submitting",
        "polling",
        "backoff",
        "rolling_back",
        "completed",
        "cancelled",
        "dead_lettered",
        "rolled_back",
    ];
    let _ = write!(out, "{:<24} {:>10}", "batch", "configured");
    for s in states {
        let _ = write!(out, " {:>13}", s);
    }
    out.push('\n');
    for (name, by_state) in &batches {
        let _ = write!(
            out,
            "{:<24} {:>10}",
            name,
            configured.get(name.as_str()).copied().unwrap_or(0)
        );
        for s in states {
            let _ = write!(out, " {:>13}", by_state.get(s).copied().unwrap_or(0));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "dead letters: {} ({} undelivered)", letters.len(), undelivered);
    print!("{out}");
    Ok(exit::OK)
}
