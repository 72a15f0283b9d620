//! What readers of the journal see: an action with its history (`show`, the admin API,
//! the console), pages of actions and dead letters with opaque cursors, and per-batch
//! aggregates (`status`, the run summary). Plain data, the same for every backend.

use serde::Serialize;

use super::StateWord;
use crate::dead_letter::DeadLetter;

/// One journaled transition of an action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEvent {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The state it entered.
    pub state: String,
    /// The attempt.
    pub attempt: u32,
    /// The CXone id known then.
    pub action_id: Option<String>,
    /// HTTP status that caused it, if any.
    pub http_status: Option<u16>,
    /// Error code that caused it, if any.
    pub error_code: Option<String>,
    /// A short explanation.
    pub detail: Option<String>,
    /// The daemon instance that wrote it.
    pub instance: String,
}

/// A dead letter with its delivery state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterView {
    /// The letter as sent to the webhook.
    pub letter: DeadLetter,
    /// Accepted by the webhook.
    pub delivered: bool,
    /// `delivered`, `pending` (the webhook has not accepted it yet), `stored` (no webhook
    /// is configured: stored and listed only) or `discarded` (an operator gave it up).
    pub delivery: &'static str,
    /// Delivery attempts.
    pub attempts: u32,
    /// Last delivery error.
    pub last_error: Option<String>,
    /// Replayed with `dlq replay`.
    pub replayed: bool,
    /// Discarded by an operator (kept, never delivered again).
    pub discarded: bool,
}

impl DeadLetterView {
    /// The delivery word of a letter in these states.
    pub fn delivery_word(delivered: bool, discarded: bool, has_webhook: bool) -> &'static str {
        match (delivered, discarded, has_webhook) {
            (true, _, _) => "delivered",
            (false, true, _) => "discarded",
            (false, false, true) => "pending",
            (false, false, false) => "stored",
        }
    }
}

/// One action with everything the journal knows about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionView {
    /// Batch name.
    pub batch: String,
    /// Key.
    pub key: String,
    /// State word.
    pub state: String,
    /// Outcome word, when it has one.
    pub outcome: Option<String>,
    /// Attempt.
    pub attempt: u32,
    /// Retries spent.
    pub retry_count: u32,
    /// The CXone id.
    pub action_id: Option<String>,
    /// The JSON body (`null` once pruned).
    pub body: Option<serde_json::Value>,
    /// Its latest dead letter.
    pub dead_letter: Option<DeadLetterView>,
    /// Its transitions, oldest first.
    pub history: Vec<HistoryEvent>,
}

/// One action in a list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionSummary {
    /// Batch name.
    pub batch: String,
    /// Key.
    pub key: String,
    /// State word.
    pub state: String,
    /// Outcome word, when it has one.
    pub outcome: Option<String>,
    /// Attempt.
    pub attempt: u32,
    /// Retries spent.
    pub retry_count: u32,
    /// The CXone id.
    pub action_id: Option<String>,
    /// Last change (RFC 3339, UTC).
    pub updated_at: String,
}

/// A page of a list and the cursor of the next one (`None` on the last page).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `after` for the next page.
    pub next: Option<String>,
}

/// Which actions a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionFilter {
    /// Only this batch.
    pub batch: Option<String>,
    /// Only this state.
    pub state: Option<StateWord>,
    /// Only keys starting so.
    pub key_prefix: Option<String>,
}

/// Which dead letters a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only this batch.
    pub batch: Option<String>,
    /// Only this error code.
    pub error_code: Option<String>,
    /// Only this delivery word (`delivered`, `pending`, `stored`, `discarded`).
    pub delivery: Option<String>,
    /// Only letters replayed (`Some(true)`) or not replayed (`Some(false)`).
    pub replayed: Option<bool>,
}

/// How many dead letters a filter matches, and how many of those an operator can act on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeadLetterCounts {
    /// Letters matching the filter.
    pub matching: u64,
    /// Of those, letters a replay would start again (not replayed yet, action resolved
    /// and not pruned).
    pub replayable: u64,
    /// Of those, letters a discard would stop (neither delivered nor discarded yet).
    pub discardable: u64,
}

/// What the live overview shows of one batch: one aggregate over the journal.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchActivity {
    /// Batch name.
    pub batch: String,
    /// Journaled actions.
    pub total: u64,
    /// Actions per state word, in `StateWord::ALL` order.
    pub states: [u64; 9],
    /// Retries spent so far, by resolved and unresolved actions.
    pub retries: u64,
    /// Actions that reached their outcome since the time the read was given.
    pub finished_since: u64,
    /// Dead letters neither accepted by the webhook nor discarded.
    pub undelivered: u64,
}

/// An opaque position in a list: the sort key of the last item shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub Vec<String>);

impl Cursor {
    /// The text handed to clients: hex, so it survives any URL unescaped.
    pub fn encode(&self) -> String {
        hex::encode(self.0.join("\u{0}"))
    }

    /// Reads a cursor of `parts` parts; `None` for anything this list did not hand out.
    pub fn decode(text: &str, parts: usize) -> Option<Cursor> {
        let bytes = hex::decode(text).ok()?;
        let joined = String::from_utf8(bytes).ok()?;
        let fields: Vec<String> = joined.split('\u{0}').map(str::to_owned).collect();
        (fields.len() == parts).then_some(Cursor(fields))
    }
}

/// One daemon of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceView {
    /// Its instance id (fresh at every start).
    pub id: String,
    /// Its name (`cluster.instance_name`, or `HOSTNAME-PID`).
    pub name: String,
    /// Host.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When it started (RFC 3339, UTC).
    pub started: String,
    /// Its last heartbeat (RFC 3339, UTC).
    pub last_heartbeat: String,
    /// Unresolved actions it holds.
    pub owned_actions: u64,
    /// Its heartbeat is younger than the lease and it did not stop.
    pub live: bool,
}

/// The numbers of one batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchCounts {
    /// Batch name.
    pub batch: String,
    /// Journaled actions.
    pub total: u64,
    /// Actions per state word, in `StateWord::ALL` order.
    pub states: [u64; 9],
    /// Retries spent by resolved actions.
    pub retries: u64,
    /// Poller restarts.
    pub restarts: u64,
    /// Median first-submission-to-outcome time of resolved actions, seconds.
    pub p50: Option<f64>,
    /// 95th percentile, seconds.
    pub p95: Option<f64>,
    /// 99th percentile, seconds.
    pub p99: Option<f64>,
}

impl BatchCounts {
    /// One entry per batch from `(batch, state, actions)` rows ordered by batch (state
    /// words this binary does not know count in `total` only).
    pub fn from_state_counts(rows: impl IntoIterator<Item = (String, String, u64)>) -> Vec<BatchCounts> {
        let mut out: Vec<BatchCounts> = Vec::new();
        for (batch, state, n) in rows {
            if out.last().is_none_or(|c| c.batch != batch) {
                out.push(BatchCounts {
                    batch,
                    ..BatchCounts::default()
                });
            }
            let counts = out.last_mut().expect("just pushed");
            if let Some(i) = StateWord::parse(&state).and_then(|w| StateWord::ALL.iter().position(|s| *s == w)) {
                counts.states[i] += n;
            }
            counts.total += n;
        }
        out
    }

    /// Actions in `state`.
    pub fn count(&self, state: StateWord) -> u64 {
        let i = StateWord::ALL
            .iter()
            .position(|s| *s == state)
            .expect("every word is listed");
        self.states[i]
    }

    /// Actions with an outcome.
    pub fn finished(&self) -> u64 {
        StateWord::ALL
            .iter()
            .filter(|s| s.is_outcome())
            .map(|s| self.count(*s))
            .sum()
    }
}

/// RFC 3339 UTC text of a Unix-ms time, always with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    const FORMAT: &[time::format_description::FormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_default()
}

/// The `p`-th percentile (0..=1), nearest rank, of values counted as `(value, how many)`
/// in ascending order of value (a histogram: one entry per distinct value); `None` when
/// nothing is counted.
pub fn percentile(counted: &[(i64, u64)], p: f64) -> Option<f64> {
    let n: u64 = counted.iter().map(|(_, c)| c).sum();
    if n == 0 {
        return None;
    }
    let rank = ((p * n as f64).ceil() as u64).clamp(1, n);
    let mut seen = 0;
    counted
        .iter()
        .find(|(_, c)| {
            seen += c;
            seen >= rank
        })
        .map(|(value, _)| *value as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_foreign_text() {
        let c = Cursor(vec!["b".into(), "k/1".into()]);
        assert_eq!(Cursor::decode(&c.encode(), 2), Some(c.clone()));
        assert_eq!(Cursor::decode(&c.encode(), 1), None);
        assert_eq!(Cursor::decode("zz", 2), None);
        assert_eq!(Cursor::decode("", 2), None);
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let v: Vec<(i64, u64)> = (1..=100).map(|i| (i * 1000, 1)).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[(3000, 0)], 0.5), None);
        assert_eq!(percentile(&[(7000, 1)], 0.99), Some(7.0));
    }

    #[test]
    fn percentiles_of_counted_values_match_those_of_the_values_listed() {
        // 10 x 1 s, 80 x 2 s, 10 x 9 s: the median is 2 s, the 95th 9 s, the 10th 1 s.
        let counted = [(1000, 10), (2000, 80), (5000, 0), (9000, 10)];
        assert_eq!(percentile(&counted, 0.10), Some(1.0));
        assert_eq!(percentile(&counted, 0.11), Some(2.0));
        assert_eq!(percentile(&counted, 0.5), Some(2.0));
        assert_eq!(percentile(&counted, 0.90), Some(2.0));
        assert_eq!(percentile(&counted, 0.95), Some(9.0));
        assert_eq!(percentile(&counted, 0.0), Some(1.0));
    }

    #[test]
    fn timestamps_are_utc_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn state_counts_fold_into_one_entry_per_batch() {
        let rows = [
            ("a", "completed", 3),
            ("a", "polling", 2),
            ("a", "from-a-newer-binary", 1),
            ("b", "completed", 4),
        ]
        .map(|(b, s, n)| (b.to_owned(), s.to_owned(), n));
        let counts = BatchCounts::from_state_counts(rows);
        assert_eq!(counts.len(), 2);
        assert_eq!((counts[0].batch.as_str(), counts[0].total), ("a", 6));
        assert_eq!(counts[0].count(StateWord::Completed), 3);
        assert_eq!(counts[0].count(StateWord::Polling), 2);
        assert_eq!((counts[1].batch.as_str(), counts[1].total), ("b", 4));
    }
}
