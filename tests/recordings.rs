//! Recordings through the control plane's API in `potok all`: a channel's settings reach its
//! origin in the publish grant, a streamer starts and stops the recording of a live
//! broadcast, the recording is listed, plays as a VOD through the edge (ffprobe), is
//! deleted by its streamer only, and is swept after the channel's retention days. The live
//! stream carries its thumbnail path, which the edge serves as a JPEG.

// Test helpers may panic on anything unexpected: that is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{call, get, until};
use potok::App;
use potok_config::{Config, HumanDuration, Role};
use serde_json::{Value, json};

fn config(dir: &Path) -> Config {
    let mut c = common::local_config(dir);
    c.control_plane.heartbeat_interval = HumanDuration::secs(1);
    c.origin.transcode.enabled = false;
    // Kept forever unless the channel says otherwise: only its own days can delete.
    c.storage.recordings.retention_days = 0;
    c.storage.recordings.sweep_interval = HumanDuration::secs(1);
    c.storage.recordings.thumbnail_interval = HumanDuration::secs(1);
    c.cluster.secret = Some(potok_config::Secret::new(SECRET));
    c
}

const SECRET: &str = "recordings-test-cluster-secret";

async fn stream(cp: SocketAddr, id: &str) -> Value {
    let (s, v) = call(cp, "GET", &format!("/api/v1/streams/{id}"), None, None).await;
    assert_eq!(s, 200, "{v}");
    v
}

/// ffprobe's `codec_type,width,height` lines of `url`, or `None` when it cannot read it.
fn probe(url: &str) -> Option<String> {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,width,height",
        ])
        .args(["-of", "csv=p=0", url])
        .output()
        .expect("ffprobe not found: run scripts/setup");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamer_records_a_broadcast_that_plays_as_vod_and_expires_by_the_channels_days() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    config.validate(&Role::ALL).unwrap();
    let app = App::bind(config, &Role::ALL).await.unwrap();
    let cp = app.addr(Role::ControlPlane).unwrap();
    let edge = app.addr(Role::Edge).unwrap();
    let app_origin = app.addr(Role::Origin).unwrap();
    let rtmp = app.listener(Role::Origin, "rtmp").unwrap();
    let shutdown = app.shutdown_token();
    let running = tokio::spawn(app.run());

    let root = common::account(cp, "root", "admin").await;
    let alice = common::account(cp, "alice", "streamer").await;
    let mallory = common::account(cp, "mallory", "streamer").await;
    let settings = "/api/v1/channels/alice/recording-settings";

    // The defaults come from `storage.recordings`; only the streamer sees and sets them.
    let (s, v) = call(cp, "GET", settings, Some(&alice), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["record"], true, "{v}");
    assert_eq!(v["retention_days"], 0, "{v}");
    assert_eq!(call(cp, "GET", settings, Some(&mallory), None).await.0, 403);
    let off =
        json!({"record": false, "renditions": [], "max_duration_secs": null, "retention_days": 7});
    assert_eq!(
        call(cp, "PUT", settings, Some(&mallory), Some(off.clone()))
            .await
            .0,
        403
    );
    let bad = json!({"record": true, "renditions": ["../x"], "max_duration_secs": 5, "retention_days": 99999});
    let (s, v) = call(cp, "PUT", settings, Some(&alice), Some(bad)).await;
    assert_eq!(s, 422, "{v}");
    let fields: Vec<&str> = v["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["renditions[0]", "max_duration_secs", "retention_days"],
        "{v}"
    );
    let (s, v) = call(cp, "PUT", settings, Some(&alice), Some(off)).await;
    assert_eq!(s, 200, "{v}");

    let (_, key) = call(
        cp,
        "POST",
        "/api/v1/stream-keys",
        Some(&alice),
        Some(json!({})),
    )
    .await;
    let key = key["key"].as_str().unwrap().to_owned();
    let push = || common::push(&format!("rtmp://{rtmp}/live/{key}"), "320x180", 60);
    // The origin registers with the in-process control plane first; a push before that is
    // refused, so push again until the stream is live.
    let mut pusher = push();
    let id = until(Duration::from_secs(30), "alice live", async || {
        if let Ok(Some(_)) = pusher.try_wait() {
            pusher = push();
        }
        let (_, active) = call(cp, "GET", "/api/v1/streams/active", None, None).await;
        let s = &active["items"][0];
        (s["name"] == "alice" && s["status"] == "live")
            .then(|| s["id"].as_str().unwrap().to_owned())
    })
    .await;

    // Live: a thumbnail path the edge serves as a JPEG of the stream's size.
    let s = stream(cp, &id).await;
    assert_eq!(s["thumbnail_path"], "/thumbnails/alice.jpg", "{s}");
    let url = format!("http://{edge}/thumbnails/alice.jpg");
    let jpeg = until(
        Duration::from_secs(20),
        "a thumbnail through the edge",
        async || probe(&url),
    )
    .await;
    assert_eq!(jpeg.trim(), "video,320,180", "{jpeg}");

    // Its health from the origin (the seed's getStreamHealth): the publisher's 30 fps,
    // keyframes every 2 s, 320x180 H.264; no ladder here. The streamer's only.
    let health = format!("/api/v1/streams/{id}/health");
    let h = until(
        Duration::from_secs(20),
        "a full health window",
        async || {
            let (s, h) = call(cp, "GET", &health, Some(&alice), None).await;
            assert_eq!(s, 200, "{h}");
            (h["fps"].as_f64().unwrap() >= 27.0 && h["keyframe_interval_secs"].is_f64())
                .then_some(h)
        },
    )
    .await;
    assert!(h["fps"].as_f64().unwrap() <= 33.0, "{h}");
    assert_eq!(h["keyframe_interval_secs"], 2.0, "{h}");
    assert_eq!(h["resolution"], json!([320, 180]), "{h}");
    assert!(
        h["video_codecs"].as_str().unwrap().starts_with("avc1."),
        "{h}"
    );
    assert!(h["bitrate_kbps"].as_u64().unwrap() > 20, "{h}");
    assert_eq!(
        (&h["publishing"], &h["rungs"], &h["shedding"]),
        (&json!(true), &json!([]), &json!(false)),
        "{h}"
    );
    assert_eq!(call(cp, "GET", &health, Some(&mallory), None).await.0, 403);
    assert_eq!(call(cp, "GET", &health, None, None).await.0, 401);

    // The channel's `record: false` reached the origin in the grant: two heartbeats after
    // going live, it is still not recording (the configuration alone would record).
    let hb = |v: &Value| v["last_heartbeat_at"].as_i64().unwrap();
    let (_, nodes) = call(cp, "GET", "/api/v1/nodes?role=origin", Some(&root), None).await;
    let first = hb(&nodes[0]);
    until(Duration::from_secs(10), "two more heartbeats", async || {
        let (_, nodes) = call(cp, "GET", "/api/v1/nodes?role=origin", Some(&root), None).await;
        (hb(&nodes[0]) >= first + 2000).then_some(())
    })
    .await;
    let s = stream(cp, &id).await;
    assert_eq!(s["is_recording"], false, "{s}");
    let (_, list) = call(cp, "GET", "/api/v1/recordings?channel=alice", None, None).await;
    assert_eq!(list, json!([]), "{list}");

    // Start: only the streamer (or a moderator); settings are checked.
    let path = format!("/api/v1/streams/{id}/recording");
    assert_eq!(call(cp, "POST", &path, None, Some(json!({}))).await.0, 401);
    assert_eq!(
        call(cp, "POST", &path, Some(&mallory), Some(json!({})))
            .await
            .0,
        403
    );
    let (s, v) = call(
        cp,
        "POST",
        &path,
        Some(&alice),
        Some(json!({"renditions": ["a/b"]})),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(
        call(cp, "DELETE", &path, Some(&alice), None).await.0,
        409,
        "not recording yet"
    );
    let (s, v) = call(cp, "POST", &path, Some(&alice), Some(json!({}))).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["is_recording"], true, "{v}");
    let rec = v["recording_id"].as_str().unwrap().to_owned();
    assert_eq!(
        call(cp, "POST", &path, Some(&alice), Some(json!({})))
            .await
            .0,
        409,
        "already recording"
    );
    // The origin's heartbeats agree.
    until(
        Duration::from_secs(10),
        "the heartbeat's recording",
        async || {
            let s = stream(cp, &id).await;
            (s["recording_id"] == rec.as_str()).then_some(())
        },
    )
    .await;
    // Some media in it: segments of 2 s; wait for three past the start.
    let playlist = "/live/alice/source/index.m3u8";
    let msn = |p: &str| {
        p.lines()
            .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
            + p.lines().filter(|l| l.starts_with("#EXTINF")).count() as u64
    };
    let at_start = until(Duration::from_secs(20), "the live playlist", async || {
        let live = get(edge, playlist).await;
        (live.status == 200).then(|| msn(&live.body))
    })
    .await;
    until(
        Duration::from_secs(20),
        "three segments recorded",
        async || (msn(&get(edge, playlist).await.body) >= at_start + 3).then_some(()),
    )
    .await;

    // A paid highlight (the seed's highlightMoment) becomes a clip of the recording in
    // progress, which plays through the edge.
    let (s, started) = call(
        cp,
        "POST",
        "/api/v1/channels/alice/highlights",
        Some(&mallory),
        Some(json!({"note": "этот момент", "pay": {"amount": 5000}})),
    )
    .await;
    assert_eq!(s, 201, "{started}");
    let pay = started["confirmation"]["url"].as_str().unwrap();
    let pay = pay.rsplit('/').next().unwrap();
    let (s, ack) = call(
        cp,
        "POST",
        &format!("/api/v1/payments/sandbox/{pay}"),
        None,
        Some(json!({"succeed": true})),
    )
    .await;
    assert_eq!(s, 200, "{ack}");
    let clip = until(
        Duration::from_secs(40),
        "the highlight's clip",
        async || {
            let (_, h) = call(
                cp,
                "GET",
                "/api/v1/channels/alice/highlights",
                Some(&alice),
                None,
            )
            .await;
            h[0]["clip_id"].as_str().map(str::to_owned)
        },
    )
    .await;
    let (s, c) = call(cp, "GET", &format!("/api/v1/recordings/{clip}"), None, None).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["kind"], "clip", "{c}");
    assert_eq!(c["parent"], rec.as_str(), "{c}");
    assert!(c["duration_secs"].as_f64().unwrap() >= 2.0, "{c}");
    let clip_url = format!("http://{edge}{}", c["playback_path"].as_str().unwrap());
    let probed = probe(&clip_url).expect("the clip plays through the edge");
    assert!(probed.contains("video,320,180"), "{probed}");

    let (s, v) = call(cp, "DELETE", &path, Some(&alice), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["is_recording"], false, "{v}");

    // Listed, finished, and playable from the store through the edge.
    let r = until(
        Duration::from_secs(30),
        "the finished recording",
        async || {
            let (_, list) = call(
                cp,
                "GET",
                "/api/v1/recordings?channel=alice&finished=true",
                None,
                None,
            )
            .await;
            list.as_array()
                .and_then(|l| l.iter().find(|r| r["id"] == rec.as_str()).cloned())
        },
    )
    .await;
    assert_eq!(r["kind"], "recording", "{r}");
    assert_eq!(r["channel"], "alice", "{r}");
    assert!(r["duration_secs"].as_f64().unwrap() >= 4.0, "{r}");
    let vod = r["playback_path"].as_str().unwrap().to_owned();
    assert_eq!(vod, format!("/vod/{rec}/master.m3u8"));
    let probed = probe(&format!("http://{edge}{vod}")).expect("the VOD plays through the edge");
    assert!(probed.contains("video,320,180"), "{probed}");
    assert!(probed.contains("audio"), "{probed}");
    let (s, one) = call(cp, "GET", &format!("/api/v1/recordings/{rec}"), None, None).await;
    assert_eq!((s, &one), (200, &r));
    // Its poster: the first thumbnail made while it recorded, a JPEG through the edge.
    assert_eq!(r["poster_path"], format!("/vod/{rec}/poster.jpg"), "{r}");
    let poster = probe(&format!("http://{edge}/vod/{rec}/poster.jpg")).expect("the poster");
    assert_eq!(poster.trim(), "video,320,180", "{poster}");
    assert_eq!(
        c["poster_path"], r["poster_path"],
        "a clip shows its recording's"
    );
    assert_eq!(
        call(cp, "GET", "/api/v1/recordings/..%2Fetc", None, None)
            .await
            .0,
        404
    );
    assert_eq!(
        call(cp, "GET", "/api/v1/recordings?kind=movie", None, None)
            .await
            .0,
        422
    );

    // A second recording, deleted by its streamer only.
    let (s, v) = call(cp, "POST", &path, Some(&alice), Some(json!({}))).await;
    assert_eq!(s, 201, "{v}");
    let second = v["recording_id"].as_str().unwrap().to_owned();
    assert_ne!(second, rec);
    let at_start = msn(&get(edge, playlist).await.body);
    assert!(at_start > 0);
    until(
        Duration::from_secs(20),
        "a segment in the second",
        async || (msn(&get(edge, playlist).await.body) >= at_start + 2).then_some(()),
    )
    .await;
    let del = format!("/api/v1/recordings/{second}");
    assert_eq!(
        call(cp, "DELETE", &del, Some(&alice), None).await.0,
        409,
        "still recording"
    );
    assert_eq!(call(cp, "DELETE", &path, Some(&alice), None).await.0, 200);
    until(Duration::from_secs(30), "the second finished", async || {
        let (_, v) = call(cp, "GET", &del, None, None).await;
        v["ended_at"].is_i64().then_some(())
    })
    .await;
    assert_eq!(call(cp, "DELETE", &del, Some(&mallory), None).await.0, 403);
    assert_eq!(call(cp, "DELETE", &del, Some(&alice), None).await.0, 204);
    assert_eq!(call(cp, "GET", &del, None, None).await.0, 404);

    // A recording with a maximum duration ends when it holds that much, while the
    // broadcast goes on (the origin's own API: the control plane allows 60 s and more).
    let origin = app_origin;
    let (s, v) = call(
        origin,
        "POST",
        "/api/streams/alice/recording",
        Some(SECRET),
        Some(json!({"max_duration_secs": 4})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let third = v["id"].as_str().unwrap().to_owned();
    let short = format!("/api/v1/recordings/{third}");
    let done = until(
        Duration::from_secs(30),
        "the 4 s recording ended",
        async || {
            let (_, v) = call(cp, "GET", &short, None, None).await;
            v["ended_at"].is_i64().then_some(v)
        },
    )
    .await;
    let secs = done["duration_secs"].as_f64().unwrap();
    assert!((2.0..=4.001).contains(&secs), "{done}");
    let s = stream(cp, &id).await;
    assert_eq!(s["status"], "live", "the broadcast goes on: {s}");
    let (s, v) = call(
        origin,
        "DELETE",
        "/api/streams/alice/recording",
        Some(SECRET),
        None,
    )
    .await;
    assert_eq!(s, 409, "no longer recording: {v}");

    let _ = pusher.kill();
    let _ = pusher.wait();

    // Retention: the first recording aged ten days in its manifest; the channel keeps 7 days
    // (the configuration: forever), so the next sweep deletes it and its media.
    let manifest = dir
        .path()
        .join(format!("data/archive/recordings/{rec}.json"));
    let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let ten_days = 10 * 86_400_000;
    m["started_ms"] = json!(m["started_ms"].as_i64().unwrap() - ten_days);
    m["ended_ms"] = json!(m["ended_ms"].as_i64().unwrap() - ten_days);
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    until(Duration::from_secs(20), "the retention sweep", async || {
        let (s, _) = call(cp, "GET", &format!("/api/v1/recordings/{rec}"), None, None).await;
        (s == 404).then_some(())
    })
    .await;
    assert_eq!(
        probe(&format!("http://{edge}{vod}")),
        None,
        "its media is gone"
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("roles did not stop within 15 s")
        .unwrap();
}
