//! `actionwarden run [--once]`.

use std::path::Path;

use crate::config::{self, LogFormat};
use crate::error::Error;
use crate::telemetry::logging;

/// Loads the config, sets up logging and runs the daemon; returns the exit code.
pub fn run(path: &Path, once: bool, log_format: Option<LogFormat>) -> Result<u8, Error> {
    let loaded = config::load(path)?;
    let format = log_format.unwrap_or(loaded.config.log.format);
    logging::init(format, &loaded.config.log.level);
    crate::app::run(loaded, once)
}
