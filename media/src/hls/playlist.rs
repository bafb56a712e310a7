//! The HLS playlist model, a writer for it and a parser (used by tests and benchmarks to
//! read what the writer and the origin produce). Covers the LL-HLS tags that `m3u8-rs`
//! lacks: `EXT-X-PART`, `EXT-X-PART-INF`, `EXT-X-SERVER-CONTROL`, `EXT-X-PRELOAD-HINT`,
//! `EXT-X-RENDITION-REPORT`, `EXT-X-SKIP`.

use std::fmt::Write as _;

use crate::error::{MediaError, Result};

/// A media playlist.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaPlaylist {
    /// `EXT-X-VERSION`.
    pub version: u32,
    /// `EXT-X-TARGETDURATION` in seconds.
    pub target_duration: u32,
    /// `EXT-X-PART-INF:PART-TARGET` in seconds.
    pub part_target: Option<f64>,
    /// `EXT-X-SERVER-CONTROL`.
    pub server_control: Option<ServerControl>,
    /// `EXT-X-MEDIA-SEQUENCE`.
    pub media_sequence: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`.
    pub discontinuity_sequence: u64,
    /// `EXT-X-INDEPENDENT-SEGMENTS`.
    pub independent_segments: bool,
    /// `EXT-X-SKIP:SKIPPED-SEGMENTS` of a delta update.
    pub skipped_segments: u64,
    /// Segments in order; the last may be in progress (parts only, no URI yet).
    pub segments: Vec<MediaSegment>,
    /// `EXT-X-PRELOAD-HINT:TYPE=PART` URI.
    pub preload_hint: Option<String>,
    /// `EXT-X-RENDITION-REPORT`s.
    pub rendition_reports: Vec<RenditionReport>,
    /// `EXT-X-ENDLIST`.
    pub ended: bool,
}

/// A media segment, or the segment in progress.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaSegment {
    /// `EXTINF` duration in seconds (0 while in progress).
    pub duration: f64,
    /// The segment's URI; `None` while in progress.
    pub uri: Option<String>,
    /// Its parts, when listed.
    pub parts: Vec<PartialSegment>,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// `EXT-X-PROGRAM-DATE-TIME` (RFC 3339).
    pub program_date_time: Option<String>,
    /// `EXT-X-MAP` URI in force from this segment on, when it changes here.
    pub map: Option<String>,
}

/// An `EXT-X-PART`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartialSegment {
    /// Duration in seconds.
    pub duration: f64,
    /// URI.
    pub uri: String,
    /// `INDEPENDENT=YES`.
    pub independent: bool,
}

/// `EXT-X-SERVER-CONTROL`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerControl {
    /// `CAN-BLOCK-RELOAD=YES`.
    pub can_block_reload: bool,
    /// `PART-HOLD-BACK` in seconds.
    pub part_hold_back: Option<f64>,
    /// `HOLD-BACK` in seconds.
    pub hold_back: Option<f64>,
    /// `CAN-SKIP-UNTIL` in seconds.
    pub can_skip_until: Option<f64>,
}

/// `EXT-X-RENDITION-REPORT`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenditionReport {
    /// The other rendition's playlist URI, relative to this playlist.
    pub uri: String,
    /// `LAST-MSN`.
    pub last_msn: u64,
    /// `LAST-PART`.
    pub last_part: Option<u64>,
}

/// A multivariant (master) playlist.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MasterPlaylist {
    /// `EXT-X-INDEPENDENT-SEGMENTS`.
    pub independent_segments: bool,
    /// One `EXT-X-STREAM-INF` per rendition.
    pub variants: Vec<Variant>,
}

/// An `EXT-X-STREAM-INF` and its URI.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Variant {
    /// `BANDWIDTH` (peak, bits/s).
    pub bandwidth: u64,
    /// `AVERAGE-BANDWIDTH`.
    pub average_bandwidth: Option<u64>,
    /// `CODECS`.
    pub codecs: Option<String>,
    /// `RESOLUTION`.
    pub resolution: Option<(u32, u32)>,
    /// `FRAME-RATE`.
    pub frame_rate: Option<f64>,
    /// The media playlist URI.
    pub uri: String,
}

/// Seconds with five decimals, never rounded up (so a limit written the same way is never
/// exceeded by rounding).
fn secs(v: f64) -> String {
    let scaled = (v * 100_000.0 + 1e-6).floor() / 100_000.0;
    format!("{scaled:.5}")
}

fn yes(b: bool) -> &'static str {
    if b { "YES" } else { "NO" }
}

impl MediaPlaylist {
    /// The playlist as text.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(256 + self.segments.len() * 160);
        let _ = writeln!(o, "#EXTM3U");
        let _ = writeln!(o, "#EXT-X-VERSION:{}", self.version);
        let _ = writeln!(o, "#EXT-X-TARGETDURATION:{}", self.target_duration);
        if let Some(sc) = &self.server_control {
            let mut attrs = vec![format!("CAN-BLOCK-RELOAD={}", yes(sc.can_block_reload))];
            if let Some(v) = sc.can_skip_until {
                attrs.push(format!("CAN-SKIP-UNTIL={}", secs(v)));
            }
            if let Some(v) = sc.hold_back {
                attrs.push(format!("HOLD-BACK={}", secs(v)));
            }
            if let Some(v) = sc.part_hold_back {
                attrs.push(format!("PART-HOLD-BACK={}", secs(v)));
            }
            let _ = writeln!(o, "#EXT-X-SERVER-CONTROL:{}", attrs.join(","));
        }
        if let Some(pt) = self.part_target {
            let _ = writeln!(o, "#EXT-X-PART-INF:PART-TARGET={}", secs(pt));
        }
        let _ = writeln!(o, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence);
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(
                o,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        if self.independent_segments {
            let _ = writeln!(o, "#EXT-X-INDEPENDENT-SEGMENTS");
        }
        if self.skipped_segments > 0 {
            let _ = writeln!(o, "#EXT-X-SKIP:SKIPPED-SEGMENTS={}", self.skipped_segments);
        }
        for s in &self.segments {
            if s.discontinuity {
                let _ = writeln!(o, "#EXT-X-DISCONTINUITY");
            }
            if let Some(map) = &s.map {
                let _ = writeln!(o, "#EXT-X-MAP:URI=\"{map}\"");
            }
            if let Some(pdt) = &s.program_date_time {
                let _ = writeln!(o, "#EXT-X-PROGRAM-DATE-TIME:{pdt}");
            }
            for p in &s.parts {
                let _ = write!(
                    o,
                    "#EXT-X-PART:DURATION={},URI=\"{}\"",
                    secs(p.duration),
                    p.uri
                );
                if p.independent {
                    o.push_str(",INDEPENDENT=YES");
                }
                o.push('\n');
            }
            if let Some(uri) = &s.uri {
                let _ = writeln!(o, "#EXTINF:{},", secs(s.duration));
                let _ = writeln!(o, "{uri}");
            }
        }
        if let Some(hint) = &self.preload_hint {
            let _ = writeln!(o, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{hint}\"");
        }
        for r in &self.rendition_reports {
            let _ = write!(
                o,
                "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={}",
                r.uri, r.last_msn
            );
            if let Some(p) = r.last_part {
                let _ = write!(o, ",LAST-PART={p}");
            }
            o.push('\n');
        }
        if self.ended {
            let _ = writeln!(o, "#EXT-X-ENDLIST");
        }
        o
    }

    /// Parses a media playlist.
    pub fn parse(text: &str) -> Result<Self> {
        const W: &str = "media playlist";
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some("#EXTM3U") {
            return Err(MediaError::invalid(W, "does not start with #EXTM3U"));
        }
        let mut p = MediaPlaylist::default();
        let mut cur = MediaSegment::default();
        let mut pending_duration: Option<f64> = None;
        for line in lines {
            let (tag, value) = match line.split_once(':') {
                Some((t, v)) if line.starts_with('#') => (t, v),
                _ => (line, ""),
            };
            match tag {
                "#EXT-X-VERSION" => p.version = num(W, value)?,
                "#EXT-X-TARGETDURATION" => p.target_duration = num(W, value)?,
                "#EXT-X-MEDIA-SEQUENCE" => p.media_sequence = num(W, value)?,
                "#EXT-X-DISCONTINUITY-SEQUENCE" => p.discontinuity_sequence = num(W, value)?,
                "#EXT-X-INDEPENDENT-SEGMENTS" => p.independent_segments = true,
                "#EXT-X-ENDLIST" => p.ended = true,
                "#EXT-X-DISCONTINUITY" => cur.discontinuity = true,
                "#EXT-X-PROGRAM-DATE-TIME" => cur.program_date_time = Some(value.to_owned()),
                "#EXT-X-PART-INF" => {
                    p.part_target = Some(num(W, &attr(value, "PART-TARGET").unwrap_or_default())?)
                }
                "#EXT-X-SKIP" => {
                    p.skipped_segments =
                        num(W, &attr(value, "SKIPPED-SEGMENTS").unwrap_or_default())?
                }
                "#EXT-X-MAP" => {
                    cur.map = Some(
                        attr(value, "URI")
                            .ok_or_else(|| MediaError::invalid(W, "EXT-X-MAP without URI"))?,
                    );
                }
                "#EXT-X-SERVER-CONTROL" => {
                    let opt = |k: &str| attr(value, k).map(|v| num::<f64>(W, &v)).transpose();
                    p.server_control = Some(ServerControl {
                        can_block_reload: attr(value, "CAN-BLOCK-RELOAD").as_deref() == Some("YES"),
                        part_hold_back: opt("PART-HOLD-BACK")?,
                        hold_back: opt("HOLD-BACK")?,
                        can_skip_until: opt("CAN-SKIP-UNTIL")?,
                    });
                }
                "#EXT-X-PART" => cur.parts.push(PartialSegment {
                    duration: num(W, &attr(value, "DURATION").unwrap_or_default())?,
                    uri: attr(value, "URI")
                        .ok_or_else(|| MediaError::invalid(W, "EXT-X-PART without URI"))?,
                    independent: attr(value, "INDEPENDENT").as_deref() == Some("YES"),
                }),
                "#EXT-X-PRELOAD-HINT" => p.preload_hint = attr(value, "URI"),
                "#EXT-X-RENDITION-REPORT" => p.rendition_reports.push(RenditionReport {
                    uri: attr(value, "URI").unwrap_or_default(),
                    last_msn: num(W, &attr(value, "LAST-MSN").unwrap_or_default())?,
                    last_part: attr(value, "LAST-PART").map(|v| num(W, &v)).transpose()?,
                }),
                "#EXTINF" => {
                    let d = value.split(',').next().unwrap_or_default();
                    pending_duration = Some(num(W, d)?);
                }
                t if t.starts_with('#') => {} // other tags and comments
                uri => {
                    let duration = pending_duration.take().ok_or_else(|| {
                        MediaError::invalid(W, format!("URI {uri} without #EXTINF"))
                    })?;
                    cur.duration = duration;
                    cur.uri = Some(uri.to_owned());
                    p.segments.push(std::mem::take(&mut cur));
                }
            }
        }
        if !cur.parts.is_empty() || cur.discontinuity {
            p.segments.push(cur);
        }
        Ok(p)
    }

    /// Media sequence number of the `i`-th listed segment.
    pub fn msn_of(&self, i: usize) -> u64 {
        self.media_sequence + self.skipped_segments + i as u64
    }
}

impl MasterPlaylist {
    /// The playlist as text.
    pub fn render(&self) -> String {
        let mut o = String::from("#EXTM3U\n#EXT-X-VERSION:9\n");
        if self.independent_segments {
            o.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        }
        for v in &self.variants {
            let _ = write!(o, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth);
            if let Some(a) = v.average_bandwidth {
                let _ = write!(o, ",AVERAGE-BANDWIDTH={a}");
            }
            if let Some(c) = &v.codecs {
                let _ = write!(o, ",CODECS=\"{c}\"");
            }
            if let Some((w, h)) = v.resolution {
                let _ = write!(o, ",RESOLUTION={w}x{h}");
            }
            if let Some(f) = v.frame_rate {
                let _ = write!(o, ",FRAME-RATE={f:.3}");
            }
            // Potok's video never carries CEA-608/708 captions. Saying so spares players
            // from probing segments for them (shaka 5 otherwise fetches sample segments
            // and, in a live playlist, can pick the in-progress one, which has no URI).
            o.push_str(",CLOSED-CAPTIONS=NONE");
            let _ = writeln!(o, "\n{}", v.uri);
        }
        o
    }

    /// Parses a multivariant playlist.
    pub fn parse(text: &str) -> Result<Self> {
        const W: &str = "multivariant playlist";
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some("#EXTM3U") {
            return Err(MediaError::invalid(W, "does not start with #EXTM3U"));
        }
        let mut m = MasterPlaylist::default();
        let mut pending: Option<Variant> = None;
        for line in lines {
            if line == "#EXT-X-INDEPENDENT-SEGMENTS" {
                m.independent_segments = true;
            } else if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
                let resolution = attr(attrs, "RESOLUTION")
                    .map(|r| {
                        let (w, h) = r
                            .split_once('x')
                            .ok_or_else(|| MediaError::invalid(W, format!("RESOLUTION {r}")))?;
                        Ok::<_, MediaError>((num(W, w)?, num(W, h)?))
                    })
                    .transpose()?;
                pending = Some(Variant {
                    bandwidth: num(W, &attr(attrs, "BANDWIDTH").unwrap_or_default())?,
                    average_bandwidth: attr(attrs, "AVERAGE-BANDWIDTH")
                        .map(|v| num(W, &v))
                        .transpose()?,
                    codecs: attr(attrs, "CODECS"),
                    resolution,
                    frame_rate: attr(attrs, "FRAME-RATE").map(|v| num(W, &v)).transpose()?,
                    uri: String::new(),
                });
            } else if !line.starts_with('#') {
                let mut v = pending.take().ok_or_else(|| {
                    MediaError::invalid(W, format!("URI {line} without EXT-X-STREAM-INF"))
                })?;
                v.uri = line.to_owned();
                m.variants.push(v);
            }
        }
        Ok(m)
    }
}

fn num<T: std::str::FromStr>(what: &'static str, v: &str) -> Result<T> {
    v.trim()
        .parse()
        .map_err(|_| MediaError::invalid(what, format!("not a number: {v:?}")))
}

/// The value of attribute `key` in an attribute list, unquoted.
pub fn attr(list: &str, key: &str) -> Option<String> {
    let mut rest = list;
    while !rest.is_empty() {
        let (k, after) = rest.split_once('=')?;
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if k.trim() == key {
            return Some(value.to_owned());
        }
        rest = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MediaPlaylist {
        MediaPlaylist {
            version: 9,
            target_duration: 2,
            part_target: Some(0.2),
            server_control: Some(ServerControl {
                can_block_reload: true,
                part_hold_back: Some(0.6),
                hold_back: Some(6.0),
                can_skip_until: Some(12.0),
            }),
            media_sequence: 40,
            discontinuity_sequence: 1,
            independent_segments: true,
            skipped_segments: 2,
            segments: vec![
                MediaSegment {
                    duration: 2.0,
                    uri: Some("42.m4s".into()),
                    program_date_time: Some("2026-11-26T05:00:00.000Z".into()),
                    map: Some("init.mp4".into()),
                    ..Default::default()
                },
                MediaSegment {
                    duration: 1.96667,
                    uri: Some("43.m4s".into()),
                    discontinuity: true,
                    map: Some("init-1.mp4".into()),
                    parts: vec![
                        PartialSegment {
                            duration: 0.2,
                            uri: "43.0.m4s".into(),
                            independent: true,
                        },
                        PartialSegment {
                            duration: 0.16667,
                            uri: "43.1.m4s".into(),
                            independent: false,
                        },
                    ],
                    ..Default::default()
                },
                MediaSegment {
                    parts: vec![PartialSegment {
                        duration: 0.2,
                        uri: "44.0.m4s".into(),
                        independent: true,
                    }],
                    ..Default::default()
                },
            ],
            preload_hint: Some("44.1.m4s".into()),
            rendition_reports: vec![RenditionReport {
                uri: "../480p/index.m3u8".into(),
                last_msn: 44,
                last_part: Some(0),
            }],
            ended: false,
        }
    }

    #[test]
    fn media_playlist_round_trips() {
        let p = sample();
        let text = p.render();
        assert!(text.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.00000,HOLD-BACK=6.00000,PART-HOLD-BACK=0.60000\n"), "{text}");
        assert!(
            text.contains("#EXT-X-PART:DURATION=0.20000,URI=\"43.0.m4s\",INDEPENDENT=YES\n"),
            "{text}"
        );
        assert!(
            text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"44.1.m4s\"\n"),
            "{text}"
        );
        assert_eq!(MediaPlaylist::parse(&text).unwrap(), p);
        assert_eq!(p.msn_of(1), 43);
    }

    #[test]
    fn master_playlist_round_trips() {
        let m = MasterPlaylist {
            independent_segments: true,
            variants: vec![Variant {
                bandwidth: 3_200_000,
                average_bandwidth: Some(2_900_000),
                codecs: Some("avc1.64001f,mp4a.40.2".into()),
                resolution: Some((1280, 720)),
                frame_rate: Some(30.0),
                uri: "source/index.m3u8".into(),
            }],
        };
        let text = m.render();
        assert!(text.contains("CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000,CLOSED-CAPTIONS=NONE\nsource/index.m3u8\n"), "{text}");
        assert_eq!(MasterPlaylist::parse(&text).unwrap(), m);
    }

    #[test]
    fn durations_are_never_rounded_up() {
        assert_eq!(secs(0.2), "0.20000");
        assert_eq!(secs(2.0 / 3.0), "0.66666");
        assert_eq!(secs(17999.0 / 90000.0), "0.19998");
    }

    #[test]
    fn attribute_lists_with_quoted_commas() {
        let list = "BANDWIDTH=1,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1x1";
        assert_eq!(
            attr(list, "CODECS").as_deref(),
            Some("avc1.64001f,mp4a.40.2")
        );
        assert_eq!(attr(list, "RESOLUTION").as_deref(), Some("1x1"));
        assert_eq!(attr(list, "NOPE"), None);
        assert_eq!(attr("A=\"unterminated", "A"), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(MediaPlaylist::parse("").is_err());
        assert!(MediaPlaylist::parse("#EXTM3U\nseg.m4s\n").is_err());
        assert!(MediaPlaylist::parse("#EXTM3U\n#EXTINF:abc,\nx\n").is_err());
        assert!(MasterPlaylist::parse("#EXTM3U\nfoo.m3u8\n").is_err());
        assert!(
            MasterPlaylist::parse("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=12\nx\n")
                .is_err()
        );
    }
}
