//! The OpenAPI document against the running API: schemathesis (PyPI; `scripts/setup`
//! installs it) generates requests from `/api/v1/openapi.json` — valid and invalid bodies,
//! queries and paths, with and without credentials — and checks every answer: no 5xx, only
//! documented statuses, the documented content type and schema, invalid input refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use potok_config::{Config, Role, Secret};
use potok_service::{Metrics, RoleContext};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.node.data_dir = dir.path().to_path_buf();
    config.control_plane.listen = "127.0.0.1:0".parse().unwrap();
    config.cluster.secret = Some(Secret::new("schemathesis-cluster-secret"));
    // The generator sends thousands of requests from one address: limits would answer 429
    // to most of them and hide the handlers behind.
    config.control_plane.auth_failures_per_minute = 1_000_000;
    config.control_plane.signups_per_hour = 1_000_000;
    // One registered origin stays alive for the run, so /ingest has somewhere to send a
    // streamer (its 503 NO_ORIGIN_AVAILABLE is tested in the API tests).
    config.control_plane.node_timeout = "1h".parse().unwrap();
    config.validate(&[Role::ControlPlane]).unwrap();
    let ctx = RoleContext {
        metrics: Metrics::new(),
        shutdown: CancellationToken::new(),
        readiness_timeout: Duration::from_secs(2),
    };
    let server = potok_control_plane::bind(&config, &ctx).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.run(ctx.shutdown.clone()));

    // An admin's token, so the generator reaches the handlers behind authentication.
    let client = reqwest_like::Client::new(addr);
    client
        .post(
            "/api/v1/users",
            r#"{"username":"root","password":"a long password"}"#,
        )
        .await;
    let session = client
        .post(
            "/api/v1/sessions",
            r#"{"username":"root","password":"a long password"}"#,
        )
        .await;
    let token = serde_json::from_str::<serde_json::Value>(&session).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let registered = client
        .post_with(
            "/api/v1/cluster/nodes",
            r#"{"role":"origin","name":"o1","http_url":"http://127.0.0.1:9","rtmp_url":"rtmp://127.0.0.1:9/live"}"#,
            "schemathesis-cluster-secret",
        )
        .await;
    assert!(registered.contains("node_id"), "{registered}");

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
    ctx.shutdown.cancel();
}

/// A tiny HTTP/1.1 client for the set-up requests (the test's real client is schemathesis).
mod reqwest_like {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client as Hyper;
    use hyper_util::rt::TokioExecutor;

    pub(crate) struct Client {
        addr: SocketAddr,
        inner: Hyper<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    }

    impl Client {
        pub(crate) fn new(addr: SocketAddr) -> Self {
            Client {
                addr,
                inner: Hyper::builder(TokioExecutor::new()).build_http(),
            }
        }

        pub(crate) async fn post(&self, path: &str, body: &str) -> String {
            self.request(path, body, None).await
        }

        pub(crate) async fn post_with(&self, path: &str, body: &str, bearer: &str) -> String {
            self.request(path, body, Some(bearer)).await
        }

        async fn request(&self, path: &str, body: &str, bearer: Option<&str>) -> String {
            let mut req = hyper::Request::post(format!("http://{}{path}", self.addr))
                .header("content-type", "application/json");
            if let Some(b) = bearer {
                req = req.header("authorization", format!("Bearer {b}"));
            }
            let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
            let resp = self.inner.request(req).await.unwrap();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }
}
