//! The origin's metrics, registered once in the process registry.

use potok_service::Metrics;
use prometheus::{IntCounter, IntGauge};

#[derive(Clone)]
pub(crate) struct OriginMetrics {
    pub(crate) publishers: IntGauge,
    pub(crate) ingest_connections: IntGauge,
    pub(crate) ingest_bytes: IntCounter,
    pub(crate) video_frames: IntCounter,
    pub(crate) audio_frames: IntCounter,
    pub(crate) refused_publishes: IntCounter,
    pub(crate) parts: IntCounter,
    pub(crate) segments: IntCounter,
    pub(crate) held_requests: IntGauge,
}

impl OriginMetrics {
    pub(crate) fn new(m: &Metrics) -> Self {
        OriginMetrics {
            publishers: m.int_gauge(
                "potok_origin_publishers",
                "Publishers currently sending media.",
            ),
            ingest_connections: m.int_gauge("potok_ingest_connections", "Open RTMP connections."),
            ingest_bytes: m.int_counter(
                "potok_ingest_bytes_total",
                "Audio and video payload bytes received from publishers.",
            ),
            video_frames: m.int_counter(
                "potok_ingest_video_frames_total",
                "Video frames received from publishers.",
            ),
            audio_frames: m.int_counter(
                "potok_ingest_audio_frames_total",
                "Audio frames received from publishers.",
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
        }
    }
}
