//! A cluster of separate `potok` processes on loopback: a control plane on PostgreSQL, two
//! origins and one edge. A streamer pushes with ffmpeg to the URL `/api/v1/ingest` gives,
//! a player reads through the edge; the serving origin is killed (SIGKILL); the pusher asks
//! `/ingest` again and pushes to the other origin; the player keeps reading the same edge
//! URL and gets new media. Bad keys are refused, and rate-limited per address.
//!
//! Needs PostgreSQL at `POTOK_TEST_POSTGRES` (default postgres://postgres@127.0.0.1:5432/test;
//! `scripts/services` starts it) and the `psql` client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[allow(dead_code, unreachable_pub)]
#[path = "../bench/src/rtmp.rs"]
mod rtmp_client;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::process::Running;
use common::{account, call, push, until};
use serde_json::json;

const POTOK: &str = env!("CARGO_BIN_EXE_potok");
const SECRET: &str = "cluster-test-secret-0123456789";

fn postgres_admin() -> String {
    std::env::var("POTOK_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A PostgreSQL database for this test, dropped at the end.
struct Database {
    name: String,
    url: String,
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .arg(postgres_admin())
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql not found (PostgreSQL client)");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Database {
    fn create() -> Database {
        let name = format!(
            "potok_cluster_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        psql(&format!("CREATE DATABASE {name}"));
        let base = postgres_admin().rsplit_once('/').unwrap().0.to_owned();
        Database {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(postgres_admin())
            .args([
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

fn node(dir: &Path, role: &str, name: &str, cp_url: Option<&str>) -> Command {
    let mut cmd = Command::new(POTOK);
    cmd.arg(role).current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("POTOK_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.env("POTOK_NODE__NAME", name)
        .env("POTOK_NODE__DATA_DIR", dir.join(name))
        .env("POTOK_NODE__PUBLIC_HOST", "127.0.0.1")
        .env("POTOK_CLUSTER__SECRET", SECRET);
    if let Some(url) = cp_url {
        cmd.env("POTOK_CLUSTER__CONTROL_PLANE_URL", url);
    }
    cmd
}

fn origin(dir: &Path, name: &str, cp: &str) -> Running {
    Running::start(
        node(dir, "origin", name, Some(cp))
            .env("POTOK_ORIGIN__HTTP_LISTEN", "127.0.0.1:0")
            .env("POTOK_ORIGIN__RTMP_LISTEN", "127.0.0.1:0")
            .env("POTOK_ORIGIN__RTMPS_LISTEN", "127.0.0.1:0")
            .env("POTOK_ORIGIN__SRT_LISTEN", "127.0.0.1:0")
            // This test is about failover; the ladder would only load the machine.
            .env("POTOK_ORIGIN__TRANSCODE__ENABLED", "false"),
    )
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The media sequence numbers of complete segments in a media playlist.
fn segments(playlist: &str) -> Vec<u64> {
    let mut msn = None;
    let mut out = Vec::new();
    for line in playlist.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            msn = v.trim().parse::<u64>().ok();
        } else if !line.starts_with('#')
            && line.ends_with(".m4s")
            && let Some(m) = msn.as_mut()
        {
            out.push(*m);
            *m += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)] // the failover time goes to the test log
async fn a_stream_survives_its_origin_dying() {
    let db = Database::create();
    let dir = tempfile::tempdir().unwrap();
    let mut cp = Running::start(
        node(dir.path(), "control-plane", "cp", None)
            .env("POTOK_CONTROL_PLANE__LISTEN", "127.0.0.1:0")
            .env("POTOK_CONTROL_PLANE__DATABASE__URL", &db.url)
            .env("POTOK_CONTROL_PLANE__HEARTBEAT_INTERVAL", "500ms")
            .env("POTOK_CONTROL_PLANE__NODE_TIMEOUT", "2s"),
    );
    let cp_addr = cp.addr("control-plane");
    let cp_url = format!("http://{cp_addr}");

    // Accounts: the first is the admin; alice streams.
    let admin = account(cp_addr, "root", "admin").await;
    let alice = account(cp_addr, "alice", "streamer").await;
    let (_, key) = call(
        cp_addr,
        "POST",
        "/api/v1/stream-keys",
        Some(&alice),
        Some(json!({})),
    )
    .await;
    let key = key["key"].as_str().unwrap().to_owned();

    let mut origins = vec![
        ("origin-a", origin(dir.path(), "origin-a", &cp_url)),
        ("origin-b", origin(dir.path(), "origin-b", &cp_url)),
    ];
    let mut edge = Running::start(
        node(dir.path(), "edge", "edge-1", Some(&cp_url))
            .env("POTOK_EDGE__HTTP_LISTEN", "127.0.0.1:0")
            .env("POTOK_EDGE__HTTPS_LISTEN", "127.0.0.1:0"),
    );
    let edge_addr = edge.addr("edge");
    until(
        Duration::from_secs(20),
        "all nodes registered",
        async || {
            let (_, nodes) = call(cp_addr, "GET", "/api/v1/nodes", Some(&admin), None).await;
            let alive = nodes
                .as_array()?
                .iter()
                .filter(|n| n["state"] == "alive")
                .count();
            (alive == 3).then_some(())
        },
    )
    .await;

    // The streamer asks where to push, and pushes there.
    let (s, ingest) = call(cp_addr, "GET", "/api/v1/ingest", Some(&alice), None).await;
    assert_eq!(s, 200, "{ingest}");
    let other_origin = |name: &str| {
        if name == "origin-a" {
            "origin-b"
        } else {
            "origin-a"
        }
    };
    let first_origin = ingest["origin"].as_str().unwrap().to_owned();
    let rtmp = ingest["rtmp_url"].as_str().unwrap().to_owned();
    let mut pusher = Killed(push(&format!("{rtmp}/{key}"), "640x360", 120));

    // The player reads through the edge.
    let playlist = "/live/alice/source/index.m3u8";
    let before = until(
        Duration::from_secs(30),
        "media through the edge",
        async || {
            let got = common::get(edge_addr, playlist).await;
            let segs = segments(&got.body);
            (got.status == 200 && segs.len() >= 2).then_some(segs)
        },
    )
    .await;
    let master = format!("http://{edge_addr}/live/alice/master.m3u8");
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
            &master,
        ])
        .output()
        .unwrap();
    let probed = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probed.contains("h264,640,360"),
        "ffprobe through the edge: {probed}"
    );
    let (_, stream) = call(cp_addr, "GET", "/api/v1/streams/active", None, None).await;
    assert_eq!(stream["items"][0]["status"], "live", "{stream}");
    // The edge reports the player as a viewer.
    until(Duration::from_secs(10), "a viewer counted", async || {
        common::get(edge_addr, playlist).await;
        let (_, s) = call(cp_addr, "GET", "/api/v1/streams/active", None, None).await;
        (s["items"][0]["current_viewers"].as_i64() >= Some(1)).then_some(())
    })
    .await;

    // The serving origin dies.
    let killed_at = Instant::now();
    let idx = origins
        .iter()
        .position(|(n, _)| *n == first_origin)
        .unwrap();
    let (_, mut dead) = origins.remove(idx);
    dead.signal("-KILL");
    let _ = dead.exit_code(Duration::from_secs(10));
    let _ = pusher.0.wait();

    // The pusher asks again and gets the other origin once the control plane has noticed.
    let ingest = until(
        Duration::from_secs(15),
        "a live origin from /ingest",
        async || {
            let (s, v) = call(cp_addr, "GET", "/api/v1/ingest", Some(&alice), None).await;
            (s == 200 && v["origin"] != first_origin.as_str()).then_some(v)
        },
    )
    .await;
    assert_eq!(ingest["origin"], other_origin(&first_origin));
    // The sweeper that declared the origin dead puts its streams in `error` (the ingest
    // answer may come a moment before).
    let stream_path = format!("/api/v1/streams/{}", ingest["stream_id"].as_str().unwrap());
    until(Duration::from_secs(5), "the stream in error", async || {
        let (_, s) = call(cp_addr, "GET", &stream_path, None, None).await;
        (s["status"] == "error").then_some(())
    })
    .await;
    let rtmp = ingest["rtmp_url"].as_str().unwrap().to_owned();
    let repushed_at = Instant::now();
    let mut pusher = Killed(push(&format!("{rtmp}/{key}"), "640x360", 120));
    let last_before = *before.last().unwrap();
    let after = until(
        Duration::from_secs(10),
        "new media through the same edge URL",
        async || {
            let got = common::get(edge_addr, playlist).await;
            let segs = segments(&got.body);
            (got.status == 200
                && segs.last().is_some_and(|m| *m > last_before + 1)
                && got.body.contains("#EXT-X-DISCONTINUITY"))
            .then_some((got.body, segs))
        },
    )
    .await;
    println!(
        "failover: new media through the edge {:.1} s after the kill, {:.1} s after the push restarted",
        killed_at.elapsed().as_secs_f64(),
        repushed_at.elapsed().as_secs_f64()
    );
    let newest = after.1.last().unwrap();
    let (status, _) = call(
        edge_addr,
        "GET",
        &format!("/live/alice/source/{newest}.m4s"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, s) = call(cp_addr, "GET", "/api/v1/streams/active", None, None).await;
    assert!(s["items"][0]["origin_node_id"].is_string());
    assert_eq!(s["items"][0]["status"], "live");

    // Stopping the stream through the API disconnects the publisher and ends it.
    let id = s["items"][0]["id"].as_str().unwrap().to_owned();
    let (code, st) = call(
        cp_addr,
        "POST",
        &format!("/api/v1/streams/{id}/stop"),
        Some(&alice),
        Some(json!({})),
    )
    .await;
    assert_eq!((code, st["status"].as_str()), (200, Some("ending")), "{st}");
    until(
        Duration::from_secs(15),
        "the publisher disconnected and the stream ended",
        async || {
            let (_, st) = call(cp_addr, "GET", &format!("/api/v1/streams/{id}"), None, None).await;
            let exited = matches!(pusher.0.try_wait(), Ok(Some(_)));
            (exited && st["status"] == "ended").then_some(())
        },
    )
    .await;
    // Bad keys are refused by the origin; twenty from one address get rate-limited.
    let other_rtmp: SocketAddr = rtmp
        .trim_start_matches("rtmp://")
        .trim_end_matches("/live")
        .parse()
        .unwrap();
    for i in 0..20 {
        let refused =
            match rtmp_client::Target::connect(other_rtmp, "live", &format!("sk_bad_{i}")).await {
                Ok(mut t) => tokio::time::timeout(Duration::from_secs(10), t.ready())
                    .await
                    .unwrap()
                    .is_err(),
                Err(_) => true,
            };
        assert!(refused, "bad key {i} was accepted");
    }
    let (_, metrics) = call(cp_addr, "GET", "/metrics", None, None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics.contains("potok_cp_publish_authorizations_total{result=\"rate_limited\"}"),
        "{metrics}"
    );

    drop(edge);
    drop(origins);
    drop(cp);
}
