//! The web face the control plane serves beside its API: the directory, watch pages, the
//! streamer dashboard, account pages and OBS overlay pages. Pages talk to the REST API
//! (`/api/v1`) and the real-time gateway (`/api/v1/realtime`) like any other client.

#![forbid(unsafe_code)]

use axum::Router;
use potok_config::Config;

/// The pages' routes, merged into the control plane's router (which keeps `/api/v1/*`,
/// `/healthz`, `/readyz` and `/metrics`).
pub fn router(_config: &Config) -> Router {
    Router::new()
}
