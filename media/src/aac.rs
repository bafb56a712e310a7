//! AAC: the AudioSpecificConfig (ISO 14496-3) that RTMP sends as the AAC sequence header,
//! for the `mp4a.40.x` CODECS string, the sample rate and channel count of the init segment.

use bytes::Bytes;

use crate::bits::BitReader;
use crate::error::{MediaError, Result};

/// A parsed AudioSpecificConfig.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AacConfig {
    /// Audio object type (2 = AAC-LC, 5 = HE-AAC/SBR, 29 = HE-AACv2/PS).
    pub object_type: u8,
    /// Sampling frequency in Hz of the core decoder.
    pub sample_rate: u32,
    /// Channel configuration (1 = mono, 2 = stereo, ...).
    pub channels: u8,
    /// The config as received, written unchanged into the init segment's `esds` box.
    pub config: Bytes,
}

/// Samples per AAC access unit (frame) in the core decoder's timescale.
pub const SAMPLES_PER_FRAME: u32 = 1024;

const WHAT: &str = "AudioSpecificConfig";
const RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

impl AacConfig {
    /// Parses an AudioSpecificConfig.
    pub fn parse(config: Bytes) -> Result<Self> {
        let mut r = BitReader::new(&config, WHAT);
        let mut object_type = r.bits(5)?;
        if object_type == 31 {
            object_type = 32 + r.bits(6)?;
        }
        if object_type == 0 {
            return Err(MediaError::invalid(WHAT, "audio object type 0"));
        }
        let index = r.bits(4)?;
        let sample_rate = if index == 15 {
            r.bits(24)?
        } else {
            *RATES.get(index as usize).ok_or_else(|| {
                MediaError::invalid(WHAT, format!("sampling frequency index {index}"))
            })?
        };
        if !(7350..=96000).contains(&sample_rate) {
            return Err(MediaError::invalid(
                WHAT,
                format!("sample rate {sample_rate}"),
            ));
        }
        let channels = r.bits(4)? as u8;
        if channels == 0 || channels > 7 {
            return Err(MediaError::Unsupported {
                what: WHAT,
                why: format!("channel configuration {channels}"),
            });
        }
        Ok(AacConfig {
            object_type: object_type as u8,
            sample_rate,
            channels,
            config,
        })
    }

    /// The RFC 6381 CODECS value: `mp4a.40.<object type>`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aac_lc_44100_stereo() {
        let c = AacConfig::parse(Bytes::from_static(&[0x12, 0x10])).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 44100, 2));
        assert_eq!(c.codec_string(), "mp4a.40.2");
    }

    #[test]
    fn aac_lc_48000_mono_and_he_aac() {
        let c = AacConfig::parse(Bytes::from_static(&[0x11, 0x88])).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 48000, 1));
        let he = AacConfig::parse(Bytes::from_static(&[0x2b, 0x11, 0x88])).unwrap();
        assert_eq!(he.codec_string(), "mp4a.40.5");
    }

    #[test]
    fn malformed_configs_are_errors() {
        assert!(AacConfig::parse(Bytes::new()).is_err());
        assert!(AacConfig::parse(Bytes::from_static(&[0x12])).is_err());
        assert!(AacConfig::parse(Bytes::from_static(&[0x17, 0x80])).is_err()); // rate index 15 then truncated
        assert!(AacConfig::parse(Bytes::from_static(&[0x16, 0x80])).is_err()); // index 13
        assert!(AacConfig::parse(Bytes::from_static(&[0x12, 0x00])).is_err()); // 0 channels
    }
}
