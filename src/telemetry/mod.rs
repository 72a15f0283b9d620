//! Logs, metrics and the events that feed both.

pub mod events;
pub mod logging;
pub mod metrics;
