//! The overview's data: what it shows (`OverviewView`), the one function that builds it
//! from the journal (`load`), and the `Hub` that shares one read per second among every
//! page and every live watcher.
//!
//! However many browsers watch, the journal sees at most one overview read per
//! `READ_INTERVAL`: reads go through the hub, which answers from its last view while that
//! is younger than the interval. A producer thread, running only while someone watches
//! `/ui/events`, reads once per interval and publishes each view on a watch channel that
//! every event stream follows.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::config::Config;
use crate::journal::view::{rfc3339_ms, InstanceView};
use crate::journal::{now_ms, BatchActivity, JournalError, JournalRead, ReaderPool, StateWord};

/// The shortest time between two overview reads of the journal.
pub const READ_INTERVAL: Duration = Duration::from_secs(1);
/// The window of the actions-per-second rate.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Everything the overview shows, as the page renders it and `/ui/events` sends it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverviewView {
    /// The number of the journal read this view came from (1, 2, ...): watchers of the
    /// same read see the same number.
    pub read: u64,
    /// When it was read (RFC 3339, UTC).
    pub at: String,
    /// The configured batches in configuration order, then journaled batches no longer
    /// configured.
    pub batches: Vec<BatchLine>,
    /// Sums over the batches.
    pub totals: BatchLine,
    /// The daemons of a cluster that are live or still hold actions, newest first (none
    /// with a SQLite journal).
    pub instances: Vec<InstanceView>,
}

/// One batch's line of the overview.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchLine {
    /// Batch name (`""` for the totals).
    pub batch: String,
    /// Named in the running configuration.
    pub configured: bool,
    /// Journaled actions.
    pub total: u64,
    /// Actions with an outcome.
    pub finished: u64,
    /// `finished` of `total`, 0 to 100.
    pub percent: f64,
    /// Actions per state word.
    pub states: BTreeMap<&'static str, u64>,
    /// Actions between admission and outcome.
    pub in_flight: u64,
    /// Retries spent so far.
    pub retries: u64,
    /// Outcomes per second over the last `RATE_WINDOW`.
    pub per_second: f64,
    /// Dead letters neither accepted by the webhook nor discarded.
    pub undelivered: u64,
}

impl BatchLine {
    fn new(batch: &str, configured: bool, activity: Option<&BatchActivity>) -> BatchLine {
        let mut line = BatchLine {
            batch: batch.to_owned(),
            configured,
            ..BatchLine::default()
        };
        let empty = BatchActivity::default();
        let a = activity.unwrap_or(&empty);
        for (word, n) in StateWord::ALL.iter().zip(a.states) {
            line.states.insert(word.as_str(), n);
            if word.is_outcome() {
                line.finished += n;
            } else if *word != StateWord::Pending {
                line.in_flight += n;
            }
        }
        line.total = a.total;
        line.retries = a.retries;
        line.per_second = a.finished_since as f64 / RATE_WINDOW.as_secs_f64();
        line.undelivered = a.undelivered;
        line.percent = percent(line.finished, line.total);
        line
    }

    /// Adds another line's numbers (for the totals).
    fn add(&mut self, other: &BatchLine) {
        self.total += other.total;
        self.finished += other.finished;
        for (word, n) in &other.states {
            *self.states.entry(word).or_default() += n;
        }
        self.in_flight += other.in_flight;
        self.retries += other.retries;
        self.per_second += other.per_second;
        self.undelivered += other.undelivered;
        self.percent = percent(self.finished, self.total);
    }

    /// Actions in state `word`.
    pub fn count(&self, word: StateWord) -> u64 {
        self.states.get(word.as_str()).copied().unwrap_or(0)
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 1000.0 / whole as f64).floor() / 10.0
    }
}

/// Builds the overview from one aggregate read of the journal: the single source of every
/// number the overview shows (a cluster's instances would join the view here).
pub fn load(reader: &dyn JournalRead, config: &Config, read: u64) -> Result<OverviewView, JournalError> {
    let now = now_ms();
    let since = now - RATE_WINDOW.as_millis() as i64;
    let activity = reader.activity(since)?;
    let mut batches: Vec<BatchLine> = config
        .batches
        .iter()
        .map(|b| BatchLine::new(&b.name, true, activity.iter().find(|a| a.batch == b.name)))
        .collect();
    for a in &activity {
        if !config.batches.iter().any(|b| b.name == a.batch) {
            batches.push(BatchLine::new(&a.batch, false, Some(a)));
        }
    }
    if !config.dead_letter.webhook_url.is_set() {
        // Without a webhook letters are stored and listed, never "undelivered" (as in
        // `status` and the metric).
        batches.iter_mut().for_each(|line| line.undelivered = 0);
    }
    let mut totals = BatchLine::new("", true, None);
    for line in &batches {
        totals.add(line);
    }
    let instances = reader
        .instances()?
        .into_iter()
        .filter(|i| i.live || i.owned_actions > 0)
        .collect();
    Ok(OverviewView {
        read,
        at: rfc3339_ms(now),
        batches,
        totals,
        instances,
    })
}

/// The last view and what produced it.
#[derive(Default)]
struct Latest {
    /// The last view and when it was read.
    view: Option<(Instant, Arc<OverviewView>)>,
    /// Reads made so far.
    reads: u64,
}

/// Shares one overview read per `READ_INTERVAL` among every page and watcher.
pub struct Hub {
    config: Arc<Config>,
    readers: Arc<ReaderPool>,
    latest: Mutex<Latest>,
    /// The latest view, for the event streams.
    tx: watch::Sender<Option<Arc<OverviewView>>>,
    /// Whether the producer thread runs. Held while the producer decides to stop and
    /// while a watcher subscribes, so a new watcher always has a producer.
    producing: Mutex<bool>,
}

impl Hub {
    /// A hub over the journal `config` names, read through `readers`.
    pub fn new(config: Arc<Config>, readers: Arc<ReaderPool>) -> Arc<Hub> {
        Arc::new(Hub {
            config,
            readers,
            latest: Mutex::default(),
            tx: watch::Sender::new(None),
            producing: Mutex::new(false),
        })
    }

    /// The latest view, read again when it is `READ_INTERVAL` old. Blocks on the journal.
    pub fn current(&self) -> Result<Arc<OverviewView>, JournalError> {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, view)) = &latest.view {
            if at.elapsed() < READ_INTERVAL {
                return Ok(view.clone());
            }
        }
        latest.reads += 1;
        let read = latest.reads;
        let view = Arc::new(self.readers.read(|reader| load(reader, &self.config, read))?);
        latest.view = Some((Instant::now(), view.clone()));
        self.tx.send_replace(Some(view.clone()));
        Ok(view)
    }

    /// Follows the overview: the receiver sees every new view. Starts the producer when it
    /// is not running.
    pub fn watch(self: &Arc<Self>) -> watch::Receiver<Option<Arc<OverviewView>>> {
        let mut producing = self.producing.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        if !*producing {
            let hub = self.clone();
            let started = std::thread::Builder::new()
                .name("console-overview".into())
                .spawn(move || hub.produce());
            match started {
                Ok(_) => *producing = true,
                Err(e) => tracing::warn!(error = %e, "Console overview updates cannot start."),
            }
        }
        rx
    }

    /// The producer: one read per interval while anyone watches.
    fn produce(self: Arc<Self>) {
        loop {
            {
                let mut producing = self.producing.lock().unwrap_or_else(|e| e.into_inner());
                if self.tx.receiver_count() == 0 {
                    *producing = false;
                    return;
                }
            }
            let wait = match self.current() {
                Ok(_) => {
                    let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
                    let age = latest.view.as_ref().map_or(Duration::ZERO, |(at, _)| at.elapsed());
                    READ_INTERVAL.saturating_sub(age)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Console overview read failed; trying again.");
                    READ_INTERVAL
                }
            };
            std::thread::sleep(wait.max(MIN_PRODUCER_SLEEP));
        }
    }
}

/// The producer's shortest pause, so that it never spins.
const MIN_PRODUCER_SLEEP: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_sums_in_flight_states_and_rates_over_the_window() {
        let mut states = [0u64; 9];
        // pending, submitting, polling, backoff, rolling_back, completed, ...
        states[0] = 5;
        states[1] = 1;
        states[2] = 2;
        states[3] = 3;
        states[5] = 89;
        let activity = BatchActivity {
            batch: "b".into(),
            total: 100,
            states,
            retries: 7,
            finished_since: 30,
            undelivered: 2,
        };
        let line = BatchLine::new("b", true, Some(&activity));
        assert_eq!(line.in_flight, 6);
        assert_eq!(line.finished, 89);
        assert_eq!(line.percent, 89.0);
        assert_eq!(line.per_second, 0.5);
        assert_eq!(line.count(StateWord::Completed), 89);
        let mut totals = BatchLine::new("", true, None);
        totals.add(&line);
        totals.add(&line);
        assert_eq!((totals.total, totals.in_flight, totals.undelivered), (200, 12, 4));
    }

    #[test]
    fn percent_rounds_down_so_an_unfinished_batch_never_shows_100() {
        assert_eq!(percent(999, 1000), 99.9);
        assert_eq!(percent(9999, 10000), 99.9);
        assert_eq!(percent(0, 0), 0.0);
    }
}
