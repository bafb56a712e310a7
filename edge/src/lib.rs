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
mod h3;
mod metrics;
pub mod object;
mod proxy;
pub mod signing;
pub mod upstream;
mod viewers;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, Method};
use axum::routing::get;
use potok_config::{Config, Role};
use potok_service::http::BindError;
use potok_service::ops::role_router;
use potok_service::{HttpLimits, RoleContext, RoleServer, tls};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_http::cors::{Any, CorsLayer};
use tracing::{info, warn};

use crate::upstream::{StaticOrigins, Upstream};
use potok_service::cluster::ControlPlane;

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The certificate or key is unusable.
    #[error("{0}")]
    Tls(String),
}

/// Where the self-signed development certificate is written, for clients that want to
/// trust it.
pub fn dev_cert_path(config: &Config) -> std::path::PathBuf {
    config.node.data_dir.join("edge-dev-cert.pem")
}

/// Binds the edge: plain HTTP on `edge.http_listen`, and with a certificate HTTPS (HTTP/1.1 +
/// HTTP/2) and HTTP/3 on `edge.https_listen` (TCP and UDP). `edge.upstream.origins` must name
/// at least one origin.
pub async fn bind(config: &Config, ctx: &RoleContext) -> Result<RoleServer, StartError> {
    let e = &config.edge;
    let hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        config.node.public_host.clone(),
    ];
    let material = tls::material("edge.tls", &e.tls, hosts, &dev_cert_path(config))
        .map_err(StartError::Tls)?;
    if material.is_none() {
        info!("no edge.tls certificate configured: HTTPS and HTTP/3 are off");
    }
    let secure = match &material {
        Some(m) => {
            let tcp = TcpListener::bind(e.https_listen.get())
                .await
                .map_err(|source| BindError {
                    role: Role::Edge,
                    field: "edge.https_listen",
                    addr: e.https_listen.get(),
                    source,
                })?;
            let tcp_addr = tcp.local_addr().map_err(|source| BindError {
                role: Role::Edge,
                field: "edge.https_listen",
                addr: e.https_listen.get(),
                source,
            })?;
            // HTTP/3 on the same port number, over UDP.
            let udp_addr = SocketAddr::new(e.https_listen.get().ip(), tcp_addr.port());
            let quic_tls = tls::server_config(m, &[b"h3"]).map_err(StartError::Tls)?;
            let quic = quinn::crypto::rustls::QuicServerConfig::try_from(quic_tls)
                .map_err(|err| StartError::Tls(err.to_string()))?;
            let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(quic));
            // An HTTP/3 connection with no packets for `http.idle_timeout` is closed, like
            // the TCP listeners' idle connections (this also bounds the handshake).
            let mut transport = quinn::TransportConfig::default();
            transport.max_idle_timeout(
                quinn::IdleTimeout::try_from(config.http.idle_timeout.get()).ok(),
            );
            server_config.transport_config(Arc::new(transport));
            let endpoint =
                quinn::Endpoint::server(server_config, udp_addr).map_err(|source| BindError {
                    role: Role::Edge,
                    field: "edge.https_listen",
                    addr: udp_addr,
                    source,
                })?;
            let tcp_tls = tls::server_config(m, &[b"h2", b"http/1.1"]).map_err(StartError::Tls)?;
            Some((
                tcp,
                TlsAcceptor::from(Arc::new(tcp_tls)),
                endpoint,
                tcp_addr.port(),
            ))
        }
        None => None,
    };
    let alt_svc = secure.as_ref().and_then(|(_, _, _, port)| {
        HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400")).ok()
    });

    // A fixed origin list wins; otherwise the control plane says where each stream is.
    let control_plane = match (&config.cluster.control_plane_url, &config.cluster.secret) {
        (Some(url), Some(secret)) => Some(ControlPlane::new(
            url,
            secret.clone(),
            e.upstream.read_timeout.get(),
        )),
        _ => None,
    };
    let resolver: Arc<dyn upstream::Resolver> = match &control_plane {
        Some(cp) if e.upstream.origins.is_empty() => {
            info!(control_plane = %cp.base(), "origins come from the control plane");
            Arc::new(upstream::ControlPlaneOrigins::new(cp.clone()))
        }
        _ => Arc::new(StaticOrigins(e.upstream.origins.clone())),
    };
    let upstream = Upstream::new(&e.upstream, resolver, config.cluster.secret.as_ref());
    // The store the origins write (`[storage]`; a local one at `edge.archive_path` too):
    // segments an origin no longer holds, recordings, thumbnails.
    let store = match potok_storage::Store::open(
        &config.storage,
        e.archive_path.clone(),
        potok_storage::StorageMetrics::new(&ctx.metrics, "edge"),
    ) {
        Ok(store) => store,
        Err(err) => {
            warn!(error = %err, "object store unusable: no fallback, recordings or thumbnails");
            None
        }
    };
    let fallback = store
        .as_ref()
        .map(|s| fallback::Fallback::new(Arc::clone(s.inner())));
    let metrics = metrics::EdgeMetrics::new(&ctx.metrics);
    let bytes_out = metrics.bytes_out.clone();
    let viewers = Arc::new(viewers::Viewers::default());
    let edge = proxy::Edge::new(
        e.cache.max_bytes.bytes(),
        upstream.clone(),
        signing::Signer::new(&e.signing),
        fallback,
        e.max_waiters,
        metrics,
        alt_svc,
        Arc::clone(&viewers),
    );
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers(Any)
        .expose_headers(Any);
    let mut routes = Router::new()
        .route("/live/{*path}", get(proxy::handle))
        .with_state(edge);
    if let Some(store) = store {
        // VOD media gets a quarter of the live cache's bound, beside it.
        let stored = fallback::Stored::new(store, e.cache.max_bytes.bytes() / 4);
        routes = routes.merge(fallback::stored_routes(stored));
    }
    let routes = routes.layer(cors);
    let router = role_router(Role::Edge, routes, vec![upstream.readiness()], ctx);
    let mut server = RoleServer::bind(
        Role::Edge,
        "edge.http_listen",
        e.http_listen,
        router,
        HttpLimits::from(&config.http),
    )
    .await?;
    if let Some((tcp, acceptor, endpoint, _)) = secure {
        let router = server.router();
        let udp = endpoint.local_addr().ok();
        let max = config.http.max_connections;
        let per_address =
            potok_service::http::PerAddress::new(config.http.max_connections_per_address);
        server = server
            .with_tls("https", tcp, acceptor)
            .with_task("h3", udp, move |shutdown| {
                h3::serve(endpoint, router, max, per_address, shutdown)
            });
    }
    let Some(cp) = control_plane else {
        return Ok(server);
    };
    let register = potok_config::wire::Register {
        role: potok_config::wire::NodeRole::Edge,
        name: config.node.name.clone(),
        http_url: format!(
            "http://{}:{}",
            config.node.public_host,
            server.local_addr().port()
        ),
        rtmp_url: None,
        rtmps_url: None,
        srt_url: None,
        max_streams: 0,
        reserved_names: Vec::new(),
    };
    let mut cpu = potok_service::cluster::CpuMeter::new();
    let mut egress = potok_service::cluster::RateMeter::new(bytes_out);
    Ok(server.with_task("cluster", None, move |shutdown| {
        potok_service::cluster::keep_registered(
            cp,
            register,
            Arc::new(std::sync::RwLock::new(None)),
            move || potok_config::wire::Heartbeat {
                cpu: cpu.sample(),
                streams: Vec::new(),
                transcode_rtf: None,
                egress_bps: egress.sample(),
                viewers: viewers.counts(),
            },
            |_| {},
            shutdown,
        )
    }))
}
