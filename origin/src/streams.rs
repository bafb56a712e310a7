//! Live streams at the origin: the registry of streams by public name, each stream's
//! renditions (live windows), its publisher state (live, in the reconnect grace period,
//! ended) and the publish session that turns a publisher's FLV tags into parts and segments.
//!
//! Every change to a stream bumps a `watch` counter; HTTP requests that wait (blocking
//! reload, preload hints) re-check their condition when it moves. The state lock is never
//! held across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use potok_media::MediaError;
use potok_media::aac::AacConfig;
use potok_media::av1::Av1Config;
use potok_media::avc::AvcConfig;
use potok_media::flv::{self, AudioTag, VideoTag};
use potok_media::frame::{AccessUnit, CodecConfig, TIMEBASE, TrackKind, ms_to_ticks};
use potok_media::hevc::HevcConfig;
use potok_media::hls::live::{LiveConfig, LiveRendition};
use potok_media::hls::playlist::{MediaPlaylist, MediaSegment, RenditionReport};
use potok_media::packager::{Continuation, Packager, PackagerConfig, PackagerEvent};
use tokio::sync::{Semaphore, watch};
use tracing::{info, warn};

use crate::archive::{ActiveRecording, Archiver, RecordedRendition, RecordingRequest};
use crate::metrics::OriginMetrics;

/// The one rendition until the transcoder adds a ladder.
pub(crate) const SOURCE: &str = "source";

/// Settings every stream shares.
#[derive(Clone, Debug)]
pub(crate) struct StreamSettings {
    pub(crate) packager: PackagerConfig,
    pub(crate) live: LiveConfig,
    pub(crate) grace: Duration,
    pub(crate) retention: Duration,
    pub(crate) max_held: usize,
    /// The ABR ladder, when any stream may be transcoded.
    pub(crate) transcode: Option<Arc<crate::ladder::TranscodeSetup>>,
    /// How far back `dvr.m3u8` reaches (zero: no DVR playlist).
    pub(crate) dvr_window: Duration,
    /// How often a live stream's thumbnail is refreshed (zero: never).
    pub(crate) thumbnail_interval: Duration,
}

impl StreamSettings {
    /// How long a blocking request may be held: three target durations.
    pub(crate) fn hold_limit(&self) -> Duration {
        Duration::from_secs(3 * u64::from(self.packager.target_duration()))
    }
}

/// Why a publish cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PublishError {
    #[error("stream {0:?} is already being published")]
    AlreadyLive(String),
}

/// Why a publisher's media was refused (the connection is then closed).
#[derive(Debug, thiserror::Error)]
pub(crate) enum IngestError {
    #[error("malformed media: {0}")]
    Malformed(#[from] MediaError),
    #[error("{0} (Potok takes H.264 or, over Enhanced RTMP, H.265 or AV1 video and AAC audio)")]
    Unsupported(String),
}

/// Metadata the publisher announced (`@setDataFrame` / `onMetaData`).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct StreamMetadata {
    pub(crate) width: Option<u32>,
    pub(crate) height: Option<u32>,
    pub(crate) frame_rate: Option<f64>,
    pub(crate) video_kbps: Option<u32>,
    pub(crate) audio_kbps: Option<u32>,
    pub(crate) encoder: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publisher {
    Live(u64),
    Grace(u64),
    Ended,
}

pub(crate) struct Rendition {
    pub(crate) name: String,
    pub(crate) live: LiveRendition,
    pub(crate) codecs: String,
    pub(crate) resolution: Option<(u32, u32)>,
    /// Frame rate of a ladder rung (the source's comes from the publisher's metadata).
    pub(crate) frame_rate: Option<f64>,
    vod: Vec<VodEntry>,
    vod_next_discontinuity: bool,
    current_init: String,
    /// A shed rung: no longer in the multivariant playlist, but still answered for the
    /// players that chose it (see [`Streams::retire_rung`]).
    retired: bool,
    /// Whose output a shed rung's rendition carries now.
    pub(crate) follow: Option<Follow>,
}

/// A shed rung's rendition carries another rendition's media from a segment boundary on:
/// the target's parts and segment ends are taken in order, starting at part 0 of
/// `next_msn`, so the media sequence continues without a gap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Follow {
    /// The rendition whose output is carried.
    pub(crate) target: String,
    next_msn: u64,
    next_part: u32,
}

/// What a follower does with one of its target's events.
#[derive(Debug, PartialEq, Eq)]
enum Take {
    /// The next event of the follower's sequence: apply it.
    Yes,
    /// Already taken (a replay and live output overlap) or before the start: ignore.
    Skip,
    /// The target moved past what the follower still needs: the sequence cannot continue.
    Gap,
}

impl Follow {
    fn new(target: &str, from_msn: u64) -> Self {
        Follow {
            target: target.to_owned(),
            next_msn: from_msn,
            next_part: 0,
        }
    }

    fn take(&mut self, event: &PackagerEvent) -> Take {
        match *event {
            PackagerEvent::Part(ref p) if p.msn == self.next_msn && p.index == self.next_part => {
                self.next_part += 1;
                Take::Yes
            }
            PackagerEvent::SegmentEnd { msn, .. } if msn == self.next_msn && self.next_part > 0 => {
                self.next_msn += 1;
                self.next_part = 0;
                Take::Yes
            }
            PackagerEvent::Part(ref p)
                if p.msn > self.next_msn
                    || (p.msn == self.next_msn && p.index > self.next_part) =>
            {
                Take::Gap
            }
            _ => Take::Skip,
        }
    }
}

impl Rendition {
    pub(crate) fn new(name: &str, live: LiveRendition) -> Self {
        Rendition {
            name: name.to_owned(),
            live,
            codecs: String::new(),
            resolution: None,
            frame_rate: None,
            vod: Vec::new(),
            vod_next_discontinuity: false,
            current_init: String::new(),
            retired: false,
            follow: None,
        }
    }

    fn mark_discontinuity(&mut self) {
        self.live.mark_discontinuity();
        self.vod_next_discontinuity = true;
    }

    /// Whether the multivariant playlist lists this rendition: it has a complete segment
    /// (players treat a playlist of parts only as empty) and a codec string.
    pub(crate) fn listed(&self) -> bool {
        self.live.has_media() && !self.codecs.is_empty() && !self.retired
    }

    /// Whether this rendition is fed by its own packager (not shed).
    fn own_output(&self) -> bool {
        !self.retired && !self.live.ended()
    }
}

struct VodEntry {
    msn: u64,
    duration: u64,
    discontinuity: bool,
    init: String,
}

pub(crate) struct StreamState {
    pub(crate) renditions: Vec<Rendition>,
    pub(crate) metadata: StreamMetadata,
    publisher: Publisher,
    broadcast: String,
    continuation: Continuation,
    /// Wall-clock milliseconds at timeline tick 0, for EXT-X-PROGRAM-DATE-TIME.
    epoch_ms: Option<i64>,
    /// Cancelled to disconnect the current publisher (the stream was stopped).
    kick: tokio_util::sync::CancellationToken,
    /// The stream was stopped: when its publisher goes, it ends at once (no grace period).
    stopped: bool,
    /// The recording in progress.
    recording: Option<ActiveRecording>,
    /// Whether any recording used this broadcast (else its archived media is deleted at
    /// its end).
    recorded: bool,
    /// What arrives from the publisher (for `get_stream_health`).
    pub(crate) ingest: crate::health::IngestHealth,
}

impl StreamState {
    pub(crate) fn rendition(&self, name: &str) -> Option<&Rendition> {
        self.renditions.iter().find(|r| r.name == name)
    }

    /// The renditions the multivariant playlist lists, in its order.
    pub(crate) fn listed(&self) -> impl Iterator<Item = &Rendition> {
        self.renditions.iter().filter(|r| r.listed())
    }

    /// `EXT-X-RENDITION-REPORT`s for the playlist of `rendition`: exactly the other
    /// renditions the multivariant playlist lists (a player may switch to any it reports).
    pub(crate) fn reports(&self, rendition: &str) -> Vec<RenditionReport> {
        self.listed()
            .filter(|o| o.name != rendition)
            .filter_map(|o| {
                o.live.last_part().map(|(m, p)| RenditionReport {
                    uri: format!("../{}/index.m3u8", o.name),
                    last_msn: m,
                    last_part: Some(p),
                })
            })
            .collect()
    }

    /// Whether `session` is (still) the one feeding this stream: a ladder flushing after
    /// its publisher left may still write; one from before a reconnect may not.
    pub(crate) fn fed_by(&self, session: u64) -> bool {
        matches!(self.publisher, Publisher::Live(s) | Publisher::Grace(s) if s == session)
    }

    /// Where the next packager (after the current one finishes) continues.
    pub(crate) fn continuation(&self) -> Continuation {
        self.continuation
    }

    /// Adds rendition `name` (a ladder rung) if it is missing.
    pub(crate) fn ensure_rendition(&mut self, name: &str, live: impl FnOnce() -> LiveRendition) {
        if self.rendition(name).is_none() {
            self.renditions.push(Rendition::new(name, live()));
        }
    }

    /// Removes every rung not in `keep` (the source rendition always stays); those in
    /// `keep` that were shed get their own output again (a new ladder after a reconnect).
    pub(crate) fn retain_rungs(&mut self, keep: &[&str]) {
        self.renditions
            .retain(|r| r.name == SOURCE || keep.contains(&r.name.as_str()));
        for r in &mut self.renditions {
            r.retired = false;
            r.follow = None;
        }
    }
}

/// One stream, shared by its publisher and every request for it.
pub(crate) struct Stream {
    pub(crate) name: String,
    state: Mutex<StreamState>,
    changed: watch::Sender<u64>,
    /// Permits for requests held waiting.
    pub(crate) held: Arc<Semaphore>,
}

impl Stream {
    pub(crate) fn lock(&self) -> MutexGuard<'_, StreamState> {
        // A panic while holding the lock leaves consistent data (every update is a few
        // assignments); keep serving rather than poisoning the stream forever.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A receiver that sees every later change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// The registry of streams.
pub(crate) struct Streams {
    settings: StreamSettings,
    map: Mutex<HashMap<String, Arc<Stream>>>,
    archive: Option<Archiver>,
    metrics: OriginMetrics,
    next_session: std::sync::atomic::AtomicU64,
    /// The latest thumbnail of each stream.
    thumbnails: Mutex<HashMap<String, Bytes>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Streams {
    pub(crate) fn new(
        settings: StreamSettings,
        archive: Option<Archiver>,
        metrics: OriginMetrics,
    ) -> Self {
        Streams {
            settings,
            map: Mutex::new(HashMap::new()),
            archive,
            metrics,
            next_session: std::sync::atomic::AtomicU64::new(1),
            thumbnails: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn settings(&self) -> &StreamSettings {
        &self.settings
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Stream>>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stream called `name`, if it exists.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Stream>> {
        self.map().get(name).cloned()
    }

    fn fresh_stream(&self, name: &str, session: u64) -> Arc<Stream> {
        // Media sequence numbers start at the Unix time in seconds: with segments of at
        // least a second, a new broadcast under the same name never reuses an earlier
        // broadcast's segment URIs, which edges cache as immutable.
        let first_msn = (now_ms() / 1000).max(0) as u64;
        let live = LiveRendition::new(self.settings.live, first_msn);
        let (changed, _) = watch::channel(0);
        Arc::new(Stream {
            name: name.to_owned(),
            state: Mutex::new(StreamState {
                renditions: vec![Rendition::new(SOURCE, live)],
                metadata: StreamMetadata::default(),
                publisher: Publisher::Live(session),
                broadcast: first_msn.to_string(),
                continuation: Continuation {
                    msn: first_msn,
                    fragment: 0,
                    time: 0,
                },
                epoch_ms: None,
                kick: tokio_util::sync::CancellationToken::new(),
                stopped: false,
                recording: None,
                recorded: false,
                ingest: crate::health::IngestHealth::default(),
            }),
            changed,
            held: Arc::new(Semaphore::new(self.settings.max_held)),
        })
    }

    /// Number of streams whose publisher is connected.
    pub(crate) fn publishing(&self) -> usize {
        self.map()
            .values()
            .filter(|s| matches!(s.lock().publisher, Publisher::Live(_)))
            .count()
    }

    /// The streams held (publishing or in their grace period), for heartbeats.
    pub(crate) fn held(&self) -> Vec<potok_config::wire::LiveStream> {
        self.map()
            .values()
            .filter_map(|s| {
                let st = s.lock();
                let publishing = match st.publisher {
                    Publisher::Live(_) => true,
                    Publisher::Grace(_) => false,
                    Publisher::Ended => return None,
                };
                Some(potok_config::wire::LiveStream {
                    name: s.name.clone(),
                    publishing,
                    recording: st.recording.as_ref().map(|r| r.id.clone()),
                })
            })
            .collect()
    }

    /// Disconnects the publisher of `name`, if one is connected (the stream was stopped).
    pub(crate) fn kick(&self, name: &str) {
        if let Some(s) = self.get(name) {
            info!(
                stream = name,
                "stopping the stream: disconnecting its publisher"
            );
            let mut st = s.lock();
            st.stopped = true;
            st.kick.cancel();
        }
    }

    /// Starts publishing the granted stream over `protocol`: a new broadcast, or the
    /// continuation of one whose publisher dropped less than the grace period ago (or, when
    /// the grant says so, of one whose origin failed: it starts after a discontinuity).
    pub(crate) fn start_publish(
        self: &Arc<Self>,
        grant: &crate::auth::Grant,
        protocol: &str,
    ) -> Result<PublishSession, PublishError> {
        let name = grant.name.as_str();
        let session = self
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.map();
        let (stream, resumed) = match map.get(name) {
            Some(existing) => {
                let mut st = existing.lock();
                match st.publisher {
                    Publisher::Live(_) => return Err(PublishError::AlreadyLive(name.to_owned())),
                    Publisher::Grace(_) => {
                        st.publisher = Publisher::Live(session);
                        for r in &mut st.renditions {
                            r.mark_discontinuity();
                        }
                        // Dates restart from the wall clock at the first new part.
                        st.epoch_ms = None;
                        drop(st);
                        (Arc::clone(existing), true)
                    }
                    Publisher::Ended => {
                        drop(st);
                        let fresh = self.fresh_stream(name, session);
                        map.insert(name.to_owned(), Arc::clone(&fresh));
                        (fresh, false)
                    }
                }
            }
            None => {
                let fresh = self.fresh_stream(name, session);
                map.insert(name.to_owned(), Arc::clone(&fresh));
                (fresh, false)
            }
        };
        drop(map);
        let kick = tokio_util::sync::CancellationToken::new();
        {
            let mut st = stream.lock();
            st.kick = kick.clone();
            st.stopped = false;
            if grant.continues && !resumed {
                // The broadcast moved here from a failed origin: players continuing through
                // an edge see a discontinuity, not a new stream.
                for r in &mut st.renditions {
                    r.mark_discontinuity();
                }
            }
        }
        self.metrics.publishers.inc();
        if resumed {
            self.metrics
                .discontinuities
                .with_label_values(&[name])
                .inc();
            info!(
                stream = name,
                "publisher reconnected within the grace period; stream continues"
            );
            stream.notify();
        } else {
            info!(stream = name, "broadcast started");
            // The channel's settings from the control plane, else the configuration's.
            let (record, request) = match &grant.recording {
                Some(r) => (
                    r.enabled,
                    RecordingRequest {
                        renditions: r.renditions.clone(),
                        max_duration_secs: r.max_duration_secs,
                    },
                ),
                None => (
                    self.archive
                        .as_ref()
                        .is_some_and(|a| a.recordings.records(name)),
                    RecordingRequest::default(),
                ),
            };
            if let Some(archive) = &self.archive
                && record
            {
                let mut st = stream.lock();
                if st.recording.is_none() {
                    let first = st.continuation.msn;
                    let broadcast = st.broadcast.clone();
                    st.recording = Some(archive.begin(name, &broadcast, first, &request, now_ms()));
                    st.recorded = true;
                }
            }
        }
        Ok(PublishSession {
            streams: Arc::clone(self),
            stream,
            session,
            video: None,
            audio: None,
            packager: None,
            ladder: None,
            transcode: grant.transcode,
            kick,
            audio_frames_without_video: 0,
            last_ts: None,
            ts_high: 0,
            warned_late_audio: false,
            last_thumbnail: None,
            thumbnail_busy: Arc::default(),
            bytes: self
                .metrics
                .ingest_bytes
                .with_label_values(&[name, protocol]),
            video_frames: self.metrics.frames.with_label_values(&[name, "video"]),
            audio_frames: self.metrics.frames.with_label_values(&[name, "audio"]),
        })
    }

    /// Applies packager output to `stream`: parts and segments into the live window, finished
    /// segments to the archive; renditions of shed rungs that carry this one's output get
    /// the same.
    pub(crate) fn apply(&self, stream: &Stream, rendition: &str, events: Vec<PackagerEvent>) {
        if events.is_empty() {
            return;
        }
        {
            let mut st = stream.lock();
            let st = &mut *st;
            let Some(i) = st.renditions.iter().position(|r| r.name == rendition) else {
                return;
            };
            if st.renditions[i].follow.is_some() {
                return; // a shed rung's late output: it carries another rung's now
            }
            self.apply_events(&stream.name, st, i, &events);
            self.forward(&stream.name, st, i, &events);
        }
        stream.notify();
    }

    /// Hands `events` of rendition `from` to the renditions following it.
    fn forward(&self, stream: &str, st: &mut StreamState, from: usize, events: &[PackagerEvent]) {
        let target = st.renditions[from].name.clone();
        for i in 0..st.renditions.len() {
            if st.renditions[i]
                .follow
                .as_ref()
                .is_none_or(|f| f.target != target)
            {
                continue;
            }
            for event in events {
                let take = st.renditions[i]
                    .follow
                    .as_mut()
                    .map_or(Take::Skip, |f| f.take(event));
                match take {
                    Take::Yes => {}
                    Take::Skip => continue,
                    Take::Gap => {
                        // Cannot continue without a hole in the media sequence: end the
                        // rendition properly instead (its players see EXT-X-ENDLIST).
                        let r = &mut st.renditions[i];
                        warn!(stream, rendition = %r.name, target = %target, "shed rung cannot follow its replacement: ending it");
                        r.follow = None;
                        r.live.end();
                        break;
                    }
                }
                if let PackagerEvent::Part(p) = event
                    && p.index == 0
                    && let Some(init) = st.renditions[from].live.init_of(p.msn)
                {
                    let broadcast = st.broadcast.clone();
                    self.install_init(stream, &broadcast, &mut st.renditions[i], init);
                }
                self.apply_events(stream, st, i, std::slice::from_ref(event));
            }
        }
    }

    /// Applies `events` to rendition `i`.
    fn apply_events(&self, stream: &str, st: &mut StreamState, i: usize, events: &[PackagerEvent]) {
        self.apply_to_rendition(stream, st, i, events);
        if events
            .iter()
            .any(|e| matches!(e, PackagerEvent::SegmentEnd { .. }))
        {
            self.end_recording_past_its_length(stream, st);
        }
    }

    /// A recording whose kept renditions all hold its maximum duration ends now (the
    /// broadcast goes on unrecorded).
    fn end_recording_past_its_length(&self, stream: &str, st: &mut StreamState) {
        let (Some(archive), Some(rec)) = (&self.archive, &st.recording) else {
            return;
        };
        let max = rec.max_duration.as_secs_f64();
        // Summing every segment of a long recording at each segment's end is the cost here;
        // a live publisher's media runs with the clock (a burst of at most seconds), so far
        // from the limit by the clock there is nothing to sum. `finish` keeps at most `max`
        // either way.
        if ((now_ms() - rec.started_ms) as f64 / 1000.0) + 30.0 < max {
            return;
        }
        let recorded = |r: &Rendition| -> f64 {
            r.vod
                .iter()
                .filter(|e| e.msn >= rec.first_msn)
                .map(|e| e.duration as f64 / f64::from(TIMEBASE))
                .sum()
        };
        let mut kept = st
            .renditions
            .iter()
            .filter(|r| !r.vod.is_empty() && !r.codecs.is_empty() && rec.keeps(&r.name))
            .peekable();
        if kept.peek().is_none() || !kept.all(|r| recorded(r) >= max - 0.001) {
            return;
        }
        let Some(rec) = st.recording.take() else {
            return;
        };
        info!(stream, recording = %rec.id, max_secs = max, "recording reached its maximum duration");
        let renditions = recorded_renditions(st);
        archive.finish(stream, &st.broadcast, &rec, renditions, now_ms());
    }

    fn apply_to_rendition(
        &self,
        stream: &str,
        st: &mut StreamState,
        i: usize,
        events: &[PackagerEvent],
    ) {
        let r = &mut st.renditions[i];
        for event in events {
            match event {
                PackagerEvent::Part(part) => {
                    let epoch = *st.epoch_ms.get_or_insert_with(|| {
                        now_ms()
                            - ((part.start + u64::from(part.duration)) * 1000 / u64::from(TIMEBASE))
                                as i64
                    });
                    let pdt = epoch + (part.start * 1000 / u64::from(TIMEBASE)) as i64;
                    r.live.push_part(part, pdt);
                    self.metrics.parts.inc();
                }
                &PackagerEvent::SegmentEnd { msn, duration, .. } => {
                    r.live.end_segment(msn, duration);
                    self.metrics.segments.inc();
                    if let (Some(archive), Some(parts)) = (&self.archive, r.live.segment(msn)) {
                        archive.put(
                            format!("{stream}/{}/{}/{msn}.m4s", st.broadcast, r.name),
                            parts,
                        );
                    }
                    r.vod.push(VodEntry {
                        msn,
                        duration,
                        discontinuity: std::mem::take(&mut r.vod_next_discontinuity),
                        init: r.current_init.clone(),
                    });
                }
            }
        }
    }

    /// Rung `name` was shed (its packager already finished). Players that never re-read
    /// the multivariant playlist keep asking for it, so its rendition stays answerable:
    /// from its next segment on it carries the output of the nearest rung still running
    /// (lower first, else higher, else the source when it has the same codec), after a
    /// discontinuity and with that rung's init segment. It leaves the multivariant
    /// playlist and the rendition reports. Renditions already carrying `name`'s output
    /// move to the same replacement. With no replacement, the rendition ends (ENDLIST).
    pub(crate) fn retire_rung(&self, stream: &Stream, name: &str) {
        {
            let mut st = stream.lock();
            let st = &mut *st;
            let Some(pos) = st.renditions.iter().position(|r| r.name == name) else {
                return;
            };
            if !st.renditions[pos].live.has_media() {
                // Never listed, so no player can have chosen it.
                st.renditions.remove(pos);
                stream.notify();
                return;
            }
            st.renditions[pos].retired = true;
            let target = replacement(&st.renditions, pos);
            let movers: Vec<usize> = (0..st.renditions.len())
                .filter(|&i| {
                    i == pos
                        || st.renditions[i]
                            .follow
                            .as_ref()
                            .is_some_and(|f| f.target == name)
                })
                .collect();
            for i in movers {
                let from = st.renditions[i].live.next_msn();
                let replay = target.and_then(|t| Some((t, st.renditions[t].live.replay(from)?)));
                let r = &mut st.renditions[i];
                r.retired = true;
                let Some((t, events)) = replay else {
                    warn!(stream = %stream.name, rendition = %r.name, "shed rung has no replacement: its playlist ends");
                    r.follow = None;
                    r.live.end();
                    continue;
                };
                let target_name = st.renditions[t].name.clone();
                info!(stream = %stream.name, rendition = %st.renditions[i].name, carries = %target_name, from_msn = from, "shed rung stays answerable with another rung's output");
                st.renditions[i].mark_discontinuity();
                st.renditions[i].follow = Some(Follow::new(&target_name, from));
                // What the replacement already has of segment `from` on, then its live
                // output.
                self.forward(&stream.name, st, t, &events);
            }
        }
        stream.notify();
    }

    /// Installs an init segment on a rendition (and archives it when it is new).
    pub(crate) fn set_init(
        &self,
        stream: &Stream,
        rendition: &str,
        init: Bytes,
        codecs: String,
        resolution: Option<(u32, u32)>,
    ) {
        let mut st = stream.lock();
        let st = &mut *st;
        let Some(r) = st.renditions.iter_mut().find(|r| r.name == rendition) else {
            return;
        };
        r.codecs = codecs;
        r.resolution = resolution;
        self.install_init(&stream.name, &st.broadcast, r, init);
    }

    fn install_init(&self, stream: &str, broadcast: &str, r: &mut Rendition, init: Bytes) {
        let uri = r.live.set_init(init.clone());
        if uri != r.current_init {
            if let Some(archive) = &self.archive {
                archive.put(format!("{stream}/{broadcast}/{}/{uri}", r.name), vec![init]);
            }
            r.current_init = uri;
        }
    }

    /// The publisher of `stream` went away: keep the stream for the grace period, then end it.
    fn publisher_gone(self: &Arc<Self>, stream: &Arc<Stream>, session: u64) {
        self.metrics.publishers.dec();
        let grace = {
            let mut st = stream.lock();
            if st.publisher != Publisher::Live(session) {
                return;
            }
            st.publisher = Publisher::Grace(session);
            if st.stopped {
                Duration::ZERO
            } else {
                self.settings.grace
            }
        };
        info!(stream = %stream.name, grace_secs = grace.as_secs_f64(), "publisher gone; waiting for a reconnect");
        let streams = Arc::clone(self);
        let stream = Arc::clone(stream);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            streams.end_if_still_waiting(&stream, session).await;
        });
    }

    async fn end_if_still_waiting(self: Arc<Self>, stream: &Arc<Stream>, session: u64) {
        {
            let mut st = stream.lock();
            if st.publisher != Publisher::Grace(session) {
                return; // reconnected (or already ended)
            }
            st.publisher = Publisher::Ended;
            for r in &mut st.renditions {
                r.live.end();
            }
            if let Some(archive) = &self.archive {
                if let Some(rec) = st.recording.take() {
                    let recorded = recorded_renditions(&st);
                    archive.finish(&stream.name, &st.broadcast, &rec, recorded, now_ms());
                }
                if !st.recorded {
                    archive.forget_broadcast(&stream.name, &st.broadcast);
                }
                for r in st.renditions.iter().filter(|_| st.recorded) {
                    let key = format!("{}/{}/{}/index.m3u8", stream.name, st.broadcast, r.name);
                    archive.put(
                        key,
                        vec![Bytes::from(vod_playlist(
                            r,
                            self.settings.packager.target_duration(),
                        ))],
                    );
                }
            }
        }
        stream.notify();
        info!(stream = %stream.name, "broadcast ended");
        tokio::time::sleep(self.settings.retention).await;
        let mut map = self.map();
        if map
            .get(&stream.name)
            .is_some_and(|s| Arc::ptr_eq(s, stream))
            && stream.lock().publisher == Publisher::Ended
        {
            map.remove(&stream.name);
        }
    }
}

/// Why a recording cannot start or stop.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecordingControl {
    /// Object storage is off (`origin.archive.enabled = false`).
    NoStorage,
    /// The stream is not live.
    NotLive,
    /// Already recording (start) or not recording (stop).
    Conflict,
    /// A requested rendition name is invalid.
    BadRendition,
}

impl Streams {
    /// The seed's `startRecording`: records the live broadcast of `name` from its next
    /// segment with `req`'s settings; returns the recording id.
    pub(crate) fn start_recording(
        &self,
        name: &str,
        req: &RecordingRequest,
    ) -> Result<String, RecordingControl> {
        let archive = self.archive.as_ref().ok_or(RecordingControl::NoStorage)?;
        if req
            .renditions
            .iter()
            .any(|r| potok_storage::recordings::check_rendition(r).is_err())
        {
            return Err(RecordingControl::BadRendition);
        }
        let stream = self.get(name).ok_or(RecordingControl::NotLive)?;
        let mut st = stream.lock();
        if st.publisher == Publisher::Ended {
            return Err(RecordingControl::NotLive);
        }
        if st.recording.is_some() {
            return Err(RecordingControl::Conflict);
        }
        let next = st
            .renditions
            .iter()
            .find(|r| r.name == SOURCE)
            .map_or(st.continuation.msn, |r| r.live.next_msn());
        let broadcast = st.broadcast.clone();
        let rec = archive.begin(name, &broadcast, next, req, now_ms());
        let id = rec.id.clone();
        st.recording = Some(rec);
        st.recorded = true;
        Ok(id)
    }

    /// The seed's `stopRecording`: ends the recording of `name` with the segments finished
    /// so far; returns its id.
    pub(crate) fn stop_recording(&self, name: &str) -> Result<String, RecordingControl> {
        let archive = self.archive.as_ref().ok_or(RecordingControl::NoStorage)?;
        let stream = self.get(name).ok_or(RecordingControl::NotLive)?;
        let mut st = stream.lock();
        let rec = st.recording.take().ok_or(RecordingControl::Conflict)?;
        let recorded = recorded_renditions(&st);
        archive.finish(name, &st.broadcast, &rec, recorded, now_ms());
        Ok(rec.id)
    }

    /// The seed's `getStreamHealth` for `name`: the ingest's rates and the ladder's rungs.
    pub(crate) fn health(&self, name: &str) -> Option<potok_config::wire::StreamHealth> {
        let stream = self.get(name)?;
        // The ladder's metrics are collected (every stream's series) before the stream's
        // lock is taken: its ingest waits for nothing of that.
        let ladder = self
            .settings
            .transcode
            .as_ref()
            .map(|t| t.metrics().stream_stats(name));
        let st = stream.lock();
        let rates = st.ingest.rates(std::time::Instant::now());
        let source = st.rendition(SOURCE);
        let rungs: Vec<potok_config::wire::RungHealth> = st
            .renditions
            .iter()
            .filter(|r| r.name != SOURCE)
            .map(|r| potok_config::wire::RungHealth {
                name: r.name.clone(),
                fps: ladder
                    .as_ref()
                    .and_then(|l| l.fps.iter().find(|(n, _)| *n == r.name))
                    .map_or(0.0, |(_, f)| (f * 10.0).round() / 10.0),
                active: !r.retired && r.own_output(),
            })
            .collect();
        Some(potok_config::wire::StreamHealth {
            publishing: matches!(st.publisher, Publisher::Live(_)),
            bitrate_kbps: rates.bitrate_kbps,
            fps: rates.fps,
            keyframe_interval_secs: rates.keyframe_interval_secs,
            dropped_frames: rates.dropped_frames + ladder.as_ref().map_or(0, |l| l.dropped),
            video_codecs: source
                .filter(|r| !r.codecs.is_empty())
                .map(|r| r.codecs.split(',').next().unwrap_or_default().to_owned()),
            resolution: source.and_then(|r| r.resolution),
            realtime_factor: ladder.as_ref().and_then(|l| l.realtime),
            shedding: rungs.iter().any(|r| !r.active),
            rungs,
        })
    }

    /// The latest thumbnail of `name` (JPEG), while it is live or recently ended.
    pub(crate) fn thumbnail(&self, name: &str) -> Option<Bytes> {
        self.get(name)?;
        self.thumbnails
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn set_thumbnail(&self, name: &str, jpeg: Bytes) {
        if let Some(archive) = &self.archive {
            archive.put(
                potok_storage::recordings::thumbnail_key(name),
                vec![jpeg.clone()],
            );
            // The first thumbnail of a recording is its poster.
            if let Some(stream) = self.get(name) {
                let mut st = stream.lock();
                if let Some(rec) = st.recording.as_mut()
                    && !rec.poster
                {
                    rec.poster = true;
                    archive.put(
                        potok_storage::recordings::poster_key(&rec.id),
                        vec![jpeg.clone()],
                    );
                }
            }
        }
        let mut map = self
            .thumbnails
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Bounded by the streams: only names of existing streams are kept.
        map.insert(name.to_owned(), jpeg);
        let live: Vec<String> = self.map().keys().cloned().collect();
        map.retain(|k, _| live.contains(k));
    }

    /// The seed's `highlightMoment` during a broadcast: `[start, end)` seconds of the
    /// recording in progress of `name`, as a clip.
    pub(crate) fn clip_live(
        &self,
        name: &str,
        start: f64,
        end: f64,
    ) -> Result<potok_storage::Manifest, Result<RecordingControl, potok_storage::RecordingError>>
    {
        let archive = self
            .archive
            .as_ref()
            .ok_or(Ok(RecordingControl::NoStorage))?;
        let stream = self.get(name).ok_or(Ok(RecordingControl::NotLive))?;
        let st = stream.lock();
        let rec = st
            .recording
            .as_ref()
            .ok_or(Ok(RecordingControl::Conflict))?;
        archive
            .clip(
                name,
                &st.broadcast,
                rec,
                recorded_renditions(&st),
                (start, end),
                now_ms(),
            )
            .map_err(Err)
    }

    /// The id of the recording of `name` in progress, if any.
    pub(crate) fn recording_of(&self, name: &str) -> Option<String> {
        let stream = self.get(name)?;
        let st = stream.lock();
        st.recording.as_ref().map(|r| r.id.clone())
    }

    /// The store recordings live in, when storage is on.
    pub(crate) fn store(&self) -> Option<&potok_storage::Store> {
        self.archive.as_ref().map(Archiver::store)
    }
}

/// The DVR playlist of rendition `r`: the finished segments of the last `window` (older
/// ones than the live window are read by edges from the store), without `EXT-X-ENDLIST`
/// while live.
pub(crate) fn dvr_playlist(r: &Rendition, window: Duration, ended: bool) -> String {
    let mut total = 0.0;
    let limit = window.as_secs_f64();
    let mut segments: Vec<potok_storage::vod::VodSegment> = r
        .vod
        .iter()
        .rev()
        .take_while(|e| {
            total += e.duration as f64 / f64::from(TIMEBASE);
            total <= limit + 0.001
        })
        .map(vod_segment)
        .collect();
    segments.reverse();
    if let Some(first) = segments.first_mut() {
        first.discontinuity = false;
    }
    potok_storage::vod::media_playlist(&segments, !ended)
}

fn vod_segment(e: &VodEntry) -> potok_storage::vod::VodSegment {
    potok_storage::vod::VodSegment {
        msn: e.msn,
        duration: e.duration as f64 / f64::from(TIMEBASE),
        discontinuity: e.discontinuity,
        init: e.init.clone(),
    }
}

/// Every rendition with media, as a recording keeps it.
fn recorded_renditions(st: &StreamState) -> Vec<RecordedRendition> {
    st.renditions
        .iter()
        .filter(|r| !r.vod.is_empty() && !r.codecs.is_empty())
        .map(|r| RecordedRendition {
            info: potok_storage::RenditionInfo {
                name: r.name.clone(),
                bandwidth: r.live.bandwidth().map_or(5_000_000, |(peak, _)| peak),
                codecs: r.codecs.clone(),
                resolution: r.resolution,
                frame_rate: r.frame_rate.or(st.metadata.frame_rate),
            },
            segments: r.vod.iter().map(vod_segment).collect(),
        })
        .collect()
}

/// The rendition whose output a shed rung at `pos` carries: the nearest rung below that
/// still runs, else the nearest above, else the source when its video codec is the same.
fn replacement(renditions: &[Rendition], pos: usize) -> Option<usize> {
    let rung = |i: &usize| {
        let r = &renditions[*i];
        *i != pos && r.name != SOURCE && r.own_output() && r.live.has_media()
    };
    let codec = |r: &Rendition| r.codecs.split('.').next().map(str::to_owned);
    (pos + 1..renditions.len())
        .find(rung)
        .or_else(|| (0..pos).rev().find(rung))
        .or_else(|| {
            renditions.iter().position(|r| {
                r.name == SOURCE && r.own_output() && codec(r) == codec(&renditions[pos])
            })
        })
}

fn vod_playlist(st: &Rendition, target_duration: u32) -> String {
    let mut prev_init = "";
    let segments = st
        .vod
        .iter()
        .map(|e| {
            let map = (e.init != prev_init).then(|| e.init.clone());
            prev_init = &e.init;
            MediaSegment {
                duration: e.duration as f64 / f64::from(TIMEBASE),
                uri: Some(format!("{}.m4s", e.msn)),
                discontinuity: e.discontinuity,
                map,
                ..Default::default()
            }
        })
        .collect();
    MediaPlaylist {
        version: 7,
        target_duration,
        media_sequence: st.vod.first().map_or(0, |e| e.msn),
        independent_segments: false,
        segments,
        ended: true,
        ..Default::default()
    }
    .render()
}

/// One publisher's session: FLV tags in, packaged media out. Dropping it (the connection
/// closed) starts the stream's reconnect grace period.
pub(crate) struct PublishSession {
    streams: Arc<Streams>,
    stream: Arc<Stream>,
    session: u64,
    video: Option<CodecConfig>,
    audio: Option<AacConfig>,
    packager: Option<Packager>,
    ladder: Option<potok_transcoder::Ladder>,
    /// Whether to transcode, from the publish grant (`None`: the configured default).
    transcode: Option<bool>,
    kick: tokio_util::sync::CancellationToken,
    audio_frames_without_video: u32,
    last_ts: Option<u32>,
    ts_high: i64,
    warned_late_audio: bool,
    bytes: prometheus::IntCounter,
    last_thumbnail: Option<std::time::Instant>,
    thumbnail_busy: Arc<std::sync::atomic::AtomicBool>,
    video_frames: prometheus::IntCounter,
    audio_frames: prometheus::IntCounter,
}

/// Audio frames (about a second) after which a stream without video config is packaged as
/// audio-only.
const AUDIO_ONLY_AFTER: u32 = 48;

impl PublishSession {
    /// The public stream name.
    pub(crate) fn name(&self) -> &str {
        &self.stream.name
    }

    /// Cancelled when the stream is stopped and this publisher must be disconnected.
    pub(crate) fn kicked(&self) -> tokio_util::sync::CancellationToken {
        self.kick.clone()
    }

    /// Counts bytes received by a protocol that does not go through [`Self::video`].
    pub(crate) fn count_bytes(&self, n: usize) {
        self.bytes.inc_by(n as u64);
    }

    /// The metrics of this stream's input.
    pub(crate) fn metrics(&self) -> &OriginMetrics {
        &self.streams.metrics
    }

    pub(crate) fn metadata(&mut self, m: StreamMetadata) {
        self.stream.lock().metadata = m;
    }

    /// RTMP timestamps are 32-bit milliseconds; unwraps them into a monotonic i64.
    fn unwrap_ts(&mut self, raw: u32) -> i64 {
        if let Some(last) = self.last_ts {
            if raw < last && last - raw > 1 << 31 {
                self.ts_high += 1 << 32;
            } else if raw > last && raw - last > 1 << 31 && self.ts_high > 0 {
                // A late frame from before the wrap.
                return self.ts_high - (1 << 32) + i64::from(raw);
            }
        }
        self.last_ts = Some(raw);
        self.ts_high + i64::from(raw)
    }

    /// An RTMP video message.
    pub(crate) fn video(&mut self, ts_ms: u32, body: Bytes) -> Result<(), IngestError> {
        self.bytes.inc_by(body.len() as u64);
        match flv::parse_video(body)? {
            VideoTag::AvcSequenceHeader(record) => {
                self.config(CodecConfig::Avc(AvcConfig::parse(record)?));
                Ok(())
            }
            VideoTag::AvcFrame {
                keyframe,
                composition_time_ms,
                data,
            } => {
                self.video_frame(ts_ms, keyframe, composition_time_ms, data);
                Ok(())
            }
            VideoTag::ExSequenceStart { fourcc, record } => {
                let config = match &fourcc {
                    b"hvc1" | b"hev1" => CodecConfig::Hevc(HevcConfig::parse(record)?),
                    b"avc1" => CodecConfig::Avc(AvcConfig::parse(record)?),
                    b"av01" => CodecConfig::Av1(Av1Config::parse(record)?),
                    other => {
                        return Err(IngestError::Unsupported(format!(
                            "Enhanced RTMP codec {}",
                            String::from_utf8_lossy(other)
                        )));
                    }
                };
                self.config(config);
                Ok(())
            }
            VideoTag::ExFrame {
                fourcc,
                keyframe,
                composition_time_ms,
                data,
            } => {
                if !matches!(&fourcc, b"hvc1" | b"hev1" | b"avc1" | b"av01") {
                    return Err(IngestError::Unsupported(format!(
                        "Enhanced RTMP codec {}",
                        String::from_utf8_lossy(&fourcc)
                    )));
                }
                self.video_frame(ts_ms, keyframe, composition_time_ms, data);
                Ok(())
            }
            VideoTag::AvcEndOfSequence | VideoTag::ExSequenceEnd => Ok(()),
            VideoTag::Unsupported(what) => Err(IngestError::Unsupported(what)),
        }
    }

    /// A coded video frame from an RTMP message (legacy or Enhanced).
    fn video_frame(&mut self, ts_ms: u32, keyframe: bool, composition_time_ms: i32, data: Bytes) {
        let dts = ms_to_ticks(self.unwrap_ts(ts_ms));
        self.frame(AccessUnit {
            track: TrackKind::Video,
            dts,
            pts: dts + ms_to_ticks(i64::from(composition_time_ms)),
            keyframe,
            data,
        });
    }

    /// An RTMP audio message.
    pub(crate) fn audio(&mut self, ts_ms: u32, body: Bytes) -> Result<(), IngestError> {
        self.bytes.inc_by(body.len() as u64);
        match flv::parse_audio(body)? {
            AudioTag::AacSequenceHeader(asc) => {
                self.config(CodecConfig::Aac(AacConfig::parse(asc)?));
                Ok(())
            }
            AudioTag::AacFrame(data) => {
                let dts = ms_to_ticks(self.unwrap_ts(ts_ms));
                self.frame(AccessUnit {
                    track: TrackKind::Audio,
                    dts,
                    pts: dts,
                    keyframe: true,
                    data,
                });
                Ok(())
            }
            AudioTag::Unsupported(what) => Err(IngestError::Unsupported(what)),
        }
    }

    /// A track's codec configuration, from any ingest protocol.
    pub(crate) fn config(&mut self, config: CodecConfig) {
        match config {
            video @ (CodecConfig::Avc(_) | CodecConfig::Hevc(_) | CodecConfig::Av1(_)) => {
                if self.video.as_ref().is_some_and(|old| *old != video) && self.packager.is_some() {
                    // New parameters mid-stream: a new init segment after a discontinuity.
                    self.restart_packager();
                }
                self.video = Some(video);
            }
            CodecConfig::Aac(config) => {
                let changed = self
                    .audio
                    .as_ref()
                    .is_some_and(|old| old.config != config.config);
                let late = self
                    .packager
                    .as_ref()
                    .is_some_and(|p| !p.codecs().any(|c| matches!(c, CodecConfig::Aac(_))));
                self.audio = Some(config);
                if changed && self.packager.is_some() {
                    self.restart_packager();
                } else if late && !self.warned_late_audio {
                    self.warned_late_audio = true;
                    warn!(stream = %self.stream.name, "audio configuration arrived after video started; audio is dropped until the next reconnect");
                }
            }
        }
    }

    /// An access unit on the 90 kHz timeline, from any ingest protocol.
    pub(crate) fn frame(&mut self, au: AccessUnit) {
        match au.track {
            TrackKind::Video => self.video_frames.inc(),
            TrackKind::Audio => self.audio_frames.inc(),
        }
        let undecodable = self.packager.is_none()
            && au.track == TrackKind::Video
            && (!au.keyframe || self.video.is_none());
        self.stream
            .lock()
            .ingest
            .observe(std::time::Instant::now(), &au, undecodable);
        if self.packager.is_none() {
            match au.track {
                TrackKind::Video => {
                    if undecodable {
                        return; // wait for a decodable start
                    }
                }
                TrackKind::Audio => {
                    if self.audio.is_none() || self.video.is_some() {
                        return;
                    }
                    self.audio_frames_without_video += 1;
                    if self.audio_frames_without_video < AUDIO_ONLY_AFTER {
                        return;
                    }
                    info!(stream = %self.stream.name, "no video configuration: packaging audio only");
                }
            }
            self.start_packager();
        }
        self.push(au);
    }

    /// Every `storage.recordings.thumbnail_interval`, a keyframe becomes the stream's
    /// thumbnail, decoded off the ingest task (one at a time per stream).
    fn maybe_thumbnail(&mut self, au: &AccessUnit) {
        let interval = self.streams.settings.thumbnail_interval;
        if interval.is_zero() || au.track != TrackKind::Video || !au.keyframe {
            return;
        }
        if self.last_thumbnail.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        let Some(config) = self.video.clone() else {
            return;
        };
        if self
            .thumbnail_busy
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        self.last_thumbnail = Some(std::time::Instant::now());
        let busy = Arc::clone(&self.thumbnail_busy);
        let streams = Arc::clone(&self.streams);
        let name = self.stream.name.clone();
        let sample = au.data.clone();
        tokio::task::spawn_blocking(move || {
            match potok_transcoder::thumbnail::jpeg(&config, &sample) {
                Ok(Some(t)) => streams.set_thumbnail(&name, Bytes::from(t.jpeg)),
                Ok(None) => {}
                Err(e) => tracing::debug!(stream = %name, error = %e, "thumbnail not decoded"),
            }
            busy.store(false, std::sync::atomic::Ordering::Release);
        });
    }

    fn push(&mut self, au: AccessUnit) {
        self.maybe_thumbnail(&au);
        if let Some(p) = self.packager.as_mut() {
            if let Some(ladder) = self.ladder.as_mut() {
                ladder.push(au.clone());
            }
            let events = p.push(au);
            self.streams.apply(&self.stream, SOURCE, events);
        }
    }

    fn start_packager(&mut self) {
        let mut tracks = Vec::new();
        if let Some(v) = &self.video {
            tracks.push(v.clone());
        }
        if let Some(a) = &self.audio {
            tracks.push(CodecConfig::Aac(a.clone()));
        }
        let start = self.stream.lock().continuation;
        let packager = Packager::new(self.streams.settings.packager, &tracks, start);
        let codecs = packager
            .codecs()
            .map(CodecConfig::codec_string)
            .collect::<Vec<_>>()
            .join(",");
        let resolution = self.video.as_ref().and_then(CodecConfig::resolution);
        self.streams.set_init(
            &self.stream,
            SOURCE,
            packager.init_segment(),
            codecs,
            resolution,
        );
        info!(stream = %self.stream.name, tracks = tracks.len(), "packaging started");
        self.packager = Some(packager);
        self.start_ladder();
    }

    /// Starts the ABR ladder for this stream, when it has video and transcoding is on.
    fn start_ladder(&mut self) {
        let setup = self.streams.settings.transcode.clone();
        let ladder = match (setup, &self.video) {
            (Some(setup), Some(video))
                if self
                    .transcode
                    .unwrap_or_else(|| setup.enabled_for(&self.stream.name)) =>
            {
                let fps = self.stream.lock().metadata.frame_rate;
                setup.start(
                    &self.streams,
                    &self.stream,
                    self.session,
                    video,
                    fps,
                    self.audio.clone(),
                )
            }
            _ => None,
        };
        let keep: Vec<&str> = ladder.as_ref().map_or_else(Vec::new, |l| {
            l.rungs().iter().map(|r| r.spec.name.as_str()).collect()
        });
        {
            // Rungs listed in ladder order (tallest first), whatever order their first
            // output arrives in.
            let mut st = self.stream.lock();
            st.retain_rungs(&keep);
            let live = self.streams.settings.live;
            let first_msn = st.continuation().msn;
            for name in &keep {
                st.ensure_rendition(name, || LiveRendition::new(live, first_msn));
            }
        }
        self.ladder = ladder;
    }

    /// Flushes the packager and records where the next one continues.
    fn finish_packager(&mut self) {
        if let Some(ladder) = self.ladder.take() {
            ladder.finish();
        }
        if let Some(mut p) = self.packager.take() {
            let events = p.finish();
            self.streams.apply(&self.stream, SOURCE, events);
            self.stream.lock().continuation = p.continuation();
        }
    }

    fn restart_packager(&mut self) {
        self.finish_packager();
        {
            let mut st = self.stream.lock();
            for r in &mut st.renditions {
                r.mark_discontinuity();
            }
        }
        info!(stream = %self.stream.name, "codec configuration changed mid-stream");
    }
}

impl Drop for PublishSession {
    fn drop(&mut self) {
        self.finish_packager();
        self.streams.publisher_gone(&self.stream, self.session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use potok_media::packager::Part;

    fn state(renditions: Vec<Rendition>) -> StreamState {
        StreamState {
            renditions,
            metadata: StreamMetadata::default(),
            publisher: Publisher::Live(1),
            broadcast: "0".into(),
            continuation: Continuation::default(),
            epoch_ms: None,
            kick: tokio_util::sync::CancellationToken::new(),
            stopped: false,
            recording: None,
            recorded: false,
            ingest: crate::health::IngestHealth::default(),
        }
    }

    fn live() -> LiveRendition {
        let pkg = PackagerConfig {
            part_target: 18_000,
            segment_target: 180_000,
        };
        LiveRendition::new(LiveConfig::new(&pkg, 6, 1 << 20), 0)
    }

    fn part(msn: u64, index: u32) -> Part {
        Part {
            msn,
            index,
            duration: 18_000,
            independent: index == 0,
            start: 0,
            data: Bytes::from_static(b"moof"),
        }
    }

    fn rendition(name: &str, complete: u64, parts: u32) -> Rendition {
        let mut r = Rendition::new(name, live());
        r.codecs = "avc1.64001f".into();
        for msn in 0..complete {
            r.live.push_part(&part(msn, 0), 0);
            r.live.end_segment(msn, 18_000);
        }
        for i in 0..parts {
            r.live.push_part(&part(complete, i), 0);
        }
        r
    }

    fn streams() -> Arc<Streams> {
        let packager = PackagerConfig {
            part_target: 18_000,
            segment_target: 180_000,
        };
        Arc::new(Streams::new(
            StreamSettings {
                packager,
                live: LiveConfig::new(&packager, 6, 1 << 20),
                grace: Duration::from_secs(1),
                retention: Duration::from_secs(1),
                max_held: 10,
                transcode: None,
                dvr_window: Duration::ZERO,
                thumbnail_interval: Duration::ZERO,
            },
            None,
            OriginMetrics::new(&potok_service::Metrics::new()),
        ))
    }

    fn rung_part(msn: u64, index: u32, rung: u8) -> PackagerEvent {
        PackagerEvent::Part(Part {
            msn,
            index,
            duration: 18_000,
            independent: index == 0,
            start: msn * 54_000 + u64::from(index) * 18_000,
            data: Bytes::from(vec![rung; 4]),
        })
    }

    fn end(msn: u64) -> PackagerEvent {
        PackagerEvent::SegmentEnd {
            msn,
            duration: 54_000,
            independent: true,
        }
    }

    /// A stream with the source and `rungs`, each with segments 0 and 1 complete (three
    /// parts each) and two parts of segment 2.
    fn ladder(streams: &Streams, rungs: &[&str]) -> Arc<Stream> {
        let stream = streams.fresh_stream("s", 1);
        {
            let mut st = stream.lock();
            let live = streams.settings().live;
            for r in rungs {
                st.ensure_rendition(r, || LiveRendition::new(live, 0));
            }
            for r in &mut st.renditions {
                r.live = LiveRendition::new(live, 0);
            }
        }
        for (k, name) in std::iter::once(&SOURCE).chain(rungs).enumerate() {
            let codecs = if *name == SOURCE {
                "hvc1.1"
            } else {
                "avc1.4d401e"
            };
            let init = Bytes::from(format!("init of {name}"));
            streams.set_init(&stream, name, init, codecs.into(), None);
            let mut events = Vec::new();
            for msn in 0..2 {
                events.extend((0..3).map(|i| rung_part(msn, i, k as u8)));
                events.push(end(msn));
            }
            events.extend((0..2).map(|i| rung_part(2, i, k as u8)));
            streams.apply(&stream, name, events);
        }
        stream
    }

    fn listed(stream: &Stream) -> Vec<String> {
        stream.lock().listed().map(|r| r.name.clone()).collect()
    }

    fn playlist(stream: &Stream, name: &str) -> MediaPlaylist {
        let st = stream.lock();
        let r = st.rendition(name).unwrap();
        r.live.playlist(false, st.reports(name))
    }

    #[test]
    fn a_shed_rung_carries_the_next_lower_rung_from_its_next_segment_on() {
        let streams = streams();
        let stream = ladder(&streams, &["720p", "480p"]);
        // 720p is shed: its packager's finish ends segment 2 early, then it is retired.
        streams.apply(&stream, "720p", vec![end(2)]);
        streams.retire_rung(&stream, "720p");
        assert_eq!(listed(&stream), ["source", "480p"]);
        assert!(
            playlist(&stream, "source")
                .rendition_reports
                .iter()
                .all(|r| !r.uri.contains("720p"))
        );
        // Still answered, hinting the first part of segment 3, which 480p will produce.
        let p = playlist(&stream, "720p");
        assert_eq!(p.preload_hint.as_deref(), Some("3.0.m4s"));
        assert!(!p.ended);

        // 480p goes on: 720p takes its segment 3 on, after a discontinuity, with 480p's init.
        streams.apply(&stream, "480p", vec![rung_part(2, 2, 2), end(2)]);
        assert_eq!(playlist(&stream, "720p").segments.len(), 3);
        streams.apply(
            &stream,
            "480p",
            vec![rung_part(3, 0, 2), rung_part(3, 1, 2)],
        );
        let p = playlist(&stream, "720p");
        let last = p.segments.last().unwrap();
        assert!(last.discontinuity);
        assert_eq!(last.map.as_deref(), Some("init-1.mp4"));
        assert_eq!(last.parts.len(), 2);
        assert_eq!(p.preload_hint.as_deref(), Some("3.2.m4s"));
        let st = stream.lock();
        let r720 = st.rendition("720p").unwrap();
        assert_eq!(
            r720.live.init("init-1.mp4").unwrap(),
            Bytes::from_static(b"init of 480p")
        );
        assert_eq!(
            r720.live.part(3, 1),
            potok_media::hls::live::PartLookup::Ready(Bytes::from(vec![2u8; 4]))
        );
        // Its own (short) segment 2 is still served.
        assert!(r720.live.segment(2).is_some());
    }

    #[test]
    fn a_rung_shed_late_takes_what_its_replacement_already_has() {
        let streams = streams();
        let stream = ladder(&streams, &["720p", "480p"]);
        // 480p is already at segment 3 when the lagging 720p finishes segment 2.
        streams.apply(
            &stream,
            "480p",
            vec![rung_part(2, 2, 2), end(2), rung_part(3, 0, 2)],
        );
        streams.apply(&stream, "720p", vec![end(2)]);
        streams.retire_rung(&stream, "720p");
        let p = playlist(&stream, "720p");
        assert_eq!(p.segments.last().unwrap().parts.len(), 1);
        assert_eq!(p.preload_hint.as_deref(), Some("3.1.m4s"));
        // Live output after the replay is not taken twice.
        streams.apply(&stream, "480p", vec![rung_part(3, 1, 2)]);
        assert_eq!(
            playlist(&stream, "720p")
                .segments
                .last()
                .unwrap()
                .parts
                .len(),
            2
        );
    }

    #[test]
    fn followers_of_a_shed_replacement_move_on_and_without_one_the_playlist_ends() {
        let streams = streams();
        let stream = ladder(&streams, &["720p", "480p"]);
        streams.apply(&stream, "720p", vec![end(2)]);
        streams.retire_rung(&stream, "720p");
        // Now 480p is shed too: nothing below, nothing above still running, and the
        // source is HEVC while the rungs are H.264: both rung playlists end properly.
        streams.apply(&stream, "480p", vec![end(2)]);
        streams.retire_rung(&stream, "480p");
        assert_eq!(listed(&stream), ["source"]);
        for name in ["720p", "480p"] {
            let p = playlist(&stream, name);
            assert!(p.ended, "{name}");
            assert!(p.preload_hint.is_none(), "{name}");
        }
    }

    #[test]
    fn a_follower_moves_with_its_target() {
        let streams = streams();
        let stream = ladder(&streams, &["720p", "480p", "360p"]);
        streams.apply(&stream, "720p", vec![end(2)]);
        streams.retire_rung(&stream, "720p");
        streams.apply(&stream, "480p", vec![rung_part(2, 2, 2), end(2)]);
        streams.apply(&stream, "480p", vec![rung_part(3, 0, 2), end(3)]);
        streams.retire_rung(&stream, "480p");
        {
            let st = stream.lock();
            for name in ["720p", "480p"] {
                let f = st.rendition(name).unwrap().follow.clone().unwrap();
                assert_eq!(f.target, "360p", "{name}");
            }
        }
        streams.apply(
            &stream,
            "360p",
            vec![
                rung_part(2, 2, 3),
                end(2),
                rung_part(3, 0, 3),
                end(3),
                rung_part(4, 0, 3),
            ],
        );
        for name in ["720p", "480p"] {
            let p = playlist(&stream, name);
            assert_eq!(p.preload_hint.as_deref(), Some("4.1.m4s"), "{name}");
            assert!(p.segments.last().unwrap().discontinuity, "{name}");
        }
        assert_eq!(listed(&stream), ["source", "360p"]);
    }

    #[test]
    fn the_lowest_rung_follows_the_next_higher_and_the_last_one_the_source_of_the_same_codec() {
        let streams = streams();
        let stream = ladder(&streams, &["720p", "480p"]);
        streams.set_init(
            &stream,
            SOURCE,
            Bytes::from_static(b"init of source"),
            "avc1.640028,mp4a.40.2".into(),
            None,
        );
        streams.apply(&stream, "480p", vec![end(2)]);
        streams.retire_rung(&stream, "480p");
        let target = |st: &StreamState, name: &str| {
            st.rendition(name)
                .and_then(|r| r.follow.as_ref())
                .map(|f| f.target.clone())
        };
        assert_eq!(target(&stream.lock(), "480p").as_deref(), Some("720p"));
        streams.apply(&stream, "720p", vec![end(2)]);
        streams.retire_rung(&stream, "720p");
        let st = stream.lock();
        assert_eq!(target(&st, "720p").as_deref(), Some(SOURCE));
        assert_eq!(target(&st, "480p").as_deref(), Some(SOURCE));
        assert!(!st.rendition("480p").unwrap().live.ended());
    }

    #[test]
    fn a_rung_shed_before_its_first_segment_is_removed() {
        let streams = streams();
        let stream = ladder(&streams, &["720p"]);
        let live = streams.settings().live;
        stream
            .lock()
            .ensure_rendition("480p", || LiveRendition::new(live, 0));
        streams.retire_rung(&stream, "480p");
        assert!(stream.lock().rendition("480p").is_none());
    }

    #[test]
    fn following_takes_events_in_order_and_notices_a_gap() {
        let mut f = Follow::new("480p", 5);
        assert_eq!(f.take(&rung_part(4, 3, 0)), Take::Skip);
        assert_eq!(f.take(&end(4)), Take::Skip);
        assert_eq!(f.take(&end(5)), Take::Skip, "no end before a part");
        assert_eq!(f.take(&rung_part(5, 0, 0)), Take::Yes);
        assert_eq!(f.take(&rung_part(5, 0, 0)), Take::Skip, "taken already");
        assert_eq!(f.take(&rung_part(5, 1, 0)), Take::Yes);
        assert_eq!(f.take(&end(5)), Take::Yes);
        assert_eq!(f.take(&rung_part(7, 0, 0)), Take::Gap);
    }

    #[test]
    fn rendition_reports_name_exactly_the_other_listed_renditions() {
        // The rung has parts but no complete segment yet: the master does not list it, so
        // no playlist may report it.
        let mut st = state(vec![rendition("source", 2, 1), rendition("360p", 0, 3)]);
        let listed: Vec<&str> = st.listed().map(|r| r.name.as_str()).collect();
        assert_eq!(listed, ["source"]);
        assert!(st.reports("source").is_empty());
        assert!(st.reports("360p").iter().all(|r| !r.uri.contains("360p")));

        st.renditions[1].live.end_segment(0, 54_000);
        let listed: Vec<&str> = st.listed().map(|r| r.name.as_str()).collect();
        assert_eq!(listed, ["source", "360p"]);
        let uris: Vec<String> = st.reports("source").into_iter().map(|r| r.uri).collect();
        assert_eq!(uris, ["../360p/index.m3u8"]);
        let reports = st.reports("360p");
        assert_eq!(reports.len(), 1);
        assert_eq!(
            (
                reports[0].uri.as_str(),
                reports[0].last_msn,
                reports[0].last_part
            ),
            ("../source/index.m3u8", 2, Some(0))
        );
    }
}
