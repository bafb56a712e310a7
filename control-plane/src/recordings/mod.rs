//! Recordings (the seed's `startRecording`, `stopRecording`, `getRecordings`): each channel's
//! settings, carried to its origin in the publish grant; starting and stopping the recording
//! of a live broadcast on the origin that holds it (its recording API, with the cluster
//! secret); the index of recordings and clips read from the object store the origins write
//! (`potok_storage::recordings`: the same `[storage]` configuration — S3 in a cluster, the
//! origin's directory in `potok all`); and the retention sweep by each channel's days.

pub(crate) mod repo;
pub(crate) mod routes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use potok_config::wire::GrantRecording;
use potok_config::{Config, RecordingsConfig, Secret};
use potok_service::cluster::{CallError, ControlPlane};
use potok_storage::recordings::{self, Kind, Manifest, RecordingError};
use potok_storage::{StorageMetrics, Store};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use utoipa::ToSchema;

use crate::db::Db;
use crate::error::{ApiError, StreamingErrorCode};
use crate::model::{Node, Stream, now_ms};

/// A channel's recording settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordingSettings {
    /// Record every broadcast from its start.
    pub record: bool,
    /// Renditions kept (`source`, `720p`…); empty: every rendition.
    #[schema(max_items = 8, value_type = Vec<RenditionName>)]
    pub renditions: Vec<String>,
    /// Longest recording in seconds (60-172800); `null`: the platform's default.
    #[schema(minimum = 60, maximum = 172800)]
    pub max_duration_secs: Option<i64>,
    /// Days a recording or clip is kept after it ends (0-3650; 0: forever).
    #[schema(minimum = 0, maximum = 3650)]
    pub retention_days: i64,
}

/// A rendition's name as the OpenAPI document describes it: 1-64 letters, digits, `-`, `_`.
pub(crate) struct RenditionName;

impl utoipa::PartialSchema for RenditionName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[A-Za-z0-9_-]{1,64}$"))
            .into()
    }
}

impl ToSchema for RenditionName {}

/// What arrives from a live stream's publisher over the last seconds and how its ladder
/// keeps up (an origin's `wire::StreamHealth`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct StreamHealth {
    /// `true` while the publisher is connected; `false` in the reconnect grace period.
    pub publishing: bool,
    /// Ingest bitrate (audio and video) over the last 5 s, kbit/s.
    pub bitrate_kbps: u32,
    /// Video frames per second received over the last 5 s.
    pub fps: f64,
    /// Seconds between the last two keyframes.
    pub keyframe_interval_secs: Option<f64>,
    /// Video frames dropped since the broadcast started (before the first keyframe, or
    /// because the ladder fell behind).
    pub dropped_frames: u64,
    /// The source's video codec (`avc1.64001f`).
    pub video_codecs: Option<String>,
    /// The source's picture `[width, height]`.
    pub resolution: Option<Vec<u32>>,
    /// The ladder's real-time factor (1 = keeping up), when it transcodes.
    pub realtime_factor: Option<f64>,
    /// The ladder's rungs, best first.
    pub rungs: Vec<RungHealth>,
    /// Whether a rung was shed.
    pub shedding: bool,
}

/// One rung of a stream's ladder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct RungHealth {
    /// Rendition name.
    pub name: String,
    /// Encoded frames per second.
    pub fps: f64,
    /// `false` once shed.
    pub active: bool,
}

/// A recording or clip.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub(crate) struct Recording {
    /// Id.
    pub id: String,
    /// `recording` (a broadcast) or `clip` (a range of one).
    pub kind: String,
    /// The channel (stream name).
    pub channel: String,
    /// A clip's recording.
    pub parent: Option<String>,
    /// A clip's range in its recording, seconds `[start, end]`.
    pub range: Option<Vec<f64>>,
    /// When it started (a clip: when it was cut), Unix milliseconds.
    pub started_at: i64,
    /// When it ended; `null` while the broadcast is still being recorded.
    pub ended_at: Option<i64>,
    /// Seconds of media.
    pub duration_secs: f64,
    /// The renditions kept, best first.
    pub renditions: Vec<String>,
    /// Playback URL path on any edge (`/vod/{id}/master.m3u8`).
    pub playback_path: String,
    /// Its poster on any edge (a clip: its recording's), a JPEG of the first thumbnail made
    /// while recording; 404 when none was made.
    pub poster_path: String,
}

impl From<Manifest> for Recording {
    fn from(m: Manifest) -> Self {
        Recording {
            playback_path: format!("/vod/{}/master.m3u8", m.id),
            poster_path: format!("/vod/{}/poster.jpg", m.parent.as_deref().unwrap_or(&m.id)),
            kind: match m.kind {
                Kind::Recording => "recording",
                Kind::Clip => "clip",
            }
            .to_owned(),
            channel: m.stream,
            parent: m.parent,
            range: m.range.map(|(a, b)| vec![a, b]),
            started_at: m.started_ms,
            ended_at: m.ended_ms,
            duration_secs: m.duration,
            renditions: m.renditions.into_iter().map(|r| r.name).collect(),
            id: m.id,
        }
    }
}

/// The recordings area.
pub(crate) struct Recordings {
    store: Option<Store>,
    secret: Option<Secret>,
    defaults: RecordingsConfig,
    /// The store's listing (every manifest read), newest first, shared by the listings of
    /// the next [`LISTING_TTL`]: directory pages ask often, and on S3 each manifest is a GET.
    listing: tokio::sync::Mutex<Option<(std::time::Instant, Arc<Vec<Recording>>)>>,
}

/// How long a listing of the store answers `get_recordings`.
const LISTING_TTL: Duration = Duration::from_secs(5);

/// A highlight is clipped this long after the moment (the segments around it are finished).
const CLIP_AFTER: i64 = 10_000;
/// Seconds of the recording before the moment a clip keeps…
const CLIP_BEFORE: f64 = 30.0;
/// …and after it.
const CLIP_PAST: f64 = 5.0;
/// A highlight whose clip could not be made this long after the moment is given up.
const CLIP_GIVE_UP: i64 = 10 * 60_000;

/// How long a call to an origin's recording API may take.
const ORIGIN_TIMEOUT: Duration = Duration::from_secs(5);

impl Recordings {
    /// Opens the store the origins write, when archiving is on.
    pub(crate) fn new(config: &Config, metrics: StorageMetrics) -> Result<Self, String> {
        let store = if config.origin.archive.enabled {
            let local = config
                .origin
                .archive
                .path
                .clone()
                .unwrap_or_else(|| config.node.data_dir.join("archive"));
            Store::open(&config.storage, Some(local), metrics).map_err(|e| e.to_string())?
        } else {
            None
        };
        Ok(Recordings {
            store,
            secret: config.cluster.secret.clone(),
            defaults: config.storage.recordings.clone(),
            listing: tokio::sync::Mutex::new(None),
        })
    }

    fn store(&self) -> Result<&Store, ApiError> {
        self.store.as_ref().ok_or_else(|| {
            ApiError::new(
                StreamingErrorCode::NotFound,
                "recordings are off on this installation (origin.archive.enabled = false)",
            )
        })
    }

    /// `channel`'s settings: its own, else the configuration's.
    pub(crate) async fn settings(
        &self,
        db: &Db,
        channel_id: &str,
    ) -> Result<RecordingSettings, ApiError> {
        Ok(match db.recording_settings(channel_id).await? {
            Some(s) => s,
            None => RecordingSettings {
                record: self.defaults.enabled,
                renditions: self.defaults.renditions.clone(),
                max_duration_secs: None,
                retention_days: i64::from(self.defaults.retention_days),
            },
        })
    }

    /// What a publish grant carries for `channel_id`: its own settings, or `None` (the
    /// origin's configuration then decides, its per-stream entries included).
    pub(crate) async fn grant(
        &self,
        db: &Db,
        channel_id: &str,
    ) -> Result<Option<GrantRecording>, ApiError> {
        Ok(db
            .recording_settings(channel_id)
            .await?
            .map(|s| GrantRecording {
                enabled: s.record,
                renditions: s.renditions,
                max_duration_secs: s.max_duration_secs.and_then(|d| u64::try_from(d).ok()),
            }))
    }

    fn origin(&self, node: &Node) -> Result<ControlPlane, ApiError> {
        let secret = self.secret.clone().ok_or_else(|| {
            ApiError::new(
                StreamingErrorCode::PlatformUnavailable,
                "the origin's recording API needs cluster.secret",
            )
        })?;
        Ok(ControlPlane::node(&node.http_url, secret, ORIGIN_TIMEOUT))
    }

    /// Starts recording live `stream` on `node` (its origin); returns the recording id.
    pub(crate) async fn start(
        &self,
        node: &Node,
        stream: &Stream,
        renditions: Vec<String>,
        max_duration_secs: Option<u64>,
    ) -> Result<String, ApiError> {
        #[derive(Serialize)]
        struct Start {
            renditions: Vec<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            max_duration_secs: Option<u64>,
        }
        let r: RecordingRef = self
            .origin(node)?
            .post(
                &format!("/api/streams/{}/recording", stream.name),
                &Start {
                    renditions,
                    max_duration_secs,
                },
            )
            .await
            .map_err(origin_error)?;
        info!(stream = %stream.name, recording = %r.id, "recording started");
        Ok(r.id)
    }

    /// The health of live `stream` from `node` (its origin): the seed's `getStreamHealth`.
    pub(crate) async fn health(
        &self,
        node: &Node,
        stream: &Stream,
    ) -> Result<StreamHealth, ApiError> {
        self.origin(node)?
            .get(&format!("/api/streams/{}/health", stream.name))
            .await
            .map_err(origin_error)
    }

    /// Stops the recording of `stream` on `node`; returns its id.
    pub(crate) async fn stop(&self, node: &Node, stream: &Stream) -> Result<String, ApiError> {
        let r: RecordingRef = self
            .origin(node)?
            .delete(&format!("/api/streams/{}/recording", stream.name))
            .await
            .map_err(origin_error)?;
        info!(stream = %stream.name, recording = %r.id, "recording stopped");
        Ok(r.id)
    }

    /// Recordings and clips of `channel` (every channel's when `None`), newest first.
    pub(crate) async fn list(&self, channel: Option<&str>) -> Result<Vec<Recording>, ApiError> {
        let store = self.store()?;
        // One reader at a time: concurrent listings wait for the same read.
        let mut listing = self.listing.lock().await;
        let all = match &*listing {
            Some((at, all)) if at.elapsed() < LISTING_TTL => Arc::clone(all),
            _ => {
                let mut read = recordings::list(store, None).await.map_err(store_error)?;
                read.reverse();
                let all = Arc::new(read.into_iter().map(Recording::from).collect::<Vec<_>>());
                *listing = Some((std::time::Instant::now(), Arc::clone(&all)));
                all
            }
        };
        drop(listing);
        Ok(all
            .iter()
            .filter(|r| channel.is_none_or(|c| c == r.channel))
            .cloned()
            .collect())
    }

    /// The next listing reads the store again (after a deletion here).
    async fn forget_listing(&self) {
        *self.listing.lock().await = None;
    }

    /// One recording or clip.
    pub(crate) async fn get(&self, id: &str) -> Result<Recording, ApiError> {
        recordings::get(self.store()?, id)
            .await
            .map(Recording::from)
            .map_err(store_error)
    }

    /// Deletes finished recording or clip `rec` (its media too unless another still uses
    /// it).
    pub(crate) async fn delete(&self, rec: &Recording) -> Result<(), ApiError> {
        if rec.ended_at.is_none() {
            return Err(ApiError::new(
                StreamingErrorCode::Conflict,
                "the recording is still in progress; stop it first",
            ));
        }
        recordings::delete(self.store()?, &rec.id)
            .await
            .map_err(store_error)?;
        self.forget_listing().await;
        info!(recording = %rec.id, channel = %rec.channel, "recording deleted");
        Ok(())
    }

    /// Deletes what is past its channel's retention, every `storage.recordings.sweep_interval`.
    pub(crate) async fn run_retention(&self, db: Db, shutdown: CancellationToken) {
        let Some(store) = &self.store else {
            return;
        };
        let mut every = tokio::time::interval(self.defaults.sweep_interval.get());
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            if let Err(e) = self.sweep(store, &db).await {
                warn!(error = %e, "retention sweep failed; trying again later");
            }
        }
    }

    /// Cuts a clip around each highlighted moment (the seed's `highlightMoment`) from the
    /// recording in progress, once the segments after it are finished.
    pub(crate) async fn run_clips(&self, db: Db, shutdown: CancellationToken) {
        if self.store.is_none() {
            return;
        }
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            if let Err(e) = self.clip_highlights(&db, now_ms()).await {
                warn!(error = %e.message, "highlight clips: trying again later");
            }
        }
    }

    /// One pass over the highlights older than [`CLIP_AFTER`] at `now`.
    pub(crate) async fn clip_highlights(&self, db: &Db, now: i64) -> Result<(), ApiError> {
        let store = self.store()?;
        for (id, at, stream_id) in db.pending_highlights(now - CLIP_AFTER).await? {
            let stream = db.stream(&stream_id).await?;
            let recording = stream
                .as_ref()
                .and_then(|s| Some((s, s.recording_id.as_deref()?, s.origin_node_id.as_deref()?)));
            let Some((stream, rec, node_id)) = recording else {
                db.set_highlight_clip(&id, "skipped", None).await?;
                continue;
            };
            let started = match recordings::get(store, rec).await {
                Ok(m) => m.started_ms,
                Err(RecordingError::NotFound) => {
                    db.set_highlight_clip(&id, "skipped", None).await?;
                    continue;
                }
                Err(e) => return Err(store_error(e)),
            };
            // The moment in the recording's time, and the seconds before it.
            let t = ((at - started).max(0) as f64) / 1000.0;
            let range = ((t - CLIP_BEFORE).max(0.0), t + CLIP_PAST);
            let made = match db.node(node_id).await? {
                Some(node) => self.clip_live(&node, &stream.name, range).await,
                None => Err(ApiError::new(StreamingErrorCode::Conflict, "no origin")),
            };
            match made {
                Ok(clip) => {
                    info!(highlight = %id, clip = %clip, stream = %stream.name, "highlight clipped");
                    db.set_highlight_clip(&id, "made", Some(&clip)).await?;
                }
                // Retried on the next pass while the moment is recent.
                Err(e) if now - at < CLIP_GIVE_UP => {
                    warn!(highlight = %id, error = %e.message, "highlight clip not made yet");
                }
                Err(e) => {
                    warn!(highlight = %id, error = %e.message, "highlight clip given up");
                    db.set_highlight_clip(&id, "failed", None).await?;
                }
            }
        }
        Ok(())
    }

    async fn clip_live(
        &self,
        node: &Node,
        stream: &str,
        (start, end): (f64, f64),
    ) -> Result<String, ApiError> {
        #[derive(Serialize)]
        struct Range {
            start: f64,
            end: f64,
        }
        let clip: Manifest = self
            .origin(node)?
            .post(
                &format!("/api/streams/{stream}/clips"),
                &Range { start, end },
            )
            .await
            .map_err(origin_error)?;
        Ok(clip.id)
    }

    async fn sweep(&self, store: &Store, db: &Db) -> Result<Vec<String>, String> {
        let days: HashMap<String, u32> = db
            .retention_by_channel()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(name, d)| (name, u32::try_from(d).unwrap_or(0)))
            .collect();
        let gone = recordings::sweep(
            store,
            |s| {
                days.get(s)
                    .copied()
                    .unwrap_or_else(|| self.defaults.retention_days_of(s))
            },
            now_ms(),
        )
        .await
        .map_err(|e| e.to_string())?;
        if !gone.is_empty() {
            self.forget_listing().await;
            info!(deleted = gone.len(), "retention sweep done");
        }
        Ok(gone)
    }
}

#[derive(Deserialize)]
struct RecordingRef {
    id: String,
}

fn origin_error(e: CallError) -> ApiError {
    match e {
        CallError::Refused { status: 404, .. } => ApiError::new(
            StreamingErrorCode::Conflict,
            "the stream is not live on its origin",
        ),
        CallError::Refused { status: 409, .. } => ApiError::new(
            StreamingErrorCode::Conflict,
            "already recording (start) or not recording (stop)",
        ),
        CallError::Refused { status, body } => {
            warn!(status, message = %body.message, "origin refused a recording call");
            ApiError::new(StreamingErrorCode::ValidationFailed, body.message)
        }
        CallError::Unreachable(why) => {
            warn!(error = %why, "origin unreachable for a recording call");
            ApiError::new(
                StreamingErrorCode::PlatformUnavailable,
                "the stream's origin cannot be reached now",
            )
        }
    }
}

fn store_error(e: RecordingError) -> ApiError {
    match e {
        RecordingError::NotFound | RecordingError::InvalidId => ApiError::not_found("recording"),
        RecordingError::InProgress => ApiError::new(
            StreamingErrorCode::Conflict,
            "the recording is still in progress",
        ),
        e => {
            warn!(error = %e, "recordings: store request failed");
            ApiError::new(
                StreamingErrorCode::PlatformUnavailable,
                "the recordings store cannot be reached now",
            )
        }
    }
}
