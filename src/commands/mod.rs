//! One file per subcommand.

pub mod check;
mod check_network;
pub mod dlq;
pub mod run;
pub mod simulate;
pub mod status;
