//! The client origins and edges use to talk to the control plane (`cluster.control_plane_url`,
//! `cluster.secret`): JSON over pooled HTTP/1.1 with a deadline per call, messages from
//! `potok_config::wire`. The control plane uses the same client, [`ControlPlane::node`], for
//! an origin's recording API.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Method;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use potok_config::Secret;
use potok_config::wire::{CLUSTER_PREFIX, ErrorBody};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest answer read from the control plane.
const MAX_ANSWER: usize = 1 << 20;

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The control plane answered with an error.
    #[error("control plane answered {status}: {} ({})", body.message, body.code)]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its error body.
        body: ErrorBody,
    },
    /// It could not be reached or did not answer in time; retrying is safe.
    #[error("control plane unreachable: {0}")]
    Unreachable(String),
}

impl CallError {
    /// The error code, when the control plane answered one.
    pub fn code(&self) -> Option<&str> {
        match self {
            CallError::Refused { body, .. } => Some(&body.code),
            CallError::Unreachable(_) => None,
        }
    }
}

/// The control plane's cluster API.
#[derive(Clone)]
pub struct ControlPlane {
    base: String,
    secret: Secret,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    prefix: &'static str,
}

impl ControlPlane {
    /// A client for `base` (`http://control:8090`).
    pub fn new(base: &str, secret: Secret, timeout: Duration) -> Self {
        Self::with_prefix(base, secret, timeout, CLUSTER_PREFIX)
    }

    /// A client for a node's own API at `base` (an origin's `http_url`): paths are sent as
    /// given, with the cluster secret as the bearer token (or any bearer token: a user's
    /// session for the REST API; empty: none).
    pub fn node(base: &str, secret: Secret, timeout: Duration) -> Self {
        Self::with_prefix(base, secret, timeout, "")
    }

    fn with_prefix(base: &str, secret: Secret, timeout: Duration, prefix: &'static str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        ControlPlane {
            base: base.trim_end_matches('/').to_owned(),
            secret,
            // Idle pooled connections are dropped before the control plane's
            // http.idle_timeout (60 s by default) would close them under a request.
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            timeout,
            prefix,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET {prefix}{path}`.
    pub async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R, CallError> {
        self.call(Method::GET, path, None).await
    }

    /// `POST {prefix}{path}` with a JSON body.
    pub async fn post<T: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<R, CallError> {
        let body = serde_json::to_vec(body).map_err(|e| CallError::Unreachable(e.to_string()))?;
        self.call(Method::POST, path, Some(body)).await
    }

    /// `DELETE {prefix}{path}`.
    pub async fn delete<R: DeserializeOwned>(&self, path: &str) -> Result<R, CallError> {
        self.call(Method::DELETE, path, None).await
    }

    async fn call<R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<R, CallError> {
        let url = format!("{}{}{path}", self.base, self.prefix);
        let mut req = hyper::Request::builder().method(method).uri(&url);
        // An empty secret: an anonymous call.
        if !self.secret.expose().is_empty() {
            req = req.header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.secret.expose()),
            );
        }
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| CallError::Unreachable(innermost(&e)))?;
            let status = resp.status().as_u16();
            let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| CallError::Unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, CallError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| CallError::Unreachable(format!("no answer from {url} in time")))??;
        if (200..300).contains(&status) {
            serde_json::from_slice(&bytes)
                .map_err(|e| CallError::Unreachable(format!("unexpected answer from {url}: {e}")))
        } else {
            let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
                code: "UNKNOWN".into(),
                message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            });
            if status >= 500 && body.code == "UNKNOWN" {
                return Err(CallError::Unreachable(format!("HTTP {status}")));
            }
            Err(CallError::Refused { status, body })
        }
    }
}

fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Keeps a node registered with the control plane: registers (retrying until it works),
/// then heartbeats at the interval the control plane asks for, registering again when it
/// forgets the node (a control plane restart, or this node declared dead). `beat` builds
/// each heartbeat; `reply` gets each answer. Ends at shutdown.
pub async fn keep_registered(
    cp: ControlPlane,
    register: potok_config::wire::Register,
    node_id: std::sync::Arc<std::sync::RwLock<Option<String>>>,
    mut beat: impl FnMut() -> potok_config::wire::Heartbeat + Send,
    mut reply: impl FnMut(potok_config::wire::HeartbeatReply) + Send,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use potok_config::wire::{HeartbeatReply, Registered};
    let set_id = |id: Option<String>| {
        *node_id
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = id;
    };
    let mut failures = 0u32;
    loop {
        let registered: Registered = match cp.post("/nodes", &register).await {
            Ok(r) => r,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    tracing::warn!(error = %e, control_plane = %cp.base(), "cannot register with the control plane; retrying");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        failures = 0;
        tracing::info!(node_id = %registered.node_id, control_plane = %cp.base(), "registered with the control plane");
        set_id(Some(registered.node_id.clone()));
        let every = Duration::from_millis(registered.heartbeat_ms.clamp(100, 60_000));
        let path = format!("/nodes/{}/heartbeat", registered.node_id);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            match cp.post::<_, HeartbeatReply>(&path, &beat()).await {
                Ok(r) => {
                    failures = 0;
                    reply(r);
                }
                Err(CallError::Refused { status: 404, .. }) => {
                    tracing::warn!("the control plane forgot this node; registering again");
                    break;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(30) {
                        tracing::warn!(error = %e, "heartbeat failed");
                    }
                }
            }
        }
    }
}

/// How fast a byte counter grows between calls (heartbeat egress), in bytes per second.
pub struct RateMeter {
    counter: prometheus::IntCounter,
    last: (std::time::Instant, u64),
}

impl RateMeter {
    /// Starts measuring `counter` now.
    pub fn new(counter: prometheus::IntCounter) -> Self {
        let last = (std::time::Instant::now(), counter.get());
        RateMeter { counter, last }
    }

    /// Bytes per second since the previous call.
    pub fn sample(&mut self) -> u64 {
        let now = std::time::Instant::now();
        let value = self.counter.get();
        let secs = now.duration_since(self.last.0).as_secs_f64();
        let rate = if secs > 0.0 {
            (value.saturating_sub(self.last.1) as f64 / secs) as u64
        } else {
            0
        };
        self.last = (now, value);
        rate
    }
}

/// CPU used by this process between calls, in cores (from `/proc/self/stat`; 0 elsewhere).
pub struct CpuMeter {
    last: Option<(std::time::Instant, u64)>,
}

impl Default for CpuMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuMeter {
    /// Starts measuring now.
    pub fn new() -> Self {
        CpuMeter {
            last: process_ticks().map(|t| (std::time::Instant::now(), t)),
        }
    }

    /// Cores used on average since the previous call.
    pub fn sample(&mut self) -> f64 {
        let now = std::time::Instant::now();
        let Some(ticks) = process_ticks() else {
            return 0.0;
        };
        let used = match self.last {
            Some((then, before)) => {
                let wall = now.duration_since(then).as_secs_f64();
                // /proc reports in USER_HZ, which Linux fixes at 100 for user space.
                if wall > 0.0 {
                    ticks.saturating_sub(before) as f64 / 100.0 / wall
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, ticks));
        used
    }
}

fn process_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Whether `header` (an `Authorization` value) is `Bearer SECRET`, compared in constant time
/// so that the comparison's duration says nothing about how much of a guess was right.
pub fn bearer_matches(header: Option<&http::HeaderValue>, secret: &Secret) -> bool {
    let Some(token) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (token.as_bytes(), secret.expose().as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `Authorization` header value for `secret`, marked sensitive so that it is never
/// printed by HTTP debug output. `None` if the secret is not a valid header value.
pub fn bearer_header(secret: &Secret) -> Option<http::HeaderValue> {
    let mut v = http::HeaderValue::from_str(&format!("Bearer {}", secret.expose())).ok()?;
    v.set_sensitive(true);
    Some(v)
}
