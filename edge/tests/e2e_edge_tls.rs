//! The edge's secure listeners end to end: HTTPS with HTTP/2 (curl), HTTP/3 (an independent
//! aioquic client), and hls.js in headless Chromium playing through the edge over HTTPS.
//! Run alone with `cargo test -p potok-edge --test e2e_edge_tls`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../origin/tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{KEY, Origin, Publisher, STREAM, get, wait_ok};
use potok_config::{Config, Role};
use potok_media::hls::playlist::MediaPlaylist;
use potok_service::{CancellationToken, Metrics, RoleContext};

struct Edge {
    http: SocketAddr,
    https_port: u16,
    cert: PathBuf,
    shutdown: CancellationToken,
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start_edge(origin: &Origin) -> Edge {
    let mut config = Config::default();
    config.node.data_dir = origin.data.path().to_path_buf();
    config.edge.http_listen = "127.0.0.1:0".parse().unwrap();
    config.edge.https_listen = "127.0.0.1:0".parse().unwrap();
    config.edge.tls.self_signed = true;
    config.edge.upstream.origins = vec![format!("http://{}", origin.http)];
    config.validate(&[Role::Edge]).unwrap();
    let ctx = RoleContext {
        metrics: Metrics::new(),
        shutdown: CancellationToken::new(),
        readiness_timeout: Duration::from_secs(2),
    };
    let server = potok_edge::bind(&config, &ctx).await.unwrap();
    let http = server.local_addr();
    let https_port = server.addr_of("https").unwrap().port();
    assert_eq!(
        server.addr_of("h3").unwrap().port(),
        https_port,
        "HTTP/3 shares the HTTPS port"
    );
    tokio::spawn(server.run(ctx.shutdown.clone()));
    Edge {
        http,
        https_port,
        cert: potok_edge::dev_cert_path(&config),
        shutdown: ctx.shutdown,
    }
}

/// curl over HTTPS trusting the development certificate: (HTTP version, headers, body).
fn curl(edge: &Edge, path: &str, dir: &Path) -> (String, String, Vec<u8>) {
    let body = dir.join("curl.body");
    let headers = dir.join("curl.headers");
    let out = Command::new("curl")
        .args(["-sS", "--http2", "--noproxy", "*", "--max-time", "20"])
        .arg("--cacert")
        .arg(&edge.cert)
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", edge.https_port))
        .arg("-o")
        .arg(&body)
        .arg("-D")
        .arg(&headers)
        .args(["-w", "%{http_version}"])
        .arg(format!("https://localhost:{}{path}", edge.https_port))
        .output()
        .expect("curl not found: run scripts/setup");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        std::fs::read_to_string(headers).unwrap().to_lowercase(),
        std::fs::read(body).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_h2_h3_and_hls_js_through_the_edge() {
    let origin = Origin::start(|_| {}).await;
    let edge = start_edge(&origin).await;
    let _pusher = Publisher::start(&origin.rtmp_url(KEY), "640x360", 60);
    let pl = format!("/live/{STREAM}/source/index.m3u8");
    let first = MediaPlaylist::parse(
        &wait_ok(&origin.url(&pl), Duration::from_secs(20))
            .await
            .text(),
    )
    .unwrap();
    // A blocking answer: cached under its own key, so every protocol sees the same bytes.
    let blocking = format!("{pl}?_HLS_msn={}", first.media_sequence);
    let p = MediaPlaylist::parse(&get(&format!("http://{}{blocking}", edge.http)).await.text())
        .unwrap();
    let seg = p.segments.iter().find_map(|s| s.uri.clone()).unwrap();
    let seg_path = format!("/live/{STREAM}/source/{seg}");
    let over_h1_segment = get(&format!("http://{}{seg_path}", edge.http)).await;
    let over_h1_playlist = get(&format!("http://{}{blocking}", edge.http)).await;
    assert_eq!(over_h1_segment.status, 200);

    // HTTPS, HTTP/2 by ALPN, HTTP/3 advertised.
    let dir = tempfile::tempdir().unwrap();
    let (version, headers, body) = curl(&edge, &seg_path, dir.path());
    assert_eq!(version, "2", "{headers}");
    assert!(
        headers.contains(&format!("alt-svc: h3=\":{}\"; ma=86400", edge.https_port)),
        "{headers}"
    );
    assert_eq!(body, over_h1_segment.body.to_vec());
    let plain_alt = over_h1_segment
        .headers
        .get("alt-svc")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        plain_alt,
        Some(format!("h3=\":{}\"; ma=86400", edge.https_port))
    );

    // HTTP/3 with an independent client.
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/h3/h3get.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .arg("127.0.0.1")
        .arg(edge.https_port.to_string())
        .arg(&edge.cert)
        .arg(dir.path())
        .arg(&blocking)
        .arg(&seg_path)
        .kill_on_drop(true)
        .output()
        .await
        .expect("python3 not found");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "h3 client: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.lines().all(|l| l.starts_with("200 ")), "{report}");
    assert_eq!(
        std::fs::read(dir.path().join("0.body")).unwrap(),
        over_h1_playlist.body.to_vec(),
        "playlist over h3"
    );
    assert_eq!(
        std::fs::read(dir.path().join("1.body")).unwrap(),
        over_h1_segment.body.to_vec(),
        "segment over h3"
    );

    // hls.js plays through the edge over HTTPS.
    let packages = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/browser/node_modules/playwright-core");
    assert!(
        packages.is_dir(),
        "{} is missing: run scripts/setup",
        packages.display()
    );
    let master = format!(
        "https://localhost:{}/live/{STREAM}/master.m3u8",
        edge.https_port
    );
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("node")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/play.mjs"))
            .arg(&master)
            .arg("12")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the player did not finish")
    .expect("node not found");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    println!("hls.js through the edge over HTTPS: {report}");
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["fatal"].as_array().unwrap().is_empty(), "{report}");
    let played = report["endTime"].as_f64().unwrap() - report["startTime"].as_f64().unwrap();
    assert!(played >= 9.0, "played {played:.1} s of 12: {report}");
}
