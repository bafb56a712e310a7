//! The shared HTTP listener's connection limits: first-byte and idle deadlines, the
//! per-address cap and the ops reserve that keeps `/healthz` answering at the cap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use potok_config::{ListenAddr, Role};
use potok_service::ops::role_router;
use potok_service::{CancellationToken, HttpLimits, Metrics, RoleContext, RoleServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn limits() -> HttpLimits {
    HttpLimits {
        max_connections: 100,
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(500),
        max_connections_per_address: 0,
        max_header_bytes: 16 * 1024,
    }
}

async fn start(limits: HttpLimits) -> (SocketAddr, CancellationToken) {
    let ctx = RoleContext {
        metrics: Metrics::new(),
        shutdown: CancellationToken::new(),
        readiness_timeout: Duration::from_secs(1),
    };
    let routes = Router::new().route("/hello", get(|| async { "hello" }));
    let router = role_router(Role::Edge, routes, Vec::new(), &ctx);
    let addr = ListenAddr("127.0.0.1:0".parse().unwrap());
    let server = RoleServer::bind(Role::Edge, "edge.http_listen", addr, router, limits)
        .await
        .unwrap();
    let local = server.local_addr();
    tokio::spawn(server.run(ctx.shutdown.clone()));
    (local, ctx.shutdown)
}

/// Reads until the server closes the connection; `Err` if it is still open after `within`.
async fn closed_within(conn: &mut TcpStream, within: Duration) -> Result<(), ()> {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .map_err(|_| ())
}

async fn get_status(conn: &mut TcpStream, path: &str) -> String {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    head.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_first_byte_deadline() {
    let (addr, stop) = start(limits()).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    closed_within(&mut conn, Duration::from_secs(3))
        .await
        .expect("a silent connection is closed after header_read_timeout");
    stop.cancel();
}

#[tokio::test]
async fn an_idle_h2c_connection_is_closed() {
    let (addr, stop) = start(limits()).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    // HTTP/2 prior knowledge: the preface and an empty SETTINGS frame, then nothing.
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    closed_within(&mut conn, Duration::from_secs(4))
        .await
        .expect("an HTTP/2 connection without streams is closed after idle_timeout");
    stop.cancel();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_and_an_active_one_is_not() {
    let mut l = limits();
    l.header_read_timeout = Duration::from_secs(10);
    l.idle_timeout = Duration::from_millis(800);
    let (addr, stop) = start(l).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    // Requests every 300 ms keep it open past the idle timeout...
    for _ in 0..5 {
        assert_eq!(get_status(&mut conn, "/hello").await, "HTTP/1.1 200 OK");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // ...and silence closes it long before the 10 s header timeout would.
    closed_within(&mut conn, Duration::from_secs(4))
        .await
        .expect("an idle keep-alive connection is closed after idle_timeout");
    stop.cancel();
}

#[tokio::test]
async fn one_address_cannot_take_more_than_its_share() {
    let mut l = limits();
    l.header_read_timeout = Duration::from_secs(30);
    l.idle_timeout = Duration::from_secs(30);
    l.max_connections_per_address = 2;
    let (addr, stop) = start(l).await;
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    assert_eq!(get_status(&mut a, "/hello").await, "HTTP/1.1 200 OK");
    assert_eq!(get_status(&mut b, "/hello").await, "HTTP/1.1 200 OK");
    let mut c = TcpStream::connect(addr).await.unwrap();
    closed_within(&mut c, Duration::from_secs(2))
        .await
        .expect("the third connection from one address is closed");
    // Closing one makes room again (the server notices the close asynchronously).
    drop(a);
    let mut answer = None;
    for _ in 0..50 {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let _ = conn
            .write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
            .await;
        let mut buf = [0u8; 64];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), conn.read(&mut buf)).await
            && n > 0
        {
            answer = Some(String::from_utf8_lossy(&buf[..n]).to_string());
            break;
        }
    }
    assert!(
        answer
            .expect("a slot is free again")
            .starts_with("HTTP/1.1 200")
    );
    drop(b);
    stop.cancel();
}

#[tokio::test]
async fn healthz_answers_when_every_connection_slot_is_taken() {
    let mut l = limits();
    l.max_connections = 3;
    l.header_read_timeout = Duration::from_secs(30);
    l.idle_timeout = Duration::from_secs(30);
    let (addr, stop) = start(l).await;
    let mut hogs = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert_eq!(get_status(&mut c, "/hello").await, "HTTP/1.1 200 OK");
        hogs.push(c);
    }
    let mut health = TcpStream::connect(addr).await.unwrap();
    assert_eq!(get_status(&mut health, "/healthz").await, "HTTP/1.1 200 OK");
    let mut other = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        get_status(&mut other, "/hello").await,
        "HTTP/1.1 503 Service Unavailable"
    );
    stop.cancel();
}

mod metrics_access {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{Request, StatusCode};
    use potok_config::{Role, Secret};
    use potok_service::ops::{metrics_router, role_router};
    use potok_service::{CancellationToken, Metrics, RoleContext};
    use tower::ServiceExt;

    async fn status(router: &Router, peer: &str, auth: Option<&str>) -> StatusCode {
        let mut req = Request::get("/metrics");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let mut req = req.body(Body::empty()).unwrap();
        let peer: SocketAddr = peer.parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req).await.unwrap().status()
    }

    #[tokio::test]
    async fn role_ports_answer_metrics_to_loopback_or_to_the_token_only() {
        let ctx = RoleContext {
            metrics: Metrics::new(),
            shutdown: CancellationToken::new(),
            readiness_timeout: Duration::from_secs(1),
        };
        let router = role_router(Role::Edge, Router::new(), Vec::new(), &ctx);
        assert_eq!(
            status(&router, "127.0.0.1:5000", None).await,
            StatusCode::OK
        );
        assert_eq!(status(&router, "[::1]:5000", None).await, StatusCode::OK);
        assert_eq!(
            status(&router, "[::ffff:127.0.0.1]:5000", None).await,
            StatusCode::OK
        );
        assert_eq!(
            status(&router, "203.0.113.7:5000", None).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status(&router, "[2001:db8::1]:5000", None).await,
            StatusCode::FORBIDDEN
        );

        // With a token, everyone needs it, loopback included.
        ctx.metrics
            .set_token(Some(Secret::new("metrics-token-0123456789")));
        let good = Some("Bearer metrics-token-0123456789");
        let bad = Some("Bearer metrics-token-0123456780");
        assert_eq!(
            status(&router, "127.0.0.1:5000", None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&router, "203.0.113.7:5000", bad).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&router, "203.0.113.7:5000", good).await,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn the_metrics_listener_is_open_unless_a_token_is_set() {
        let metrics = Metrics::new();
        let router = metrics_router(&metrics);
        assert_eq!(
            status(&router, "203.0.113.7:5000", None).await,
            StatusCode::OK
        );
        metrics.set_token(Some(Secret::new("metrics-token-0123456789")));
        assert_eq!(
            status(&router, "203.0.113.7:5000", None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(
                &router,
                "203.0.113.7:5000",
                Some("Bearer metrics-token-0123456789")
            )
            .await,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn a_tls_connection_that_sends_nothing_after_the_handshake_is_closed() {
    use std::sync::Arc;

    use potok_service::tls;
    let ctx = RoleContext {
        metrics: Metrics::new(),
        shutdown: CancellationToken::new(),
        readiness_timeout: Duration::from_secs(1),
    };
    let router = role_router(Role::Edge, Router::new(), Vec::new(), &ctx);
    let addr = ListenAddr("127.0.0.1:0".parse().unwrap());
    let (material, pem) = tls::self_signed(vec!["localhost".into()]).unwrap();
    let server_config = tls::server_config(&material, &[b"h2", b"http/1.1"]).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = tcp.local_addr().unwrap();
    let server = RoleServer::bind(Role::Edge, "edge.http_listen", addr, router, limits())
        .await
        .unwrap()
        .with_tls(
            "https",
            tcp,
            tokio_rustls::TlsAcceptor::from(Arc::new(server_config)),
        );
    tokio::spawn(server.run(ctx.shutdown.clone()));

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    // Handshake done, then silence: closed after the first-byte deadline (300 ms).
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a silent TLS connection was kept open");
    ctx.shutdown.cancel();
}
