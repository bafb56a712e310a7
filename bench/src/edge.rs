//! `bench edge-static`: cache-hit throughput of Potok's edge against nginx serving the same
//! bytes from disk with sendfile, with `wrk` over HTTP/1.1 keep-alive, alternating servers
//! in one run.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::http::header;
use axum::routing::get;
use bytes::Bytes;
use potok_config::{Config, Role};
use potok_service::{CancellationToken, Metrics, RoleContext};
use tokio::process::Command;

/// One wrk run's result.
#[derive(Clone, Copy, Debug, Default)]
pub struct WrkResult {
    /// Requests per second.
    pub rps: f64,
    /// Bytes per second of responses.
    pub bytes_per_sec: f64,
}

fn parse_rate(text: &str) -> Option<f64> {
    let t = text.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("GB") {
        (n, 1e9 * 1.073_741_824)
    } else if let Some(n) = t.strip_suffix("MB") {
        (n, 1_048_576.0)
    } else if let Some(n) = t.strip_suffix("KB") {
        (n, 1024.0)
    } else if let Some(n) = t.strip_suffix('B') {
        (n, 1.0)
    } else {
        (t, 1.0)
    };
    Some(num.trim().parse::<f64>().ok()? * mult)
}

/// Runs wrk against `url`.
pub async fn wrk(url: &str, connections: u32, seconds: u32) -> anyhow::Result<WrkResult> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .context("wrk not found: run scripts/setup --bench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut r = WrkResult::default();
    for line in text.lines() {
        if let Some(v) = line.trim().strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = line.trim().strip_prefix("Transfer/sec:") {
            r.bytes_per_sec = parse_rate(v).unwrap_or(0.0);
        }
    }
    if r.rps == 0.0 {
        bail!("wrk gave no result for {url}: {text}");
    }
    Ok(r)
}

/// A stand-in origin serving fixed objects as immutable media.
async fn fake_origin(
    objects: Vec<(String, Bytes)>,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let mut router = Router::new();
    for (path, body) in objects {
        router = router.route(
            &path,
            get(move || {
                let body = body.clone();
                async move {
                    (
                        [
                            (header::CONTENT_TYPE, "video/iso.segment"),
                            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                        ],
                        body,
                    )
                }
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    });
    Ok(addr)
}

/// nginx serving `root` with sendfile on a free port.
pub struct StaticNginx {
    child: tokio::process::Child,
    /// Its address.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl StaticNginx {
    /// Starts nginx over `root`.
    pub async fn start(root: &Path) -> anyhow::Result<StaticNginx> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let d = dir.path().display();
        let conf = format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\ndaemon off;\nworker_processes auto;\n\
             events {{ worker_connections 4096; }}\n\
             http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;\n\
               client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp; \
               uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
               server {{ listen 127.0.0.1:{port}; root {}; }} }}\n",
            root.display()
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf)?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("nginx not found: run scripts/setup --bench")?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(StaticNginx {
                    child,
                    addr,
                    _dir: dir,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("nginx did not start; see {d}/error.log")
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The sizes measured, in bytes, with their names.
pub const SIZES: [(usize, &str); 2] = [(500 * 1000, "500 KB"), (2 * 1000 * 1000, "2 MB")];

/// One measurement pair.
#[derive(Clone, Debug)]
pub struct Pair {
    /// Object size label.
    pub size: &'static str,
    /// Connections.
    pub connections: u32,
    /// nginx results per round.
    pub nginx: Vec<WrkResult>,
    /// Potok results per round.
    pub potok: Vec<WrkResult>,
}

/// An edge (with a self-signed certificate for HTTPS/HTTP/3) in front of a stand-in origin
/// holding one object per size in [`SIZES`], the same bytes written under `root` for nginx.
pub struct Bench {
    /// Plain HTTP address.
    pub edge: SocketAddr,
    /// HTTPS/HTTP/3 port.
    pub https_port: u16,
    /// The development certificate (PEM).
    pub cert: std::path::PathBuf,
    /// (path, bytes) per size.
    pub objects: Vec<(String, Bytes)>,
    /// Files for nginx.
    pub root: tempfile::TempDir,
    stop: CancellationToken,
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts the edge and its stand-in origin.
pub async fn start() -> anyhow::Result<Bench> {
    let shutdown = CancellationToken::new();
    let root = tempfile::tempdir()?;
    let mut objects = Vec::new();
    for (i, (size, _)) in SIZES.iter().enumerate() {
        let body: Bytes = (0..*size)
            .map(|n| (n % 251) as u8)
            .collect::<Vec<u8>>()
            .into();
        let rel = format!("live/bench/source/{}.m4s", 100 + i);
        std::fs::create_dir_all(root.path().join("live/bench/source"))?;
        std::fs::write(root.path().join(&rel), &body)?;
        objects.push((format!("/{rel}"), body));
    }
    let origin = fake_origin(objects.clone(), shutdown.clone()).await?;

    let mut config = Config::default();
    config.node.data_dir = root.path().join("data");
    std::fs::create_dir_all(&config.node.data_dir)?;
    let loopback = potok_config::ListenAddr(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.edge.http_listen = loopback;
    config.edge.https_listen = loopback;
    config.edge.tls.self_signed = true;
    config.edge.upstream.origins = vec![format!("http://{origin}")];
    config.http.max_connections = 100_000;
    // Every load client connects from 127.0.0.1: no per-address connection limit.
    config.http.max_connections_per_address = 0;
    config
        .validate(&[Role::Edge])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ctx = RoleContext {
        metrics: Metrics::new(),
        shutdown: shutdown.clone(),
        readiness_timeout: Duration::from_secs(2),
    };
    let server = potok_edge::bind(&config, &ctx).await?;
    let edge = server.local_addr();
    let https_port = server.addr_of("https").context("no HTTPS listener")?.port();
    tokio::spawn(server.run(shutdown.clone()));
    Ok(Bench {
        edge,
        https_port,
        cert: potok_edge::dev_cert_path(&config),
        objects,
        root,
        stop: shutdown,
    })
}

/// Runs edge-static: for each size and connection count, nginx and Potok alternately.
pub async fn edge_static(seconds: u32, rounds: usize) -> anyhow::Result<Vec<Pair>> {
    let bench = start().await?;
    let (edge, objects, root) = (bench.edge, bench.objects.clone(), &bench.root);
    let nginx = StaticNginx::start(root.path()).await?;

    let mut out = Vec::new();
    for (i, (_, label)) in SIZES.iter().enumerate() {
        let path = &objects[i].0;
        // Warm the edge's cache and nginx's page cache.
        wrk(&format!("http://{edge}{path}"), 2, 1).await?;
        wrk(&format!("http://{}{path}", nginx.addr), 2, 1).await?;
        for connections in [64, 256] {
            let mut pair = Pair {
                size: label,
                connections,
                nginx: Vec::new(),
                potok: Vec::new(),
            };
            for _ in 0..rounds {
                pair.nginx.push(
                    wrk(
                        &format!("http://{}{path}", nginx.addr),
                        connections,
                        seconds,
                    )
                    .await?,
                );
                pair.potok
                    .push(wrk(&format!("http://{edge}{path}"), connections, seconds).await?);
            }
            out.push(pair);
        }
    }
    nginx.stop().await;
    Ok(out)
}
