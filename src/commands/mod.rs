//! One file per subcommand.

pub mod check;
pub mod run;
pub mod simulate;
