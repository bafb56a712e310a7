//! The edge's side of the origin HTTP API: which origins serve a stream (a [`Resolver`]:
//! the configured list, or the control plane per stream — cached, asked again when every
//! origin it named fails to connect, which is how edges follow a stream to a new origin
//! after a failover), pooled connections with connect and read timeouts, and failover to
//! the next origin only when the request never reached the first (a failed connect), which
//! makes the retry safe.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HeaderMap, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use potok_config::UpstreamConfig;
use potok_service::ReadinessCheck;

/// Largest object accepted from an origin (a segment of a high-bitrate rung is a few MiB).
pub const MAX_OBJECT_BYTES: usize = 64 << 20;

/// A boxed future of origin URLs.
pub type OriginsFuture<'a> = std::pin::Pin<Box<dyn Future<Output = Vec<String>> + Send + 'a>>;

/// Which origins may serve a stream, best first.
pub trait Resolver: Send + Sync + 'static {
    /// Base URLs (`http://origin-1:8081`) for `stream`; for `""`, every origin (readiness).
    fn origins<'a>(&'a self, stream: &'a str) -> OriginsFuture<'a>;

    /// None of the origins given for `stream` could be reached: forget the answer.
    fn failed(&self, _stream: &str) {}
}

/// The configured origin list, for every stream.
pub struct StaticOrigins(pub Vec<String>);

impl Resolver for StaticOrigins {
    fn origins<'a>(&'a self, _stream: &'a str) -> OriginsFuture<'a> {
        let list = self.0.clone();
        Box::pin(async move { list })
    }
}

/// Positive answers from the control plane are reused this long.
const RESOLVED_TTL: Duration = Duration::from_secs(5);
/// "Not live anywhere" is reused this long.
const UNKNOWN_TTL: Duration = Duration::from_secs(1);

/// Asks the control plane which origin holds each stream
/// (`GET /api/v1/cluster/streams/{name}/origin`), caching answers briefly.
pub struct ControlPlaneOrigins {
    cp: potok_service::cluster::ControlPlane,
    cache: std::sync::Mutex<std::collections::HashMap<String, (Instant, Vec<String>)>>,
}

/// Streams whose answers are cached at most (the cache is cleared when full).
const MAX_RESOLVED: usize = 100_000;

impl ControlPlaneOrigins {
    /// A resolver asking `cp`.
    pub fn new(cp: potok_service::cluster::ControlPlane) -> Self {
        ControlPlaneOrigins {
            cp,
            cache: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn cache(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (Instant, Vec<String>)>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Resolver for ControlPlaneOrigins {
    fn origins<'a>(&'a self, stream: &'a str) -> OriginsFuture<'a> {
        Box::pin(async move {
            let path = if stream.is_empty() {
                "/origins".to_owned()
            } else {
                if let Some((until, list)) = self.cache().get(stream)
                    && *until > Instant::now()
                {
                    return list.clone();
                }
                format!("/streams/{stream}/origin")
            };
            let (list, ttl) = match self.cp.get::<potok_config::wire::Resolved>(&path).await {
                Ok(r) => (r.origins, RESOLVED_TTL),
                Err(e) => {
                    if e.code().is_none() {
                        tracing::warn!(error = %e, "cannot ask the control plane for origins");
                    }
                    (Vec::new(), UNKNOWN_TTL)
                }
            };
            if !stream.is_empty() {
                let mut cache = self.cache();
                if cache.len() >= MAX_RESOLVED {
                    cache.clear();
                }
                cache.insert(stream.to_owned(), (Instant::now() + ttl, list.clone()));
            }
            list
        })
    }

    fn failed(&self, stream: &str) {
        self.cache().remove(stream);
    }
}

/// An origin's answer.
pub struct Fetched {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// Why no origin answered.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No origin accepted a connection (retried on each): 502.
    #[error("no origin reachable: {0}")]
    Unreachable(String),
    /// An origin took the request and did not answer in time: 504.
    #[error("origin timed out")]
    Timeout,
    /// The answer broke off or was too large: 502.
    #[error("origin answer unusable: {0}")]
    Broken(String),
}

/// Pooled client for the origins.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpConnector, Empty<Bytes>>,
    resolver: Arc<dyn Resolver>,
    read_timeout: Duration,
    hold_timeout: Duration,
    /// `Authorization: Bearer <cluster.secret>`, sent on every origin pull.
    auth: Option<HeaderValue>,
}

impl Upstream {
    /// A client with `cfg`'s timeouts over `resolver`; with `secret` (the cluster secret),
    /// every pull carries it as a bearer token, which origins with a secret require.
    pub fn new(
        cfg: &UpstreamConfig,
        resolver: Arc<dyn Resolver>,
        secret: Option<&potok_config::Secret>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.connect_timeout.get()));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            // Below the origins' http.idle_timeout (60 s by default), so the edge drops an
            // idle pooled connection before the origin closes it under a new request.
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(connector);
        Upstream {
            client,
            resolver,
            read_timeout: cfg.read_timeout.get(),
            hold_timeout: cfg.hold_timeout.get(),
            auth: secret.and_then(potok_service::cluster::bearer_header),
        }
    }

    fn get(&self, uri: hyper::Uri) -> hyper_util::client::legacy::ResponseFuture {
        let mut req = hyper::Request::new(Empty::new());
        *req.uri_mut() = uri;
        if let Some(auth) = &self.auth {
            req.headers_mut()
                .insert(hyper::header::AUTHORIZATION, auth.clone());
        }
        self.client.request(req)
    }

    /// How long a request may wait: longer for those the origin holds on purpose.
    pub fn timeout(&self, held: bool) -> Duration {
        if held {
            self.hold_timeout
        } else {
            self.read_timeout
        }
    }

    /// GETs `path_and_query` of `stream` from the first origin that takes the connection.
    pub async fn fetch(
        &self,
        stream: &str,
        path_and_query: &str,
        held: bool,
    ) -> Result<(Fetched, Duration), UpstreamError> {
        match self.fetch_once(stream, path_and_query, held).await {
            Err(UpstreamError::Unreachable(why)) => {
                // The origins named may be stale (the stream moved after a failover): ask
                // again once.
                self.resolver.failed(stream);
                match self.fetch_once(stream, path_and_query, held).await {
                    Err(UpstreamError::Unreachable(again)) => {
                        Err(UpstreamError::Unreachable(format!("{why}; then {again}")))
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    async fn fetch_once(
        &self,
        stream: &str,
        path_and_query: &str,
        held: bool,
    ) -> Result<(Fetched, Duration), UpstreamError> {
        let origins = self.resolver.origins(stream).await;
        if origins.is_empty() {
            // No origin holds the stream: the same answer an origin gives for it.
            return Ok((
                Fetched {
                    status: 404,
                    headers: HeaderMap::new(),
                    body: Bytes::from_static(b"stream not found\n"),
                },
                Duration::ZERO,
            ));
        }
        let mut failures = Vec::new();
        let timeout = self.timeout(held);
        for origin in origins {
            let url = format!("{}{path_and_query}", origin.trim_end_matches('/'));
            let uri: hyper::Uri = match url.parse() {
                Ok(u) => u,
                Err(e) => {
                    failures.push(format!("{origin}: {e}"));
                    continue;
                }
            };
            let started = Instant::now();
            let resp = match tokio::time::timeout(timeout, self.get(uri)).await {
                Err(_) => return Err(UpstreamError::Timeout),
                Ok(Err(e)) if e.is_connect() => {
                    // Never sent: the next origin may take it.
                    failures.push(format!("{origin}: {}", describe(&e)));
                    continue;
                }
                Ok(Err(e)) => return Err(UpstreamError::Broken(describe(&e))),
                Ok(Ok(r)) => r,
            };
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = Limited::new(resp.into_body(), MAX_OBJECT_BYTES);
            let left = timeout.saturating_sub(started.elapsed());
            let body = match tokio::time::timeout(left, body.collect()).await {
                Err(_) => return Err(UpstreamError::Timeout),
                Ok(Err(e)) => return Err(UpstreamError::Broken(e.to_string())),
                Ok(Ok(b)) => b.to_bytes(),
            };
            return Ok((
                Fetched {
                    status,
                    headers,
                    body,
                },
                started.elapsed(),
            ));
        }
        Err(UpstreamError::Unreachable(failures.join(", ")))
    }

    /// A readiness check that passes when at least one origin answers `GET /healthz` with
    /// 200; the failure names every origin and why it failed.
    pub fn readiness(&self) -> ReadinessCheck {
        let client = self.client.clone();
        let resolver = Arc::clone(&self.resolver);
        let read_timeout = self.read_timeout;
        ReadinessCheck::new("upstream", move || {
            let client = client.clone();
            let resolver = Arc::clone(&resolver);
            async move {
                let origins = resolver.origins("").await;
                if origins.is_empty() {
                    return Err("no origin configured".to_owned());
                }
                let mut failures = Vec::new();
                for origin in &origins {
                    let url = format!("{}/healthz", origin.trim_end_matches('/'));
                    let uri = match url.parse::<hyper::Uri>() {
                        Ok(u) => u,
                        Err(e) => {
                            failures.push(format!("{url}: {e}"));
                            continue;
                        }
                    };
                    match tokio::time::timeout(read_timeout, client.get(uri)).await {
                        Ok(Ok(resp)) if resp.status().is_success() => return Ok(()),
                        Ok(Ok(resp)) => {
                            failures.push(format!("{url}: HTTP {}", resp.status().as_u16()))
                        }
                        Ok(Err(e)) => failures.push(format!("{url}: {}", describe(&e))),
                        Err(_) => failures.push(format!(
                            "{url}: no answer within {}ms",
                            read_timeout.as_millis()
                        )),
                    }
                }
                Err(format!("no origin answered: {}", failures.join(", ")))
            }
        })
    }
}

/// The innermost cause of a client error ("connection refused"), which is what an operator
/// needs; hyper's outer message is only "client error (Connect)".
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
