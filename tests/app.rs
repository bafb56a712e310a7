//! `potok all` (and single roles) started in-process on port 0: every role answers
//! `/healthz`, `/readyz` and `/metrics`; listener limits hold.

// Test helpers may panic on anything unexpected: that is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{closed_port, get, local_config};
use potok::App;
use potok_config::{Config, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An app serving in the background until [`Served::stop`].
struct Served {
    shutdown: potok_service::CancellationToken,
    running: tokio::task::JoinHandle<()>,
}

impl Served {
    fn start(app: App) -> Served {
        Served {
            shutdown: app.shutdown_token(),
            running: tokio::spawn(app.run()),
        }
    }

    /// Cancels and waits (bounded) for every role to drain.
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.running)
            .await
            .expect("roles did not stop within 10 s")
            .unwrap();
    }
}

async fn start(config: Config, roles: &[Role]) -> (App, std::net::SocketAddr) {
    config.validate(roles).unwrap();
    let app = App::bind(config, roles).await.unwrap();
    let first = app.addr(roles[0]).unwrap();
    (app, first)
}

#[tokio::test]
async fn every_role_of_potok_all_answers_health_readiness_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::bind(local_config(dir.path()), &Role::ALL)
        .await
        .unwrap();
    let addrs: Vec<_> = Role::ALL
        .iter()
        .map(|r| (*r, app.addr(*r).unwrap()))
        .collect();
    let served = Served::start(app);

    for (role, addr) in &addrs {
        assert_ne!(addr.port(), 0);
        let health = get(*addr, "/healthz").await;
        assert_eq!(health.status, 200, "{role} /healthz: {}", health.body);
        assert_eq!(health.json()["role"], role.as_str());
        assert_eq!(health.json()["version"], env!("CARGO_PKG_VERSION"));

        let ready = get(*addr, "/readyz").await;
        assert_eq!(ready.status, 200, "{role} /readyz: {}", ready.body);
        assert_eq!(ready.json()["status"], "ready");

        let metrics = get(*addr, "/metrics").await;
        assert_eq!(metrics.status, 200);
        assert!(
            metrics
                .content_type
                .starts_with("text/plain; version=0.0.4"),
            "{}",
            metrics.content_type
        );
        // One registry per process: every role's port shows every role.
        for r in Role::ALL {
            let series = format!(
                "potok_build_info{{role=\"{}\",version=\"{}\"}} 1",
                r.as_str(),
                env!("CARGO_PKG_VERSION")
            );
            assert!(
                metrics.body.contains(&series),
                "{role} /metrics lacks {series}"
            );
        }
        assert!(
            metrics.body.contains("process_resident_memory_bytes"),
            "{role}: no process metrics"
        );
    }

    // The edge of `potok all` found the origin of the same process, over HTTP.
    let edge_ready = get(addrs[2].1, "/readyz").await.json();
    assert_eq!(edge_ready["checks"][0]["name"], "upstream");

    served.stop().await;
}

#[tokio::test]
async fn metrics_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::bind(local_config(dir.path()), &Role::ALL)
        .await
        .unwrap();
    let edge = app.addr(Role::Edge).unwrap();
    let served = Served::start(app);
    // Traffic first, so that histograms and counters with labels are in the output.
    get(edge, "/healthz").await;
    get(edge, "/no/such/thing").await;
    let text = get(edge, "/metrics").await.body;

    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool not found: run scripts/setup (Debian package `prometheus`)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- metrics ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    served.stop().await;
}

#[tokio::test]
async fn requests_are_counted_by_route_never_by_raw_path() {
    let dir = tempfile::tempdir().unwrap();
    let (app, origin) = start(local_config(dir.path()), &[Role::Origin]).await;
    let served = Served::start(app);
    let missing = get(origin, "/attacker-chosen-path-123").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["code"], "NOT_FOUND");
    get(origin, "/healthz").await;
    let text = get(origin, "/metrics").await.body;
    assert!(
        text.contains(
            r#"potok_http_requests_total{role="origin",route="/healthz",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"potok_http_requests_total{role="origin",route="unmatched",status="404"} 1"#
        ),
        "{text}"
    );
    assert!(!text.contains("attacker-chosen"), "{text}");
    served.stop().await;
}

#[tokio::test]
async fn an_edge_whose_origins_are_down_is_not_ready_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = local_config(dir.path());
    let dead = format!("http://127.0.0.1:{}", closed_port());
    config.edge.upstream.origins = vec![dead.clone()];
    let (app, edge) = start(config, &[Role::Edge]).await;
    let served = Served::start(app);

    let ready = get(edge, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    let body = ready.json();
    assert_eq!(body["status"], "not_ready");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("upstream: no origin answered"),
        "{reason}"
    );
    assert!(reason.contains(&dead), "{reason}");
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    assert_eq!(body["checks"][0]["ok"], false);
    // Alive all the same.
    assert_eq!(get(edge, "/healthz").await.status, 200);

    served.stop().await;
}

#[tokio::test]
async fn an_origin_that_cannot_write_its_data_dir_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let config = local_config(dir.path());
    let data = config.node.data_dir.clone();
    let (app, origin) = start(config, &[Role::Origin]).await;
    let served = Served::start(app);
    assert_eq!(get(origin, "/readyz").await.status, 200);

    // The data directory turns into a file: storage is gone.
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::write(&data, b"not a directory").unwrap();
    let ready = get(origin, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready.json()["reason"]
            .as_str()
            .unwrap()
            .starts_with("storage: "),
        "{}",
        ready.body
    );

    served.stop().await;
}

#[tokio::test]
async fn the_connection_cap_is_taken_before_accept() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = local_config(dir.path());
    config.http.max_connections = 1;
    let (app, origin) = start(config, &[Role::Origin]).await;
    let served = Served::start(app);

    // The first client holds the only permit without sending anything.
    let holder = TcpStream::connect(origin).await.unwrap();
    // At the cap, the ops reserve still answers health checks, and only those.
    let mut c = TcpStream::connect(origin).await.unwrap();
    c.write_all(b"GET /live/x/master.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("the ops reserve answers")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503"));
    // Silent clients take the reserve (each for at most 2 s).
    let mut reserve = Vec::new();
    for _ in 0..potok_service::http::OPS_RESERVE {
        reserve.push(TcpStream::connect(origin).await.unwrap());
    }
    // With the reserve taken too, the next client waits in the backlog: make sure it is
    // *not* served.
    let mut second = TcpStream::connect(origin).await.unwrap();
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "second connection was served while the first held the only permit"
    );

    drop(holder);
    let n = tokio::time::timeout(Duration::from_secs(10), second.read(&mut buf))
        .await
        .expect("second connection never served after the first closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    served.stop().await;
}

#[tokio::test]
async fn slow_and_oversized_request_heads_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = local_config(dir.path());
    config.http.header_read_timeout = "200ms".parse().unwrap();
    config.http.max_header_bytes = "8KiB".parse().unwrap();
    let (app, origin) = start(config, &[Role::Origin]).await;
    let served = Served::start(app);

    // Slowloris: half a request head, then silence. The server hangs up.
    let mut slow = TcpStream::connect(origin).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a client that never finished its headers kept its connection"
    );

    // A head far over the limit is refused, not buffered.
    let mut big = TcpStream::connect(origin).await.unwrap();
    let filler = "a".repeat(64 * 1024);
    let req = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\n\r\n");
    let _ = big.write_all(req.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), big.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "oversized head got: {answer}"
    );

    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_potok_all_a_key_from_the_api_publishes_and_the_demo_key_still_works() {
    use common::call;
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let mut config = local_config(dir.path());
    config.origin.transcode.enabled = false;
    let (app, _) = start(config, &Role::ALL).await;
    let cp = app.addr(Role::ControlPlane).unwrap();
    let edge = app.addr(Role::Edge).unwrap();
    let rtmp = app.listener(Role::Origin, "rtmp").unwrap();
    let demo_key = app.demo_key().unwrap().expose().to_owned();
    let served = Served::start(app);

    common::account(cp, "root", "admin").await;
    let token = common::account(cp, "alice", "streamer").await;
    let (_, key) = call(
        cp,
        "POST",
        "/api/v1/stream-keys",
        Some(&token),
        Some(json!({})),
    )
    .await;
    let key = key["key"].as_str().unwrap().to_owned();

    let push = |key: &str| common::push(&format!("rtmp://{rtmp}/live/{key}"), "320x180", 30);
    // The origin registers with the in-process control plane first; publishing before
    // that is refused, so retry until the playlist appears.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut pushers = vec![push(&key), push(&demo_key)];
    for stream in ["alice", "demo"] {
        loop {
            if get(edge, &format!("/live/{stream}/source/index.m3u8"))
                .await
                .status
                == 200
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{stream} never played through the edge"
            );
            if let Ok(Some(_)) = pushers[0].try_wait() {
                pushers[0] = push(&key);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let (_, active) = call(cp, "GET", "/api/v1/streams/active", None, None).await;
    assert_eq!(active["items"][0]["name"], "alice", "{active}");
    for mut p in pushers {
        let _ = p.kill();
        let _ = p.wait();
    }
    served.stop().await;
}

/// Status of `GET path` with an optional `Authorization` value, over a fresh connection.
async fn status_with_auth(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> u16 {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let auth = auth.map_or_else(String::new, |a| format!("authorization: {a}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"))
}

#[tokio::test]
async fn with_a_cluster_secret_the_origin_serves_live_media_only_to_its_holders() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = local_config(dir.path());
    let secret = "a-cluster-secret-for-this-test-only";
    config.cluster.secret = Some(potok_config::Secret::new(secret));
    let (app, origin) = start(config, &[Role::Origin]).await;
    let served = Served::start(app);

    let live = "/live/demo/master.m3u8";
    assert_eq!(status_with_auth(origin, live, None).await, 401);
    let wrong = "Bearer a-cluster-secret-for-this-test-onlx";
    assert_eq!(status_with_auth(origin, live, Some(wrong)).await, 401);
    let media = "/live/demo/source/1.m4s";
    assert_eq!(status_with_auth(origin, media, None).await, 401);
    let right = format!("Bearer {secret}");
    assert_eq!(status_with_auth(origin, live, Some(&right)).await, 404);
    // Health stays open for load balancers and probes.
    assert_eq!(status_with_auth(origin, "/healthz", None).await, 200);
    assert_eq!(status_with_auth(origin, "/readyz", None).await, 200);
    served.stop().await;
}

#[tokio::test]
async fn potok_all_keeps_its_origin_on_loopback_and_its_edge_pulls_with_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = local_config(dir.path());
    config.origin.http_listen = "0.0.0.0:0".parse().unwrap();
    let app = App::bind(config, &Role::ALL).await.unwrap();
    let origin = app.addr(Role::Origin).unwrap();
    let edge = app.addr(Role::Edge).unwrap();
    assert!(origin.ip().is_loopback(), "origin listens on {origin}");
    assert!(app.config().cluster.secret.is_some());
    let served = Served::start(app);

    let live = "/live/demo/master.m3u8";
    assert_eq!(status_with_auth(origin, live, None).await, 401);
    // The edge sends the secret: the origin's answer (no such stream yet) comes through.
    assert_eq!(status_with_auth(edge, live, None).await, 404);
    served.stop().await;
}

#[tokio::test]
async fn metrics_get_a_listener_of_their_own_and_the_token_guards_every_port() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = local_config(dir.path());
    config.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let token = "metrics-token-for-this-test";
    config.metrics.token = Some(potok_config::Secret::new(token));
    let (app, edge) = start(config, &[Role::Edge, Role::Origin]).await;
    let metrics = app.metrics_addr().expect("a metrics listener");
    let origin = app.addr(Role::Origin).unwrap();
    let served = Served::start(app);

    let bearer = format!("Bearer {token}");
    for addr in [metrics, edge, origin] {
        assert_eq!(
            status_with_auth(addr, "/metrics", None).await,
            401,
            "{addr}"
        );
        assert_eq!(
            status_with_auth(addr, "/metrics", Some(&bearer)).await,
            200,
            "{addr}"
        );
    }
    assert_eq!(status_with_auth(metrics, "/healthz", None).await, 200);
    served.stop().await;
}

/// Issue 11, item 1: in `potok all` the demo stream's name (like every `origin.streams`
/// name) belongs to the configuration: once the origin has registered, nobody can sign up
/// under it and take over `/live/demo`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_potok_all_nobody_can_sign_up_as_a_configured_stream() {
    use common::call;
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let mut config = local_config(dir.path());
    config.origin.transcode.enabled = false;
    let (app, _) = start(config, &Role::ALL).await;
    let cp = app.addr(Role::ControlPlane).unwrap();
    let served = Served::start(app);
    let admin = common::account(cp, "root", "admin").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, nodes) = call(cp, "GET", "/api/v1/nodes", Some(&admin), None).await;
        if nodes
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["role"] == "origin"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the origin never registered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, e) = call(
        cp,
        "POST",
        "/api/v1/users",
        None,
        Some(json!({"username": "demo", "password": "a long password", "role": "streamer"})),
    )
    .await;
    assert_eq!((s, e["code"].as_str()), (409, Some("CONFLICT")), "{e}");
    served.stop().await;
}
