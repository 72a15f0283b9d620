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
        let url = database_url();
        if let Err(e) = postgres::Client::connect(&url, postgres::NoTls) {
            assert!(
                !under_ci(),
                "PostgreSQL is required under CI and is not reachable at {url}: {e}"
            );
            eprintln!("skipped: {test}: PostgreSQL not reachable at {url} ({e})");
            return None;
        }
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

    /// The `[cluster]` table of a fast test cluster: heartbeat 100ms, lease 1s.
    pub fn cluster_table(name: &str) -> String {
        format!("instance_name = \"{name}\"\nheartbeat = \"100ms\"\nlease_timeout = \"1s\"")
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}
