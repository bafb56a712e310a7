//! Recordings end to end against a real S3-protocol server (moto): ffmpeg → origin → S3 →
//! edge → ffprobe. `cargo test -p potok-edge --test e2e_storage`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../origin/tests/common/mod.rs"]
mod common;
#[path = "../../storage/tests/common/moto.rs"]
mod moto;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{KEY, Origin, Publisher, STREAM, ffprobe, get, wait_ok};
use potok_config::{Config, Role};
use potok_media::hls::playlist::MediaPlaylist;
use potok_service::{CancellationToken, Metrics, RoleContext};

struct Edge {
    http: SocketAddr,
    shutdown: CancellationToken,
}

impl Edge {
    async fn start(origin: &Origin, storage: potok_config::StorageConfig) -> Edge {
        let mut config = Config::default();
        config.node.data_dir = origin.data.path().to_path_buf();
        config.edge.http_listen = "127.0.0.1:0".parse().unwrap();
        config.edge.upstream.origins = vec![format!("http://{}", origin.http)];
        config.storage = storage;
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

async fn post(url: &str, body: &str) -> (u16, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = hyper::Request::post(url)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_owned(),
        )))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The edge's object-store reads so far (its `/metrics`).
async fn store_gets(edge: &Edge) -> u64 {
    let text = get(&edge.url("/metrics")).await.text();
    text.lines()
        .find(|l| {
            l.starts_with("potok_storage_request_seconds_count{")
                && l.contains("op=\"get\"")
                && l.contains("role=\"edge\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no store reads counted in {text}"))
}

fn parse(text: &str) -> MediaPlaylist {
    MediaPlaylist::parse(text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

/// `ffprobe -show_entries format=duration`.
async fn duration_of(url: &str) -> f64 {
    let url = url.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "format=duration",
                "-of",
                "csv=p=0",
                &url,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

async fn origin_on(moto: &moto::Moto) -> Origin {
    let storage = moto.storage();
    Origin::start(move |c| {
        c.storage = storage;
        c.origin.hls.segment_target = "1s".parse().unwrap();
        c.origin.hls.window_segments = 6;
        c.origin.hls.reconnect_grace = "1s".parse().unwrap();
        c.storage.recordings.thumbnail_interval = "1s".parse().unwrap();
        c.storage.recordings.dvr_window = "1h".parse().unwrap();
    })
    .await
}

fn spool_depth(origin: &Origin) -> i64 {
    origin
        .metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix("potok_storage_spool_depth{role=\"origin\"} "))
        .and_then(|v| v.trim().parse().ok())
        .expect("potok_storage_spool_depth missing")
}

/// Waits until the recording of the test stream has ended; returns its id.
async fn finished_recording(origin: &Origin, limit: Duration) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let got = get(&origin.url(&format!("/api/recordings?stream={STREAM}"))).await;
        if got.status == 200 {
            let list: Vec<serde_json::Value> = serde_json::from_slice(&got.body).unwrap();
            if let Some(m) = list
                .iter()
                .find(|m| m["kind"] == "recording" && m["ended_ms"].is_number())
            {
                return m.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no finished recording after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_broadcast_becomes_a_vod_with_dvr_thumbnails_and_clips_through_the_edge() {
    let moto = moto::Moto::start().await;
    let origin = origin_on(&moto).await;
    let edge = Edge::start(&origin, moto.storage()).await;
    let mut publisher = Publisher::start(&origin.rtmp_url(KEY), "320x240", 14);

    // Thumbnails: a JPEG of the stream's size, at the origin and through the edge.
    let thumb = wait_ok(
        &edge.url(&format!("/thumbnails/{STREAM}.jpg")),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(thumb.headers["cache-control"], "public, max-age=5");
    let at_origin = wait_ok(
        &origin.url(&format!("/live/{STREAM}/thumbnail.jpg")),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(at_origin.headers["content-type"], "image/jpeg");
    assert_eq!(
        ffprobe(
            &edge.url(&format!("/thumbnails/{STREAM}.jpg")),
            "codec_name,width,height"
        )
        .await
        .trim(),
        "mjpeg,320,240"
    );

    // DVR: once the origin's window has moved past the first segment, the DVR playlist still
    // lists it, and the edge reads it from the store.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (dvr, live) = loop {
        let dvr = get(&edge.url(&format!("/live/{STREAM}/source/dvr.m3u8"))).await;
        let live = get(&origin.url(&format!("/live/{STREAM}/source/index.m3u8"))).await;
        if dvr.status == 200 && live.status == 200 {
            let (dvr, live) = (parse(&dvr.text()), parse(&live.text()));
            if dvr.media_sequence + 2 < live.media_sequence {
                break (dvr, live);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the origin's window never moved past the DVR start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!dvr.ended);
    let old = dvr.segments[0].uri.clone().unwrap();
    assert!(dvr.media_sequence < live.media_sequence);
    let path = format!("/live/{STREAM}/source/{old}");
    assert_eq!(
        get(&origin.url(&path)).await.status,
        404,
        "the origin still holds {old}"
    );
    let got = wait_ok(&edge.url(&path), Duration::from_secs(10)).await;
    assert!(got.body.len() > 1000);

    // A highlight during the broadcast: a clip of the recording in progress.
    let (status, body) = post(
        &origin.url(&format!("/api/streams/{STREAM}/clips")),
        r#"{"start": 1.0, "end": 3.0}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let live_clip: serde_json::Value = serde_json::from_str(&body).unwrap();
    let live_clip = live_clip["id"].as_str().unwrap().to_owned();

    // The broadcast ends: its recording plays through the edge.
    assert!(publisher.wait(Duration::from_secs(60)).await);
    let m = finished_recording(&origin, Duration::from_secs(30)).await;
    let id = m["id"].as_str().unwrap().to_owned();
    let master = edge.url(&format!("/vod/{id}/master.m3u8"));
    assert_eq!(
        ffprobe(&master, "codec_name,width,height")
            .await
            .lines()
            .next()
            .unwrap(),
        "h264,320,240"
    );
    let full = duration_of(&master).await;
    assert!(full > 11.0, "VOD of {full} s for a 14 s broadcast");
    let vod = parse(
        &get(&edge.url(&format!("/vod/{id}/source/index.m3u8")))
            .await
            .text(),
    );
    assert!(vod.ended);

    // VOD media is read from the store once, however many viewers ask at once: 20 at once
    // and 20 after cost at most the manifest and the segment.
    let seg = edge.url(&format!(
        "/vod/{id}/source/{}",
        vod.segments[1].uri.as_deref().unwrap()
    ));
    let before = store_gets(&edge).await;
    let mut at_once = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let seg = seg.clone();
        at_once.spawn(async move { get(&seg).await });
    }
    let first = get(&seg).await;
    assert_eq!(first.status, 200);
    while let Some(got) = at_once.join_next().await {
        let got = got.unwrap();
        assert_eq!((got.status, &got.body), (200, &first.body));
    }
    for _ in 0..20 {
        assert_eq!(get(&seg).await.body, first.body);
    }
    let reads = store_gets(&edge).await - before;
    assert!(
        reads <= 2,
        "{reads} store reads for 41 requests of one segment"
    );

    // A clip of 3-6 s: whole segments, its own playlist, plays.
    let (status, body) = post(
        &origin.url(&format!("/api/recordings/{id}/clips")),
        r#"{"start": 3.0, "end": 6.0}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let clip: serde_json::Value = serde_json::from_str(&body).unwrap();
    let clip_id = clip["id"].as_str().unwrap();
    let clip_len = duration_of(&edge.url(&format!("/vod/{clip_id}/master.m3u8"))).await;
    assert!(
        (2.5..8.0).contains(&clip_len),
        "clip of {clip_len} s for 3 s asked"
    );

    let live_len = duration_of(&edge.url(&format!("/vod/{live_clip}/master.m3u8"))).await;
    assert!(
        (1.5..6.0).contains(&live_len),
        "live clip of {live_len} s for 2 s asked"
    );

    // Ids that could leave the index are refused.
    for bad in ["a..b", "..", "x%2Fy", "x.json"] {
        let at_origin = get(&origin.url(&format!("/api/recordings/{bad}")))
            .await
            .status;
        assert!(at_origin == 400 || at_origin == 404, "{bad}: {at_origin}");
        assert_ne!(at_origin, 200);
        assert_eq!(
            get(&edge.url(&format!("/vod/{bad}/master.m3u8")))
                .await
                .status,
            400,
            "{bad}"
        );
    }
    assert_eq!(get(&origin.url("/api/recordings/a..b")).await.status, 400);

    // Delete: gone from the index and from the edge.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let req = hyper::Request::delete(origin.url(&format!("/api/recordings/{clip_id}")))
        .body(http_body_util::Empty::new())
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 204);
    assert_eq!(
        get(&edge.url(&format!("/vod/{clip_id}/master.m3u8")))
            .await
            .status,
        404
    );
    assert_eq!(
        get(&edge.url(&format!("/vod/{id}/master.m3u8")))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_store_outage_of_60_s_mid_broadcast_leaves_live_playback_and_the_vod_whole() {
    let moto = moto::Moto::start().await;
    let origin = origin_on(&moto).await;
    let edge = Edge::start(&origin, moto.storage()).await;
    let mut publisher = Publisher::start(&origin.rtmp_url(KEY), "320x240", 75);
    let live = edge.url(&format!("/live/{STREAM}/source/index.m3u8"));
    wait_ok(&live, Duration::from_secs(20)).await;

    moto.pause();
    let outage = Instant::now();
    let mut last_msn = 0;
    let mut advanced = 0;
    // Live playback through the edge keeps moving for the whole outage.
    while outage.elapsed() < Duration::from_secs(60) {
        let got = get(&live).await;
        assert_eq!(got.status, 200, "live playlist during the outage");
        let p = parse(&got.text());
        let msn = p.media_sequence + p.segments.len() as u64;
        if msn > last_msn {
            advanced += 1;
            last_msn = msn;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        advanced > 40,
        "the live playlist advanced only {advanced} times in 60 s"
    );
    // The writes of the outage wait in the spool (the store really was unreachable).
    let waiting = spool_depth(&origin);
    assert!(
        waiting > 20,
        "only {waiting} writes waiting after a 60 s outage"
    );
    moto.resume();
    let deadline = Instant::now() + Duration::from_secs(60);
    while spool_depth(&origin) > 5 {
        assert!(
            Instant::now() < deadline,
            "the spool did not drain after the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    assert!(publisher.wait(Duration::from_secs(60)).await);
    let m = finished_recording(&origin, Duration::from_secs(60)).await;
    let id = m["id"].as_str().unwrap();
    let vod = parse(
        &get(&edge.url(&format!("/vod/{id}/source/index.m3u8")))
            .await
            .text(),
    );
    let total: f64 = vod.segments.iter().map(|s| s.duration).sum();
    assert!(total > 70.0, "VOD of {total} s for a 75 s broadcast");
    // Every segment is in the store, in sequence.
    for (i, s) in vod.segments.iter().enumerate() {
        let uri = s.uri.as_ref().unwrap();
        assert_eq!(uri, &format!("{}.m4s", vod.media_sequence + i as u64));
        let got = get(&edge.url(&format!("/vod/{id}/source/{uri}"))).await;
        assert_eq!(got.status, 200, "{uri} missing from the VOD");
    }
    assert!(duration_of(&edge.url(&format!("/vod/{id}/master.m3u8"))).await > 70.0);
}
