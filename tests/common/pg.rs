//! PostgreSQL for the tests: the server this project's machines run (or the one
//! `ACTIONWARDEN_TEST_DATABASE_URL` names), a fresh schema per test dropped afterwards,
//! and the switch that runs the journal tests against it (`ACTIONWARDEN_TEST_BACKEND=postgres`).

use std::time::{SystemTime, UNIX_EPOCH};

use super::under_ci;

/// The variable the daemons under test read their database URL from.
pub const DB_URL_ENV: &str = "AW_TEST_DATABASE_URL";

/// The test server's URL.
pub fn database_url() -> String {
    std::env::var("ACTIONWARDEN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// True when the journal tests run against PostgreSQL instead of SQLite.
pub fn postgres_backend() -> bool {
    std::env::var("ACTIONWARDEN_TEST_BACKEND").is_ok_and(|v| v == "postgres")
}

/// True when the test server answers; false (after one "skipped" line naming `test`)
/// when it does not, except under CI, where that fails the test.
pub fn reachable(test: &str) -> bool {
    let url = database_url();
    if let Err(e) = postgres::Client::connect(&url, postgres::NoTls) {
        assert!(
            !under_ci(),
            "PostgreSQL is required under CI and is not reachable at {url}: {e}"
        );
        eprintln!("skipped: {test}: PostgreSQL not reachable at {url} ({e})");
        return false;
    }
    true
}

/// A schema of its own for one test, dropped when the test ends.
pub struct Schema {
    /// Its name.
    pub name: String,
    url: String,
}

impl Schema {
    /// A fresh, empty schema name on the test server; `None` (after one "skipped" line)
    /// when the server is not reachable, except under CI, where that fails the test.
    pub fn fresh(test: &str) -> Option<Schema> {
        if !reachable(test) {
            return None;
        }
        let url = database_url();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("aw_test_{}_{}", std::process::id(), nanos % 1_000_000_000_000);
        Some(Schema { name, url })
    }

    /// A client on the schema (its search path set), for assertions.
    pub fn client(&self) -> postgres::Client {
        let mut client = postgres::Client::connect(&self.url, postgres::NoTls).expect("connecting to the test server");
        client
            .batch_execute(&format!("SET search_path TO {}", self.name))
            .expect("search path");
        client
    }

    /// The `[journal]` table of a daemon on this schema.
    pub fn journal_table(&self) -> String {
        format!(
            "backend = \"postgres\"\nurl_env = \"{DB_URL_ENV}\"\nschema = \"{}\"\npool_size = 4",
            self.name
        )
    }

    /// The `[cluster]` table of a fast test cluster: heartbeat 100ms and `lease_timeout`.
    pub fn cluster_table(name: &str, lease_timeout: &str) -> String {
        format!("instance_name = \"{name}\"\nheartbeat = \"100ms\"\nlease_timeout = \"{lease_timeout}\"")
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// A PostgreSQL server of the test's own (Debian's `initdb`/`pg_ctl`), on a free port in
/// a temp dir, so a test can stop and restart it. Stopped when dropped.
pub struct PrivateServer {
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// Where Debian installs the server binaries.
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl PrivateServer {
    /// Initializes and starts a server; `None` (after one "skipped" line) when the
    /// binaries are missing, except under CI.
    pub fn start(test: &str) -> Option<PrivateServer> {
        if !std::path::Path::new(PG_BIN).join("initdb").exists() {
            assert!(!under_ci(), "{PG_BIN}/initdb is required under CI");
            eprintln!("skipped: {test}: no {PG_BIN}/initdb");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = PrivateServer { dir, port };
        server.chown();
        let data = server.data();
        server.run("initdb", &["-D", &data, "-A", "trust", "-U", "postgres"]);
        server.start_again();
        Some(server)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `initdb` refuses root: the server runs as `postgres` when the tests run as root.
    fn as_root() -> bool {
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    }

    fn chown(&self) {
        if Self::as_root() {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres", &self.dir.path().display().to_string()])
                .status()
                .expect("chown");
            assert!(status.success());
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = format!("{PG_BIN}/{tool}");
        let mut command = if Self::as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", &program]);
            c
        } else {
            std::process::Command::new(&program)
        };
        let output = command.args(args).output().unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            output.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start_again(&self) {
        let dir = self.dir.path().display().to_string();
        let options = format!("-p {} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off", self.port);
        let log = format!("{dir}/server.log");
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-o", &options, "-l", &log, "-w", "start"],
        );
    }

    /// Stops the server (fast: open sessions are cut).
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new(if Self::as_root() { "runuser" } else { "true" })
            .args([
                "-u",
                "postgres",
                "--",
                &format!("{PG_BIN}/pg_ctl"),
                "-D",
                &self.data(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
        if !Self::as_root() {
            let _ = std::process::Command::new(format!("{PG_BIN}/pg_ctl"))
                .args(["-D", &self.data(), "-m", "immediate", "stop"])
                .output();
        }
    }
}

/// True (after one "skipped" line) when the journal tests run on PostgreSQL and `test`
/// is about the SQLite journal itself (its lock, its file, an embedded simulator that
/// dies with the one daemon owning the journal).
pub fn sqlite_only(test: &str) -> bool {
    if postgres_backend() {
        eprintln!("skipped: {test}: about the SQLite journal");
        return true;
    }
    false
}
