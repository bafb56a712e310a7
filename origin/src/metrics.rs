//! The origin's metrics, registered once in the process registry.

use potok_service::Metrics;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

#[derive(Clone)]
pub(crate) struct OriginMetrics {
    pub(crate) publishers: IntGauge,
    pub(crate) ingest_connections: IntGauge,
    pub(crate) ingest_bytes: IntCounterVec,
    pub(crate) frames: IntCounterVec,
    pub(crate) discontinuities: IntCounterVec,
    pub(crate) srt_lost: IntCounterVec,
    pub(crate) srt_retransmitted: IntCounterVec,
    pub(crate) srt_dropped: IntCounterVec,
    pub(crate) refused_publishes: IntCounter,
    pub(crate) parts: IntCounter,
    pub(crate) segments: IntCounter,
    pub(crate) held_requests: IntGauge,
    pub(crate) bytes_out: IntCounter,
}

impl OriginMetrics {
    pub(crate) fn new(m: &Metrics) -> Self {
        OriginMetrics {
            publishers: m.int_gauge(
                "potok_origin_publishers",
                "Publishers currently sending media.",
            ),
            ingest_connections: m.int_gauge("potok_ingest_connections", "Open RTMP connections."),
            ingest_bytes: vec(
                m,
                "potok_ingest_bytes_total",
                "Bytes received from publishers, by stream and protocol.",
                &["stream", "protocol"],
            ),
            frames: vec(
                m,
                "potok_ingest_frames_total",
                "Frames received from publishers, by stream and track.",
                &["stream", "track"],
            ),
            discontinuities: vec(
                m,
                "potok_ingest_discontinuities_total",
                "Breaks in a stream's input: publisher reconnects and lost MPEG-TS packets.",
                &["stream"],
            ),
            srt_lost: vec(
                m,
                "potok_srt_packets_lost_total",
                "SRT data packets reported lost by the receiver.",
                &["stream"],
            ),
            srt_retransmitted: vec(
                m,
                "potok_srt_packets_retransmitted_total",
                "SRT data packets received again after a loss.",
                &["stream"],
            ),
            srt_dropped: vec(
                m,
                "potok_srt_packets_dropped_total",
                "SRT data packets dropped as too late.",
                &["stream"],
            ),
            refused_publishes: m.int_counter(
                "potok_ingest_refused_total",
                "Publish attempts refused (unknown key, stream already live).",
            ),
            parts: m.int_counter("potok_hls_parts_total", "LL-HLS parts produced."),
            segments: m.int_counter("potok_hls_segments_total", "LL-HLS segments completed."),
            held_requests: m.int_gauge(
                "potok_hls_held_requests",
                "Playlist and part requests held waiting for media.",
            ),
            bytes_out: m.int_counter(
                "potok_origin_bytes_out_total",
                "Playlist and media body bytes the origin API served.",
            ),
        }
    }
}

fn vec(m: &Metrics, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("static metric {name}: {e}"));
    m.register(Box::new(v.clone()));
    v
}
