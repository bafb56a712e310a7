//! Control-plane metrics.

use potok_service::Metrics;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};

#[derive(Clone)]
pub(crate) struct CpMetrics {
    pub(crate) nodes: IntGaugeVec,
    pub(crate) scheduling: IntCounterVec,
    pub(crate) publish: IntCounterVec,
    pub(crate) logins: IntCounterVec,
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
                    opts("potok_cp_logins_total", "Password logins by result: ok, failed, rate_limited."),
                    &["result"],
                )
                .unwrap_or_else(|e| unreachable!("static metric: {e}")),
            ),
        }
    }
}
