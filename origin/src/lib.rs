//! The origin role: where streams enter Potok and become LL-HLS.
//!
//! Data enters as publishers' RTMP pushes ([`rtmp`] on `origin.rtmp_listen`): each
//! connection's FLV tags go through a publish session into the media crate's packager, and
//! the resulting parts and segments into the stream's in-memory live window ([`streams`]).
//! It leaves as playlists, init segments, parts and segments on the origin HTTP API
//! ([`api`] on `origin.http_listen`), which edges pull over plain HTTP, and as finished
//! segments and VOD playlists copied to object storage ([`archive`]).
//! `/readyz` checks that the node's data directory (recordings, local object storage) is
//! writable.

#![forbid(unsafe_code)]

mod api;
mod archive;
pub mod auth;
mod body;
mod health;
mod ladder;
mod metrics;
mod rtmp;
mod srt;
mod streams;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use potok_config::{Config, Role};
use potok_media::hls::live::LiveConfig;
use potok_media::packager::PackagerConfig;
use potok_service::cluster::ControlPlane;
use potok_service::http::BindError;
use potok_service::ops::role_router;
use potok_service::{HttpLimits, ReadinessCheck, RoleContext, RoleServer, tls};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::warn;

use crate::auth::{PublishAuth, StaticKeys};

/// Why the origin could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The RTMPS certificate or key is unusable.
    #[error("{0}")]
    Tls(String),
    /// The transcoder's encoder cannot be used.
    #[error("{0}")]
    Transcode(String),
    /// The object store or the spool could not be opened (the message names the field).
    #[error("{0}")]
    Archive(String),
}

/// Binds the origin's HTTP API and ingest listeners. With `cluster.control_plane_url` the
/// origin registers with the control plane, heartbeats, and asks it to authorize publishes
/// (keys of `origin.streams`, if any, are accepted first); otherwise the keys of
/// `origin.streams` are the only ones accepted.
pub async fn bind(config: &Config, ctx: &RoleContext) -> Result<RoleServer, StartError> {
    if let (Some(url), Some(secret)) = (&config.cluster.control_plane_url, &config.cluster.secret) {
        let cp = ControlPlane::new(url, secret.clone(), Duration::from_secs(5));
        let node_id = Arc::new(RwLock::new(None));
        let remote: Arc<dyn PublishAuth> = Arc::new(auth::ControlPlaneAuth::new(
            cp.clone(),
            Arc::clone(&node_id),
            config.origin.streams.iter().map(|s| s.name.clone()),
        ));
        // Keys listed in the configuration keep working next to the control plane's.
        let auth: Arc<dyn PublishAuth> = if config.origin.streams.is_empty() {
            remote
        } else {
            Arc::new(auth::Chain(vec![
                Arc::new(StaticKeys::new(&config.origin.streams)),
                remote,
            ]))
        };
        return bind_inner(config, ctx, auth, Some((cp, node_id))).await;
    }
    let keys = StaticKeys::new(&config.origin.streams);
    if keys.is_empty() {
        warn!("origin.streams lists no stream keys: every publish will be refused");
    }
    bind_inner(config, ctx, Arc::new(keys), None).await
}

/// Binds the origin with another publish authorizer.
pub async fn bind_with_auth(
    config: &Config,
    ctx: &RoleContext,
    auth: Arc<dyn PublishAuth>,
) -> Result<RoleServer, StartError> {
    bind_inner(config, ctx, auth, None).await
}

type NodeId = Arc<RwLock<Option<String>>>;

async fn bind_inner(
    config: &Config,
    ctx: &RoleContext,
    auth: Arc<dyn PublishAuth>,
    cluster: Option<(ControlPlane, NodeId)>,
) -> Result<RoleServer, StartError> {
    let o = &config.origin;
    let ticks = |d: Duration| (d.as_micros() * 90 / 1000).min(u128::from(u32::MAX)) as u32;
    let packager = PackagerConfig {
        part_target: ticks(o.hls.part_target.get()),
        segment_target: ticks(o.hls.segment_target.get()),
    };
    let settings = streams::StreamSettings {
        packager,
        live: LiveConfig::new(
            &packager,
            o.hls.window_segments,
            usize::try_from(o.hls.max_window_bytes.bytes()).unwrap_or(usize::MAX),
        ),
        grace: o.hls.reconnect_grace.get(),
        retention: o.hls.ended_retention.get(),
        max_held: o.hls.max_held_requests,
        transcode: None,
        dvr_window: config.storage.recordings.dvr_window.get(),
        thumbnail_interval: config.storage.recordings.thumbnail_interval.get(),
    };
    let mut settings = settings;
    let per_stream: std::collections::HashMap<String, bool> = o
        .streams
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.transcode?)))
        .collect();
    if o.transcode.enabled || per_stream.values().any(|on| *on) {
        settings.transcode = Some(Arc::new(
            ladder::TranscodeSetup::new(
                &o.transcode,
                per_stream,
                packager.segment_target,
                ctx.metrics.registry(),
            )
            .map_err(StartError::Transcode)?,
        ));
    }
    let metrics = metrics::OriginMetrics::new(&ctx.metrics);

    let archive = if o.archive.enabled {
        let local = o
            .archive
            .path
            .clone()
            .unwrap_or_else(|| config.node.data_dir.join("archive"));
        let store = potok_storage::Store::open(
            &config.storage,
            Some(local),
            potok_storage::StorageMetrics::new(&ctx.metrics, "origin"),
        )
        .map_err(|e| StartError::Archive(e.to_string()))?
        .ok_or_else(|| StartError::Archive("no store configured".into()))?;
        let spool_dir = config
            .storage
            .spool
            .dir
            .clone()
            .unwrap_or_else(|| config.node.data_dir.join("spool"));
        let archiver = archive::Archiver::start(
            store,
            &spool_dir,
            config.storage.spool.max_bytes.bytes(),
            config.storage.recordings.clone(),
            ctx.shutdown.clone(),
        )
        .map_err(|e| StartError::Archive(e.to_string()))?;
        // With a control plane, it sweeps (it holds the channels' retention settings).
        if config.cluster.control_plane_url.is_none() {
            tokio::spawn(archive::sweep_retention(
                archiver.store().clone(),
                config.storage.recordings.clone(),
                ctx.shutdown.clone(),
            ));
        }
        Some(archiver)
    } else {
        None
    };
    let streams = Arc::new(streams::Streams::new(settings, archive, metrics.clone()));

    let rtmp_listener = TcpListener::bind(o.rtmp_listen.get())
        .await
        .map_err(|source| BindError {
            role: Role::Origin,
            field: "origin.rtmp_listen",
            addr: o.rtmp_listen.get(),
            source,
        })?;
    let rtmp_addr = rtmp_listener.local_addr().ok();
    let ingest = Arc::new(rtmp::Ingest {
        streams: Arc::clone(&streams),
        auth,
        metrics: metrics.clone(),
        timeout: o.ingest_timeout.get(),
        max_message: u32::try_from(o.max_rtmp_message_bytes.bytes()).unwrap_or(u32::MAX),
        max_connections: o.max_ingest_connections,
        per_address: potok_service::http::PerAddress::new(o.max_ingest_connections_per_address),
        srt_passphrases: o
            .streams
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.srt_passphrase.clone()?)))
            .collect(),
        srt_max_bps: o.srt.max_bitrate_kbps.saturating_mul(1000),
        max_streams: o.max_streams,
        srt_malformed: ctx.metrics.int_counter(
            "potok_srt_malformed_datagrams_total",
            "UDP datagrams on the SRT port that are not SRT packets.",
        ),
    });

    // RTMPS: the same ingest over TLS, when a certificate is configured (or self-signed).
    let hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        config.node.public_host.clone(),
    ];
    let material = tls::material(
        "origin.tls",
        &o.tls,
        hosts,
        &config.node.data_dir.join("origin-dev-cert.pem"),
    )
    .map_err(StartError::Tls)?;
    let rtmps = match material {
        Some(m) => {
            let cfg = tls::server_config(&m, &[]).map_err(StartError::Tls)?;
            let listener = TcpListener::bind(o.rtmps_listen.get())
                .await
                .map_err(|source| BindError {
                    role: Role::Origin,
                    field: "origin.rtmps_listen",
                    addr: o.rtmps_listen.get(),
                    source,
                })?;
            Some((listener, TlsAcceptor::from(Arc::new(cfg))))
        }
        None => None,
    };

    let (srt_listener, srt_incoming, srt_addr) = srt::bind(o.srt_listen.get(), o.srt.latency.get())
        .await
        .map_err(|source| BindError {
            role: Role::Origin,
            field: "origin.srt_listen",
            addr: o.srt_listen.get(),
            source,
        })?;

    let checks = vec![ReadinessCheck::writable_dir(
        "storage",
        config.node.data_dir.clone(),
    )];
    let router = role_router(
        Role::Origin,
        api::routes(
            Arc::clone(&streams),
            metrics.clone(),
            config.cluster.secret.clone(),
        ),
        checks,
        ctx,
    );
    let server = RoleServer::bind(
        Role::Origin,
        "origin.http_listen",
        o.http_listen,
        router,
        HttpLimits::from(&config.http),
    )
    .await?
    .with_task("rtmp", rtmp_addr, {
        let ingest = Arc::clone(&ingest);
        move |shutdown| rtmp::serve(rtmp_listener, ingest, None, shutdown)
    });
    let server = server.with_task("srt", Some(srt_addr), {
        let ingest = Arc::clone(&ingest);
        let passphrase = o.srt.passphrase.clone();
        move |shutdown| srt::serve(srt_listener, srt_incoming, ingest, passphrase, shutdown)
    });
    let rtmps_addr = rtmps.as_ref().and_then(|(l, _)| l.local_addr().ok());
    let server = match rtmps {
        Some((listener, acceptor)) => server.with_task("rtmps", rtmps_addr, move |shutdown| {
            rtmp::serve(listener, ingest, Some(acceptor), shutdown)
        }),
        None => server,
    };
    let Some((cp, node_id)) = cluster else {
        return Ok(server);
    };
    // Announce the addresses actually bound, under the public host name.
    let host = &config.node.public_host;
    let url = |scheme: &str, addr: Option<std::net::SocketAddr>, path: &str| {
        addr.map(|a| format!("{scheme}://{host}:{}{path}", a.port()))
    };
    let register = potok_config::wire::Register {
        role: potok_config::wire::NodeRole::Origin,
        name: config.node.name.clone(),
        http_url: format!("http://{host}:{}", server.local_addr().port()),
        rtmp_url: url("rtmp", rtmp_addr, "/live"),
        rtmps_url: url("rtmps", rtmps_addr, "/live"),
        srt_url: url("srt", Some(srt_addr), ""),
        max_streams: o.max_streams,
        // Configured names (and `potok all`'s demo stream) belong to configuration.
        reserved_names: o.streams.iter().map(|s| s.name.clone()).collect(),
    };
    let beat_streams = Arc::clone(&streams);
    let kick_streams = streams;
    let mut cpu = potok_service::cluster::CpuMeter::new();
    let mut egress = potok_service::cluster::RateMeter::new(metrics.bytes_out.clone());
    Ok(server.with_task("cluster", None, move |shutdown| {
        potok_service::cluster::keep_registered(
            cp,
            register,
            node_id,
            move || potok_config::wire::Heartbeat {
                cpu: cpu.sample(),
                streams: beat_streams.held(),
                transcode_rtf: beat_streams
                    .settings()
                    .transcode
                    .as_ref()
                    .and_then(|t| t.slowest_ladder()),
                egress_bps: egress.sample(),
                viewers: Vec::new(),
            },
            move |reply| {
                for name in reply.stop {
                    kick_streams.kick(&name);
                }
            },
            shutdown,
        )
    }))
}
