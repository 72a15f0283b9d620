//! actionwarden runs batches of NICE CXone Data Actions to a final outcome and never
//! loses one. The contract is SPEC.md; this crate is the daemon, its CLI and the CXone
//! simulator it is tested against.
//!
//! # Layout
//!
//! - `config/`: the TOML file, its defaults, secrets and located errors.
//! - `action.rs`, `state.rs`, `classify.rs`, `backoff.rs`: pure logic, unit-tested.
//! - `cxone/`: the HTTP client for token, submit and poll, response parsing, and the
//!   shared 429 gate with the request-rate budget.
//! - `actors/`: `TokenActor`, `PollerActor` (in `poller/`: the state machine, failures,
//!   outcomes, shared environment), `ClassifierActor`, `DeadLetterActor`, `AuditActor`,
//!   and admission (in-flight limits, resume, replays).
//! - `journal/`: the SQLite journal (group-commit writer, records, read-only views) and
//!   the exactly-once hand-off of outcome records to the audit file.
//! - `app.rs`: boot, signals, shutdown; `commands/`: one file per subcommand;
//!   `admin.rs`: health, readiness, metrics and journal views over HTTP.
//! - `telemetry/`: logs, metric names, events; `report.rs`: progress and summary;
//!   `table.rs`: the text tables of `status`, `dlq list` and the summary; `version.rs`:
//!   the version and commit shown by `--version` and `actionwarden_build_info`.
//! - `simulator/`: a faithful CXone on loopback for demos, tests and benchmarks.

pub mod action;
pub mod actors;
pub mod admin;
pub mod app;
pub mod backoff;
pub mod classify;
pub mod cli;
pub mod commands;
pub mod config;
pub mod cxone;
pub mod error;
pub mod journal;
pub mod report;
pub mod simulator;
pub mod state;
pub mod table;
pub mod telemetry;
pub mod version;
