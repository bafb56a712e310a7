//! `potok`: parses the command line and dispatches to the library (`potok::commands`).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use potok::commands;
use potok_config::Role;

/// Potok: live streaming for game streamers. RTMP/SRT in, Low-Latency HLS out.
#[derive(Parser)]
#[command(name = "potok", version, about, long_about = None)]
struct Cli {
    /// Configuration file [default: config/potok.toml when present, else built-in defaults].
    /// Any field can be overridden with POTOK_SECTION__FIELD environment variables.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process (embedded defaults: SQLite, local storage).
    All {
        /// Also make a demo streamer through the API (account "demo", its stream key, an
        /// overlay token, a goal), publish a test pattern to it with ffmpeg and print the
        /// pages to open.
        #[arg(long)]
        demo: bool,
    },
    /// Run the origin role: ingest, packaging, origin HTTP API.
    Origin,
    /// Run the edge role: viewer-facing cache.
    Edge,
    /// Run the control-plane role: REST API, scheduling, accounts.
    ControlPlane,
    /// List the video encoders this machine can use for the ABR ladder, and why the
    /// others are unavailable (each is opened for real, hardware device first).
    Encoders,
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// The money ledger in the control plane's database.
    Ledger {
        #[command(subcommand)]
        action: LedgerAction,
    },
}

#[derive(Subcommand)]
enum LedgerAction {
    /// Prove every balance equals the sum of its entries, every posting sums to zero and
    /// every settled donation has its postings; prints the report as JSON, exits 1 when a
    /// check fails.
    Reconcile,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate FILE (plus POTOK_* overrides) and print the effective configuration with
    /// secrets redacted. Exits 64 naming each bad field.
    Check {
        /// The configuration file.
        file: PathBuf,
        /// The roles the file is meant for.
        #[arg(long, value_enum, default_value = "all")]
        role: RoleArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    All,
    Origin,
    Edge,
    ControlPlane,
}

impl RoleArg {
    fn roles(self) -> &'static [Role] {
        match self {
            RoleArg::All => &Role::ALL,
            RoleArg::Origin => &[Role::Origin],
            RoleArg::Edge => &[Role::Edge],
            RoleArg::ControlPlane => &[Role::ControlPlane],
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let usage_error = e.use_stderr();
            let _ = e.print();
            return if usage_error {
                ExitCode::from(commands::EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::All { demo } => commands::run_roles(cli.config, RoleArg::All.roles(), demo),
        Command::Origin => commands::run_roles(cli.config, RoleArg::Origin.roles(), false),
        Command::Edge => commands::run_roles(cli.config, RoleArg::Edge.roles(), false),
        Command::ControlPlane => {
            commands::run_roles(cli.config, RoleArg::ControlPlane.roles(), false)
        }
        Command::Encoders => commands::encoders(cli.config),
        Command::Config {
            action: ConfigAction::Check { file, role },
        } => commands::config_check(&file, role.roles()),
        Command::Ledger {
            action: LedgerAction::Reconcile,
        } => commands::ledger_reconcile(cli.config),
    }
}
