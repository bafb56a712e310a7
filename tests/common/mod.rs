//! Helpers shared by the binary's integration tests: a tiny HTTP client and raw sockets.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod process;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A response's status, content type and body.
pub struct Got {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// GET `http://addr/path` with a fresh connection, failing the test after 10 s.
pub async fn get(addr: SocketAddr, path: &str) -> Got {
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let uri = format!("http://{addr}{path}").parse().unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .unwrap_or_else(|_| panic!("GET {path} on {addr}: no answer in 10 s"))
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"));
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        content_type,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
