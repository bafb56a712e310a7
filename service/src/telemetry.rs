//! Logging set-up: `tracing` to stderr as text or JSON lines. The filter comes from
//! `POTOK_LOG`, else `RUST_LOG`, else the configuration's `log.filter`.

use potok_config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, from the binary.
pub fn init(cfg: &LogConfig) -> Result<(), String> {
    let (source, directives) = match (std::env::var("POTOK_LOG"), std::env::var("RUST_LOG")) {
        (Ok(v), _) => ("POTOK_LOG", v),
        (_, Ok(v)) => ("RUST_LOG", v),
        _ => ("log.filter", cfg.filter.clone()),
    };
    let filter = EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| format!("{source}: not a valid filter ({e})"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match cfg.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    result.map_err(|e| format!("cannot install the log subscriber: {e}"))
}
