//! `actionwarden status [--json]`: what the journal says, readable while a daemon runs.
//! The counts are aggregates the journal computes, so neither time nor memory grows with
//! the number of actions held in memory.
//!
//! Gathering (`gather`: the journal and the config into a `StatusView`) is kept apart from
//! rendering (`render`, `to_json`: pure, a view in, text out), so the view can come from
//! another source without touching what a person sees.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::output;
use crate::config::{self, Loaded};
use crate::error::{exit, Error};
use crate::journal::view::InstanceView;
use crate::journal::{open_reader, JournalRead, StateWord};
use crate::table::{self, Column};

/// What `status` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusView {
    /// The journal read: a SQLite file, or a PostgreSQL database and schema.
    pub journal: String,
    /// The daemons of a cluster (none for a SQLite journal).
    pub instances: Vec<InstanceView>,
    /// Every batch configured or journaled, by name.
    pub batches: Vec<BatchStatus>,
    /// Dead letters stored.
    pub dead_letters: u64,
    /// Of those, not yet accepted by the webhook (always 0 without a webhook: letters are
    /// then stored and listed, never "undelivered").
    pub undelivered: u64,
}

/// One batch: how many actions the journal holds, in all and per state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchStatus {
    /// Batch name.
    pub name: String,
    /// Journaled actions.
    pub total: u64,
    /// Journaled actions by state word (`pending`, `polling`, `completed`...).
    pub states: BTreeMap<String, u64>,
}

impl BatchStatus {
    /// Actions in state `state`.
    fn count(&self, state: &str) -> u64 {
        self.states.get(state).copied().unwrap_or(0)
    }

    /// Actions between admission and outcome: every state but pending and the outcomes.
    fn in_flight(&self) -> u64 {
        self.states
            .iter()
            .filter(|(state, _)| state.as_str() != PENDING && !OUTCOME_STATES.contains(&state.as_str()))
            .map(|(_, n)| n)
            .sum()
    }
}

/// The state of an action not yet submitted.
const PENDING: &str = "pending";

/// The states that are outcomes, in table order.
const OUTCOME_STATES: [&str; 4] = ["completed", "cancelled", "dead_lettered", "rolled_back"];

/// Columns of the table.
const COLUMNS: [Column; 8] = [
    Column::text("batch"),
    Column::number("total"),
    Column::number("pending"),
    Column::number("in flight"),
    Column::number("completed"),
    Column::number("cancelled"),
    Column::number("dead-lettered"),
    Column::number("rolled back"),
];

/// Prints action counts by batch and state, and the dead-letter backlog.
pub fn status(path: &Path, as_json: bool) -> Result<u8, Error> {
    let loaded = config::load(path)?;
    let reader = open_reader(&loaded.config)?;
    let view = gather(&loaded, reader.as_ref())?;
    if as_json {
        output::println(&serde_json::to_string_pretty(&to_json(&view)).expect("JSON serializes"))?;
    } else {
        output::print(&render(&view, table::stdout_width()))?;
    }
    Ok(exit::OK)
}

/// Reads the view from the journal; `loaded` names the configured batches (shown even
/// before the journal has their actions) and whether a webhook exists.
pub fn gather(loaded: &Loaded, reader: &dyn JournalRead) -> Result<StatusView, Error> {
    let mut batches: BTreeMap<String, BatchStatus> = BTreeMap::new();
    for batch in &loaded.config.batches {
        entry(&mut batches, &batch.name);
    }
    for counts in reader.status()? {
        let status = entry(&mut batches, &counts.batch);
        status.total = counts.total;
        for word in StateWord::ALL {
            status.states.insert(word.as_str().to_owned(), counts.count(word));
        }
    }
    let (letters, pending) = reader.dead_letter_totals()?;
    let undelivered = if loaded.config.dead_letter.webhook_url.is_set() {
        pending
    } else {
        0
    };
    Ok(StatusView {
        journal: crate::journal::location(&loaded.config),
        instances: reader.instances()?,
        batches: batches.into_values().collect(),
        dead_letters: letters,
        undelivered,
    })
}

fn entry<'a>(batches: &'a mut BTreeMap<String, BatchStatus>, name: &str) -> &'a mut BatchStatus {
    batches.entry(name.to_owned()).or_insert_with(|| BatchStatus {
        name: name.to_owned(),
        ..BatchStatus::default()
    })
}

/// The table: one row per batch (actions in flight summed over their states), then the
/// dead-letter backlog. `width`: the terminal width to fit, or `None`.
pub fn render(view: &StatusView, width: Option<u16>) -> String {
    let rows: Vec<Vec<String>> = view
        .batches
        .iter()
        .map(|b| {
            let mut row = vec![
                b.name.clone(),
                b.total.to_string(),
                b.count(PENDING).to_string(),
                b.in_flight().to_string(),
            ];
            row.extend(OUTCOME_STATES.iter().map(|s| b.count(s).to_string()));
            row
        })
        .collect();
    let mut out = format!(
        "journal: {}\n{}dead letters: {} ({} undelivered)\n",
        view.journal,
        table::render(&COLUMNS, &rows, width),
        view.dead_letters,
        view.undelivered
    );
    if !view.instances.is_empty() {
        out.push_str("instances:\n");
        out.push_str(&render_instances(&view.instances, width));
    }
    out
}

/// Columns of the instances table.
const INSTANCE_COLUMNS: [Column; 7] = [
    Column::text("name"),
    Column::text("host"),
    Column::number("pid"),
    Column::text("started"),
    Column::text("last heartbeat"),
    Column::number("owned"),
    Column::text("state"),
];

/// The cluster's daemons, one row each.
fn render_instances(instances: &[InstanceView], width: Option<u16>) -> String {
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.host.clone(),
                i.pid.to_string(),
                i.started.clone(),
                i.last_heartbeat.clone(),
                i.owned_actions.to_string(),
                if i.live { "live" } else { "dead" }.to_owned(),
            ]
        })
        .collect();
    table::render(&INSTANCE_COLUMNS, &rows, width)
}

/// The `--json` document: every state word with its count, per batch.
pub fn to_json(view: &StatusView) -> serde_json::Value {
    json!({
        "journal": view.journal,
        "batches": view.batches.iter().map(|b| (b.name.clone(), json!({
            "total": b.total,
            "states": b.states,
        }))).collect::<serde_json::Map<_, _>>(),
        "dead_letters": { "total": view.dead_letters, "undelivered": view.undelivered },
        "instances": view.instances,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> StatusView {
        let states = |pairs: &[(&str, u64)]| pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect();
        StatusView {
            journal: "/var/lib/actionwarden/actionwarden.journal".into(),
            instances: Vec::new(),
            batches: vec![
                BatchStatus {
                    name: "dispositions".into(),
                    total: 3,
                    states: states(&[("completed", 1), ("cancelled", 1), ("rolled_back", 1)]),
                },
                BatchStatus {
                    name: "priority-updates-from-the-crm-export-of-2026-11-27".into(),
                    total: 203,
                    states: states(&[
                        ("pending", 100),
                        ("submitting", 2),
                        ("polling", 40),
                        ("backoff", 3),
                        ("rolling_back", 1),
                        ("completed", 50),
                        ("dead_lettered", 7),
                    ]),
                },
            ],
            dead_letters: 7,
            undelivered: 2,
        }
    }

    #[test]
    fn table_sums_in_flight_states_and_keeps_outcomes_apart() {
        let out = render(&view(), None);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "journal: /var/lib/actionwarden/actionwarden.journal");
        assert!(lines[1].starts_with("batch "), "{out}");
        let row: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "priority-updates-from-the-crm-export-of-2026-11-27",
                "203",
                "100",
                "46",
                "50",
                "0",
                "7",
                "0"
            ]
        );
        assert_eq!(lines[3].len(), lines[4].len(), "numbers align right: {out}");
        assert_eq!(lines[5], "dead letters: 7 (2 undelivered)");
    }

    #[test]
    fn table_fits_a_narrow_terminal() {
        let out = render(&view(), Some(72));
        assert!(out.lines().skip(1).all(|l| l.chars().count() <= 72), "{out}");
    }

    #[test]
    fn json_keeps_every_state_word() {
        let doc = to_json(&view());
        let batch = &doc["batches"]["priority-updates-from-the-crm-export-of-2026-11-27"];
        assert_eq!(batch["total"], 203);
        assert_eq!(batch["states"]["backoff"], 3);
        assert_eq!(doc["dead_letters"], json!({"total": 7, "undelivered": 2}));
        assert_eq!(doc["journal"], "/var/lib/actionwarden/actionwarden.journal");
    }
}
