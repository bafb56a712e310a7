//! `bench edge-h3`: the edge's cache hits over HTTP/3 (quinn + h3 client) against the same
//! over HTTP/1.1 keep-alive (hyper client), same client design — C connections, each looping
//! GETs of one object for the duration — in one run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Requests and bytes per second.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rate {
    /// Requests per second.
    pub rps: f64,
    /// Body bytes per second.
    pub bytes_per_sec: f64,
}

fn rate(requests: &AtomicU64, bytes: &AtomicU64, took: Duration) -> Rate {
    let s = took.as_secs_f64().max(1e-9);
    Rate {
        rps: requests.load(Ordering::Relaxed) as f64 / s,
        bytes_per_sec: bytes.load(Ordering::Relaxed) as f64 / s,
    }
}

/// HTTP/1.1 keep-alive: `connections` loops over one pooled client.
pub async fn h1(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<Rate> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(connections)
        .build_http();
    let (requests, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, requests, bytes) = (client.clone(), Arc::clone(&requests), Arc::clone(&bytes));
        let uri: hyper::Uri = format!("http://{addr}{path}").parse()?;
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let Ok(resp) = client.get(uri.clone()).await else {
                    continue;
                };
                let Ok(body) = resp.into_body().collect().await else {
                    continue;
                };
                bytes.fetch_add(body.to_bytes().len() as u64, Ordering::Relaxed);
                requests.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(rate(&requests, &bytes, started.elapsed()))
}

fn client_config(cert_pem: &std::path::Path) -> anyhow::Result<quinn::ClientConfig> {
    let pem = std::fs::read(cert_pem)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

/// HTTP/3: `connections` QUIC connections, each looping GETs.
pub async fn h3(
    port: u16,
    cert_pem: &std::path::Path,
    path: &str,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<Rate> {
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    endpoint.set_default_client_config(client_config(cert_pem)?);
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let (requests, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let conn = endpoint
            .connect(server, "localhost")?
            .await
            .context("QUIC connect")?;
        let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
        let (requests, bytes) = (Arc::clone(&requests), Arc::clone(&bytes));
        let uri = format!("https://localhost:{port}{path}");
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let Ok(req) = hyper::Request::get(uri.as_str()).body(()) else {
                    return;
                };
                let Ok(mut stream) = send.send_request(req).await else {
                    return;
                };
                if stream.finish().await.is_err() || stream.recv_response().await.is_err() {
                    return;
                }
                let mut n = 0u64;
                while let Ok(Some(mut chunk)) = stream.recv_data().await {
                    n += chunk.remaining() as u64;
                    chunk.advance(chunk.remaining());
                }
                bytes.fetch_add(n, Ordering::Relaxed);
                requests.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let r = rate(&requests, &bytes, started.elapsed());
    endpoint.close(0u32.into(), b"done");
    Ok(r)
}
