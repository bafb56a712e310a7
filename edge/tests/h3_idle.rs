//! HTTP/3 connections obey `http.idle_timeout` like the TCP listeners' connections.
//! Run alone with `cargo test -p potok-edge --test h3_idle`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use potok_config::{Config, Role};
use potok_service::{CancellationToken, Metrics, RoleContext};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

#[tokio::test]
async fn an_idle_http3_connection_is_closed_after_the_idle_timeout() {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.node.data_dir = data.path().to_path_buf();
    config.edge.http_listen = "127.0.0.1:0".parse().unwrap();
    config.edge.https_listen = "127.0.0.1:0".parse().unwrap();
    config.edge.tls.self_signed = true;
    config.edge.upstream.origins = vec!["http://127.0.0.1:9".into()];
    config.edge.upstream.hold_timeout = "1s".parse().unwrap();
    config.http.idle_timeout = "2s".parse().unwrap();
    config.validate(&[Role::Edge]).unwrap();
    let ctx = RoleContext {
        metrics: Metrics::new(),
        shutdown: CancellationToken::new(),
        readiness_timeout: Duration::from_secs(2),
    };
    let server = potok_edge::bind(&config, &ctx).await.unwrap();
    let h3 = server.addr_of("h3").unwrap();
    tokio::spawn(server.run(ctx.shutdown.clone()));

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(potok_edge::dev_cert_path(&config)).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    // The client would wait 60 s itself: the 2 s can only come from the server.
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(60)).unwrap(),
    ));
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.transport_config(Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client);

    let conn = endpoint.connect(h3, "localhost").unwrap().await.unwrap();
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
    assert!(closed.is_ok(), "an idle HTTP/3 connection was kept open");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
    ctx.shutdown.cancel();
}
