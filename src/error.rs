//! The top-level `Error` and the process exit codes: 0 success, 1 usage or configuration
//! error, 2 `run --once` finished without every action completing, 3 cannot run,
//! 4 `run --once` interrupted (docs/cli.md has the whole table).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{ConfigError, SecretError};
use crate::journal::JournalError;

/// Why a command could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is unreadable or invalid (exit 1).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A secret named by the configuration cannot be read (exit 1).
    #[error("{key}: {source}")]
    Secret {
        /// The configuration key naming the secret.
        key: &'static str,
        /// Why.
        source: SecretError,
    },
    /// `cxone.client_id` is empty and `CXONE_CLIENT_ID` is not set (exit 1).
    #[error("cxone.client_id is empty and CXONE_CLIENT_ID is not set")]
    MissingClientId,
    /// The journal cannot be used: locked by another daemon, unreadable, missing (exit 3,
    /// or 1 for a journal that does not exist yet).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The audit file cannot be opened (exit 3).
    #[error("cannot open audit file {path}: {source}")]
    Audit {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The simulator cannot start: a secret it names is missing (exit 1) or its address
    /// cannot be bound (exit 3).
    #[error(transparent)]
    Simulator(#[from] crate::simulator::StartError),
    /// The admin server cannot listen (exit 3).
    #[error("cannot serve the admin API on {addr}: {source}")]
    Admin {
        /// The configured address.
        addr: SocketAddr,
        /// Why (address in use, permission).
        source: std::io::Error,
    },
    /// A command-line value clap could not check (exit 1).
    #[error("{flag}: {problem}")]
    Argument {
        /// The flag.
        flag: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
    /// The network settings (proxies, CA files, proxy environment variables) cannot be
    /// used (exit 1).
    #[error(transparent)]
    Network(#[from] crate::net::NetError),
    /// Standard output cannot be written (exit 1; a closed pipe is not an error).
    #[error("cannot write to stdout: {0}")]
    Output(std::io::Error),
    /// Signal handlers cannot be installed (exit 3).
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

impl From<crate::journal::load::LoadError> for Error {
    fn from(e: crate::journal::load::LoadError) -> Self {
        match e {
            crate::journal::load::LoadError::Config(e) => Error::Config(e),
            crate::journal::load::LoadError::Journal(e) => Error::Journal(e),
        }
    }
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_)
            | Error::Secret { .. }
            | Error::MissingClientId
            | Error::Argument { .. }
            | Error::Network(_)
            | Error::Output(_) => exit::USAGE,
            Error::Journal(e) if e.is_missing() || e.is_misconfigured() => exit::USAGE,
            Error::Simulator(crate::simulator::StartError::Secret { .. }) => exit::USAGE,
            Error::Journal(_) | Error::Audit { .. } | Error::Simulator(_) | Error::Admin { .. } | Error::Signals(_) => {
                exit::CANNOT_RUN
            }
        }
    }
}

/// Exit codes.
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
