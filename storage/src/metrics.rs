//! Storage metrics: uploads by result, spool depth and bytes, store latency, retention.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts};

use potok_service::Metrics;

/// Metrics of one process's store and spool.
#[derive(Clone)]
pub struct StorageMetrics {
    /// Uploads by `result` (`ok`, `error`: retried later, `dropped`: past the spool's bound).
    pub uploads: IntCounterVec,
    /// Writes waiting in the spool.
    pub spool_depth: IntGauge,
    /// Bytes waiting in the spool.
    pub spool_bytes: IntGauge,
    /// Store request latency by `op`.
    pub latency: HistogramVec,
    /// Recordings and clips deleted by retention.
    pub retention_deletes: IntCounter,
}

impl StorageMetrics {
    /// Registers the metrics in `m`, labelled with the `role` using them (an all-in-one
    /// process has an origin's and an edge's store).
    pub fn new(m: &Metrics, role: &str) -> Self {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("role", role);
        let uploads = IntCounterVec::new(
            opts(
                "potok_storage_uploads_total",
                "Uploads to the object store by result (ok, error: retried later, dropped: past the spool's bound).",
            ),
            &["result"],
        )
        .unwrap_or_else(|e| unreachable!("static metric: {e}"));
        m.register(Box::new(uploads.clone()));
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::with_opts(opts(name, help))
                .unwrap_or_else(|e| unreachable!("static metric {name}: {e}"));
            m.register(Box::new(g.clone()));
            g
        };
        let spool_depth = gauge(
            "potok_storage_spool_depth",
            "Writes waiting in the local spool for the object store.",
        );
        let spool_bytes = gauge(
            "potok_storage_spool_bytes",
            "Bytes waiting in the local spool for the object store.",
        );
        let latency = HistogramVec::new(
            HistogramOpts::from(opts(
                "potok_storage_request_seconds",
                "Object store request latency by operation.",
            ))
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["op"],
        )
        .unwrap_or_else(|e| unreachable!("static metric: {e}"));
        m.register(Box::new(latency.clone()));
        let retention_deletes = IntCounter::with_opts(opts(
            "potok_storage_retention_deletes_total",
            "Recordings and clips deleted because their retention expired.",
        ))
        .unwrap_or_else(|e| unreachable!("static metric: {e}"));
        m.register(Box::new(retention_deletes.clone()));
        StorageMetrics {
            uploads,
            spool_depth,
            spool_bytes,
            latency,
            retention_deletes,
        }
    }

    /// Unregistered metrics, for a store used outside a role (tools, tests).
    pub fn detached() -> Self {
        StorageMetrics::new(&Metrics::new(), "none")
    }
}
