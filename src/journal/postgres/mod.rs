//! The PostgreSQL journal: several daemons with the same URL and schema form a cluster
//! that shares one work queue (docs/cluster.md describes it for operators).
//!
//! Each daemon registers a fresh instance id and renews a heartbeat (`heartbeat.rs`); an
//! instance whose heartbeat is older than `cluster.lease_timeout` is dead, and its
//! claims (actions, dead-letter leases, unaudited outcome lines) are taken over by live
//! instances. Every write of an action is conditional on the owner and the claim's
//! fencing token, so an instance that lost an action can write nothing more about it.
//!
//! The client is the synchronous `postgres` crate: each connection runs its own small
//! tokio runtime on the thread that uses it (the writer thread, the heartbeat thread, a
//! reader's thread), never on an actix arbiter, whose runtime a connection must not
//! outlive.

mod apply;
mod heartbeat;
mod letters;
mod one;
pub(crate) mod read;
mod schema;
mod write;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use postgres::config::SslMode;
use postgres::{Client, Config, NoTls};

use super::{Journal, JournalError, Snapshot};
use crate::telemetry::metrics::Endpoint;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How to open the PostgreSQL journal.
#[derive(Clone)]
pub struct Options {
    /// The environment variable holding the URL (`journal.url_env`).
    pub url_env: String,
    /// The schema (`journal.schema`).
    pub schema: String,
    /// This daemon's name.
    pub instance_name: String,
    /// The embedded simulator restarted with this process (see the SQLite journal).
    pub forget_poll_ids: bool,
    /// Its audit file (for the reconciliation of a predecessor's lines).
    pub audit_path: String,
    /// `cluster.heartbeat`.
    pub heartbeat: Duration,
    /// `cluster.lease_timeout`.
    pub lease_timeout: Duration,
    /// Where failed commits are reported (`/readyz`) until a write commits again.
    pub health: crate::health::Blockers,
}

/// Where to connect: the parsed URL and a printable target without credentials.
#[derive(Clone)]
pub struct Target {
    config: Config,
    /// `host:port/database`, safe to show.
    pub shown: String,
    schema: String,
    /// The server ends a session idle inside a transaction this long (a member paused
    /// mid-transaction must not keep rows locked from the others past its lease).
    idle_in_transaction: Option<Duration>,
}

impl Target {
    /// Reads the URL from the environment variable named by `url_env`.
    pub fn from_env(url_env: &str, schema: &str) -> Result<Target, JournalError> {
        let unusable = |reason: String| JournalError::Url {
            env: url_env.to_owned(),
            reason,
        };
        let url = std::env::var(url_env).map_err(|_| unusable("not set".into()))?;
        let mut config = Config::from_str(url.trim()).map_err(|_| unusable("not a PostgreSQL URL".into()))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        // Sessions show who they are in `pg_stat_activity`, unless the URL names itself.
        if config.get_application_name().is_none() {
            config.application_name("actionwarden");
        }
        let host = config
            .get_hosts()
            .first()
            .map(|h| match h {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let database = config.get_dbname().unwrap_or("postgres");
        Ok(Target {
            shown: format!("{host}:{port}/{database}"),
            config,
            schema: schema.to_owned(),
            idle_in_transaction: None,
        })
    }

    /// The same target, whose sessions the server ends when idle inside a transaction
    /// for `timeout`.
    pub fn idle_in_transaction(mut self, timeout: Duration) -> Self {
        self.idle_in_transaction = Some(timeout);
        self
    }

    /// A connection with `search_path` set to the journal's schema.
    pub fn connect(&self) -> Result<Client, JournalError> {
        let mut client = match self.config.get_ssl_mode() {
            // `require` verifies the server's certificate against the web PKI and the
            // system's roots (`SSL_CERT_FILE` included).
            SslMode::Require => self.config.connect(tls()?),
            _ => self.config.connect(NoTls),
        }
        .map_err(self.error())?;
        // Notices ("already exists, skipping") are not worth a log line.
        let mut setup = format!("SET search_path TO {}; SET client_min_messages = warning;", self.schema);
        if let Some(timeout) = self.idle_in_transaction {
            setup.push_str(&format!(
                "SET idle_in_transaction_session_timeout = {};",
                timeout.as_millis()
            ));
        }
        client.batch_execute(&setup).map_err(self.error())?;
        Ok(client)
    }

    /// Wraps a client error with the target (never the URL: it may hold a password).
    pub fn error(&self) -> impl Fn(postgres::Error) -> JournalError + '_ {
        move |source| JournalError::Postgres {
            target: self.shown.clone(),
            source: Arc::new(source),
        }
    }
}

fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, JournalError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// This daemon's membership of the cluster, shared by the writer, the heartbeat thread,
/// the pollers (self-fencing), the 429 gate and `/readyz`.
pub struct Cluster {
    /// This process's instance id (fresh at every start).
    pub instance: String,
    started: Instant,
    /// When the heartbeat was last renewed, ms after `started`.
    renewed_ms: AtomicI64,
    /// The database answered the last heartbeat.
    reachable: AtomicBool,
    /// The cluster-wide 429 pauses, Unix ms, by endpoint.
    pauses: [AtomicI64; 4],
    heartbeat: Duration,
    lease_timeout: Duration,
    stop: AtomicBool,
}

impl Cluster {
    fn new(instance: String, heartbeat: Duration, lease_timeout: Duration) -> Self {
        Cluster {
            instance,
            started: Instant::now(),
            renewed_ms: AtomicI64::new(0),
            reachable: AtomicBool::new(true),
            pauses: Default::default(),
            heartbeat,
            lease_timeout,
            stop: AtomicBool::new(false),
        }
    }

    fn renewed(&self) {
        let ms = self.started.elapsed().as_millis() as i64;
        self.renewed_ms.store(ms, Ordering::Relaxed);
        self.reachable.store(true, Ordering::Relaxed);
    }

    /// Time since the heartbeat was last renewed.
    pub fn since_renewal(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as i64;
        Duration::from_millis((now - self.renewed_ms.load(Ordering::Relaxed)).max(0) as u64)
    }

    /// True once `lease_timeout - heartbeat` has passed since the last renewal: others may
    /// soon take this instance's actions, so it starts no request for them.
    pub fn fenced(&self) -> bool {
        self.since_renewal() >= self.lease_timeout.saturating_sub(self.heartbeat)
    }

    /// Why this instance is not ready, if it is not: the database is unreachable or the
    /// heartbeat is late.
    pub fn unready(&self) -> Option<String> {
        if !self.reachable.load(Ordering::Relaxed) {
            return Some("the journal database is unreachable".into());
        }
        let late = self.since_renewal();
        (late > self.heartbeat * 3).then(|| {
            format!(
                "the cluster heartbeat is {} late",
                crate::config::duration::format(late)
            )
        })
    }

    /// Until when (Unix ms) the cluster pauses `endpoint`, as last read from the database.
    pub fn paused_until_ms(&self, endpoint: Endpoint) -> i64 {
        self.pauses[endpoint as usize].load(Ordering::Relaxed)
    }

    fn set_pause(&self, endpoint: Endpoint, until_ms: i64) {
        self.pauses[endpoint as usize].fetch_max(until_ms, Ordering::Relaxed);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Connects, migrates the schema (under an advisory lock), registers this instance, and
/// starts the writer and heartbeat threads. Blocking: call it off any async runtime.
pub fn open(options: &Options) -> Result<(Journal, Snapshot, Arc<Cluster>), JournalError> {
    let target = Target::from_env(&options.url_env, &options.schema)?.idle_in_transaction(options.lease_timeout);
    let mut setup = schema::connect_and_migrate(&target)?;
    let instance = uuid::Uuid::new_v4().to_string();
    let cluster = Arc::new(Cluster::new(instance.clone(), options.heartbeat, options.lease_timeout));
    heartbeat::register(
        &mut setup,
        &target,
        &cluster,
        &options.instance_name,
        &options.audit_path,
    )?;
    cluster.renewed();
    let unaudited = heartbeat::predecessors_lines(&mut setup, &target, &cluster, &options.audit_path)?;
    if options.forget_poll_ids {
        heartbeat::forget_poll_ids(&mut setup, &target, &cluster)?;
    }
    heartbeat::letters_due_now(&mut setup, &target)?;
    drop(setup);
    let (tx, rx) = mpsc::channel();
    let backend = apply::Postgres::new(target.clone(), cluster.clone(), options.instance_name.clone())?;
    let health = options.health.clone();
    std::thread::Builder::new()
        .name("journal-writer".into())
        .spawn(move || super::writer::run(backend, rx, health))
        .map_err(JournalError::io(std::path::Path::new("journal-writer")))?;
    heartbeat::spawn(target, cluster.clone())?;
    let journal = Journal {
        tx,
        _lock: Arc::new(()),
    };
    // The lines a predecessor on this host was writing into this audit file when it
    // died: the audit actor appends those the file lacks. Lines dead instances never
    // began to write are taken over through `rescue_audit`.
    let snapshot = Snapshot { unaudited };
    Ok((journal, snapshot, cluster))
}
