//! The OpenAPI document against the running API: schemathesis (PyPI; `scripts/setup`
//! installs it) generates requests from `/api/v1/openapi.json` — valid and invalid bodies,
//! queries and paths, with and without credentials — and checks every answer: no 5xx, only
//! documented statuses, the documented content type and schema, invalid input refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing() {
    let cp = common::start(|c| {
        // The generator sends thousands of requests from one address: limits would answer
        // 429 to most of them and hide the handlers behind.
        c.control_plane.auth_failures_per_minute = 1_000_000;
        c.control_plane.signups_per_hour = 1_000_000;
        // One registered origin stays alive for the run, so /ingest has somewhere to send
        // a streamer (its 503 NO_ORIGIN_AVAILABLE is tested in the API tests).
        c.control_plane.node_timeout = "1h".parse().unwrap();
        // The same for the donation velocity rules and the daily limit (tested in
        // tests/payments.rs).
        let p = &mut c.control_plane.payments;
        p.fraud.per_donor_per_hour = 1_000_000;
        p.fraud.per_address_per_hour = 1_000_000;
        p.currencies.get_mut("RUB").unwrap().per_donor_per_day = 1_000_000_000_000;
    })
    .await;
    let addr = cp.addr;
    let dir = tempfile::tempdir().unwrap();

    // An admin's token, so the generator reaches the handlers behind authentication.
    let login = json!({"username": "root", "password": "a long password"});
    assert_eq!(
        cp.call("POST", "/api/v1/users", None, Some(login.clone()))
            .await
            .0,
        201
    );
    let (_, session) = cp.call("POST", "/api/v1/sessions", None, Some(login)).await;
    let token = session["token"].as_str().unwrap().to_owned();
    let origin = json!({"role": "origin", "name": "o1", "http_url": "http://127.0.0.1:9",
        "rtmp_url": "rtmp://127.0.0.1:9/live"});
    let (s, registered) = cp
        .call(
            "POST",
            "/api/v1/cluster/nodes",
            Some(common::SECRET),
            Some(origin),
        )
        .await;
    assert_eq!(s, 200, "{registered}");

    let report = dir.path().join("report");
    // Run as a module of the same python3 scripts/setup installed it for.
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-m", "schemathesis.cli", "run"])
        .arg(format!("http://{addr}/api/v1/openapi.json"))
        .args(["--checks", "all"])
        // Cluster endpoints take the cluster secret, not the token: schemathesis cannot
        // tell the two bearer schemes apart, so they are left to the API tests; the
        // WebSocket upgrade is tested by tests/chat.rs.
        .args(["--exclude-path-regex", "^/api/v1/(cluster/|realtime$)"])
        // Revoking its own token would sign the generator out for the rest of the run.
        .args(["--exclude-operation-id", "revoke_token"])
        // One worker: stateful scenarios share the admin's keys and tokens, and a second
        // worker revoking a key another just created reads as a false "created resource
        // not found".
        .args(["--max-examples", "20", "--workers", "1", "--seed", "1"])
        .args(["--request-timeout", "10", "--max-time", "60"])
        .arg("--report-dir")
        .arg(&report)
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .env("NO_COLOR", "1")
        // Its cache of found failures goes with the test's directory, not the checkout.
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("python3 not found");
    // --max-time bounds the run; the wait is bounded too in case it hangs.
    let pid = child.id();
    let waiter = tokio::task::spawn_blocking(move || child.wait_with_output());
    let out = match tokio::time::timeout(Duration::from_secs(400), waiter).await {
        Ok(out) => out.unwrap().unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
            panic!("schemathesis ran for more than 400 s");
        }
    };
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("No module named schemathesis"),
        "schemathesis is missing: scripts/setup installs it (pip)"
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(text.contains("passed"), "{text}");
    drop(cp);
}
