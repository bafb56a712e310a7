//! The edge role: the viewer-facing HTTP server near viewers.
//!
//! Data enters as viewers' requests for `/live/...` playlists and media and as origins'
//! answers to this edge's pulls; it leaves as responses from a byte-bounded cache. Requests
//! for the same missing object — including blocking playlist reloads and preload-hinted
//! parts — share one upstream request ([`proxy`]); which origin serves a stream comes from a
//! [`upstream::Resolver`]; segments an origin no longer holds come from the object store
//! ([`fallback`]); private streams need signed URLs ([`signing`]). `/readyz` is ready while
//! at least one configured origin answers its `/healthz`.

#![forbid(unsafe_code)]

mod fallback;
mod metrics;
pub mod object;
mod proxy;
pub mod signing;
pub mod upstream;

use std::sync::Arc;

use axum::Router;
use axum::http::Method;
use axum::routing::get;
use object_store::local::LocalFileSystem;
use potok_config::{Config, Role};
use potok_service::http::BindError;
use potok_service::ops::role_router;
use potok_service::{HttpLimits, RoleContext, RoleServer};
use tower_http::cors::{Any, CorsLayer};
use tracing::warn;

use crate::upstream::{StaticOrigins, Upstream};

/// Binds the edge's plain HTTP listener on `edge.http_listen`. The configuration's
/// `edge.upstream.origins` must name at least one origin.
pub async fn bind(config: &Config, ctx: &RoleContext) -> Result<RoleServer, BindError> {
    let e = &config.edge;
    let resolver = Arc::new(StaticOrigins(e.upstream.origins.clone()));
    let upstream = Upstream::new(&e.upstream, resolver);
    let fallback = e.archive_path.as_ref().and_then(|path| match LocalFileSystem::new_with_prefix(path) {
        Ok(store) => Some(fallback::Fallback::new(Arc::new(store))),
        Err(err) => {
            warn!(path = %path.display(), error = %err, "edge.archive_path unusable: no object-store fallback");
            None
        }
    });
    let metrics = metrics::EdgeMetrics::new(&ctx.metrics);
    let edge = proxy::Edge::new(
        e.cache.max_bytes.bytes(),
        upstream.clone(),
        signing::Signer::new(&e.signing),
        fallback,
        e.max_waiters,
        metrics,
        None,
    );
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers(Any)
        .expose_headers(Any);
    let routes = Router::new()
        .route("/live/{*path}", get(proxy::handle))
        .with_state(edge)
        .layer(cors);
    let router = role_router(Role::Edge, routes, vec![upstream.readiness()], ctx);
    RoleServer::bind(
        Role::Edge,
        "edge.http_listen",
        e.http_listen,
        router,
        HttpLimits::from(&config.http),
    )
    .await
}
