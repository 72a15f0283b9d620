//! Entry point: parse the command line, run the command, map the result to an exit code.

use std::process::ExitCode;

use actionwarden::cli::{Cli, Command, DlqCommand, JournalCommand};
use actionwarden::commands;
use actionwarden::error::exit;
use clap::Parser;

/// mimalloc instead of glibc malloc: the allocator was the top of the CPU profile
/// (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // clap exits with 2 on a usage error; 2 means "finished with dead letters" here, so
    // usage errors exit 1 (help and version still exit 0).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    let result = match cli.command {
        Command::Run {
            config,
            once,
            log_format,
        } => commands::run::run(&config.config, once, log_format),
        Command::Check { config } => commands::check::check(&config.config),
        Command::Status { config, json } => commands::status::status(&config.config, json),
        Command::Show { config, json, identity } => commands::show::show(&config.config, json, &identity),
        Command::Journal {
            command: JournalCommand::Prune { config, older_than },
        } => commands::prune::prune(&config.config, older_than.as_deref()),
        Command::Dlq {
            command: DlqCommand::List { config, json },
        } => commands::dlq::list(&config.config, json),
        Command::Dlq {
            command: DlqCommand::Replay { config, all, error_ids },
        } => commands::dlq::replay(&config.config, all, &error_ids),
        Command::Dlq {
            command: DlqCommand::Discard { config, error_ids },
        } => commands::dlq::discard(&config.config, &error_ids),
        Command::Completions { shell } => commands::completions::completions(shell),
        Command::Man => commands::completions::man(),
        Command::Simulate { .. } => commands::simulate::simulate(cli.command),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("actionwarden: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
