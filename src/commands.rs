//! What each CLI command does, with its exit code. Exit codes follow sysexits: 64 for a bad
//! command line or configuration, 1 when a role cannot start, 128+N after a second signal N.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use potok_config::{Config, ConfigError, Role};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::App;

/// Exit code for a bad command line or configuration (`EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

/// The configuration file used when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG: &str = "config/potok.toml";

/// Which file to read: the one asked for, else `config/potok.toml` when present, else none
/// (built-in defaults).
pub fn config_path(asked: Option<PathBuf>) -> Option<PathBuf> {
    asked.or_else(|| {
        let p = PathBuf::from(DEFAULT_CONFIG);
        p.is_file().then_some(p)
    })
}

fn load(path: Option<&Path>, roles: &[Role]) -> Result<Config, ConfigError> {
    potok_config::load(path, std::env::vars(), roles)
}

fn report_config_error(path: Option<&Path>, e: &ConfigError) {
    let source = path.map_or_else(
        || "built-in defaults".to_owned(),
        |p| p.display().to_string(),
    );
    eprintln!("potok: invalid configuration ({source}):");
    for line in e.to_string().lines() {
        eprintln!("  {line}");
    }
}

/// `potok config check FILE`: validates `file` (plus `POTOK_*` overrides) for `roles` and
/// prints the effective configuration with secrets redacted.
#[allow(clippy::print_stdout)] // the effective configuration is this command's output
pub fn config_check(file: &Path, roles: &[Role]) -> ExitCode {
    match load(Some(file), roles) {
        Ok(config) => {
            print!("{}", config.to_redacted_toml());
            for w in config.warnings(roles) {
                eprintln!("potok: warning: {}: {}", w.path, w.message);
            }
            eprintln!("potok: {} is valid", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            report_config_error(Some(file), &e);
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// `potok encoders`: which video encoders this machine can use for the ABR ladder, each
/// opened for real (its hardware device first), and what `origin.transcode.encoder = "auto"`
/// would choose. The preset and tune come from the configuration.
#[allow(clippy::print_stdout)] // the list is this command's output
pub fn encoders(config: Option<PathBuf>) -> ExitCode {
    let config = match load(config_path(config).as_deref(), &[Role::Origin]) {
        Ok(c) => c,
        Err(e) => {
            report_config_error(None, &e);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let t = &config.origin.transcode;
    let settings = potok_transcoder::EncoderSettings {
        preset: t.preset.clone(),
        tune: t.tune.clone(),
        threads: t.threads,
    };
    for probe in potok_transcoder::encoders::probe_all(&settings) {
        println!("{probe}");
    }
    match potok_transcoder::encoders::choose("auto", &settings) {
        Ok(choice) => println!("auto -> {}", choice.encoder.name),
        Err(e) => println!("auto -> none: {e}"),
    }
    match potok_transcoder::encoders::choose(&t.encoder, &settings) {
        Ok(choice) => {
            println!(
                "configured (origin.transcode.encoder = {:?}) -> {}",
                t.encoder, choice.encoder.name
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!(
                "configured (origin.transcode.encoder = {:?}) -> {e}",
                t.encoder
            );
            ExitCode::FAILURE
        }
    }
}

/// `potok ledger reconcile`: opens the control plane's database (as configured) and proves
/// every balance from the ledger's entries.
#[allow(clippy::print_stdout)] // the report is this command's output
pub fn ledger_reconcile(config: Option<PathBuf>) -> ExitCode {
    let config = match load(config_path(config).as_deref(), &[Role::ControlPlane]) {
        Ok(c) => c,
        Err(e) => {
            report_config_error(None, &e);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("potok: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let url = potok_control_plane::database_url(&config);
        let db = match potok_control_plane::db::Db::open(&url, 2).await {
            Ok(db) => db,
            Err(e) => {
                eprintln!("potok: control_plane.database.url: {e}");
                return ExitCode::FAILURE;
            }
        };
        match potok_control_plane::payments::ledger::reconcile(&db).await {
            Ok(r) => {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                if r.ok() {
                    ExitCode::SUCCESS
                } else {
                    eprintln!("potok: the ledger does not reconcile");
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("potok: {}", e.message);
                ExitCode::FAILURE
            }
        }
    })
}

/// `potok all|origin|edge|control-plane`: runs `roles` until SIGINT/SIGTERM, drains within
/// `shutdown.drain_timeout`, exits 0; a second signal exits at once.
pub fn run_roles(config: Option<PathBuf>, roles: &[Role], demo: bool) -> ExitCode {
    let path = config_path(config);
    let config = match load(path.as_deref(), roles) {
        Ok(c) => c,
        Err(e) => {
            report_config_error(path.as_deref(), &e);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(e) = potok_service::telemetry::init(&config.log) {
        eprintln!("potok: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("potok: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve(config, path, roles, demo));
    // Connections still open after the drain deadline are abandoned, not awaited.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

#[allow(clippy::print_stdout)] // the banner is for the person who started the process
async fn serve(config: Config, path: Option<PathBuf>, roles: &[Role], demo: bool) -> ExitCode {
    let (mut sigint, mut sigterm) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let drain = config.shutdown.drain_timeout.get();
    let source = path.map_or_else(
        || "built-in defaults".to_owned(),
        |p| p.display().to_string(),
    );
    for w in config.warnings(roles) {
        warn!(field = %w.path, "{}", w.message);
    }
    let app = match App::bind_with(config, roles, !demo).await {
        Ok(app) => app,
        Err(e) => {
            error!("cannot start: {e:#}");
            eprintln!("potok: cannot start: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    info!(config = %source, "started");
    print!("{}", app.banner());
    let shutdown = app.shutdown_token();
    let demo = demo.then(|| {
        (
            app.addr(Role::ControlPlane),
            app.listener(Role::Origin, "rtmp"),
            app.config().node.data_dir.clone(),
            app.config().node.public_host.clone(),
        )
    });
    let mut running = tokio::spawn(app.run());
    if let Some((Some(cp), Some(rtmp), data_dir, host)) = demo {
        match crate::demo::seed(cp, &data_dir).await {
            Ok(d) => {
                info!(
                    channel = crate::demo::CHANNEL,
                    "demo streamer ready; publishing"
                );
                print!("{}", crate::demo::banner(&d, cp, &host));
                tokio::spawn(crate::demo::publish(rtmp, d.key, shutdown.clone()));
            }
            Err(e) => {
                error!("demo not started: {e:#}");
                eprintln!("potok: demo not started: {e:#}");
            }
        }
    }

    let first = tokio::select! {
        _ = &mut running => {
            error!("servers stopped without a shutdown request");
            return ExitCode::FAILURE;
        }
        _ = sigint.recv() => "SIGINT",
        _ = sigterm.recv() => "SIGTERM",
    };
    info!(signal = first, drain_timeout = ?drain, "shutting down: no new connections, draining (signal again to exit now)");
    shutdown.cancel();
    tokio::select! {
        r = tokio::time::timeout(drain, &mut running) => {
            match r {
                Ok(_) => info!("drained; exiting"),
                Err(_) => warn!(drain_timeout = ?drain, "drain deadline passed with connections still open; exiting"),
            }
            ExitCode::SUCCESS
        }
        _ = sigint.recv() => {
            warn!(signal = "SIGINT", "second signal: exiting now");
            ExitCode::from(128 + 2)
        }
        _ = sigterm.recv() => {
            warn!(signal = "SIGTERM", "second signal: exiting now");
            ExitCode::from(128 + 15)
        }
    }
}
