//! A ladder fed garbage: frames that are not H.264, NAL lengths pointing far past the data,
//! empty frames. It must not panic or stall; when real frames follow it produces rungs again,
//! and it still finishes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use potok_media::avc::AvcConfig;
use potok_media::flv::{self, FlvReader, TagKind, VideoTag};
use potok_media::frame::{AccessUnit, CodecConfig, TrackKind, ms_to_ticks};
use potok_transcoder::{
    EncoderSettings, Ladder, LadderSettings, LadderSink, PlannedRung, RungSpec, TranscodeMetrics,
};

/// Two seconds of 640x360 x264 (keyframe every second), read back from FLV.
fn source() -> (CodecConfig, Vec<AccessUnit>) {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .args([
            "testsrc2=size=640x360:rate=30",
            "-t",
            "2",
            "-c:v",
            "libx264",
        ])
        .args([
            "-preset",
            "ultrafast",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "flv",
            "pipe:1",
        ])
        .output()
        .expect("ffmpeg not found: run scripts/setup");
    assert!(out.status.success());
    let mut reader = FlvReader::new();
    reader.push(&out.stdout);
    let (mut config, mut units) = (None, Vec::new());
    while let Some(tag) = reader.next_tag().unwrap() {
        if tag.kind != TagKind::Video {
            continue;
        }
        match flv::parse_video(tag.body).unwrap() {
            VideoTag::AvcSequenceHeader(r) => {
                config = Some(CodecConfig::Avc(AvcConfig::parse(r).unwrap()))
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
    (config.unwrap(), units)
}

#[derive(Default)]
struct Sink {
    state: Mutex<(usize, usize, Vec<String>)>,
    done: Condvar,
}

impl LadderSink for Sink {
    fn config(&self, _: &PlannedRung, _: CodecConfig) {}
    fn unit(&self, _: &str, au: AccessUnit) {
        if au.track == TrackKind::Video {
            self.state.lock().unwrap().0 += 1;
        }
    }
    fn shed(&self, rung: &str, why: &str) {
        self.state.lock().unwrap().2.push(format!("{rung}: {why}"));
        self.done.notify_all();
    }
    fn finished(&self, _: &str) {
        self.state.lock().unwrap().1 += 1;
        self.done.notify_all();
    }
}

#[test]
fn garbage_frames_are_survived_and_real_ones_decode_after_them() {
    let (config, units) = source();
    let settings = LadderSettings {
        rungs: vec![RungSpec {
            name: "180p".into(),
            height: 180,
            max_fps: 0.0,
            bitrate_kbps: 300,
            max_bitrate_kbps: 330,
            profile: "main".into(),
        }],
        encoder: EncoderSettings {
            preset: "ultrafast".into(),
            ..EncoderSettings::default()
        },
        segment_target: 2 * 90_000,
        max_lag: Duration::from_secs(3600),
        decoder_threads: 0,
    };
    let choice = potok_transcoder::encoders::choose("libx264", &settings.encoder).unwrap();
    let sink = Arc::new(Sink::default());
    let metrics = TranscodeMetrics::new(&prometheus::Registry::new());
    let mut ladder = Ladder::start(
        "garbage",
        &settings,
        &config,
        Some(30.0),
        &choice,
        Arc::clone(&sink) as Arc<dyn LadderSink>,
        &metrics,
    )
    .unwrap();

    // Garbage first: random bytes, NAL lengths far past the end, empty frames.
    let mut x: u32 = 12345;
    for i in 0..120i64 {
        let mut data = Vec::new();
        match i % 3 {
            0 => {
                for _ in 0..500 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    data.push(x as u8);
                }
            }
            1 => data.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 0x65, 0x88, 0x84]),
            _ => {}
        }
        let t = i * 3000;
        ladder.push_blocking(AccessUnit {
            track: TrackKind::Video,
            dts: t,
            pts: t,
            keyframe: i % 2 == 0,
            data: Bytes::from(data),
        });
    }
    // Then the real stream, after the garbage's timeline.
    let offset = 120 * 3000 + 3000;
    for au in &units {
        ladder.push_blocking(AccessUnit {
            dts: au.dts + offset,
            pts: au.pts + offset,
            ..au.clone()
        });
    }
    ladder.finish();

    let mut state = sink.state.lock().unwrap();
    while state.1 == 0 && state.2.is_empty() {
        let (next, timeout) = sink
            .done
            .wait_timeout(state, Duration::from_secs(60))
            .unwrap();
        state = next;
        assert!(!timeout.timed_out(), "the ladder did not finish");
    }
    assert!(state.2.is_empty(), "rung failed: {:?}", state.2);
    assert!(
        state.0 >= units.len() * 9 / 10,
        "{} of {} real frames came out of the rung",
        state.0,
        units.len()
    );
}
