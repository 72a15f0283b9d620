//! `actionwarden show BATCH/KEY [--json]`: one action with its body, state, dead letter
//! and history, oldest first. Works while a daemon runs.

use std::fmt::Write as _;
use std::path::Path;

use crate::action::Identity;
use crate::config;
use crate::error::{exit, Error};
use crate::journal::{open_reader, ActionView};

/// Prints the action named `identity` (`BATCH/KEY`); exit 1 when the journal does not know it.
pub fn show(path: &Path, as_json: bool, identity: &str) -> Result<u8, Error> {
    let Some((batch, key)) = identity.split_once('/') else {
        return Err(Error::Argument {
            flag: "BATCH/KEY",
            problem: format!("expected BATCH/KEY, found {identity:?}"),
        });
    };
    let loaded = config::load(path)?;
    let reader = open_reader(&loaded.config)?;
    let Some(view) = reader.action(&Identity::new(batch, key))? else {
        eprintln!("actionwarden: no action {identity} in the journal");
        return Ok(exit::USAGE);
    };
    let text = if as_json {
        serde_json::to_string_pretty(&view).expect("a view serializes") + "\n"
    } else {
        render(&view)
    };
    super::output::print(&text)?;
    Ok(exit::OK)
}

/// The action as text: its fields, then one line per history event.
pub fn render(view: &ActionView) -> String {
    let mut out = String::new();
    let dash = || "-".to_owned();
    let _ = writeln!(out, "action:      {}/{}", view.batch, view.key);
    let _ = writeln!(out, "state:       {}", view.state);
    let _ = writeln!(out, "outcome:     {}", view.outcome.clone().unwrap_or_else(dash));
    let _ = writeln!(out, "attempt:     {}", view.attempt);
    let _ = writeln!(out, "retries:     {}", view.retry_count);
    let _ = writeln!(out, "cxone id:    {}", view.action_id.clone().unwrap_or_else(dash));
    let body = view
        .body
        .as_ref()
        .map(|b| b.to_string())
        .unwrap_or_else(|| "(pruned)".into());
    let _ = writeln!(out, "body:        {body}");
    if let Some(letter) = &view.dead_letter {
        let _ = writeln!(
            out,
            "dead letter: {} {} ({}, {} attempts){}",
            letter.letter.error_id,
            letter.letter.error_code,
            letter.delivery,
            letter.attempts,
            if letter.replayed { ", replayed" } else { "" }
        );
    }
    let _ = writeln!(out, "history:");
    for e in &view.history {
        let mut cause = Vec::new();
        if let Some(status) = e.http_status {
            cause.push(format!("HTTP {status}"));
        }
        cause.extend(e.error_code.clone());
        cause.extend(e.detail.clone());
        let _ = writeln!(
            out,
            "  {}  {:<13} attempt {:<3} {:<24} {}  [{}]",
            e.at,
            e.state,
            e.attempt,
            e.action_id.clone().unwrap_or_else(dash),
            cause.join("; "),
            e.instance
        );
    }
    out
}
