//! What this binary is: its version and the commit it was built from (recorded by
//! build.rs), for `--version` and the `actionwarden_build_info` metric.

/// The package version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The short commit hash, or `unknown` for a build without git or `ACTIONWARDEN_COMMIT`.
pub const COMMIT: &str = env!("ACTIONWARDEN_COMMIT");

/// `--version`: `0.1.0 (abc1234)`.
pub const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("ACTIONWARDEN_COMMIT"), ")");
