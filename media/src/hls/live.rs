//! The live window of one rendition and the LL-HLS rules that depend on it: which segments
//! and parts a playlist lists, what a blocking playlist request (`_HLS_msn`, `_HLS_part`)
//! waits for or is refused with, delta updates (`_HLS_skip`), the preload hint, and which
//! part and segment URIs can be served. Sans-IO: the origin stores the window here, asks it
//! questions and does the waiting.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::frame::TIMEBASE;
use crate::hls::playlist::{
    MediaPlaylist, MediaSegment, PartialSegment, RenditionReport, ServerControl,
};
use crate::packager::{PackagerConfig, PackagerEvent, Part};

/// Window and target settings of a live rendition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveConfig {
    /// PART-TARGET in 90 kHz ticks.
    pub part_target: u32,
    /// EXT-X-TARGETDURATION in seconds.
    pub target_duration: u32,
    /// Complete segments kept and listed (at least 6).
    pub window_segments: usize,
    /// Most bytes of media kept; older segments go first.
    pub max_bytes: usize,
}

impl LiveConfig {
    /// Settings matching a packager's targets.
    pub fn new(pkg: &PackagerConfig, window_segments: usize, max_bytes: usize) -> Self {
        LiveConfig {
            part_target: pkg.part_target,
            target_duration: pkg.target_duration(),
            window_segments: window_segments.max(6),
            max_bytes,
        }
    }

    fn td_ticks(&self) -> u64 {
        u64::from(self.target_duration) * u64::from(TIMEBASE)
    }

    /// The most parts a segment can have: the advance limit for `_HLS_part`.
    pub fn max_parts_per_segment(&self) -> u32 {
        let max_segment = self.td_ticks() + u64::from(TIMEBASE) / 2;
        (max_segment.div_ceil(u64::from(self.part_target.max(1))) + 1) as u32
    }

    /// PART-TARGET in seconds.
    pub fn part_target_secs(&self) -> f64 {
        f64::from(self.part_target) / f64::from(TIMEBASE)
    }
}

/// What a playlist request with blocking-reload directives should do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocking {
    /// Answer with the current playlist.
    Ready,
    /// Hold the request until the window changes, then ask again.
    Wait,
    /// Answer 400 with this reason.
    Reject(&'static str),
}

/// What a part request finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartLookup {
    /// The part's bytes.
    Ready(Bytes),
    /// The part is the next one to be produced: hold the request.
    Pending,
    /// No such part, now or to come: 404.
    Missing,
}

#[derive(Debug)]
struct LivePart {
    duration: u32,
    independent: bool,
    start: u64,
    data: Bytes,
}

#[derive(Debug)]
struct Seg {
    msn: u64,
    duration: u64,
    parts: Vec<LivePart>,
    discontinuity: bool,
    pdt_ms: i64,
    init: usize,
    complete: bool,
    bytes: usize,
}

impl Seg {
    fn listed_duration(&self) -> u64 {
        if self.complete {
            self.duration
        } else {
            self.parts.iter().map(|p| u64::from(p.duration)).sum()
        }
    }
}

/// The live window of one rendition.
#[derive(Debug)]
pub struct LiveRendition {
    cfg: LiveConfig,
    segs: VecDeque<Seg>,
    discontinuity_sequence: u64,
    next_discontinuity: bool,
    inits: Vec<Bytes>,
    ended: bool,
    bytes: usize,
    peak_bps: u64,
    total_bytes: u64,
    total_ticks: u64,
    next_msn: u64,
}

impl LiveRendition {
    /// An empty window whose first segment will be `first_msn`.
    pub fn new(cfg: LiveConfig, first_msn: u64) -> Self {
        LiveRendition {
            cfg,
            segs: VecDeque::new(),
            discontinuity_sequence: 0,
            next_discontinuity: false,
            inits: Vec::new(),
            ended: false,
            bytes: 0,
            peak_bps: 0,
            total_bytes: 0,
            total_ticks: 0,
            next_msn: first_msn,
        }
    }

    /// The settings.
    pub fn config(&self) -> &LiveConfig {
        &self.cfg
    }

    /// Sets the init segment for the segments that follow; returns its URI.
    pub fn set_init(&mut self, init: Bytes) -> String {
        if self.inits.last() != Some(&init) {
            self.inits.push(init);
        }
        init_uri(self.inits.len() - 1)
    }

    /// The init segment served at `uri` (`init.mp4`, `init-1.mp4`, ...).
    pub fn init(&self, uri: &str) -> Option<Bytes> {
        let version = match uri {
            "init.mp4" => 0,
            other => other
                .strip_prefix("init-")?
                .strip_suffix(".mp4")?
                .parse()
                .ok()?,
        };
        if version == 0 && uri != "init.mp4" {
            return None;
        }
        self.inits.get(version).cloned()
    }

    /// The next segment starts after a discontinuity (a publisher reconnected).
    pub fn mark_discontinuity(&mut self) {
        self.next_discontinuity = true;
        self.ended = false;
    }

    /// Adds a part; `pdt_ms` (wall-clock milliseconds since the Unix epoch) dates the segment
    /// when the part starts one.
    pub fn push_part(&mut self, part: &Part, pdt_ms: i64) {
        let starts_segment = !self
            .segs
            .back()
            .is_some_and(|s| !s.complete && s.msn == part.msn);
        if starts_segment {
            let seg = Seg {
                msn: part.msn,
                duration: 0,
                parts: Vec::new(),
                discontinuity: std::mem::take(&mut self.next_discontinuity),
                pdt_ms,
                init: self.inits.len().saturating_sub(1),
                complete: false,
                bytes: 0,
            };
            self.segs.push_back(seg);
            self.next_msn = part.msn + 1;
        }
        if let Some(seg) = self.segs.back_mut() {
            seg.parts.push(LivePart {
                duration: part.duration,
                independent: part.independent,
                start: part.start,
                data: part.data.clone(),
            });
            seg.bytes += part.data.len();
        }
        self.bytes += part.data.len();
        self.evict();
    }

    /// Completes segment `msn` with its EXTINF duration (90 kHz ticks).
    pub fn end_segment(&mut self, msn: u64, duration: u64) {
        if let Some(seg) = self.segs.back_mut().filter(|s| s.msn == msn && !s.complete) {
            seg.complete = true;
            seg.duration = duration;
            if let Some(bps) = (seg.bytes as u64 * 8 * u64::from(TIMEBASE)).checked_div(duration) {
                self.peak_bps = self.peak_bps.max(bps);
                self.total_bytes += seg.bytes as u64;
                self.total_ticks += duration;
            }
        }
        self.evict();
    }

    /// Ends the stream: the playlist gets `EXT-X-ENDLIST` and nothing is pending any more.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// Whether the stream has ended.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Whether a playlist can be served: players (hls.js among them) treat a playlist
    /// without a single complete segment as an error, so nothing is listed before one.
    pub fn has_media(&self) -> bool {
        self.segs.iter().any(|s| s.complete)
    }

    /// Measured (peak, average) bits per second over complete segments.
    pub fn bandwidth(&self) -> Option<(u64, u64)> {
        (self.total_ticks > 0).then(|| {
            (
                self.peak_bps,
                self.total_bytes * 8 * u64::from(TIMEBASE) / self.total_ticks,
            )
        })
    }

    /// Bytes of media held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The last produced part as (msn, part index), for rendition reports.
    pub fn last_part(&self) -> Option<(u64, u64)> {
        let seg = self.segs.back()?;
        Some((seg.msn, seg.parts.len().checked_sub(1)? as u64))
    }

    /// The packager events that built segments `from` onwards (the last one possibly still
    /// in progress), to feed another window the same media; `None` when segment `from` is
    /// no longer (or not yet) held from its first part.
    pub fn replay(&self, from: u64) -> Option<Vec<PackagerEvent>> {
        if self.seg(from).is_none() {
            // Not held: still to come (then it comes live), or gone.
            return (from >= self.next()).then(Vec::new);
        }
        let mut out = Vec::new();
        for s in self.segs.iter().filter(|s| s.msn >= from) {
            for (i, p) in s.parts.iter().enumerate() {
                out.push(PackagerEvent::Part(Part {
                    msn: s.msn,
                    index: i as u32,
                    duration: p.duration,
                    independent: p.independent,
                    start: p.start,
                    data: p.data.clone(),
                }));
            }
            if s.complete {
                out.push(PackagerEvent::SegmentEnd {
                    msn: s.msn,
                    duration: s.duration,
                    independent: s.parts.first().is_some_and(|p| p.independent),
                });
            }
        }
        Some(out)
    }

    /// The init segment that segment `msn` (held, or the next to come) starts from.
    pub fn init_of(&self, msn: u64) -> Option<Bytes> {
        match self.seg(msn) {
            Some(s) => self.inits.get(s.init).cloned(),
            None => self.inits.last().cloned(),
        }
    }

    /// The msn of the segment in progress, or of the next one when none is.
    pub fn next_msn(&self) -> u64 {
        self.next()
    }

    /// The in-progress segment's msn (or the next one when none is in progress).
    fn next(&self) -> u64 {
        match self.segs.back() {
            Some(s) if !s.complete => s.msn,
            Some(s) => s.msn + 1,
            None => self.next_msn,
        }
    }

    fn last_complete(&self) -> Option<u64> {
        self.segs.iter().rev().find(|s| s.complete).map(|s| s.msn)
    }

    fn seg(&self, msn: u64) -> Option<&Seg> {
        let first = self.segs.front()?.msn;
        let i = usize::try_from(msn.checked_sub(first)?).ok()?;
        self.segs.get(i).filter(|s| s.msn == msn)
    }

    fn evict(&mut self) {
        loop {
            let complete = self.segs.iter().filter(|s| s.complete).count();
            let over_count = complete > self.cfg.window_segments;
            let over_bytes = self.bytes > self.cfg.max_bytes && complete > 1;
            if !(over_count || over_bytes) || !self.segs.front().is_some_and(|s| s.complete) {
                return;
            }
            if let Some(old) = self.segs.pop_front() {
                self.bytes -= old.bytes;
                if old.discontinuity {
                    self.discontinuity_sequence += 1;
                }
            }
        }
    }

    /// Decides a playlist request carrying `_HLS_msn` / `_HLS_part`.
    pub fn blocking(&self, msn: Option<u64>, part: Option<u64>) -> Blocking {
        if self.ended {
            return Blocking::Ready; // directives are ignored once the playlist has ended
        }
        let m = match (msn, part) {
            (None, Some(_)) => return Blocking::Reject("_HLS_part requires _HLS_msn"),
            (None, None) => return Blocking::Ready,
            (Some(m), _) => m,
        };
        let next = self.next();
        if m > next + 1 {
            return Blocking::Reject(
                "_HLS_msn is more than two segments past the last one in the playlist",
            );
        }
        let Some(n) = part else {
            return if self.last_complete().is_some_and(|l| m <= l) {
                Blocking::Ready
            } else {
                Blocking::Wait
            };
        };
        if n >= u64::from(self.cfg.max_parts_per_segment()) {
            return Blocking::Reject("_HLS_part is beyond the advance limit");
        }
        if self.segs.front().is_some_and(|f| m < f.msn) {
            return Blocking::Ready;
        }
        match self.seg(m) {
            Some(s) if (n as usize) < s.parts.len() => Blocking::Ready,
            // Part N past the last part of a finished segment is part 0 of the next one.
            Some(s) if s.complete => match self.seg(m + 1) {
                Some(next) if !next.parts.is_empty() => Blocking::Ready,
                _ => Blocking::Wait,
            },
            _ => Blocking::Wait,
        }
    }

    /// The bytes of part `index` of segment `msn`, or whether to wait for it.
    pub fn part(&self, msn: u64, index: u64) -> PartLookup {
        match self.seg(msn) {
            Some(s) => match s.parts.get(index as usize) {
                Some(p) => PartLookup::Ready(p.data.clone()),
                None if !s.complete && !self.ended && index as usize == s.parts.len() => {
                    PartLookup::Pending
                }
                None => PartLookup::Missing,
            },
            None if !self.ended && msn == self.next() && index == 0 => PartLookup::Pending,
            None => PartLookup::Missing,
        }
    }

    /// The parts of complete segment `msn`, whose concatenation is the segment.
    pub fn segment(&self, msn: u64) -> Option<Vec<Bytes>> {
        self.seg(msn)
            .filter(|s| s.complete)
            .map(|s| s.parts.iter().map(|p| p.data.clone()).collect())
    }

    /// The playlist as it stands, as a delta update when `skip` is asked for, with
    /// `reports` for the other renditions.
    pub fn playlist(&self, skip: bool, reports: Vec<RenditionReport>) -> MediaPlaylist {
        let td = self.cfg.td_ticks();
        let can_skip_until = 6 * td;
        let total: u64 = self.segs.iter().map(Seg::listed_duration).sum();

        // Segments whose end is more than CAN-SKIP-UNTIL before the playlist's end.
        let mut skipped = 0u64;
        if skip {
            let mut elapsed = 0;
            for s in &self.segs {
                elapsed += s.listed_duration();
                if s.complete && total - elapsed > can_skip_until {
                    skipped += 1;
                } else {
                    break;
                }
            }
        }

        let mut segments = Vec::with_capacity(self.segs.len());
        let mut end_offset = total;
        let mut prev_init: Option<usize> = None;
        for (i, s) in self.segs.iter().enumerate() {
            let dur = s.listed_duration();
            end_offset -= dur;
            // `end_offset` is now the time from this segment's end to the playlist's end.
            if (i as u64) < skipped {
                prev_init = Some(s.init);
                continue;
            }
            let list_parts = end_offset < 3 * td;
            let parts = if list_parts {
                s.parts
                    .iter()
                    .enumerate()
                    .map(|(k, p)| PartialSegment {
                        duration: f64::from(p.duration) / f64::from(TIMEBASE),
                        uri: format!("{}.{k}.m4s", s.msn),
                        independent: p.independent,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let first_listed = segments.is_empty();
            let map = (first_listed || prev_init != Some(s.init)).then(|| init_uri(s.init));
            prev_init = Some(s.init);
            segments.push(MediaSegment {
                duration: s.duration as f64 / f64::from(TIMEBASE),
                uri: s.complete.then(|| format!("{}.m4s", s.msn)),
                parts,
                discontinuity: s.discontinuity,
                program_date_time: Some(rfc3339_millis(s.pdt_ms)),
                map,
            });
        }

        let preload_hint = (!self.ended && self.has_media()).then(|| match self.segs.back() {
            Some(s) if !s.complete => format!("{}.{}.m4s", s.msn, s.parts.len()),
            _ => format!("{}.0.m4s", self.next()),
        });
        let part_target = self.cfg.part_target_secs();
        MediaPlaylist {
            version: 9,
            target_duration: self.cfg.target_duration,
            part_target: Some(part_target),
            server_control: Some(ServerControl {
                can_block_reload: true,
                part_hold_back: Some(f64::from(3 * self.cfg.part_target) / f64::from(TIMEBASE)),
                hold_back: Some(3.0 * f64::from(self.cfg.target_duration)),
                can_skip_until: Some(6.0 * f64::from(self.cfg.target_duration)),
            }),
            media_sequence: self.segs.front().map_or(self.next_msn, |s| s.msn),
            discontinuity_sequence: self.discontinuity_sequence,
            independent_segments: false,
            skipped_segments: skipped,
            segments,
            preload_hint,
            rendition_reports: reports,
            ended: self.ended,
        }
    }
}

fn init_uri(version: usize) -> String {
    if version == 0 {
        "init.mp4".to_owned()
    } else {
        format!("init-{version}.mp4")
    }
}

/// `2026-11-26T05:00:00.123Z` for milliseconds since the Unix epoch.
pub fn rfc3339_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PT: u32 = 18_000; // 200 ms
    const SEG: u64 = 180_000; // 2 s

    fn cfg() -> LiveConfig {
        LiveConfig::new(
            &PackagerConfig {
                part_target: PT,
                segment_target: SEG as u32,
            },
            10,
            1 << 30,
        )
    }

    fn part(msn: u64, index: u32) -> Part {
        Part {
            msn,
            index,
            duration: PT,
            independent: index == 0,
            start: msn * SEG + u64::from(index * PT),
            data: Bytes::from(vec![msn as u8; 100]),
        }
    }

    /// A window holding `segments` complete 10-part segments and `parts` parts of the next.
    fn window(segments: u64, parts: u32) -> LiveRendition {
        let mut w = LiveRendition::new(cfg(), 0);
        w.set_init(Bytes::from_static(b"init"));
        for msn in 0..segments {
            for i in 0..10 {
                w.push_part(&part(msn, i), 1_700_000_000_000 + (msn * 2000) as i64);
            }
            w.end_segment(msn, SEG);
        }
        for i in 0..parts {
            w.push_part(&part(segments, i), 0);
        }
        w
    }

    #[test]
    fn server_control_and_targets_follow_the_rules() {
        let p = window(3, 2).playlist(false, vec![]);
        let sc = p.server_control.clone().unwrap();
        let pt = p.part_target.unwrap();
        assert!(sc.can_block_reload);
        // Decimal seconds: compare with a tolerance far below the 10 µs the writer prints.
        assert!(sc.part_hold_back.unwrap() >= 3.0 * pt - 1e-9);
        assert!(sc.hold_back.unwrap() >= 3.0 * f64::from(p.target_duration));
        assert!(sc.can_skip_until.unwrap() >= 6.0 * f64::from(p.target_duration));
        for s in &p.segments {
            assert!(s.duration.round() <= f64::from(p.target_duration));
            for part in &s.parts {
                assert!(part.duration <= pt);
            }
        }
        assert_eq!(p.segments[0].map.as_deref(), Some("init.mp4"));
        assert!(p.segments.iter().all(|s| s.program_date_time.is_some()));
        assert_eq!(
            p.segments[1].program_date_time.as_deref(),
            Some("2023-11-14T22:13:22.000Z")
        );
    }

    #[test]
    fn parts_are_listed_only_for_the_last_three_target_durations() {
        let p = window(8, 3).playlist(false, vec![]);
        assert_eq!(p.segments.len(), 9);
        let with_parts: Vec<bool> = p.segments.iter().map(|s| !s.parts.is_empty()).collect();
        // In progress (0.6 s) + 3 complete segments end within 6 s of the end.
        assert_eq!(
            with_parts,
            [false, false, false, false, false, true, true, true, true]
        );
        let last = p.segments.last().unwrap();
        assert!(last.uri.is_none());
        assert_eq!(last.parts.len(), 3);
        assert!(last.parts[0].independent && !last.parts[1].independent);
    }

    #[test]
    fn delisted_parts_are_still_served_for_three_target_durations() {
        let w = window(8, 3);
        // Segment 4's parts are no longer listed (see above) but are still served.
        assert!(matches!(w.part(4, 9), PartLookup::Ready(_)));
        assert!(matches!(w.part(2, 0), PartLookup::Ready(_)));
        assert_eq!(w.segment(4).unwrap().len(), 10);
    }

    #[test]
    fn preload_hint_names_the_next_part_and_holds_it() {
        let w = window(2, 4);
        let p = w.playlist(false, vec![]);
        assert_eq!(p.preload_hint.as_deref(), Some("2.4.m4s"));
        assert_eq!(w.part(2, 4), PartLookup::Pending);
        assert_eq!(w.part(2, 5), PartLookup::Missing);
        assert_eq!(w.part(9, 0), PartLookup::Missing);
        // Right after a segment ends, the hint is part 0 of the next segment.
        let w = window(2, 0);
        assert_eq!(
            w.playlist(false, vec![]).preload_hint.as_deref(),
            Some("2.0.m4s")
        );
        assert_eq!(w.part(2, 0), PartLookup::Pending);
        // A finished segment's missing part never comes.
        assert_eq!(w.part(1, 10), PartLookup::Missing);
    }

    #[test]
    fn media_sequence_never_decreases_and_the_window_keeps_at_least_six() {
        let mut w = LiveRendition::new(cfg(), 0);
        w.set_init(Bytes::from_static(b"init"));
        let mut last_seq = 0;
        for msn in 0..30 {
            for i in 0..10 {
                w.push_part(&part(msn, i), 0);
                let p = w.playlist(false, vec![]);
                assert!(p.media_sequence >= last_seq);
                last_seq = p.media_sequence;
            }
            w.end_segment(msn, SEG);
            let p = w.playlist(false, vec![]);
            let complete = p.segments.iter().filter(|s| s.uri.is_some()).count() as u64;
            assert!(
                complete >= 6.min(msn + 1),
                "{complete} segments after {msn}"
            );
        }
        assert_eq!(w.playlist(false, vec![]).media_sequence, 20);
        // Evicted: gone for good.
        assert_eq!(w.part(5, 0), PartLookup::Missing);
        assert!(w.segment(5).is_none());
    }

    #[test]
    fn the_byte_bound_evicts_oldest_segments() {
        let mut c = cfg();
        c.max_bytes = 2500; // 2.5 segments of 1000 bytes
        let mut w = LiveRendition::new(c, 0);
        for msn in 0..5 {
            for i in 0..10 {
                w.push_part(&part(msn, i), 0);
            }
            w.end_segment(msn, SEG);
        }
        assert!(w.bytes() <= 2500);
        assert_eq!(w.playlist(false, vec![]).media_sequence, 3);
    }

    #[test]
    fn blocking_on_segments() {
        let w = window(3, 2);
        assert_eq!(w.blocking(None, None), Blocking::Ready);
        assert_eq!(w.blocking(Some(2), None), Blocking::Ready);
        assert_eq!(w.blocking(Some(3), None), Blocking::Wait);
        assert_eq!(w.blocking(Some(4), None), Blocking::Wait);
        assert!(
            matches!(w.blocking(Some(5), None), Blocking::Reject(_)),
            "more than two ahead"
        );
    }

    #[test]
    fn blocking_on_parts() {
        let w = window(3, 2);
        assert_eq!(w.blocking(Some(3), Some(1)), Blocking::Ready);
        assert_eq!(w.blocking(Some(3), Some(2)), Blocking::Wait);
        assert_eq!(w.blocking(Some(4), Some(0)), Blocking::Wait);
        assert_eq!(
            w.blocking(Some(0), Some(3)),
            Blocking::Ready,
            "old parts are answered at once"
        );
        assert!(matches!(w.blocking(None, Some(1)), Blocking::Reject(_)));
        assert!(
            matches!(w.blocking(Some(3), Some(1000)), Blocking::Reject(_)),
            "advance limit"
        );
        // Part N past the last part of a finished segment means part 0 of the next.
        assert_eq!(w.blocking(Some(2), Some(10)), Blocking::Ready);
        let w = window(3, 0);
        assert_eq!(w.blocking(Some(2), Some(10)), Blocking::Wait);
    }

    #[test]
    fn directives_are_ignored_after_the_end() {
        let mut w = window(3, 2);
        w.end();
        assert_eq!(w.blocking(Some(9), Some(3)), Blocking::Ready);
        let p = w.playlist(false, vec![]);
        assert!(p.ended);
        assert!(p.preload_hint.is_none());
        assert_eq!(w.part(3, 2), PartLookup::Missing);
    }

    #[test]
    fn delta_updates_skip_segments_older_than_can_skip_until() {
        let w = window(10, 1);
        let full = w.playlist(false, vec![]);
        let delta = w.playlist(true, vec![]);
        // 10 × 2 s + 0.2 s: segments ending more than 12 s before the end are skipped.
        assert_eq!(delta.skipped_segments, 4);
        assert_eq!(delta.segments.len(), full.segments.len() - 4);
        assert_eq!(delta.media_sequence, full.media_sequence);
        assert_eq!(delta.msn_of(0), 4);
        assert_eq!(delta.segments[0].map.as_deref(), Some("init.mp4"));
        let text = delta.render();
        assert!(text.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=4\n"), "{text}");
        assert_eq!(MediaPlaylist::parse(&text).unwrap(), delta);
    }

    #[test]
    fn reconnects_mark_a_discontinuity_and_a_new_map_only_when_needed() {
        let mut w = window(2, 0);
        w.mark_discontinuity();
        assert_eq!(
            w.set_init(Bytes::from_static(b"init")),
            "init.mp4",
            "same init, same URI"
        );
        w.push_part(&part(2, 0), 0);
        w.end_segment(2, SEG);
        w.mark_discontinuity();
        assert_eq!(w.set_init(Bytes::from_static(b"other")), "init-1.mp4");
        w.push_part(&part(3, 0), 0);
        let p = w.playlist(false, vec![]);
        let disc: Vec<bool> = p.segments.iter().map(|s| s.discontinuity).collect();
        assert_eq!(disc, [false, false, true, true]);
        let maps: Vec<Option<&str>> = p.segments.iter().map(|s| s.map.as_deref()).collect();
        assert_eq!(maps, [Some("init.mp4"), None, None, Some("init-1.mp4")]);
        assert_eq!(w.init("init-1.mp4").unwrap(), Bytes::from_static(b"other"));
        assert!(w.init("init-2.mp4").is_none());
        assert!(w.init("init-0.mp4").is_none());
    }

    #[test]
    fn discontinuity_sequence_counts_evicted_discontinuities() {
        let mut w = window(1, 0);
        w.mark_discontinuity();
        for msn in 1..20 {
            for i in 0..10 {
                w.push_part(&part(msn, i), 0);
            }
            w.end_segment(msn, SEG);
        }
        let p = w.playlist(false, vec![]);
        assert_eq!(p.discontinuity_sequence, 1);
        assert!(p.segments.iter().all(|s| !s.discontinuity));
    }

    #[test]
    fn nothing_is_served_before_the_first_complete_segment() {
        let w = window(0, 3);
        assert!(!w.has_media());
        assert!(window(1, 0).has_media());
    }

    #[test]
    fn bandwidth_is_measured() {
        let w = window(3, 0);
        // 1000 bytes per 2 s segment = 4000 bit/s.
        assert_eq!(w.bandwidth(), Some((4000, 4000)));
        assert_eq!(w.last_part(), Some((2, 9)));
    }

    #[test]
    fn replay_rebuilds_the_events_of_held_segments() {
        let w = window(3, 2);
        let events = w.replay(1).unwrap();
        // Segments 1 and 2 (10 parts and an end each), then the two parts of 3.
        assert_eq!(events.len(), 2 * 11 + 2);
        let mut copy = LiveRendition::new(cfg(), 1);
        for e in events {
            match e {
                PackagerEvent::Part(p) => copy.push_part(&p, 0),
                PackagerEvent::SegmentEnd { msn, duration, .. } => copy.end_segment(msn, duration),
            }
        }
        assert_eq!(copy.segment(2), w.segment(2));
        assert_eq!(copy.last_part(), Some((3, 1)));
        assert_eq!(w.replay(4), Some(Vec::new()), "still to come");
        assert_eq!(w.replay(9), Some(Vec::new()), "still to come");
        let mut w = window(12, 0);
        w.end_segment(11, SEG);
        assert!(w.replay(0).is_none(), "evicted");
    }

    #[test]
    fn dates_format_as_rfc3339() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            rfc3339_millis(1_795_000_000_000),
            "2026-11-18T11:06:40.000Z"
        );
    }
}
