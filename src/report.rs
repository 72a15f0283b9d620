//! What a person sees: a progress bar per batch while running (on a terminal), and the
//! closing table.

use std::collections::HashMap;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::action::Outcome;
use crate::journal::{BatchCounts, StateWord};
use crate::table::Column;

/// The closing table's numbers: one row per configured batch, computed by the journal.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// One per batch, in configuration order.
    pub batches: Vec<BatchCounts>,
}

impl Summary {
    /// True when every action has an outcome.
    pub fn all_finished(&self) -> bool {
        self.batches.iter().all(|b| b.finished() == b.total)
    }

    /// True when every action completed.
    pub fn all_completed(&self) -> bool {
        self.batches.iter().all(|b| b.count(StateWord::Completed) == b.total)
    }

    /// The closing table, fitted to stdout's terminal (whole rows when it is not one).
    pub fn render(&self) -> String {
        self.render_to_width(crate::table::stdout_width())
    }

    /// The closing table: one row per batch. `width`: the terminal width to fit, or `None`
    /// to keep every row on one line.
    pub fn render_to_width(&self, width: Option<u16>) -> String {
        let rows: Vec<Vec<String>> = self
            .batches
            .iter()
            .map(|b| {
                vec![
                    b.batch.clone(),
                    b.total.to_string(),
                    b.count(StateWord::Completed).to_string(),
                    b.count(StateWord::Cancelled).to_string(),
                    b.count(StateWord::DeadLettered).to_string(),
                    b.count(StateWord::RolledBack).to_string(),
                    b.retries.to_string(),
                    b.restarts.to_string(),
                    seconds(b.p50),
                    seconds(b.p95),
                    seconds(b.p99),
                ]
            })
            .collect();
        crate::table::render(&SUMMARY_COLUMNS, &rows, width)
    }
}

/// Columns of the closing table.
const SUMMARY_COLUMNS: [Column; 11] = [
    Column::text("batch"),
    Column::number("total"),
    Column::number("completed"),
    Column::number("cancelled"),
    Column::number("dead-lettered"),
    Column::number("rolled back"),
    Column::number("retries"),
    Column::number("restarts"),
    Column::number("p50"),
    Column::number("p95"),
    Column::number("p99"),
];

fn seconds(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(s) if s < 1.0 => format!("{:.0}ms", s * 1000.0),
        Some(s) => format!("{s:.2}s"),
    }
}

/// The bars being drawn, if any: log lines are written around them.
static BARS: std::sync::OnceLock<MultiProgress> = std::sync::OnceLock::new();

/// The log writer: stderr, but a line written while bars are drawn first lifts the bars
/// and redraws them below it, so neither tears the other.
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::with_capacity(256))
    }
}

/// One formatted log line, written out whole when dropped.
pub struct LogLine(Vec<u8>);

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let write = || {
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), &self.0);
        };
        match BARS.get() {
            Some(bars) => bars.suspend(write),
            None => write(),
        }
    }
}

/// Clears the bars for good before the closing table is printed: the table goes where
/// they were, and an action finishing after this (during a shutdown) redraws nothing
/// over it. A re-run's bars, which never moved, go too.
pub fn clear_bars() {
    if let Some(bars) = BARS.get() {
        let _ = bars.clear();
        bars.set_draw_target(ProgressDrawTarget::hidden());
    }
}

/// Progress bars, one per batch, drawn only when stderr is a terminal.
pub struct Progress {
    multi: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
}

impl Progress {
    /// Bars on a terminal, nothing otherwise.
    pub fn new() -> Self {
        let multi = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let _ = BARS.set(multi.clone());
            multi
        });
        Progress {
            multi,
            bars: HashMap::new(),
        }
    }

    /// `batch` has `total` actions, `finished` of them with an outcome.
    pub fn set(&mut self, batch: &str, total: u64, finished: u64) {
        self.add(batch, 0);
        if let Some(bar) = self.bars.get(batch) {
            bar.set_length(total);
            bar.set_position(finished);
        }
    }

    /// `n` more actions in `batch`.
    pub fn add(&mut self, batch: &str, n: u64) {
        let Some(multi) = &self.multi else { return };
        let bar = self.bars.entry(batch.to_owned()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template("{prefix:<20} [{bar:30}] {pos}/{len} {msg}")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(batch.to_owned());
            bar
        });
        bar.inc_length(n);
    }

    /// One action of `batch` finished.
    pub fn finish_one(&mut self, batch: &str, outcome: Outcome) {
        if let Some(bar) = self.bars.get(batch) {
            bar.inc(1);
            if outcome != Outcome::Completed {
                bar.set_message(format!("last: {outcome}"));
            }
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_outcomes() {
        let mut b = BatchCounts {
            batch: "x".into(),
            total: 2,
            ..BatchCounts::default()
        };
        b.states[5] = 1;
        b.states[7] = 1;
        let s = Summary { batches: vec![b] };
        assert!(s.all_finished());
        assert!(!s.all_completed());
        assert!(s.render_to_width(None).contains("dead-lettered"));
    }

    #[test]
    fn summary_table_has_a_row_per_batch_with_counts_and_percentiles() {
        let mut long = BatchCounts {
            batch: "crm-sync-2026-11-27-from-the-spreadsheet-export".into(),
            total: 3,
            retries: 3,
            restarts: 1,
            p50: Some(0.3),
            p95: Some(2.5),
            p99: Some(2.5),
            ..BatchCounts::default()
        };
        long.states[5] = 2;
        long.states[8] = 1;
        let empty = BatchCounts {
            batch: "b".into(),
            ..BatchCounts::default()
        };
        let out = Summary {
            batches: vec![long, empty],
        }
        .render_to_width(None);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "crm-sync-2026-11-27-from-the-spreadsheet-export",
                "3",
                "2",
                "0",
                "0",
                "1",
                "3",
                "1",
                "300ms",
                "2.50s",
                "2.50s"
            ]
        );
        let cells: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(cells, ["b", "0", "0", "0", "0", "0", "0", "0", "-", "-", "-"]);
        // Every row ends in the same column: numbers align right.
        assert_eq!(lines[2].len(), lines[3].len(), "{out}");
    }

    #[test]
    fn summary_table_fits_a_narrow_terminal() {
        let b = BatchCounts {
            batch: "crm-sync-2026-11-27-from-the-spreadsheet-export".into(),
            total: 1,
            ..BatchCounts::default()
        };
        let out = Summary { batches: vec![b] }.render_to_width(Some(80));
        assert!(out.lines().all(|l| l.chars().count() <= 80), "{out}");
    }
}
