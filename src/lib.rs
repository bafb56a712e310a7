//! The library half of the `potok` binary: turns a validated configuration into the running
//! roles of one process, and runs the CLI's commands.
//!
//! [`App::bind`] binds every role's listeners first (so port 0 works and every address is
//! known before anything serves), [`App::run`] serves them until the shared shutdown token is
//! cancelled and the drain completes. Roles never call each other in-process: in `potok all`
//! the edge reaches the origin over HTTP at the origin's bound address, exactly as it would
//! across machines.

#![forbid(unsafe_code)]

pub mod commands;
pub mod demo;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::Context as _;
use potok_config::{Config, Role, Secret, StreamKeyConfig};
use potok_service::{CancellationToken, Metrics, RoleContext, RoleServer};
use tracing::info;

/// The roles of one process, bound and ready to serve.
pub struct App {
    servers: Vec<RoleServer>,
    ctx: RoleContext,
    config: Config,
    demo_key: Option<Secret>,
}

impl App {
    /// Binds the listeners of `roles` (in dependency order: control plane, origin, edge).
    /// In a process that runs both origin and edge, an edge without configured origins pulls
    /// from the origin of this process.
    pub async fn bind(config: Config, roles: &[Role]) -> anyhow::Result<App> {
        Box::pin(Self::bind_with(config, roles, true)).await
    }

    /// [`App::bind`]; `config_demo_stream`: whether `potok all` without configured keys
    /// makes the configuration stream "demo" (`potok all --demo` makes an account of that
    /// name through the API instead).
    pub async fn bind_with(
        mut config: Config,
        roles: &[Role],
        config_demo_stream: bool,
    ) -> anyhow::Result<App> {
        std::fs::create_dir_all(&config.node.data_dir).with_context(|| {
            format!(
                "node.data_dir: cannot create {}",
                config.node.data_dir.display()
            )
        })?;
        let ctx = RoleContext {
            metrics: Metrics::new(),
            shutdown: CancellationToken::new(),
            readiness_timeout: config.http.readiness_timeout.get(),
        };
        // `potok all` without configured keys still lets its operator publish: one random key
        // for a stream called "demo", shown in the banner only.
        let demo_key = if config_demo_stream
            && roles.len() == Role::ALL.len()
            && config.origin.streams.is_empty()
        {
            let key = Secret::new(random_key()?);
            config.origin.streams.push(StreamKeyConfig {
                name: "demo".to_owned(),
                key: key.clone(),
                srt_passphrase: None,
                transcode: None,
            });
            Some(key)
        } else {
            None
        };
        // `potok all` offers RTMPS with a development certificate unless one is configured.
        if roles.len() == Role::ALL.len() && config.origin.tls.cert_file.is_none() {
            config.origin.tls.self_signed = true;
        }
        // The origin HTTP API of `potok all` is for its own edge: a wildcard address (the
        // default 0.0.0.0:8081) becomes loopback. To let other edges pull, name a reachable
        // interface address; they must send the cluster secret (required below either way).
        if roles.len() == Role::ALL.len() && config.origin.http_listen.get().ip().is_unspecified() {
            info!(
                port = config.origin.http_listen.get().port(),
                "origin HTTP API on loopback only (potok all)"
            );
            config.origin.http_listen = potok_config::ListenAddr(SocketAddr::new(
                Ipv4Addr::LOCALHOST.into(),
                config.origin.http_listen.get().port(),
            ));
        }
        // The roles of one process talk over HTTP like a cluster's: they need a shared
        // secret, made up for this run when none is configured.
        if roles.contains(&Role::ControlPlane)
            && roles.contains(&Role::Origin)
            && config.cluster.control_plane_url.is_none()
            && config.cluster.secret.is_none()
        {
            config.cluster.secret =
                Some(Secret::new(format!("{}{}", random_key()?, random_key()?)));
        }
        let mut servers: Vec<RoleServer> = Vec::new();
        for role in Role::ALL.into_iter().filter(|r| roles.contains(r)) {
            let server = match role {
                Role::ControlPlane => potok_control_plane::bind(&config, &ctx).await?,
                Role::Origin => {
                    // With the control plane in this process, the origin asks it too (over
                    // HTTP, like in a cluster): streamers' keys from the API work here.
                    if config.cluster.control_plane_url.is_none()
                        && let Some(cp) = servers.iter().find(|s| s.role() == Role::ControlPlane)
                    {
                        config.cluster.control_plane_url =
                            Some(format!("http://{}", connectable(cp.local_addr())));
                    }
                    potok_origin::bind(&config, &ctx).await?
                }
                Role::Edge => {
                    // The edge of an all-in-one process reads the origin's archive for
                    // segments the origin no longer holds.
                    if config.edge.archive_path.is_none()
                        && config.origin.archive.enabled
                        && roles.contains(&Role::Origin)
                    {
                        config.edge.archive_path = Some(
                            config
                                .origin
                                .archive
                                .path
                                .clone()
                                .unwrap_or_else(|| config.node.data_dir.join("archive")),
                        );
                    }
                    if config.edge.tls.cert_file.is_none() && roles.len() == Role::ALL.len() {
                        config.edge.tls.self_signed = true;
                    }
                    if config.edge.upstream.origins.is_empty()
                        && let Some(origin) = servers.iter().find(|s| s.role() == Role::Origin)
                    {
                        let url = format!("http://{}", connectable(origin.local_addr()));
                        config.edge.upstream.origins = vec![url];
                    }
                    potok_edge::bind(&config, &ctx).await?
                }
            };
            info!(role = role.as_str(), addr = %server.local_addr(), "listening");
            servers.push(server);
        }
        // `/metrics` names private streams: a token, loopback, or a listener of its own.
        ctx.metrics.set_token(config.metrics.token.clone());
        if let Some(addr) = config.metrics.listen
            && let Some(first) = servers.pop()
        {
            let listener = tokio::net::TcpListener::bind(addr.get())
                .await
                .with_context(|| format!("metrics.listen: cannot listen on {addr}"))?;
            let bound = listener.local_addr().ok();
            let router = potok_service::ops::metrics_router(&ctx.metrics);
            let limits = potok_service::HttpLimits::from(&config.http);
            info!(addr = ?bound, "metrics listener");
            servers.push(first.with_task("metrics", bound, move |shutdown| {
                potok_service::http::serve_plain(listener, router, limits, shutdown)
            }));
        }
        Ok(App {
            servers,
            ctx,
            config,
            demo_key,
        })
    }

    /// The stream key generated for the `demo` stream of `potok all`, if one was.
    pub fn demo_key(&self) -> Option<&Secret> {
        self.demo_key.as_ref()
    }

    /// The bound address of `role`'s extra listener `name` (the origin's `"rtmp"`).
    pub fn listener(&self, role: Role, name: &str) -> Option<SocketAddr> {
        self.servers
            .iter()
            .find(|s| s.role() == role)
            .and_then(|s| s.addr_of(name))
    }

    /// The bound address of the `metrics.listen` listener, if one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.servers.iter().find_map(|s| s.addr_of("metrics"))
    }

    /// The bound HTTP address of `role`, if this process runs it.
    pub fn addr(&self, role: Role) -> Option<SocketAddr> {
        self.servers
            .iter()
            .find(|s| s.role() == role)
            .map(RoleServer::local_addr)
    }

    /// The process's metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.ctx.metrics
    }

    /// The token that stops every role; cancel it to begin the drain.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.ctx.shutdown.clone()
    }

    /// The configuration the roles were bound with (after filling in in-process addresses).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Lines a person needs to use this process: where each role answers.
    pub fn banner(&self) -> String {
        let host = &self.config.node.public_host;
        let roles: Vec<&str> = self.servers.iter().map(|s| s.role().as_str()).collect();
        let mut out = format!(
            "Potok {} running {} (Ctrl-C to stop)\n",
            potok_service::VERSION,
            roles.join(", ")
        );
        for s in &self.servers {
            let what = match s.role() {
                Role::ControlPlane => "control plane API",
                Role::Origin => "origin HTTP",
                Role::Edge => "edge (viewers)",
            };
            // A loopback-only listener (the origin of `potok all`) is reachable only there.
            let addr = s.local_addr();
            let shown = if addr.ip().is_loopback() {
                format!("http://{addr}/  (this machine only)")
            } else {
                format!("http://{host}:{}/", addr.port())
            };
            out.push_str(&format!("  {what:<18} {shown}\n"));
        }
        if let Some(https) = self.listener(Role::Edge, "https") {
            out.push_str(&format!(
                "  {:<18} https://{host}:{}/  (HTTP/1.1, HTTP/2; HTTP/3 on the same UDP port)\n",
                "edge HTTPS",
                https.port()
            ));
        }
        if let Some(cp) = self.addr(Role::ControlPlane) {
            out.push_str(&format!(
                "  {:<18} http://{host}:{}/api/v1/  (OpenAPI: /api/v1/openapi.json; the first account created is the admin)\n",
                "REST API",
                cp.port()
            ));
            out.push_str(&format!(
                "  {:<18} ws://{host}:{}/api/v1/realtime  (chat rooms chat:<channel>, notifications user:me; docs/realtime.md)\n",
                "chat (WebSocket)",
                cp.port()
            ));
        }
        out.push_str(
            "  every role answers /healthz and /readyz on its port, /metrics there to loopback clients or with metrics.token\n",
        );
        if let Some(m) = self.metrics_addr() {
            out.push_str(&format!(
                "  {:<18} http://{host}:{}/metrics\n",
                "metrics",
                m.port()
            ));
        }
        // Viewers play through the edge when this process runs one.
        if let (Some(rtmp), Some(http)) = (
            self.listener(Role::Origin, "rtmp"),
            self.addr(Role::Edge).or(self.addr(Role::Origin)),
        ) {
            out.push_str(&format!(
                "  {:<18} rtmp://{host}:{}/live  + stream key\n",
                "RTMP ingest",
                rtmp.port()
            ));
            if let Some(srt) = self.listener(Role::Origin, "srt") {
                out.push_str(&format!(
                    "  {:<18} srt://{host}:{}?streamid=live/<stream key>  (MPEG-TS)\n",
                    "SRT ingest",
                    srt.port()
                ));
            }
            if let Some(rtmps) = self.listener(Role::Origin, "rtmps") {
                out.push_str(&format!(
                    "  {:<18} rtmps://{host}:{}/live  + stream key\n",
                    "RTMPS ingest",
                    rtmps.port()
                ));
            }
            for s in &self.config.origin.streams {
                out.push_str(&format!(
                    "  stream {:?}: play http://{host}:{}/live/{}/master.m3u8\n",
                    s.name,
                    http.port(),
                    s.name
                ));
            }
        }
        if let Some(key) = &self.demo_key {
            out.push_str(&format!(
                "  demo stream key (generated for this run): {}\n",
                key.expose()
            ));
        }
        out
    }

    /// Serves every role until the shutdown token is cancelled, then waits for open
    /// connections to drain. The caller bounds the wait.
    pub async fn run(self) {
        let shutdown = self.ctx.shutdown.clone();
        let mut tasks = tokio::task::JoinSet::new();
        for server in self.servers {
            tasks.spawn(server.run(shutdown.clone()));
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// 128 random bits as hex, from the kernel.
/// 128 random bits as hex (the demo stream key, the demo account's password).
pub(crate) fn random_key() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for a random key")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// An address another process on this machine can connect to: wildcard listens are
/// reached through loopback.
fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}
