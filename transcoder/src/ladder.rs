//! One stream's ladder: a decode thread, one scale+encode thread per rung, and a monitor.
//!
//! ```text
//!  push(au) ──(bounded, never blocks ingest)──▶ decode ──(bounded, shared frames)──▶ rung 720p ─▶ sink
//!                                                     └──────────────────────────▶ rung 480p ─▶ sink
//!                                                     └──────────────────────────▶ rung 360p ─▶ sink
//! ```
//!
//! Alignment: every rung's keyframes are forced at exactly the source's keyframe timestamps
//! and the encoders place none of their own (no scene-cut keyframes, a keyframe interval far
//! above the segment target). Rung output has no B-frames, so a rung's decode time is its
//! presentation time less the source's composition offset at its first keyframe: a rung
//! keyframe then has the same decode time as the source's, and the packager — which cuts
//! segments at keyframes and parts by duration — cuts every rung where it cuts the source.
//!
//! Back-pressure and shedding: the decode thread waits for a full rung queue, so a slow
//! rung slows the ladder, never the ingest (which drops input until the next keyframe when
//! the ladder's own input queue is full). The monitor measures how far each rung's output
//! is behind the input; when the ladder lags by more than the configured limit it sheds the
//! most expensive rung left (pixels × frame rate). The source rendition is not part of the
//! ladder at all and never waits for it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use potok_media::annexb;
use potok_media::avc::AvcConfig;
use potok_media::frame::{AccessUnit, CodecConfig, TIMEBASE, TrackKind};
use potok_media::hevc::{self, HevcConfig};
use tracing::{info, warn};

use crate::encoders::{Choice, EncoderInfo, EncoderSettings, Target};
use crate::ffi::{self, Decoder, Encoder, Frame, PixFmt, Scaler, VideoCodec};
use crate::metrics::{LadderMetrics, TranscodeMetrics};

/// One rung of the ladder as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct RungSpec {
    /// Rendition name in URLs (`720p`).
    pub name: String,
    /// Picture height; the width keeps the source's aspect ratio.
    pub height: u32,
    /// Highest frame rate (0: the source's).
    pub max_fps: f64,
    /// Target average bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// Peak bitrate (VBV), kbit/s.
    pub max_bitrate_kbps: u32,
    /// Codec profile (`high`, `main`, `baseline` for H.264).
    pub profile: String,
}

/// A ladder's settings.
#[derive(Clone, Debug)]
pub struct LadderSettings {
    /// The rungs, any order; those not below the source's height are skipped.
    pub rungs: Vec<RungSpec>,
    /// Encoder options.
    pub encoder: EncoderSettings,
    /// The packager's segment target, in 90 kHz ticks (sets the keyframe safety interval).
    pub segment_target: u32,
    /// Lag behind the input after which the most expensive rung is shed.
    pub max_lag: Duration,
    /// Decoder threads (0: FFmpeg decides).
    pub decoder_threads: u32,
}

/// A rung as planned for a particular source.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedRung {
    /// Its spec.
    pub spec: RungSpec,
    /// Output picture size.
    pub size: (u32, u32),
    /// Output frame rate.
    pub fps: f64,
}

impl PlannedRung {
    fn cost(&self) -> f64 {
        f64::from(self.size.0) * f64::from(self.size.1) * self.fps
    }
}

/// Plans `rungs` for a source of `size` at `fps`: no upscaling (rungs at or above the
/// source's height are skipped — the source rendition covers them), even dimensions, the
/// source aspect ratio, frame rate capped.
pub fn plan(rungs: &[RungSpec], size: (u32, u32), fps: f64) -> Vec<PlannedRung> {
    let (sw, sh) = size;
    let mut out: Vec<PlannedRung> = rungs
        .iter()
        .filter(|r| r.height >= 2 && r.height < sh && sw > 0)
        .map(|r| {
            let h = r.height & !1;
            let w =
                ((f64::from(sw) * f64::from(h) / f64::from(sh) / 2.0).round() as u32 * 2).max(2);
            let fps = if r.max_fps > 0.0 && r.max_fps < fps {
                r.max_fps
            } else {
                fps
            };
            PlannedRung {
                spec: r.clone(),
                size: (w, h),
                fps,
            }
        })
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.size.1));
    out.dedup_by(|a, b| a.spec.name == b.spec.name);
    out
}

/// Where a ladder's output goes. Called from the ladder's threads; for one rung the calls
/// come in order: `config` before its first `unit`, then `finished` or `shed` last.
pub trait LadderSink: Send + Sync + 'static {
    /// A rung's codec configuration (from its encoder's parameter sets), before its media.
    fn config(&self, rung: &PlannedRung, config: CodecConfig);
    /// A rung's next access unit (video it encoded, or the source's audio), decode order.
    fn unit(&self, rung: &str, au: AccessUnit);
    /// The rung starts encoding a picture that will come out as video with decode time
    /// `dts` (a keyframe or not), after the pictures announced before it. A packager can
    /// complete the picture before it now, without waiting one encode for this one.
    fn next_picture(&self, rung: &str, dts: i64, keyframe: bool) {
        let _ = (rung, dts, keyframe);
    }
    /// The rung was dropped to keep the ladder in real time (or its encoder failed).
    fn shed(&self, rung: &str, why: &str);
    /// The input ended and the rung has flushed everything.
    fn finished(&self, rung: &str);
}

/// Why a ladder could not start.
#[derive(Debug, thiserror::Error)]
pub enum LadderError {
    /// The source codec cannot be decoded.
    #[error("cannot decode the source: {0}")]
    Decoder(ffi::AvError),
    /// No rung is below the source's resolution.
    #[error("no rung is below the source resolution")]
    NothingToDo,
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

enum Input {
    Video(AccessUnit),
    Audio(AccessUnit),
    End,
}

enum Item {
    Picture { frame: Frame, key: bool },
    Audio(AccessUnit),
    End,
}

/// What the threads share.
struct Shared {
    /// Presentation time of the newest video input (90 kHz).
    input_pts: AtomicI64,
    /// Source composition offset at its first keyframe (pts − dts), set before any picture.
    cts_offset: AtomicI64,
    /// All threads should stop at once (the ladder was dropped without `finish`).
    abort: AtomicBool,
    /// Decoding has ended.
    done: AtomicBool,
    /// Items in the decoder's input queue.
    input_depth: AtomicUsize,
    rungs: Vec<RungShared>,
}

struct RungShared {
    plan: PlannedRung,
    shed: AtomicBool,
    /// Presentation time of its newest encoded picture; `i64::MIN` before the first.
    output_pts: AtomicI64,
    frames: AtomicU64,
    queue: AtomicUsize,
}

/// A running ladder. Dropping it without [`Ladder::finish`] stops the threads without
/// flushing.
pub struct Ladder {
    input: SyncSender<Input>,
    shared: Arc<Shared>,
    skipping: bool,
    dropped: prometheus::IntCounter,
    planned: Vec<PlannedRung>,
    threads: Vec<JoinHandle<()>>,
}

/// Ladder input queue (access units: about four seconds of 30 fps video with its audio).
const INPUT_QUEUE: usize = 300;
/// Pictures waiting per rung.
const RUNG_QUEUE: usize = 8;

impl Ladder {
    /// Starts a ladder for a stream whose video is `source` at `fps` (what the publisher
    /// announced; the bitstream's own rate or 30 otherwise).
    pub fn start(
        stream: &str,
        settings: &LadderSettings,
        source: &CodecConfig,
        fps: Option<f64>,
        choice: &Choice,
        sink: Arc<dyn LadderSink>,
        metrics: &TranscodeMetrics,
    ) -> Result<Ladder, LadderError> {
        ffi::quiet_logs();
        let (codec, record) = match source {
            CodecConfig::Avc(c) => (VideoCodec::H264, c.record.clone()),
            CodecConfig::Hevc(c) => (VideoCodec::Hevc, c.record.clone()),
            CodecConfig::Av1(c) => (VideoCodec::Av1, c.record.clone()),
            CodecConfig::Aac(_) => return Err(LadderError::NothingToDo),
        };
        let size = source.resolution().ok_or(LadderError::NothingToDo)?;
        let decoder = Decoder::open(codec, &record, settings.decoder_threads)
            .map_err(LadderError::Decoder)?;
        let fps = fps
            .filter(|f| f.is_finite() && *f > 1.0 && *f <= 240.0)
            .or_else(|| decoder.frame_rate().filter(|f| *f > 1.0 && *f <= 240.0))
            .unwrap_or(30.0);
        let planned = plan(&settings.rungs, size, fps);
        if planned.is_empty() {
            return Err(LadderError::NothingToDo);
        }
        let lm = metrics.ladder(stream, choice.encoder.name, &planned);
        let shared = Arc::new(Shared {
            input_pts: AtomicI64::new(i64::MIN),
            cts_offset: AtomicI64::new(0),
            abort: AtomicBool::new(false),
            done: AtomicBool::new(false),
            input_depth: AtomicUsize::new(0),
            rungs: planned
                .iter()
                .map(|p| RungShared {
                    plan: p.clone(),
                    shed: AtomicBool::new(false),
                    output_pts: AtomicI64::new(i64::MIN),
                    frames: AtomicU64::new(0),
                    queue: AtomicUsize::new(0),
                })
                .collect(),
        });
        let mut threads = Vec::new();
        let mut rung_txs = Vec::new();
        for (i, p) in planned.iter().enumerate() {
            let (tx, rx) = sync_channel::<Item>(RUNG_QUEUE);
            rung_txs.push(tx);
            let job = RungJob {
                index: i,
                encoder: choice.encoder,
                settings: settings.encoder.clone(),
                gop: keyframe_safety_interval(settings.segment_target, p.fps),
                shared: Arc::clone(&shared),
                sink: Arc::clone(&sink),
                metrics: lm.clone(),
            };
            threads.push(spawn(format!("potok-enc-{}", p.spec.name), move || {
                job.run(rx);
            })?);
        }
        let (input, input_rx) = sync_channel::<Input>(INPUT_QUEUE);
        let dec = DecodeJob {
            decoder,
            shared: Arc::clone(&shared),
            rungs: rung_txs,
            metrics: lm.clone(),
        };
        threads.push(spawn("potok-decode".into(), move || dec.run(input_rx))?);
        let mon = Monitor {
            shared: Arc::clone(&shared),
            max_lag: settings.max_lag,
            metrics: lm.clone(),
            stream: stream.to_owned(),
        };
        threads.push(spawn("potok-ladder-mon".into(), move || mon.run())?);
        info!(
            stream,
            encoder = choice.encoder.name,
            rungs = %planned.iter().map(|p| format!("{} {}x{}@{:.0}", p.spec.name, p.size.0, p.size.1, p.fps)).collect::<Vec<_>>().join(", "),
            "transcoding started"
        );
        Ok(Ladder {
            input,
            shared,
            skipping: false,
            dropped: lm.dropped.clone(),
            planned,
            threads,
        })
    }

    /// The rungs being produced.
    pub fn rungs(&self) -> &[PlannedRung] {
        &self.planned
    }

    /// Feeds one access unit of the source (video or audio), in decode order. Never
    /// blocks: when the ladder's input queue is full, video is dropped until the next
    /// keyframe (the rungs then miss that stretch; the source rendition does not).
    pub fn push(&mut self, au: AccessUnit) {
        let video = au.track == TrackKind::Video;
        if video {
            if self.skipping && !au.keyframe {
                self.dropped.inc();
                return;
            }
            self.shared.input_pts.fetch_max(au.pts, Ordering::Relaxed);
        }
        let item = if video {
            Input::Video(au)
        } else {
            Input::Audio(au)
        };
        // Counted before the send: the decoder may take it (and count it out) at once.
        self.shared.input_depth.fetch_add(1, Ordering::Relaxed);
        match self.input.try_send(item) {
            Ok(()) => {
                if video {
                    self.skipping = false;
                }
            }
            Err(TrySendError::Full(_)) => {
                self.shared.input_depth.fetch_sub(1, Ordering::Relaxed);
                self.dropped.inc();
                if video {
                    self.skipping = true;
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.input_depth.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Feeds one access unit, waiting for room in the input queue: for offline use (files,
    /// benchmarks), where nothing must be dropped. Never call it from an async task.
    pub fn push_blocking(&mut self, au: AccessUnit) {
        if au.track == TrackKind::Video {
            self.shared.input_pts.fetch_max(au.pts, Ordering::Relaxed);
        }
        let item = if au.track == TrackKind::Video {
            Input::Video(au)
        } else {
            Input::Audio(au)
        };
        self.shared.input_depth.fetch_add(1, Ordering::Relaxed);
        if self.input.send(item).is_err() {
            self.shared.input_depth.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Ends the input: the threads flush every rung (then call [`LadderSink::finished`])
    /// and exit on their own. Does not wait.
    pub fn finish(mut self) {
        // End must get through even when the queue is full: wait a little in a helper
        // thread rather than in the caller (an async task).
        let input = self.input.clone();
        let shared = Arc::clone(&self.shared);
        let _ = std::thread::Builder::new()
            .name("potok-ladder-end".into())
            .spawn(move || {
                if input
                    .send_timeout_compat(Input::End, Duration::from_secs(10))
                    .is_err()
                {
                    shared.abort.store(true, Ordering::Relaxed);
                }
            });
        self.threads.clear(); // detach: they end after flushing
    }
}

impl Drop for Ladder {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shared.abort.store(true, Ordering::Relaxed);
            let _ = self.input.try_send(Input::End);
        }
    }
}

/// `SyncSender` has no send-with-timeout; retry `try_send` until the deadline.
trait SendTimeout<T> {
    fn send_timeout_compat(&self, v: T, timeout: Duration) -> Result<(), ()>;
}

impl<T> SendTimeout<T> for SyncSender<T> {
    fn send_timeout_compat(&self, mut v: T, timeout: Duration) -> Result<(), ()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.try_send(v) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Err(()),
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return Err(());
                    }
                    v = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, LadderError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map_err(LadderError::Thread)
}

/// Keyframes come from the source; the encoder's own interval is only a safety net far
/// above the segment target (ten segments), so it never adds a keyframe the source
/// does not have.
fn keyframe_safety_interval(segment_target: u32, fps: f64) -> u32 {
    let seg = f64::from(segment_target) / f64::from(TIMEBASE);
    ((seg * fps * 10.0).ceil() as u32).clamp(10, 100_000)
}

struct DecodeJob {
    decoder: Decoder,
    shared: Arc<Shared>,
    rungs: Vec<SyncSender<Item>>,
    metrics: LadderMetrics,
}

impl DecodeJob {
    fn run(mut self, input: Receiver<Input>) {
        let mut keys: VecDeque<i64> = VecDeque::new();
        let mut first_key: Option<i64> = None;
        let mut waiting_for_key = true;
        let mut errors = 0u32;
        loop {
            if self.shared.abort.load(Ordering::Relaxed) {
                break;
            }
            let msg = match input.recv_timeout(Duration::from_millis(200)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let depth = self.shared.input_depth.fetch_sub(1, Ordering::Relaxed);
            self.metrics.queue("input", depth.saturating_sub(1));
            match msg {
                Input::Audio(au) => {
                    if first_key.is_some() {
                        self.broadcast(|| Some(Item::Audio(au.clone())));
                    }
                }
                Input::Video(au) => {
                    if waiting_for_key {
                        if !au.keyframe {
                            continue;
                        }
                        waiting_for_key = false;
                    }
                    if au.keyframe {
                        if first_key.is_none() {
                            first_key = Some(au.pts);
                            self.shared
                                .cts_offset
                                .store((au.pts - au.dts).max(0), Ordering::Relaxed);
                        }
                        keys.push_back(au.pts);
                        if keys.len() > 64 {
                            keys.pop_front();
                        }
                    }
                    if let Err(e) = self
                        .decoder
                        .send(Some((&au.data, au.pts, au.dts, au.keyframe)))
                    {
                        errors += 1;
                        if errors <= 3 || errors.is_multiple_of(100) {
                            warn!(error = %e, errors, "ladder: the decoder refused a frame");
                        }
                        waiting_for_key = true;
                        continue;
                    }
                    self.drain(&mut keys, first_key);
                }
                Input::End => {
                    let _ = self.decoder.send(None);
                    self.drain(&mut keys, first_key);
                    self.broadcast(|| Some(Item::End));
                    break;
                }
            }
        }
        self.shared.done.store(true, Ordering::Relaxed);
    }

    /// Hands every decoded picture to the rungs.
    fn drain(&mut self, keys: &mut VecDeque<i64>, first_key: Option<i64>) {
        loop {
            let frame = match self.decoder.receive() {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e) => {
                    warn!(error = %e, "ladder: decoding failed");
                    return;
                }
            };
            let Some(pts) = frame.pts() else { continue };
            if first_key.is_none_or(|k| pts < k) {
                continue; // leading pictures of an open GOP before the start
            }
            while keys.front().is_some_and(|&k| k < pts) {
                keys.pop_front();
            }
            let key = keys.front() == Some(&pts);
            if key {
                keys.pop_front();
            }
            self.broadcast(|| frame.share().ok().map(|frame| Item::Picture { frame, key }));
        }
    }

    /// Sends an item to every rung still running, waiting for room (back-pressure).
    fn broadcast(&mut self, mut item: impl FnMut() -> Option<Item>) {
        for (tx, r) in self.rungs.iter().zip(&self.shared.rungs) {
            if r.shed.load(Ordering::Relaxed) {
                continue;
            }
            let Some(mut it) = item() else { continue };
            r.queue.fetch_add(1, Ordering::Relaxed);
            // Wait in short steps so a shed rung or an abort never blocks us for good.
            loop {
                match tx.try_send(it) {
                    Ok(()) => break,
                    Err(TrySendError::Disconnected(_)) => {
                        r.queue.fetch_sub(1, Ordering::Relaxed);
                        break;
                    }
                    Err(TrySendError::Full(back)) => {
                        if r.shed.load(Ordering::Relaxed)
                            || self.shared.abort.load(Ordering::Relaxed)
                        {
                            r.queue.fetch_sub(1, Ordering::Relaxed);
                            break;
                        }
                        it = back;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }
        }
    }
}

struct RungJob {
    index: usize,
    encoder: &'static EncoderInfo,
    settings: EncoderSettings,
    gop: u32,
    shared: Arc<Shared>,
    sink: Arc<dyn LadderSink>,
    metrics: LadderMetrics,
}

impl RungJob {
    fn me(&self) -> &RungShared {
        // `index` comes from enumerating `shared.rungs` when the job was made.
        &self.shared.rungs[self.index]
    }

    fn run(self, rx: Receiver<Item>) {
        let name = self.me().plan.spec.name.clone();
        match self.encode(&rx) {
            Ok(true) => self.sink.finished(&name),
            Ok(false) => {}
            Err(why) => {
                warn!(rung = %name, %why, "ladder: rung stopped");
                self.me().shed.store(true, Ordering::Relaxed);
                self.metrics.shed(&name);
                self.sink.shed(&name, &why);
            }
        }
    }

    /// Runs until the end of the input (`Ok(true)`), a shed or abort (`Ok(false)`), or an
    /// encoder failure.
    fn encode(&self, rx: &Receiver<Item>) -> Result<bool, String> {
        let plan = self.me().plan.clone();
        let name = plan.spec.name.as_str();
        let device = self.encoder.device()?;
        let params = self.encoder.params(
            &self.settings,
            &plan.spec.profile,
            Target {
                size: plan.size,
                fps: plan.fps,
                bitrate: u64::from(plan.spec.bitrate_kbps) * 1000,
                max_bitrate: u64::from(plan.spec.max_bitrate_kbps.max(plan.spec.bitrate_kbps))
                    * 1000,
                gop: self.gop,
            },
        );
        let mut enc = Encoder::open(&params, device)
            .map_err(|e| format!("cannot open {}: {e}", self.encoder.name))?;
        let fmt = if enc.wants_nv12() {
            PixFmt::Nv12
        } else {
            PixFmt::Yuv420p
        };
        let mut scaler = Scaler::new(plan.size.0, plan.size.1, fmt);
        let mut out = OutputConverter::new(self.encoder.codec, enc.extradata());
        let interval = (f64::from(TIMEBASE) / plan.fps) as i64;
        let mut next_due: Option<i64> = None;
        loop {
            if self.me().shed.load(Ordering::Relaxed) {
                self.sink.shed(name, "shed to keep the ladder in real time");
                return Ok(false);
            }
            if self.shared.abort.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let item = match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(i) => i,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Ok(false),
            };
            let depth = self
                .me()
                .queue
                .fetch_sub(1, Ordering::Relaxed)
                .saturating_sub(1);
            self.metrics.queue(name, depth);
            match item {
                Item::Audio(au) => self.sink.unit(name, au),
                Item::Picture { frame, key } => {
                    let Some(pts) = frame.pts() else { continue };
                    // Frame-rate cap: keep a picture when it is due; always keep keyframes
                    // (alignment) and restart the schedule there.
                    if !key && next_due.is_some_and(|due| pts < due - interval / 4) {
                        continue;
                    }
                    next_due = Some(next_due.filter(|_| !key).unwrap_or(pts) + interval);
                    // Its decode time as OutputConverter will give it (rungs have no
                    // B-frames).
                    let dts = pts - self.shared.cts_offset.load(Ordering::Relaxed);
                    self.sink.next_picture(name, dts, key);
                    let mut scaled = scaler.scale(&frame).map_err(|e| e.to_string())?;
                    drop(frame);
                    scaled.set_pts(pts);
                    scaled.force_keyframe(key);
                    enc.send(Some(&scaled)).map_err(|e| e.to_string())?;
                    self.collect(&mut enc, &mut out, &plan)?;
                }
                Item::End => {
                    enc.send(None).map_err(|e| e.to_string())?;
                    self.collect(&mut enc, &mut out, &plan)?;
                    return Ok(true);
                }
            }
        }
    }

    fn collect(
        &self,
        enc: &mut Encoder,
        out: &mut OutputConverter,
        plan: &PlannedRung,
    ) -> Result<(), String> {
        let name = plan.spec.name.as_str();
        while let Some(pkt) = enc.receive().map_err(|e| e.to_string())? {
            let Some((config, au)) =
                out.convert(pkt, self.shared.cts_offset.load(Ordering::Relaxed))
            else {
                continue;
            };
            if let Some(config) = config {
                self.sink.config(plan, config);
            }
            let me = self.me();
            me.output_pts.fetch_max(au.pts, Ordering::Relaxed);
            me.frames.fetch_add(1, Ordering::Relaxed);
            self.sink.unit(name, au);
        }
        Ok(())
    }
}

/// Encoder packets (Annex B) → length-prefixed access units, and the rung's codec
/// configuration from its real parameter sets (the global header, or in-band ones).
struct OutputConverter {
    codec: VideoCodec,
    params: Vec<Vec<u8>>,
    announced: bool,
}

impl OutputConverter {
    fn new(codec: VideoCodec, extradata: Vec<u8>) -> Self {
        let params = annexb::nal_units(&extradata).map(<[u8]>::to_vec).collect();
        OutputConverter {
            codec,
            params,
            announced: false,
        }
    }

    fn is_param(&self, nal: &[u8]) -> bool {
        match self.codec {
            VideoCodec::H264 => matches!(nal.first().map(|b| b & 0x1f), Some(7..=9)),
            VideoCodec::Hevc => matches!(nal.first().map(|_| hevc::nal_type(nal)), Some(32..=35)),
            VideoCodec::Av1 => false,
        }
    }

    fn config(&self) -> Option<CodecConfig> {
        match self.codec {
            VideoCodec::H264 => {
                let sps = self
                    .params
                    .iter()
                    .find(|n| n.first().map(|b| b & 0x1f) == Some(7))?;
                let pps = self
                    .params
                    .iter()
                    .find(|n| n.first().map(|b| b & 0x1f) == Some(8))?;
                AvcConfig::parse(annexb::avc_record(sps, pps))
                    .ok()
                    .map(CodecConfig::Avc)
            }
            VideoCodec::Hevc => {
                let find = |t: u8| {
                    self.params
                        .iter()
                        .find(|n| n.len() > 2 && hevc::nal_type(n) == t)
                };
                HevcConfig::from_parameter_sets(find(32)?, find(33)?, find(34)?)
                    .ok()
                    .map(CodecConfig::Hevc)
            }
            VideoCodec::Av1 => None,
        }
    }

    fn convert(
        &mut self,
        pkt: ffi::Encoded,
        cts_offset: i64,
    ) -> Option<(Option<CodecConfig>, AccessUnit)> {
        let mut announce = None;
        if !self.announced {
            // Parameter sets in-band (encoders without a global header): collect them.
            for nal in annexb::nal_units(&pkt.data) {
                if self.is_param(nal) {
                    self.params.push(nal.to_vec());
                }
            }
            announce = Some(self.config()?);
            self.announced = true;
        }
        let data: Bytes = annexb::to_length_prefixed(&pkt.data, |n| self.is_param(n));
        if data.is_empty() {
            return None;
        }
        Some((
            announce,
            AccessUnit {
                track: TrackKind::Video,
                dts: pkt.pts - cts_offset,
                pts: pkt.pts,
                keyframe: pkt.keyframe,
                data,
            },
        ))
    }
}

/// Watches the ladder's lag, exports fps / real-time factor / queue depths, and sheds.
struct Monitor {
    shared: Arc<Shared>,
    max_lag: Duration,
    metrics: LadderMetrics,
    stream: String,
}

/// (when, input pts, per rung (output pts, frames encoded)).
type Snapshot = (Instant, i64, Vec<(i64, u64)>);

const TICK: Duration = Duration::from_millis(250);

/// Shed requests not yet taken: (stream, rung).
static SHED_REQUESTS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Asks the running ladder of `stream` to shed `rung` now, exactly as its monitor does when
/// the ladder falls behind real time; taken within a monitor tick (250 ms) by the first
/// ladder of that stream name. For tests that need a shed at a known moment (and an
/// operator action later); a request for a stream without a ladder waits until one starts.
pub fn request_shed(stream: &str, rung: &str) {
    SHED_REQUESTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((stream.to_owned(), rung.to_owned()));
}

/// Takes the shed requests for `stream`.
fn take_shed_requests(stream: &str) -> Vec<String> {
    let mut all = SHED_REQUESTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (mine, rest): (Vec<_>, Vec<_>) = all.drain(..).partition(|(s, _)| s == stream);
    *all = rest;
    mine.into_iter().map(|(_, r)| r).collect()
}
/// Ticks in the window over which fps and the real-time factor are measured (2 s).
const WINDOW: usize = 8;

impl Monitor {
    fn run(self) {
        let max_lag = (self.max_lag.as_secs_f64() * f64::from(TIMEBASE)) as i64;
        // (when, input pts, per-rung (output pts, frames))
        let mut history: VecDeque<Snapshot> = VecDeque::new();
        let mut over_since: Option<Instant> = None;
        let mut last_shed = Instant::now();
        while !self.shared.done.load(Ordering::Relaxed)
            && !self.shared.abort.load(Ordering::Relaxed)
        {
            std::thread::sleep(TICK);
            for name in take_shed_requests(&self.stream) {
                if let Some(r) = self
                    .shared
                    .rungs
                    .iter()
                    .find(|r| r.plan.spec.name == name && !r.shed.load(Ordering::Relaxed))
                {
                    warn!(stream = %self.stream, rung = %name, "ladder: shedding a rung on request");
                    r.shed.store(true, Ordering::Relaxed);
                    self.metrics.shed(&name);
                }
            }
            let now = Instant::now();
            let input = self.shared.input_pts.load(Ordering::Relaxed);
            let snap: Vec<(i64, u64)> = self
                .shared
                .rungs
                .iter()
                .map(|r| {
                    (
                        r.output_pts.load(Ordering::Relaxed),
                        r.frames.load(Ordering::Relaxed),
                    )
                })
                .collect();
            history.push_back((now, input, snap.clone()));
            if history.len() > WINDOW + 1 {
                history.pop_front();
            }
            let Some((then, _, old)) = history.front() else {
                continue;
            };
            let wall = now.duration_since(*then).as_secs_f64();
            if wall <= 0.0 {
                continue;
            }
            // Per rung: fps; the ladder's real-time factor is the slowest live rung's media
            // progress per second of wall time.
            let mut rtf: Option<f64> = None;
            let mut worst_lag = 0i64;
            for (i, r) in self.shared.rungs.iter().enumerate() {
                let name = &r.plan.spec.name;
                if r.shed.load(Ordering::Relaxed) {
                    self.metrics.fps(name, 0.0);
                    continue;
                }
                let (pts, frames) = snap[i];
                let (old_pts, old_frames) = old[i];
                self.metrics.fps(name, (frames - old_frames) as f64 / wall);
                if pts != i64::MIN && old_pts != i64::MIN && input != i64::MIN {
                    let progress = (pts - old_pts) as f64 / f64::from(TIMEBASE) / wall;
                    rtf = Some(rtf.map_or(progress, |x: f64| x.min(progress)));
                    worst_lag = worst_lag.max(input - pts);
                } else if input != i64::MIN && frames == 0 && history.len() > WINDOW {
                    // Nothing out after a whole window with input flowing: as bad as it gets.
                    rtf = Some(0.0);
                    worst_lag = worst_lag.max(max_lag + 1);
                }
            }
            if let Some(rtf) = rtf {
                self.metrics.realtime.set(rtf);
            }
            if worst_lag > max_lag {
                let since = *over_since.get_or_insert(now);
                // Lagging for a second, and the effect of the previous shed has had time
                // to show: shed the most expensive rung left.
                if now.duration_since(since) >= Duration::from_secs(1)
                    && now.duration_since(last_shed) >= Duration::from_secs(3)
                    && let Some(victim) = self
                        .shared
                        .rungs
                        .iter()
                        .filter(|r| !r.shed.load(Ordering::Relaxed))
                        .max_by(|a, b| a.plan.cost().total_cmp(&b.plan.cost()))
                {
                    warn!(
                        stream = %self.stream,
                        rung = %victim.plan.spec.name,
                        lag_ms = worst_lag * 1000 / i64::from(TIMEBASE),
                        "ladder behind real time: shedding the most expensive rung"
                    );
                    victim.shed.store(true, Ordering::Relaxed);
                    self.metrics.shed(&victim.plan.spec.name);
                    last_shed = now;
                    over_since = None;
                    history.clear();
                }
            } else {
                over_since = None;
            }
        }
        self.metrics
            .close(self.shared.rungs.iter().map(|r| r.plan.spec.name.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rung(name: &str, height: u32, max_fps: f64) -> RungSpec {
        RungSpec {
            name: name.into(),
            height,
            max_fps,
            bitrate_kbps: 1000,
            max_bitrate_kbps: 1200,
            profile: "main".into(),
        }
    }

    #[test]
    fn plans_skip_upscaling_and_keep_the_aspect_ratio() {
        let rungs = [
            rung("1080p", 1080, 0.0),
            rung("720p", 720, 0.0),
            rung("360p", 360, 30.0),
            rung("480p", 480, 0.0),
        ];
        let p = plan(&rungs, (1280, 720), 60.0);
        let got: Vec<_> = p
            .iter()
            .map(|r| (r.spec.name.as_str(), r.size, r.fps))
            .collect();
        assert_eq!(
            got,
            vec![("480p", (854, 480), 60.0), ("360p", (640, 360), 30.0)]
        );
        // 4:3 and odd sizes stay even.
        let p = plan(&[rung("241p", 241, 0.0)], (1440, 1080), 30.0);
        assert_eq!(p[0].size, (320, 240));
        assert!(plan(&rungs, (320, 180), 30.0).is_empty());
    }

    #[test]
    fn the_safety_interval_is_far_above_the_segment() {
        assert_eq!(keyframe_safety_interval(2 * TIMEBASE, 30.0), 600);
    }
}
