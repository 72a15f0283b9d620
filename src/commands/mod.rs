//! One file per subcommand.

pub mod check;
pub mod completions;
pub mod dlq;
pub mod output;
pub mod run;
pub mod simulate;
pub mod status;
