//! actionwarden runs batches of NICE CXone Data Actions to a final outcome and never
//! loses one. This crate is the daemon, its CLI and the CXone simulator it is tested
//! against.
//!
//! What it promises is written in `docs/` (index: `docs/README.md`): one page per
//! subject (configuration, CLI, CXone contract, journal, cluster, audit, dead letters,
//! metrics and admin API, console, simulator, operations). Comments in the code cite
//! those pages by file and section, e.g. "docs/cxone.md, Rollback and compensation".
//!
//! # Layout
//!
//! Dependencies point down this list: `app` and `commands` wire everything; `actors`
//! use the plain modules; `journal`, `cxone`, `telemetry` and `config` never import
//! `actors`.
//!
//! - `main.rs`, `cli.rs`, `error.rs`: the command line, its errors and exit codes.
//! - `commands/`: one file per subcommand; `app/`: the daemon (credentials, wiring,
//!   stop and reload requests, systemd notifications, hourly retention, the exit-code
//!   table of `shutdown.rs`).
//! - `admin.rs`: health, readiness, metrics and paginated journal views over HTTP;
//!   `console/`: the operator console at `/ui/` on the same server (server-rendered
//!   pages, login sessions, live overview over Server-Sent Events, embedded assets).
//! - `actors/`: `TokenActor`, `PollerActor` (`poller/`: the pure decisions of
//!   `machine.rs`, their interpreter, what pollers share), `ClassifierActor`,
//!   `DeadLetterActor`, `AuditActor` (each singleton survives its own panics through
//!   `singleton.rs`), and admission (claims within the limits).
//! - `action.rs`, `state.rs`, `classify.rs`, `backoff.rs`, `audit.rs`, `dead_letter.rs`,
//!   `clock.rs`: plain data and pure rules, unit-tested.
//! - `journal/`: the store and work queue (SQLite: group-commit writer, claims with
//!   fencing, history, pages and aggregates for readers, streamed loading, pruning).
//! - `cxone/`: the HTTP client for token, submit and poll, response parsing, the shared
//!   429 gate and request-rate budget.
//! - `net/`: how requests leave the host: proxies (`CONNECT` tunnels, absolute-form
//!   requests, `NO_PROXY`), trusted roots, failure diagnosis; builds every awc client.
//! - `health.rs`: problems by severity (degraded, blocked, fatal), shared with `/readyz`
//!   and the end of a run; the liveness probe `/healthz` sends to the actors' loop.
//! - `config/`: the TOML file, its defaults, secrets, located errors, and the actions
//!   read on demand.
//! - `telemetry/`: logs, metric names, events, rate limits for repeating failure lines;
//!   `report.rs`: progress and summary;
//!   `table.rs`: the text tables of `status`, `dlq list` and the summary; `version.rs`:
//!   the version and commit shown by `--version` and `actionwarden_build_info`.
//! - `simulator/`: a faithful CXone on loopback for demos, tests and benchmarks.

pub mod action;
pub mod actors;
pub mod admin;
pub mod app;
pub mod audit;
pub mod backoff;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod console;
pub mod cxone;
pub mod dead_letter;
pub mod error;
pub mod health;
pub mod journal;
pub mod linger;
pub mod net;
pub mod report;
pub mod simulator;
pub mod state;
pub mod table;
pub mod telemetry;
pub mod version;
