//! VOD playlist assembly: a recording's (or clip's) segments, as the origin packaged them,
//! into an ended media playlist; and the multivariant playlist of a recording.

use potok_media::hls::playlist::{MasterPlaylist, MediaPlaylist, MediaSegment, Variant};

use crate::RenditionInfo;

/// One segment of a rendition, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct VodSegment {
    /// Media sequence number (the segment is `{msn}.m4s`).
    pub msn: u64,
    /// Duration in seconds.
    pub duration: f64,
    /// A discontinuity precedes it (the publisher reconnected).
    pub discontinuity: bool,
    /// Its init segment's file name.
    pub init: String,
}

/// An ended media playlist of `segments`; `live` leaves out `EXT-X-ENDLIST` (a DVR window).
pub fn media_playlist(segments: &[VodSegment], live: bool) -> String {
    let mut prev_init = "";
    let target = segments
        .iter()
        .map(|s| s.duration.ceil() as u32)
        .max()
        .unwrap_or(1)
        .max(1);
    let list = segments
        .iter()
        .map(|s| {
            let map = (s.init != prev_init).then(|| s.init.clone());
            prev_init = &s.init;
            MediaSegment {
                duration: s.duration,
                uri: Some(format!("{}.m4s", s.msn)),
                discontinuity: s.discontinuity,
                map,
                ..Default::default()
            }
        })
        .collect();
    MediaPlaylist {
        version: 7,
        target_duration: target,
        media_sequence: segments.first().map_or(0, |s| s.msn),
        independent_segments: false,
        segments: list,
        ended: !live,
        ..Default::default()
    }
    .render()
}

/// The segments a media playlist lists, with the init segment in force at each.
pub fn segments_of(playlist: &MediaPlaylist) -> Vec<VodSegment> {
    let mut init = String::new();
    playlist
        .segments
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            if let Some(m) = &s.map {
                init.clone_from(m);
            }
            let uri = s.uri.as_deref()?;
            let msn = uri
                .strip_suffix(".m4s")?
                .parse()
                .unwrap_or(playlist.msn_of(i));
            Some(VodSegment {
                msn,
                duration: s.duration,
                discontinuity: s.discontinuity,
                init: init.clone(),
            })
        })
        .collect()
}

/// The segments of `all` that overlap `[start, end)` seconds from its beginning: whole
/// segments, so a clip starts on a keyframe. The first keeps no discontinuity.
pub fn cut(all: &[VodSegment], start: f64, end: f64) -> Vec<VodSegment> {
    let mut t = 0.0;
    let mut out: Vec<VodSegment> = Vec::new();
    for s in all {
        let (from, to) = (t, t + s.duration);
        t = to;
        if to > start && from < end {
            out.push(s.clone());
        }
    }
    if let Some(first) = out.first_mut() {
        first.discontinuity = false;
    }
    out
}

/// The multivariant playlist of a recording with `renditions`.
pub fn master_playlist(renditions: &[RenditionInfo]) -> String {
    MasterPlaylist {
        independent_segments: false,
        variants: renditions
            .iter()
            .map(|r| Variant {
                bandwidth: r.bandwidth.max(1),
                average_bandwidth: None,
                codecs: (!r.codecs.is_empty()).then(|| r.codecs.clone()),
                resolution: r.resolution,
                frame_rate: r.frame_rate,
                uri: format!("{}/index.m3u8", r.name),
            })
            .collect(),
    }
    .render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(msn: u64, init: &str) -> VodSegment {
        VodSegment {
            msn,
            duration: 2.0,
            discontinuity: msn == 13,
            init: init.into(),
        }
    }

    #[test]
    fn a_playlist_round_trips_and_a_cut_is_segment_aligned() {
        let all = vec![
            seg(10, "init-0.mp4"),
            seg(11, "init-0.mp4"),
            seg(12, "init-1.mp4"),
            seg(13, "init-1.mp4"),
        ];
        let text = media_playlist(&all, false);
        assert!(text.contains("#EXT-X-ENDLIST"));
        let parsed = MediaPlaylist::parse(&text).expect("parses");
        assert_eq!(segments_of(&parsed), all);
        // 3.0..5.0 s touches the 2nd (2-4 s) and 3rd (4-6 s) segments.
        let clip = cut(&all, 3.0, 5.0);
        assert_eq!(clip.iter().map(|s| s.msn).collect::<Vec<_>>(), [11, 12]);
        let text = media_playlist(&clip, false);
        assert!(text.contains("#EXT-X-MAP:URI=\"init-0.mp4\""), "{text}");
        assert!(text.contains("#EXT-X-MAP:URI=\"init-1.mp4\""), "{text}");
        assert!(cut(&all, 100.0, 200.0).is_empty());
        assert!(!cut(&all, 6.5, 7.0)[0].discontinuity);
    }
}
