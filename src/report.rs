//! What a person sees: a progress bar per batch while running (on a terminal), and the
//! closing table of SPEC §13.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::action::Outcome;
use crate::table::Column;

/// Counts and durations of one batch.
#[derive(Debug, Clone, Default)]
pub struct BatchSummary {
    /// Batch name.
    pub name: String,
    /// Actions admitted.
    pub total: usize,
    /// Outcomes by kind, in `Outcome::ALL` order.
    pub outcomes: [usize; 4],
    /// Retries spent.
    pub retries: u64,
    /// Poller restarts.
    pub restarts: u64,
    /// Durations of finished actions, seconds.
    pub durations: Vec<f64>,
}

impl BatchSummary {
    /// An empty summary for `name`.
    pub fn new(name: &str) -> Self {
        BatchSummary {
            name: name.to_owned(),
            ..Default::default()
        }
    }

    /// Adds one outcome.
    pub fn record(&mut self, outcome: Outcome, latency: Duration, retries: u32, restarts: u32) {
        let index = Outcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .expect("every outcome is listed");
        self.outcomes[index] += 1;
        self.retries += u64::from(retries);
        self.restarts += u64::from(restarts);
        self.durations.push(latency.as_secs_f64());
    }

    /// Takes back one outcome (the action was replayed and will resolve again).
    pub fn forget(&mut self, outcome: Outcome) {
        let index = Outcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .expect("every outcome is listed");
        self.outcomes[index] = self.outcomes[index].saturating_sub(1);
    }

    /// Outcomes of `kind`.
    pub fn count(&self, kind: Outcome) -> usize {
        self.outcomes[Outcome::ALL.iter().position(|o| *o == kind).expect("listed")]
    }

    /// Actions with any outcome.
    pub fn finished(&self) -> usize {
        self.outcomes.iter().sum()
    }
}

/// All batches.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// One per batch, by name.
    pub batches: Vec<BatchSummary>,
}

impl Summary {
    /// True when every admitted action has an outcome.
    pub fn all_finished(&self) -> bool {
        self.batches.iter().all(|b| b.finished() == b.total)
    }

    /// True when every outcome is `completed`.
    pub fn all_completed(&self) -> bool {
        self.batches.iter().all(|b| b.count(Outcome::Completed) == b.total)
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
                let mut d = b.durations.clone();
                d.sort_by(f64::total_cmp);
                vec![
                    b.name.clone(),
                    b.total.to_string(),
                    b.count(Outcome::Completed).to_string(),
                    b.count(Outcome::Cancelled).to_string(),
                    b.count(Outcome::DeadLettered).to_string(),
                    b.count(Outcome::RolledBack).to_string(),
                    b.retries.to_string(),
                    b.restarts.to_string(),
                    seconds(percentile(&d, 0.50)),
                    seconds(percentile(&d, 0.95)),
                    seconds(percentile(&d, 0.99)),
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

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

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
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.50), Some(50.0));
        assert_eq!(percentile(&v, 0.95), Some(95.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[3.0], 0.99), Some(3.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn summary_counts_outcomes() {
        let mut b = BatchSummary::new("x");
        b.total = 2;
        b.record(Outcome::Completed, Duration::from_millis(10), 1, 0);
        b.record(Outcome::DeadLettered, Duration::from_millis(20), 2, 1);
        let s = Summary { batches: vec![b] };
        assert!(s.all_finished());
        assert!(!s.all_completed());
        assert!(s.render_to_width(None).contains("dead-lettered"));
    }

    #[test]
    fn summary_table_has_a_row_per_batch_with_counts_and_percentiles() {
        let mut long = BatchSummary::new("crm-sync-2026-11-27-from-the-spreadsheet-export");
        long.total = 3;
        long.record(Outcome::Completed, Duration::from_millis(120), 0, 0);
        long.record(Outcome::Completed, Duration::from_millis(2500), 2, 0);
        long.record(Outcome::RolledBack, Duration::from_millis(300), 1, 1);
        let empty = BatchSummary::new("b");
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
        let mut b = BatchSummary::new("crm-sync-2026-11-27-from-the-spreadsheet-export");
        b.total = 1;
        let out = Summary { batches: vec![b] }.render_to_width(Some(80));
        assert!(out.lines().all(|l| l.chars().count() <= 80), "{out}");
    }
}
