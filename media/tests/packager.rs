//! The packager end to end inside the crate: synthetic RTMP-like access units in, fMP4 parts
//! and segments out, read back with the `mp4` crate (an independent reader) and `ffprobe`,
//! and the cutting invariants checked as properties over random streams.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;

use bytes::Bytes;
use potok_media::frame::{AccessUnit, CodecConfig, TIMEBASE, TrackKind, ms_to_ticks};
use potok_media::packager::{Continuation, Packager, PackagerConfig, PackagerEvent, Part};
use proptest::prelude::*;

mod fixtures;
use fixtures::{aac, avc};

const PART: u32 = 18_000;
const SEGMENT: u32 = 180_000;

fn config() -> PackagerConfig {
    PackagerConfig {
        part_target: PART,
        segment_target: SEGMENT,
    }
}

/// RTMP-like input: video at `fps` with a keyframe every `gop` frames, AAC at 44.1 kHz,
/// millisecond timestamps, interleaved in decode order.
fn stream(seconds: u32, fps: u32, gop: u32) -> Vec<AccessUnit> {
    let mut aus = Vec::new();
    let frames = seconds * fps;
    for i in 0..frames {
        let ms = (f64::from(i) * 1000.0 / f64::from(fps)).round() as i64;
        aus.push(AccessUnit {
            track: TrackKind::Video,
            dts: ms_to_ticks(ms),
            pts: ms_to_ticks(ms + 66),
            keyframe: i % gop == 0,
            data: Bytes::from(vec![(i % 251) as u8; 200 + (i % 7) as usize]),
        });
    }
    let audio_frames = (f64::from(seconds) * 44_100.0 / 1024.0) as u32;
    for i in 0..audio_frames {
        let ms = (f64::from(i) * 1024.0 * 1000.0 / 44_100.0).round() as i64;
        aus.push(AccessUnit {
            track: TrackKind::Audio,
            dts: ms_to_ticks(ms),
            pts: ms_to_ticks(ms),
            keyframe: true,
            data: Bytes::from(vec![0xa5; 20]),
        });
    }
    aus.sort_by_key(|a| (a.dts, a.track == TrackKind::Video));
    aus
}

struct Output {
    parts: Vec<Part>,
    segments: Vec<(u64, u64, bool)>,
    init: Bytes,
}

fn package(aus: Vec<AccessUnit>, tracks: &[CodecConfig]) -> Output {
    let mut p = Packager::new(config(), tracks, Continuation::default());
    let mut events = Vec::new();
    for au in aus {
        events.extend(p.push(au));
    }
    events.extend(p.finish());
    let mut out = Output {
        parts: Vec::new(),
        segments: Vec::new(),
        init: p.init_segment(),
    };
    for e in events {
        match e {
            PackagerEvent::Part(part) => out.parts.push(part),
            PackagerEvent::SegmentEnd {
                msn,
                duration,
                independent,
            } => out.segments.push((msn, duration, independent)),
        }
    }
    out
}

fn file(out: &Output) -> Vec<u8> {
    let mut f = out.init.to_vec();
    for p in &out.parts {
        f.extend_from_slice(&p.data);
    }
    f
}

#[test]
fn segments_and_parts_follow_the_targets_exactly_at_30_fps() {
    let out = package(stream(10, 30, 60), &[avc(), aac()]);
    // -g equal to the segment length: every cut is exact.
    assert_eq!(out.segments.len(), 5);
    for (i, (msn, duration, independent)) in out.segments.iter().enumerate() {
        assert_eq!(*msn, i as u64);
        assert!(independent);
        if i < 4 {
            assert_eq!(*duration, u64::from(SEGMENT));
        }
    }
    // The stream's last frame has no successor: its duration is taken from the one before.
    assert_eq!(out.segments[4].1, u64::from(SEGMENT) + 90);
    // 6 frames of 33.3 ms = 200 ms per part, 10 parts per segment; the estimated last
    // frame makes the stream's final part 1 ms too long for one part, so it ends in two.
    assert_eq!(out.parts.len(), 51);
    for p in &out.parts[..49] {
        assert_eq!(p.duration, PART, "part {}.{}", p.msn, p.index);
        assert_eq!(p.independent, p.index == 0);
        assert_eq!(
            p.start,
            p.msn * u64::from(SEGMENT) + u64::from(p.index * PART)
        );
    }
}

#[test]
fn an_independent_reader_sees_both_tracks_with_exact_timing() {
    let out = package(stream(6, 30, 60), &[avc(), aac()]);
    let bytes = file(&out);
    let size = bytes.len() as u64;
    let mut r = mp4::Mp4Reader::read_header(Cursor::new(bytes), size).unwrap();
    assert!(r.is_fragmented());
    assert_eq!(r.tracks().len(), 2);
    let video = r.tracks().get(&1).unwrap();
    assert_eq!(video.width(), 1280);
    assert_eq!(video.height(), 720);
    assert_eq!(video.timescale(), TIMEBASE);
    assert_eq!(r.tracks().get(&2).unwrap().timescale(), 44_100);
    assert_eq!(r.sample_count(1).unwrap(), 180);

    // tfdt of every fragment equals the sum of durations before it, per track.
    let mut next = [0u64; 3];
    for (i, moof) in r.moofs.iter().enumerate() {
        assert_eq!(moof.mfhd.sequence_number, i as u32);
        for traf in &moof.trafs {
            let id = traf.tfhd.track_id as usize;
            let tfdt = traf.tfdt.as_ref().unwrap().base_media_decode_time;
            if next[id] != 0 {
                assert_eq!(tfdt, next[id], "track {id} fragment {i}");
            }
            let trun = traf.trun.as_ref().unwrap();
            next[id] = tfdt
                + trun
                    .sample_durations
                    .iter()
                    .map(|d| u64::from(*d))
                    .sum::<u64>();
            if id == 2 {
                assert!(trun.sample_durations.iter().all(|d| *d == 1024));
            }
        }
    }
    // 6 s, the last frame's duration taken from the one before it (34 ms, not 33).
    assert_eq!(next[1], 6 * u64::from(TIMEBASE) + 90);
    let first = r.read_sample(1, 1).unwrap().unwrap();
    assert!(first.is_sync);
    // The mp4 crate reads composition offsets from `ctts` only; check the `trun` itself.
    assert_eq!(
        r.moofs[0].trafs[0].trun.as_ref().unwrap().sample_cts[0],
        66 * 90
    );
    assert_eq!(first.bytes.len(), 200);
    let second = r.read_sample(1, 2).unwrap().unwrap();
    assert!(!second.is_sync);
    assert_eq!(second.bytes.len(), 201);
}

#[test]
fn ffprobe_reads_the_output() {
    let out = package(stream(4, 30, 60), &[avc(), aac()]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.mp4");
    std::fs::write(&path, file(&out)).unwrap();
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height,sample_rate,channels",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe not found: run scripts/setup");
    let text = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert!(text.contains("h264,1280,720"), "{text}");
    assert!(text.contains("aac,44100,2"), "{text}");
}

#[test]
fn a_long_gop_is_cut_before_the_target_duration_is_exceeded() {
    // Keyframes every 5 s with a 2 s segment target: the packager must not list 5 s segments.
    let out = package(stream(12, 30, 150), &[avc()]);
    for (msn, duration, _) in &out.segments {
        assert!(
            *duration <= config().max_segment(),
            "segment {msn}: {duration}"
        );
    }
    assert!(out.segments[0].2, "the stream starts at a keyframe");
    assert!(
        out.segments.iter().any(|s| !s.2),
        "forced cuts start without a keyframe"
    );
}

#[test]
fn audio_only_streams_are_packaged() {
    let aus: Vec<_> = stream(5, 30, 60)
        .into_iter()
        .filter(|a| a.track == TrackKind::Audio)
        .collect();
    let out = package(aus, &[aac()]);
    assert!(out.segments.len() >= 2);
    assert!(
        out.parts
            .iter()
            .all(|p| p.duration <= PART && p.independent)
    );
}

#[test]
fn a_continuation_keeps_numbers_and_time_going() {
    let mut first = Packager::new(config(), &[avc()], Continuation::default());
    for au in stream(3, 30, 60)
        .into_iter()
        .filter(|a| a.track == TrackKind::Video)
    {
        first.push(au);
    }
    first.finish();
    let cont = first.continuation();
    assert_eq!(cont.msn, 2);
    assert_eq!(cont.time, 3 * u64::from(TIMEBASE) + 90);
    // The new publisher's clock starts at 5000 ms: the output timeline does not care.
    let mut second = Packager::new(config(), &[avc()], cont);
    let mut events = Vec::new();
    for mut au in stream(3, 30, 60)
        .into_iter()
        .filter(|a| a.track == TrackKind::Video)
    {
        au.dts += ms_to_ticks(5000);
        au.pts += ms_to_ticks(5000);
        events.extend(second.push(au));
    }
    let PackagerEvent::Part(p) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!((p.msn, p.index, p.start), (2, 0, cont.time));
}

#[derive(Debug, Clone)]
struct Frame {
    duration_ms: i64,
    keyframe: bool,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the frame timing and keyframe pattern: parts never exceed the part target,
    /// EXTINF never rounds above the target duration, segments start at a keyframe whenever
    /// one arrived in time, and the output timeline is exactly the input timeline.
    #[test]
    fn cutting_invariants(frames in prop::collection::vec((10i64..70, prop::bool::weighted(0.04)), 30..400)) {
        let frames: Vec<Frame> = frames.into_iter().map(|(d, k)| Frame { duration_ms: d, keyframe: k }).collect();
        let mut aus = Vec::new();
        let mut t = 1234i64;
        for (i, f) in frames.iter().enumerate() {
            aus.push(AccessUnit {
                track: TrackKind::Video,
                dts: ms_to_ticks(t),
                pts: ms_to_ticks(t),
                keyframe: i == 0 || f.keyframe,
                data: Bytes::from_static(b"frame"),
            });
            t += f.duration_ms;
        }
        let total_input: u64 = frames[..frames.len() - 1].iter().map(|f| ms_to_ticks(f.duration_ms) as u64).sum();
        let out = package(aus.clone(), &[avc()]);
        let cfg = config();

        let mut expected_start = 0;
        for p in &out.parts {
            prop_assert!(p.duration <= PART, "part {}.{} lasts {}", p.msn, p.index, p.duration);
            prop_assert_eq!(p.start, expected_start);
            expected_start += u64::from(p.duration);
        }
        // Everything but the last frame's (estimated) duration is exactly the input's.
        let last_frame = ms_to_ticks(frames[frames.len() - 2].duration_ms) as u64;
        prop_assert_eq!(expected_start, total_input + last_frame);

        let keyframe_times: Vec<u64> = aus.iter().filter(|a| a.keyframe).map(|a| (a.dts - aus[0].dts) as u64).collect();
        let mut seg_start = 0u64;
        for (i, (msn, duration, independent)) in out.segments.iter().enumerate() {
            prop_assert_eq!(*msn, i as u64);
            prop_assert!(*duration <= cfg.max_segment());
            let seg_end = seg_start + duration;
            prop_assert_eq!(*independent, keyframe_times.contains(&seg_start));
            if i + 1 < out.segments.len() {
                // No keyframe at or after the target went unused inside the segment.
                let missed = keyframe_times.iter().any(|k| *k >= seg_start + u64::from(SEGMENT) && *k < seg_end);
                prop_assert!(!missed, "segment {} ignored a keyframe", msn);
            }
            seg_start = seg_end;
        }
        let parts_total: u64 = out.parts.iter().map(|p| u64::from(p.duration)).sum();
        prop_assert_eq!(parts_total, seg_start);
    }
}
