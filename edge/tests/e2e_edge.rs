//! End to end through the edge: ffmpeg → origin → edge → viewers. Run alone with
//! `cargo test -p potok-edge --test e2e_edge`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../origin/tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{KEY, Origin, Publisher, STREAM, get, get_with, wait_ok};
use potok_config::{Config, Role, Secret};
use potok_media::hls::playlist::MediaPlaylist;
use potok_service::{CancellationToken, Metrics, RoleContext};

struct Edge {
    http: SocketAddr,
    metrics: Metrics,
    shutdown: CancellationToken,
}

impl Edge {
    async fn start(origin: &Origin, tune: impl FnOnce(&mut Config)) -> Edge {
        let mut config = Config::default();
        config.node.data_dir = origin.data.path().to_path_buf();
        config.edge.http_listen = "127.0.0.1:0".parse().unwrap();
        config.edge.upstream.origins = vec![format!("http://{}", origin.http)];
        config.edge.upstream.connect_timeout = "500ms".parse().unwrap();
        config.edge.archive_path = Some(origin.archive());
        tune(&mut config);
        config.validate(&[Role::Edge]).unwrap();
        let ctx = RoleContext {
            metrics: Metrics::new(),
            shutdown: CancellationToken::new(),
            readiness_timeout: Duration::from_secs(2),
        };
        let server = potok_edge::bind(&config, &ctx).await.unwrap();
        let http = server.local_addr();
        tokio::spawn(server.run(ctx.shutdown.clone()));
        Edge {
            http,
            metrics: ctx.metrics,
            shutdown: ctx.shutdown,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn playlist() -> String {
    format!("/live/{STREAM}/source/index.m3u8")
}

fn parse(text: &str) -> MediaPlaylist {
    MediaPlaylist::parse(text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

/// Requests the origin answered for media files of the stream (from its own counter).
fn origin_file_requests(origin: &Origin) -> u64 {
    origin
        .metrics
        .encode()
        .lines()
        .filter(|l| {
            l.starts_with("potok_http_requests_total{")
                && l.contains("route=\"/live/{stream}/{rendition}/{file}\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Waits until the origin has a complete segment and returns its playlist.
async fn live_playlist(origin: &Origin) -> MediaPlaylist {
    let url = origin.url(&playlist());
    let p = parse(&wait_ok(&url, Duration::from_secs(20)).await.text());
    parse(
        &get(&format!("{url}?_HLS_msn={}", p.media_sequence))
            .await
            .text(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_serves_what_the_origin_serves_and_caches_media() {
    let origin = Origin::start(|_| {}).await;
    let edge = Edge::start(&origin, |_| {}).await;
    let _pusher = Publisher::start(&origin.rtmp_url(KEY), "320x180", 30);
    let p = live_playlist(&origin).await;
    let seg = p.segments.iter().find_map(|s| s.uri.clone()).unwrap();
    let path = format!("/live/{STREAM}/source/{seg}");

    let from_origin = get(&origin.url(&path)).await;
    let first = get(&edge.url(&path)).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, from_origin.body);
    assert_eq!(
        first.headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(first.headers["access-control-allow-origin"], "*");
    let etag = first.headers["etag"].to_str().unwrap().to_owned();

    let before = origin_file_requests(&origin);
    let again = get(&edge.url(&path)).await;
    assert_eq!(again.body, first.body);
    assert_eq!(
        origin_file_requests(&origin),
        before,
        "a cached segment went to the origin again"
    );
    let not_modified = get_with(&edge.url(&path), &[("if-none-match", &etag)]).await;
    assert_eq!(not_modified.status, 304);
    let range = get_with(&edge.url(&path), &[("range", "bytes=4-7")]).await;
    assert_eq!(range.status, 206);
    assert_eq!(&range.body[..], b"moof");
    assert_eq!(
        range.headers["content-range"],
        format!("bytes 4-7/{}", first.body.len())
    );
    assert_eq!(
        get_with(&edge.url(&path), &[("range", "bytes=999999999-")])
            .await
            .status,
        416
    );

    let master = get(&edge.url(&format!("/live/{STREAM}/master.m3u8"))).await;
    assert_eq!(master.status, 200);
    assert!(master.text().contains("source/index.m3u8"));
    let metrics = edge.metrics.encode();
    assert!(
        metrics.contains(
            r#"potok_edge_requests_total{cache="hit",class="segment",proto="h1",status="200"}"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_viewers_waiting_for_the_next_part_cost_the_origin_one_request() {
    let origin = Origin::start(|_| {}).await;
    let edge = Edge::start(&origin, |_| {}).await;
    let _pusher = Publisher::start(&origin.rtmp_url(KEY), "320x180", 30);
    let p = live_playlist(&origin).await;

    // The preload-hinted part: not yet complete, so not cached anywhere.
    let hint = p.preload_hint.clone().unwrap();
    let part_url = edge.url(&format!("/live/{STREAM}/source/{hint}"));
    let before = origin_file_requests(&origin);
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            tokio::spawn({
                let url = part_url.clone();
                async move { get(&url).await }
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(got.status, 200);
        bodies.push(got.body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(
        origin_file_requests(&origin) - before,
        1,
        "500 waiting viewers, origin requests:"
    );

    // The same for a blocking playlist reload of the part after it.
    let p = parse(&get(&origin.url(&playlist())).await.text());
    let (m, n) = p
        .segments
        .iter()
        .enumerate()
        .rev()
        .find(|(_, s)| !s.parts.is_empty())
        .map(|(i, s)| (p.msn_of(i), s.parts.len() as u64))
        .unwrap();
    let blocking = edge.url(&format!("{}?_HLS_msn={m}&_HLS_part={n}", playlist()));
    let before = origin_file_requests(&origin);
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            tokio::spawn({
                let url = blocking.clone();
                async move { get(&url).await }
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().status, 200);
    }
    assert_eq!(
        origin_file_requests(&origin) - before,
        1,
        "500 blocking reloads, origin requests:"
    );
    // One miss per object; every other request waited on that fetch or came after it.
    let metrics = edge.metrics.encode();
    for class in ["part", "playlist"] {
        let miss = format!(
            r#"potok_edge_requests_total{{cache="miss",class="{class}",proto="h1",status="200"}} 1"#
        );
        assert!(metrics.contains(&miss), "{metrics}");
    }
    assert!(
        !metrics.contains("potok_edge_coalesced_total 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_urls_guard_private_streams_and_share_one_cached_copy() {
    let origin = Origin::start(|_| {}).await;
    let key = "0123456789abcdef0123456789abcdef-edge";
    let edge = Edge::start(&origin, |c| {
        c.edge.signing.key = Some(Secret::new(key));
        c.edge.signing.private_streams = vec![STREAM.into()];
    })
    .await;
    let _pusher = Publisher::start(&origin.rtmp_url(KEY), "320x180", 30);
    let p = live_playlist(&origin).await;
    let signer = potok_edge::signing::Signer::new(&potok_config::SigningConfig {
        key: Some(Secret::new(key)),
        private_streams: vec![STREAM.into()],
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = signer.sign(STREAM, now + 3600).unwrap();
    let other = signer.sign(STREAM, now + 7200).unwrap();
    let expired = signer.sign(STREAM, now - 10).unwrap();
    let wrong_stream = signer.sign("other", now + 3600).unwrap();
    // Change the signature's last digit (to another digit: a 1-in-16 chance otherwise).
    let last = if good.ends_with('0') { '1' } else { '0' };
    let tampered = format!("{}{last}", &good[..good.len() - 1]);

    let pl = edge.url(&playlist());
    assert_eq!(get(&pl).await.status, 403, "no token");
    for bad in [&expired, &wrong_stream, &tampered] {
        assert_eq!(get(&format!("{pl}?token={bad}")).await.status, 403, "{bad}");
    }
    let listed = get(&format!("{pl}?token={good}")).await;
    assert_eq!(listed.status, 200);
    let text = listed.text();
    assert!(text.contains(&format!("init.mp4?token={good}")), "{text}");

    // Two viewers with different tokens: one cached copy, one origin request.
    let seg = p.segments.iter().find_map(|s| s.uri.clone()).unwrap();
    let path = edge.url(&format!("/live/{STREAM}/source/{seg}"));
    let before = origin_file_requests(&origin);
    assert_eq!(get(&format!("{path}?token={good}")).await.status, 200);
    assert_eq!(get(&format!("{path}?token={other}")).await.status, 200);
    assert_eq!(origin_file_requests(&origin) - before, 1);
    assert_eq!(get(&path).await.status, 403, "media needs the token too");
}

#[tokio::test]
async fn traversal_and_oversized_requests_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = Origin::start(|_| {}).await;
    let edge = Edge::start(&origin, |c| {
        c.http.max_header_bytes = "8KiB".parse().unwrap()
    })
    .await;
    for (path, status) in [
        ("/live/../../etc/passwd", 400),
        ("/live/s/%2e%2e/%2e%2e/etc/passwd", 400),
        ("/live/s/source/..%2F..%2Fx.m4s", 400),
        ("/live/s/source/nope.txt", 404),
        ("/etc/passwd", 404),
    ] {
        assert_eq!(get(&edge.url(path)).await.status, status, "{path}");
    }
    assert_eq!(
        get(&edge.url(&format!("/live/{}", "a/".repeat(400))))
            .await
            .status,
        414
    );
    // A request head far over the limit.
    let mut s = tokio::net::TcpStream::connect(edge.http).await.unwrap();
    let req = format!(
        "GET /live/s/master.m3u8 HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(64 * 1024)
    );
    let _ = s.write_all(req.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_origin_down_cached_objects_are_served_and_the_rest_fail_fast() {
    let origin = Origin::start(|_| {}).await;
    let edge = Edge::start(&origin, |c| c.edge.archive_path = None).await;
    let mut pusher = Publisher::start(&origin.rtmp_url(KEY), "320x180", 30);
    let p = live_playlist(&origin).await;
    let seg = p.segments.iter().find_map(|s| s.uri.clone()).unwrap();
    let cached = edge.url(&format!("/live/{STREAM}/source/{seg}"));
    assert_eq!(get(&cached).await.status, 200);
    pusher.kill();
    drop(origin); // stops the origin's listeners

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Wait until the origin no longer accepts connections.
        let asked = Instant::now();
        let missing = get(&edge.url(&format!("/live/{STREAM}/source/init.mp4"))).await;
        if missing.status == 502 {
            assert!(
                asked.elapsed() < Duration::from_secs(3),
                "failing took {:?}",
                asked.elapsed()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edge kept answering {} with the origin down",
            missing.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get(&cached).await.status,
        200,
        "a cached segment is served without the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_the_origin_dropped_come_from_the_object_store() {
    let origin = Origin::start(|c| {
        c.origin.hls.reconnect_grace = "0s".parse().unwrap();
        c.origin.hls.ended_retention = "0s".parse().unwrap();
    })
    .await;
    let edge = Edge::start(&origin, |_| {}).await;
    let mut pusher = Publisher::start(&origin.rtmp_url(KEY), "320x180", 30);
    let p = live_playlist(&origin).await;
    let seg = p.segments.iter().find_map(|s| s.uri.clone()).unwrap();
    let path = format!("/live/{STREAM}/source/{seg}");
    let original = get(&origin.url(&path)).await.body;
    pusher.kill();
    // The stream ends at once and leaves the origin: its playlist goes 404.
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&origin.url(&playlist())).await.status != 404 {
        assert!(
            Instant::now() < deadline,
            "the stream did not leave the origin"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&origin.url(&path)).await.status, 404);
    let from_archive = get(&edge.url(&path)).await;
    assert_eq!(from_archive.status, 200);
    assert_eq!(from_archive.body, original);
    assert!(
        edge.metrics
            .encode()
            .contains("potok_edge_fallback_hits_total 1")
    );
}

/// Waits until `metrics` shows `series` (a whole line).
async fn wait_for_series(metrics: &Metrics, series: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metrics.encode().lines().any(|l| l == series) {
        assert!(Instant::now() < deadline, "never saw {series}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_request_caps_answer_503_at_the_origin_behind_the_edge_and_at_the_edge() {
    // Viewers asking the same question share one origin request, so the origin's cap is
    // reached only by as many *different* questions: the cap is 2 here, the third
    // different one gets the origin's 503 through the edge. The edge's own cap counts
    // every waiting viewer: 3 here, the fourth waiting viewer gets 503 at once.
    let origin = Origin::start(|c| {
        c.origin.hls.max_held_requests = 2;
        c.origin.hls.reconnect_grace = "60s".parse().unwrap();
    })
    .await;
    let edge = Edge::start(&origin, |c| c.edge.max_waiters = 3).await;
    let mut pusher = Publisher::start(&origin.rtmp_url(KEY), "160x90", 30);
    live_playlist(&origin).await;
    // Nothing new will come: every blocking request for the next segment is held.
    pusher.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let p = parse(&get(&origin.url(&playlist())).await.text());
    // The segment after the last one with parts (the one in progress when it stopped).
    let last = (0..p.segments.len())
        .rev()
        .find(|&i| !p.segments[i].parts.is_empty())
        .map_or(p.media_sequence + p.segments.len() as u64, |i| p.msn_of(i));
    let next = last + 1;
    let ask = |part: u32| edge.url(&format!("{}?_HLS_msn={next}&_HLS_part={part}", playlist()));

    let asked = Instant::now();
    let first = tokio::spawn(get_owned(ask(0)));
    let second = tokio::spawn(get_owned(ask(1)));
    wait_for_series(&origin.metrics, "potok_hls_held_requests 2").await;
    let third = get(&ask(2)).await;
    assert_eq!(
        third.status, 503,
        "the origin held a third different request"
    );

    // A third viewer of the first question waits on its fetch (no new origin request)...
    let coalesced = tokio::spawn(get_owned(ask(0)));
    wait_for_series(&edge.metrics, "potok_edge_held_requests 3").await;
    // ...and a fourth waiting viewer is one too many for the edge.
    let fourth = get(&ask(1)).await;
    assert_eq!(fourth.status, 503, "the edge let a fourth viewer wait");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the refusals waited"
    );
    // The held ones end with the origin's timeout (3 target durations), not hang.
    for held in [first, second, coalesced] {
        let status = tokio::time::timeout(Duration::from_secs(15), held)
            .await
            .expect("a held request never ended")
            .unwrap();
        assert_eq!(status, 503);
    }
}

async fn get_owned(url: String) -> u16 {
    get(&url).await.status
}
