//! The ABR ladder at the origin: which streams get one, and where its output goes — each
//! rung into its own packager and rendition of the stream, next to the untouched source.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use potok_config::TranscodeConfig;
use potok_media::aac::AacConfig;
use potok_media::frame::{AccessUnit, CodecConfig, TrackKind};
use potok_media::hls::live::LiveRendition;
use potok_media::packager::{Continuation, Packager};
use potok_transcoder::{
    Choice, EncoderSettings, Ladder, LadderSettings, LadderSink, PlannedRung, RungSpec,
    TranscodeMetrics,
};
use tracing::{info, warn};

use crate::streams::{Stream, Streams};

/// The ladder's settings and the encoder chosen at start.
pub(crate) struct TranscodeSetup {
    enabled: bool,
    per_stream: HashMap<String, bool>,
    settings: LadderSettings,
    choice: Choice,
    metrics: TranscodeMetrics,
}

impl std::fmt::Debug for TranscodeSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranscodeSetup")
            .field("enabled", &self.enabled)
            .field("encoder", &self.choice.encoder.name)
            .field("rungs", &self.settings.rungs.len())
            .finish()
    }
}

impl TranscodeSetup {
    /// The ladders' metrics.
    pub(crate) fn metrics(&self) -> &TranscodeMetrics {
        &self.metrics
    }

    /// Chooses the encoder (probing hardware for `auto`) and logs the choice.
    pub(crate) fn new(
        cfg: &TranscodeConfig,
        per_stream: HashMap<String, bool>,
        segment_target: u32,
        registry: &prometheus::Registry,
    ) -> Result<Self, String> {
        let encoder = EncoderSettings {
            preset: cfg.preset.clone(),
            tune: cfg.tune.clone(),
            threads: cfg.threads,
        };
        let choice = potok_transcoder::encoders::choose(&cfg.encoder, &encoder)
            .map_err(|e| format!("origin.transcode.encoder: {e}"))?;
        for p in &choice.passed_over {
            info!(encoder = p.name, reason = %p.result.as_ref().err().map_or("", |s| s.as_str()), "transcoder: encoder passed over");
        }
        info!(
            encoder = choice.encoder.name,
            requested = %cfg.encoder,
            "transcoder: encoder chosen"
        );
        let metrics = TranscodeMetrics::new(registry);
        metrics.set_encoder(choice.encoder.name, &cfg.encoder);
        Ok(TranscodeSetup {
            enabled: cfg.enabled,
            per_stream,
            settings: LadderSettings {
                rungs: cfg
                    .rungs
                    .iter()
                    .map(|r| RungSpec {
                        name: r.name.clone(),
                        height: r.height,
                        max_fps: r.max_fps,
                        bitrate_kbps: r.bitrate_kbps,
                        max_bitrate_kbps: r.max_bitrate_kbps,
                        profile: r.profile.clone(),
                    })
                    .collect(),
                encoder,
                segment_target,
                max_lag: cfg.max_lag.get(),
                decoder_threads: 0,
            },
            choice,
            metrics,
        })
    }

    /// The lowest real-time factor among the running ladders (heartbeats).
    pub(crate) fn slowest_ladder(&self) -> Option<f64> {
        self.metrics.slowest_realtime_factor()
    }

    pub(crate) fn enabled_for(&self, stream: &str) -> bool {
        self.per_stream.get(stream).copied().unwrap_or(self.enabled)
    }

    /// Starts a ladder feeding `stream`'s rung renditions; `None` when there is nothing
    /// to do (no rung below the source) or it cannot start (logged).
    pub(crate) fn start(
        &self,
        streams: &Arc<Streams>,
        stream: &Arc<Stream>,
        session: u64,
        video: &CodecConfig,
        fps: Option<f64>,
        audio: Option<AacConfig>,
    ) -> Option<Ladder> {
        let start = stream.lock().continuation();
        let sink = Arc::new(RungOutput {
            streams: Arc::clone(streams),
            stream: Arc::clone(stream),
            session,
            audio,
            start,
            rungs: Mutex::new(HashMap::new()),
        });
        match Ladder::start(
            &stream.name,
            &self.settings,
            video,
            fps,
            &self.choice,
            sink,
            &self.metrics,
        ) {
            Ok(l) => Some(l),
            Err(potok_transcoder::LadderError::NothingToDo) => {
                info!(stream = %stream.name, "no rung below the source resolution: source only");
                None
            }
            Err(e) => {
                warn!(stream = %stream.name, error = %e, "transcoding unavailable for this stream: source only");
                None
            }
        }
    }
}

/// A rung's packaging state.
enum RungState {
    /// Audio that arrived before the rung's first picture (bounded).
    Waiting(Vec<AccessUnit>),
    Packaging(Box<Packager>),
}

/// Audio held per rung until its encoder's first output (about 5 s).
const MAX_EARLY_AUDIO: usize = 256;

/// Puts a ladder's output into the stream: one packager per rung, starting where the
/// source's packager started so that segment numbers and times line up.
struct RungOutput {
    streams: Arc<Streams>,
    stream: Arc<Stream>,
    session: u64,
    audio: Option<AacConfig>,
    start: Continuation,
    rungs: Mutex<HashMap<String, RungState>>,
}

impl RungOutput {
    fn rungs(&self) -> MutexGuard<'_, HashMap<String, RungState>> {
        self.rungs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn current(&self) -> bool {
        self.stream.lock().fed_by(self.session)
    }
}

impl LadderSink for RungOutput {
    fn config(&self, rung: &PlannedRung, config: CodecConfig) {
        if !self.current() {
            return;
        }
        let name = rung.spec.name.as_str();
        let mut tracks = vec![config.clone()];
        if let Some(a) = &self.audio {
            tracks.push(CodecConfig::Aac(a.clone()));
        }
        let mut packager = Packager::new(self.streams.settings().packager, &tracks, self.start);
        let codecs = packager
            .codecs()
            .map(CodecConfig::codec_string)
            .collect::<Vec<_>>()
            .join(",");
        {
            let mut st = self.stream.lock();
            let live = self.streams.settings().live;
            st.ensure_rendition(name, || LiveRendition::new(live, self.start.msn));
            if let Some(r) = st.renditions.iter_mut().find(|r| r.name == name) {
                r.frame_rate = Some(rung.fps);
            }
        }
        self.streams.set_init(
            &self.stream,
            name,
            packager.init_segment(),
            codecs,
            config.resolution(),
        );
        let mut rungs = self.rungs();
        let early = match rungs.remove(name) {
            Some(RungState::Waiting(early)) => early,
            Some(RungState::Packaging(mut old)) => {
                // New parameter sets mid-stream: finish the old packager first.
                self.streams.apply(&self.stream, name, old.finish());
                Vec::new()
            }
            None => Vec::new(),
        };
        for au in early {
            let events = packager.push(au);
            self.streams.apply(&self.stream, name, events);
        }
        rungs.insert(name.to_owned(), RungState::Packaging(Box::new(packager)));
    }

    fn unit(&self, rung: &str, au: AccessUnit) {
        if !self.current() {
            return;
        }
        let mut rungs = self.rungs();
        match rungs
            .entry(rung.to_owned())
            .or_insert_with(|| RungState::Waiting(Vec::new()))
        {
            RungState::Waiting(early) => {
                if au.track == TrackKind::Audio && early.len() < MAX_EARLY_AUDIO {
                    early.push(au);
                }
            }
            RungState::Packaging(p) => {
                let events = p.push(au);
                self.streams.apply(&self.stream, rung, events);
            }
        }
    }

    fn next_picture(&self, rung: &str, dts: i64, keyframe: bool) {
        if !self.current() {
            return;
        }
        if let Some(RungState::Packaging(p)) = self.rungs().get_mut(rung) {
            let events = p.next_video(dts, keyframe);
            self.streams.apply(&self.stream, rung, events);
        }
    }

    fn shed(&self, rung: &str, why: &str) {
        let state = self.rungs().remove(rung);
        if !self.current() {
            return;
        }
        warn!(stream = %self.stream.name, rung, why, "rung shed: it leaves the multivariant playlist");
        // Close what the rung has (its last segment ends short), then keep its rendition
        // answerable with another rung's output (Streams::retire_rung).
        if let Some(RungState::Packaging(mut p)) = state {
            self.streams.apply(&self.stream, rung, p.finish());
        }
        self.streams.retire_rung(&self.stream, rung);
    }

    fn finished(&self, rung: &str) {
        let state = self.rungs().remove(rung);
        if let Some(RungState::Packaging(mut p)) = state
            && self.current()
        {
            self.streams.apply(&self.stream, rung, p.finish());
        }
    }
}
