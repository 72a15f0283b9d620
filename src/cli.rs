//! Command-line types (docs/cli.md).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::LogFormat;
use crate::error::exit;
use crate::simulator::{Profile, RetryAfterForm};

/// Exit codes and their meaning, shown at the end of `--help` and in the man page.
pub const EXIT_CODES: [(u8, &str); 5] = [
    (
        exit::OK,
        "success (run --once: every action completed; the daemon: a graceful stop)",
    ),
    (exit::USAGE, "usage or configuration error"),
    (
        exit::NOT_ALL_COMPLETED,
        "run --once finished, but some actions were dead-lettered, rolled back or cancelled",
    ),
    (
        exit::CANNOT_RUN,
        "cannot run (credentials rejected, journal locked, address in use)",
    ),
    (
        exit::INTERRUPTED,
        "run --once stopped by a signal before every action had an outcome (run it again)",
    ),
];

/// The exit codes as the end of `--help`.
fn exit_codes_help() -> String {
    let mut text = String::from("Exit codes:");
    for (code, meaning) in EXIT_CODES {
        text.push_str(&format!("\n  {code}  {meaning}"));
    }
    text
}

/// Runs NICE CXone Data Actions to a final outcome and never loses one.
#[derive(Debug, Parser)]
#[command(name = "actionwarden", version = crate::version::LONG_VERSION, about, after_long_help = exit_codes_help())]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// `-c FILE`, shared by the commands that read a config.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// Config file (default: $ACTIONWARDEN_CONFIG, else ./config.toml).
    #[arg(
        short = 'c',
        long = "config",
        env = "ACTIONWARDEN_CONFIG",
        hide_env_values = true,
        default_value = "config.toml"
    )]
    pub config: PathBuf,
}

/// The subcommands.
// `Simulate` carries many knobs; the enum is built once per process, size is irrelevant.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (until SIGTERM/SIGINT, or with --once until every action is terminal).
    Run {
        /// Config file.
        #[command(flatten)]
        config: ConfigArg,
        /// Exit once every action has an outcome and every dead letter is delivered.
        #[arg(long)]
        once: bool,
        /// Log format (overrides [log] format).
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Validate the config and print the plan; contacts nothing.
    Check {
        /// Config file.
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show the journal: actions by batch and state, dead letters (works while a daemon runs).
    Status {
        /// Config file.
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one action with its history (works while a daemon runs).
    Show {
        /// Config file.
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The action, as BATCH/KEY.
        identity: String,
    },
    /// Journal maintenance.
    Journal {
        /// The journal command.
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// Dead letters: list them, replay them as fresh attempt series, or discard them.
    Dlq {
        /// The dlq command.
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Print shell completions (bash, zsh, fish, elvish or powershell) to stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
    /// Run the CXone simulator in the foreground.
    Simulate {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Profile of outcomes and faults drawn for actions without a `sim` directive.
        #[arg(long, value_enum)]
        profile: Option<Profile>,
        /// Seed of the profile's draws.
        #[arg(long)]
        seed: Option<u64>,
        /// Accepted client id.
        #[arg(long)]
        client_id: Option<String>,
        /// Env var holding the accepted client secret (default secret: simulator-secret).
        #[arg(long)]
        client_secret_env: Option<String>,
        /// Token lifetime, e.g. "1h" or "2s".
        #[arg(long)]
        token_ttl: Option<String>,
        /// Env var holding the webhook HMAC key (signatures checked when set).
        #[arg(long)]
        webhook_secret_env: Option<String>,
        /// Answer the first N webhook POSTs with 503.
        #[arg(long)]
        webhook_fail_first: Option<u32>,
        /// Share of submits answered with only the X-Action-Id header.
        #[arg(long)]
        header_only_rate: Option<f64>,
        /// Share of API requests answered 429.
        #[arg(long)]
        rate_limit_rate: Option<f64>,
        /// Share of API requests answered 503.
        #[arg(long)]
        server_error_rate: Option<f64>,
        /// Share of polls answered with a malformed body.
        #[arg(long)]
        malformed_rate: Option<f64>,
        /// Share of API requests whose connection is dropped.
        #[arg(long)]
        drop_rate: Option<f64>,
        /// Share of tokens rejected before their expiry.
        #[arg(long)]
        early_expiry_rate: Option<f64>,
        /// Latency added to each API response, e.g. "20ms".
        #[arg(long)]
        latency: Option<String>,
        /// Latency of the token endpoint, e.g. "300ms".
        #[arg(long)]
        token_latency: Option<String>,
        /// Form of Retry-After on 429s.
        #[arg(long, value_enum)]
        retry_after_form: Option<RetryAfterForm>,
        /// Retry-After value on 429s, in seconds.
        #[arg(long)]
        retry_after_secs: Option<u64>,
    },
}

/// `journal` subcommands.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Remove the bodies and histories of actions resolved before the retention (their
    /// outcome stays, so re-runs never resubmit them), and old delivered, replayed or
    /// discarded dead letters; on SQLite, return the space to the file system.
    Prune {
        /// Config file.
        #[command(flatten)]
        config: ConfigArg,
        /// Prune what is older than this, e.g. "30d" (default: `journal.retention`).
        #[arg(long)]
        older_than: Option<String>,
    },
}

/// `dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters with their delivery state.
    List {
        /// Config file.
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Start dead-lettered actions again (a running daemon picks them up within a second).
    Replay {
        /// Config file.
        #[command(flatten)]
        config: ConfigArg,
        /// Replay every dead letter not replayed yet.
        #[arg(long, conflicts_with = "error_ids")]
        all: bool,
        /// The `error_id`s to replay.
        #[arg(required_unless_present = "all")]
        error_ids: Vec<String>,
    },
    /// Give up dead letters: kept and listed as discarded, never delivered again (a
    /// running daemon stops delivering them within a second).
    Discard {
        /// Config file.
        #[command(flatten)]
        config: ConfigArg,
        /// The `error_id`s to discard.
        #[arg(required = true)]
        error_ids: Vec<String>,
    },
}
