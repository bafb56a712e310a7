//! `bench llhls-latency`: for one pushed stream, how soon after a frame leaves the publisher
//! the piece of HLS holding it can be downloaded, and how far behind live hls.js plays —
//! for Potok (LL-HLS parts, fetched through their preload hints) and, in the same run with
//! the same frames, for nginx-rtmp's HLS (segments, polled) as the reference.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use potok_config::{Config, Role, Secret, StreamKeyConfig};
use potok_media::hls::playlist::MediaPlaylist;
use potok_service::{CancellationToken, Metrics, RoleContext};
use tokio::process::{Child, Command};

use crate::rtmp::{SendTimes, Target, pump};

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Seconds of measurement after the warm-up.
    pub seconds: u64,
    /// Also measure nginx-rtmp as the reference.
    pub reference: bool,
    /// Also run hls.js in headless Chromium.
    pub player: bool,
    /// The repository root (for tests/browser/play.mjs).
    pub root: PathBuf,
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Potok: ms from a part's last frame leaving the publisher to the part downloaded.
    pub part_ms: Vec<f64>,
    /// PART-TARGET in ms.
    pub part_target_ms: f64,
    /// Reference: ms from a segment's last frame leaving the publisher to the segment listed.
    pub reference_segment_ms: Vec<f64>,
    /// hls.js `latency` samples playing Potok, seconds.
    pub player_potok: Vec<f64>,
    /// hls.js `latency` samples playing the reference, seconds.
    pub player_reference: Vec<f64>,
}

const KEY: &str = "bench-key-0123456789";
const WARMUP: Duration = Duration::from_secs(5);

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn get(client: &HttpClient, url: &str) -> anyhow::Result<(u16, Bytes)> {
    let resp = tokio::time::timeout(Duration::from_secs(15), client.get(url.parse()?))
        .await
        .with_context(|| format!("GET {url}: timeout"))??;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// nginx with the RTMP module, HLS written to a temporary directory and served over HTTP.
struct Nginx {
    child: Child,
    rtmp: SocketAddr,
    http: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Nginx {
    async fn start() -> anyhow::Result<Nginx> {
        let module = Path::new("/usr/lib/nginx/modules/ngx_rtmp_module.so");
        if !module.exists() {
            bail!("nginx-rtmp is not installed: run scripts/setup --bench");
        }
        let dir = tempfile::tempdir()?;
        let (rtmp, http) = (free_port()?, free_port()?);
        let d = dir.path().display();
        std::fs::create_dir_all(dir.path().join("hls"))?;
        let conf = format!(
            "load_module {module};\n\
             pid {d}/nginx.pid;\nerror_log {d}/error.log;\ndaemon off;\nworker_processes 1;\n\
             events {{ worker_connections 256; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{rtmp}; application live {{ live on; \
               hls on; hls_path {d}/hls; hls_fragment 1s; hls_playlist_length 6s; }} }} }}\n\
             http {{ access_log off; client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; \
               fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
               types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}\n\
               server {{ listen 127.0.0.1:{http}; location /hls/ {{ root {d}; \
                 add_header Cache-Control no-cache; add_header Access-Control-Allow-Origin *; }} }} }}\n",
            module = module.display()
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("nginx not found: run scripts/setup --bench")?;
        let rtmp: SocketAddr = ([127, 0, 0, 1], rtmp).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(rtmp).await.is_err() {
            if Instant::now() > deadline {
                bail!("nginx did not start; see {d}/error.log");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Nginx {
            child,
            rtmp,
            http: ([127, 0, 0, 1], http).into(),
            _dir: dir,
        })
    }
}

fn ffmpeg(seconds: u64) -> anyhow::Result<Child> {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
            "-g",
            "60",
            "-pix_fmt",
            "yuv420p",
            "-b:v",
            "2500k",
        ])
        // Each packet is written as soon as it is muxed, as an encoder pushing RTMP does;
        // without it ffmpeg's 32 KiB output buffer would send frames in bursts.
        .args([
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-flush_packets",
            "1",
            "-f",
            "flv",
            "pipe:1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("ffmpeg not found: run scripts/setup")
}

/// Frames sent before `end_ms` (RTMP timestamps): the send time of the last of them.
fn last_frame_before(sent: &SendTimes, end_ms: f64) -> Option<Instant> {
    let sent = sent.lock().ok()?;
    sent.iter()
        .filter(|(ts, _)| f64::from(**ts) < end_ms - 0.5)
        .max_by_key(|(ts, _)| **ts)
        .map(|(_, t)| *t)
}

/// The video track's decode time and sample durations in a part (`moof` + `mdat`).
fn video_run(part: &[u8]) -> Option<(u64, Vec<u32>)> {
    fn boxes(mut d: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
        std::iter::from_fn(move || {
            if d.len() < 8 {
                return None;
            }
            let size = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize;
            if size < 8 || size > d.len() {
                return None;
            }
            let kind = [d[4], d[5], d[6], d[7]];
            let body = &d[8..size];
            d = &d[size..];
            Some((kind, body))
        })
    }
    let moof = boxes(part).find(|(k, _)| k == b"moof")?.1;
    for (kind, traf) in boxes(moof) {
        if &kind != b"traf" {
            continue;
        }
        let tfhd = boxes(traf).find(|(k, _)| k == b"tfhd")?.1;
        if u32::from_be_bytes(tfhd.get(4..8)?.try_into().ok()?) != 1 {
            continue; // the video track is track 1
        }
        let tfdt = boxes(traf).find(|(k, _)| k == b"tfdt")?.1;
        let time = u64::from_be_bytes(tfdt.get(4..12)?.try_into().ok()?);
        let trun = boxes(traf).find(|(k, _)| k == b"trun")?.1;
        let count = u32::from_be_bytes(trun.get(4..8)?.try_into().ok()?) as usize;
        // version 1, flags: offset + duration + size + flags + cto = 16 bytes per sample
        let samples = trun.get(12..)?;
        let durations = (0..count)
            .map(|i| {
                samples
                    .get(i * 16..i * 16 + 4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            })
            .collect::<Option<Vec<_>>>()?;
        return Some((time, durations));
    }
    None
}

fn parse_uri(uri: &str) -> Option<(u64, u64)> {
    let stem = uri.strip_suffix(".m4s")?;
    let (m, p) = stem.split_once('.')?;
    Some((m.parse().ok()?, p.parse().ok()?))
}

/// Follows Potok's preload hints: each hinted part is requested before it exists and
/// answered when complete.
async fn follow_potok(
    http: SocketAddr,
    sent: SendTimes,
    start: Instant,
    until: Instant,
) -> anyhow::Result<Vec<f64>> {
    let c = client();
    let base = format!("http://{http}/live/bench/source");
    let playlist = loop {
        let (status, body) = get(&c, &format!("{base}/index.m3u8")).await?;
        if status == 200 {
            break MediaPlaylist::parse(&String::from_utf8_lossy(&body))?;
        }
        if Instant::now() > until {
            bail!("Potok never listed the stream");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (mut m, mut n) = parse_uri(
        playlist
            .preload_hint
            .as_deref()
            .context("no preload hint")?,
    )
    .context("hint URI")?;
    let mut out = Vec::new();
    while Instant::now() < until {
        let (status, body) = get(&c, &format!("{base}/{m}.{n}.m4s")).await?;
        let now = Instant::now();
        match status {
            200 => {
                let (time, durations) = video_run(&body).context("part without a video run")?;
                let last_start: u64 = time
                    + durations
                        .iter()
                        .take(durations.len().saturating_sub(1))
                        .map(|d| u64::from(*d))
                        .sum::<u64>();
                // The output timeline starts (tfdt 0) at the first video frame the publisher
                // sent, a keyframe, whatever its RTMP timestamp.
                let first = sent
                    .lock()
                    .ok()
                    .and_then(|s| s.keys().min().copied())
                    .unwrap_or(0);
                let ts_ms = f64::from(first) + last_start as f64 / 90.0;
                if now.duration_since(start) > WARMUP
                    && let Some(t) = last_frame_before(&sent, ts_ms + 1.0)
                {
                    out.push(now.duration_since(t).as_secs_f64() * 1000.0);
                }
                n += 1;
            }
            404 if n > 0 => {
                m += 1;
                n = 0;
            }
            s => bail!("part {m}.{n}: HTTP {s}"),
        }
    }
    Ok(out)
}

/// Polls nginx-rtmp's playlist and dates each new segment.
async fn follow_nginx(
    http: SocketAddr,
    sent: SendTimes,
    start: Instant,
    until: Instant,
) -> anyhow::Result<Vec<f64>> {
    let c = client();
    let url = format!("http://{http}/hls/bench.m3u8");
    let mut starts: BTreeMap<u64, f64> = BTreeMap::new();
    let mut next_start = 0.0;
    let mut out = Vec::new();
    while Instant::now() < until {
        let (status, body) = get(&c, &url).await?;
        let now = Instant::now();
        if status == 200 {
            let p = MediaPlaylist::parse(&String::from_utf8_lossy(&body))?;
            for (i, s) in p.segments.iter().enumerate() {
                let msn = p.msn_of(i);
                if starts.contains_key(&msn) || s.uri.is_none() {
                    continue;
                }
                // nginx's first segment starts at the first coded frame sent to it.
                let first = sent
                    .lock()
                    .ok()
                    .and_then(|s| s.keys().min().copied())
                    .unwrap_or(0);
                let seg_start = if starts.is_empty() {
                    f64::from(first)
                } else {
                    next_start
                };
                starts.insert(msn, seg_start);
                let end = seg_start + s.duration * 1000.0;
                next_start = end;
                if now.duration_since(start) > WARMUP
                    && let Some(t) = last_frame_before(&sent, end)
                {
                    out.push(now.duration_since(t).as_secs_f64() * 1000.0);
                }
            }
        }
        // The reference has no blocking reload: poll (the 10 ms interval adds at most 10 ms).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(out)
}

/// Runs tests/browser/play.mjs on `url` for `seconds`; returns hls.js latency samples.
async fn player(root: &Path, url: &str, seconds: u64) -> anyhow::Result<Vec<f64>> {
    let out = Command::new("node")
        .arg(root.join("tests/browser/play.mjs"))
        .arg(url)
        .arg(seconds.to_string())
        .kill_on_drop(true)
        .output()
        .await
        .context("node not found: run scripts/setup")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(text.trim().lines().last().unwrap_or_default())
            .with_context(|| format!("player output: {text}"))?;
    if report["ok"] != true {
        bail!("player failed: {report}");
    }
    Ok(report["latencies"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default())
}

/// One run.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let data = tempfile::tempdir()?;
    let mut config = Config::default();
    config.node.data_dir = data.path().to_path_buf();
    let loopback = potok_config::ListenAddr(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.origin.http_listen = loopback;
    config.origin.rtmp_listen = loopback;
    config.origin.srt_listen = loopback;
    // Every load client connects from 127.0.0.1: no per-address connection limit.
    config.http.max_connections_per_address = 0;
    // Measures the source rendition's path; `bench ladder` measures the transcoder.
    config.origin.transcode.enabled = false;
    config.origin.streams = vec![StreamKeyConfig {
        name: "bench".into(),
        key: Secret::new(KEY),
        srt_passphrase: None,
        transcode: None,
    }];
    config
        .validate(&[Role::Origin])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ctx = RoleContext {
        metrics: Metrics::new(),
        shutdown: CancellationToken::new(),
        readiness_timeout: Duration::from_secs(2),
    };
    let server = potok_origin::bind(&config, &ctx).await?;
    let http = server.local_addr();
    let rtmp = server.addr_of("rtmp").context("no RTMP listener")?;
    tokio::spawn(server.run(ctx.shutdown.clone()));
    let _stop = ctx.shutdown.clone().drop_guard();

    let nginx = if opts.reference {
        Some(Nginx::start().await?)
    } else {
        None
    };

    let total = WARMUP.as_secs() + opts.seconds + 2;
    let mut ff = ffmpeg(total)?;
    let stdout = ff.stdout.take().context("ffmpeg stdout")?;
    let mut targets = vec![Target::connect(rtmp, "live", KEY).await?];
    if let Some(n) = &nginx {
        targets.push(Target::connect(n.rtmp, "live", "bench").await?);
    }
    for t in &mut targets {
        t.ready().await?;
    }
    let potok_sent = targets[0].sent.clone();
    let nginx_sent = targets.get(1).map(|t| t.sent.clone());
    let start = Instant::now();
    let until = start + WARMUP + Duration::from_secs(opts.seconds);
    let pumping = tokio::spawn(async move { pump(stdout, &targets).await });

    let potok = tokio::spawn(follow_potok(http, potok_sent, start, until));
    let reference = match (&nginx, nginx_sent) {
        (Some(n), Some(sent)) => Some(tokio::spawn(follow_nginx(n.http, sent, start, until))),
        _ => None,
    };

    let mut report = Report {
        part_target_ms: config.origin.hls.part_target.get().as_secs_f64() * 1000.0,
        ..Report::default()
    };
    if opts.player {
        // One player at a time, each for half the measurement, after the warm-up.
        tokio::time::sleep(WARMUP).await;
        let each = (opts.seconds / if nginx.is_some() { 2 } else { 1 })
            .saturating_sub(8)
            .max(10);
        report.player_potok = player(
            &opts.root,
            &format!("http://{http}/live/bench/master.m3u8"),
            each,
        )
        .await?;
        if let Some(n) = &nginx {
            report.player_reference = player(
                &opts.root,
                &format!("http://{}/hls/bench.m3u8", n.http),
                each,
            )
            .await?;
        }
    }
    report.part_ms = potok.await??;
    if let Some(r) = reference {
        report.reference_segment_ms = r.await??;
    }
    pumping.abort();
    let _ = ff.kill().await;
    if let Some(mut n) = nginx {
        let _ = n.child.kill().await;
    }
    Ok(report)
}
