//! Logging set-up: `tracing` to stderr as text or JSON lines. The filter comes from
//! `POTOK_LOG`, else `RUST_LOG`, else the configuration's `log.filter`.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use potok_config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

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
    subscriber(filter, cfg.format, std::io::stderr)
        .try_init()
        .map_err(|e| format!("cannot install the log subscriber: {e}"))
}

/// Targets of libraries that log a warning per packet a remote peer sends (the SRT
/// library warns for every malformed or unexpected datagram, whose source is spoofable).
const NOISY_TARGETS: &[&str] = &["srt_protocol", "srt_tokio"];

/// At most 10 warnings per 10 s from [`NOISY_TARGETS`] reach the log; the SRT listener's
/// own counters (`potok_srt_malformed_datagrams_total`) still count every datagram.
static NOISY: LazyLock<LogLimiter> = LazyLock::new(|| LogLimiter::new(Duration::from_secs(10), 10));

/// A per-layer filter that thins warnings and errors of [`NOISY_TARGETS`] through a limiter.
/// Decided per event (`Interest::sometimes`): the `log` bridge routes every SRT line
/// through a few shared callsites, so a cached per-callsite answer would not do.
struct Thinning {
    limiter: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl Thinning {
    fn may_thin(meta: &tracing::Metadata<'_>) -> bool {
        meta.is_event() && *meta.level() <= tracing::Level::WARN
    }
}

impl<S> tracing_subscriber::layer::Filter<S> for Thinning {
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        if !Self::may_thin(meta) || !NOISY_TARGETS.iter().any(|t| meta.target().starts_with(t)) {
            return true;
        }
        (self.limiter)()
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if Self::may_thin(meta) {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::always()
        }
    }
}

/// The subscriber `init` installs, writing to `writer` (tests capture it).
fn subscriber<W>(
    filter: EnvFilter,
    format: LogFormat,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    subscriber_with(
        filter,
        format,
        writer,
        Arc::new(|| NOISY.check(std::time::Instant::now()).is_some()),
    )
}

fn subscriber_with<W>(
    filter: EnvFilter,
    format: LogFormat,
    writer: W,
    limiter: Arc<dyn Fn() -> bool + Send + Sync>,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (text, json): (Option<Filtered<_, _, _>>, Option<Filtered<_, _, _>>) = match format {
        LogFormat::Text => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_filter(Thinning { limiter }),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(writer)
                    .with_filter(Thinning { limiter }),
            ),
        ),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
}

/// Lets at most `burst` log lines of one kind through per `period` and counts the rest, so
/// that events a remote peer can cause at will (malformed datagrams, dropped connections)
/// cannot flood the log. Metrics still count every event; only the lines are thinned.
/// Sans-IO: the caller passes `now`.
#[derive(Debug)]
pub struct LogLimiter {
    period: Duration,
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
    pub fn new(period: Duration, burst: u32) -> Self {
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
    fn warnings_from_the_srt_library_are_thinned_and_others_are_not() {
        use std::sync::{Arc, Mutex};

        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = {
            let buf = buf.clone();
            move || buf.clone()
        };
        let limiter = Arc::new(LogLimiter::new(Duration::from_secs(3600), 10));
        let sub = super::subscriber_with(
            tracing_subscriber::EnvFilter::new("info"),
            potok_config::LogFormat::Text,
            writer,
            Arc::new(move || limiter.check(Instant::now()).is_some()),
        );
        tracing::subscriber::with_default(sub, || {
            for _ in 0..500 {
                tracing::warn!(target: "srt_protocol::listener", "packet - Parse(garbage)");
            }
            for _ in 0..30 {
                tracing::warn!(target: "potok_origin::srt", "our own warning");
            }
        });
        let text = String::from_utf8(buf.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default();
        assert_eq!(text.matches("Parse(garbage)").count(), 10, "{text}");
        assert_eq!(text.matches("our own warning").count(), 30);
    }

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
