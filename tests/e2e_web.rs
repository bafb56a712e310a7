//! The web face end to end: `potok all` in-process (control plane with the pages, origin
//! with the ABR ladder, edge), headless Chromium driven by `tests/browser/web.mjs`, and
//! ffmpeg publishing with the stream key the streamer made on the dashboard.
//!
//! One process, one browser, one publisher for every check: sign up (streamer and viewer),
//! create a key, the watch page plays (currentTime advances) and switches quality, chat
//! between two browsers (a mention, a reaction, an `<img onerror>` that must not run), the
//! RU/EN switch and rubles with kopecks, the directory, a sandbox donation that shows on
//! the alerts overlay (DOM and a screenshot) and moves the goal overlay's bar. The overlays
//! are also fed events by the browser script itself (two donations at once queue without
//! overlap, variants by amount, markup stays text, the goal bar). Storage is S3 (moto): the
//! directory's thumbnails, the dashboard's recordings, the offline state playing the last
//! recording and the directory's recent broadcasts all come from it. No console errors
//! from the pages.
//!
//! Needs `scripts/setup` (chromium, Node.js, the npm packages in tests/browser, ffmpeg,
//! moto).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../storage/tests/common/moto.rs"]
mod moto;

use std::path::Path;
use std::time::Duration;

use potok::App;
use potok_config::{Config, Role};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)] // the browser's report is worth seeing in the test log
async fn a_streamer_and_a_viewer_use_the_pages_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.node.data_dir = dir.path().join("data");
    c.node.public_host = "127.0.0.1".into();
    c.origin.http_listen = "127.0.0.1:0".parse().unwrap();
    c.origin.rtmp_listen = "127.0.0.1:0".parse().unwrap();
    c.origin.rtmps_listen = "127.0.0.1:0".parse().unwrap();
    c.origin.srt_listen = "127.0.0.1:0".parse().unwrap();
    c.edge.https_listen = "127.0.0.1:0".parse().unwrap();
    // The pages must name the edge before it is bound, so its port is picked here (bound
    // and released).
    // The same for the control plane: the sandbox checkout's URL (and the page it returns
    // to) are built from its address.
    let cp_port = common::closed_port();
    c.control_plane.listen = format!("127.0.0.1:{cp_port}").parse().unwrap();
    let edge_port = common::closed_port();
    c.edge.http_listen = format!("127.0.0.1:{edge_port}").parse().unwrap();
    c.web.edge_url = Some(format!("http://127.0.0.1:{edge_port}"));
    c.origin.transcode.enabled = true;
    // Recordings and thumbnails in S3 (moto), as a production installation keeps them.
    let s3 = moto::Moto::start().await;
    c.storage = s3.storage();
    c.validate(&Role::ALL).unwrap();
    let app = App::bind(c, &Role::ALL).await.unwrap();
    let cp = app.addr(Role::ControlPlane).unwrap();
    let shutdown = app.shutdown_token();
    let _stop = shutdown.clone().drop_guard();
    tokio::spawn(app.run());

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/web.mjs");
    assert!(
        script
            .with_file_name("node_modules")
            .join("playwright-core")
            .is_dir(),
        "run scripts/setup (it installs the npm packages in tests/browser)"
    );
    let shots = tempfile::Builder::new()
        .prefix("potok-web-shots-")
        .tempdir()
        .unwrap()
        .keep();
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .arg(format!("http://{cp}"))
        .arg(&shots)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node not found: run scripts/setup");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut pusher: Option<std::process::Child> = None;
    let mut last = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            println!("{line}");
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["event"] == "push"
            {
                let url = v["url"].as_str().unwrap().to_owned();
                assert!(url.starts_with("rtmp://"), "{url}");
                pusher = Some(common::push(&url, "1280x720", 240));
            }
            // The broadcast ends (the watch page's offline state is checked next).
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["event"] == "stop_push"
                && let Some(mut p) = pusher.take()
            {
                let _ = p.kill();
                let _ = p.wait();
            }
            last = line;
        }
    };
    let limit = Duration::from_secs(300);
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or_else(|_| panic!("the browser did not finish within {limit:?}"));
    if let Some(mut p) = pusher {
        let _ = p.kill();
        let _ = p.wait();
    }
    assert!(child.wait().await.unwrap().success(), "{last}");
    let report: serde_json::Value =
        serde_json::from_str(&last).unwrap_or_else(|e| panic!("{e}: {last}"));
    assert_eq!(report["ok"], true, "{report:#}");
    let checks: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    for expected in [
        "signup_and_stream_key",
        "watch_page_plays",
        "quality_switch",
        "chat_between_browsers",
        "mention_highlighted",
        "chat_escapes_markup",
        "reaction",
        "follow_remembered",
        "ru_en_switch",
        "directory_lists_the_stream",
        "overlay_alerts_queue_variants",
        "overlay_goal_bar_moves",
        "dashboard_alert_preview",
        "overlay_server_speech",
        "directory_thumbnail",
        "dashboard_stream_health",
        "song_request_in_the_queue",
        "donation_votes_in_a_competition",
        "dashboard_recordings",
        "offline_plays_last_recording",
        "directory_plays_recording",
    ] {
        assert!(checks.contains(&expected), "{expected} missing: {report:#}");
    }
    assert_eq!(
        report["consoleErrors"].as_array().unwrap().len(),
        0,
        "{report:#}"
    );
    // A sandbox donation: the alert on the overlay (DOM and a screenshot), the goal moved.
    assert_eq!(report["donations"], "checked", "{report:#}");
    assert!(checks.contains(&"donation_alert_on_overlay"), "{report:#}");
    assert!(checks.contains(&"goal_bar_moves"), "{report:#}");
    let shot = report["screenshot"].as_str().unwrap();
    let png = std::fs::read(shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 1000, "{shot}");
    println!("alert screenshot: {shot}");
}
