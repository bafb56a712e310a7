//! Normalized access units: what every ingest protocol turns its input into and what the
//! packager consumes. Timestamps are in one fixed 90 kHz timebase whatever the source.

use bytes::Bytes;

use crate::aac::AacConfig;
use crate::av1::Av1Config;
use crate::avc::AvcConfig;
use crate::hevc::HevcConfig;

/// Ticks per second of [`AccessUnit`] timestamps.
pub const TIMEBASE: u32 = 90_000;

/// Converts milliseconds (RTMP's timebase) to [`TIMEBASE`] ticks.
pub fn ms_to_ticks(ms: i64) -> i64 {
    ms * i64::from(TIMEBASE / 1000)
}

/// Which track an access unit belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// The video track.
    Video,
    /// The audio track.
    Audio,
}

/// One coded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessUnit {
    /// Its track.
    pub track: TrackKind,
    /// Decode timestamp in [`TIMEBASE`] ticks.
    pub dts: i64,
    /// Presentation timestamp in [`TIMEBASE`] ticks (≥ `dts` for well-formed input).
    pub pts: i64,
    /// Whether decoding can start here (an IDR picture; every audio frame).
    pub keyframe: bool,
    /// The coded frame: length-prefixed NAL units for video, a raw AAC frame for audio.
    pub data: Bytes,
}

/// A track's codec configuration, from the ingest's sequence headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecConfig {
    /// H.264.
    Avc(AvcConfig),
    /// H.265.
    Hevc(HevcConfig),
    /// AV1.
    Av1(Av1Config),
    /// AAC.
    Aac(AacConfig),
}

impl CodecConfig {
    /// The RFC 6381 CODECS value.
    pub fn codec_string(&self) -> String {
        match self {
            CodecConfig::Avc(c) => c.codec_string(),
            CodecConfig::Hevc(c) => c.codec_string(),
            CodecConfig::Av1(c) => c.codec_string(),
            CodecConfig::Aac(c) => c.codec_string(),
        }
    }

    /// Displayed picture size, for video.
    pub fn resolution(&self) -> Option<(u32, u32)> {
        match self {
            CodecConfig::Avc(c) => Some((c.sps_info.width, c.sps_info.height)),
            CodecConfig::Hevc(c) => Some((c.sps.width, c.sps.height)),
            CodecConfig::Av1(c) => Some((c.width, c.height)),
            CodecConfig::Aac(_) => None,
        }
    }

    /// The track kind this codec belongs on.
    pub fn kind(&self) -> TrackKind {
        match self {
            CodecConfig::Avc(_) | CodecConfig::Hevc(_) | CodecConfig::Av1(_) => TrackKind::Video,
            CodecConfig::Aac(_) => TrackKind::Audio,
        }
    }

    /// The timescale of this track in the fMP4 output: 90 kHz for video, the sample rate for
    /// audio (so that every AAC frame lasts exactly 1024 ticks).
    pub fn timescale(&self) -> u32 {
        match self {
            CodecConfig::Avc(_) | CodecConfig::Hevc(_) | CodecConfig::Av1(_) => TIMEBASE,
            CodecConfig::Aac(c) => c.sample_rate,
        }
    }
}
