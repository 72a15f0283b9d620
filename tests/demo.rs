//! The shipped demo: `config.toml` against the embedded simulator. One seed tells one
//! story: two runs give the same counts per batch.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// Runs the shipped config in a fresh directory (its own journal and audit file) and
/// returns the summary's count columns per batch: total, completed, cancelled,
/// dead-lettered, rolled back, retries, restarts.
fn demo_counts() -> Vec<(String, Vec<u64>)> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(manifest.join("config.toml"), dir.path().join("config.toml")).unwrap();
    std::fs::create_dir(dir.path().join("examples")).unwrap();
    for entry in std::fs::read_dir(manifest.join("examples")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join("examples").join(entry.file_name())).unwrap();
    }
    let mut command = daemon_cmd(&["run", "--once"], Path::new("config.toml"));
    command.current_dir(dir.path());
    let output = run_to_end(&mut command, Duration::from_secs(120));
    assert_eq!(
        output.status.code(),
        Some(2),
        "the demo ends with exit code 2: {}",
        show(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("---"))
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            let counts = cells[1..8]
                .iter()
                .map(|c| c.parse().unwrap_or_else(|_| panic!("a count: {c:?} in {stdout}")))
                .collect();
            (cells[0].to_owned(), counts)
        })
        .collect()
}

#[test]
fn the_demo_profile_tells_the_same_story_twice_with_one_seed() {
    let first = demo_counts();
    let batches: Vec<&str> = first.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        batches,
        ["priority-updates", "dispositions"],
        "configuration order: {first:?}"
    );
    let updates = &first[0].1;
    assert!(
        updates[5] > 0 && updates[3] > 0,
        "retries and dead letters happened: {first:?}"
    );
    assert_eq!(first, demo_counts(), "same seed, same counts per batch");
}
