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

/// Lets at most `burst` log lines of one kind through per `period` and counts the rest, so
/// that events a remote peer can cause at will (malformed datagrams, dropped connections)
/// cannot flood the log. Metrics still count every event; only the lines are thinned.
/// Sans-IO: the caller passes `now`.
#[derive(Debug)]
pub struct LogLimiter {
    period: std::time::Duration,
    burst: u32,
    state: std::sync::Mutex<LimiterState>,
}

#[derive(Debug, Default)]
struct LimiterState {
    window: Option<std::time::Instant>,
    in_window: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// `burst` lines per `period`.
    pub fn new(period: std::time::Duration, burst: u32) -> Self {
        LogLimiter {
            period,
            burst,
            state: std::sync::Mutex::new(LimiterState::default()),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being how many were suppressed since
    /// the last one written (to be logged with it); `None` when this one is suppressed.
    pub fn check(&self, now: std::time::Instant) -> Option<u64> {
        // A poisoned lock only means a logging call panicked; the counts are still usable.
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.window {
            Some(start) if now.saturating_duration_since(start) < self.period => {}
            _ => {
                s.window = Some(now);
                s.in_window = 0;
            }
        }
        if s.in_window < self.burst {
            s.in_window += 1;
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::LogLimiter;

    #[test]
    fn lines_beyond_the_burst_are_counted_and_reported_with_the_next_window() {
        let l = LogLimiter::new(Duration::from_secs(10), 3);
        let t0 = Instant::now();
        let got: Vec<_> = (0..1000)
            .map(|i| l.check(t0 + Duration::from_millis(i)))
            .collect();
        assert_eq!(got.iter().filter(|g| g.is_some()).count(), 3);
        assert_eq!(got[0], Some(0));
        // The next window's first line says how many were left out.
        assert_eq!(l.check(t0 + Duration::from_secs(11)), Some(997));
        assert_eq!(l.check(t0 + Duration::from_secs(11)), Some(0));
    }
}
