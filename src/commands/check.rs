//! `actionwarden check`: validate and print the plan, secrets redacted. Contacts nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::check_network;
use crate::config::actions::Scan;
use crate::config::{self, Loaded};
use crate::error::{exit, Error};
use crate::net::EnvProxies;

/// Validates the file at `path` (settings, every action, the proxy environment
/// variables) and prints the plan.
pub fn check(path: &Path) -> Result<u8, Error> {
    let (loaded, scan) = config::load_checked(path)?;
    let env = EnvProxies::from_env().map_err(crate::net::NetError::from)?;
    let network = check_network::section(&loaded.config, &env)?;
    super::output::print(&plan(&loaded, &scan, &network))?;
    Ok(exit::OK)
}

/// The plan: batches with their action counts, the `network` section, then the effective
/// settings. Secrets are never in the config (only env var names and file paths), and
/// whether they are set is shown as set/unset, never their value.
pub fn plan(loaded: &Loaded, scan: &Scan, network: &str) -> String {
    let c = &loaded.config;
    let mut out = String::new();
    let _ = writeln!(out, "config: {} (valid)", loaded.path.display());
    let counts: BTreeMap<&str, usize> = scan.counts.iter().map(|(b, n)| (b.as_str(), *n)).collect();
    let _ = writeln!(out, "batches: {}, actions: {}", c.batches.len(), scan.total());
    for batch in &c.batches {
        let limit = if batch.max_in_flight == 0 {
            "global limit".to_string()
        } else {
            batch.max_in_flight.to_string()
        };
        let _ = writeln!(
            out,
            "  {:<24} {:>7} actions  max_in_flight: {:<12} rollback: {}",
            batch.name,
            counts.get(batch.name.as_str()).copied().unwrap_or(0),
            limit,
            if batch.rollback_action.is_empty() {
                "none"
            } else {
                "configured"
            }
        );
    }
    let secret = if c.cxone.uses_simulator() {
        "embedded simulator credentials".to_string()
    } else if let Some(file) = &c.cxone.client_secret_file {
        format!("from file {} ({})", file.display(), presence(file.exists()))
    } else {
        format!(
            "from env {} ({})",
            c.cxone.client_secret_env,
            presence(std::env::var_os(&c.cxone.client_secret_env).is_some())
        )
    };
    if !c.cxone.uses_simulator() {
        let client_id = if !c.cxone.client_id.is_empty() {
            "set in the file".to_string()
        } else {
            format!(
                "from env CXONE_CLIENT_ID ({})",
                presence(std::env::var_os("CXONE_CLIENT_ID").is_some())
            )
        };
        let _ = writeln!(out, "client id: {client_id}");
    }
    let _ = writeln!(out, "client secret: {secret}");
    if !c.dead_letter.signing_secret_env.is_empty() {
        let set = std::env::var_os(&c.dead_letter.signing_secret_env).is_some();
        let _ = writeln!(
            out,
            "webhook signing key: from env {} ({})",
            c.dead_letter.signing_secret_env,
            presence(set)
        );
    }
    if !c.admin.token_env.is_empty() {
        let set = std::env::var_os(&c.admin.token_env).is_some();
        let _ = writeln!(out, "admin token: from env {} ({})", c.admin.token_env, presence(set));
    }
    out.push_str(network);
    let mut settings = c.clone();
    settings.batches.clear();
    let _ = writeln!(out, "\neffective settings:");
    out.push_str(&toml::to_string(&settings).unwrap_or_else(|e| format!("(cannot render: {e})\n")));
    out
}

fn presence(set: bool) -> &'static str {
    if set {
        "set"
    } else {
        "NOT SET"
    }
}
