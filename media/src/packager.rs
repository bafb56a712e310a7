//! Access units → LL-HLS parts and segments of one rendition, as CMAF fragments.
//!
//! Cutting rules:
//! - a segment ends before the first video keyframe at or after the segment target; if no
//!   keyframe comes, it is cut before it would round above the target duration (and the
//!   next segment starts without a keyframe — a misconfigured encoder, logged by the caller);
//! - a part ends before it would exceed the part target, so every part ≤ PART-TARGET;
//! - a part that begins with a keyframe is independent.
//!
//! A video sample's duration is only known when the next one arrives, so the last sample
//! waits one frame interval; durations are then exact, and `tfdt` always equals the sum of
//! the durations before it (no drift over hours). Audio is placed on a sample-count timeline
//! (1024 samples per AAC frame) and resynchronised only on a real gap.
//!
//! Audio and video are muxed into the same fragments (one `traf` each), see ARCHITECTURE.md.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::aac::SAMPLES_PER_FRAME;
use crate::fmp4::{Sample, TrackRun, TrackSpec, init_segment, media_fragment};
use crate::frame::{AccessUnit, CodecConfig, TIMEBASE, TrackKind};

/// Segment and part targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackagerConfig {
    /// Longest part, in 90 kHz ticks.
    pub part_target: u32,
    /// Segments end at the first keyframe at or after this many ticks.
    pub segment_target: u32,
}

impl PackagerConfig {
    /// EXT-X-TARGETDURATION in seconds: the segment target rounded up.
    pub fn target_duration(&self) -> u32 {
        self.segment_target.div_ceil(TIMEBASE).max(1)
    }

    /// Longest segment the packager produces: its EXTINF rounds to at most the target
    /// duration.
    pub fn max_segment(&self) -> u64 {
        u64::from(self.target_duration()) * u64::from(TIMEBASE) + u64::from(TIMEBASE) / 2 - 1
    }
}

/// Where a packager starts: numbering and timelines continue across a publisher's reconnect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Continuation {
    /// Media sequence number of the first segment.
    pub msn: u64,
    /// Sequence number of the first fragment (`mfhd`).
    pub fragment: u32,
    /// Decode time (90 kHz) at which the first segment starts.
    pub time: u64,
}

/// What the packager produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackagerEvent {
    /// A complete part.
    Part(Part),
    /// Segment `msn` is complete; its parts were all emitted before this event.
    SegmentEnd {
        /// Media sequence number.
        msn: u64,
        /// Duration in 90 kHz ticks.
        duration: u64,
        /// Whether the segment starts with a keyframe.
        independent: bool,
    },
}

/// One LL-HLS part: a CMAF fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Its segment's media sequence number.
    pub msn: u64,
    /// Its index within the segment (0-based).
    pub index: u32,
    /// Duration in 90 kHz ticks (of the video track; of audio for audio-only streams).
    pub duration: u32,
    /// Begins with a keyframe.
    pub independent: bool,
    /// Decode time (90 kHz) of its first sample.
    pub start: u64,
    /// `moof` + `mdat`.
    pub data: Bytes,
}

struct Track {
    id: u32,
    timescale: u32,
    samples: Vec<Sample>,
    data: Vec<Bytes>,
    base: u64,
}

impl Track {
    fn take_run(&mut self) -> Option<TrackRun> {
        if self.samples.is_empty() {
            return None;
        }
        Some(TrackRun {
            track_id: self.id,
            base_decode_time: self.base,
            samples: std::mem::take(&mut self.samples),
            data: std::mem::take(&mut self.data),
        })
    }
}

/// Audio frame placed on the sample timeline.
struct QueuedAudio {
    time: u64,
    ticks: u64,
    data: Bytes,
}

/// Packages one rendition. Feed [`Packager::push`] access units in decode order; call
/// [`Packager::finish`] when the publisher stops.
pub struct Packager {
    cfg: PackagerConfig,
    specs: Vec<TrackSpec>,
    video: Option<Track>,
    audio: Option<Track>,
    origin: Option<i64>,
    start_time: u64,
    pending: Option<(u64, AccessUnit)>,
    /// Video decode times announced before their access units ([`Packager::next_video`]).
    upcoming: VecDeque<(i64, bool)>,
    /// End of the last video sample when it was placed before its successor arrived.
    placed_until: Option<u64>,
    last_video_duration: u64,
    audio_next: Option<u64>,
    audio_queue: VecDeque<QueuedAudio>,
    msn: u64,
    part_index: u32,
    fragment: u32,
    part_start: u64,
    part_duration: u64,
    part_independent: bool,
    segment_start: u64,
    segment_independent: bool,
    segment_has_parts: bool,
}

/// Audio waiting for video longer than this (ticks) is packaged anyway.
const MAX_AUDIO_QUEUE: usize = 512;

/// Announced video decode times kept (an encoder holding more frames than this back only
/// loses the early placement).
const MAX_UPCOMING: usize = 64;

impl Packager {
    /// A packager for `tracks` (at most one video and one audio track).
    pub fn new(cfg: PackagerConfig, tracks: &[CodecConfig], start: Continuation) -> Self {
        let mut specs = Vec::new();
        let mut video = None;
        let mut audio = None;
        for codec in tracks {
            let id = specs.len() as u32 + 1;
            let track = Track {
                id,
                timescale: codec.timescale(),
                samples: Vec::new(),
                data: Vec::new(),
                base: 0,
            };
            match codec.kind() {
                TrackKind::Video if video.is_none() => video = Some(track),
                TrackKind::Audio if audio.is_none() => audio = Some(track),
                _ => continue,
            }
            specs.push(TrackSpec {
                id,
                codec: codec.clone(),
            });
        }
        Packager {
            cfg,
            specs,
            video,
            audio,
            origin: None,
            start_time: start.time,
            pending: None,
            upcoming: VecDeque::new(),
            placed_until: None,
            last_video_duration: u64::from(TIMEBASE / 30),
            audio_next: None,
            audio_queue: VecDeque::new(),
            msn: start.msn,
            part_index: 0,
            fragment: start.fragment,
            part_start: start.time,
            part_duration: 0,
            part_independent: true,
            segment_start: start.time,
            segment_independent: true,
            segment_has_parts: false,
        }
    }

    /// The init segment for this packager's tracks.
    pub fn init_segment(&self) -> Bytes {
        init_segment(&self.specs)
    }

    /// The tracks' codec configurations, in track order.
    pub fn codecs(&self) -> impl Iterator<Item = &CodecConfig> {
        self.specs.iter().map(|s| &s.codec)
    }

    /// Where a packager taking over after [`Packager::finish`] should start.
    pub fn continuation(&self) -> Continuation {
        Continuation {
            msn: self.msn,
            fragment: self.fragment,
            time: self.segment_start,
        }
    }

    /// Whether packaging has begun (a video stream begins at its first keyframe).
    pub fn started(&self) -> bool {
        self.origin.is_some()
    }

    /// Feeds one access unit; returns the parts and segment ends it completes.
    pub fn push(&mut self, au: AccessUnit) -> Vec<PackagerEvent> {
        let mut out = Vec::new();
        match au.track {
            TrackKind::Video if self.video.is_some() => self.push_video(au, &mut out),
            TrackKind::Audio if self.audio.is_some() => self.push_audio(au, &mut out),
            _ => {}
        }
        out
    }

    /// Announces that a video access unit with decode time `dts` (a keyframe or not) will
    /// follow the ones pushed so far and those announced before. The held sample's
    /// duration is then known without waiting for that access unit, so it is placed (and
    /// a full part closed) now: a ladder rung announces each picture when it starts
    /// encoding it, so its parts come out as soon as the source's do, not one encode
    /// later. An access unit that arrives earlier than announced starts where the sample
    /// before it was made to end.
    pub fn next_video(&mut self, dts: i64, keyframe: bool) -> Vec<PackagerEvent> {
        let mut out = Vec::new();
        if self.video.is_none() {
            return out;
        }
        if self.upcoming.len() >= MAX_UPCOMING {
            self.upcoming.pop_front();
        }
        self.upcoming.push_back((dts, keyframe));
        self.place_pending_early(&mut out);
        out
    }

    /// Places the held video sample if the access unit after it was announced.
    fn place_pending_early(&mut self, out: &mut Vec<PackagerEvent>) {
        let Some(prev_time) = self.pending.as_ref().map(|(t, _)| *t) else {
            return;
        };
        let next = self.upcoming.iter().find_map(|&(dts, key)| {
            let t = self.time_of(dts)?;
            (t > prev_time).then_some((t, key))
        });
        let Some((next_time, next_keyframe)) = next else {
            return;
        };
        let Some((prev_time, prev)) = self.pending.take() else {
            return;
        };
        let d = (next_time - prev_time).min(u64::from(self.cfg.part_target));
        self.place_video(prev_time, d, prev, out);
        self.placed_until = Some(prev_time + d);
        self.decide_boundary(next_time, next_keyframe, out);
    }

    /// Ends the stream: packages what is buffered and closes the last part and segment.
    pub fn finish(&mut self) -> Vec<PackagerEvent> {
        let mut out = Vec::new();
        if let Some((time, au)) = self.pending.take() {
            let d = self.last_video_duration;
            self.place_video(time, d, au, &mut out);
        }
        if self.video.is_none() {
            // Audio-only: everything queued belongs to the last part.
            self.drain_audio(u64::MAX);
        }
        if self.part_duration > 0 || self.has_samples() {
            let end = self.part_start + self.part_duration;
            self.close_part(end, &mut out);
        }
        self.close_segment(&mut out);
        out
    }

    fn has_samples(&self) -> bool {
        self.video.as_ref().is_some_and(|t| !t.samples.is_empty())
            || self.audio.as_ref().is_some_and(|t| !t.samples.is_empty())
    }

    /// Maps a source timestamp to the output timeline, or `None` before the start.
    fn time_of(&self, dts: i64) -> Option<u64> {
        let origin = self.origin?;
        let rel = dts.checked_sub(origin)?;
        u64::try_from(rel).ok().map(|r| r + self.start_time)
    }

    fn push_video(&mut self, au: AccessUnit, out: &mut Vec<PackagerEvent>) {
        if self.origin.is_none() {
            if !au.keyframe {
                return; // nothing decodable before the first keyframe
            }
            self.origin = Some(au.dts);
        }
        let Some(mut time) = self.time_of(au.dts) else {
            return; // decodes before the first keyframe
        };
        while self.upcoming.front().is_some_and(|&(d, _)| d <= au.dts) {
            self.upcoming.pop_front();
        }
        if let Some(end) = self.placed_until.take() {
            // The sample before this one was placed when this one was announced.
            time = time.max(end);
        }
        if let Some((prev_time, prev)) = self.pending.take() {
            if time <= prev_time {
                time = prev_time + 1; // non-increasing DTS from the source: keep order
            }
            // A stall longer than a part would make one sample outlast the part target:
            // the sample keeps at most that duration and the timeline keeps a gap.
            let d = (time - prev_time).min(u64::from(self.cfg.part_target));
            self.place_video(prev_time, d, prev, out);
            self.decide_boundary(time, au.keyframe, out);
        }
        self.pending = Some((time, au));
        self.place_pending_early(out);
    }

    /// Whether a video sample at `time` (lasting at most `duration`) starts a new segment.
    fn cuts_segment(&self, time: u64, keyframe: bool, duration: u64) -> bool {
        let seg_dur = time.saturating_sub(self.segment_start);
        let keyframe_cut = keyframe && seg_dur >= u64::from(self.cfg.segment_target);
        // Without a keyframe in time, cut before EXTINF would round above the target.
        let forced_cut = time + duration - self.segment_start > self.cfg.max_segment();
        keyframe_cut || forced_cut
    }

    /// At a part boundary (the last part was closed early and nothing is buffered), the
    /// next part's name is published at once as the preload hint: `msn.N` if the held
    /// sample continues the segment, `{msn+1}.0` if it starts the next one. Decide now,
    /// from what is known of the held sample (its time and whether it is a keyframe; its
    /// duration is at most a part target), and end the segment now if it ends here, so
    /// that a hinted part always comes into existence. Placing the held sample later then
    /// finds the same answer (an empty part after a decided boundary is never cut again).
    fn decide_boundary(
        &mut self,
        next_time: u64,
        next_keyframe: bool,
        out: &mut Vec<PackagerEvent>,
    ) {
        let part_empty = self.video.as_ref().is_none_or(|t| t.samples.is_empty());
        if part_empty
            && self.segment_has_parts
            && self.cuts_segment(next_time, next_keyframe, u64::from(self.cfg.part_target))
        {
            self.close_segment(out);
        }
    }

    /// Places a video sample whose duration is now known: cuts before it where the rules
    /// say so, appends it, and closes the part at once when the next sample cannot fit.
    fn place_video(
        &mut self,
        time: u64,
        duration: u64,
        au: AccessUnit,
        out: &mut Vec<PackagerEvent>,
    ) {
        let part_empty = self.video.as_ref().is_none_or(|t| t.samples.is_empty());
        if self.segment_has_parts || !part_empty {
            if self.cuts_segment(time, au.keyframe, duration) {
                self.close_part(time, out);
                self.close_segment(out);
            } else if !part_empty
                && time + duration - self.part_start > u64::from(self.cfg.part_target)
            {
                self.close_part(time, out);
            }
        }
        if self.video.as_ref().is_none_or(|t| t.samples.is_empty()) {
            self.part_start = time;
            self.part_independent = au.keyframe;
            if !self.segment_has_parts {
                self.segment_start = time;
                self.segment_independent = au.keyframe;
            }
        }
        self.last_video_duration = duration;
        self.append_video(time, duration, au);
        // A part with less room left than half a frame is full: close it now rather than
        // one frame later, when the next sample's duration would tell.
        let end = self.part_start + self.part_duration;
        if u64::from(self.cfg.part_target) - self.part_duration.min(u64::from(self.cfg.part_target))
            < duration / 2
        {
            self.close_part(end, out);
        }
    }

    fn append_video(&mut self, time: u64, duration: u64, au: AccessUnit) {
        let Some(track) = self.video.as_mut() else {
            return;
        };
        if track.samples.is_empty() {
            track.base = time;
        }
        let cto = (au.pts - au.dts).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        track.samples.push(Sample {
            duration: duration as u32,
            size: au.data.len() as u32,
            keyframe: au.keyframe,
            composition_offset: cto,
        });
        track.data.push(au.data);
        self.part_duration = time + duration - self.part_start;
    }

    fn push_audio(&mut self, au: AccessUnit, out: &mut Vec<PackagerEvent>) {
        let Some(rate) = self.audio.as_ref().map(|t| t.timescale) else {
            return;
        };
        if self.video.is_none() && self.origin.is_none() {
            self.origin = Some(au.dts);
        }
        let Some(ticks) = self.time_of(au.dts) else {
            return; // before the stream's start
        };
        let exact = (u128::from(ticks) * u128::from(rate) / u128::from(TIMEBASE)) as u64;
        let frame = u64::from(SAMPLES_PER_FRAME);
        let time = match self.audio_next {
            Some(next) if exact + frame / 2 >= next && exact <= next + frame / 2 => next,
            Some(next) if exact < next => next,
            _ => exact,
        };
        self.audio_next = Some(time + frame);
        let ticks = (u128::from(time) * u128::from(TIMEBASE) / u128::from(rate)) as u64;
        self.audio_queue.push_back(QueuedAudio {
            time,
            ticks,
            data: au.data,
        });

        if self.video.is_none() {
            self.audio_only_cuts(out);
        } else if self.audio_queue.len() > MAX_AUDIO_QUEUE {
            // Video stopped arriving: do not hold audio without bound.
            self.drain_audio(u64::MAX);
        }
    }

    fn audio_only_cuts(&mut self, out: &mut Vec<PackagerEvent>) {
        let rate = self.audio.as_ref().map_or(48_000, |t| t.timescale);
        let frame_ticks = u64::from(SAMPLES_PER_FRAME) * u64::from(TIMEBASE) / u64::from(rate);
        while let Some(front) = self.audio_queue.pop_front() {
            let Some(track) = self.audio.as_mut() else {
                return;
            };
            if track.samples.is_empty() {
                track.base = front.time;
                self.part_start = front.ticks;
                self.part_independent = true;
                if !self.segment_has_parts {
                    self.segment_start = front.ticks;
                    self.segment_independent = true;
                }
            }
            track.samples.push(Sample {
                duration: SAMPLES_PER_FRAME,
                size: front.data.len() as u32,
                keyframe: true,
                composition_offset: 0,
            });
            track.data.push(front.data);
            self.part_duration = front.ticks + frame_ticks - self.part_start;
            let end = self.part_start + self.part_duration;
            if self.part_duration + frame_ticks > u64::from(self.cfg.part_target) {
                self.close_part(end, out);
                if end - self.segment_start >= u64::from(self.cfg.segment_target) {
                    self.close_segment(out);
                }
            }
        }
    }

    /// Moves queued audio that starts before `end` (90 kHz) into the audio track.
    fn drain_audio(&mut self, end: u64) {
        let Some(track) = self.audio.as_mut() else {
            return;
        };
        while self.audio_queue.front().is_some_and(|a| a.ticks < end) {
            let Some(a) = self.audio_queue.pop_front() else {
                break;
            };
            if track.samples.is_empty() {
                track.base = a.time;
            }
            track.samples.push(Sample {
                duration: SAMPLES_PER_FRAME,
                size: a.data.len() as u32,
                keyframe: true,
                composition_offset: 0,
            });
            track.data.push(a.data);
        }
    }

    /// Closes the current part, which ends at `end` (90 kHz).
    fn close_part(&mut self, end: u64, out: &mut Vec<PackagerEvent>) {
        if self.video.is_some() {
            self.drain_audio(end);
        }
        let runs: Vec<TrackRun> = [self.video.as_mut(), self.audio.as_mut()]
            .into_iter()
            .flatten()
            .filter_map(Track::take_run)
            .collect();
        if runs.is_empty() {
            return;
        }
        let data = media_fragment(self.fragment, &runs);
        self.fragment = self.fragment.wrapping_add(1);
        out.push(PackagerEvent::Part(Part {
            msn: self.msn,
            index: self.part_index,
            duration: self.part_duration.min(u64::from(u32::MAX)) as u32,
            independent: self.part_independent,
            start: self.part_start,
            data,
        }));
        self.part_index += 1;
        self.segment_has_parts = true;
        self.part_start = end;
        self.part_duration = 0;
    }

    fn close_segment(&mut self, out: &mut Vec<PackagerEvent>) {
        if !self.segment_has_parts {
            return;
        }
        out.push(PackagerEvent::SegmentEnd {
            msn: self.msn,
            duration: self.part_start - self.segment_start,
            independent: self.segment_independent,
        });
        self.msn += 1;
        self.part_index = 0;
        self.segment_has_parts = false;
        self.segment_start = self.part_start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aac::AacConfig;

    fn aac() -> CodecConfig {
        CodecConfig::Aac(AacConfig::parse(Bytes::from_static(&[0x12, 0x10])).unwrap())
    }

    fn video(i: i64, interval: i64, keyframe: bool) -> AccessUnit {
        AccessUnit {
            track: TrackKind::Video,
            dts: i * interval,
            pts: i * interval,
            keyframe,
            data: Bytes::from_static(&[0; 10]),
        }
    }

    /// A packager whose only track is treated as video: the frame logic does not look at
    /// the codec configuration, so the AAC record stands in for one here.
    fn packager() -> Packager {
        let mut p = Packager::new(
            PackagerConfig {
                part_target: 18_000,
                segment_target: 180_000,
            },
            &[aac()],
            Continuation::default(),
        );
        // Move the track into the video slot.
        p.video = p.audio.take();
        p
    }

    fn names(events: &[PackagerEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                PackagerEvent::Part(p) => format!("{}.{}", p.msn, p.index),
                PackagerEvent::SegmentEnd { msn, .. } => format!("end {msn}"),
            })
            .collect()
    }

    #[test]
    fn a_segment_ends_with_its_last_part_when_the_held_frame_is_the_cutting_keyframe() {
        // 10 fps: two frames fill a 200 ms part, so part 9 closes early, as soon as frame
        // 19's successor arrives. That successor is the keyframe at 2 s: the segment ends in
        // the same step, and the next part is 1.0, never 0.10.
        let mut p = packager();
        let mut seen = Vec::new();
        for i in 0..20 {
            seen.extend(names(&p.push(video(i, 9000, i == 0))));
        }
        assert_eq!(seen.last().map(String::as_str), Some("0.8"));
        assert_eq!(names(&p.push(video(20, 9000, true))), ["0.9", "end 0"]);
        assert_eq!(names(&p.push(video(21, 9000, false))), Vec::<String>::new());
        assert_eq!(names(&p.push(video(22, 9000, false))), ["1.0"]);
    }

    #[test]
    fn a_held_frame_that_continues_the_segment_goes_into_the_next_part() {
        // The same boundary without a keyframe: the part after 0.9 is 0.10.
        let mut p = packager();
        for i in 0..20 {
            p.push(video(i, 9000, i == 0));
        }
        assert_eq!(names(&p.push(video(20, 9000, false))), ["0.9"]);
        assert_eq!(names(&p.push(video(22, 9000, false))), ["0.10"]);
    }

    #[test]
    fn an_announced_picture_completes_the_held_one_at_once_with_the_same_output() {
        // 30 fps, keyframe every 2 s: the same frames with and without announcements give
        // the same parts and segments, but announced, each part comes one frame earlier:
        // with the announcement of its last frame's successor, not with that successor.
        let frames: Vec<AccessUnit> = (0..200).map(|i| video(i, 3000, i % 60 == 0)).collect();
        let mut plain = packager();
        let mut announced = packager();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (i, au) in frames.iter().enumerate() {
            a.extend(plain.push(au.clone()));
            b.extend(announced.push(au.clone()));
            if let Some(next) = frames.get(i + 1) {
                let early = announced.next_video(next.dts, next.keyframe);
                // Frame i completes part k when frame i + 1 is announced, before it arrives.
                if (i + 1) % 6 == 0 {
                    assert!(
                        matches!(early.first(), Some(PackagerEvent::Part(_))),
                        "frame {i}: {:?}",
                        names(&early)
                    );
                }
                b.extend(early);
            }
        }
        a.extend(plain.finish());
        b.extend(announced.finish());
        assert_eq!(a, b);
    }

    #[test]
    fn an_access_unit_earlier_than_announced_keeps_the_timeline_in_order() {
        let mut p = packager();
        p.push(video(0, 3000, true));
        p.next_video(3000, false);
        // It comes 1000 ticks early: it starts where the sample before it ends.
        let mut au = video(1, 3000, false);
        au.dts -= 1000;
        p.push(au);
        let events = p.finish();
        let parts: Vec<&Part> = events
            .iter()
            .filter_map(|e| match e {
                PackagerEvent::Part(p) => Some(p),
                PackagerEvent::SegmentEnd { .. } => None,
            })
            .collect();
        assert_eq!(parts.iter().map(|p| p.duration).sum::<u32>(), 6000);
    }

    #[test]
    fn without_keyframes_a_boundary_is_cut_early_enough_for_any_next_duration() {
        // 25 fps (3600 ticks), 2.5 s at most per segment: the part boundary at 2.4 s is
        // followed by a frame that might last a whole part, so the segment ends there.
        let mut p = packager();
        let mut seen = Vec::new();
        for i in 0..=61 {
            seen.extend(names(&p.push(video(i, 3600, i == 0))));
        }
        let end = seen.iter().position(|n| n == "end 0").unwrap();
        assert_eq!(seen[end - 1], "0.11");
        match p.finish().first() {
            Some(PackagerEvent::Part(part)) => assert_eq!((part.msn, part.index), (1, 0)),
            other => panic!("{other:?}"),
        }
    }
}
