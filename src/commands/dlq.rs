//! `actionwarden dlq list|replay|discard`: dead letters from the journal, read page by
//! page, and the requests a running daemon carries out within a second.

use std::path::Path;

use super::output;
use crate::config;
use crate::error::{exit, Error};
use crate::journal::view::DeadLetterFilter;
use crate::journal::{open_reader, Cursor, DeadLetterView, JournalRead};
use crate::table::{self, Column};

/// Dead letters read per page.
const PAGE: usize = 500;

/// Lists every dead letter with its delivery state, oldest first. `--json` streams page
/// by page; the table gathers its rows to align them.
pub fn list(path: &Path, as_json: bool) -> Result<u8, Error> {
    let loaded = config::load(path)?;
    let reader = open_reader(&loaded.config)?;
    if as_json {
        output::print("[")?;
        let mut first = true;
        each_page(reader.as_ref(), |letters| {
            for letter in letters {
                let item = serde_json::to_string_pretty(letter).expect("a letter serializes");
                output::print(&format!("{}\n{item}", if first { "" } else { "," }))?;
                first = false;
            }
            Ok(())
        })?;
        output::print("\n]\n")?;
    } else {
        let mut rows = Vec::new();
        each_page(reader.as_ref(), |letters| {
            rows.extend(letters.iter().map(LetterRow::from));
            Ok(())
        })?;
        output::print(&render(&rows, table::stdout_width()))?;
    }
    Ok(exit::OK)
}

/// Calls `each` with every page of dead letters.
fn each_page(
    reader: &dyn JournalRead,
    mut each: impl FnMut(&[DeadLetterView]) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut after: Option<Cursor> = None;
    loop {
        let page = reader.dead_letters(&DeadLetterFilter::default(), PAGE, after.as_ref())?;
        each(&page.items)?;
        match page.next.and_then(|n| Cursor::decode(&n, 2)) {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}

/// One row of the table: what a person needs to pick a letter to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterRow {
    /// The letter's `error_id`.
    pub error_id: String,
    /// `BATCH/KEY`.
    pub identity: String,
    /// Error code.
    pub error_code: String,
    /// `delivered`, `pending`, `stored` or `discarded`.
    pub delivery: String,
    /// Delivery attempts.
    pub attempts: u32,
    /// Replayed with `dlq replay`.
    pub replayed: bool,
}

impl From<&DeadLetterView> for LetterRow {
    fn from(l: &DeadLetterView) -> Self {
        LetterRow {
            error_id: l.letter.error_id.to_string(),
            identity: format!("{}/{}", l.letter.batch, l.letter.key),
            error_code: l.letter.error_code.clone(),
            delivery: l.delivery.to_owned(),
            attempts: l.attempts,
            replayed: l.replayed,
        }
    }
}

/// Columns of the table.
const COLUMNS: [Column; 6] = [
    Column::text("error_id"),
    Column::text("identity"),
    Column::text("error_code"),
    Column::text("delivery"),
    Column::number("attempts"),
    Column::text("replayed"),
];

/// The table: one row per dead letter. `width`: the terminal width to fit, or `None`.
pub fn render(letters: &[LetterRow], width: Option<u16>) -> String {
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|l| {
            vec![
                l.error_id.clone(),
                l.identity.clone(),
                l.error_code.clone(),
                l.delivery.clone(),
                l.attempts.to_string(),
                if l.replayed { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    table::render(&COLUMNS, &rows, width)
}

/// Requests replays; a running daemon starts them within a second, otherwise the next
/// `run` does.
pub fn replay(path: &Path, all: bool, error_ids: &[String]) -> Result<u8, Error> {
    let loaded = config::load(path)?;
    let reader = open_reader(&loaded.config)?;
    let accepted = reader.request_replay(if all { None } else { Some(error_ids) })?;
    for id in &accepted {
        output::println(&format!("replay requested: {id}"))?;
    }
    let refused: Vec<&String> = error_ids.iter().filter(|id| !accepted.contains(id)).collect();
    for id in &refused {
        eprintln!("actionwarden: no dead letter {id} waiting to be replayed (unknown, already replayed, or its action was pruned)");
    }
    if !refused.is_empty() {
        return Ok(exit::USAGE);
    }
    if accepted.is_empty() {
        output::println("nothing to replay")?;
    }
    Ok(exit::OK)
}

/// Requests discards: the letters are kept and listed as discarded, and never delivered
/// again; a running daemon carries them out within a second, otherwise the next `run`.
pub fn discard(path: &Path, error_ids: &[String]) -> Result<u8, Error> {
    let loaded = config::load(path)?;
    let reader = open_reader(&loaded.config)?;
    let accepted = reader.request_discard(error_ids)?;
    for id in &accepted {
        output::println(&format!("discard requested: {id}"))?;
    }
    let refused: Vec<&String> = error_ids.iter().filter(|id| !accepted.contains(id)).collect();
    for id in &refused {
        eprintln!("actionwarden: no dead letter {id} to discard (unknown, delivered, already discarded, or its discard already requested)");
    }
    Ok(if refused.is_empty() { exit::OK } else { exit::USAGE })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(identity: &str, replayed: bool) -> LetterRow {
        LetterRow {
            error_id: "0b6e9f8e-6c1d-4f7a-9a57-3d3c1f1e2a10".into(),
            identity: identity.into(),
            error_code: "INVALID_CONTACT".into(),
            delivery: "pending".into(),
            attempts: 12,
            replayed,
        }
    }

    #[test]
    fn table_has_a_row_per_letter_with_aligned_columns() {
        let rows = [
            row("b/k1", false),
            row("a-much-longer-batch-name/contact-0000123", true),
        ];
        let out = render(&rows, None);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            [
                "0b6e9f8e-6c1d-4f7a-9a57-3d3c1f1e2a10",
                "a-much-longer-batch-name/contact-0000123",
                "INVALID_CONTACT",
                "pending",
                "12",
                "yes"
            ]
        );
        let column_of = |line: &str, text: &str| line.find(text).unwrap();
        assert_eq!(column_of(lines[2], "INVALID"), column_of(lines[3], "INVALID"), "{out}");
    }

    #[test]
    fn table_fits_a_narrow_terminal() {
        let out = render(&[row("a-much-longer-batch-name/contact-0000123", false)], Some(70));
        assert!(out.lines().all(|l| l.chars().count() <= 70), "{out}");
    }
}
