//! Control-plane metrics.

use potok_service::Metrics;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

#[derive(Clone)]
pub(crate) struct CpMetrics {
    pub(crate) nodes: IntGaugeVec,
    pub(crate) scheduling: IntCounterVec,
    pub(crate) publish: IntCounterVec,
    pub(crate) logins: IntCounterVec,
    pub(crate) chat_messages: IntCounterVec,
    pub(crate) realtime_connections: IntGauge,
    pub(crate) realtime_delivered: IntCounter,
    pub(crate) realtime_slow: IntCounter,
    pub(crate) realtime_refused: IntCounterVec,
    pub(crate) realtime_fanout_seconds: Histogram,
    pub(crate) donations: IntCounterVec,
    pub(crate) webhooks: IntCounterVec,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(m: &Metrics, c: C) -> C {
    m.register(Box::new(c.clone()));
    c
}

impl CpMetrics {
    pub(crate) fn new(m: &Metrics) -> Self {
        let opts = |name: &str, help: &str| Opts::new(name, help);
        CpMetrics {
            nodes: register(
                m,
                IntGaugeVec::new(
                    opts("potok_cp_nodes", "Registered nodes by role and state (alive, dead)."),
                    &["role", "state"],
                )
                .unwrap_or_else(|e| unreachable!("static metric: {e}")),
            ),
            scheduling: register(
                m,
                IntCounterVec::new(
                    opts(
                        "potok_cp_scheduling_decisions_total",
                        "Ingest requests by outcome: same_origin, least_loaded, no_origin.",
                    ),
                    &["result"],
                )
                .unwrap_or_else(|e| unreachable!("static metric: {e}")),
            ),
            publish: register(
                m,
                IntCounterVec::new(
                    opts(
                        "potok_cp_publish_authorizations_total",
                        "Publish authorizations by result: granted, bad_key, rate_limited, already_live, at_capacity.",
                    ),
                    &["result"],
                )
                .unwrap_or_else(|e| unreachable!("static metric: {e}")),
            ),
            logins: register(
                m,
                IntCounterVec::new(
                    opts("potok_cp_logins_total", "Password logins by result: ok, failed, rate_limited, busy."),
                    &["result"],
                )
                .unwrap_or_else(|e| unreachable!("static metric: {e}")),
            ),
            chat_messages: register(
                m,
                IntCounterVec::new(
                    opts(
                        "potok_chat_messages_total",
                        "Chat messages sent, by result: accepted, or the refusal's error code (message_blocked, rate_limited, user_banned, ...).",
                    ),
                    &["result"],
                )
                .unwrap_or_else(|e| unreachable!("static metric: {e}")),
            ),
            realtime_connections: register(
                m,
                IntGauge::with_opts(opts("potok_realtime_connections", "Open WebSocket connections."))
                    .unwrap_or_else(|e| unreachable!("static metric: {e}")),
            ),
            realtime_delivered: register(
                m,
                IntCounter::with_opts(opts(
                    "potok_realtime_deliveries_total",
                    "Events queued to WebSocket connections.",
                ))
                .unwrap_or_else(|e| unreachable!("static metric: {e}")),
            ),
            realtime_slow: register(
                m,
                IntCounter::with_opts(opts(
                    "potok_realtime_slow_consumers_total",
                    "Connections cut off because their send queue was full.",
                ))
                .unwrap_or_else(|e| unreachable!("static metric: {e}")),
            ),
            realtime_refused: register(
                m,
                IntCounterVec::new(
                    opts(
                        "potok_realtime_frames_refused_total",
                        "Client frames refused, by reason: bad_frame, flood.",
                    ),
                    &["reason"],
                )
                .unwrap_or_else(|e| unreachable!("static metric: {e}")),
            ),
            realtime_fanout_seconds: register(
                m,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "potok_realtime_fanout_seconds",
                        "Time to queue one event to every connection of a room on this replica.",
                    )
                    .buckets(vec![0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1]),
                )
                .unwrap_or_else(|e| unreachable!("static metric: {e}")),
            ),
            donations: register(
                m,
                IntCounterVec::new(
                    opts(
                        "potok_payments_donations_total",
                        "Donation transitions by result (started, completed, failed, refunded, charged_back, mismatch, payment_failed).",
                    ),
                    &["result"],
                )
                .unwrap_or_else(|e| unreachable!("static metric: {e}")),
            ),
            webhooks: register(
                m,
                IntCounterVec::new(
                    opts(
                        "potok_payments_notifications_total",
                        "Payment provider notifications by result (credited, failed, refunded, unchanged, ignored, mismatch, forbidden, retry).",
                    ),
                    &["result"],
                )
                .unwrap_or_else(|e| unreachable!("static metric: {e}")),
            ),
        }
    }
}
