//! The benchmark script stays runnable: a tiny N through each of its daemon modes, with
//! the test build's binary (no release build, nothing timed), and its figures are sane.
//! The PostgreSQL modes use the test server (`ACTIONWARDEN_TEST_DATABASE_URL`) and are
//! skipped, with one line, when it is not reachable outside CI.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{run_to_end, show};
use serde_json::Value;

/// The script's own deadline for each run and wait (`--timeout`), in seconds.
const SCRIPT_TIMEOUT_SECS: &str = "60";
/// The test's deadline for the whole script: past the script's own, as a last resort.
const TEST_DEADLINE: Duration = Duration::from_secs(120);

/// Runs `benches/bench.sh ARGS` and returns its closing JSON line.
fn bench(args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/bench.sh");
    let mut command = Command::new("bash");
    command
        .arg(script)
        .args(args)
        .args([
            "--bin",
            env!("CARGO_BIN_EXE_actionwarden"),
            "--timeout",
            SCRIPT_TIMEOUT_SECS,
        ])
        .env("ACTIONWARDEN_BENCH_DATABASE_URL", common::pg::database_url())
        // Its own process group: a kill at the deadline takes the simulator and the
        // daemon the script started along with it.
        .process_group(0);
    let output = run_to_end(&mut command, TEST_DEADLINE);
    assert!(output.status.success(), "bench failed:\n{}", show(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}):\n{stdout}"))
}

/// A figure of the report that must be a finite number greater than zero.
fn positive(report: &Value, name: &str) -> f64 {
    let value = report[name]
        .as_f64()
        .unwrap_or_else(|| panic!("{name} missing: {report}"));
    assert!(value.is_finite() && value > 0.0, "{name} = {value}: {report}");
    value
}

#[test]
fn throughput_mode_reports_every_figure() {
    let report = bench(&[
        "--mode",
        "throughput",
        "--n",
        "30",
        "--in-flight",
        "10",
        "--fsync",
        "on",
    ]);
    assert_eq!(report["n"], 30, "{report}");
    assert_eq!(report["completed"], 30, "every action completed: {report}");
    positive(&report, "actions_per_s");
    // Each action needs a submit and a poll at least.
    assert!(
        positive(&report, "requests_per_s") >= positive(&report, "actions_per_s"),
        "{report}"
    );
    positive(&report, "peak_rss_mb");
    let (p50, p99) = (positive(&report, "p50_ms"), positive(&report, "p99_ms"));
    assert!(p50 <= p99, "{report}");
    let cpu = report["cpu_s_per_1k"].as_f64().unwrap();
    assert!(cpu.is_finite() && cpu >= 0.0, "{report}");
}

#[test]
fn cpu_mode_reports_both_processes_and_their_ratio() {
    let report = bench(&["--mode", "cpu", "--n", "200", "--in-flight", "50"]);
    assert_eq!(report["n"], 200, "{report}");
    assert_eq!(report["completed"], 200, "every action completed: {report}");
    assert_eq!(
        report["fsync"], "on",
        "the cpu mode measures the shipped defaults: {report}"
    );
    positive(&report, "clk_tck");
    positive(&report, "actions_per_s");
    // A debug build on 200 actions spends whole clock ticks in the daemon; the simulator
    // may spend none on so few requests, and its ratio is then null.
    let daemon = positive(&report, "daemon_us_per_action");
    let parts = report["daemon_user_us"].as_f64().unwrap() + report["daemon_system_us"].as_f64().unwrap();
    assert!((parts - daemon).abs() < 1e-6, "user + system = total: {report}");
    let simulator = report["simulator_us_per_action"].as_f64().unwrap();
    assert!(simulator.is_finite() && simulator >= 0.0, "{report}");
    match report["ratio"].as_f64() {
        Some(ratio) => assert!((ratio - daemon / simulator).abs() < 1e-6, "{report}"),
        None => assert_eq!(simulator, 0.0, "{report}"),
    }
    // Each action needs a submit and a poll at least.
    assert!(report["requests"].as_u64().unwrap() >= 400, "{report}");
}

#[test]
fn inflight_mode_reports_bytes_per_action() {
    let report = bench(&["--mode", "inflight", "--n", "40"]);
    assert_eq!(report["n"], 40, "{report}");
    assert_eq!(report["submitted"], 40, "every action is in flight: {report}");
    positive(&report, "rss_mb");
    assert!(
        positive(&report, "peak_rss_mb") >= positive(&report, "rss_mb"),
        "{report}"
    );
    let per_action = report["bytes_per_action"].as_f64().unwrap();
    assert!(per_action.is_finite(), "{report}");
}

#[test]
fn scale_mode_reports_every_figure() {
    let report = bench(&["--mode", "scale", "--n", "2000"]);
    assert_eq!(report["n"], 2000, "{report}");
    assert_eq!(report["completed"], 2000, "every action completed: {report}");
    assert_eq!(report["rerun_submits"], 0, "the re-run submits nothing: {report}");
    for figure in [
        "run_s",
        "run_peak_rss_mb",
        "actions_per_s",
        "load_s",
        "load_actions_per_s",
        "rerun_peak_rss_mb",
        "status_peak_rss_mb",
        "dlq_peak_rss_mb",
    ] {
        positive(&report, figure);
    }
    // GNU time counts in hundredths of a second: a quick command on a tiny journal
    // may take none.
    for figure in ["rerun_s", "status_s", "dlq_s"] {
        let value = report[figure]
            .as_f64()
            .unwrap_or_else(|| panic!("{figure} missing: {report}"));
        assert!(value.is_finite() && value >= 0.0, "{figure} = {value}: {report}");
    }
    assert!(
        positive(&report, "load_s") < positive(&report, "run_s"),
        "loading is part of the run: {report}"
    );
    // A journaled action holds its body, a few history events and its audit line: a few
    // hundred bytes, not kilobytes per action and not nothing.
    let per_action = positive(&report, "journal_bytes_per_action");
    assert!((100.0..20_000.0).contains(&per_action), "{report}");
}

#[test]
fn throughput_mode_runs_on_postgres() {
    if !common::pg::reachable("bench throughput --backend postgres") {
        return;
    }
    let report = bench(&[
        "--mode",
        "throughput",
        "--backend",
        "postgres",
        "--n",
        "30",
        "--in-flight",
        "10",
    ]);
    assert_eq!(report["completed"], 30, "every action completed: {report}");
    positive(&report, "actions_per_s");
}

#[test]
fn cluster_mode_reports_one_and_two_instances() {
    if !common::pg::reachable("bench cluster mode") {
        return;
    }
    // A small in-flight limit so that neither member takes the whole batch at once.
    let report = bench(&["--mode", "cluster", "--n", "200", "--in-flight", "10"]);
    assert_eq!(report["completed_one"], 200, "{report}");
    assert_eq!(report["completed_two"], 200, "{report}");
    let (one, two) = (positive(&report, "one_s"), positive(&report, "two_s"));
    let ratio = positive(&report, "ratio");
    assert!((ratio - two / one).abs() < 1e-9, "{report}");
    positive(&report, "one_actions_per_s");
    positive(&report, "two_actions_per_s");
    let shares = report["share_a"].as_f64().unwrap() + report["share_b"].as_f64().unwrap();
    assert!((shares - 1.0).abs() < 1e-9, "the members' shares add up: {report}");
}

#[test]
fn failover_mode_reports_the_rescue_time() {
    if !common::pg::reachable("bench failover mode") {
        return;
    }
    let report = bench(&["--mode", "failover", "--n", "20"]);
    assert_eq!(report["runs"], 1, "{report}");
    assert_eq!(
        report["held_at_kill"][0], 20,
        "the killed member held every action: {report}"
    );
    assert_eq!(
        report["rescued"][0], 20,
        "the survivor took every action over: {report}"
    );
    let first = report["first_rescue_s"][0].as_f64().unwrap();
    let last = report["last_rescue_s"][0].as_f64().unwrap();
    // Taken over after the kill (once its lease ran out), the first before the last.
    assert!(first > 0.0 && first <= last, "{report}");
    assert_eq!(report["target_s"], 7, "{report}");
    assert!(report["within_target"].is_boolean(), "{report}");
}
