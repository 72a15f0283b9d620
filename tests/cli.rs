//! The command line itself: value lists, completions, the man page, `--version`, and
//! output into a pipe that closes early.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Every subcommand a user can type.
const SUBCOMMANDS: [&str; 7] = ["run", "check", "status", "dlq", "completions", "man", "simulate"];

fn bin(args: &[&str]) -> std::process::Output {
    run_to_end(
        Command::new(BIN).args(args).env_remove("ACTIONWARDEN_CONFIG"),
        Duration::from_secs(20),
    )
}

#[test]
fn simulate_lists_its_profiles_and_refuses_an_unknown_one_as_a_usage_error() {
    let help = bin(&["simulate", "--help"]);
    assert_eq!(help.status.code(), Some(0), "{}", show(&help));
    let text = String::from_utf8_lossy(&help.stdout);
    for value in ["demo", "clean", "chaos", "seconds", "http_date", "mixed", "none"] {
        assert!(text.contains(value), "--help lists {value}: {text}");
    }

    let wrong = bin(&["simulate", "--profile", "noisy"]);
    assert_eq!(wrong.status.code(), Some(1), "{}", show(&wrong));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("invalid value 'noisy' for '--profile"), "{err}");
    assert!(err.contains("[possible values: demo, clean, chaos]"), "{err}");
    assert!(!err.contains("JSON") && !err.contains("json"), "no serde error: {err}");

    let wrong = bin(&["simulate", "--retry-after-form", "date"]);
    assert_eq!(wrong.status.code(), Some(1), "{}", show(&wrong));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("[possible values: seconds, http_date, mixed, none]"),
        "{err}"
    );
}

#[test]
fn completions_for_bash_zsh_and_fish_know_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let output = bin(&["completions", shell]);
        assert_eq!(output.status.code(), Some(0), "{shell}: {}", show(&output));
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(script.len() > 1000, "{shell}: a real script: {script}");
        assert!(script.contains("actionwarden"), "{shell}: {script}");
        for sub in SUBCOMMANDS.iter().chain(&["list", "replay"]) {
            assert!(script.contains(sub), "{shell} completes {sub}");
        }
        assert!(script.contains("retry-after-form"), "{shell} completes options too");
    }
    let wrong = bin(&["completions", "tcsh"]);
    assert_eq!(wrong.status.code(), Some(1), "{}", show(&wrong));
}

#[test]
fn man_page_is_roff_and_documents_every_command_and_exit_code() {
    let output = bin(&["man"]);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let page = String::from_utf8_lossy(&output.stdout);
    let title = page.lines().find(|l| l.starts_with(".TH ")).expect("a .TH title line");
    assert!(title.starts_with(".TH actionwarden 1"), "{title}");
    assert!(page.starts_with('.'), "roff starts with a request: {page}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH COMMANDS", ".SH \"EXIT STATUS\""] {
        assert!(page.contains(section), "{section}: {page}");
    }
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!(".SS \"actionwarden {sub}")) || page.contains(&format!(".SS actionwarden {sub}")),
            "{sub} has its own heading: {page}"
        );
    }
    assert!(page.contains("actionwarden dlq replay"), "{page}");
    assert!(
        page.contains("run \\-\\-once stopped by a signal"),
        "exit code 4: {page}"
    );
}

#[test]
fn version_shows_the_version_and_the_commit() {
    let output = bin(&["--version"]);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let prefix = format!("actionwarden {} (", env!("CARGO_PKG_VERSION"));
    let commit = line
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("expected `{prefix}COMMIT)`, got {line:?}"));
    let from_git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match from_git {
        Some(head) => assert_eq!(commit, head, "{line}"),
        None => assert!(
            commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{line}"
        ),
    }
}

/// Spawns `command` with stdout piped; `read_first` reads one line before closing the
/// pipe, else it is closed before the command writes anything. Returns the exit code and
/// stderr.
fn with_closed_stdout(command: &mut Command, read_first: bool) -> (Option<i32>, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning");
    let stdout = child.stdout.take().expect("piped stdout");
    if read_first {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("one line");
        assert!(!line.is_empty(), "the command printed something");
    } else {
        drop(stdout);
    }
    let output = run_to_end_child(child);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Waits for an already spawned child (60s deadline).
fn run_to_end_child(child: std::process::Child) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output.expect("waiting for the command"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("command did not finish within 60s");
        }
    }
}

#[test]
fn a_closed_pipe_ends_every_printing_command_quietly() {
    let h = Harness::new(&["--profile", "clean"]);
    // Enough dead letters that `dlq list --json` outgrows any pipe buffer.
    let mut batches = batch("b", "");
    for i in 0..300 {
        batches.push_str(&action(
            &format!("dead-{i:04}"),
            "outcome = \"FAILED\", code = \"INVALID_CONTACT\"",
        ));
    }
    let config = h.write_config(&[], &batches);
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));

    let quiet = |args: &[&str], read_first: bool| {
        let mut command = if matches!(args[0], "completions" | "man") {
            let mut command = Command::new(BIN);
            command.args(args);
            command
        } else {
            daemon_cmd(args, &config)
        };
        let (code, stderr) = with_closed_stdout(&mut command, read_first);
        assert!(
            !stderr.contains("panicked") && !stderr.to_lowercase().contains("broken pipe"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.trim().is_empty(), "{args:?} says nothing: {stderr}");
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
    };
    // `| head -1`: the reader takes one line and goes away mid-output.
    for _ in 0..5 {
        quiet(&["dlq", "list", "--json"], true);
        quiet(&["dlq", "list"], true);
    }
    // The reader is gone before anything is written.
    for args in [
        &["dlq", "list", "--json"][..],
        &["status"],
        &["status", "--json"],
        &["check"],
        &["completions", "bash"],
        &["man"],
    ] {
        quiet(args, false);
    }
}

#[test]
fn status_and_dlq_tables_keep_long_names_on_one_row_when_piped() {
    let h = Harness::new(&["--profile", "clean"]);
    let long = "crm-sync-2026-11-27-priority-updates-from-the-spreadsheet-export";
    let batches = batch(long, "")
        + &action("ok", "")
        + &action("gone", "outcome = \"FAILED\", code = \"INVALID_CONTACT\"")
        + &batch("b", "")
        + &action("ok", "");
    let config = h.write_config(&[], &batches);
    assert_eq!(h.run_once(&config).status.code(), Some(2));

    let status = run_to_end(&mut daemon_cmd(&["status"], &config), Duration::from_secs(20));
    assert_eq!(status.status.code(), Some(0), "{}", show(&status));
    let text = String::from_utf8_lossy(&status.stdout);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert!(
        rows.contains(&vec!["b", "1", "0", "0", "1", "0", "0", "0"]),
        "one row per batch: {text}"
    );
    assert!(
        rows.contains(&vec![long, "2", "0", "0", "1", "0", "1", "0"]),
        "the long name and its counts on one row: {text}"
    );
    let header = text.lines().nth(1).unwrap();
    let row = text.lines().find(|l| l.starts_with("b ")).unwrap();
    assert_eq!(header.len(), row.len(), "numbers end under their headers: {text}");

    let dlq = run_to_end(&mut daemon_cmd(&["dlq", "list"], &config), Duration::from_secs(20));
    assert_eq!(dlq.status.code(), Some(0), "{}", show(&dlq));
    let text = String::from_utf8_lossy(&dlq.stdout);
    let row = text.lines().nth(2).unwrap_or_default();
    assert!(
        row.contains(&format!("{long}/gone")) && row.contains("INVALID_CONTACT") && row.ends_with("no"),
        "{text}"
    );
}

#[test]
fn a_second_ctrl_c_during_the_drain_exits_4_at_once_and_a_rerun_resumes_the_action() {
    let h = Harness::new(&["--profile", "clean", "--latency", "5s"]);
    let config = h.write_config(
        &[("shutdown", "timeout = \"30s\"")],
        &(batch("slow", "") + &action("s1", "")),
    );
    let mut daemon = h.spawn(&["run", "--once"], &config);
    wait_until(Duration::from_secs(20), "the submit in flight", || {
        h.sim.stats()["submits"].as_u64().unwrap_or(0) >= 1
    });
    daemon.signal("INT");
    wait_until(Duration::from_secs(10), "the drain", || {
        daemon.log_text().contains("Shutting down")
    });
    let second = std::time::Instant::now();
    daemon.signal("INT");
    assert_eq!(daemon.wait(Duration::from_secs(10)), Some(4), "{}", daemon.log_text());
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "the second Ctrl-C ends the drain at once: {:?}",
        second.elapsed()
    );
    assert!(h.outcomes().is_empty(), "the action had no outcome yet");

    h.sim.post("/sim/control", serde_json::json!({"latency": "0ms"}));
    let output = h.run_once(&config);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_exactly_once(&h, 1);
    assert_eq!(
        h.sim.stats()["actions_created"],
        1,
        "the re-run resumed the same action (same Idempotency-Key)"
    );
}
