//! Copies of finished segments, init segments, playlists, recording manifests and thumbnails
//! in object storage, off the live path: ingest hands each write to the storage crate's
//! spool (local disk first, uploaded in order by one task), and moves on. A slow or failing
//! store costs disk space up to `storage.spool.max_bytes`, never ingest or viewer latency;
//! an origin restart uploads what the previous run left.
//!
//! Recordings: a broadcast is recorded from its first segment (or from an API start) until
//! it ends (or an API stop). Its manifest is written when it starts (in progress) and again
//! with its VOD playlists when it ends, each after the media it names.

use std::time::Duration;

use bytes::Bytes;
use potok_config::RecordingsConfig;
use potok_storage::recordings::{self, Kind, Manifest, RenditionInfo};
use potok_storage::vod::{self, VodSegment};
use potok_storage::{Spool, Store};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The sending side: cheap to clone, never blocks.
#[derive(Clone)]
pub(crate) struct Archiver {
    spool: Spool,
    pub(crate) recordings: RecordingsConfig,
}

/// What to record of a broadcast (the seed's `startRecording` settings).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RecordingRequest {
    /// Renditions kept; empty: `storage.recordings.renditions` (empty there: all).
    pub(crate) renditions: Vec<String>,
    /// Longest recording in seconds; unset: `storage.recordings.max_duration`.
    pub(crate) max_duration_secs: Option<u64>,
}

/// A recording in progress.
#[derive(Clone, Debug)]
pub(crate) struct ActiveRecording {
    pub(crate) id: String,
    pub(crate) first_msn: u64,
    pub(crate) started_ms: i64,
    /// Empty: all.
    pub(crate) renditions: Vec<String>,
    pub(crate) max_duration: Duration,
    /// Whether its poster (the first thumbnail made while recording) is stored.
    pub(crate) poster: bool,
}

impl ActiveRecording {
    pub(crate) fn keeps(&self, rendition: &str) -> bool {
        self.renditions.is_empty() || self.renditions.iter().any(|r| r == rendition)
    }
}

/// One rendition's part of a finished recording.
pub(crate) struct RecordedRendition {
    pub(crate) info: RenditionInfo,
    pub(crate) segments: Vec<VodSegment>,
}

impl Archiver {
    pub(crate) fn start(
        store: Store,
        spool_dir: &std::path::Path,
        max_bytes: u64,
        recordings: RecordingsConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, potok_storage::SpoolError> {
        let spool = Spool::start(store, spool_dir, max_bytes, shutdown)?;
        Ok(Archiver { spool, recordings })
    }

    pub(crate) fn store(&self) -> &Store {
        self.spool.store()
    }

    /// Queues `data` (concatenated) for `key`.
    pub(crate) fn put(&self, key: String, data: Vec<Bytes>) {
        self.spool.put(key, data);
    }

    /// Queues `data` for `key` after everything queued before.
    pub(crate) fn put_after(&self, key: String, data: Vec<Bytes>) {
        self.spool.put_after(key, data);
    }

    /// Queues the deletion of a broadcast nobody recorded.
    pub(crate) fn forget_broadcast(&self, stream: &str, broadcast: &str) {
        self.spool.delete_prefix(format!("{stream}/{broadcast}"));
    }

    /// A recording of `stream` starting at segment `first_msn`, with `req` over the defaults.
    pub(crate) fn begin(
        &self,
        stream: &str,
        broadcast: &str,
        first_msn: u64,
        req: &RecordingRequest,
        now_ms: i64,
    ) -> ActiveRecording {
        let rec = ActiveRecording {
            id: recordings::recording_id(stream, first_msn),
            first_msn,
            started_ms: now_ms,
            renditions: if req.renditions.is_empty() {
                self.recordings.renditions.clone()
            } else {
                req.renditions.clone()
            },
            max_duration: req
                .max_duration_secs
                .map_or(self.recordings.max_duration.get(), Duration::from_secs),
            poster: false,
        };
        let m = Manifest {
            id: rec.id.clone(),
            kind: Kind::Recording,
            stream: stream.to_owned(),
            broadcast: broadcast.to_owned(),
            parent: None,
            range: None,
            started_ms: now_ms,
            ended_ms: None,
            duration: 0.0,
            renditions: Vec::new(),
        };
        self.put_after(recordings::manifest_key(&m.id), vec![m.to_json()]);
        info!(stream, recording = %rec.id, "recording started");
        rec
    }

    /// Cuts `[start, end)` seconds (`range`) of the recording in progress `rec` into a clip, written
    /// after the segments it names (the newest may still be on their way to the store).
    pub(crate) fn clip(
        &self,
        stream: &str,
        broadcast: &str,
        rec: &ActiveRecording,
        renditions: Vec<RecordedRendition>,
        (start, end): (f64, f64),
        now_ms: i64,
    ) -> Result<Manifest, potok_storage::RecordingError> {
        let parent = Manifest {
            id: rec.id.clone(),
            kind: Kind::Recording,
            stream: stream.to_owned(),
            broadcast: broadcast.to_owned(),
            parent: None,
            range: None,
            started_ms: rec.started_ms,
            ended_ms: None,
            duration: 0.0,
            renditions: Vec::new(),
        };
        let segments: Vec<(RenditionInfo, Vec<VodSegment>)> = renditions
            .into_iter()
            .filter(|r| rec.keeps(&r.info.name))
            .map(|r| {
                let s = r
                    .segments
                    .into_iter()
                    .filter(|s| s.msn >= rec.first_msn)
                    .collect();
                (r.info, s)
            })
            .collect();
        let plan = recordings::plan_clip(&parent, &segments, start, end, now_ms)?;
        for (key, text) in plan.playlists {
            self.put_after(key, vec![Bytes::from(text)]);
        }
        let m = plan.manifest;
        self.put_after(recordings::manifest_key(&m.id), vec![m.to_json()]);
        info!(stream, clip = %m.id, start, end, "clip of the live recording queued");
        Ok(m)
    }

    /// Writes the VOD playlists and the final manifest of `rec`.
    pub(crate) fn finish(
        &self,
        stream: &str,
        broadcast: &str,
        rec: &ActiveRecording,
        renditions: Vec<RecordedRendition>,
        now_ms: i64,
    ) {
        let max = rec.max_duration.as_secs_f64();
        let mut kept = Vec::new();
        let mut duration: f64 = 0.0;
        for r in renditions {
            if !rec.keeps(&r.info.name) {
                continue;
            }
            let mut total = 0.0;
            let segments: Vec<VodSegment> = r
                .segments
                .into_iter()
                .filter(|s| s.msn >= rec.first_msn)
                .take_while(|s| {
                    total += s.duration;
                    total <= max + 0.001
                })
                .collect();
            if segments.is_empty() {
                continue;
            }
            duration = duration.max(segments.iter().map(|s| s.duration).sum());
            self.put_after(
                recordings::playlist_key(&rec.id, &r.info.name),
                vec![Bytes::from(vod::media_playlist(&segments, false))],
            );
            kept.push(r.info);
        }
        if kept.is_empty() {
            warn!(stream, recording = %rec.id, "recording holds no media: not kept");
            self.spool.delete_prefix(format!("recordings/{}", rec.id));
            // An empty in-progress manifest would be listed forever otherwise.
            self.spool.delete(recordings::manifest_key(&rec.id));
            return;
        }
        let m = Manifest {
            id: rec.id.clone(),
            kind: Kind::Recording,
            stream: stream.to_owned(),
            broadcast: broadcast.to_owned(),
            parent: None,
            range: None,
            started_ms: rec.started_ms,
            ended_ms: Some(now_ms),
            duration,
            renditions: kept,
        };
        self.put_after(recordings::manifest_key(&m.id), vec![m.to_json()]);
        info!(stream, recording = %rec.id, duration_secs = duration, "recording finished");
    }
}

/// Deletes expired recordings every `storage.recordings.sweep_interval`, from the start.
pub(crate) async fn sweep_retention(
    store: Store,
    cfg: RecordingsConfig,
    shutdown: CancellationToken,
) {
    let every = cfg.sweep_interval.get();
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        match recordings::sweep(&store, |s| cfg.retention_days_of(s), now).await {
            Ok(gone) if !gone.is_empty() => {
                info!(deleted = gone.len(), "retention sweep done");
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "retention sweep failed; trying again later"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
