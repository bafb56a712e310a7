//! The recordings area's REST operations.

// utoipa's generated code names parameter types with their full paths.
#![allow(unused_qualifications)]

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{Recording, RecordingSettings, StreamHealth};
use crate::App;
use crate::api::{Body, Caller, Params, require};
use crate::error::{ApiError, Check, StreamingErrorCode};
use crate::model::{Stream, StreamStatus, User};
use crate::payments::routes::owned_channel;

fn check_renditions(c: &mut Check, renditions: &[String]) {
    if renditions.len() > 8 {
        c.add("renditions", "at most 8 renditions");
    }
    for (i, r) in renditions.iter().enumerate() {
        if potok_storage::recordings::check_rendition(r).is_err() {
            c.add(
                &format!("renditions[{i}]"),
                "a rendition name: 1-64 letters, digits, '-' or '_'",
            );
        }
    }
}

fn check_duration(c: &mut Check, secs: Option<i64>) {
    if secs.is_some_and(|d| !(60..=172_800).contains(&d)) {
        c.add("max_duration_secs", "must be 60-172800 seconds");
    }
}

/// A channel's recording settings (its streamer): record every broadcast, renditions kept,
/// longest recording, days kept.
#[utoipa::path(get, path = "/api/v1/channels/{name}/recording-settings", tag = "recordings",
    operation_id = "get_recording_settings", security(("token" = [])),
    params(("name" = String, Path, description = "The channel")),
    responses((status = 200, body = RecordingSettings), (status = 401, body = ApiError),
        (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn get_recording_settings(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Json<RecordingSettings>, ApiError> {
    let channel = owned_channel(&app, &caller, &name).await?;
    Ok(Json(app.recordings.settings(&app.db, &channel.id).await?))
}

/// Change a channel's recording settings; the next broadcast starts with them, and the
/// retention applies to the channel's existing recordings at the next sweep.
#[utoipa::path(put, path = "/api/v1/channels/{name}/recording-settings", tag = "recordings",
    operation_id = "update_recording_settings", security(("token" = [])),
    params(("name" = String, Path, description = "The channel")), request_body = RecordingSettings,
    responses((status = 200, body = RecordingSettings), (status = 401, body = ApiError),
        (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn update_recording_settings(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Body(s): Body<RecordingSettings>,
) -> Result<Json<RecordingSettings>, ApiError> {
    let channel = owned_channel(&app, &caller, &name).await?;
    let mut c = Check::default();
    check_renditions(&mut c, &s.renditions);
    check_duration(&mut c, s.max_duration_secs);
    if !(0..=3650).contains(&s.retention_days) {
        c.add("retention_days", "must be 0-3650 (0: forever)");
    }
    c.done()?;
    app.db.save_recording_settings(&channel.id, &s).await?;
    Ok(Json(s))
}

/// What to keep of a recording started during the broadcast.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartRecording {
    /// Renditions kept; empty or absent: the channel's settings.
    #[serde(default)]
    #[schema(max_items = 8, value_type = Vec<super::RenditionName>)]
    renditions: Vec<String>,
    /// Longest recording in seconds (60-172800); absent: the channel's settings.
    #[schema(minimum = 60, maximum = 172800)]
    max_duration_secs: Option<i64>,
}

/// The stream and the origin holding it, when `user` may control it and it is on air.
async fn live_stream(
    app: &App,
    user: &User,
    id: &str,
    to: &str,
) -> Result<(Stream, crate::model::Node), ApiError> {
    let stream = app
        .db
        .stream(id)
        .await?
        .ok_or_else(|| ApiError::not_found("stream"))?;
    require(
        stream.streamer_id == user.id || user.role.moderates(),
        &format!("only the stream's streamer or a moderator may {to}"),
    )?;
    let node = match (&stream.status, &stream.origin_node_id) {
        (StreamStatus::Live | StreamStatus::Paused, Some(n)) => app.db.node(n).await?,
        _ => None,
    };
    let node =
        node.ok_or_else(|| ApiError::new(StreamingErrorCode::Conflict, "the stream is not live"))?;
    Ok((stream, node))
}

/// A live stream's health (the seed's `getStreamHealth`), from its origin: ingest bitrate,
/// frame rate, keyframe interval, dropped frames, the ladder's rungs and shedding. For the
/// stream's streamer and moderators.
#[utoipa::path(get, path = "/api/v1/streams/{id}/health", tag = "streams",
    operation_id = "get_stream_health", security(("token" = [])),
    params(("id" = String, Path, description = "Stream id")),
    responses((status = 200, body = StreamHealth), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, description = "Not live", body = ApiError),
        (status = 503, description = "The origin cannot be reached", body = ApiError)))]
pub(crate) async fn get_stream_health(
    State(app): State<App>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<StreamHealth>, ApiError> {
    let (stream, node) = live_stream(&app, &user, &id, "see its health").await?;
    Ok(Json(app.recordings.health(&node, &stream).await?))
}

/// Start recording a live stream (the seed's `startRecording`); it records until stopped,
/// the broadcast ends or the longest duration is reached.
#[utoipa::path(post, path = "/api/v1/streams/{id}/recording", tag = "recordings",
    operation_id = "start_recording", security(("token" = [])),
    params(("id" = String, Path, description = "Stream id")), request_body = StartRecording,
    responses((status = 201, body = Stream), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, description = "Not live, or already recording", body = ApiError),
        (status = 422, body = ApiError), (status = 503, description = "The origin cannot be reached", body = ApiError)))]
pub(crate) async fn start_recording(
    State(app): State<App>,
    Caller(user): Caller,
    Path(id): Path<String>,
    Body(req): Body<StartRecording>,
) -> Result<(StatusCode, Json<Stream>), ApiError> {
    let mut c = Check::default();
    check_renditions(&mut c, &req.renditions);
    check_duration(&mut c, req.max_duration_secs);
    c.done()?;
    let (stream, node) = live_stream(&app, &user, &id, "record it").await?;
    let settings = app
        .recordings
        .settings(&app.db, &stream.streamer_id)
        .await?;
    let renditions = if req.renditions.is_empty() {
        settings.renditions
    } else {
        req.renditions
    };
    let max = req
        .max_duration_secs
        .or(settings.max_duration_secs)
        .and_then(|d| u64::try_from(d).ok());
    let rec = app
        .recordings
        .start(&node, &stream, renditions, max)
        .await?;
    app.db.set_recording(&stream.id, Some(&rec)).await?;
    let stream = app
        .db
        .stream(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("stream"))?;
    Ok((StatusCode::CREATED, Json(stream)))
}

/// Stop recording a live stream (the seed's `stopRecording`): the recording ends with the
/// segments finished so far and plays as a VOD.
#[utoipa::path(delete, path = "/api/v1/streams/{id}/recording", tag = "recordings",
    operation_id = "stop_recording", security(("token" = [])),
    params(("id" = String, Path, description = "Stream id")),
    responses((status = 200, body = Stream), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, description = "Not live, or not recording", body = ApiError),
        (status = 503, description = "The origin cannot be reached", body = ApiError)))]
pub(crate) async fn stop_recording(
    State(app): State<App>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<Stream>, ApiError> {
    let (stream, node) = live_stream(&app, &user, &id, "record it").await?;
    app.recordings.stop(&node, &stream).await?;
    app.db.set_recording(&stream.id, None).await?;
    app.db
        .stream(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("stream"))
}

/// A recording's kind, as a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KindFilter {
    /// Broadcasts.
    Recording,
    /// Ranges of them.
    Clip,
}

impl KindFilter {
    fn as_str(self) -> &'static str {
        match self {
            KindFilter::Recording => "recording",
            KindFilter::Clip => "clip",
        }
    }
}

/// Which recordings to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RecordingsQuery {
    /// Only this channel's.
    channel: Option<String>,
    /// Only `recording`s or only `clip`s.
    kind: Option<KindFilter>,
    /// Only finished ones (playable from the start to the end).
    finished: Option<bool>,
    /// Page size, 1-100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// Recordings and clips, newest first (the seed's `getRecordings`).
#[utoipa::path(get, path = "/api/v1/recordings", tag = "recordings", operation_id = "get_recordings",
    params(RecordingsQuery),
    responses((status = 200, body = [Recording]), (status = 404, description = "Recordings are off", body = ApiError),
        (status = 422, body = ApiError), (status = 503, body = ApiError)))]
pub(crate) async fn get_recordings(
    State(app): State<App>,
    Params(q): Params<RecordingsQuery>,
) -> Result<Json<Vec<Recording>>, ApiError> {
    let mut c = Check::default();
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        c.add("limit", "must be 1-100");
    }
    c.done()?;
    let list = app.recordings.list(q.channel.as_deref()).await?;
    Ok(Json(
        list.into_iter()
            .filter(|r| q.kind.is_none_or(|k| k.as_str() == r.kind))
            .filter(|r| !q.finished.unwrap_or(false) || r.ended_at.is_some())
            .take(limit as usize)
            .collect(),
    ))
}

/// One recording or clip.
#[utoipa::path(get, path = "/api/v1/recordings/{id}", tag = "recordings", operation_id = "get_recording",
    params(("id" = String, Path, description = "Recording id")),
    responses((status = 200, body = Recording), (status = 404, body = ApiError), (status = 503, body = ApiError)))]
pub(crate) async fn get_recording(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Recording>, ApiError> {
    Ok(Json(app.recordings.get(&id).await?))
}

/// Delete a finished recording or clip (its channel's streamer, a moderator or an admin).
#[utoipa::path(delete, path = "/api/v1/recordings/{id}", tag = "recordings", operation_id = "delete_recording",
    security(("token" = [])), params(("id" = String, Path, description = "Recording id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, description = "Still recording", body = ApiError),
        (status = 503, body = ApiError)))]
pub(crate) async fn delete_recording(
    State(app): State<App>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let rec = app.recordings.get(&id).await?;
    require(
        rec.channel == user.username || user.role.moderates(),
        "only the channel's streamer or a moderator may delete its recordings",
    )?;
    app.recordings.delete(&rec).await?;
    Ok(StatusCode::NO_CONTENT)
}
