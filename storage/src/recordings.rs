//! The recordings index, kept in the store itself: one manifest object per recording or
//! clip (`recordings/{id}.json`) next to its VOD media playlists
//! (`recordings/{id}/{rendition}.m3u8`), whose segments are the media the origin archived
//! (`{stream}/{broadcast}/{rendition}/{msn}.m4s`). Any node with the store's configuration
//! can list, read, cut clips from and delete recordings; nothing else holds state.

use std::collections::HashSet;

use bytes::Bytes;
use potok_media::hls::playlist::MediaPlaylist;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::vod::{self, VodSegment};
use crate::{Store, StoreError};

/// Longest manifest or playlist read back (they are written by origins, but the store may
/// be shared; a bound keeps a bad object from costing unbounded memory).
const MAX_INDEX_OBJECT: usize = 4 << 20;
/// Longest recording id.
const MAX_ID: usize = 128;

/// A recording or a clip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A broadcast (or the part of it between a start and a stop).
    Recording,
    /// A range of a recording (`highlightMoment`).
    Clip,
}

/// A kept rendition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenditionInfo {
    /// Name in URLs (`source`, `720p`, ...).
    pub name: String,
    /// Peak bits per second.
    pub bandwidth: u64,
    /// `CODECS`.
    pub codecs: String,
    /// Width and height.
    pub resolution: Option<(u32, u32)>,
    /// Frames per second.
    pub frame_rate: Option<f64>,
}

/// What the store knows of one recording or clip.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Id: letters, digits, `-`, `_` (see [`check_id`]).
    pub id: String,
    /// Recording or clip.
    pub kind: Kind,
    /// The stream's public name.
    pub stream: String,
    /// The broadcast whose media it uses (`{stream}/{broadcast}/...` in the store).
    pub broadcast: String,
    /// A clip's recording.
    pub parent: Option<String>,
    /// A clip's range in its recording, seconds.
    pub range: Option<(f64, f64)>,
    /// Unix milliseconds when it started (a clip: when it was cut).
    pub started_ms: i64,
    /// Unix milliseconds when it ended; `None` while the broadcast is being recorded.
    pub ended_ms: Option<i64>,
    /// Seconds of media.
    pub duration: f64,
    /// The renditions it has, best first.
    pub renditions: Vec<RenditionInfo>,
}

impl Manifest {
    /// The manifest as stored.
    pub fn to_json(&self) -> Bytes {
        Bytes::from(serde_json::to_vec_pretty(self).unwrap_or_default())
    }

    /// When retention counts from.
    fn ended_or_started(&self) -> i64 {
        self.ended_ms.unwrap_or(self.started_ms)
    }
}

/// Why a recordings operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// The id is not one Potok makes (`..`, `/` and the like are refused).
    #[error("invalid recording id")]
    InvalidId,
    /// No such recording.
    #[error("no such recording")]
    NotFound,
    /// The requested range holds no segment.
    #[error("the range holds no media")]
    EmptyRange,
    /// The recording is still in progress.
    #[error("the recording is still in progress")]
    InProgress,
    /// An object of the index is not what Potok writes.
    #[error("corrupt index object {0}")]
    Corrupt(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Accepts ids of 1-128 letters, digits, `-` and `_`: nothing that could leave
/// `recordings/` (no `.`, no `/`).
pub fn check_id(id: &str) -> Result<(), RecordingError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(RecordingError::InvalidId)
    }
}

/// Accepts a rendition name (same alphabet as ids, at most 64).
pub fn check_rendition(name: &str) -> Result<(), RecordingError> {
    check_id(name).and_then(|()| {
        if name.len() <= 64 {
            Ok(())
        } else {
            Err(RecordingError::InvalidId)
        }
    })
}

/// The id of the recording of `stream` that starts at segment `first_msn`.
pub fn recording_id(stream: &str, first_msn: u64) -> String {
    format!("{stream}-{first_msn}")
}

/// Where a manifest is kept.
pub fn manifest_key(id: &str) -> String {
    format!("recordings/{id}.json")
}

/// Where a recording's media playlist of `rendition` is kept.
pub fn playlist_key(id: &str, rendition: &str) -> String {
    format!("recordings/{id}/{rendition}.m3u8")
}

/// Where a media object of a recording is kept.
pub fn media_key(m: &Manifest, rendition: &str, file: &str) -> String {
    format!("{}/{}/{rendition}/{file}", m.stream, m.broadcast)
}

/// Where the poster of recording `id` is kept: the first thumbnail made while it recorded
/// (deleted with the recording's playlists).
pub fn poster_key(id: &str) -> String {
    format!("recordings/{id}/poster.jpg")
}

/// Where the thumbnail of `stream` is kept.
pub fn thumbnail_key(stream: &str) -> String {
    format!("thumbnails/{stream}.jpg")
}

async fn get_bounded(store: &Store, key: &str) -> Result<Option<Bytes>, RecordingError> {
    if let Some(meta) = store.head(key).await?
        && meta.size > MAX_INDEX_OBJECT as u64
    {
        return Err(RecordingError::Corrupt(key.to_owned()));
    }
    Ok(store.get(key).await?)
}

/// The manifest of `id`.
pub async fn get(store: &Store, id: &str) -> Result<Manifest, RecordingError> {
    check_id(id)?;
    let key = manifest_key(id);
    let raw = get_bounded(store, &key)
        .await?
        .ok_or(RecordingError::NotFound)?;
    serde_json::from_slice(&raw).map_err(|_| RecordingError::Corrupt(key))
}

/// Every recording and clip (of `stream`, if given), oldest first.
pub async fn list(store: &Store, stream: Option<&str>) -> Result<Vec<Manifest>, RecordingError> {
    let objects = store.list("recordings").await?;
    let mut out = Vec::new();
    for o in objects {
        let key = o.location.as_ref();
        let Some(id) = key
            .strip_prefix("recordings/")
            .and_then(|k| k.strip_suffix(".json"))
        else {
            continue;
        };
        if check_id(id).is_err() || o.size > MAX_INDEX_OBJECT as u64 {
            continue;
        }
        // Deleted between the listing and the read: skip it.
        let Some(raw) = store.get(key).await? else {
            continue;
        };
        let Ok(m) = serde_json::from_slice::<Manifest>(&raw) else {
            continue;
        };
        if stream.is_none_or(|s| s == m.stream) {
            out.push(m);
        }
    }
    out.sort_by(|a, b| (a.started_ms, &a.id).cmp(&(b.started_ms, &b.id)));
    Ok(out)
}

/// The VOD media playlist of `rendition` of recording `id`.
pub async fn media_playlist(
    store: &Store,
    id: &str,
    rendition: &str,
) -> Result<String, RecordingError> {
    check_id(id)?;
    check_rendition(rendition)?;
    let key = playlist_key(id, rendition);
    let raw = get_bounded(store, &key)
        .await?
        .ok_or(RecordingError::NotFound)?;
    String::from_utf8(raw.to_vec()).map_err(|_| RecordingError::Corrupt(key))
}

/// The multivariant playlist of recording `id`.
pub async fn master_playlist(store: &Store, id: &str) -> Result<String, RecordingError> {
    let m = get(store, id).await?;
    Ok(vod::master_playlist(&m.renditions))
}

/// A clip ready to be written: its playlists (key, text), then its manifest.
#[derive(Clone, Debug)]
pub struct ClipPlan {
    /// The clip's manifest (write it last).
    pub manifest: Manifest,
    /// Its media playlists: store key and text.
    pub playlists: Vec<(String, String)>,
}

/// Plans the clip `[start, end)` seconds (from the recording's beginning) of `parent`, whose
/// renditions have `segments`: whole segments, so it starts on the keyframe at or before
/// `start`. The same range of the same recording gives the same clip id.
pub fn plan_clip(
    parent: &Manifest,
    segments: &[(RenditionInfo, Vec<VodSegment>)],
    start: f64,
    end: f64,
    now_ms: i64,
) -> Result<ClipPlan, RecordingError> {
    if !(start.is_finite() && end.is_finite() && start >= 0.0 && end > start) {
        return Err(RecordingError::EmptyRange);
    }
    let id = format!(
        "{}-clip-{}-{}",
        parent.id,
        (start * 1000.0) as u64,
        (end * 1000.0) as u64
    );
    check_id(&id)?;
    let mut playlists = Vec::new();
    let mut renditions = Vec::new();
    let mut duration: f64 = 0.0;
    for (r, all) in segments {
        let cut = vod::cut(all, start, end);
        if cut.is_empty() {
            continue;
        }
        duration = duration.max(cut.iter().map(|s| s.duration).sum());
        playlists.push((playlist_key(&id, &r.name), vod::media_playlist(&cut, false)));
        renditions.push(r.clone());
    }
    if playlists.is_empty() {
        return Err(RecordingError::EmptyRange);
    }
    Ok(ClipPlan {
        manifest: Manifest {
            id,
            kind: Kind::Clip,
            stream: parent.stream.clone(),
            broadcast: parent.broadcast.clone(),
            parent: Some(parent.id.clone()),
            range: Some((start, end)),
            started_ms: now_ms,
            ended_ms: Some(now_ms),
            duration,
            renditions,
        },
        playlists,
    })
}

/// Cuts `[start, end)` seconds of the finished recording `id` into a clip with its own
/// playlists and manifest (see [`plan_clip`]). A recording still in progress is cut by its
/// origin (`POST /api/streams/{stream}/clips`), which holds its newest segments.
pub async fn create_clip(
    store: &Store,
    id: &str,
    start: f64,
    end: f64,
    now_ms: i64,
) -> Result<Manifest, RecordingError> {
    let parent = get(store, id).await?;
    if parent.kind != Kind::Recording {
        return Err(RecordingError::NotFound);
    }
    if parent.ended_ms.is_none() {
        return Err(RecordingError::InProgress);
    }
    let mut all = Vec::new();
    for r in &parent.renditions {
        all.push((r.clone(), segments(store, id, &r.name).await?));
    }
    let plan = plan_clip(&parent, &all, start, end, now_ms)?;
    for (key, text) in &plan.playlists {
        store.put(key, vec![Bytes::from(text.clone())]).await?;
    }
    let clip = plan.manifest;
    store
        .put(&manifest_key(&clip.id), vec![clip.to_json()])
        .await?;
    info!(clip = %clip.id, recording = %parent.id, start, end, "clip created");
    Ok(clip)
}

/// Deletes recording or clip `id`: its manifest and playlists, and its media unless another
/// recording or clip still uses that broadcast.
pub async fn delete(store: &Store, id: &str) -> Result<(), RecordingError> {
    let m = get(store, id).await?;
    let all = list(store, Some(&m.stream)).await?;
    remove(store, &[m], &all).await
}

async fn remove(store: &Store, gone: &[Manifest], all: &[Manifest]) -> Result<(), RecordingError> {
    let gone_ids: HashSet<&str> = gone.iter().map(|m| m.id.as_str()).collect();
    let still_used: HashSet<(&str, &str)> = all
        .iter()
        .filter(|m| !gone_ids.contains(m.id.as_str()))
        .map(|m| (m.stream.as_str(), m.broadcast.as_str()))
        .collect();
    let mut media_done = HashSet::new();
    for m in gone {
        // The manifest first: a half-deleted recording is never listed.
        store.delete(&manifest_key(&m.id)).await?;
        store.delete_prefix(&format!("recordings/{}", m.id)).await?;
        let b = (m.stream.as_str(), m.broadcast.as_str());
        if !still_used.contains(&b) && media_done.insert(b) {
            store
                .delete_prefix(&format!("{}/{}", m.stream, m.broadcast))
                .await?;
        }
    }
    Ok(())
}

/// Deletes recordings and clips older than their stream's retention: `days_of(stream)`
/// days (0: kept forever) after they ended. Logs each deletion; returns the ids deleted.
pub async fn sweep(
    store: &Store,
    days_of: impl Fn(&str) -> u32,
    now_ms: i64,
) -> Result<Vec<String>, RecordingError> {
    let all = list(store, None).await?;
    let expired: Vec<Manifest> = all
        .iter()
        .filter(|m| {
            let days = days_of(&m.stream);
            days > 0 && m.ended_or_started() + i64::from(days) * 86_400_000 <= now_ms
        })
        .cloned()
        .collect();
    remove(store, &expired, &all).await?;
    for m in &expired {
        store.metrics().retention_deletes.inc();
        info!(recording = %m.id, stream = %m.stream, kind = ?m.kind, "retention expired: deleted");
    }
    Ok(expired.into_iter().map(|m| m.id).collect())
}

/// The segments of a finished recording of `rendition`, read back from its playlist.
pub async fn segments(
    store: &Store,
    id: &str,
    rendition: &str,
) -> Result<Vec<VodSegment>, RecordingError> {
    let text = media_playlist(store, id, rendition).await?;
    let parsed = MediaPlaylist::parse(&text)
        .map_err(|_| RecordingError::Corrupt(playlist_key(id, rendition)))?;
    Ok(vod::segments_of(&parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_leave_the_index_are_refused() {
        for bad in [
            "",
            "..",
            "a/b",
            "../x",
            "a.b",
            "a\\b",
            "%2e%2e",
            &"x".repeat(129),
        ] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        for good in ["demo-1700000000", "a_b-c", "demo-1-clip-0-5000"] {
            assert!(check_id(good).is_ok(), "{good:?}");
        }
    }
}
