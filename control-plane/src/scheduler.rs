//! Where streams go: the ingest scheduler, and the sweeper that declares silent nodes dead
//! and puts their streams in `error`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::App;
use crate::error::{ApiError, StreamingErrorCode};
use crate::model::{Node, Stream, StreamStatus, now_ms};

/// The origin for `stream`: the one it is pinned to while that origin is alive (a
/// reconnect lands where the stream is), otherwise the least loaded alive origin with room
/// — which the stream is then pinned to.
pub(crate) async fn pick_origin(app: &App, stream: &Stream) -> Result<Node, ApiError> {
    let origins = app.db.nodes(Some("origin")).await?;
    if let Some(pinned) = stream
        .origin_node_id
        .as_ref()
        .and_then(|id| origins.iter().find(|n| &n.id == id))
        && pinned.state == "alive"
        && (pinned.has_capacity()
            || matches!(stream.status, StreamStatus::Live | StreamStatus::Paused))
    {
        app.metrics
            .scheduling
            .with_label_values(&["same_origin"])
            .inc();
        return Ok(pinned.clone());
    }
    let Some(best) = origins
        .into_iter()
        .filter(Node::has_capacity)
        .min_by(|a, b| {
            let (la, lb) = (a.load(), b.load());
            la.0.total_cmp(&lb.0)
                .then(la.1.total_cmp(&lb.1))
                .then(a.name.cmp(&b.name))
        })
    else {
        app.metrics
            .scheduling
            .with_label_values(&["no_origin"])
            .inc();
        return Err(ApiError {
            stream_id: Some(stream.id.clone()),
            ..ApiError::new(
                StreamingErrorCode::NoOriginAvailable,
                "no origin has room for a stream now; retry shortly",
            )
        });
    };
    // A stream in `error` stays there until media arrives on the new origin: the publish
    // authorization then sees it continues a broadcast.
    app.db.pin_origin(&stream.id, &best.id).await?;
    app.metrics
        .scheduling
        .with_label_values(&["least_loaded"])
        .inc();
    info!(stream = %stream.name, origin = %best.name, "stream scheduled");
    Ok(best)
}

/// Every half heartbeat interval: nodes silent for `node_timeout` become dead and the
/// streams they held go to `error`; the node gauges are refreshed.
pub(crate) async fn sweep(app: App, shutdown: CancellationToken) {
    let every = (app.heartbeat / 2).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if let Err(e) = sweep_once(&app).await {
            warn!(error = %e, "node sweep failed");
        }
    }
}

async fn sweep_once(app: &App) -> Result<(), crate::db::RepoError> {
    let cutoff = now_ms() - app.node_timeout.as_millis() as i64;
    for node in app.db.mark_dead(cutoff).await? {
        warn!(node = %node.name, role = %node.role, "node missed its heartbeats: dead");
        let held = app
            .db
            .streams_on_node(
                &node.id,
                &[
                    StreamStatus::Live,
                    StreamStatus::Paused,
                    StreamStatus::Starting,
                    StreamStatus::Ending,
                ],
            )
            .await?;
        for s in held {
            let to = if s.status == StreamStatus::Ending {
                StreamStatus::Ended
            } else {
                StreamStatus::Error
            };
            app.db.transition(&s.id, to, None).await?;
            info!(stream = %s.name, status = to.as_str(), "its origin died");
        }
        // A dead edge's viewers are no longer watching through it.
        app.db.report_viewers(&node.id, &[]).await?;
    }
    app.limiter.sweep().await?;
    let nodes = app.db.nodes(None).await?;
    app.metrics.nodes.reset();
    for n in nodes {
        app.metrics
            .nodes
            .with_label_values(&[n.role.as_str(), n.state.as_str()])
            .inc();
    }
    Ok(())
}
