//! HTTP/3 over QUIC (quinn + h3) on the HTTPS port's UDP side, serving the same router as
//! the TCP listeners. Requests are GETs without bodies; responses are in memory already
//! (cache entries), so each is sent as headers plus one data frame.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use potok_service::CancellationToken;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tracing::{Instrument, debug, info, info_span};

/// Serves `endpoint` until `shutdown`, at most `max_connections` QUIC connections at once
/// and `per_address`'s limit from one client address. Idle connections are closed by
/// QUIC's own idle timeout (set from `http.idle_timeout` when the endpoint is made).
pub(crate) async fn serve(
    endpoint: quinn::Endpoint,
    router: Router,
    max_connections: usize,
    per_address: potok_service::http::PerAddress,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    loop {
        let incoming = tokio::select! {
            () = shutdown.cancelled() => break,
            i = endpoint.accept() => match i { Some(i) => i, None => break },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        let peer = incoming.remote_address();
        let Some(address) = per_address.try_take(peer.ip()) else {
            incoming.refuse();
            continue;
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(
            async move {
                if let Err(e) = connection(incoming, router, shutdown).await {
                    debug!(error = %e, "HTTP/3 connection ended");
                }
                drop(permit);
                drop(address);
            }
            .instrument(info_span!("h3", %peer)),
        );
    }
    endpoint.close(0u32.into(), b"shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    info!("HTTP/3 listener stopped");
}

async fn connection(
    incoming: quinn::Incoming,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let conn = incoming.await.map_err(|e| e.to_string())?;
    let peer = conn.remote_address();
    let mut h3 = h3::server::builder()
        .build::<_, Bytes>(h3_quinn::Connection::new(conn))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let resolver = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            r = h3.accept() => match r {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            },
        };
        let router = router.clone();
        tokio::spawn(async move {
            if let Err(e) = request(resolver, router, peer).await {
                debug!(error = %e, "HTTP/3 request failed");
            }
        });
    }
}

async fn request(
    resolver: h3::server::RequestResolver<h3_quinn::Connection, Bytes>,
    router: Router,
    peer: std::net::SocketAddr,
) -> Result<(), String> {
    let (req, mut stream) = resolver
        .resolve_request()
        .await
        .map_err(|e| e.to_string())?;
    let (parts, ()) = req.into_parts();
    let mut req = axum::http::Request::from_parts(parts, Body::empty());
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let resp = match router.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    stream
        .send_response(axum::http::Response::from_parts(parts, ()))
        .await
        .map_err(|e| e.to_string())?;
    if !bytes.is_empty() {
        stream.send_data(bytes).await.map_err(|e| e.to_string())?;
    }
    stream.finish().await.map_err(|e| e.to_string())
}
