//! The streams area's REST operations: streams and their metadata, lists and filters,
//! stopping, and the ingest endpoint (scheduling).

// utoipa's generated code names parameter types with their full paths.
#![allow(unused_qualifications)]

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::{Body, Caller, Params, Tag, is_streamer, require};
use crate::db::{StreamFilter, StreamMeta};
use crate::error::{ApiError, Check, StreamingErrorCode};
use crate::model::{Stream, StreamStatus, User};
use crate::{App, scheduler};

// ---------------------------------------------------------------- streams

/// A stream's metadata, to create one.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NewStream {
    /// 1-140 characters.
    #[schema(min_length = 1, max_length = 140, pattern = "[^\\s\\x85]")]
    title: String,
    /// Up to 2000 characters.
    #[serde(default)]
    #[schema(max_length = 2000)]
    description: String,
    /// 1-64 characters (`dota2`, `just-chatting`).
    #[schema(min_length = 1, max_length = 64, pattern = "[^\\s\\x85]")]
    category: String,
    /// ISO 639-1 (`ru`, `en`).
    #[schema(min_length = 2, max_length = 2, pattern = "^[a-z]{2}$")]
    language: String,
    /// Up to 10 tags of 1-32 characters.
    #[serde(default)]
    #[schema(max_items = 10, value_type = Vec<Tag>)]
    tags: Vec<String>,
}

/// Changes to a stream's metadata; absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct StreamPatch {
    /// 1-140 characters.
    #[schema(min_length = 1, max_length = 140, pattern = "[^\\s\\x85]")]
    title: Option<String>,
    /// Up to 2000 characters.
    #[schema(max_length = 2000)]
    description: Option<String>,
    /// 1-64 characters.
    #[schema(min_length = 1, max_length = 64, pattern = "[^\\s\\x85]")]
    category: Option<String>,
    /// ISO 639-1.
    #[schema(min_length = 2, max_length = 2, pattern = "^[a-z]{2}$")]
    language: Option<String>,
    /// Up to 10 tags of 1-32 characters.
    #[schema(max_items = 10, value_type = Option<Vec<Tag>>)]
    tags: Option<Vec<String>>,
}

fn check_meta(c: &mut Check, m: &StreamMeta) {
    if m.title.trim().is_empty() || m.title.chars().count() > 140 {
        c.add("title", "must be 1-140 characters");
    }
    if m.description.chars().count() > 2000 {
        c.add("description", "must be at most 2000 characters");
    }
    if m.category.trim().is_empty() || m.category.chars().count() > 64 {
        c.add("category", "must be 1-64 characters");
    }
    if m.language.len() != 2 || !m.language.bytes().all(|b| b.is_ascii_lowercase()) {
        c.add(
            "language",
            "must be a two-letter ISO 639-1 code like \"ru\"",
        );
    }
    if m.tags.len() > 10 {
        c.add("tags", "at most 10 tags");
    }
    for (i, t) in m.tags.iter().enumerate() {
        if t.trim().is_empty() || t.chars().count() > 32 {
            c.add(&format!("tags[{i}]"), "must be 1-32 characters");
        }
    }
}

/// Start a stream: it waits in `starting` for media (streamers; one open stream each).
#[utoipa::path(post, path = "/api/v1/streams", tag = "streams", security(("token" = [])),
    request_body = NewStream,
    responses(
        (status = 201, body = Stream),
        (status = 401, body = ApiError),
        (status = 403, body = ApiError),
        (status = 409, description = "The streamer already has an open stream", body = ApiError),
        (status = 422, body = ApiError),
    ))]
pub(crate) async fn create_stream(
    State(app): State<App>,
    Caller(user): Caller,
    Body(req): Body<NewStream>,
) -> Result<(StatusCode, Json<Stream>), ApiError> {
    require(is_streamer(&user), "only streamers have streams")?;
    let meta = StreamMeta {
        title: req.title.trim().to_owned(),
        description: req.description,
        category: req.category.trim().to_owned(),
        language: req.language,
        tags: req.tags.into_iter().map(|t| t.trim().to_owned()).collect(),
    };
    let mut c = Check::default();
    check_meta(&mut c, &meta);
    c.done()?;
    if let Some(open) = app.db.open_stream_of(&user.id).await? {
        return Err(ApiError {
            stream_id: Some(open.id),
            ..ApiError::new(
                StreamingErrorCode::Conflict,
                "you already have an open stream; stop it first",
            )
        });
    }
    let stream = app.db.create_stream(&user, &meta).await?;
    // The channel's chat room comes with its first stream (the seed's createChatRoom).
    app.chat.ensure_room(&user.username).await?;
    Ok((StatusCode::CREATED, Json(stream)))
}

/// List filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only this category.
    category: Option<String>,
    /// Only this language.
    language: Option<String>,
    /// Only streams with this tag.
    tag: Option<String>,
    /// Only this streamer's (user id).
    streamer: Option<String>,
    /// Only live streams.
    live: Option<bool>,
    /// Ended streams too.
    include_ended: Option<bool>,
    /// Page size, 1-100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// Streams to skip.
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// A page of streams.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct StreamPage {
    items: Vec<Stream>,
    /// Streams matching the filters in all.
    total: i64,
    limit: i64,
    offset: i64,
}

async fn list(app: &App, q: ListQuery, live: bool) -> Result<Json<StreamPage>, ApiError> {
    let mut c = Check::default();
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        c.add("limit", "must be 1-100");
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        c.add("offset", "must not be negative");
    }
    c.done()?;
    let f = StreamFilter {
        category: q.category,
        language: q.language,
        tag: q.tag,
        streamer_id: q.streamer,
        live_only: live || q.live.unwrap_or(false),
        include_ended: q.include_ended.unwrap_or(false),
        limit,
        offset,
    };
    let (items, total) = app.db.list_streams(&f).await?;
    Ok(Json(StreamPage {
        items,
        total,
        limit,
        offset,
    }))
}

/// Streams, most watched first, with filters and pages.
#[utoipa::path(get, path = "/api/v1/streams", tag = "streams", params(ListQuery),
    responses((status = 200, body = StreamPage), (status = 422, body = ApiError)))]
pub(crate) async fn list_streams(
    State(app): State<App>,
    Params(q): Params<ListQuery>,
) -> Result<Json<StreamPage>, ApiError> {
    list(&app, q, false).await
}

/// Live streams (the seed's `getActiveStreams`), with the same filters.
#[utoipa::path(get, path = "/api/v1/streams/active", tag = "streams", operation_id = "get_active_streams", params(ListQuery),
    responses((status = 200, body = StreamPage), (status = 422, body = ApiError)))]
pub(crate) async fn active_streams(
    State(app): State<App>,
    Params(q): Params<ListQuery>,
) -> Result<Json<StreamPage>, ApiError> {
    list(&app, q, true).await
}

/// One stream.
#[utoipa::path(get, path = "/api/v1/streams/{id}", tag = "streams",
    params(("id" = String, Path, description = "Stream id")),
    responses((status = 200, body = Stream), (status = 404, body = ApiError)))]
pub(crate) async fn get_stream(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Stream>, ApiError> {
    app.db
        .stream(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("stream"))
}

async fn owned_stream(app: &App, user: &User, id: &str) -> Result<Stream, ApiError> {
    let stream = app
        .db
        .stream(id)
        .await?
        .ok_or_else(|| ApiError::not_found("stream"))?;
    if stream.streamer_id != user.id && !user.role.moderates() {
        return Err(ApiError::forbidden(
            "only the stream's streamer or a moderator may change it",
        ));
    }
    Ok(stream)
}

/// Change a stream's title, description, category, language or tags (its streamer, a
/// moderator or an admin).
#[utoipa::path(patch, path = "/api/v1/streams/{id}", tag = "streams", security(("token" = [])),
    params(("id" = String, Path, description = "Stream id")), request_body = StreamPatch,
    responses(
        (status = 200, body = Stream),
        (status = 401, body = ApiError),
        (status = 403, body = ApiError),
        (status = 404, body = ApiError),
        (status = 422, body = ApiError),
    ))]
pub(crate) async fn update_stream(
    State(app): State<App>,
    Caller(user): Caller,
    Path(id): Path<String>,
    Body(p): Body<StreamPatch>,
) -> Result<Json<Stream>, ApiError> {
    let s = owned_stream(&app, &user, &id).await?;
    let meta = StreamMeta {
        title: p.title.map_or(s.title, |t| t.trim().to_owned()),
        description: p.description.unwrap_or(s.description),
        category: p.category.map_or(s.category, |t| t.trim().to_owned()),
        language: p.language.unwrap_or(s.language),
        tags: p.tags.map_or(s.tags, |t| {
            t.into_iter().map(|t| t.trim().to_owned()).collect()
        }),
    };
    let mut c = Check::default();
    check_meta(&mut c, &meta);
    c.done()?;
    app.db
        .update_stream(&id, &meta)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("stream"))
}

/// Stop a stream: `ending` while its origin still holds it (the origin drops the publisher
/// at its next heartbeat), then `ended`.
#[utoipa::path(post, path = "/api/v1/streams/{id}/stop", tag = "streams", security(("token" = [])),
    params(("id" = String, Path, description = "Stream id")),
    responses(
        (status = 200, body = Stream),
        (status = 401, body = ApiError),
        (status = 403, body = ApiError),
        (status = 404, body = ApiError),
        (status = 409, description = "Already ended", body = ApiError),
    ))]
pub(crate) async fn stop_stream(
    State(app): State<App>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<Stream>, ApiError> {
    let s = owned_stream(&app, &user, &id).await?;
    let on_origin = matches!(s.status, StreamStatus::Live | StreamStatus::Paused);
    let to = match s.status {
        StreamStatus::Ended => {
            return Err(ApiError::new(
                StreamingErrorCode::Conflict,
                "the stream has ended",
            ));
        }
        _ if on_origin => StreamStatus::Ending,
        _ => StreamStatus::Ended,
    };
    app.db
        .transition(&id, to, None)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("stream"))
}

/// Where to push: the origin the scheduler picked.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Ingest {
    /// The stream the push will feed (created in `starting` when none is open).
    stream_id: String,
    /// The origin's node name.
    origin: String,
    /// `rtmp://HOST:PORT/live` — append `/<stream key>`.
    rtmp_url: Option<String>,
    /// `rtmps://HOST:PORT/live`, when the origin has TLS.
    rtmps_url: Option<String>,
    /// `srt://HOST:PORT?streamid=live/<stream key>`.
    srt_url: Option<String>,
    /// Where viewers watch, on any edge.
    playback_path: String,
}

/// Ingest URLs on the least loaded origin with room, or on the same origin again while it
/// is alive (reconnects). Streamers only.
#[utoipa::path(get, path = "/api/v1/ingest", tag = "streams", security(("token" = [])),
    responses(
        (status = 200, body = Ingest),
        (status = 401, body = ApiError),
        (status = 403, body = ApiError),
        (status = 503, description = "No origin can take the stream", body = ApiError),
    ))]
pub(crate) async fn ingest(
    State(app): State<App>,
    Caller(user): Caller,
) -> Result<Json<Ingest>, ApiError> {
    require(is_streamer(&user), "only streamers push streams")?;
    let stream = current_stream(&app, &user).await?;
    let node = scheduler::pick_origin(&app, &stream).await?;
    Ok(Json(Ingest {
        stream_id: stream.id,
        origin: node.name,
        rtmp_url: node.rtmp_url,
        rtmps_url: node.rtmps_url,
        srt_url: node
            .srt_url
            .map(|u| format!("{u}?streamid=live/<stream key>")),
        playback_path: stream.playback_path,
    }))
}

/// The streamer's stream a push feeds: the open one, or a new one in `starting` (a stream
/// being stopped ends now and a new one begins).
pub(crate) async fn current_stream(app: &App, user: &User) -> Result<Stream, ApiError> {
    match app.db.open_stream_of(&user.id).await? {
        Some(s) if s.status != StreamStatus::Ending => Ok(s),
        Some(s) => {
            app.db.transition(&s.id, StreamStatus::Ended, None).await?;
            Ok(app.db.create_stream(user, &default_meta(user)).await?)
        }
        None => Ok(app.db.create_stream(user, &default_meta(user)).await?),
    }
}

fn default_meta(user: &User) -> StreamMeta {
    StreamMeta {
        title: format!("{} live", user.username),
        description: String::new(),
        category: "uncategorized".into(),
        language: "ru".into(),
        tags: Vec::new(),
    }
}
