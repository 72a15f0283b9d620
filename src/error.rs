//! The top-level `Error` and the exit codes of SPEC §2.

use crate::config::ConfigError;

/// Why a command could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is unreadable or invalid (exit 1).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A usage or setup problem the user can fix (exit 1).
    #[error("{0}")]
    Usage(String),
    /// The daemon cannot run: credentials rejected, journal locked, address in use (exit 3).
    #[error("{0}")]
    CannotRun(String),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Usage(_) => 1,
            Error::CannotRun(_) => 3,
        }
    }
}

/// Exit codes of a finished run.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Usage or configuration error.
    pub const USAGE: u8 = 1;
    /// `run --once` finished, but not every action completed (or dead letters stayed undelivered).
    pub const NOT_ALL_COMPLETED: u8 = 2;
    /// Cannot run.
    pub const CANNOT_RUN: u8 = 3;
    /// `run --once` stopped by a signal before every action had an outcome.
    pub const INTERRUPTED: u8 = 4;
}
