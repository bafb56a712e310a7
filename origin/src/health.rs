//! A live stream's ingest health over a sliding window: bitrate, frame rate, keyframe
//! interval, frames dropped (sans-IO: every call takes `now`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use potok_media::frame::{AccessUnit, TIMEBASE, TrackKind};

/// The window rates are measured over.
const WINDOW: Duration = Duration::from_secs(5);
/// Samples kept at most (a 240 fps stream with audio over the window fits).
const MAX_SAMPLES: usize = 4096;

/// What one access unit contributed.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    bytes: u32,
    video: bool,
}

/// Rates over the last [`WINDOW`] and counts since the broadcast started.
#[derive(Debug, Default)]
pub(crate) struct IngestHealth {
    samples: VecDeque<Sample>,
    first: Option<Instant>,
    /// Presentation times of the last two keyframes.
    keyframes: [Option<i64>; 2],
    dropped: u64,
}

/// A snapshot of [`IngestHealth`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct IngestRates {
    pub(crate) bitrate_kbps: u32,
    pub(crate) fps: f64,
    pub(crate) keyframe_interval_secs: Option<f64>,
    pub(crate) dropped_frames: u64,
}

impl IngestHealth {
    /// `au` arrived at `now`; `dropped`: it was not used (video before the first keyframe).
    pub(crate) fn observe(&mut self, now: Instant, au: &AccessUnit, dropped: bool) {
        let video = au.track == TrackKind::Video;
        if video && dropped {
            self.dropped += 1;
        }
        if video && au.keyframe && !dropped {
            self.keyframes = [self.keyframes[1], Some(au.pts)];
        }
        self.first.get_or_insert(now);
        self.samples.push_back(Sample {
            at: now,
            bytes: u32::try_from(au.data.len()).unwrap_or(u32::MAX),
            video,
        });
        if self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.trim(now);
    }

    fn trim(&mut self, now: Instant) {
        while self
            .samples
            .front()
            .is_some_and(|s| now.saturating_duration_since(s.at) > WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// The rates at `now`.
    pub(crate) fn rates(&self, now: Instant) -> IngestRates {
        let recent = self
            .samples
            .iter()
            .filter(|s| now.saturating_duration_since(s.at) <= WINDOW);
        let (bytes, frames) = recent.fold((0u64, 0u64), |(b, f), s| {
            (b + u64::from(s.bytes), f + u64::from(s.video))
        });
        // Over the whole window once it is full; at the start, over what was seen (at least
        // a second, so the first frames do not read as a huge rate).
        let span = self
            .first
            .map_or(WINDOW, |f| now.saturating_duration_since(f).min(WINDOW))
            .max(Duration::from_secs(1))
            .as_secs_f64();
        let interval = match self.keyframes {
            [Some(a), Some(b)] if b > a => Some((b - a) as f64 / f64::from(TIMEBASE)),
            _ => None,
        };
        IngestRates {
            bitrate_kbps: u32::try_from((bytes as f64 * 8.0 / span / 1000.0).round() as u64)
                .unwrap_or(u32::MAX),
            fps: (frames as f64 / span * 10.0).round() / 10.0,
            keyframe_interval_secs: interval.map(|s| (s * 100.0).round() / 100.0),
            dropped_frames: self.dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn au(track: TrackKind, pts_ms: i64, keyframe: bool, len: usize) -> AccessUnit {
        let t = pts_ms * i64::from(TIMEBASE) / 1000;
        AccessUnit {
            track,
            dts: t,
            pts: t,
            keyframe,
            data: Bytes::from(vec![0; len]),
        }
    }

    #[test]
    fn rates_over_the_window_keyframes_and_drops() {
        let start = Instant::now();
        let mut h = IngestHealth::default();
        // 30 fps video of 1000 bytes, keyframe every 2 s, for 10 s; the first 3 frames
        // came before a keyframe (dropped). Audio 50 frames/s of 200 bytes.
        for i in 0..300i64 {
            let at = start + Duration::from_millis((i * 1000 / 30) as u64);
            let key = i >= 3 && (i - 3) % 60 == 0;
            h.observe(at, &au(TrackKind::Video, i * 1000 / 30, key, 1000), i < 3);
        }
        for i in 0..500i64 {
            let at = start + Duration::from_millis((i * 20) as u64);
            h.observe(at, &au(TrackKind::Audio, i * 20, true, 200), false);
        }
        let now = start + Duration::from_millis(9990);
        let r = h.rates(now);
        assert!((29.5..=30.5).contains(&r.fps), "{r:?}");
        // (30 × 1000 + 50 × 200) bytes/s = 320 kbit/s.
        assert!((310..=330).contains(&r.bitrate_kbps), "{r:?}");
        assert_eq!(r.keyframe_interval_secs, Some(2.0));
        assert_eq!(r.dropped_frames, 3);
        // Nothing for 6 s: the window is empty, the counts stay.
        let later = h.rates(now + Duration::from_secs(6));
        assert_eq!(
            (later.fps, later.bitrate_kbps, later.dropped_frames),
            (0.0, 0, 3)
        );
        // At the start, the first frames are not read as a huge rate.
        let mut fresh = IngestHealth::default();
        fresh.observe(start, &au(TrackKind::Video, 0, true, 1000), false);
        assert_eq!(fresh.rates(start).fps, 1.0);
        assert_eq!(fresh.rates(start).keyframe_interval_secs, None);
    }

    #[test]
    fn samples_are_bounded() {
        let start = Instant::now();
        let mut h = IngestHealth::default();
        for i in 0..(MAX_SAMPLES as i64 * 3) {
            h.observe(start, &au(TrackKind::Video, i, false, 10), false);
        }
        assert!(h.samples.len() <= MAX_SAMPLES);
    }
}
