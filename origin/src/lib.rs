//! The origin role: where streams enter Potok and become LL-HLS.
//!
//! Data enters as streamers' RTMP/SRT pushes (the ingest listeners arrive with the media
//! core) and leaves as playlists, init segments, parts and segments on the origin HTTP API,
//! which edges pull over plain HTTP, and as finished segments written to object storage.
//! Today the role serves its HTTP API with the operational endpoints; `/readyz` checks that
//! the node's data directory (recordings, local object storage) is writable.

#![forbid(unsafe_code)]

use axum::Router;
use potok_config::{Config, Role};
use potok_service::http::BindError;
use potok_service::ops::role_router;
use potok_service::{HttpLimits, ReadinessCheck, RoleContext, RoleServer};

/// Binds the origin's HTTP API on `origin.http_listen`.
pub async fn bind(config: &Config, ctx: &RoleContext) -> Result<RoleServer, BindError> {
    let checks = vec![ReadinessCheck::writable_dir(
        "storage",
        config.node.data_dir.clone(),
    )];
    let router = role_router(Role::Origin, Router::new(), checks, ctx);
    RoleServer::bind(
        Role::Origin,
        "origin.http_listen",
        config.origin.http_listen,
        router,
        HttpLimits::from(&config.http),
    )
    .await
}
