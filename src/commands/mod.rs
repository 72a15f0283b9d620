//! One file per subcommand.

pub mod check;
mod check_network;
pub mod completions;
pub mod dlq;
pub mod output;
pub mod prune;
pub mod run;
pub mod show;
pub mod simulate;
pub mod status;
