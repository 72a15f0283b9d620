//! `actionwarden status [--json]`: actions by batch and state and the dead-letter
//! backlog, computed by the journal (aggregates, whatever its size); readable while a
//! daemon runs.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use crate::config;
use crate::error::{exit, Error};
use crate::journal::{open_reader, BatchCounts, StateWord};

/// Prints action counts by batch and state, and the dead-letter backlog.
pub fn status(path: &Path, as_json: bool) -> Result<u8, Error> {
    let loaded = config::load(path)?;
    let reader = open_reader(&loaded.config)?;
    let batches = reader.status()?;
    let (letters, pending) = reader.dead_letter_totals()?;
    // Without a webhook, letters are stored and listed, never "undelivered".
    let undelivered = if loaded.config.dead_letter.webhook_url.is_set() {
        pending
    } else {
        0
    };
    let journal = loaded.config.journal.path.display().to_string();
    let text = if as_json {
        let doc = json!({
            "journal": journal,
            "batches": batches.iter().map(|b| (b.batch.clone(), json!({
                "total": b.total,
                "states": StateWord::ALL.iter().map(|w| (w.as_str().to_owned(), json!(b.count(*w)))).collect::<serde_json::Map<_, _>>(),
            }))).collect::<serde_json::Map<_, _>>(),
            "dead_letters": { "total": letters, "undelivered": undelivered },
        });
        serde_json::to_string_pretty(&doc).expect("JSON serializes") + "\n"
    } else {
        render(&journal, &batches, letters, undelivered)
    };
    super::print(&text);
    Ok(exit::OK)
}

/// The status table.
pub fn render(journal: &str, batches: &[BatchCounts], letters: u64, undelivered: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "journal: {journal}");
    let width = batches
        .iter()
        .map(|b| b.batch.len())
        .max()
        .unwrap_or(0)
        .max("batch".len());
    let _ = write!(out, "{:<width$} {:>10}", "batch", "total");
    for s in StateWord::ALL {
        let _ = write!(out, " {:>13}", s.as_str());
    }
    out.push('\n');
    for b in batches {
        let _ = write!(out, "{:<width$} {:>10}", b.batch, b.total);
        for s in StateWord::ALL {
            let _ = write!(out, " {:>13}", b.count(s));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "dead letters: {letters} ({undelivered} undelivered)");
    out
}
