//! Operational endpoints every role serves on its HTTP port:
//!
//! - `GET /healthz`: the process is alive (200 while it can answer at all).
//! - `GET /readyz`: the role's dependencies are reachable: 200, or 503 with a JSON `reason`
//!   naming the failed check; 503 `shutting down` once the drain has begun.
//! - `GET /metrics`: the process's registry in Prometheus text format. It names every
//!   stream, private ones too, so it answers only requests bearing `metrics.token`, or,
//!   without a token, only loopback clients (403 otherwise); [`metrics_router`] serves it on
//!   a listener of its own (`metrics.listen`), to everyone unless a token is set.
//!
//! [`role_router`] merges these with a role's own routes and records every request in
//! `potok_http_requests_total` and `potok_http_request_duration_seconds`, labelled by the
//! matched route (never the raw path, which would let clients create unbounded series).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use potok_config::Role;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::Metrics;

/// What every role gets from the process: the shared registry and the shutdown signal.
#[derive(Clone)]
pub struct RoleContext {
    /// The process's metrics registry.
    pub metrics: Metrics,
    /// Cancelled when the process starts shutting down.
    pub shutdown: CancellationToken,
    /// How long `/readyz` waits for each check.
    pub readiness_timeout: Duration,
}

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One dependency check behind `/readyz`: a name and an async probe that answers `Err(why)`
/// when the dependency is unreachable.
#[derive(Clone)]
pub struct ReadinessCheck {
    name: &'static str,
    probe: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl ReadinessCheck {
    /// A check named `name` running `probe`.
    pub fn new<F, Fut>(name: &'static str, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        ReadinessCheck {
            name,
            probe: Arc::new(move || Box::pin(probe())),
        }
    }

    /// A check that `dir` exists (creating it if needed) and accepts a new file.
    pub fn writable_dir(name: &'static str, dir: PathBuf) -> Self {
        Self::new(name, move || {
            let dir = dir.clone();
            async move {
                tokio::task::spawn_blocking(move || probe_dir(&dir))
                    .await
                    .map_err(|e| format!("check task failed: {e}"))?
            }
        })
    }
}

fn probe_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let probe = dir.join(format!(".potok-ready-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(|e| format!("{} is not writable: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[derive(Clone)]
struct Ops {
    role: Role,
    ctx: RoleContext,
    checks: Arc<[ReadinessCheck]>,
}

/// The router a role serves: its own `routes`, the operational endpoints with `checks`
/// behind `/readyz`, a JSON 404 for everything else, and request metrics on all of it.
pub fn role_router(
    role: Role,
    routes: Router,
    checks: Vec<ReadinessCheck>,
    ctx: &RoleContext,
) -> Router {
    ctx.metrics.add_role(role);
    let ops = Ops {
        role,
        ctx: ctx.clone(),
        checks: checks.into(),
    };
    let ops_routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops.clone());
    routes
        .merge(ops_routes)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(ops, record))
}

async fn healthz(State(ops): State<Ops>) -> Response {
    axum::Json(json!({
        "status": "ok",
        "role": ops.role.as_str(),
        "version": crate::VERSION,
    }))
    .into_response()
}

async fn readyz(State(ops): State<Ops>) -> Response {
    if ops.ctx.shutdown.is_cancelled() {
        return not_ready(&ops, "shutting down", &[]);
    }
    let timeout = ops.ctx.readiness_timeout;
    // Every probe runs as its own task, so the slowest check bounds the answer, not the sum.
    let tasks: Vec<_> = ops
        .checks
        .iter()
        .map(|c| {
            let probe = (c.probe)();
            (
                c.name,
                tokio::spawn(async move {
                    tokio::time::timeout(timeout, probe)
                        .await
                        .unwrap_or_else(|_| {
                            Err(format!("no answer within {}ms", timeout.as_millis()))
                        })
                }),
            )
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for (name, task) in tasks {
        let result = task
            .await
            .unwrap_or_else(|e| Err(format!("check failed: {e}")));
        results.push((name, result));
    }
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|why| format!("{name}: {why}")))
        .collect();
    if failed.is_empty() {
        axum::Json(json!({
            "status": "ready",
            "role": ops.role.as_str(),
            "checks": results.iter().map(|(n, _)| json!({"name": n, "ok": true})).collect::<Vec<_>>(),
        }))
        .into_response()
    } else {
        not_ready(&ops, &failed.join("; "), &results)
    }
}

fn not_ready(ops: &Ops, reason: &str, results: &[(&'static str, Result<(), String>)]) -> Response {
    let checks: Vec<_> = results
        .iter()
        .map(|(name, r)| match r {
            Ok(()) => json!({"name": name, "ok": true}),
            Err(why) => json!({"name": name, "ok": false, "error": why}),
        })
        .collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({
            "status": "not_ready",
            "role": ops.role.as_str(),
            "reason": reason,
            "checks": checks,
        })),
    )
        .into_response()
}

async fn metrics(State(ops): State<Ops>, req: Request) -> Response {
    metrics_answer(&ops.ctx.metrics, &req, true)
}

/// `/metrics` for `req`: with a token configured, only for requests bearing it; without,
/// only for loopback peers when `loopback_only` (the roles' ports), else for everyone.
fn metrics_answer(metrics: &Metrics, req: &Request, loopback_only: bool) -> Response {
    let denied = |status: StatusCode, message: &str| {
        (
            status,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(json!({"code": "FORBIDDEN", "message": message})),
        )
            .into_response()
    };
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    match metrics.token() {
        Some(token)
            if !crate::cluster::bearer_matches(
                req.headers().get(header::AUTHORIZATION),
                &token,
            ) =>
        {
            return denied(
                StatusCode::UNAUTHORIZED,
                "/metrics needs Authorization: Bearer <metrics.token>",
            );
        }
        None if loopback_only && !peer.is_some_and(is_loopback) => {
            return denied(
                StatusCode::FORBIDDEN,
                "/metrics answers loopback clients; set metrics.token or metrics.listen",
            );
        }
        _ => {}
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}

fn is_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The router of the `metrics.listen` listener: `/metrics` (open to everyone who reaches
/// it unless `metrics.token` is set) and `/healthz`.
pub fn metrics_router(metrics: &Metrics) -> Router {
    let m = metrics.clone();
    Router::new()
        .route(
            "/metrics",
            get(move |req: Request| {
                let m = m.clone();
                async move { metrics_answer(&m, &req, false) }
            }),
        )
        .route(
            "/healthz",
            get(|| async {
                axum::Json(json!({"status": "ok", "role": "metrics", "version": crate::VERSION}))
            }),
        )
        .fallback(not_found)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"code": "NOT_FOUND", "message": "no such resource"})),
    )
        .into_response()
}

async fn record(State(ops): State<Ops>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let resp = next.run(req).await;
    ops.ctx
        .metrics
        .observe_http(ops.role, &route, resp.status().as_u16(), started.elapsed());
    resp
}
