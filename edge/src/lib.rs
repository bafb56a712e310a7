//! The edge role: the viewer-facing HTTP server near viewers.
//!
//! Data enters as viewers' HTTP requests for playlists and media and as the origins'
//! answers to this edge's pulls; it leaves as HTTP responses to viewers. The cache, request
//! coalescing, TLS and HTTP/3 arrive with the edge cache. Today the role serves its plain
//! HTTP port with the operational endpoints; `/readyz` is ready while at least one
//! configured origin answers its `/healthz`.

#![forbid(unsafe_code)]

mod upstream;

use axum::Router;
use potok_config::{Config, Role};
use potok_service::http::BindError;
use potok_service::ops::role_router;
use potok_service::{HttpLimits, RoleContext, RoleServer};

/// Binds the edge's plain HTTP listener on `edge.http_listen`. The configuration's
/// `edge.upstream.origins` must name at least one origin.
pub async fn bind(config: &Config, ctx: &RoleContext) -> Result<RoleServer, BindError> {
    let checks = vec![upstream::readiness(&config.edge.upstream)];
    let router = role_router(Role::Edge, Router::new(), checks, ctx);
    RoleServer::bind(
        Role::Edge,
        "edge.http_listen",
        config.edge.http_listen,
        router,
        HttpLimits::from(&config.http),
    )
    .await
}
