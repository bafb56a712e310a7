//! The endpoints origins and edges call (`/api/v1/cluster/...`, messages from
//! `potok_config::wire`), authenticated with the cluster secret.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use tracing::{info, warn};

pub(crate) mod repo;

use crate::App;
use crate::api::{Body, Caller, bearer, rate_limited, require};
use crate::error::{ApiError, StreamingErrorCode};
use crate::limits::Kind;
use crate::model::{Node, UserRole};
use crate::model::{StreamStatus, now_ms};
use crate::secrets::{constant_time_eq, hash_secret};
use crate::streams::routes::current_stream;
use potok_config::wire::{
    Heartbeat, HeartbeatReply, PublishGrant, PublishRequest, Register, Registered, Resolved,
};

/// A node presenting the cluster secret.
pub(crate) struct ClusterNode;

impl FromRequestParts<App> for ClusterNode {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let Some(secret) = &app.cluster_secret else {
            return Err(ApiError::new(
                StreamingErrorCode::Unauthorized,
                "cluster endpoints are off: set cluster.secret on the control plane",
            ));
        };
        match bearer(parts) {
            Some(t) if constant_time_eq(t.as_bytes(), secret.expose().as_bytes()) => {
                Ok(ClusterNode)
            }
            _ => Err(ApiError::new(
                StreamingErrorCode::Unauthorized,
                "send Authorization: Bearer <cluster secret>",
            )),
        }
    }
}

/// A node registers (again after a restart); the answer says how often to heartbeat.
#[utoipa::path(post, path = "/api/v1/cluster/nodes", tag = "cluster", security(("cluster" = [])),
    request_body(content = serde_json::Value, description = "`wire::Register`"),
    responses((status = 200, description = "`wire::Registered`"), (status = 401, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn register(
    State(app): State<App>,
    _: ClusterNode,
    Body(r): Body<Register>,
) -> Result<Json<Registered>, ApiError> {
    if r.name.is_empty() || r.name.len() > 64 || !r.http_url.starts_with("http") {
        return Err(ApiError::new(
            StreamingErrorCode::ValidationFailed,
            "name must be 1-64 characters and http_url an http(s) URL",
        ));
    }
    if r.reserved_names.len() > 1000 {
        return Err(ApiError::new(
            StreamingErrorCode::ValidationFailed,
            "at most 1000 reserved names",
        ));
    }
    let node = app.db.register_node(&r).await?;
    info!(node = %node.name, role = %node.role, url = %node.http_url, "node registered");
    for name in app.db.reserve_names(&node.name, &r.reserved_names).await? {
        warn!(%name, node = %node.name, "a configured stream name is also an account's username; that account cannot publish under it");
    }
    Ok(Json(Registered {
        node_id: node.id,
        heartbeat_ms: app.heartbeat.as_millis() as u64,
    }))
}

/// A heartbeat with the node's load and its streams; 404 means register again.
#[utoipa::path(post, path = "/api/v1/cluster/nodes/{id}/heartbeat", tag = "cluster", security(("cluster" = [])),
    params(("id" = String, Path, description = "Node id")),
    request_body(content = serde_json::Value, description = "`wire::Heartbeat`"),
    responses((status = 200, description = "`wire::HeartbeatReply`: streams to stop"), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn heartbeat(
    State(app): State<App>,
    _: ClusterNode,
    Path(id): Path<String>,
    Body(hb): Body<Heartbeat>,
) -> Result<Json<HeartbeatReply>, ApiError> {
    let Some(node) = app.db.heartbeat(&id, &hb).await? else {
        return Err(ApiError::not_found("node"));
    };
    let mut reply = HeartbeatReply::default();
    if node.role != "origin" {
        app.db.report_viewers(&id, &hb.viewers).await?;
        return Ok(Json(reply));
    }
    // Reconcile what the origin holds with the streams pinned to it.
    let now = now_ms();
    let pinned = app
        .db
        .streams_on_node(
            &id,
            &[
                StreamStatus::Starting,
                StreamStatus::Live,
                StreamStatus::Paused,
                StreamStatus::Ending,
                StreamStatus::Error,
            ],
        )
        .await?;
    for s in pinned {
        let reported = hb.streams.iter().find(|r| r.name == s.name);
        if let Some(r) = reported
            && r.recording != s.recording_id
        {
            app.db.set_recording(&s.id, r.recording.as_deref()).await?;
        }
        let next = match (s.status, reported) {
            (StreamStatus::Ending, Some(_)) => {
                reply.stop.push(s.name.clone());
                None
            }
            (StreamStatus::Ending, None) => Some(StreamStatus::Ended),
            (StreamStatus::Live, Some(r)) if !r.publishing => Some(StreamStatus::Paused),
            (StreamStatus::Paused | StreamStatus::Error, Some(r)) if r.publishing => {
                Some(StreamStatus::Live)
            }
            // Gone from the origin (its grace period ran out). A publish authorized a moment
            // ago may not be in this heartbeat yet.
            (StreamStatus::Live | StreamStatus::Paused, None)
                if now - s.status_changed_at > 2 * app.heartbeat.as_millis() as i64 + 1000 =>
            {
                Some(StreamStatus::Ended)
            }
            _ => None,
        };
        if let Some(to) = next {
            app.db.transition(&s.id, to, None).await?;
        }
    }
    Ok(Json(reply))
}

/// May this key publish on this origin? Refused keys count against the publisher's address.
#[utoipa::path(post, path = "/api/v1/cluster/publish", tag = "cluster", security(("cluster" = [])),
    request_body(content = serde_json::Value, description = "`wire::PublishRequest`"),
    responses(
        (status = 200, description = "`wire::PublishGrant`"),
        (status = 401, body = ApiError),
        (status = 403, description = "STREAM_KEY_INVALID", body = ApiError),
        (status = 409, description = "STREAM_ALREADY_LIVE", body = ApiError),
        (status = 429, description = "RATE_LIMITED", body = ApiError),
        (status = 503, description = "NODE_AT_CAPACITY", body = ApiError),
    ))]
pub(crate) async fn publish(
    State(app): State<App>,
    _: ClusterNode,
    Body(req): Body<PublishRequest>,
) -> Result<Json<PublishGrant>, ApiError> {
    let result = |r: &str| app.metrics.publish.with_label_values(&[r]).inc();
    let addr = req.client_addr.clone().unwrap_or_else(|| "unknown".into());
    let Some(node) = app.db.node(&req.node_id).await? else {
        return Err(ApiError::not_found("node"));
    };
    // Counted as a refusal until the key proves known.
    let Some(attempt) = app.limiter.attempt(Kind::Auth, &addr).await? else {
        result("rate_limited");
        return Err(rate_limited());
    };
    let Some(user) = app.db.user_by_key(&hash_secret(&req.key)).await? else {
        result("bad_key");
        warn!(%addr, protocol = %req.protocol, "publish refused: unknown stream key");
        return Err(ApiError::new(
            StreamingErrorCode::StreamKeyInvalid,
            "stream key not accepted",
        ));
    };
    app.limiter.succeeded(attempt).await?;
    // A name configuration owns is never an account's to publish under, even when the
    // account was created before an origin reserved the name.
    if app.db.is_reserved(&user.username).await? {
        result("reserved_name");
        warn!(stream = %user.username, "publish refused: the name is reserved by configuration");
        return Err(ApiError::new(
            StreamingErrorCode::Conflict,
            "this stream name is reserved by the operator's configuration",
        ));
    }
    let stream = current_stream(&app, &user).await?;
    let elsewhere = stream.origin_node_id.as_ref().filter(|id| {
        **id != node.id && matches!(stream.status, StreamStatus::Live | StreamStatus::Paused)
    });
    if let Some(other) = elsewhere
        && app
            .db
            .node(other)
            .await?
            .is_some_and(|n| n.state == "alive")
    {
        result("already_live");
        return Err(ApiError {
            stream_id: Some(stream.id),
            ..ApiError::new(
                StreamingErrorCode::StreamAlreadyLive,
                "this stream is being published on another origin",
            )
        });
    }
    let held_here = stream.origin_node_id.as_deref() == Some(node.id.as_str())
        && matches!(stream.status, StreamStatus::Live | StreamStatus::Paused);
    if !held_here && node.max_streams > 0 && node.live_streams >= node.max_streams {
        result("at_capacity");
        return Err(ApiError::new(
            StreamingErrorCode::NodeAtCapacity,
            "this origin is full; ask /api/v1/ingest for another",
        ));
    }
    let continues = stream.status == StreamStatus::Error
        || (elsewhere.is_some()
            && matches!(stream.status, StreamStatus::Live | StreamStatus::Paused));
    app.db
        .transition(&stream.id, StreamStatus::Live, Some(Some(&node.id)))
        .await?;
    result("granted");
    info!(stream = %user.username, origin = %node.name, continues, "publish authorized");
    let recording = app.recordings.grant(&app.db, &user.id).await?;
    Ok(Json(PublishGrant {
        stream_id: stream.id,
        name: user.username,
        transcode: None,
        continues,
        restream: Vec::new(),
        recording,
    }))
}

/// Which origin holds stream `name` (edges).
#[utoipa::path(get, path = "/api/v1/cluster/streams/{name}/origin", tag = "cluster", security(("cluster" = [])),
    params(("name" = String, Path, description = "Public stream name")),
    responses((status = 200, description = "`wire::Resolved`"), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn resolve(
    State(app): State<App>,
    _: ClusterNode,
    Path(name): Path<String>,
) -> Result<Json<Resolved>, ApiError> {
    let stream = app
        .db
        .open_stream_named(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("stream"))?;
    let node = match &stream.origin_node_id {
        Some(id) => app.db.node(id).await?,
        None => None,
    };
    match node {
        Some(n) if n.state == "alive" => Ok(Json(Resolved {
            origins: vec![n.http_url],
        })),
        _ => Err(ApiError::not_found("stream origin")),
    }
}

/// Every alive origin (edges' readiness and fallbacks).
#[utoipa::path(get, path = "/api/v1/cluster/origins", tag = "cluster", security(("cluster" = [])),
    responses((status = 200, description = "`wire::Resolved`"), (status = 401, body = ApiError)))]
pub(crate) async fn origins(
    State(app): State<App>,
    _: ClusterNode,
) -> Result<Json<Resolved>, ApiError> {
    let nodes = app.db.nodes(Some("origin")).await?;
    Ok(Json(Resolved {
        origins: nodes
            .into_iter()
            .filter(|n| n.state == "alive")
            .map(|n| n.http_url)
            .collect(),
    }))
}

/// Registered origins and edges with their last load (admins).
#[utoipa::path(get, path = "/api/v1/nodes", tag = "cluster", security(("token" = [])),
    responses((status = 200, body = [Node]), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub(crate) async fn list_nodes(
    State(app): State<App>,
    Caller(user): Caller,
) -> Result<Json<Vec<Node>>, ApiError> {
    require(user.role == UserRole::Admin, "admins only")?;
    Ok(Json(app.db.nodes(None).await?))
}
