//! Entry point: parse the command line, run the command, map the result to an exit code.

use std::process::ExitCode;

use actionwarden::cli::{Cli, Command, DlqCommand};
use actionwarden::commands;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            once,
            log_format,
        } => commands::run::run(&config.config, once, log_format),
        Command::Check { config } => commands::check::check(&config.config),
        Command::Status { config, json } => commands::status::status(&config.config, json),
        Command::Dlq {
            command: DlqCommand::List { config, json },
        } => commands::dlq::list(&config.config, json),
        Command::Dlq {
            command: DlqCommand::Replay { config, all, error_ids },
        } => commands::dlq::replay(&config.config, all, &error_ids),
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
