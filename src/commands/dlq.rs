//! `actionwarden dlq list|replay`: dead letters from the journal, read page by page.

use std::path::Path;

use crate::config;
use crate::error::{exit, Error};
use crate::journal::view::DeadLetterFilter;
use crate::journal::{open_reader, Cursor, DeadLetterView, JournalRead};

/// Dead letters read per page.
const PAGE: usize = 500;

/// Lists every dead letter with its delivery state, oldest first, streaming.
pub fn list(path: &Path, as_json: bool) -> Result<u8, Error> {
    let loaded = config::load(path)?;
    let reader = open_reader(&loaded.config)?;
    if as_json {
        super::print("[");
    } else {
        super::print(&format!(
            "{:<36}  {:<28} {:<24} {:<10} {:>8}  replayed\n",
            "error_id", "identity", "error_code", "delivery", "attempts"
        ));
    }
    let mut first = true;
    each_page(reader.as_ref(), |letters| {
        for l in letters {
            let text = if as_json {
                let item = serde_json::to_string_pretty(l).expect("a letter serializes");
                format!("{}\n{item}", if first { "" } else { "," })
            } else {
                row(l)
            };
            first = false;
            super::print(&text);
        }
    })?;
    if as_json {
        super::print("\n]\n");
    }
    Ok(exit::OK)
}

fn row(l: &DeadLetterView) -> String {
    format!(
        "{:<36}  {:<28} {:<24} {:<10} {:>8}  {}\n",
        l.letter.error_id,
        format!("{}/{}", l.letter.batch, l.letter.key),
        l.letter.error_code,
        l.delivery,
        l.attempts,
        if l.replayed { "yes" } else { "no" }
    )
}

/// Calls `each` with every page of dead letters.
fn each_page(reader: &dyn JournalRead, mut each: impl FnMut(&[DeadLetterView])) -> Result<(), Error> {
    let mut after: Option<Cursor> = None;
    loop {
        let page = reader.dead_letters(&DeadLetterFilter::default(), PAGE, after.as_ref())?;
        each(&page.items);
        match page.next.and_then(|n| Cursor::decode(&n, 2)) {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}

/// Requests replays; a running daemon starts them within a second, otherwise the next
/// `run` does.
pub fn replay(path: &Path, all: bool, error_ids: &[String]) -> Result<u8, Error> {
    let loaded = config::load(path)?;
    let reader = open_reader(&loaded.config)?;
    let accepted = reader.request_replay(if all { None } else { Some(error_ids) })?;
    for id in &accepted {
        println!("replay requested: {id}");
    }
    let refused: Vec<&String> = error_ids.iter().filter(|id| !accepted.contains(id)).collect();
    for id in &refused {
        eprintln!("actionwarden: no dead letter {id} waiting to be replayed (unknown, already replayed, or its action was pruned)");
    }
    if !refused.is_empty() {
        return Ok(exit::USAGE);
    }
    if accepted.is_empty() {
        println!("nothing to replay");
    }
    Ok(exit::OK)
}
