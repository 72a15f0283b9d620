//! The benchmark script stays runnable: a tiny N through each of its daemon modes, with
//! the test build's binary (no release build, nothing timed).

use std::path::Path;
use std::process::Command;

fn bench(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/bench.sh");
    let output = Command::new("bash")
        .arg(script)
        .args(args)
        .args(["--bin", env!("CARGO_BIN_EXE_actionwarden")])
        .output()
        .expect("running benches/bench.sh");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn throughput_mode_reports_every_figure() {
    let out = bench(&[
        "--mode",
        "throughput",
        "--n",
        "30",
        "--in-flight",
        "10",
        "--fsync",
        "on",
    ]);
    for figure in [
        "actions/s",
        "CXone requests/s",
        "peak RSS MB",
        "p50 / p99 ms",
        "CPU s per 1k",
    ] {
        assert!(out.contains(figure), "{figure} missing:\n{out}");
    }
    let json: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(json["n"], 30);
    assert!(json["actions_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn inflight_mode_reports_bytes_per_action() {
    let out = bench(&["--mode", "inflight", "--n", "40"]);
    assert!(out.contains("bytes per action"), "{out}");
}
