//! What a person sees: a progress bar per batch while running (on a terminal), and the
//! closing table.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::action::Outcome;
use crate::journal::{BatchCounts, StateWord};

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

    /// The closing table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<24} {:>7} {:>9} {:>9} {:>13} {:>11} {:>7} {:>8} {:>9} {:>9} {:>9}",
            "batch",
            "total",
            "completed",
            "cancelled",
            "dead-lettered",
            "rolled back",
            "retries",
            "restarts",
            "p50",
            "p95",
            "p99"
        );
        for b in &self.batches {
            let _ = writeln!(
                out,
                "{:<24} {:>7} {:>9} {:>9} {:>13} {:>11} {:>7} {:>8} {:>9} {:>9} {:>9}",
                b.batch,
                b.total,
                b.count(StateWord::Completed),
                b.count(StateWord::Cancelled),
                b.count(StateWord::DeadLettered),
                b.count(StateWord::RolledBack),
                b.retries,
                b.restarts,
                seconds(b.p50),
                seconds(b.p95),
                seconds(b.p99),
            );
        }
        out
    }
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
        assert!(s.render().contains("dead-lettered"));
    }
}
