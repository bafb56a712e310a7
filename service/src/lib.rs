//! Process plumbing that every Potok role shares, so that each role crate holds only its own
//! protocol and domain logic.
//!
//! - [`http`]: an HTTP/1.1 + HTTP/2 listener with a connection cap taken before `accept`,
//!   header size and read-time limits, and graceful drain on shutdown.
//! - [`ops`]: the operational endpoints every role serves (`/healthz`, `/readyz`, `/metrics`)
//!   and per-request metrics.
//! - [`metrics`]: the one Prometheus registry of the process, shared by all roles it runs.
//! - [`telemetry`]: `tracing` set-up from configuration and `POTOK_LOG`/`RUST_LOG`.
//! - [`tls`]: certificates (PEM files or self-signed) and rustls configurations.
//!
//! Data enters as configuration, a bound listener and a role's `axum::Router`; it leaves as
//! HTTP responses, metrics and log lines. Shutdown is one [`CancellationToken`] handed to
//! every server; cancelling it stops accepting and starts the drain.
//!
//! This crate is not in the design's original layout: without it each role would carry its
//! own copy of the listener, health and metrics code. It depends on no role crate.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod http;
pub mod metrics;
pub mod ops;
pub mod telemetry;
pub mod tls;

pub use tokio_util::sync::CancellationToken;

pub use crate::http::{HttpLimits, RoleServer};
pub use crate::metrics::Metrics;
pub use crate::ops::{ReadinessCheck, RoleContext};

/// The version of this build, as reported by `--version`, `/healthz` and `potok_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
