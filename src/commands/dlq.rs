//! `actionwarden dlq list|replay`: dead letters from the journal.

use std::path::Path;

use crate::config;
use crate::error::{exit, Error};
use crate::journal::JournalReader;

fn reader(path: &Path) -> Result<(JournalReader, bool), Error> {
    let loaded = config::load(path)?;
    let has_webhook = loaded.config.dead_letter.webhook_url.is_set();
    let reader = JournalReader::open(&loaded.config.journal.path)?;
    Ok((reader, has_webhook))
}

/// Lists every dead letter with its delivery state.
pub fn list(path: &Path, as_json: bool) -> Result<u8, Error> {
    let (reader, has_webhook) = reader(path)?;
    let letters = reader.dead_letters(has_webhook)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&letters).expect("JSON serializes"));
        return Ok(exit::OK);
    }
    println!(
        "{:<36}  {:<28} {:<24} {:<10} {:>8}  replayed",
        "error_id", "identity", "error_code", "delivery", "attempts"
    );
    for l in &letters {
        let delivery = l.delivery;
        println!(
            "{:<36}  {:<28} {:<24} {:<10} {:>8}  {}",
            l.letter.error_id,
            format!("{}/{}", l.letter.batch, l.letter.key),
            l.letter.error_code,
            delivery,
            l.attempts,
            if l.replayed { "yes" } else { "no" }
        );
    }
    Ok(exit::OK)
}

/// Requests replays; a running daemon starts them within a second, otherwise the next
/// `run` does.
pub fn replay(path: &Path, all: bool, error_ids: &[String]) -> Result<u8, Error> {
    let (reader, _) = reader(path)?;
    let accepted = reader.request_replay(if all { None } else { Some(error_ids) })?;
    for id in &accepted {
        println!("replay requested: {id}");
    }
    let refused: Vec<&String> = error_ids.iter().filter(|id| !accepted.contains(id)).collect();
    for id in &refused {
        eprintln!("actionwarden: no dead letter {id} waiting to be replayed (unknown or already replayed)");
    }
    if !refused.is_empty() {
        return Ok(exit::USAGE);
    }
    if accepted.is_empty() {
        println!("nothing to replay");
    }
    Ok(exit::OK)
}
