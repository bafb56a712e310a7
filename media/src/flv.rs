//! FLV: the audio and video tag bodies that RTMP audio/video messages carry, and an
//! incremental reader of whole FLV files (header + tags) for fixtures and fuzzing.
//!
//! Only what Potok packages is interpreted (AVC video, AAC audio); other codecs are reported
//! as such so that the caller can refuse them clearly.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{MediaError, Result};

/// A video tag body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoTag {
    /// AVC sequence header: an AVCDecoderConfigurationRecord.
    AvcSequenceHeader(Bytes),
    /// AVC coded frames: length-prefixed NAL units.
    AvcFrame {
        /// Frame type 1 (keyframe).
        keyframe: bool,
        /// Presentation minus decode time, in milliseconds.
        composition_time_ms: i32,
        /// Length-prefixed NAL units, as in MP4 samples.
        data: Bytes,
    },
    /// AVC end of sequence.
    AvcEndOfSequence,
    /// Enhanced RTMP sequence start: the codec's configuration record (`hvcC` for `hvc1`,
    /// `avcC` for `avc1`, `av1C` for `av01`).
    ExSequenceStart {
        /// The codec FourCC.
        fourcc: [u8; 4],
        /// The configuration record.
        record: Bytes,
    },
    /// Enhanced RTMP coded frame(s).
    ExFrame {
        /// The codec FourCC.
        fourcc: [u8; 4],
        /// A keyframe.
        keyframe: bool,
        /// Presentation minus decode time, in milliseconds (0 for CodedFramesX).
        composition_time_ms: i32,
        /// Length-prefixed NAL units (HEVC, AVC) or OBUs (AV1).
        data: Bytes,
    },
    /// Enhanced RTMP sequence end.
    ExSequenceEnd,
    /// A frame of another codec (legacy FLV codec id), or an Enhanced RTMP packet.
    Unsupported(String),
}

/// An audio tag body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioTag {
    /// AAC sequence header: an AudioSpecificConfig.
    AacSequenceHeader(Bytes),
    /// One raw AAC access unit.
    AacFrame(Bytes),
    /// Audio in another format.
    Unsupported(String),
}

/// Parses the body of an RTMP video message / FLV video tag.
pub fn parse_video(body: Bytes) -> Result<VideoTag> {
    const W: &str = "FLV video tag";
    let first = *body.first().ok_or(MediaError::Truncated { what: W })?;
    if first & 0x80 != 0 {
        // Enhanced RTMP (veovera): frame type in bits 4-6, packet type in bits 0-3, FourCC.
        let frame_type = (first >> 4) & 0x07;
        let packet_type = first & 0x0f;
        let fourcc: [u8; 4] = body
            .get(1..5)
            .and_then(|f| f.try_into().ok())
            .ok_or(MediaError::Truncated { what: W })?;
        let payload = body.slice(5..);
        return match packet_type {
            0 => Ok(VideoTag::ExSequenceStart {
                fourcc,
                record: payload,
            }),
            1 | 3 => {
                let (cts, data) = if packet_type == 1 && &fourcc != b"av01" {
                    if payload.len() < 3 {
                        return Err(MediaError::Truncated { what: W });
                    }
                    let cts = (i32::from(payload[0]) << 24
                        | i32::from(payload[1]) << 16
                        | i32::from(payload[2]) << 8)
                        >> 8;
                    (cts, payload.slice(3..))
                } else {
                    (0, payload)
                };
                Ok(VideoTag::ExFrame {
                    fourcc,
                    keyframe: frame_type == 1,
                    composition_time_ms: cts,
                    data,
                })
            }
            2 => Ok(VideoTag::ExSequenceEnd),
            t => Ok(VideoTag::Unsupported(format!(
                "Enhanced RTMP packet type {t} ({})",
                String::from_utf8_lossy(&fourcc)
            ))),
        };
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    if codec_id != 7 {
        return Ok(VideoTag::Unsupported(format!(
            "FLV video codec id {codec_id}"
        )));
    }
    if body.len() < 5 {
        return Err(MediaError::Truncated { what: W });
    }
    let packet_type = body[1];
    // SI24, sign-extended.
    let cts = (i32::from(body[2]) << 24 | i32::from(body[3]) << 16 | i32::from(body[4]) << 8) >> 8;
    let payload = body.slice(5..);
    match packet_type {
        0 => Ok(VideoTag::AvcSequenceHeader(payload)),
        1 => {
            if frame_type == 5 {
                // Video info/command frame: carries no picture.
                return Ok(VideoTag::Unsupported("FLV video info frame".into()));
            }
            Ok(VideoTag::AvcFrame {
                keyframe: frame_type == 1,
                composition_time_ms: cts,
                data: payload,
            })
        }
        2 => Ok(VideoTag::AvcEndOfSequence),
        t => Err(MediaError::invalid(W, format!("AVCPacketType {t}"))),
    }
}

/// Parses the body of an RTMP audio message / FLV audio tag.
pub fn parse_audio(body: Bytes) -> Result<AudioTag> {
    const W: &str = "FLV audio tag";
    let first = *body.first().ok_or(MediaError::Truncated { what: W })?;
    let format = first >> 4;
    if format != 10 {
        return Ok(AudioTag::Unsupported(format!("FLV sound format {format}")));
    }
    let packet_type = *body.get(1).ok_or(MediaError::Truncated { what: W })?;
    let payload = body.slice(2..);
    match packet_type {
        0 => Ok(AudioTag::AacSequenceHeader(payload)),
        1 => Ok(AudioTag::AacFrame(payload)),
        t => Err(MediaError::invalid(W, format!("AACPacketType {t}"))),
    }
}

/// The type of an FLV file tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagKind {
    /// Audio (8).
    Audio,
    /// Video (9).
    Video,
    /// Script data (18), e.g. `onMetaData`.
    Script,
}

/// One tag of an FLV file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlvTag {
    /// The tag type.
    pub kind: TagKind,
    /// Decode timestamp in milliseconds (with the extended byte).
    pub timestamp_ms: u32,
    /// The tag body, as an RTMP message payload.
    pub body: Bytes,
}

/// Largest tag body accepted; the format allows 16 MiB, which no sane frame needs.
pub const MAX_TAG_BYTES: usize = 8 << 20;

/// Incremental FLV file reader: [`FlvReader::push`] bytes as they arrive, then call
/// [`FlvReader::next_tag`] until it answers `Ok(None)` (need more bytes).
#[derive(Default)]
pub struct FlvReader {
    buf: BytesMut,
    header_done: bool,
}

impl FlvReader {
    /// A reader expecting the 9-byte FLV header first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the source.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete tag, `Ok(None)` when more bytes are needed, or an error for input
    /// that is not FLV (after which the reader should be dropped).
    pub fn next_tag(&mut self) -> Result<Option<FlvTag>> {
        const W: &str = "FLV file";
        if !self.header_done {
            if self.buf.len() < 13 {
                return Ok(None);
            }
            if &self.buf[..3] != b"FLV" || self.buf[3] != 1 {
                return Err(MediaError::invalid(W, "missing FLV signature"));
            }
            let offset =
                u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) as usize;
            if !(9..=1024).contains(&offset) {
                return Err(MediaError::invalid(W, format!("header size {offset}")));
            }
            if self.buf.len() < offset + 4 {
                return Ok(None);
            }
            self.buf.advance(offset + 4); // header + PreviousTagSize0
            self.header_done = true;
        }
        loop {
            if self.buf.len() < 11 {
                return Ok(None);
            }
            let kind = match self.buf[0] & 0x1f {
                8 => Some(TagKind::Audio),
                9 => Some(TagKind::Video),
                18 => Some(TagKind::Script),
                _ => None,
            };
            if self.buf[0] & 0x20 != 0 {
                return Err(MediaError::Unsupported {
                    what: W,
                    why: "encrypted tags".into(),
                });
            }
            let size = (usize::from(self.buf[1]) << 16)
                | (usize::from(self.buf[2]) << 8)
                | usize::from(self.buf[3]);
            if size > MAX_TAG_BYTES {
                return Err(MediaError::invalid(W, format!("tag of {size} bytes")));
            }
            let ts = u32::from(self.buf[4]) << 16
                | u32::from(self.buf[5]) << 8
                | u32::from(self.buf[6])
                | u32::from(self.buf[7]) << 24;
            let total = 11 + size + 4;
            if self.buf.len() < total {
                self.buf.reserve(total - self.buf.len());
                return Ok(None);
            }
            let mut tag = self.buf.split_to(total);
            tag.advance(11);
            tag.truncate(size);
            if let Some(kind) = kind {
                return Ok(Some(FlvTag {
                    kind,
                    timestamp_ms: ts,
                    body: tag.freeze(),
                }));
            }
            // Unknown tag types are skipped, as the format requires.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_tags() {
        let seq = parse_video(Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 2, 3])).unwrap();
        assert_eq!(
            seq,
            VideoTag::AvcSequenceHeader(Bytes::from_static(&[1, 2, 3]))
        );
        let key = parse_video(Bytes::from_static(&[0x17, 1, 0, 0, 0x42, 9])).unwrap();
        assert_eq!(
            key,
            VideoTag::AvcFrame {
                keyframe: true,
                composition_time_ms: 66,
                data: Bytes::from_static(&[9])
            }
        );
        let inter = parse_video(Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xfe, 9])).unwrap();
        assert_eq!(
            inter,
            VideoTag::AvcFrame {
                keyframe: false,
                composition_time_ms: -2,
                data: Bytes::from_static(&[9])
            }
        );
        assert_eq!(
            parse_video(Bytes::from_static(&[0x17, 2, 0, 0, 0])).unwrap(),
            VideoTag::AvcEndOfSequence
        );
        assert!(matches!(
            parse_video(Bytes::from_static(&[0x12, 0])).unwrap(),
            VideoTag::Unsupported(_)
        ));
        assert_eq!(
            parse_video(Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1', 1, 2])).unwrap(),
            VideoTag::ExSequenceStart {
                fourcc: *b"hvc1",
                record: Bytes::from_static(&[1, 2])
            }
        );
        assert_eq!(
            parse_video(Bytes::from_static(&[0x93, b'h', b'v', b'c', b'1', 7])).unwrap(),
            VideoTag::ExFrame {
                fourcc: *b"hvc1",
                keyframe: true,
                composition_time_ms: 0,
                data: Bytes::from_static(&[7])
            }
        );
        assert_eq!(
            parse_video(Bytes::from_static(&[
                0xa1, b'h', b'v', b'c', b'1', 0, 0, 0x21, 7
            ]))
            .unwrap(),
            VideoTag::ExFrame {
                fourcc: *b"hvc1",
                keyframe: false,
                composition_time_ms: 33,
                data: Bytes::from_static(&[7])
            }
        );
        assert!(parse_video(Bytes::from_static(&[0x91, b'h', b'v', b'c'])).is_err());
        assert!(parse_video(Bytes::from_static(&[0x91, b'h', b'v', b'c', b'1', 0])).is_err());
        assert!(matches!(
            parse_video(Bytes::from_static(&[0x94, b'h', b'v', b'c', b'1'])).unwrap(),
            VideoTag::Unsupported(_)
        ));
    }

    #[test]
    fn malformed_video_tags_are_errors() {
        assert!(parse_video(Bytes::new()).is_err());
        assert!(parse_video(Bytes::from_static(&[0x17, 1, 0])).is_err());
        assert!(parse_video(Bytes::from_static(&[0x17, 7, 0, 0, 0])).is_err());
    }

    #[test]
    fn aac_tags() {
        assert_eq!(
            parse_audio(Bytes::from_static(&[0xaf, 0, 0x12, 0x10])).unwrap(),
            AudioTag::AacSequenceHeader(Bytes::from_static(&[0x12, 0x10]))
        );
        assert_eq!(
            parse_audio(Bytes::from_static(&[0xaf, 1, 5])).unwrap(),
            AudioTag::AacFrame(Bytes::from_static(&[5]))
        );
        assert!(matches!(
            parse_audio(Bytes::from_static(&[0x2f, 1])).unwrap(),
            AudioTag::Unsupported(_)
        ));
        assert!(parse_audio(Bytes::from_static(&[0xaf])).is_err());
        assert!(parse_audio(Bytes::new()).is_err());
        assert!(parse_audio(Bytes::from_static(&[0xaf, 3])).is_err());
    }

    fn file(tags: &[(u8, u32, &[u8])]) -> Vec<u8> {
        let mut f = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        for (kind, ts, body) in tags {
            f.push(*kind);
            f.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            f.extend_from_slice(&ts.to_be_bytes()[1..]);
            f.push((ts >> 24) as u8);
            f.extend_from_slice(&[0, 0, 0]);
            f.extend_from_slice(body);
            f.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
        }
        f
    }

    #[test]
    fn reads_tags_byte_by_byte() {
        let data = file(&[
            (9, 0, &[0x17, 0, 0, 0, 0]),
            (7, 5, &[1, 2]),
            (8, 0x0100_0000, &[0xaf, 1, 3]),
        ]);
        let mut r = FlvReader::new();
        let mut tags = Vec::new();
        for b in &data {
            r.push(std::slice::from_ref(b));
            while let Some(t) = r.next_tag().unwrap() {
                tags.push(t);
            }
        }
        assert_eq!(tags.len(), 2, "unknown tag type 7 is skipped");
        assert_eq!(tags[0].kind, TagKind::Video);
        assert_eq!(tags[1].kind, TagKind::Audio);
        assert_eq!(tags[1].timestamp_ms, 0x0100_0000);
        assert_eq!(&tags[1].body[..], &[0xaf, 1, 3]);
    }

    #[test]
    fn refuses_non_flv_and_giant_tags() {
        let mut r = FlvReader::new();
        r.push(b"GET / HTTP/1.1\r\n\r\n");
        assert!(r.next_tag().is_err());
        let mut data = file(&[]);
        data.extend_from_slice(&[9, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0]);
        let mut r = FlvReader::new();
        r.push(&data);
        assert!(r.next_tag().is_err());
    }
}
