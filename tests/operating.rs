//! Running for months: the audit file rotated under a running daemon, a full disk, the
//! systemd notify protocol and watchdog, quiet logs that still name their action, and
//! a second stop request.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Outcome records of `records`, by `batch/key`.
fn outcomes_by_identity(records: &[Value]) -> HashMap<String, usize> {
    let mut by_identity = HashMap::new();
    for r in records.iter().filter(|r| {
        matches!(
            r["event_type"].as_str(),
            Some("ACTION_COMPLETED" | "ACTION_CANCELLED" | "ASYNC_ERROR_HANDLED")
        )
    }) {
        *by_identity.entry(format!("{}/{}", r["batch"], r["key"])).or_insert(0) += 1;
    }
    by_identity
}

#[test]
fn a_rotated_audit_file_is_reopened_on_sighup_and_no_record_is_lost_or_doubled() {
    let h = Harness::new(&["--profile", "clean"]);
    let mut batches = batch("rot", "max_in_flight = 10");
    for i in 0..120 {
        batches.push_str(&action(&format!("r{i:03}"), "duration = \"150ms\""));
    }
    let config = h.write_config(&[], &batches);
    let mut daemon = h.spawn(&["run", "--once"], &config);
    wait_until(Duration::from_secs(30), "a third of the outcomes", || {
        h.outcomes().len() >= 40
    });

    let rotated = h.dir.path().join("audit.jsonl.1");
    std::fs::rename(h.audit_path(), &rotated).unwrap();
    daemon.signal("HUP");
    wait_until(Duration::from_secs(10), "a new audit file", || h.audit_path().exists());
    assert_eq!(daemon.wait(Duration::from_secs(60)), Some(0), "{}", daemon.log_text());

    let old = read_jsonl(&rotated);
    let new = read_jsonl(&h.audit_path());
    assert!(
        !outcomes_by_identity(&old).is_empty(),
        "outcomes before the rotation stayed in the renamed file"
    );
    assert!(
        !outcomes_by_identity(&new).is_empty(),
        "outcomes after it went to the new file"
    );
    let mut both = old.clone();
    both.extend(new.iter().cloned());
    let by_identity = outcomes_by_identity(&both);
    assert_eq!(
        by_identity.len(),
        120,
        "every action has an outcome across the two files"
    );
    assert!(by_identity.values().all(|n| *n == 1), "none twice: {by_identity:?}");
    let ids: HashSet<String> = both.iter().map(|r| r["event_id"].to_string()).collect();
    assert_eq!(ids.len(), both.len(), "no event_id in both files");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(h.audit_path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the new audit file is private: {mode:o}");
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "3m") at `dir`; `None` when mounting is not allowed.
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `path` with a file there, until a write fails.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 16 * 1024];
    while file.write_all(&block).and_then(|()| file.sync_data()).is_ok() {}
    // The last block may have fit in part: the disk is full now.
}

/// Lines of `log` reporting a failed journal or audit write, by message.
fn failure_lines(log: &str) -> HashMap<&'static str, usize> {
    const MESSAGES: [&str; 6] = [
        "Journal commit failed",
        "Journal group commit failed",
        "Cannot write the journal",
        "Cannot write the audit log",
        "Cannot claim actions",
        "Cannot take replay requests",
    ];
    let mut counts = HashMap::new();
    for line in log.lines() {
        if let Some(message) = MESSAGES.iter().find(|m| line.contains(*m)) {
            *counts.entry(*message).or_insert(0) += 1;
        }
    }
    counts
}

#[test]
fn a_full_disk_turns_readyz_503_counts_errors_logs_rarely_and_loses_nothing() {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n");
    let h = Harness::new(&["--profile", "clean"]);
    let disk = h.dir.path().join("disk");
    let Some(_tmpfs) = root.unwrap_or(false).then(|| Tmpfs::mount(&disk, "16m")).flatten() else {
        assert!(!under_ci(), "CI runs as root and must mount a tmpfs for this test");
        println!("skipped: needs root to mount a tmpfs");
        return;
    };
    let d = disk.display();
    let audit = format!("path = \"{d}/audit.jsonl\"\nfsync = false");
    let journal = format!("path = \"{d}/actionwarden.journal\"\nfsync = false");
    let overrides = [
        ("audit", audit.as_str()),
        ("journal", journal.as_str()),
        ("admin", "listen = \"127.0.0.1:0\""),
    ];
    let mut batches = batch("full", "max_in_flight = 40");
    for i in 0..400 {
        batches.push_str(&action(&format!("f{i:03}"), "duration = \"400ms\""));
    }
    let config = h.write_config(&overrides, &batches);
    let mut daemon = h.spawn(&["run", "--once"], &config);
    let url = daemon.admin_url();
    let audit_path = disk.join("audit.jsonl");
    let outcomes = || outcomes_by_identity(&read_jsonl(&audit_path)).len();
    wait_until(Duration::from_secs(30), "the first outcomes", || outcomes() >= 20);

    let filler = disk.join("filler");
    fill(&filler);
    let before = daemon.log_text().len();
    wait_until(
        Duration::from_secs(20),
        "/readyz 503 for the journal or the audit file",
        || {
            let (status, body) = get_status(&format!("{url}/readyz"));
            let reason = body["reason"].as_str().unwrap_or_default();
            status == 503 && (reason.starts_with("journal:") || reason.starts_with("audit:"))
        },
    );
    let errors = || {
        metric(&url, "actionwarden_journal_errors_total", &[]).unwrap_or(0.0)
            + metric(&url, "actionwarden_audit_errors_total", &[]).unwrap_or(0.0)
    };
    let first = errors();
    assert!(first > 0.0, "failures are counted");
    wait_until(Duration::from_secs(10), "the error counters rising", || {
        errors() > first
    });
    // Several seconds of failing writes (every poller retries twice a second).
    let failing_since = std::time::Instant::now();
    wait_until(Duration::from_secs(10), "four seconds of failures", || {
        failing_since.elapsed() > Duration::from_secs(4)
    });
    let log = daemon.log_text();
    let lines = failure_lines(&log[before..]);
    assert!(!lines.is_empty(), "the failure is logged: {}", &log[before..]);
    for (message, n) in &lines {
        // One line per kind per 10 s: at most two inside this window, whatever the retries.
        assert!(*n <= 2, "{message:?} logged {n} times in a few seconds: {lines:?}");
    }

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(daemon.wait(Duration::from_secs(60)), Some(0), "{}", daemon.log_text());
    let records = read_jsonl(&audit_path);
    let by_identity = outcomes_by_identity(&records);
    assert_eq!(by_identity.len(), 400, "every action finished once space was back");
    assert!(by_identity.values().all(|n| *n == 1), "none twice");
    let ids: HashSet<String> = records.iter().map(|r| r["event_id"].to_string()).collect();
    assert_eq!(ids.len(), records.len(), "no event_id twice");
    assert!(
        daemon.log_text().contains("suppressed="),
        "log lines say how many repeats they stand for"
    );
}

/// Datagrams received on a unix socket, with their arrival times, gathered by a thread
/// until the socket is dropped.
struct NotifySocket {
    path: std::path::PathBuf,
    messages: std::sync::Arc<std::sync::Mutex<Vec<(std::time::Instant, String)>>>,
}

impl NotifySocket {
    fn bind(path: std::path::PathBuf) -> NotifySocket {
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let gathered = messages.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buffer) {
                let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
                gathered.lock().unwrap().push((std::time::Instant::now(), text));
            }
        });
        NotifySocket { path, messages }
    }

    fn messages(&self) -> Vec<(std::time::Instant, String)> {
        self.messages.lock().unwrap().clone()
    }
}

#[test]
fn systemd_hears_ready_then_stopping_and_watchdog_pings_at_half_its_interval() {
    /// `WATCHDOG_USEC`: pings are due every 200 ms. Not shorter: on two busy cores a
    /// scheduling delay of 100 ms happens, and the assertion below is about the daemon.
    const WATCHDOG_MS: u64 = 400;
    let h = Harness::new(&["--profile", "clean"]);
    let notify = NotifySocket::bind(h.dir.path().join("notify.sock"));
    let mut batches = batch("sd", "");
    for i in 0..5 {
        batches.push_str(&action(&format!("s{i}"), "duration = \"2s\""));
    }
    let config = h.write_config(&[("admin", "listen = \"127.0.0.1:0\"")], &batches);
    let socket = notify.path.display().to_string();
    let usec = (WATCHDOG_MS * 1000).to_string();
    let env = [("NOTIFY_SOCKET", socket.as_str()), ("WATCHDOG_USEC", usec.as_str())];
    let mut daemon = h.spawn_with(&["run", "--once"], &config, &env);
    let url = daemon.admin_url();
    let (status, body) = get_status(&format!("{url}/healthz"));
    assert_eq!(status, 200, "the actors' loop answers /healthz: {body}");
    assert_eq!(daemon.wait(Duration::from_secs(30)), Some(0), "{}", daemon.log_text());
    wait_until(Duration::from_secs(5), "STOPPING=1", || {
        notify.messages().iter().any(|(_, m)| m.contains("STOPPING=1"))
    });

    let messages = notify.messages();
    let position = |what: &str| messages.iter().position(|(_, m)| m.lines().any(|l| l == what));
    let ready = position("READY=1").expect("READY=1 sent");
    let stopping = position("STOPPING=1").expect("STOPPING=1 sent");
    assert!(ready < stopping, "READY=1 comes first: {messages:?}");
    assert!(
        messages
            .iter()
            .any(|(_, m)| m.starts_with("STATUS=") && m.contains("of 5 actions resolved")),
        "STATUS= tells the progress: {messages:?}"
    );
    let pings: Vec<std::time::Instant> = messages
        .iter()
        .filter(|(_, m)| m.trim() == "WATCHDOG=1")
        .map(|(at, _)| *at)
        .collect();
    assert!(pings.len() >= 8, "two seconds of pings every 200ms: {}", pings.len());
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = gaps.iter().sum::<Duration>() / gaps.len() as u32;
    assert!(
        mean >= Duration::from_millis(WATCHDOG_MS / 2 - 40) && mean <= Duration::from_millis(WATCHDOG_MS / 2 + 40),
        "pings every half interval: mean gap {mean:?}"
    );
    let longest = gaps.iter().max().copied().unwrap_or_default();
    assert!(
        longest < Duration::from_millis(WATCHDOG_MS),
        "never a gap the watchdog would fire on: {longest:?}"
    );
}

/// The JSON log lines of `stderr`.
fn json_lines(stderr: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn quiet_logs_name_their_action_at_every_level_and_say_nothing_of_a_completed_one() {
    let batches =
        batch("quiet", "") + &action("ok1", "") + &action("dead1", "outcome = \"FAILED\", code = \"INVALID_CONTACT\"");
    for level in ["warn", "info"] {
        let h = Harness::new(&["--profile", "clean"]);
        let config = h.write_config(&[], &batches);
        let output = run_to_end(
            daemon_cmd(&["run", "--once", "--log-format", "json"], &config).env("RUST_LOG", level),
            Duration::from_secs(60),
        );
        assert_eq!(output.status.code(), Some(2), "{}", show(&output));
        let lines = json_lines(&output.stderr);
        let dead: Vec<&Value> = lines
            .iter()
            .filter(|l| l["message"] == "Action dead-lettered.")
            .collect();
        assert_eq!(dead.len(), 1, "RUST_LOG={level}: {}", show(&output));
        let line = dead[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["batch"], "quiet", "RUST_LOG={level}: {line}");
        assert_eq!(line["key"], "dead1", "RUST_LOG={level}: {line}");
        assert!(
            line["action_id"].as_str().is_some_and(|id| !id.is_empty()),
            "RUST_LOG={level}: {line}"
        );
        let about_ok: Vec<&Value> = lines.iter().filter(|l| l["key"] == "ok1").collect();
        assert!(
            about_ok.is_empty(),
            "a completed action writes no line at {level}: {about_ok:?}"
        );
    }
}
