//! The control-plane role: the cluster's brain and the streamer economy.
//!
//! Data enters as REST calls from streamers, viewers and operators, and as registrations,
//! heartbeats and publish authorizations from origins and edges (all over HTTP); it leaves
//! as JSON answers and as rows in the database (SQLite embedded, PostgreSQL clustered).
//! Today the role serves its HTTP port with the operational endpoints; `/readyz` checks
//! that the node's data directory, where the embedded database lives, is writable.

#![forbid(unsafe_code)]

use axum::Router;
use potok_config::{Config, Role};
use potok_service::http::BindError;
use potok_service::ops::role_router;
use potok_service::{HttpLimits, ReadinessCheck, RoleContext, RoleServer};

/// Binds the control plane's HTTP API on `control_plane.listen`.
pub async fn bind(config: &Config, ctx: &RoleContext) -> Result<RoleServer, BindError> {
    let checks = vec![ReadinessCheck::writable_dir(
        "storage",
        config.node.data_dir.clone(),
    )];
    let router = role_router(Role::ControlPlane, Router::new(), checks, ctx);
    RoleServer::bind(
        Role::ControlPlane,
        "control_plane.listen",
        config.control_plane.listen,
        router,
        HttpLimits::from(&config.http),
    )
    .await
}
