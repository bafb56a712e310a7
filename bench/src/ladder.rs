//! `bench ladder`: transcoding throughput of Potok's in-process ladder against the ffmpeg
//! CLI doing the same ladder in one process.
//!
//! Source: 60 s of 1080p30 `testsrc2`, encoded once with x264 into an FLV file. Both sides
//! decode it once, scale it to 720p, 480p and 360p (bicubic) and encode each rung with
//! libx264 at the same settings (preset, tune, bitrates, no B-frames, no scene-cut
//! keyframes); ffmpeg writes to the null muxer, Potok's rungs go to a sink that counts
//! packets. Runs alternate; the figure is source frames per second of wall time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use potok_media::avc::AvcConfig;
use potok_media::flv::{self, FlvReader, TagKind, VideoTag};
use potok_media::frame::{AccessUnit, CodecConfig, TrackKind, ms_to_ticks};
use potok_transcoder::{
    EncoderSettings, Ladder, LadderSettings, LadderSink, PlannedRung, RungSpec, TranscodeMetrics,
};

/// The rungs: (name, height, kbit/s, max kbit/s).
pub const RUNGS: [(&str, u32, u32, u32); 3] = [
    ("720p", 720, 3000, 3300),
    ("480p", 480, 1400, 1540),
    ("360p", 360, 800, 880),
];

/// x264 settings shared by both sides.
pub const PRESET: &str = "veryfast";
/// x264 tune shared by both sides.
pub const TUNE: &str = "zerolatency";
/// Keyframe safety interval both sides use (keyframes come from the source every 60).
pub const GOP: u32 = 600;

/// Encodes the benchmark source into `dir`: 1080p30 testsrc2, `seconds` long, keyframe
/// every 2 s.
pub fn make_source(dir: &Path, seconds: u32) -> anyhow::Result<PathBuf> {
    let path = dir.join("source-1080p.flv");
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc2=size=1920x1080:rate=30")
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-b:v", "6000k", "-pix_fmt",
            "yuv420p", "-an", "-f", "flv",
        ])
        .arg(&path)
        .status()
        .context("ffmpeg not found: run scripts/setup")?;
    if !status.success() {
        bail!("ffmpeg could not encode the benchmark source");
    }
    Ok(path)
}

/// The source's video: its configuration and access units.
pub fn read_source(path: &Path) -> anyhow::Result<(CodecConfig, Vec<AccessUnit>)> {
    let mut reader = FlvReader::new();
    reader.push(&std::fs::read(path)?);
    let mut config = None;
    let mut units = Vec::new();
    while let Some(tag) = reader.next_tag()? {
        if tag.kind != TagKind::Video {
            continue;
        }
        match flv::parse_video(tag.body)? {
            VideoTag::AvcSequenceHeader(record) => {
                config = Some(CodecConfig::Avc(AvcConfig::parse(record)?));
            }
            VideoTag::AvcFrame {
                keyframe,
                composition_time_ms,
                data,
            } => {
                let dts = ms_to_ticks(i64::from(tag.timestamp_ms));
                units.push(AccessUnit {
                    track: TrackKind::Video,
                    dts,
                    pts: dts + ms_to_ticks(i64::from(composition_time_ms)),
                    keyframe,
                    data,
                });
            }
            _ => {}
        }
    }
    Ok((config.context("no AVC sequence header")?, units))
}

#[derive(Default)]
struct Count {
    packets: usize,
    bytes: usize,
    finished: usize,
    shed: Vec<String>,
}

#[derive(Default)]
struct CountingSink {
    count: Mutex<Count>,
    done: Condvar,
}

impl CountingSink {
    fn count(&self) -> std::sync::MutexGuard<'_, Count> {
        self.count
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl LadderSink for CountingSink {
    fn config(&self, _: &PlannedRung, _: CodecConfig) {}
    fn unit(&self, _: &str, au: AccessUnit) {
        let mut c = self.count();
        c.packets += 1;
        c.bytes += au.data.len();
    }
    fn shed(&self, rung: &str, _: &str) {
        self.count().shed.push(rung.to_owned());
        self.done.notify_all();
    }
    fn finished(&self, _: &str) {
        self.count().finished += 1;
        self.done.notify_all();
    }
}

/// One run's outcome.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Source frames per second of wall time.
    pub fps: f64,
    /// Encoded bytes per second of media over all rungs (a sanity check both sides encode
    /// comparable streams).
    pub kbps: f64,
}

/// Potok's ladder over the whole source, as fast as it goes.
pub fn run_potok(config: &CodecConfig, units: &[AccessUnit], fps: f64) -> anyhow::Result<Run> {
    let settings = LadderSettings {
        rungs: RUNGS
            .iter()
            .map(|(name, height, kbps, max)| RungSpec {
                name: (*name).to_owned(),
                height: *height,
                max_fps: 0.0,
                bitrate_kbps: *kbps,
                max_bitrate_kbps: *max,
                profile: "high".into(),
            })
            .collect(),
        encoder: EncoderSettings {
            preset: PRESET.into(),
            tune: TUNE.into(),
            threads: 0,
        },
        segment_target: 2 * 90_000,
        // Offline: the input runs far ahead of real time on purpose; never shed.
        max_lag: Duration::from_secs(24 * 3600),
        decoder_threads: 0,
    };
    let choice = potok_transcoder::encoders::choose("libx264", &settings.encoder)?;
    let sink = Arc::new(CountingSink::default());
    let metrics = TranscodeMetrics::new(&prometheus_registry());
    let started = Instant::now();
    let mut ladder = Ladder::start(
        "bench",
        &settings,
        config,
        Some(fps),
        &choice,
        Arc::clone(&sink) as Arc<dyn LadderSink>,
        &metrics,
    )?;
    for au in units {
        ladder.push_blocking(au.clone());
    }
    ladder.finish();
    let mut c = sink.count();
    while c.finished + c.shed.len() < RUNGS.len() {
        let (next, timeout) = sink
            .done
            .wait_timeout(c, Duration::from_secs(600))
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c = next;
        if timeout.timed_out() {
            bail!("the ladder did not finish within 10 minutes");
        }
    }
    let wall = started.elapsed().as_secs_f64();
    if !c.shed.is_empty() {
        bail!("rungs failed: {:?}", c.shed);
    }
    if c.packets < units.len() * RUNGS.len() * 9 / 10 {
        bail!(
            "only {} packets out for {} frames × {} rungs",
            c.packets,
            units.len(),
            RUNGS.len()
        );
    }
    let media = units.len() as f64 / fps;
    Ok(Run {
        fps: units.len() as f64 / wall,
        kbps: c.bytes as f64 * 8.0 / media / 1000.0,
    })
}

fn prometheus_registry() -> prometheus::Registry {
    prometheus::Registry::new()
}

/// The ffmpeg CLI doing the same ladder in one process.
pub fn run_ffmpeg(source: &Path, frames: usize, fps: f64, dir: &Path) -> anyhow::Result<Run> {
    let mut filter = format!("[0:v]split={}", RUNGS.len());
    for i in 0..RUNGS.len() {
        filter.push_str(&format!("[s{i}]"));
    }
    for (i, (_, h, _, _)) in RUNGS.iter().enumerate() {
        filter.push_str(&format!(";[s{i}]scale=-2:{h}:flags=bicubic[o{i}]"));
    }
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(source)
        .args(["-filter_complex", &filter]);
    let mut outputs = Vec::new();
    for (i, (name, _, kbps, max)) in RUNGS.iter().enumerate() {
        let out = dir.join(format!("ffmpeg-{name}.h264"));
        cmd.args(["-map", &format!("[o{i}]")])
            .args(["-c:v", "libx264", "-preset", PRESET, "-tune", TUNE])
            .args(["-profile:v", "high", "-bf", "0", "-g", &GOP.to_string()])
            .args(["-forced-idr", "1", "-x264-params", "scenecut=0"])
            .args(["-force_key_frames", "source"])
            .args(["-b:v", &format!("{kbps}k"), "-maxrate", &format!("{max}k")])
            .args(["-bufsize", &format!("{max}k"), "-f", "h264"])
            .arg(&out);
        outputs.push(out);
    }
    let started = Instant::now();
    let status = cmd.status().context("ffmpeg not found")?;
    let wall = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("ffmpeg failed");
    }
    let bytes: u64 = outputs
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let media = frames as f64 / fps;
    Ok(Run {
        fps: frames as f64 / wall,
        kbps: bytes as f64 * 8.0 / media / 1000.0,
    })
}

/// Both sides' runs.
#[derive(Debug, Default)]
pub struct Report {
    /// Potok's runs.
    pub potok: Vec<Run>,
    /// The ffmpeg CLI's runs.
    pub ffmpeg: Vec<Run>,
}

/// Runs both sides `runs` times each, alternating, over a `seconds`-long source.
pub fn run(
    seconds: u32,
    runs: usize,
    mut progress: impl FnMut(&str, usize, Run),
) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let source = make_source(dir.path(), seconds)?;
    let (config, units) = read_source(&source)?;
    let fps = 30.0;
    let mut report = Report::default();
    for i in 1..=runs {
        let p = run_potok(&config, &units, fps)?;
        progress("potok", i, p);
        report.potok.push(p);
        let f = run_ffmpeg(&source, units.len(), fps, dir.path())?;
        progress("ffmpeg", i, f);
        report.ffmpeg.push(f);
    }
    Ok(report)
}
