//! AV1: the AV1CodecConfigurationRecord (`av1C`) that Enhanced RTMP sends as the `av01`
//! sequence start, the picture size from its sequence header OBU, and the
//! `av01.P.LLT.DD` CODECS string.

use bytes::Bytes;

use crate::bits::BitReader;
use crate::error::{MediaError, Result};

/// A parsed av1C record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Av1Config {
    /// seq_profile.
    pub profile: u8,
    /// seq_level_idx_0.
    pub level: u8,
    /// seq_tier_0 (high tier).
    pub high_tier: bool,
    /// Bits per sample: 8, 10 or 12.
    pub bit_depth: u8,
    /// Maximum frame width from the sequence header.
    pub width: u32,
    /// Maximum frame height from the sequence header.
    pub height: u32,
    /// The record as received.
    pub record: Bytes,
}

const W: &str = "AV1CodecConfigurationRecord";

impl Av1Config {
    /// Parses an av1C record whose configOBUs hold the sequence header.
    pub fn parse(record: Bytes) -> Result<Self> {
        if record.len() < 4 || record[0] != 0x81 {
            return Err(MediaError::invalid(W, "missing marker/version 0x81"));
        }
        let profile = record[1] >> 5;
        let level = record[1] & 0x1f;
        let high_tier = record[2] & 0x80 != 0;
        let high_bitdepth = record[2] & 0x40 != 0;
        let twelve_bit = record[2] & 0x20 != 0;
        let bit_depth = match (high_bitdepth, twelve_bit) {
            (true, true) => 12,
            (true, false) => 10,
            _ => 8,
        };
        let (width, height) = sequence_header_size(&record[4..])?;
        Ok(Av1Config {
            profile,
            level,
            high_tier,
            bit_depth,
            width,
            height,
            record,
        })
    }

    /// The CODECS value, e.g. `av01.0.04M.08`.
    pub fn codec_string(&self) -> String {
        format!(
            "av01.{}.{:02}{}.{:02}",
            self.profile,
            self.level,
            if self.high_tier { 'H' } else { 'M' },
            self.bit_depth
        )
    }
}

fn leb128(data: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for i in 0..8 {
        let b = *data.get(*pos).ok_or(MediaError::Truncated { what: W })?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(MediaError::invalid(W, "leb128 too long"))
}

/// Finds the sequence header OBU in `obus` and reads max_frame_width/height from it.
pub fn sequence_header_size(obus: &[u8]) -> Result<(u32, u32)> {
    let mut pos = 0;
    while pos < obus.len() {
        let header = obus[pos];
        let obu_type = (header >> 3) & 0x0f;
        let has_extension = header & 0x04 != 0;
        let has_size = header & 0x02 != 0;
        pos += 1 + usize::from(has_extension);
        let size = if has_size {
            leb128(obus, &mut pos)? as usize
        } else {
            obus.len().saturating_sub(pos)
        };
        let body = obus
            .get(pos..pos + size)
            .ok_or(MediaError::Truncated { what: W })?;
        if obu_type == 1 {
            return parse_sequence_header(body);
        }
        pos += size;
    }
    Err(MediaError::invalid(W, "no sequence header OBU"))
}

fn parse_sequence_header(body: &[u8]) -> Result<(u32, u32)> {
    let mut r = BitReader::new(body, "AV1 sequence header");
    let _profile = r.bits(3)?;
    let _still = r.bit()?;
    let reduced = r.flag()?;
    if reduced {
        r.bits(5)?;
    } else {
        let timing = r.flag()?;
        let mut decoder_model = false;
        let mut buffer_delay_len = 0;
        if timing {
            r.bits(32)?;
            r.bits(32)?;
            if r.flag()? {
                // uvlc num_ticks_per_picture_minus_1
                let mut zeros = 0;
                while r.bit()? == 0 {
                    zeros += 1;
                    if zeros >= 32 {
                        return Err(MediaError::invalid("AV1 sequence header", "uvlc too long"));
                    }
                }
                r.bits(zeros)?;
            }
            decoder_model = r.flag()?;
            if decoder_model {
                buffer_delay_len = r.bits(5)? + 1;
                r.bits(32)?;
                r.bits(5)?;
                r.bits(5)?;
            }
        }
        let initial_display_delay = r.flag()?;
        let points = r.bits(5)? + 1;
        for _ in 0..points {
            r.bits(12)?;
            let level = r.bits(5)?;
            if level > 7 {
                r.bit()?;
            }
            if decoder_model && r.flag()? {
                r.bits(buffer_delay_len)?;
                r.bits(buffer_delay_len)?;
                r.bit()?;
            }
            if initial_display_delay && r.flag()? {
                r.bits(4)?;
            }
        }
    }
    let wbits = r.bits(4)? + 1;
    let hbits = r.bits(4)? + 1;
    let width = r.bits(wbits)? + 1;
    let height = r.bits(hbits)? + 1;
    Ok((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequence header SVT-AV1 writes for 320x180 main profile (OBU with size field).
    const SEQ_OBU: [u8; 13] = [
        0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xfe, 0xcc, 0xfb, 0xf9, 0x00, 0x40,
    ];

    #[test]
    fn svt_av1_sequence_header() {
        // seq_profile 0 in the top 3 bits, seq_level_idx 4.
        let mut record = vec![0x81, 4, 0x0c, 0x00];
        record.extend_from_slice(&SEQ_OBU);
        let c = Av1Config::parse(Bytes::from(record)).unwrap();
        assert_eq!((c.width, c.height), (320, 180));
        assert_eq!(c.codec_string(), "av01.0.04M.08");
    }

    #[test]
    fn malformed_records_are_errors() {
        assert!(Av1Config::parse(Bytes::from_static(&[0x81, 0, 0])).is_err());
        assert!(Av1Config::parse(Bytes::from_static(&[0x80, 0, 0, 0])).is_err());
        let mut record = vec![0x81, 4, 0x0c, 0x00];
        record.extend_from_slice(&SEQ_OBU[..6]);
        assert!(Av1Config::parse(Bytes::from(record)).is_err());
    }
}
