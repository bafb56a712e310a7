//! The process's Prometheus registry. One [`Metrics`] is made per process and cloned into
//! every role, so `/metrics` on any role's port shows the whole process (in `potok all`,
//! one `potok_build_info` series per role).

use std::time::Duration;

use potok_config::Role;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The registry and the metrics every role records.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `metrics.token`: when set, every `/metrics` request must bear it.
    token: std::sync::Arc<std::sync::RwLock<Option<potok_config::Secret>>>,
    build_info: IntGaugeVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
}

impl Metrics {
    /// A fresh registry with process metrics (CPU, memory, file descriptors) and the
    /// build-info and HTTP metrics registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new(
                "potok_build_info",
                "Potok build and the roles this process runs; always 1.",
            ),
            &["version", "role"],
        )
        .unwrap_or_else(|e| unreachable!("static metric options are valid: {e}"));
        let http_requests = IntCounterVec::new(
            Opts::new(
                "potok_http_requests_total",
                "HTTP requests answered, by role, route and status code.",
            ),
            &["role", "route", "status"],
        )
        .unwrap_or_else(|e| unreachable!("static metric options are valid: {e}"));
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "potok_http_request_duration_seconds",
                "Time from request head to response head, by role and route.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["role", "route"],
        )
        .unwrap_or_else(|e| unreachable!("static metric options are valid: {e}"));

        let m = Metrics {
            registry,
            token: Default::default(),
            build_info,
            http_requests,
            http_duration,
        };
        m.register(Box::new(m.build_info.clone()));
        m.register(Box::new(m.http_requests.clone()));
        m.register(Box::new(m.http_duration.clone()));
        #[cfg(target_os = "linux")]
        m.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        m
    }

    /// The registry, for roles that register metrics of their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers a collector; a name registered twice is a programming error, logged and
    /// otherwise ignored so that metrics never take a node down.
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(c) {
            tracing::error!(error = %e, "metric registration failed");
        }
    }

    /// Registers and returns a gauge; `name` and `help` are static strings of the caller.
    pub fn int_gauge(&self, name: &str, help: &str) -> IntGauge {
        let g =
            IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("static metric {name}: {e}"));
        self.register(Box::new(g.clone()));
        g
    }

    /// Registers and returns a counter; `name` and `help` are static strings of the caller.
    pub fn int_counter(&self, name: &str, help: &str) -> IntCounter {
        let c = IntCounter::new(name, help)
            .unwrap_or_else(|e| unreachable!("static metric {name}: {e}"));
        self.register(Box::new(c.clone()));
        c
    }

    /// Requires `token` (`metrics.token`) on every `/metrics` request from now on; `None`:
    /// the roles' ports answer loopback clients only.
    pub fn set_token(&self, token: Option<potok_config::Secret>) {
        // A poisoned lock only means a writer panicked; the value is a plain Option.
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = token;
    }

    /// The token `/metrics` requests must bear, if one is configured.
    pub fn token(&self) -> Option<potok_config::Secret> {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Marks `role` as running in this process (`potok_build_info{role=...} 1`).
    pub fn add_role(&self, role: Role) {
        self.build_info
            .with_label_values(&[crate::VERSION, role.as_str()])
            .set(1);
    }

    /// Records one answered HTTP request.
    pub fn observe_http(&self, role: Role, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .with_label_values(&[role.as_str(), route, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[role.as_str(), route])
            .observe(elapsed.as_secs_f64());
    }

    /// Everything in the registry in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_has_one_series_per_role() {
        let m = Metrics::new();
        m.add_role(Role::Origin);
        m.add_role(Role::Edge);
        m.add_role(Role::Origin);
        let text = m.encode();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("potok_build_info{"))
            .collect();
        assert_eq!(series.len(), 2, "{text}");
        assert!(text.contains(&format!(
            "potok_build_info{{role=\"edge\",version=\"{}\"}} 1",
            crate::VERSION
        )));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_are_exported() {
        let text = Metrics::new().encode();
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        assert!(text.contains("process_open_fds"), "{text}");
    }
}
