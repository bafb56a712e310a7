//! SRT ingest: callers publish MPEG-TS over SRT. The stream key comes from the `streamid`,
//! plain (`live/KEY`) or in the SRT Access Control form (`#!::r=live/KEY,m=publish`); an
//! unknown key, a request to play, or a stream already live is rejected during the
//! handshake. With `origin.srt.passphrase` every caller must encrypt with it (AES).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use potok_config::Secret;
use potok_media::frame::CodecConfig;
use potok_media::ts::{TsDemuxer, TsEvent};
use srt_protocol::settings::KeySettings;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::options::Passphrase;
use srt_tokio::{ConnectionRequest, SrtIncoming, SrtListener};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::auth::{AuthError, Request};
use crate::rtmp::Ingest;

/// What a `streamid` asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StreamRequest {
    pub(crate) app: String,
    pub(crate) key: String,
    pub(crate) publish: bool,
}

/// Parses `live/KEY` or `#!::r=live/KEY,m=publish` (keys in any order; `m` defaults to
/// publish for the plain form and to request for the access-control form, as the SRT
/// access-control guidelines say).
pub(crate) fn parse_stream_id(id: &str) -> Option<StreamRequest> {
    let (resource, publish) = if let Some(list) = id.strip_prefix("#!::") {
        let mut resource = None;
        let mut mode = None;
        for pair in list.split(',') {
            let (k, v) = pair.split_once('=')?;
            match k {
                "r" => resource = Some(v),
                "m" => mode = Some(v),
                _ => {}
            }
        }
        (resource?, mode == Some("publish"))
    } else {
        (id, true)
    };
    let (app, key) = resource.trim_start_matches('/').split_once('/')?;
    let key = key.split('?').next().unwrap_or_default();
    if key.is_empty() || key.contains('/') {
        return None;
    }
    Some(StreamRequest {
        app: app.to_owned(),
        key: key.to_owned(),
        publish,
    })
}

/// Binds the SRT listener; returns it with its bound address (port 0 picks one).
pub(crate) async fn bind(
    addr: std::net::SocketAddr,
    latency: Duration,
) -> std::io::Result<(SrtListener, SrtIncoming, std::net::SocketAddr)> {
    let socket = tokio::net::UdpSocket::bind(addr).await?;
    let local = socket.local_addr()?;
    let (listener, incoming) = SrtListener::builder()
        .latency(latency)
        .socket(socket)
        .bind(local)
        .await?;
    Ok((listener, incoming, local))
}

pub(crate) async fn serve(
    mut listener: SrtListener,
    mut incoming: SrtIncoming,
    ingest: Arc<Ingest>,
    passphrase: Option<Secret>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(ingest.max_connections));
    // The listener's own counters: datagrams that are not SRT (spoofable, so the SRT
    // library's per-datagram warnings are thinned in the log; this count stays exact).
    let mut stats = listener.statistics().clone();
    let mut malformed_seen = 0u64;
    loop {
        let request = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(s) = stats.next() => {
                ingest
                    .srt_malformed
                    .inc_by(s.rx_parse_errors.saturating_sub(malformed_seen));
                malformed_seen = malformed_seen.max(s.rx_parse_errors);
                continue;
            }
            r = incoming.incoming().next() => match r { Some(r) => r, None => break },
        };
        let peer = request.remote();
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            let _ = request
                .reject(RejectReason::Server(ServerRejectReason::Overload))
                .await;
            continue;
        };
        let ingest = Arc::clone(&ingest);
        let passphrase = passphrase.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(
            async move {
                ingest.metrics.ingest_connections.inc();
                if let Err(e) = caller(request, &ingest, passphrase, shutdown).await {
                    // Any caller can fail at will: at most 20 lines per 10 s.
                    static LINES: std::sync::LazyLock<potok_service::telemetry::LogLimiter> =
                        std::sync::LazyLock::new(|| {
                            potok_service::telemetry::LogLimiter::new(Duration::from_secs(10), 20)
                        });
                    if let Some(suppressed) = LINES.check(std::time::Instant::now()) {
                        warn!(error = %e, suppressed, "SRT caller closed");
                    }
                }
                ingest.metrics.ingest_connections.dec();
                drop(permit);
            }
            .instrument(info_span!("srt", %peer)),
        );
    }
    listener.close().await;
    info!("SRT listener stopped");
}

async fn caller(
    request: ConnectionRequest,
    ingest: &Ingest,
    passphrase: Option<Secret>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let Some(wanted) = request.stream_id().and_then(|id| parse_stream_id(id)) else {
        ingest.metrics.refused_publishes.inc();
        let _ = request
            .reject(RejectReason::Server(ServerRejectReason::BadRequest))
            .await;
        return Err("streamid is not live/KEY or #!::r=live/KEY,m=publish".into());
    };
    if !wanted.publish {
        let _ = request
            .reject(RejectReason::Server(ServerRejectReason::BadMode))
            .await;
        return Err("playback over SRT is not offered".into());
    }
    let authorized = ingest
        .authorize(Request {
            app: &wanted.app,
            key: &wanted.key,
            protocol: "srt",
            client: Some(request.remote().ip()),
        })
        .await;
    let grant = match authorized {
        Ok(grant) => grant,
        Err(e) => {
            ingest.metrics.refused_publishes.inc();
            let reason = match e {
                AuthError::UnknownKey | AuthError::Reserved => ServerRejectReason::Forbidden,
                AuthError::UnknownApp(_) => ServerRejectReason::Notfound,
                AuthError::AlreadyLive => ServerRejectReason::Conflict,
                AuthError::RateLimited | AuthError::AtCapacity => ServerRejectReason::Overload,
                AuthError::Unavailable(_) => ServerRejectReason::Down,
            };
            let _ = request.reject(RejectReason::Server(reason)).await;
            return Err(format!("publish refused: {e}"));
        }
    };
    let name = grant.name.clone();
    let mut session = match ingest.streams.start_publish(&grant, "srt") {
        Ok(s) => s,
        Err(e) => {
            ingest.metrics.refused_publishes.inc();
            let _ = request
                .reject(RejectReason::Server(ServerRejectReason::Conflict))
                .await;
            return Err(e.to_string());
        }
    };
    let key_settings = match ingest.srt_passphrases.get(&name).or(passphrase.as_ref()) {
        Some(p) => Some(KeySettings {
            key_size: request.key_size(),
            passphrase: Passphrase::try_from(p.expose().to_owned())
                .map_err(|e| format!("origin.srt.passphrase: {e}"))?,
        }),
        None => None,
    };
    let mut socket = request
        .accept(key_settings)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    info!(stream = %session.name(), "publishing over SRT");
    let mut demux = TsDemuxer::new();
    // MPEG-TS muxers gather several audio frames per PES, so the first audio arrives after
    // the first video frames. When the PMT announces audio, hold the start (bounded) until
    // its configuration is known, so the init segment has both tracks.
    let mut held: Vec<TsEvent> = Vec::new();
    let mut started = false;
    let mut link = LinkStats::default();
    let mut window = RateWindow::new();
    let mut statistics = socket.statistics().clone();
    let kicked = session.kicked();
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => break,
            () = kicked.cancelled() => {
                info!("publisher disconnected: the stream was stopped");
                break;
            }
            Some(stats) = statistics.next() => {
                link.update(&session, &stats);
                continue;
            }
            n = tokio::time::timeout(ingest.timeout, socket.next()) => n,
        };
        let data = match next {
            Err(_) => return Err(format!("no data for {:?}", ingest.timeout)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(Some(Ok((_, data)))) => data,
        };
        session.count_bytes(data.len());
        if window.add(data.len(), ingest.srt_max_bps) {
            return Err(format!(
                "input above origin.srt.max_bitrate_kbps ({} kbit/s)",
                ingest.srt_max_bps / 1000
            ));
        }
        let cc_before = demux.stats().cc_errors;
        let events = demux.push(&data);
        let lost = demux.stats().cc_errors - cc_before;
        if lost > 0 {
            session
                .metrics()
                .discontinuities
                .with_label_values(&[session.name()])
                .inc_by(lost);
        }
        if started {
            apply(&mut session, events);
            continue;
        }
        held.extend(events);
        let has_audio_config = held
            .iter()
            .any(|e| matches!(e, TsEvent::Config(CodecConfig::Aac(_))));
        if !demux.has_audio() || has_audio_config || held.len() > MAX_HELD_EVENTS {
            // Configurations first, then the frames in their order.
            let (configs, frames): (Vec<TsEvent>, Vec<TsEvent>) = held
                .drain(..)
                .partition(|e| matches!(e, TsEvent::Config(_)));
            apply(&mut session, configs);
            apply(&mut session, frames);
            started = true;
        }
    }
    for event in demux.finish() {
        if let TsEvent::Frame(f) = event {
            session.frame(f);
        }
    }
    debug!(stats = ?demux.stats(), "SRT caller finished");
    Ok(())
}

/// Input bytes over consecutive 5-second windows.
struct RateWindow {
    start: tokio::time::Instant,
    bytes: u64,
}

impl RateWindow {
    const SPAN: Duration = Duration::from_secs(5);

    fn new() -> Self {
        RateWindow {
            start: tokio::time::Instant::now(),
            bytes: 0,
        }
    }

    /// Adds `n` bytes; true when the window that just closed averaged above `max_bps`.
    fn add(&mut self, n: usize, max_bps: u64) -> bool {
        self.bytes += n as u64;
        let elapsed = self.start.elapsed();
        if elapsed < Self::SPAN {
            return false;
        }
        let bps = self.bytes * 8 * 1000 / (elapsed.as_millis().max(1) as u64);
        self.start = tokio::time::Instant::now();
        self.bytes = 0;
        bps > max_bps
    }
}

/// SRT link counters seen so far on one connection, to export their increases.
#[derive(Default)]
struct LinkStats {
    lost: u64,
    retransmitted: u64,
    dropped: u64,
}

impl LinkStats {
    fn update(
        &mut self,
        session: &crate::streams::PublishSession,
        s: &srt_protocol::statistics::SocketStatistics,
    ) {
        let m = session.metrics();
        let name = [session.name()];
        m.srt_lost
            .with_label_values(&name)
            .inc_by(s.rx_loss_data.saturating_sub(self.lost));
        m.srt_retransmitted
            .with_label_values(&name)
            .inc_by(s.rx_retransmit_data.saturating_sub(self.retransmitted));
        m.srt_dropped
            .with_label_values(&name)
            .inc_by(s.rx_dropped_data.saturating_sub(self.dropped));
        self.lost = self.lost.max(s.rx_loss_data);
        self.retransmitted = self.retransmitted.max(s.rx_retransmit_data);
        self.dropped = self.dropped.max(s.rx_dropped_data);
    }
}

/// Events held at most while waiting for the audio configuration (a few seconds of media).
const MAX_HELD_EVENTS: usize = 600;

fn apply(session: &mut crate::streams::PublishSession, events: Vec<TsEvent>) {
    for event in events {
        match event {
            TsEvent::Config(c) => session.config(c),
            TsEvent::Frame(f) => session.frame(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids() {
        let plain = parse_stream_id("live/abc123").unwrap();
        assert_eq!(
            (plain.app.as_str(), plain.key.as_str(), plain.publish),
            ("live", "abc123", true)
        );
        let ac = parse_stream_id("#!::r=live/abc123,m=publish").unwrap();
        assert_eq!((ac.key.as_str(), ac.publish), ("abc123", true));
        let ac2 = parse_stream_id("#!::m=publish,u=bob,r=/live/abc123").unwrap();
        assert_eq!(ac2.key, "abc123");
        assert!(
            !parse_stream_id("#!::r=live/abc123").unwrap().publish,
            "m defaults to request"
        );
        for bad in ["", "abc", "live/", "live/a/b", "#!::m=publish", "#!::r"] {
            assert!(parse_stream_id(bad).is_none(), "{bad}");
        }
    }
}
