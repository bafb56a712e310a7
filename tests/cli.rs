//! The `potok` binary as an operator meets it: exit codes, messages, signals.

// Test helpers may panic on anything unexpected: that is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::Running;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const POTOK: &str = env!("CARGO_BIN_EXE_potok");

/// A `potok` command run in `dir`, with no inherited POTOK_* or RUST_LOG settings.
fn potok(dir: &Path) -> Command {
    let mut cmd = Command::new(POTOK);
    cmd.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("POTOK_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn example(name: &str) -> String {
    format!("{}/config/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn version_prints_the_crate_version() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(potok(dir.path()).arg("--version"));
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("potok {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn ledger_reconcile_proves_the_configured_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let (code, out, err) = run(potok(dir.path()).args(["ledger", "reconcile"]));
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (report["accounts"].as_i64(), report["total"].as_i64()),
        (Some(0), Some(0)),
        "{out}"
    );
    let (code, _, err) = run(potok(dir.path()).args(["ledger", "reconcile"]).env(
        "POTOK_CONTROL_PLANE__DATABASE__URL",
        "postgres://nobody@127.0.0.1:1/none",
    ));
    assert_eq!(code, 1);
    assert!(err.contains("control_plane.database.url"), "{err}");
}

#[test]
fn a_bad_command_line_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(potok(dir.path()).arg("fly"));
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("unrecognized subcommand"), "{err}");
}

#[test]
fn config_check_prints_the_effective_config_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(potok(dir.path())
        .args(["config", "check", &example("potok.toml")])
        .env("POTOK_CLUSTER__SECRET", "s3cret-cluster-key-0123456789")
        .env("POTOK_EDGE__CACHE__MAX_BYTES", "1GiB"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[edge.cache]\nmax_bytes = \"1GiB\""), "{out}");
    assert!(out.contains("secret = \"<redacted>\""), "{out}");
    assert!(
        !out.contains("s3cret") && !err.contains("s3cret"),
        "{out}{err}"
    );
    assert!(err.contains("is valid"), "{err}");
}

#[test]
fn config_check_on_each_example_for_its_role() {
    let dir = tempfile::tempdir().unwrap();
    for (file, role) in [
        ("origin.toml", "origin"),
        ("edge.toml", "edge"),
        ("control-plane.toml", "control-plane"),
    ] {
        let (code, _, err) =
            run(potok(dir.path()).args(["config", "check", &example(file), "--role", role]));
        assert_eq!(code, 0, "{file}: {err}");
    }
}

#[test]
fn config_check_on_a_broken_file_exits_64_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[edge.cache]\nmax_bytes = \"lots\"\n").unwrap();
    let (code, out, err) = run(potok(dir.path()).args(["config", "check", bad.to_str().unwrap()]));
    assert_eq!(code, 64);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("edge.cache.max_bytes: expected a size like \"512MiB\""),
        "{err}"
    );
}

#[test]
fn encoders_lists_each_encoder_and_why_it_cannot_be_used() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(potok(dir.path()).arg("encoders"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("libx264      H.264  available"), "{out}");
    for hw in ["h264_nvenc", "h264_qsv", "h264_vaapi"] {
        let line = out.lines().find(|l| l.starts_with(hw)).unwrap();
        // Either this machine has the hardware, or the line says why not.
        assert!(
            line.ends_with("available") || line.contains("unavailable: "),
            "{line}"
        );
    }
    assert!(out.contains("auto -> "), "{out}");

    // An unknown configured encoder is refused with the list of names.
    let (code, _, err) = run(potok(dir.path())
        .arg("encoders")
        .env("POTOK_ORIGIN__TRANSCODE__ENCODER", "x265-fast"));
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("origin.transcode.encoder: must be \"auto\" or one of"),
        "{err}"
    );
}

#[test]
fn config_check_refusals_all_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let syntax = dir.path().join("syntax.toml");
    std::fs::write(&syntax, "[edge\n").unwrap();
    let (code, _, err) = run(potok(dir.path()).args(["config", "check", syntax.to_str().unwrap()]));
    assert_eq!(code, 64);
    assert!(err.contains("not valid TOML"), "{err}");

    let (code, _, err) = run(potok(dir.path()).args(["config", "check", "/nonexistent.toml"]));
    assert_eq!(code, 64);
    assert!(
        err.contains("cannot read config file /nonexistent.toml"),
        "{err}"
    );

    let (code, _, err) = run(potok(dir.path())
        .args(["config", "check", &example("potok.toml")])
        .env("POTOK_SHUTDOWN__DRAIN_TIMEOUT", "forever"));
    assert_eq!(code, 64);
    assert!(
        err.contains("shutdown.drain_timeout: expected a duration"),
        "{err}"
    );
    assert!(
        err.contains("(set by POTOK_SHUTDOWN__DRAIN_TIMEOUT)"),
        "{err}"
    );
}

#[test]
fn running_a_role_with_bad_config_exits_64_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    // A lone edge with nothing to pull from.
    let (code, _, err) = run(potok(dir.path()).arg("edge"));
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("edge.upstream.origins: at least one origin URL"),
        "{err}"
    );
}

#[test]
fn a_port_in_use_fails_start_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, _, err) = run(potok(dir.path())
        .arg("origin")
        .env("POTOK_ORIGIN__RTMP_LISTEN", "127.0.0.1:0")
        .env("POTOK_ORIGIN__HTTP_LISTEN", format!("127.0.0.1:{port}")));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "cannot listen on 127.0.0.1:{port} (origin.http_listen)"
        )),
        "{err}"
    );
}

fn all_on_port_zero(dir: &Path) -> Command {
    let mut cmd = potok(dir);
    cmd.arg("all")
        .env("POTOK_ORIGIN__HTTP_LISTEN", "127.0.0.1:0")
        .env("POTOK_ORIGIN__RTMP_LISTEN", "127.0.0.1:0")
        .env("POTOK_ORIGIN__RTMPS_LISTEN", "127.0.0.1:0")
        .env("POTOK_ORIGIN__SRT_LISTEN", "127.0.0.1:0")
        .env("POTOK_EDGE__HTTP_LISTEN", "127.0.0.1:0")
        .env("POTOK_EDGE__HTTPS_LISTEN", "127.0.0.1:0")
        .env("POTOK_CONTROL_PLANE__LISTEN", "127.0.0.1:0");
    cmd
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut potok = Running::start(&mut all_on_port_zero(dir.path()));
    for role in ["control-plane", "origin", "edge"] {
        let addr = potok.addr(role);
        assert_eq!(common::get(addr, "/readyz").await.status, 200, "{role}");
    }
    potok.signal("-TERM");
    assert_eq!(potok.exit_code(Duration::from_secs(20)), 0);
    assert!(
        dir.path().join("data").is_dir(),
        "the data directory was not created"
    );
}

/// An edge whose only origin accepts connections and never answers: a `/readyz` request is
/// then in flight for as long as the readiness timeout allows.
fn edge_with_a_silent_origin(dir: &Path, silent: &TcpListener, drain: &str) -> Command {
    let mut cmd = potok(dir);
    cmd.arg("edge")
        .env("POTOK_EDGE__HTTP_LISTEN", "127.0.0.1:0")
        .env(
            "POTOK_EDGE__UPSTREAM__ORIGINS",
            format!("[\"http://{}\"]", silent.local_addr().unwrap()),
        )
        .env("POTOK_EDGE__UPSTREAM__READ_TIMEOUT", "10m")
        .env("POTOK_HTTP__READINESS_TIMEOUT", "60s")
        .env("POTOK_SHUTDOWN__DRAIN_TIMEOUT", drain);
    cmd
}

/// Sends `GET /readyz` and returns once the edge's probe has reached the silent origin.
fn hold_a_request(
    edge: SocketAddr,
    silent: &TcpListener,
) -> (std::net::TcpStream, std::net::TcpStream) {
    use std::io::Write;
    let mut client = std::net::TcpStream::connect(edge).unwrap();
    client
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (probe, _) = silent.accept().unwrap();
    (client, probe)
}

#[tokio::test]
async fn the_drain_deadline_bounds_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut potok = Running::start(&mut edge_with_a_silent_origin(dir.path(), &silent, "300ms"));
    let edge = potok.addr("edge");
    let (mut client, _probe) = hold_a_request(edge, &silent);

    potok.signal("-TERM");
    assert_eq!(potok.exit_code(Duration::from_secs(20)), 0);
    potok.wait_for(
        "drain deadline passed with connections still open; exiting",
        |_| true,
    );
    // The held request never got an answer; its connection is gone with the process.
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut potok = Running::start(&mut edge_with_a_silent_origin(dir.path(), &silent, "1h"));
    let edge = potok.addr("edge");
    let _held = hold_a_request(edge, &silent);

    potok.signal("-TERM");
    potok.wait_for(
        "shutting down: no new connections, draining (signal again to exit now)",
        |_| true,
    );
    let asked = Instant::now();
    potok.signal("-INT");
    assert_eq!(potok.exit_code(Duration::from_secs(20)), 130);
    // Nowhere near the hour-long drain deadline.
    assert!(asked.elapsed() < Duration::from_secs(20));
}

/// `potok all --demo`: a streamer made through the API goes live with ffmpeg's test
/// pattern, with a goal and an overlay token; a second run logs into the same account
/// (its password kept with mode 0600) with a fresh key, the earlier one revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_demo_makes_a_streamer_that_goes_live() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut prefixes = Vec::new();
    for run in 0..2 {
        let mut potok = Running::start(all_on_port_zero(dir.path()).arg("--demo"));
        let cp = potok.addr("control-plane");
        potok.wait_for("demo streamer ready; publishing", |_| true);
        let live = common::until(
            Duration::from_secs(60),
            "the demo stream live",
            async || {
                let (_, active) =
                    common::call(cp, "GET", "/api/v1/streams/active", None, None).await;
                let items = active["items"].as_array().cloned().unwrap_or_default();
                items
                    .into_iter()
                    .find(|s| s["name"] == "demo" && s["status"] == "live")
            },
        )
        .await;
        assert_eq!(live["name"], "demo", "{live}");
        // Media, not just a publisher: the edge serves its playlists.
        let edge = potok.addr("edge");
        common::until(
            Duration::from_secs(30),
            "the demo stream at the edge",
            async || {
                let got = common::get(edge, "/live/demo/master.m3u8").await;
                (got.status == 200 && got.body.contains("#EXT-X-STREAM-INF")).then_some(())
            },
        )
        .await;
        let saved = dir.path().join("data/demo-account.json");
        let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "run {run}");
        let account: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
        let (s, session) = common::call(
            cp,
            "POST",
            "/api/v1/sessions",
            None,
            Some(serde_json::json!({"username": "demo", "password": account["password"]})),
        )
        .await;
        assert_eq!(s, 201, "{session}");
        let token = session["token"].as_str().unwrap();
        // The installation's first account: its admin too (the dashboard's every panel).
        let (_, me) = common::call(cp, "GET", "/api/v1/me", Some(token), None).await;
        assert_eq!(
            (&me["username"], &me["role"]),
            (&"demo".into(), &"admin".into()),
            "{me}"
        );
        let (_, keys) = common::call(cp, "GET", "/api/v1/stream-keys", Some(token), None).await;
        // One key listed (revoked ones are not), a new one each run.
        let keys = keys.as_array().unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert!(!prefixes.contains(&keys[0]["prefix"]), "{keys:?}");
        prefixes.push(keys[0]["prefix"].clone());
        let (_, goals) = common::call(cp, "GET", "/api/v1/channels/demo/goals", None, None).await;
        assert_eq!(goals.as_array().map(Vec::len), Some(1), "{goals}");
        let (_, overlays) =
            common::call(cp, "GET", "/api/v1/overlay-tokens", Some(token), None).await;
        assert!(!overlays.as_array().unwrap().is_empty(), "{overlays}");
        // Viewers can donate to it (the sandbox of `potok all`).
        let (s, opts) = common::call(
            cp,
            "GET",
            "/api/v1/channels/demo/donation-options",
            None,
            None,
        )
        .await;
        assert_eq!(s, 200, "{opts}");
        potok.signal("-TERM");
        assert_eq!(potok.exit_code(Duration::from_secs(20)), 0);
    }
}
