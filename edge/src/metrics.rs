//! The edge's metrics.

use potok_service::Metrics;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts};

#[derive(Clone)]
pub(crate) struct EdgeMetrics {
    pub(crate) requests: IntCounterVec,
    pub(crate) bytes_out: IntCounter,
    pub(crate) upstream: IntCounterVec,
    pub(crate) upstream_seconds: Histogram,
    pub(crate) coalesced: IntCounter,
    pub(crate) held: IntGauge,
    pub(crate) cache_bytes: IntGauge,
    pub(crate) cache_items: IntGauge,
    pub(crate) fallback_hits: IntCounter,
}

impl EdgeMetrics {
    pub(crate) fn new(m: &Metrics) -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "potok_edge_requests_total",
                "Viewer requests by protocol, object class, status and cache result.",
            ),
            &["proto", "class", "status", "cache"],
        )
        .unwrap_or_else(|e| unreachable!("static metric: {e}"));
        m.register(Box::new(requests.clone()));
        let upstream = IntCounterVec::new(
            Opts::new(
                "potok_edge_upstream_requests_total",
                "Requests sent to origins by object class and result.",
            ),
            &["class", "result"],
        )
        .unwrap_or_else(|e| unreachable!("static metric: {e}"));
        m.register(Box::new(upstream.clone()));
        let upstream_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "potok_edge_upstream_seconds",
                "Time origins took to answer (including held requests).",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .unwrap_or_else(|e| unreachable!("static metric: {e}"));
        m.register(Box::new(upstream_seconds.clone()));
        EdgeMetrics {
            requests,
            bytes_out: m.int_counter(
                "potok_edge_bytes_out_total",
                "Response body bytes sent to viewers.",
            ),
            upstream,
            upstream_seconds,
            coalesced: m.int_counter(
                "potok_edge_coalesced_total",
                "Requests answered by another request's upstream fetch.",
            ),
            held: m.int_gauge(
                "potok_edge_held_requests",
                "Viewer requests waiting for an upstream answer.",
            ),
            cache_bytes: m.int_gauge("potok_edge_cache_bytes", "Bytes held in the cache."),
            cache_items: m.int_gauge("potok_edge_cache_items", "Objects held in the cache."),
            fallback_hits: m.int_counter(
                "potok_edge_fallback_hits_total",
                "Objects served from the object store after the origin had none.",
            ),
        }
    }
}
