//! Test harness: the simulator as a separate process on 127.0.0.1:0, a temp dir, the
//! daemon binary, and condition waits with deadlines.

#![allow(dead_code)]

mod checks;
mod journal;
pub mod pg;

// Each test binary uses some of these; the others are unused there.
#[allow(unused_imports)]
pub use checks::*;
#[allow(unused_imports)]
pub use journal::*;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The daemon binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_actionwarden");
/// Env var holding the client secret in test configs.
pub const SECRET_ENV: &str = "AW_TEST_CLIENT_SECRET";
/// Env var holding the webhook HMAC key in test configs (daemon and simulator).
pub const WEBHOOK_KEY_ENV: &str = "AW_TEST_WEBHOOK_KEY";
/// The webhook key used by tests.
pub const WEBHOOK_KEY: &str = "test-webhook-key-9f3c";
/// The simulator's default client secret.
pub const SIM_SECRET: &str = "simulator-secret";
/// Proxy variables of the machine running the tests: removed from every child, so a
/// developer's proxy settings never reach the daemon or the simulator.
pub const PROXY_VARS: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Removes the proxy variables from `command`'s environment.
pub fn without_proxies(command: &mut Command) -> &mut Command {
    for var in PROXY_VARS {
        command.env_remove(var);
    }
    command
}

/// A running `actionwarden simulate`, killed on drop.
pub struct Sim {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Sim {
    /// Starts the simulator with extra arguments and waits for its `listening on` line;
    /// its webhook checks signatures made with `WEBHOOK_KEY`.
    pub fn start(args: &[&str]) -> Sim {
        Sim::start_with(args, true)
    }

    /// Like `start`; `signed = false` gives a webhook that checks no signature.
    pub fn start_with(args: &[&str], signed: bool) -> Sim {
        let mut command = Command::new(BIN);
        without_proxies(&mut command);
        command.args(["simulate", "--listen", "127.0.0.1:0"]);
        if signed {
            command
                .args(["--webhook-secret-env", WEBHOOK_KEY_ENV])
                .env(WEBHOOK_KEY_ENV, WEBHOOK_KEY);
        }
        let mut child = command
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the simulator");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the simulator's first line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected simulator output {line:?}"))
            .to_owned();
        Sim { child, url }
    }

    /// GET a JSON document from the simulator.
    pub fn get(&self, path: &str) -> Value {
        get_json(&format!("{}{}", self.url, path))
    }

    /// POST a JSON document to the simulator.
    pub fn post(&self, path: &str, body: Value) -> Value {
        let mut response = ureq::post(&format!("{}{}", self.url, path))
            .send_json(body)
            .expect("simulator POST");
        response.body_mut().read_json().unwrap_or(Value::Null)
    }

    /// `/sim/stats`.
    pub fn stats(&self) -> Value {
        self.get("/sim/stats")
    }

    /// Bodies accepted by `/sim/webhook`, with their key and signature verdict.
    pub fn webhooks(&self) -> Vec<Value> {
        self.get("/sim/webhook").as_array().cloned().unwrap_or_default()
    }

    /// `/sim/requests`.
    pub fn requests(&self) -> Vec<Value> {
        self.get("/sim/requests").as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET and parse JSON.
pub fn get_json(url: &str) -> Value {
    let mut response = ureq::get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    response
        .body_mut()
        .read_json()
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

/// GET `url`: the status and the body as JSON (`Null` when it is not JSON); any status
/// is an answer, only a failed connection panics.
pub fn get_status(url: &str) -> (u16, Value) {
    match ureq::get(url).config().http_status_as_error(false).build().call() {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_json().unwrap_or(Value::Null)),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

/// A simulator, a temp dir and helpers to run the daemon against them.
pub struct Harness {
    /// Holds config, audit and journal files.
    pub dir: tempfile::TempDir,
    /// The simulator.
    pub sim: Sim,
    /// True: journal and audit keep their shipped `fsync = true`; false (the default,
    /// for speed): the test configs turn disk syncs off.
    pub durable: bool,
    /// With `ACTIONWARDEN_TEST_BACKEND=postgres`: the schema the journal lives in.
    pub pg: Option<pg::Schema>,
}

impl Harness {
    /// A harness whose simulator gets `sim_args`; its configs turn disk syncs off.
    pub fn new(sim_args: &[&str]) -> Harness {
        Harness {
            dir: tempfile::tempdir().expect("temp dir"),
            sim: Sim::start(sim_args),
            durable: false,
            pg: test_schema(),
        }
    }

    /// A harness whose configs keep the shipped durability: every journal commit and
    /// audit write is synced to disk (`fsync = true`), as an operator runs it.
    pub fn durable(sim_args: &[&str]) -> Harness {
        Harness {
            durable: true,
            ..Harness::new(sim_args)
        }
    }

    /// A harness whose simulator checks no webhook signature (for unsigned delivery).
    pub fn unsigned(sim_args: &[&str]) -> Harness {
        Harness {
            dir: tempfile::tempdir().expect("temp dir"),
            sim: Sim::start_with(sim_args, false),
            durable: false,
            pg: test_schema(),
        }
    }

    /// The audit file path.
    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    /// Settings for fast tests against this harness's simulator; `overrides` replaces
    /// whole tables by name (e.g. a custom `[retry]`) and `batches` is appended.
    pub fn config_text(&self, overrides: &[(&str, &str)], batches: &str) -> String {
        let dir = self.dir.path().display();
        let url = &self.sim.url;
        let fsync = if self.durable { "" } else { "\nfsync = false" };
        let defaults = [
            ("cxone", format!("base_url = \"{url}\"\nclient_id = \"simulator\"\nclient_secret_env = \"{SECRET_ENV}\"\nrequest_timeout = \"2s\"\ntoken_refresh_skew = \"100ms\"")),
            ("limits", "max_in_flight = 500".to_string()),
            ("poll", "initial_delay = \"20ms\"\ninterval = \"30ms\"\ntimeout = \"30s\"".to_string()),
            ("retry", "max_retries = 3\nbase_delay = \"10ms\"\nmax_delay = \"50ms\"\njitter = \"none\"".to_string()),
            ("dead_letter", format!("webhook_url = \"{url}/sim/webhook\"\nsigning_secret_env = \"{WEBHOOK_KEY_ENV}\"\ndrain_timeout = \"20s\"")),
            ("audit", format!("path = \"{dir}/audit.jsonl\"{fsync}")),
            ("journal", match &self.pg {
                Some(schema) => schema.journal_table(),
                None => format!("path = \"{dir}/actionwarden.journal\"{fsync}"),
            }),
            ("cluster", pg::Schema::cluster_table("test", "1s")),
            ("admin", "listen = \"\"".to_string()),
        ];
        let mut text = String::new();
        for (table, body) in defaults {
            let body = overrides
                .iter()
                .find(|(t, _)| *t == table)
                .map(|(_, b)| b.to_string())
                .unwrap_or(body);
            text.push_str(&format!("[{table}]\n{body}\n\n"));
        }
        for (table, body) in overrides {
            if !text.contains(&format!("[{table}]\n")) {
                text.push_str(&format!("[{table}]\n{body}\n\n"));
            }
        }
        text.push_str(batches);
        text
    }

    /// Writes a config file and returns its path.
    pub fn write_config(&self, overrides: &[(&str, &str)], batches: &str) -> PathBuf {
        let path = self.dir.path().join("config.toml");
        std::fs::write(&path, self.config_text(overrides, batches)).expect("writing config");
        path
    }

    /// Runs `actionwarden run --once -c CONFIG` to completion (60s deadline).
    pub fn run_once(&self, config: &Path) -> Output {
        run_to_end(&mut daemon_cmd(&["run", "--once"], config), Duration::from_secs(60))
    }

    /// Every audit record, in file order.
    pub fn audit(&self) -> Vec<Value> {
        read_jsonl(&self.audit_path())
    }

    /// Audit outcome records only.
    pub fn outcomes(&self) -> Vec<Value> {
        self.audit()
            .into_iter()
            .filter(|r| {
                matches!(
                    r["event_type"].as_str(),
                    Some("ACTION_COMPLETED" | "ACTION_CANCELLED" | "ASYNC_ERROR_HANDLED")
                )
            })
            .collect()
    }

    /// The one outcome record of `batch/key` (panics unless exactly one).
    pub fn outcome(&self, batch: &str, key: &str) -> Value {
        let found: Vec<Value> = self
            .outcomes()
            .into_iter()
            .filter(|r| r["batch"] == batch && r["key"] == key)
            .collect();
        assert_eq!(found.len(), 1, "expected one outcome for {batch}/{key}, got {found:#?}");
        found.into_iter().next().unwrap()
    }

    /// Audit records of one type for `key`.
    pub fn records(&self, event_type: &str, key: &str) -> Vec<Value> {
        self.audit()
            .into_iter()
            .filter(|r| r["event_type"] == event_type && r["key"] == key)
            .collect()
    }
}

/// The journal tests' schema when they run against PostgreSQL.
fn test_schema() -> Option<pg::Schema> {
    if !pg::postgres_backend() {
        return None;
    }
    let schema = pg::Schema::fresh("journal tests on PostgreSQL");
    assert!(
        schema.is_some(),
        "ACTIONWARDEN_TEST_BACKEND=postgres needs a reachable PostgreSQL"
    );
    schema
}

/// True under CI (`.ci/run` sets `ACTIONWARDEN_CI=1`): a tool a test promises to use
/// must be there, and the test fails rather than fall back.
pub fn under_ci() -> bool {
    std::env::var("ACTIONWARDEN_CI").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `actionwarden ARGS -c CONFIG` with the test secrets in its environment.
pub fn daemon_cmd(args: &[&str], config: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .arg("-c")
        .arg(config)
        .env(SECRET_ENV, SIM_SECRET)
        .env(WEBHOOK_KEY_ENV, WEBHOOK_KEY)
        .env(pg::DB_URL_ENV, pg::database_url())
        .env_remove("RUST_LOG")
        .env_remove("ACTIONWARDEN_CONFIG");
    without_proxies(&mut command);
    command
}

/// Runs a command to its end, killing it past `deadline`.
pub fn run_to_end(command: &mut Command, deadline: Duration) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(output) => output.expect("waiting for the command"),
        Err(_) => {
            // Its process group first, for a command started as a group leader (a script
            // and what it spawned); a plain child's group does not exist and that fails.
            let _ = Command::new("kill").args(["-9", "--", &format!("-{pid}")]).status();
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("command did not finish within {deadline:?}");
        }
    }
}

/// Reads a JSON Lines file (missing file: empty). A last line without its newline is
/// one the daemon is still writing and is left out; every complete line must parse.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}")))
        .collect()
}

/// Waits until `condition` holds, polling every 10ms, panicking past `deadline`.
pub fn wait_until(deadline: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stdout and stderr of an output, for assertion messages.
pub fn show(output: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// One inline action whose payload carries a `sim` directive.
pub fn action(key: &str, sim: &str) -> String {
    let sim = if sim.is_empty() {
        String::new()
    } else {
        format!(", sim = {{ {sim} }}")
    };
    format!(
        "  [[batch.action]]\n  key = \"{key}\"\n  actionType = \"CUSTOM_ACTION\"\n  payload = {{ contactId = \"{key}\", dataField = \"priority\", value = \"HIGH\"{sim} }}\n\n"
    )
}

/// A batch header.
pub fn batch(name: &str, extra: &str) -> String {
    format!("[[batch]]\nname = \"{name}\"\n{extra}\n")
}

/// A daemon started in the background, its stderr going to a file in the harness dir.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Daemon {
    /// Sends a signal by name (`TERM`, `KILL`, `HUP`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the exit code (deadline 60s).
    pub fn wait(&mut self, deadline: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                start.elapsed() < deadline,
                "daemon did not exit within {deadline:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://ADDR` of its admin server, read from its log (it listens on port 0).
    pub fn admin_url(&self) -> String {
        let mut url = String::new();
        wait_until(Duration::from_secs(20), "the admin server", || {
            let log = self.log_text();
            let Some(pos) = log.find("Admin server listening.") else {
                return false;
            };
            let line = log[pos..].lines().next().unwrap_or_default();
            let Some(addr) = line.split("addr=").nth(1) else {
                return false;
            };
            url = format!(
                "http://{}",
                addr.split_whitespace().next().unwrap_or_default().trim_matches('"')
            );
            true
        });
        url
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Harness {
    /// Starts `actionwarden ARGS -c CONFIG` in the background.
    pub fn spawn(&self, args: &[&str], config: &Path) -> Daemon {
        self.spawn_with(args, config, &[])
    }

    /// Like `spawn`, with extra (or overriding) environment variables.
    pub fn spawn_with(&self, args: &[&str], config: &Path, env: &[(&str, &str)]) -> Daemon {
        let log = self.dir.path().join(format!("daemon-{}.log", rand_suffix()));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = daemon_cmd(args, config);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawning the daemon");
        Daemon { child, log }
    }

    /// Number of audit records of `event_type`.
    pub fn count(&self, event_type: &str) -> usize {
        self.audit().iter().filter(|r| r["event_type"] == event_type).count()
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The admin URL of `daemon` (waits for its listening line).
pub fn admin_url(daemon: &Daemon) -> String {
    daemon.admin_url()
}

/// GET `url`: its status and JSON body (null when not JSON).
pub fn status_of(url: &str) -> (u16, Value) {
    match ureq::get(url).config().http_status_as_error(false).build().call() {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_json().unwrap_or(Value::Null)),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

/// The value of the sample `name` whose labels include `labels`, read from the admin
/// server's `/metrics` at `admin_url`; `None` when no such sample is exported.
pub fn metric(admin_url: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = ureq::get(&format!("{admin_url}/metrics"))
        .call()
        .unwrap_or_else(|e| panic!("GET {admin_url}/metrics: {e}"))
        .body_mut()
        .read_to_string()
        .expect("metrics text");
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition format");
    scrape.samples.iter().find_map(|s| {
        let matches = s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v));
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        };
        matches.then_some(value)
    })
}
