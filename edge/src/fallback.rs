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

/// The store behind the routes below, with caches in front: VOD media and posters
/// (immutable) kept by size up to a bound, read from the store once however many viewers ask
/// at once; manifests (what lets media be served: a deleted recording's media is refused
/// within [`SHORT_TTL`]) and thumbnails for [`SHORT_TTL`].
#[derive(Clone)]
pub(crate) struct Stored {
    store: potok_storage::Store,
    media: moka::future::Cache<String, Bytes>,
    manifests: moka::future::Cache<String, Arc<potok_storage::Manifest>>,
    thumbnails: moka::future::Cache<String, Bytes>,
}

/// How long a manifest or a thumbnail read from the store answers.
const SHORT_TTL: std::time::Duration = std::time::Duration::from_secs(2);

type StoreRead<T> = Result<T, Arc<potok_storage::RecordingError>>;

impl Stored {
    /// Over `store`, keeping up to `media_bytes` of VOD media.
    pub(crate) fn new(store: potok_storage::Store, media_bytes: u64) -> Self {
        let by_size = |_: &String, b: &Bytes| u32::try_from(b.len() + 128).unwrap_or(u32::MAX);
        Stored {
            store,
            media: moka::future::Cache::builder()
                .max_capacity(media_bytes)
                .weigher(by_size)
                .build(),
            manifests: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(SHORT_TTL)
                .build(),
            thumbnails: moka::future::Cache::builder()
                .max_capacity(16 << 20)
                .weigher(by_size)
                .time_to_live(SHORT_TTL)
                .build(),
        }
    }

    async fn read(
        store: &potok_storage::Store,
        key: &str,
    ) -> Result<Bytes, potok_storage::RecordingError> {
        store
            .get(key)
            .await?
            .ok_or(potok_storage::RecordingError::NotFound)
    }

    async fn manifest(&self, id: &str) -> StoreRead<Arc<potok_storage::Manifest>> {
        potok_storage::check_id(id).map_err(Arc::new)?;
        self.manifests
            .try_get_with(id.to_owned(), async {
                potok_storage::recordings::get(&self.store, id)
                    .await
                    .map(Arc::new)
            })
            .await
    }

    async fn media(&self, key: String) -> StoreRead<Bytes> {
        self.media
            .try_get_with(key.clone(), Self::read(&self.store, &key))
            .await
    }

    async fn thumbnail(&self, key: String) -> StoreRead<Bytes> {
        self.thumbnails
            .try_get_with(key.clone(), Self::read(&self.store, &key))
            .await
    }
}

/// Routes served from the store alone:
///
/// - `GET /vod/{id}/master.m3u8`, `/vod/{id}/{rendition}/index.m3u8` and the media they
///   name: recordings and clips (immutable once listed); `/vod/{id}/poster.jpg`, a
///   recording's poster;
/// - `GET /thumbnails/{stream}.jpg`: the latest thumbnail of a stream (`max-age=5`).
pub(crate) fn stored_routes(stored: Stored) -> axum::Router {
    axum::Router::new()
        .route("/vod/{*path}", axum::routing::get(vod))
        .route("/thumbnails/{file}", axum::routing::get(thumbnail))
        .with_state(stored)
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
    axum::extract::State(stored): axum::extract::State<Stored>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    use potok_storage::recordings;
    const PLAYLIST: &str = "application/vnd.apple.mpegurl";
    const IMMUTABLE: &str = "public, max-age=31536000, immutable";
    if path.len() > crate::object::MAX_PATH {
        return refusal(&potok_storage::RecordingError::InvalidId);
    }
    let parts: Vec<&str> = path.split('/').collect();
    let store = &stored.store;
    // Playlists are read from the store every time: a deletion shows at once.
    let playlist = |read: Result<String, potok_storage::RecordingError>| {
        read.map(|t| {
            stored_response(
                StatusCode::OK,
                PLAYLIST,
                "public, max-age=60",
                Bytes::from(t),
            )
        })
        .map_err(Arc::new)
    };
    let result: StoreRead<Response> = match parts.as_slice() {
        [id, "master.m3u8"] => playlist(recordings::master_playlist(store, id).await),
        // A deleted recording's poster goes with it (the manifest is the gate).
        [id, "poster.jpg"] => match stored.manifest(id).await {
            Ok(_) => stored
                .media(recordings::poster_key(id))
                .await
                .map(|b| stored_response(StatusCode::OK, "image/jpeg", "public, max-age=3600", b)),
            Err(e) => Err(e),
        },
        [id, rendition, "index.m3u8"] => {
            playlist(recordings::media_playlist(store, id, rendition).await)
        }
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
            match stored.manifest(id).await {
                Ok(m) if m.renditions.iter().any(|r| r.name == *rendition) => stored
                    .media(recordings::media_key(&m, rendition, file))
                    .await
                    .map(|b| stored_response(StatusCode::OK, content_type, IMMUTABLE, b)),
                Ok(_) => Err(Arc::new(potok_storage::RecordingError::NotFound)),
                Err(e) => Err(e),
            }
        }
        _ => Err(Arc::new(potok_storage::RecordingError::InvalidId)),
    };
    result.unwrap_or_else(|e| refusal(&e))
}

async fn thumbnail(
    axum::extract::State(stored): axum::extract::State<Stored>,
    axum::extract::Path(file): axum::extract::Path<String>,
) -> Response {
    let Some(stream) = file.strip_suffix(".jpg") else {
        return refusal(&potok_storage::RecordingError::NotFound);
    };
    if potok_storage::check_id(stream).is_err() {
        return refusal(&potok_storage::RecordingError::InvalidId);
    }
    match stored
        .thumbnail(potok_storage::recordings::thumbnail_key(stream))
        .await
    {
        Ok(b) => stored_response(StatusCode::OK, "image/jpeg", "public, max-age=5", b),
        Err(e) => refusal(&e),
    }
}
