//! Logs, metrics and the events that feed both; rate limits for repeating failure lines.

pub mod events;
pub mod logging;
pub mod metrics;
pub mod throttle;
