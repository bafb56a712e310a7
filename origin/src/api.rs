//! The origin HTTP API that edges (and tests) pull from:
//!
//! - `GET /live/{stream}/master.m3u8` — multivariant playlist
//! - `GET /live/{stream}/{rendition}/index.m3u8` — LL-HLS media playlist, with blocking
//!   reload (`_HLS_msn`, `_HLS_part`) and delta updates (`_HLS_skip=YES`)
//! - `GET /live/{stream}/{rendition}/init.mp4` (`init-N.mp4` after a codec change)
//! - `GET /live/{stream}/{rendition}/{msn}.m4s` — segment; `{msn}.{part}.m4s` — part
//!
//! - `GET /live/{stream}/{rendition}/dvr.m3u8` — the DVR variant: every segment of the
//!   last `storage.recordings.dvr_window` (edges read those past the live window from the
//!   store)
//! - `GET /live/{stream}/thumbnail.jpg` — the stream's latest thumbnail
//!
//! Health (for the control plane; the same secret): `GET /api/streams/{stream}/health`,
//! the seed's `getStreamHealth` (`wire::StreamHealth`: ingest bitrate, fps, keyframe
//! interval, dropped frames, the ladder's rungs and shedding).
//!
//! Recordings (for the control plane; the same secret):
//!
//! - `POST /api/streams/{stream}/recording` (`{"renditions": [...], "max_duration_secs": N}`,
//!   both optional) starts recording the live broadcast: `201 {"id": ...}`; `409` when
//!   already recording, `404` when not live. `DELETE` stops it: `200 {"id": ...}`.
//!   `GET` answers the recording in progress.
//! - `POST /api/streams/{stream}/clips` (`{"start": secs, "end": secs}` from the start of
//!   the recording in progress): `highlightMoment` during the broadcast, `201` the clip.
//! - `GET /api/recordings[?stream=S]`, `GET|DELETE /api/recordings/{id}`,
//!   `POST /api/recordings/{id}/clips` (`{"start": secs, "end": secs}`): the index in the
//!   store (see `potok_storage::recordings`).
//!
//! These routes are for edges: when `cluster.secret` is set, every `/live/*` request must
//! carry `Authorization: Bearer SECRET` (401 otherwise), so private streams cannot be read
//! around the edges' token checks. `/healthz`, `/readyz` stay open.
//!
//! Media is immutable and cached for a year; playlists are short-lived. Requests that wait
//! for media (blocking reload, the preload-hinted part) are bounded per stream and held at
//! most three target durations (then 503).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use potok_media::hls::live::{Blocking, PartLookup};
use potok_media::hls::playlist::{MasterPlaylist, Variant};
use tokio::time::Instant;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{Any, CorsLayer};

use crate::body::Chunks;
use crate::metrics::OriginMetrics;
use crate::streams::{Stream, StreamState, Streams};

pub(crate) const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

#[derive(Clone)]
struct Api {
    streams: Arc<Streams>,
    metrics: OriginMetrics,
}

pub(crate) fn routes(
    streams: Arc<Streams>,
    metrics: OriginMetrics,
    secret: Option<potok_config::Secret>,
) -> Router {
    let compress = CompressionLayer::new().gzip(true).compress_when(
        |_: StatusCode, _: axum::http::Version, headers: &HeaderMap, _: &axum::http::Extensions| {
            headers
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes() == PLAYLIST_TYPE.as_bytes())
        },
    );
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers(Any)
        .expose_headers(Any);
    Router::new()
        .route("/live/{stream}/master.m3u8", get(master))
        .route("/live/{stream}/thumbnail.jpg", get(thumbnail))
        .route(
            "/api/streams/{stream}/recording",
            get(recording_status)
                .post(start_recording)
                .delete(stop_recording),
        )
        .route(
            "/api/streams/{stream}/clips",
            axum::routing::post(clip_live),
        )
        .route("/api/streams/{stream}/health", get(stream_health))
        .route("/api/recordings", get(list_recordings))
        .route(
            "/api/recordings/{id}",
            get(get_recording).delete(delete_recording),
        )
        .route(
            "/api/recordings/{id}/clips",
            axum::routing::post(create_clip),
        )
        .route("/live/{stream}/{rendition}/{file}", get(rendition_file))
        .with_state(Api { streams, metrics })
        .layer(compress)
        .layer(axum::middleware::from_fn(move |req, next| {
            edges_only(secret.clone(), req, next)
        }))
        .layer(cors)
}

/// Lets a request through only with the cluster secret as its bearer token, when one is
/// configured.
async fn edges_only(
    secret: Option<potok_config::Secret>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match secret {
        Some(secret)
            if !potok_service::cluster::bearer_matches(
                req.headers().get(header::AUTHORIZATION),
                &secret,
            ) =>
        {
            (
                StatusCode::UNAUTHORIZED,
                [
                    (header::WWW_AUTHENTICATE, "Bearer"),
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                "the origin serves edges only: Authorization: Bearer <cluster.secret>\n",
            )
                .into_response()
        }
        _ => next.run(req).await,
    }
}

fn text(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!("{msg}\n"),
    )
        .into_response()
}

fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "not found")
}

fn playlist_response(body: String, cache: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, PLAYLIST_TYPE),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}

fn media_response(content_type: &'static str, body: Body) -> Response {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    r
}

async fn master(State(api): State<Api>, Path(name): Path<String>) -> Response {
    let Some(stream) = api.streams.get(&name) else {
        return not_found();
    };
    let st = stream.lock();
    let variants: Vec<Variant> = st
        .listed()
        .map(|r| {
            let announced = st
                .metadata
                .video_kbps
                .unwrap_or(0)
                .saturating_add(st.metadata.audio_kbps.unwrap_or(0));
            let (peak, average) = match r.live.bandwidth() {
                Some((peak, avg)) => (peak, Some(avg)),
                // Nothing measured yet: what the encoder announced, or a conservative guess.
                None if announced > 0 => (u64::from(announced) * 1000 * 5 / 4, None),
                None => (5_000_000, None),
            };
            Variant {
                bandwidth: peak.max(1),
                average_bandwidth: average,
                codecs: Some(r.codecs.clone()),
                resolution: r.resolution,
                frame_rate: r.frame_rate.or(st.metadata.frame_rate),
                uri: format!("{}/index.m3u8", r.name),
            }
        })
        .collect();
    drop(st);
    if variants.is_empty() {
        return not_found();
    }
    playlist_response(
        MasterPlaylist {
            independent_segments: false,
            variants,
        }
        .render(),
        "public, max-age=1",
    )
}

/// What a file name under a rendition asks for.
enum File {
    Playlist,
    Dvr,
    Init(String),
    Segment(u64),
    Part(u64, u64),
}

fn parse_file(file: &str) -> Option<File> {
    if file == "index.m3u8" {
        return Some(File::Playlist);
    }
    if file == "dvr.m3u8" {
        return Some(File::Dvr);
    }
    if file == "init.mp4" || (file.starts_with("init-") && file.ends_with(".mp4")) {
        return Some(File::Init(file.to_owned()));
    }
    let stem = file.strip_suffix(".m4s")?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    match stem.split_once('.') {
        None if digits(stem) => stem.parse().ok().map(File::Segment),
        Some((m, p)) if digits(m) && digits(p) => {
            Some(File::Part(m.parse().ok()?, p.parse().ok()?))
        }
        _ => None,
    }
}

async fn rendition_file(
    State(api): State<Api>,
    Path((name, rendition, file)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(stream) = api.streams.get(&name) else {
        return not_found();
    };
    let Some(file) = parse_file(&file) else {
        return not_found();
    };
    if stream.lock().rendition(&rendition).is_none() {
        return not_found();
    }
    match file {
        File::Playlist => media_playlist(&api, &stream, &rendition, &query).await,
        File::Dvr => {
            let window = api.streams.settings().dvr_window;
            if window.is_zero() || api.streams.store().is_none() {
                return not_found();
            }
            let st = stream.lock();
            let ended = st.renditions.iter().all(|r| r.live.ended());
            match st.rendition(&rendition) {
                Some(r) if r.live.has_media() => {
                    let body = crate::streams::dvr_playlist(r, window, ended);
                    drop(st);
                    api.metrics.bytes_out.inc_by(body.len() as u64);
                    playlist_response(body, "no-cache")
                }
                _ => not_found(),
            }
        }
        File::Init(uri) => match stream
            .lock()
            .rendition(&rendition)
            .and_then(|r| r.live.init(&uri))
        {
            Some(init) => {
                api.metrics.bytes_out.inc_by(init.len() as u64);
                media_response("video/mp4", Body::from(init))
            }
            None => not_found(),
        },
        File::Segment(msn) => match stream
            .lock()
            .rendition(&rendition)
            .and_then(|r| r.live.segment(msn))
        {
            Some(parts) => {
                let len: usize = parts.iter().map(Bytes::len).sum();
                api.metrics.bytes_out.inc_by(len as u64);
                media_response("video/iso.segment", Body::new(Chunks::new(parts)))
            }
            None => not_found(),
        },
        File::Part(msn, part) => part_file(&api, &stream, &rendition, msn, part).await,
    }
}

fn parse_directive(query: &HashMap<String, String>, key: &str) -> Result<Option<u64>, String> {
    match query.get(key) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{key} must be a non-negative integer")),
    }
}

async fn media_playlist(
    api: &Api,
    stream: &Arc<Stream>,
    rendition: &str,
    query: &HashMap<String, String>,
) -> Response {
    let (msn, part) = match (
        parse_directive(query, "_HLS_msn"),
        parse_directive(query, "_HLS_part"),
    ) {
        (Ok(m), Ok(p)) => (m, p),
        (Err(why), _) | (_, Err(why)) => return text(StatusCode::BAD_REQUEST, &why),
    };
    let skip = matches!(
        query.get("_HLS_skip").map(String::as_str),
        Some("YES" | "v2")
    );
    let blocking = msn.is_some();

    let decide = |st: &StreamState| -> Option<Blocking> {
        st.rendition(rendition).map(|r| r.live.blocking(msn, part))
    };
    let first = {
        let st = stream.lock();
        match st.rendition(rendition) {
            Some(r) if r.live.has_media() => decide(&st),
            _ => return not_found(),
        }
    };
    match first {
        Some(Blocking::Ready) => {}
        Some(Blocking::Reject(why)) => return text(StatusCode::BAD_REQUEST, why),
        None => return not_found(),
        Some(Blocking::Wait) => {
            let outcome = hold(api, stream, |st| match decide(st) {
                Some(Blocking::Wait) => None,
                other => Some(other),
            })
            .await;
            match outcome {
                Ok(Some(Blocking::Ready)) => {}
                Ok(Some(Blocking::Reject(why))) => return text(StatusCode::BAD_REQUEST, why),
                Ok(_) => return not_found(),
                Err(e) => return e.response(),
            }
        }
    }
    let body = {
        let st = stream.lock();
        let Some(r) = st.rendition(rendition) else {
            return not_found();
        };
        r.live.playlist(skip, st.reports(rendition)).render()
    };
    api.metrics.bytes_out.inc_by(body.len() as u64);
    // A blocking response names one state of the stream for good; the plain URL changes with
    // every part.
    playlist_response(
        body,
        if blocking {
            "public, max-age=6"
        } else {
            "no-cache"
        },
    )
}

async fn part_file(
    api: &Api,
    stream: &Arc<Stream>,
    rendition: &str,
    msn: u64,
    part: u64,
) -> Response {
    let lookup = |st: &StreamState| {
        st.rendition(rendition)
            .map_or(PartLookup::Missing, |r| r.live.part(msn, part))
    };
    let first = lookup(&stream.lock());
    let data: Bytes = match first {
        PartLookup::Ready(d) => d,
        PartLookup::Missing => return not_found(),
        PartLookup::Pending => {
            let outcome = hold(api, stream, |st| match lookup(st) {
                PartLookup::Pending => None,
                other => Some(other),
            })
            .await;
            match outcome {
                Ok(PartLookup::Ready(d)) => d,
                Ok(_) => return not_found(),
                Err(e) => return e.response(),
            }
        }
    };
    api.metrics.bytes_out.inc_by(data.len() as u64);
    media_response("video/iso.segment", Body::from(data))
}

/// Why a held request was let go without its answer.
enum HoldError {
    Full,
    Timeout,
    Gone,
}

impl HoldError {
    fn response(self) -> Response {
        match self {
            HoldError::Full => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many requests waiting for this stream",
            ),
            HoldError::Timeout => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "media did not arrive in time",
            ),
            HoldError::Gone => not_found(),
        }
    }
}

/// Holds a request until `ready` answers, the hold limit passes or the stream's waiting
/// room is full (at once).
async fn hold<T>(
    api: &Api,
    stream: &Arc<Stream>,
    mut ready: impl FnMut(&StreamState) -> Option<T>,
) -> Result<T, HoldError> {
    let Ok(_permit) = Arc::clone(&stream.held).try_acquire_owned() else {
        return Err(HoldError::Full);
    };
    api.metrics.held_requests.inc();
    let _held = HeldGuard(&api.metrics);
    let deadline = Instant::now() + api.streams.settings().hold_limit();
    let mut changes = stream.subscribe();
    loop {
        if let Some(v) = ready(&stream.lock()) {
            return Ok(v);
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Err(HoldError::Gone);
                }
            }
            () = tokio::time::sleep_until(deadline) => return Err(HoldError::Timeout),
        }
    }
}

struct HeldGuard<'a>(&'a OriginMetrics);

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        self.0.held_requests.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert!(matches!(parse_file("index.m3u8"), Some(File::Playlist)));
        assert!(matches!(parse_file("init.mp4"), Some(File::Init(_))));
        assert!(matches!(parse_file("init-2.mp4"), Some(File::Init(_))));
        assert!(matches!(parse_file("17.m4s"), Some(File::Segment(17))));
        assert!(matches!(parse_file("17.3.m4s"), Some(File::Part(17, 3))));
        for bad in [
            "",
            "x.m4s",
            "1.2.3.m4s",
            "-1.m4s",
            ".m4s",
            "1..m4s",
            "../1.m4s",
            "99999999999999999999999.m4s",
            "1.m4s.m4s",
        ] {
            assert!(parse_file(bad).is_none(), "{bad}");
        }
    }
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(value),
    )
        .into_response()
}

fn recording_error(e: &potok_storage::RecordingError) -> Response {
    use potok_storage::RecordingError as E;
    match e {
        E::InvalidId => text(StatusCode::BAD_REQUEST, "invalid recording id"),
        E::NotFound => not_found(),
        E::EmptyRange => text(StatusCode::BAD_REQUEST, "the range holds no media"),
        E::InProgress => text(StatusCode::CONFLICT, "the recording is still in progress"),
        E::Corrupt(_) | E::Store(_) => {
            tracing::warn!(error = %e, "recordings: store request failed");
            text(StatusCode::BAD_GATEWAY, "object store unavailable")
        }
    }
}

fn control_error(e: &crate::streams::RecordingControl) -> Response {
    use crate::streams::RecordingControl as C;
    match e {
        C::NoStorage => text(
            StatusCode::NOT_FOUND,
            "object storage is off on this origin",
        ),
        C::NotLive => text(StatusCode::NOT_FOUND, "the stream is not live here"),
        C::Conflict => text(StatusCode::CONFLICT, "already recording / not recording"),
        C::BadRendition => text(StatusCode::BAD_REQUEST, "invalid rendition name"),
    }
}

#[derive(serde::Serialize)]
struct RecordingRef {
    id: String,
}

async fn stream_health(State(api): State<Api>, Path(name): Path<String>) -> Response {
    match api.streams.health(&name) {
        Some(h) => json(StatusCode::OK, &h),
        None => text(StatusCode::NOT_FOUND, "no such stream"),
    }
}

async fn recording_status(State(api): State<Api>, Path(name): Path<String>) -> Response {
    match api.streams.recording_of(&name) {
        Some(id) => json(StatusCode::OK, &RecordingRef { id }),
        None => text(StatusCode::NOT_FOUND, "not recording"),
    }
}

async fn start_recording(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let req: crate::archive::RecordingRequest = if body.is_empty() {
        Default::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return text(StatusCode::BAD_REQUEST, &format!("invalid settings: {e}")),
        }
    };
    match api.streams.start_recording(&name, &req) {
        Ok(id) => json(StatusCode::CREATED, &RecordingRef { id }),
        Err(e) => control_error(&e),
    }
}

async fn stop_recording(State(api): State<Api>, Path(name): Path<String>) -> Response {
    match api.streams.stop_recording(&name) {
        Ok(id) => json(StatusCode::OK, &RecordingRef { id }),
        Err(e) => control_error(&e),
    }
}

async fn list_recordings(
    State(api): State<Api>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(store) = api.streams.store() else {
        return not_found();
    };
    match potok_storage::recordings::list(store, query.get("stream").map(String::as_str)).await {
        Ok(list) => json(StatusCode::OK, &list),
        Err(e) => recording_error(&e),
    }
}

async fn get_recording(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let Some(store) = api.streams.store() else {
        return not_found();
    };
    match potok_storage::recordings::get(store, &id).await {
        Ok(m) => json(StatusCode::OK, &m),
        Err(e) => recording_error(&e),
    }
}

async fn delete_recording(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let Some(store) = api.streams.store() else {
        return not_found();
    };
    match potok_storage::recordings::delete(store, &id).await {
        Ok(()) => {
            tracing::info!(recording = %id, "recording deleted");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => recording_error(&e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClipRequest {
    start: f64,
    end: f64,
}

async fn create_clip(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> Response {
    let Some(store) = api.streams.store() else {
        return not_found();
    };
    let req: ClipRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, &format!("invalid clip: {e}")),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    match potok_storage::recordings::create_clip(store, &id, req.start, req.end, now).await {
        Ok(m) => json(StatusCode::CREATED, &m),
        Err(e) => recording_error(&e),
    }
}

async fn clip_live(State(api): State<Api>, Path(name): Path<String>, body: Bytes) -> Response {
    let req: ClipRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, &format!("invalid clip: {e}")),
    };
    match api.streams.clip_live(&name, req.start, req.end) {
        Ok(m) => json(StatusCode::CREATED, &m),
        Err(Ok(c)) => control_error(&c),
        Err(Err(e)) => recording_error(&e),
    }
}

async fn thumbnail(State(api): State<Api>, Path(name): Path<String>) -> Response {
    let Some(jpeg) = api.streams.thumbnail(&name) else {
        return not_found();
    };
    let mut r = Response::new(Body::from(jpeg));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=5"),
    );
    r
}
