//! End to end with the viewer's real player: ffmpeg pushes RTMP, hls.js plays the LL-HLS
//! output in headless Chromium. Run alone with `cargo test -p potok-origin --test e2e_browser`.
//! Needs `scripts/setup` (chromium, Node.js and the npm packages in tests/browser).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{KEY, Origin, Publisher, STREAM, wait_ok};

fn player_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/play.mjs")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Plays `master` with hls.js for `seconds`, forcing `switches` level switches; returns the
/// player's report after checking that the page ran without a fatal error.
#[allow(clippy::print_stdout)] // the report is worth seeing in the test log
async fn play(master: &str, seconds: u32, switches: u32) -> serde_json::Value {
    let script = player_script();
    let packages = script
        .with_file_name("node_modules")
        .join("playwright-core");
    assert!(
        packages.is_dir(),
        "{} is missing: run scripts/setup (it installs the npm packages)",
        packages.display()
    );
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("node")
            .arg(&script)
            .arg(master)
            .arg(seconds.to_string())
            .arg(switches.to_string())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the player did not finish within 120 s")
    .expect("node not found: run scripts/setup");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "player failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    println!("hls.js report: {report}");
    assert_eq!(report["ok"], true, "{report}");
    assert!(
        report["fatal"].as_array().unwrap().is_empty(),
        "fatal errors: {report}"
    );

    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_plays_the_stream_about_a_second_behind_live() {
    let origin = Origin::start(|_| {}).await;
    let _pusher = Publisher::start(&origin.rtmp_url(KEY), "640x360", 60);
    let master = origin.url(&format!("/live/{STREAM}/master.m3u8"));
    wait_ok(&master, Duration::from_secs(20)).await;

    let report = play(&master, 15, 0).await;

    let played = report["endTime"].as_f64().unwrap() - report["startTime"].as_f64().unwrap();
    assert!(
        played >= 12.0,
        "currentTime advanced only {played:.1} s in 15 s: {report}"
    );

    let mut latencies: Vec<f64> = report["latencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    assert!(latencies.len() >= 10, "{report}");
    let max = latencies.iter().copied().fold(0.0, f64::max);
    let med = median(&mut latencies);
    println!("hls.js latency: median {med:.2} s, max {max:.2} s");
    assert!(
        max <= 3.0,
        "hls.js latency reached {max:.2} s (median {med:.2} s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_switches_between_ladder_rungs_and_keeps_playing() {
    let origin = Origin::start(|c| c.origin.transcode.enabled = true).await;
    let _pusher = Publisher::start(&origin.rtmp_url(KEY), "854x480", 60);
    // Wait for the ladder (source 480p, rung 360p) to be in the master playlist.
    let master = origin.url(&format!("/live/{STREAM}/master.m3u8"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = common::get(&master).await.text();
        if text.contains("360p/index.m3u8") && text.contains("source/index.m3u8") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no ladder: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let report = play(&master, 16, 2).await;
    assert_eq!(report["levels"], 2, "{report}");
    let played = report["endTime"].as_f64().unwrap() - report["startTime"].as_f64().unwrap();
    assert!(
        played >= 12.0,
        "currentTime advanced only {played:.1} s in 16 s: {report}"
    );
    // The start level plus both forced switches: hls.js played both levels.
    let switched: Vec<i64> = report["switches"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(serde_json::Value::as_i64)
        .collect();
    assert!(
        switched.contains(&0) && switched.contains(&1) && switched.len() >= 3,
        "levels switched to: {switched:?} ({report})"
    );
}
