//! Object-store fallback: segments and init segments an origin no longer holds are read from
//! the archive the origins write, at `{stream}/{broadcast}/{rendition}/{file}`. A broadcast's
//! id is its first media sequence number, so the broadcast holding segment `msn` is the one
//! with the largest id not above it.

use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{GetOptions, ObjectStore};

use crate::object::{Class, Object};

/// Reads archived objects.
#[derive(Clone)]
pub(crate) struct Fallback {
    store: Arc<dyn ObjectStore>,
}

impl Fallback {
    /// Over `store`.
    pub(crate) fn new(store: Arc<dyn ObjectStore>) -> Self {
        Fallback { store }
    }

    /// The archived bytes of `obj`, if it is a segment or init segment the archive holds.
    pub(crate) async fn find(&self, obj: &Object) -> Option<Bytes> {
        let rendition = obj.rendition.as_deref()?;
        if !matches!(obj.class, Class::Segment | Class::Init) {
            return None;
        }
        let listing = self
            .store
            .list_with_delimiter(Some(&StorePath::from(obj.stream.as_str())))
            .await
            .ok()?;
        let broadcasts = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.parse::<u64>().ok());
        let broadcast = match obj.msn {
            Some(msn) => broadcasts.filter(|b| *b <= msn).max()?,
            None => broadcasts.max()?,
        };
        let path = StorePath::from(format!(
            "{}/{broadcast}/{rendition}/{}",
            obj.stream, obj.file
        ));
        let got = self
            .store
            .get_opts(&path, GetOptions::default())
            .await
            .ok()?;
        got.bytes().await.ok()
    }
}

/// Routes served from the store alone:
///
/// - `GET /vod/{id}/master.m3u8`, `/vod/{id}/{rendition}/index.m3u8` and the media they
///   name: recordings and clips (immutable once listed); `/vod/{id}/poster.jpg`, a
///   recording's poster;
/// - `GET /thumbnails/{stream}.jpg`: the latest thumbnail of a stream (`max-age=5`).
pub(crate) fn stored_routes(store: potok_storage::Store) -> axum::Router {
    axum::Router::new()
        .route("/vod/{*path}", axum::routing::get(vod))
        .route("/thumbnails/{file}", axum::routing::get(thumbnail))
        .with_state(store)
}

fn stored_response(
    status: StatusCode,
    content_type: &'static str,
    cache: &'static str,
    body: Bytes,
) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}

fn refusal(e: &potok_storage::RecordingError) -> Response {
    use potok_storage::RecordingError as E;
    let (status, msg) = match e {
        E::InvalidId => (StatusCode::BAD_REQUEST, "invalid path\n"),
        E::NotFound | E::EmptyRange | E::InProgress => (StatusCode::NOT_FOUND, "not found\n"),
        E::Corrupt(_) | E::Store(_) => {
            tracing::warn!(error = %e, "object store read failed");
            (StatusCode::BAD_GATEWAY, "storage unavailable\n")
        }
    };
    stored_response(
        status,
        "text/plain; charset=utf-8",
        "no-store",
        Bytes::from_static(msg.as_bytes()),
    )
}

async fn vod(
    axum::extract::State(store): axum::extract::State<potok_storage::Store>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    use potok_storage::recordings;
    const PLAYLIST: &str = "application/vnd.apple.mpegurl";
    const IMMUTABLE: &str = "public, max-age=31536000, immutable";
    if path.len() > crate::object::MAX_PATH {
        return refusal(&potok_storage::RecordingError::InvalidId);
    }
    let parts: Vec<&str> = path.split('/').collect();
    let result = match parts.as_slice() {
        [id, "master.m3u8"] => recordings::master_playlist(&store, id).await.map(|t| {
            stored_response(
                StatusCode::OK,
                PLAYLIST,
                "public, max-age=60",
                Bytes::from(t),
            )
        }),
        [id, "poster.jpg"] => {
            if let Err(e) = potok_storage::check_id(id) {
                return refusal(&e);
            }
            match store.get(&recordings::poster_key(id)).await {
                Ok(Some(b)) => Ok(stored_response(
                    StatusCode::OK,
                    "image/jpeg",
                    "public, max-age=3600",
                    b,
                )),
                Ok(None) => Err(potok_storage::RecordingError::NotFound),
                Err(e) => Err(e.into()),
            }
        }
        [id, rendition, "index.m3u8"] => recordings::media_playlist(&store, id, rendition)
            .await
            .map(|t| {
                stored_response(
                    StatusCode::OK,
                    PLAYLIST,
                    "public, max-age=60",
                    Bytes::from(t),
                )
            }),
        [id, rendition, file] => {
            let media = match crate::object::parse(&format!("/live/x/{rendition}/{file}"), None) {
                Ok(o) if matches!(o.class, Class::Segment | Class::Init) => o,
                _ => return refusal(&potok_storage::RecordingError::InvalidId),
            };
            let content_type = if media.class == Class::Init {
                "video/mp4"
            } else {
                "video/iso.segment"
            };
            match recordings::get(&store, id).await {
                Ok(m) if m.renditions.iter().any(|r| r.name == *rendition) => {
                    match store.get(&recordings::media_key(&m, rendition, file)).await {
                        Ok(Some(b)) => {
                            Ok(stored_response(StatusCode::OK, content_type, IMMUTABLE, b))
                        }
                        Ok(None) => Err(potok_storage::RecordingError::NotFound),
                        Err(e) => Err(e.into()),
                    }
                }
                Ok(_) => Err(potok_storage::RecordingError::NotFound),
                Err(e) => Err(e),
            }
        }
        _ => Err(potok_storage::RecordingError::InvalidId),
    };
    result.unwrap_or_else(|e| refusal(&e))
}

async fn thumbnail(
    axum::extract::State(store): axum::extract::State<potok_storage::Store>,
    axum::extract::Path(file): axum::extract::Path<String>,
) -> Response {
    let Some(stream) = file.strip_suffix(".jpg") else {
        return refusal(&potok_storage::RecordingError::NotFound);
    };
    if potok_storage::check_id(stream).is_err() {
        return refusal(&potok_storage::RecordingError::InvalidId);
    }
    match store
        .get(&potok_storage::recordings::thumbnail_key(stream))
        .await
    {
        Ok(Some(b)) => stored_response(StatusCode::OK, "image/jpeg", "public, max-age=5", b),
        Ok(None) => refusal(&potok_storage::RecordingError::NotFound),
        Err(e) => refusal(&e.into()),
    }
}
