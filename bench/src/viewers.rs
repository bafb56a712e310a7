//! `bench viewers`: N simulated LL-HLS viewers against one edge, as hls.js behaves: each
//! asks for the playlist that lists the next part (blocking reload), then downloads that
//! part, forever. Measured: how long after a part exists at the origin each viewer has it,
//! upstream requests per object, held requests, and memory per viewer.
//!
//! Viewers share HTTP/2 connections (100 viewers per connection, cleartext prior knowledge)
//! so that ten thousand of them fit in one process's file descriptors; each request is
//! still its own stream that the edge must hold and answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use potok_config::{Config, ListenAddr, Role, Secret, StreamKeyConfig};
use potok_media::hls::playlist::MediaPlaylist;
use potok_service::{CancellationToken, Metrics, RoleContext};
use tokio::process::Command;

/// What one run measured.
#[derive(Debug, Default)]
pub struct ViewersReport {
    /// Viewers simulated.
    pub viewers: usize,
    /// Milliseconds from a part existing at the origin to a viewer having it.
    pub delays_ms: Vec<f64>,
    /// Parts the origin produced while measuring.
    pub parts: u64,
    /// Requests the origin answered for the stream's files while measuring.
    pub upstream_requests: u64,
    /// Most requests the edge held at once.
    pub max_held: i64,
    /// Growth of this process's resident memory with the viewers attached, per viewer.
    pub rss_per_viewer: f64,
    /// Viewer requests that failed.
    pub errors: u64,
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

async fn get(c: &HttpClient, url: &str) -> anyhow::Result<(u16, Bytes)> {
    let resp = tokio::time::timeout(Duration::from_secs(15), c.get(url.parse()?))
        .await
        .context("timeout")??;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

fn rss_bytes() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |pages| pages * 4096.0)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn next_part(p: &MediaPlaylist) -> Option<(u64, u64)> {
    let hint = p.preload_hint.as_deref()?.strip_suffix(".m4s")?;
    let (m, n) = hint.split_once('.')?;
    Some((m.parse().ok()?, n.parse().ok()?))
}

/// Runs `viewers` viewers for `seconds` after they have all joined.
pub async fn run(viewers: usize, seconds: u64) -> anyhow::Result<ViewersReport> {
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let data = tempfile::tempdir()?;
    let loopback = ListenAddr(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut config = Config::default();
    config.node.data_dir = data.path().to_path_buf();
    config.origin.http_listen = loopback;
    config.origin.rtmp_listen = loopback;
    config.origin.srt_listen = loopback;
    config.edge.http_listen = loopback;
    config.http.max_connections = 100_000;
    // Every load client connects from 127.0.0.1: no per-address connection limit.
    config.http.max_connections_per_address = 0;
    // Measures the source rendition's path; `bench ladder` measures the transcoder.
    config.origin.transcode.enabled = false;
    config.origin.streams = vec![StreamKeyConfig {
        name: "bench".into(),
        key: Secret::new("bench-key-0123456789"),
        srt_passphrase: None,
        transcode: None,
    }];
    let origin_metrics = Metrics::new();
    let ctx = RoleContext {
        metrics: origin_metrics.clone(),
        shutdown: shutdown.clone(),
        readiness_timeout: Duration::from_secs(2),
    };
    config
        .validate(&[Role::Origin])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let origin = potok_origin::bind(&config, &ctx).await?;
    let origin_http = origin.local_addr();
    let rtmp = origin.addr_of("rtmp").context("rtmp")?;
    tokio::spawn(origin.run(shutdown.clone()));
    config.edge.upstream.origins = vec![format!("http://{origin_http}")];
    config
        .validate(&[Role::Edge])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let edge_metrics = Metrics::new();
    let ectx = RoleContext {
        metrics: edge_metrics.clone(),
        shutdown: shutdown.clone(),
        readiness_timeout: Duration::from_secs(2),
    };
    let edge = potok_edge::bind(&config, &ectx).await?;
    let edge_http = edge.local_addr();
    tokio::spawn(edge.run(shutdown.clone()));

    let mut ff = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-loglevel", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine",
        ])
        .args(["-t", &(seconds + 60).to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "60",
            "-c:a",
            "aac",
        ])
        .args([
            "-f",
            "flv",
            &format!("rtmp://{rtmp}/live/bench-key-0123456789"),
        ])
        .kill_on_drop(true)
        .spawn()
        .context("ffmpeg not found: run scripts/setup")?;

    let probe: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let origin_pl = format!("http://{origin_http}/live/bench/source/index.m3u8");
    let started = Instant::now();
    let first = loop {
        if let Ok((200, body)) = get(&probe, &origin_pl).await {
            break MediaPlaylist::parse(&String::from_utf8_lossy(&body))?;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the stream never appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // When each part became available at the origin: a probe holds on every hinted part.
    let born: Arc<Mutex<HashMap<(u64, u64), Instant>>> = Arc::default();
    let probe_requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = CancellationToken::new();
    let probe_task = {
        let (born, stop, probe, count) = (
            Arc::clone(&born),
            stop.clone(),
            probe.clone(),
            Arc::clone(&probe_requests),
        );
        let base = format!("http://{origin_http}/live/bench/source");
        let (mut m, mut n) = next_part(&first).context("no hint")?;
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match get(&probe, &format!("{base}/{m}.{n}.m4s")).await {
                    Ok((200, _)) => {
                        if let Ok(mut b) = born.lock() {
                            b.insert((m, n), Instant::now());
                        }
                        n += 1;
                    }
                    Ok((404, _)) if n > 0 => {
                        m += 1;
                        n = 0;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
    };

    let rss_before = rss_bytes();
    let clients: Vec<HttpClient> = (0..viewers.div_ceil(100))
        .map(|_| {
            Client::builder(TokioExecutor::new())
                .http2_only(true)
                .http2_max_concurrent_reset_streams(1000)
                .build_http()
        })
        .collect();
    let delays: Arc<Mutex<Vec<f64>>> = Arc::default();
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(viewers);
    for v in 0..viewers {
        let client = clients[v / 100].clone();
        let (born, delays, errors, measuring, stop) = (
            Arc::clone(&born),
            Arc::clone(&delays),
            Arc::clone(&errors),
            Arc::clone(&measuring),
            stop.clone(),
        );
        let base = format!("http://{edge_http}/live/bench/source");
        tasks.push(tokio::spawn(async move {
            let Ok((_, body)) = get(&client, &format!("{base}/index.m3u8")).await else {
                return;
            };
            let Ok(p) = MediaPlaylist::parse(&String::from_utf8_lossy(&body)) else {
                return;
            };
            let Some((mut m, mut n)) = next_part(&p) else {
                return;
            };
            while !stop.is_cancelled() {
                // The playlist listing part n of m, then the part itself.
                let Ok((200, body)) = get(
                    &client,
                    &format!("{base}/index.m3u8?_HLS_msn={m}&_HLS_part={n}"),
                )
                .await
                else {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let p = MediaPlaylist::parse(&String::from_utf8_lossy(&body)).ok();
                // Part n of m may not exist if m ended before it: then it is part 0 of m+1.
                let listed = p.as_ref().is_some_and(|p| {
                    p.segments
                        .iter()
                        .enumerate()
                        .any(|(i, s)| p.msn_of(i) == m && s.parts.len() as u64 > n)
                });
                if !listed {
                    m += 1;
                    n = 0;
                    continue;
                }
                match get(&client, &format!("{base}/{m}.{n}.m4s")).await {
                    Ok((200, _)) => {
                        let now = Instant::now();
                        if measuring.load(std::sync::atomic::Ordering::Relaxed)
                            && let Some(t) = born.lock().ok().and_then(|b| b.get(&(m, n)).copied())
                            && let Ok(mut d) = delays.lock()
                        {
                            d.push(now.saturating_duration_since(t).as_secs_f64() * 1000.0);
                        }
                        n += 1;
                    }
                    _ => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    // Let everyone join, then measure.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_joined = rss_bytes();
    let parts_before = metric(&origin_metrics.encode(), "potok_hls_parts_total");
    let upstream_before = metric(
        &origin_metrics.encode(),
        "potok_http_requests_total{role=\"origin\",route=\"/live/{stream}/{rendition}/{file}\"",
    );
    let probe_before = probe_requests.load(std::sync::atomic::Ordering::Relaxed);
    measuring.store(true, std::sync::atomic::Ordering::Relaxed);
    errors.store(0, std::sync::atomic::Ordering::Relaxed);
    let mut max_held = 0i64;
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        max_held = max_held.max(metric(&edge_metrics.encode(), "potok_edge_held_requests") as i64);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    measuring.store(false, std::sync::atomic::Ordering::Relaxed);
    let parts = metric(&origin_metrics.encode(), "potok_hls_parts_total") - parts_before;
    let upstream = metric(
        &origin_metrics.encode(),
        "potok_http_requests_total{role=\"origin\",route=\"/live/{stream}/{rendition}/{file}\"",
    ) - upstream_before;
    let probe_made = probe_requests.load(std::sync::atomic::Ordering::Relaxed) - probe_before;
    stop.cancel();
    for t in tasks {
        t.abort();
    }
    probe_task.abort();
    let _ = ff.kill().await;

    let delays = delays.lock().map(|d| d.clone()).unwrap_or_default();
    Ok(ViewersReport {
        viewers,
        delays_ms: delays,
        parts: parts as u64,
        // The probe's own requests go straight to the origin; they are not the edge's.
        upstream_requests: (upstream as u64).saturating_sub(probe_made),
        max_held,
        rss_per_viewer: (rss_joined - rss_before) / viewers as f64,
        errors: errors.load(std::sync::atomic::Ordering::Relaxed),
    })
}
