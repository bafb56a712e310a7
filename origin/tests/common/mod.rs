//! Shared by the origin's end-to-end tests: an origin on port 0, an HTTP client, and ffmpeg
//! publishers that are killed when dropped.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use potok_config::{Config, Role, Secret, StreamKeyConfig};
use potok_service::{CancellationToken, Metrics, RoleContext};

pub const KEY: &str = "test-key-0123456789";
pub const STREAM: &str = "teststream";

pub struct Origin {
    pub http: SocketAddr,
    pub rtmp: SocketAddr,
    /// RTMPS, when the test turned `origin.tls` on.
    pub rtmps: Option<SocketAddr>,
    /// SRT (UDP).
    pub srt: SocketAddr,
    pub data: tempfile::TempDir,
    pub metrics: Metrics,
    shutdown: CancellationToken,
}

impl Origin {
    pub async fn start(tune: impl FnOnce(&mut Config)) -> Origin {
        let data = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.node.data_dir = data.path().to_path_buf();
        config.origin.http_listen = "127.0.0.1:0".parse().unwrap();
        config.origin.rtmp_listen = "127.0.0.1:0".parse().unwrap();
        config.origin.rtmps_listen = "127.0.0.1:0".parse().unwrap();
        config.origin.srt_listen = "127.0.0.1:0".parse().unwrap();
        config.origin.streams = vec![StreamKeyConfig {
            name: STREAM.into(),
            key: Secret::new(KEY),
            srt_passphrase: None,
            transcode: None,
        }];
        // Most tests are about the source rendition; the ladder tests turn it on.
        config.origin.transcode.enabled = false;
        tune(&mut config);
        config.validate(&[Role::Origin]).unwrap();
        let ctx = RoleContext {
            metrics: Metrics::new(),
            shutdown: CancellationToken::new(),
            readiness_timeout: Duration::from_secs(2),
        };
        let server = potok_origin::bind(&config, &ctx).await.unwrap();
        let http = server.local_addr();
        let rtmp = server.addr_of("rtmp").unwrap();
        let rtmps = server.addr_of("rtmps");
        let srt = server.addr_of("srt").unwrap();
        tokio::spawn(server.run(ctx.shutdown.clone()));
        Origin {
            http,
            rtmp,
            rtmps,
            srt,
            data,
            metrics: ctx.metrics,
            shutdown: ctx.shutdown,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://{}/live/{key}", self.rtmp)
    }

    /// Waits up to `limit` until the test stream has a complete segment, then returns its
    /// multivariant playlist.
    pub async fn live_master(&self, limit: Duration) -> potok_media::hls::playlist::MasterPlaylist {
        wait_ok(
            &self.url(&format!("/live/{STREAM}/source/index.m3u8")),
            limit,
        )
        .await;
        let text = get(&self.url(&format!("/live/{STREAM}/master.m3u8")))
            .await
            .text();
        potok_media::hls::playlist::MasterPlaylist::parse(&text)
            .unwrap_or_else(|e| panic!("{e}:\n{text}"))
    }

    pub fn archive(&self) -> PathBuf {
        self.data.path().join("archive")
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub struct Got {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET with a fresh connection, failing the test after 20 s.
pub async fn get(url: &str) -> Got {
    get_with(url, &[]).await
}

pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Got {
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let mut req = hyper::Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::new()).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .unwrap_or_else(|_| panic!("GET {url}: no answer in 20 s"))
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        headers,
        body,
    }
}

/// `ffprobe -show_entries stream=ENTRIES -of csv=p=0 URL`: one line per stream.
pub async fn ffprobe(url: &str, entries: &str) -> String {
    let (url, entries) = (url.to_owned(), format!("stream={entries}"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                &entries,
                "-of",
                "csv=p=0",
                &url,
            ])
            .output()
            .expect("ffprobe not found: run scripts/setup")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `url` until it answers 200, up to `limit`.
pub async fn wait_ok(url: &str, limit: Duration) -> Got {
    let deadline = Instant::now() + limit;
    loop {
        let got = get(url).await;
        if got.status == 200 {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{url} still answers {} after {limit:?}",
            got.status
        );
        // Nothing to subscribe to from outside: poll at a tenth of the part target.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// x264 as OBS users set it up for low latency: no B-frames, a keyframe every 2 s at 30 fps.
pub const X264_ZEROLATENCY: [&str; 10] = [
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
];

/// An ffmpeg publisher; killed on drop.
pub struct Publisher(pub Child);

impl Publisher {
    /// Pushes a lavfi test pattern and tone in real time as FLV (RTMP, RTMPS).
    pub fn start(url: &str, size: &str, seconds: u32) -> Publisher {
        Self::start_as(url, size, seconds, "flv")
    }

    /// The same in container `format` (`mpegts` for SRT).
    pub fn start_as(url: &str, size: &str, seconds: u32, format: &str) -> Publisher {
        Self::start_encoded(url, size, seconds, format, &X264_ZEROLATENCY)
    }

    /// The same with other video encoder arguments (e.g. libx265).
    pub fn start_encoded(
        url: &str,
        size: &str,
        seconds: u32,
        format: &str,
        video: &[&str],
    ) -> Publisher {
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostats", "-loglevel", "error", "-re"])
            .args([
                "-f",
                "lavfi",
                "-i",
                &format!("testsrc2=size={size}:rate=30"),
            ])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-t", &seconds.to_string()])
            .args(video)
            .args(["-c:a", "aac", "-b:a", "64k", "-f", format, url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg not found: run scripts/setup");
        Publisher(child)
    }

    /// Waits for ffmpeg to exit (up to `limit`) and returns whether it succeeded.
    pub async fn wait(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "ffmpeg still running after {limit:?}"
            );
            // std has no wait-with-timeout for a child; poll without blocking the runtime.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.kill();
    }
}
