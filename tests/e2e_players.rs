//! Viewers' real players through the edge: ffmpeg pushes RTMP into an origin with the ABR
//! ladder, an edge in the same process pulls from it, and shaka-player (strict about
//! LL-HLS: a hinted part that 404s disables a variant) and hls.js play the ladder in
//! headless Chromium. Also a rung shed while a player is held on it.
//!
//! Needs `scripts/setup` (chromium, Node.js and the npm packages in tests/browser). The
//! tests run one at a time: each loads both cores with a ladder and a browser.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use potok::App;
use potok_config::{Config, Role, Secret, StreamKeyConfig};
use tokio::io::{AsyncBufReadExt, BufReader};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Running {
    edge: SocketAddr,
    rtmp: SocketAddr,
    shutdown: potok_service::CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Origin (ladder on) and edge in one process, publishing stream `name` with `key`.
async fn start(name: &str, key: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.node.data_dir = dir.path().join("data");
    c.origin.http_listen = "127.0.0.1:0".parse().unwrap();
    c.origin.rtmp_listen = "127.0.0.1:0".parse().unwrap();
    c.origin.rtmps_listen = "127.0.0.1:0".parse().unwrap();
    c.origin.srt_listen = "127.0.0.1:0".parse().unwrap();
    c.edge.http_listen = "127.0.0.1:0".parse().unwrap();
    c.edge.https_listen = "127.0.0.1:0".parse().unwrap();
    c.origin.transcode.enabled = true;
    c.origin.streams = vec![StreamKeyConfig {
        name: name.into(),
        key: Secret::new(key),
        srt_passphrase: None,
        transcode: None,
    }];
    let roles = [Role::Origin, Role::Edge];
    c.validate(&roles).unwrap();
    let app = App::bind(c, &roles).await.unwrap();
    let edge = app.addr(Role::Edge).unwrap();
    let rtmp = app.listener(Role::Origin, "rtmp").unwrap();
    let shutdown = app.shutdown_token();
    tokio::spawn(app.run());
    Running {
        edge,
        rtmp,
        shutdown,
        _dir: dir,
    }
}

/// Waits until the edge's multivariant playlist lists every one of `variants`.
async fn wait_for_ladder(edge: SocketAddr, name: &str, variants: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let got = common::get(edge, &format!("/live/{name}/master.m3u8")).await;
        if got.status == 200
            && variants
                .iter()
                .all(|v| got.body.contains(&format!("{v}/index.m3u8")))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ladder not listed by the edge: {} {}",
            got.status,
            got.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn player_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/play.mjs")
}

/// Runs `play.mjs` with `player` on `master` for `seconds`, held on variant `pin` if given
/// (then `on_pinned` runs once the player plays it); returns the report after checking that
/// the page ran.
#[allow(clippy::print_stdout)] // the report is worth seeing in the test log
async fn play(
    player: &str,
    master: &str,
    seconds: u32,
    pin: Option<&str>,
    on_pinned: impl FnOnce(),
) -> serde_json::Value {
    let script = player_script();
    for package in ["playwright-core", "shaka-player", "hls.js"] {
        let dir = script.with_file_name("node_modules").join(package);
        assert!(
            dir.is_dir(),
            "{} is missing: run scripts/setup (it installs the npm packages)",
            dir.display()
        );
    }
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .args([master, &seconds.to_string(), "0", player, pin.unwrap_or("")])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node not found: run scripts/setup");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut on_pinned = Some(on_pinned);
    let mut last = String::new();
    let limit = Duration::from_secs(u64::from(seconds) + 60);
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(r#""event":"pinned""#)
                && let Some(f) = on_pinned.take()
            {
                f();
            }
            last = line;
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or_else(|_| panic!("{player} did not finish within {limit:?}"));
    assert!(child.wait().await.unwrap().success(), "{player}: {last}");
    let report: serde_json::Value =
        serde_json::from_str(&last).unwrap_or_else(|e| panic!("{e}: {last}"));
    println!("{player} report: {report}");
    assert_eq!(report["ok"], true, "{report}");
    if pin.is_some() {
        assert!(on_pinned.is_none(), "{player} was never held on {pin:?}");
    }
    report
}

fn numbers(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// What every run must show: no fatal error, no HTTP error answer (a hinted part that
/// never comes is a 404), no variant disabled.
fn assert_clean(player: &str, report: &serde_json::Value) {
    assert!(strings(&report["fatal"]).is_empty(), "{player}: {report}");
    let http = strings(&report["httpErrors"]);
    assert!(
        http.is_empty(),
        "{player} got HTTP errors {http:?}: {report}"
    );
    let disabled = strings(&report["disabled"]);
    assert!(
        disabled.is_empty(),
        "{player} disabled {disabled:?}: {report}"
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)]
async fn shaka_and_hls_js_play_the_ladder_through_the_edge_without_a_404_or_a_forced_switch() {
    let _serial = SERIAL.lock().await;
    const NAME: &str = "players";
    // POTOK_PLAYER_SECONDS=180 runs each player that long (by hand: minutes of playback with
    // the same assertions); the suite's default is 20 s and 15 s.
    let long: Option<u32> = std::env::var("POTOK_PLAYER_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());
    let app = start(NAME, "players-key-0123456789").await;
    let mut pusher = common::push(
        &format!("rtmp://{}/live/players-key-0123456789", app.rtmp),
        "1280x720",
        long.map_or(90, |l| 2 * l + 60),
    );
    wait_for_ladder(app.edge, NAME, &["source", "480p", "360p"]).await;
    let master = format!("http://{}/live/{NAME}/master.m3u8", app.edge);

    for (player, seconds, max_median_latency) in [("shaka", 20, 3.0), ("hls", 15, 7.0)] {
        let seconds = long.unwrap_or(seconds);
        let started = Instant::now();
        let report = play(player, &master, seconds, None, || {}).await;
        assert_clean(player, &report);
        let played = report["endTime"].as_f64().unwrap() - report["startTime"].as_f64().unwrap();
        // hls.js sometimes stalls for up to ~4 s right after its start (bufferStalledError,
        // then bufferSeekOverHole), with no slow or failed request and no gap in either
        // track of the segments. Seen in its fragment log: its start-up ABR switches level
        // at parts that are not independent (only part 0 of a segment starts with a
        // keyframe); the likely cause (not proven) is that video after the switch cannot
        // be decoded up to the next keyframe, leaving a hole. So it gets more slack than
        // shaka here.
        assert!(
            played >= f64::from(seconds) - 6.0,
            "{player} advanced only {played:.1} s in {seconds} s: {report}"
        );
        // No quality flapping. The failure this guards against went 720p → 480p → 720p
        // every 2-4 s (a variant disabled for each 404). ABR on LL-HLS parts may still step
        // once (a held part's wait counts as download time in the bandwidth estimate), so
        // a player may turn back at most once and switch at most three times in the run.
        let heights = numbers(&report["heights"]);
        let steps: Vec<f64> = heights.windows(2).map(|w| w[1] - w[0]).collect();
        let reversals = steps.windows(2).filter(|s| s[0] * s[1] < 0.0).count();
        assert!(
            reversals <= 1 && heights.len() <= 4,
            "{player} flapped between variants {heights:?}: {report}"
        );
        let latencies = numbers(&report["latencies"]);
        assert!(
            latencies.len() >= 10,
            "{player} reported no latency: {report}"
        );
        let max = latencies.iter().copied().fold(0.0, f64::max);
        let med = median(latencies);
        println!(
            "{player}: {seconds} s through the edge in {:.1} s wall, {} requests, latency median {med:.2} s, max {max:.2} s, variants {heights:?}",
            started.elapsed().as_secs_f64(),
            report["requests"]
        );
        assert!(
            med <= max_median_latency,
            "{player} latency median {med:.2} s: {report}"
        );
        let requests = report["requests"].as_u64().unwrap();
        // About two requests per 200 ms part (playlist + part) plus a few: far below the
        // ~25 per second a flapping player made.
        assert!(
            requests <= u64::from(seconds) * 15,
            "{player} made {requests} requests in {seconds} s: {report}"
        );
    }
    pusher.kill().unwrap();
    let _ = pusher.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)]
async fn a_rung_shed_under_a_playing_viewer_keeps_shaka_and_hls_js_playing() {
    let _serial = SERIAL.lock().await;
    const NAME: &str = "players-shed";
    let app = start(NAME, "players-shed-key-0123456789").await;
    let mut pusher = common::push(
        &format!("rtmp://{}/live/players-shed-key-0123456789", app.rtmp),
        "1280x720",
        90,
    );
    wait_for_ladder(app.edge, NAME, &["source", "480p", "360p"]).await;
    let master = format!("http://{}/live/{NAME}/master.m3u8", app.edge);

    // shaka held on 480p when it is shed (480p then carries 360p, the nearest rung still
    // running); hls.js held on 360p when that is shed too (both then carry the source).
    for (player, rung) in [("shaka", "480p"), ("hls", "360p")] {
        let report = play(player, &master, 16, Some(rung), || {
            potok_transcoder::request_shed(NAME, rung);
        })
        .await;
        assert_clean(player, &report);
        let after = report["endTime"].as_f64().unwrap() - report["pinnedAt"].as_f64().unwrap();
        println!("{player}: played {after:.1} s after {rung} was shed under it");
        assert!(
            after >= 8.0,
            "{player} advanced only {after:.1} s after {rung} was shed: {report}"
        );
        let listed = common::get(app.edge, &format!("/live/{NAME}/master.m3u8")).await;
        assert!(
            !listed.body.contains(&format!("{rung}/")),
            "{}",
            listed.body
        );
    }
    pusher.kill().unwrap();
    let _ = pusher.wait();
}
