//! Build script: records the commit being built in `ACTIONWARDEN_COMMIT`, shown by
//! `--version` and the `actionwarden_build_info` metric. The short hash comes from git
//! when the source is a checkout; a tarball or container build without `.git` can pass
//! it in the `ACTIONWARDEN_COMMIT` environment variable; else it is "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ACTIONWARDEN_COMMIT");
    let commit = git(&["rev-parse", "--short", "HEAD"])
        .or_else(|| {
            std::env::var("ACTIONWARDEN_COMMIT")
                .ok()
                .filter(|c| !c.trim().is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=ACTIONWARDEN_COMMIT={}", commit.trim());
    watch_git_head();
}

/// Reruns this script when HEAD moves: on a checkout or commit (HEAD itself, the branch
/// it points at, or the packed refs when that branch is packed). Only existing files are
/// named, since cargo reruns on every build for a missing one.
fn watch_git_head() {
    let mut paths = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        paths.push(branch);
    }
    for path in paths {
        if let Some(file) = git(&["rev-parse", "--git-path", &path]) {
            if std::path::Path::new(&file).exists() {
                println!("cargo:rerun-if-changed={file}");
            }
        }
    }
}

/// Runs git in the package directory; `None` when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}
