//! `bench web-latency`: glass-to-glass latency of the watch page's player. ffmpeg burns
//! each frame's media time into the picture (24 bits as black/white blocks, with their
//! complements as a check); the frames go out over RTMP through [`crate::rtmp`], which
//! records when each left; headless Chromium plays the watch page (`/{channel}` on the
//! control plane, hls.js with Potok's settings, through the edge) and then a page with
//! plain hls.js defaults on the same stream, reads the blocks back from the displayed
//! frames (canvas) and notes when each was shown. Latency = shown − left the publisher.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use potok_config::{Config, ListenAddr, Role, Secret, StreamKeyConfig};
use potok_service::{CancellationToken, Metrics, RoleContext};
use tokio::process::{Child, Command};

use crate::rtmp::{SendTimes, Target, pump};

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Seconds each player is sampled.
    pub seconds: u64,
    /// The ABR ladder on (720p source + 480p + 360p).
    pub ladder: bool,
    /// The repository root (for tests/browser/latency.mjs).
    pub root: PathBuf,
}

/// Latencies in ms, one per sampled frame.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The watch page.
    pub watch_ms: Vec<f64>,
    /// Plain hls.js defaults.
    pub plain_ms: Vec<f64>,
}

const KEY: &str = "bench-web-key-0123456789";

/// The frame's media time in ms as 40x40 blocks at the top left of a 1280x720 picture:
/// row 1 bit b of the time, row 2 its complement.
fn ffmpeg(seconds: u64) -> anyhow::Result<Child> {
    let bit = "255*mod(floor(T*1000/pow(2\\,floor(X/40)))\\,2)";
    let graph = format!(
        "color=c=black:s=960x80:r=30,format=yuv420p,geq=lum='if(lt(Y\\,40)\\,{bit}\\,255-{bit})':cb=128:cr=128[s];[0:v][s]overlay=0:0:shortest=1[v]"
    );
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-filter_complex", &graph, "-map", "[v]", "-map", "1:a"])
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

fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

/// Shown-at/media-time pairs → latencies, by the send time of the frame with that media
/// time (FLV rounds timestamps to ms: the nearest within half a frame).
fn latencies(samples: &serde_json::Value, sent: &SendTimes, clock: (Instant, f64)) -> Vec<f64> {
    let Ok(sent) = sent.lock() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in samples.as_array().into_iter().flatten() {
        let (Some(shown), Some(media)) = (s[0].as_f64(), s[1].as_u64()) else {
            continue;
        };
        let media = media as i64;
        let found = (-16..=16)
            .map(|d: i64| media + d)
            .filter(|m| *m >= 0)
            .filter_map(|m| sent.get(&(m as u32)).map(|t| (m, *t)))
            .min_by_key(|(m, _)| (m - media).abs());
        if let Some((_, left)) = found {
            // The clock pair is taken before the first frame is sent.
            let left_ms = clock.1 + left.saturating_duration_since(clock.0).as_secs_f64() * 1000.0;
            out.push(shown - left_ms);
        }
    }
    out
}

/// One run: origin, edge and control plane in this process, ffmpeg publishing, Chromium
/// playing both pages one after the other.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let data = tempfile::tempdir()?;
    let loopback = ListenAddr(SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut config = Config::default();
    config.node.data_dir = data.path().to_path_buf();
    config.origin.http_listen = loopback;
    config.origin.rtmp_listen = loopback;
    config.origin.srt_listen = loopback;
    config.edge.http_listen = loopback;
    config.control_plane.listen = loopback;
    config.http.max_connections_per_address = 0;
    config.origin.transcode.enabled = opts.ladder;
    config.origin.streams = vec![StreamKeyConfig {
        name: "bench".into(),
        key: Secret::new(KEY),
        srt_passphrase: None,
        transcode: None,
    }];
    let ctx = || RoleContext {
        metrics: Metrics::new(),
        shutdown: shutdown.clone(),
        readiness_timeout: Duration::from_secs(2),
    };
    config
        .validate(&[Role::Origin])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let origin = potok_origin::bind(&config, &ctx()).await?;
    let origin_http = origin.local_addr();
    let rtmp = origin.addr_of("rtmp").context("no RTMP listener")?;
    tokio::spawn(origin.run(shutdown.clone()));
    config.edge.upstream.origins = vec![format!("http://{origin_http}")];
    config
        .validate(&[Role::Edge])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let edge = potok_edge::bind(&config, &ctx()).await?;
    let edge_http = edge.local_addr();
    tokio::spawn(edge.run(shutdown.clone()));
    config.web.edge_url = Some(format!("http://{edge_http}"));
    config
        .validate(&[Role::ControlPlane])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cp = potok_control_plane::bind(&config, &ctx()).await?;
    let cp_http = cp.local_addr();
    tokio::spawn(cp.run(shutdown.clone()));

    let total = 2 * opts.seconds + 60;
    let mut ff = ffmpeg(total)?;
    let stdout = ff.stdout.take().context("ffmpeg stdout")?;
    let mut target = Target::connect(rtmp, "live", KEY).await?;
    target.ready().await?;
    let sent = target.sent.clone();
    let clock = (Instant::now(), unix_ms(SystemTime::now()));
    let pumping = tokio::spawn(async move { pump(stdout, &[target]).await });

    let out = Command::new("node")
        .arg(opts.root.join("tests/browser/latency.mjs"))
        .arg(format!("http://{cp_http}/bench"))
        .arg(format!("http://{edge_http}/live/bench/master.m3u8"))
        .arg(opts.seconds.to_string())
        .kill_on_drop(true)
        .output()
        .await
        .context("node not found: run scripts/setup")?;
    pumping.abort();
    let _ = ff.kill().await;
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(text.trim().lines().last().unwrap_or_default())
            .with_context(|| format!("latency.mjs output: {text}"))?;
    if report["ok"] != true {
        bail!("the browser failed: {report}");
    }
    Ok(Report {
        watch_ms: latencies(&report["watch"], &sent, clock),
        plain_ms: latencies(&report["plain"], &sent, clock),
    })
}
