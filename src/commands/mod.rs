//! One file per subcommand.

pub mod check;
mod check_network;
pub mod dlq;
pub mod prune;
pub mod run;
pub mod show;
pub mod simulate;
pub mod status;

use std::io::Write;

/// Writes `text` to stdout; a closed pipe (`| head -1`) ends the output quietly.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
