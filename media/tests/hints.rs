//! The preload-hint rule over many segment boundaries, sans-IO: synthetic frame sequences go
//! into the packager, its events into the live window, and after every access unit the
//! playlist's `EXT-X-PRELOAD-HINT` is read. Every hinted URI must be held by the window when
//! it is hinted (never 404) and must later be produced as a part of that segment: strict
//! players (shaka) treat a hinted part that never comes as a failed segment.
//!
//! Runs 10, 25, 30 and 60 fps, exact 90 kHz and millisecond (RTMP) timestamps, B-frames,
//! variable frame rate with drops, and keyframe intervals on and off the segment target,
//! a few hundred boundaries each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use bytes::Bytes;
use potok_media::frame::{AccessUnit, TIMEBASE, TrackKind};
use potok_media::hls::live::{LiveConfig, LiveRendition, PartLookup};
use potok_media::packager::{Continuation, Packager, PackagerConfig, PackagerEvent};

mod fixtures;
use fixtures::{aac, avc};

/// The origin's defaults: 200 ms parts, 2 s segments.
fn config() -> PackagerConfig {
    PackagerConfig {
        part_target: 18_000,
        segment_target: 180_000,
    }
}

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy, Debug)]
struct Input {
    fps: f64,
    /// Keyframe interval in seconds (a keyframe at the first frame at or after each
    /// multiple).
    gop_secs: f64,
    /// I P B B decode order with composition offsets.
    bframes: bool,
    /// Frame intervals vary ±40 % and 1 % of frames are dropped (three-frame holes).
    vfr: bool,
    /// Timestamps in whole milliseconds, as RTMP carries them.
    millis: bool,
    seconds: f64,
    seed: u64,
    /// Each video access unit is announced (`Packager::next_video`) as soon as the one
    /// before it is pushed, as a ladder rung does.
    announce: bool,
}

/// Video and 44.1 kHz AAC access units in decode order.
fn frames(input: Input) -> Vec<AccessUnit> {
    let mut rng = Rng(input.seed | 1);
    let interval = 1.0 / input.fps;
    let mut aus = Vec::new();
    let mut t = 0.0f64;
    let mut next_key = 0.0f64;
    let mut i = 0u64;
    let ticks = |secs: f64| -> i64 {
        if input.millis {
            (secs * 1000.0).round() as i64 * 90
        } else {
            (secs * f64::from(TIMEBASE)).round() as i64
        }
    };
    while t < input.seconds {
        let keyframe = t + 1e-9 >= next_key;
        if keyframe {
            while next_key <= t + 1e-9 {
                next_key += input.gop_secs;
            }
        }
        let dts = ticks(t);
        // With B-frames (I P B B ...), pictures are shown up to two intervals later.
        let cto = if input.bframes {
            match i % 3 {
                0 => 2,
                1 => 3,
                _ => 0,
            }
        } else {
            0
        };
        aus.push(AccessUnit {
            track: TrackKind::Video,
            dts,
            pts: dts + ticks(interval * f64::from(cto)).max(0),
            keyframe,
            data: Bytes::from(vec![(i % 251) as u8; 100 + (i % 13) as usize]),
        });
        i += 1;
        let mut step = interval;
        if input.vfr {
            step *= 0.6 + 0.8 * rng.unit();
            if rng.unit() < 0.01 {
                step += 3.0 * interval;
            }
        }
        t += step;
    }
    let audio_frames = (input.seconds * 44_100.0 / 1024.0) as u32;
    for k in 0..audio_frames {
        let dts = ticks(f64::from(k) * 1024.0 / 44_100.0);
        aus.push(AccessUnit {
            track: TrackKind::Audio,
            dts,
            pts: dts,
            keyframe: true,
            data: Bytes::from_static(&[0xa5; 12]),
        });
    }
    aus.sort_by_key(|a| (a.dts, a.track == TrackKind::Video));
    aus
}

#[derive(Debug, Default)]
struct Outcome {
    boundaries: usize,
    hints: usize,
}

/// Packages `input` into a live window, checking the hint rule after every access unit.
fn check(input: Input) -> Outcome {
    let pkg = config();
    let mut packager = Packager::new(pkg, &[avc(), aac()], Continuation::default());
    let mut window = LiveRendition::new(LiveConfig::new(&pkg, 10, 1 << 30), 0);
    window.set_init(packager.init_segment());
    let mut hinted: BTreeSet<(u64, u32)> = BTreeSet::new();
    let mut produced: BTreeSet<(u64, u32)> = BTreeSet::new();
    let mut out = Outcome::default();
    let apply = |events: Vec<PackagerEvent>,
                 window: &mut LiveRendition,
                 produced: &mut BTreeSet<(u64, u32)>,
                 out: &mut Outcome| {
        for e in events {
            match e {
                PackagerEvent::Part(p) => {
                    assert!(
                        produced.insert((p.msn, p.index)),
                        "{input:?}: part {}.{} produced twice",
                        p.msn,
                        p.index
                    );
                    window.push_part(&p, 0);
                }
                PackagerEvent::SegmentEnd { msn, duration, .. } => {
                    window.end_segment(msn, duration);
                    out.boundaries += 1;
                }
            }
        }
    };
    let aus = frames(input);
    // The hint is a function of the window, so it is read whenever the window changed.
    for (i, au) in aus.iter().enumerate() {
        let video = au.track == TrackKind::Video;
        let events = packager.push(au.clone());
        if !events.is_empty() {
            apply(events, &mut window, &mut produced, &mut out);
            check_hint(input, &window, &mut hinted, &mut out);
        }
        if input.announce
            && video
            && let Some(next) = aus[i + 1..].iter().find(|a| a.track == TrackKind::Video)
        {
            let events = packager.next_video(next.dts, next.keyframe);
            if !events.is_empty() {
                apply(events, &mut window, &mut produced, &mut out);
                check_hint(input, &window, &mut hinted, &mut out);
            }
        }
    }
    let events = packager.finish();
    apply(events, &mut window, &mut produced, &mut out);
    let never: Vec<_> = hinted.difference(&produced).collect();
    assert!(
        never.is_empty(),
        "{input:?}: hinted but never produced: {never:?} (of {} hints, {} boundaries)",
        out.hints,
        out.boundaries
    );
    out
}

/// Reads the preload hint; the origin holds a request for it, so it must be pending.
fn check_hint(
    input: Input,
    window: &LiveRendition,
    hinted: &mut BTreeSet<(u64, u32)>,
    out: &mut Outcome,
) {
    let Some(hint) = window.playlist(false, vec![]).preload_hint else {
        return;
    };
    let (msn, part) = parse_part_uri(&hint);
    assert_eq!(
        window.part(msn, u64::from(part)),
        PartLookup::Pending,
        "{input:?}: hinted {hint} is not pending"
    );
    if hinted.insert((msn, part)) {
        out.hints += 1;
    }
}

fn parse_part_uri(uri: &str) -> (u64, u32) {
    let stem = uri.strip_suffix(".m4s").unwrap();
    let (msn, part) = stem.split_once('.').unwrap();
    (msn.parse().unwrap(), part.parse().unwrap())
}

fn base(fps: f64) -> Input {
    Input {
        fps,
        gop_secs: 2.0,
        bframes: false,
        vfr: false,
        millis: false,
        seconds: 600.0,
        seed: 1,
        announce: false,
    }
}

/// Each variant runs a few hundred boundaries at each frame rate.
fn run_all(variant: impl Fn(Input) -> Input) {
    for fps in [10.0, 25.0, 30.0, 60.0] {
        let input = variant(base(fps));
        let o = check(input);
        assert!(o.boundaries >= 250, "{input:?}: only {o:?}");
        assert!(o.hints > o.boundaries * 5, "{input:?}: {o:?}");
    }
}

#[test]
fn every_hinted_part_exists_with_keyframes_on_the_segment_target() {
    run_all(|i| i);
}

#[test]
fn every_hinted_part_exists_with_millisecond_timestamps() {
    run_all(|i| Input { millis: true, ..i });
}

#[test]
fn every_hinted_part_exists_with_b_frames() {
    run_all(|i| Input {
        bframes: true,
        millis: true,
        ..i
    });
}

#[test]
fn every_hinted_part_exists_with_variable_frame_rate() {
    for seed in [7, 99] {
        run_all(|i| Input {
            vfr: true,
            millis: true,
            seed,
            ..i
        });
    }
}

#[test]
fn every_hinted_part_exists_with_one_second_and_odd_keyframe_intervals() {
    for gop_secs in [1.0, 1.3, 2.1] {
        run_all(|i| Input {
            gop_secs,
            bframes: true,
            ..i
        });
    }
}

#[test]
fn every_hinted_part_exists_without_keyframes_in_time() {
    // Keyframes every 5 s: segments are cut without one before EXTINF would round above
    // the target duration.
    run_all(|i| Input {
        gop_secs: 5.0,
        vfr: true,
        seconds: 700.0,
        ..i
    });
}

#[test]
fn every_hinted_part_exists_when_each_picture_is_announced_before_it_arrives() {
    run_all(|i| Input {
        announce: true,
        millis: true,
        ..i
    });
    run_all(|i| Input {
        announce: true,
        vfr: true,
        seed: 5,
        ..i
    });
}
