//! `[journal]` and `[cluster]`: where the journal lives (a SQLite file, or a PostgreSQL
//! schema shared by a cluster of daemons) and how cluster members find each other alive.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

/// Which store holds the journal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A SQLite file at `journal.path`, owned by one daemon.
    #[default]
    Sqlite,
    /// A PostgreSQL schema, shared by every daemon with the same URL and schema.
    Postgres,
}

/// `[journal]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// `sqlite` (default) or `postgres`.
    pub backend: Backend,
    /// SQLite: the journal file. Default `actionwarden.journal`.
    pub path: PathBuf,
    /// SQLite: sync each group commit to disk. Default true.
    pub fsync: bool,
    /// PostgreSQL: the environment variable holding the connection URL (it may carry a
    /// password, so it never lives in this file). Default `ACTIONWARDEN_DATABASE_URL`.
    pub url_env: String,
    /// PostgreSQL: the schema holding the tables; created if missing. Default `actionwarden`.
    pub schema: String,
    /// PostgreSQL: connections per daemon (writer, heartbeat, readers). Default 8.
    pub pool_size: usize,
    /// Keep the bodies and histories of resolved actions, and delivered or replayed dead
    /// letters, this long; pruned at start and every hour. Default `""`: keep everything.
    #[serde(with = "duration::optional")]
    pub retention: Option<Duration>,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            backend: Backend::Sqlite,
            path: "actionwarden.journal".into(),
            fsync: true,
            url_env: "ACTIONWARDEN_DATABASE_URL".into(),
            schema: "actionwarden".into(),
            pool_size: 8,
            retention: None,
        }
    }
}

/// `[cluster]`: used with `journal.backend = "postgres"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This daemon's name in the instances table and in every history event. Default
    /// `""`: `HOSTNAME-PID`.
    pub instance_name: String,
    /// How often the instance renews its heartbeat. Default `1s`.
    #[serde(with = "duration")]
    pub heartbeat: Duration,
    /// An instance whose heartbeat is older than this is dead: its actions are rescued
    /// by the live ones. Default `10s`.
    #[serde(with = "duration")]
    pub lease_timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            instance_name: String::new(),
            heartbeat: Duration::from_secs(1),
            lease_timeout: Duration::from_secs(10),
        }
    }
}

impl ClusterConfig {
    /// This daemon's name: the configured one, else `HOSTNAME-PID`.
    pub fn instance_name(&self) -> String {
        if !self.instance_name.is_empty() {
            return self.instance_name.clone();
        }
        format!("{}-{}", host_name(), std::process::id())
    }
}

/// The host's name, as far as the environment or the kernel tells.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
