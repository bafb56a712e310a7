//! Helpers shared by the binary's integration tests: a tiny HTTP client and raw sockets.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod process;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A response's status, content type and body.
pub struct Got {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// GET `http://addr/path` with a fresh connection, failing the test after 10 s.
pub async fn get(addr: SocketAddr, path: &str) -> Got {
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let uri = format!("http://{addr}{path}").parse().unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .unwrap_or_else(|_| panic!("GET {path} on {addr}: no answer in 10 s"))
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"));
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        content_type,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// A JSON call (any method) with an optional bearer token; the body as JSON (or a string).
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default()));
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        client.request(req.body(body).unwrap()),
    )
    .await
    .unwrap_or_else(|_| panic!("{method} {path}: no answer in 20 s"))
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    });
    (status, v)
}

/// Creates an account on the control plane at `cp` (password "a long password") and logs
/// in; returns its API token.
pub async fn account(cp: SocketAddr, name: &str, role: &str) -> String {
    let password = "a long password";
    let (s, v) = call(
        cp,
        "POST",
        "/api/v1/users",
        None,
        Some(serde_json::json!({"username": name, "password": password, "role": role})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(
        cp,
        "POST",
        "/api/v1/sessions",
        None,
        Some(serde_json::json!({"username": name, "password": password})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

/// ffmpeg pushing `seconds` of a `size` test pattern (x264, keyframe every 2 s) with a tone
/// (AAC) in real time as FLV to `url`; silent.
pub fn push(url: &str, size: &str, seconds: u32) -> std::process::Child {
    use std::process::{Command, Stdio};
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-loglevel", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=30"),
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
        ])
        .args([
            "-g", "60", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
        ])
        .args(["-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg not found: run scripts/setup")
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Every role of `potok all` on loopback port 0, its data under `dir`.
pub fn local_config(dir: &std::path::Path) -> potok_config::Config {
    let mut c = potok_config::Config::default();
    c.node.data_dir = dir.join("data");
    c.origin.http_listen = "127.0.0.1:0".parse().unwrap();
    c.origin.rtmp_listen = "127.0.0.1:0".parse().unwrap();
    c.origin.rtmps_listen = "127.0.0.1:0".parse().unwrap();
    c.origin.srt_listen = "127.0.0.1:0".parse().unwrap();
    c.edge.http_listen = "127.0.0.1:0".parse().unwrap();
    c.edge.https_listen = "127.0.0.1:0".parse().unwrap();
    c.control_plane.listen = "127.0.0.1:0".parse().unwrap();
    c
}

/// Polls `check` every 100 ms until it answers, failing the test after `limit`.
pub async fn until<T>(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
