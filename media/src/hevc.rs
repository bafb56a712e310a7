//! H.265/HEVC: parameter sets → the HEVCDecoderConfigurationRecord (`hvcC`) of the init
//! segment and the `hvc1.` CODECS string (ISO/IEC 14496-15 annex E), parsed from the SPS.

use bytes::{BufMut, Bytes, BytesMut};

use crate::bits::{BitReader, rbsp};
use crate::error::{MediaError, Result};

/// NAL unit types that matter here.
pub const VPS: u8 = 32;
/// Sequence parameter set.
pub const SPS: u8 = 33;
/// Picture parameter set.
pub const PPS: u8 = 34;
/// Access unit delimiter.
pub const AUD: u8 = 35;

/// The NAL unit type of an HEVC NAL unit.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| (b >> 1) & 0x3f)
}

/// Whether a NAL unit type is an IRAP picture (decoding can start there).
pub fn is_irap(t: u8) -> bool {
    (16..=23).contains(&t)
}

/// What the SPS says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HevcSps {
    /// general_profile_space.
    pub profile_space: u8,
    /// general_tier_flag.
    pub tier: bool,
    /// general_profile_idc.
    pub profile_idc: u8,
    /// general_profile_compatibility_flags.
    pub compatibility: u32,
    /// general constraint indicator flags (48 bits).
    pub constraints: u64,
    /// general_level_idc.
    pub level_idc: u8,
    /// chroma_format_idc.
    pub chroma_format: u8,
    /// Luma bit depth.
    pub bit_depth_luma: u8,
    /// Chroma bit depth.
    pub bit_depth_chroma: u8,
    /// Displayed width.
    pub width: u32,
    /// Displayed height.
    pub height: u32,
}

/// An HEVC configuration: the record and what players need from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HevcConfig {
    /// The SPS fields.
    pub sps: HevcSps,
    /// The HEVCDecoderConfigurationRecord.
    pub record: Bytes,
}

const W: &str = "HEVC SPS";

/// Parses an SPS NAL unit (with its 2-byte header).
pub fn parse_sps(nal: &[u8]) -> Result<HevcSps> {
    if nal.len() < 3 || nal_type(nal) != SPS {
        return Err(MediaError::invalid(W, "not an SPS"));
    }
    let data = rbsp(&nal[2..]);
    let mut r = BitReader::new(&data, W);
    let _vps_id = r.bits(4)?;
    let max_sub_layers_minus1 = r.bits(3)? as usize;
    let _temporal_id_nesting = r.bit()?;
    // profile_tier_level(1, max_sub_layers_minus1)
    let profile_space = r.bits(2)? as u8;
    let tier = r.flag()?;
    let profile_idc = r.bits(5)? as u8;
    let compatibility = r.bits(32)?;
    let constraints = (u64::from(r.bits(16)?) << 32) | u64::from(r.bits(32)?);
    let level_idc = r.bits(8)? as u8;
    let mut sub_profile = [false; 8];
    let mut sub_level = [false; 8];
    for i in 0..max_sub_layers_minus1 {
        sub_profile[i] = r.flag()?;
        sub_level[i] = r.flag()?;
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            r.bits(2)?;
        }
    }
    for i in 0..max_sub_layers_minus1 {
        if sub_profile[i] {
            r.bits(32)?;
            r.bits(32)?;
            r.bits(24)?;
        }
        if sub_level[i] {
            r.bits(8)?;
        }
    }
    let _sps_id = r.ue()?;
    let chroma_format = r.ue()?;
    if chroma_format > 3 {
        return Err(MediaError::invalid(
            W,
            format!("chroma_format_idc {chroma_format}"),
        ));
    }
    if chroma_format == 3 {
        r.flag()?;
    }
    let width = r.ue()?;
    let height = r.ue()?;
    let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
    if r.flag()? {
        cl = r.ue()?;
        cr = r.ue()?;
        ct = r.ue()?;
        cb = r.ue()?;
    }
    let bit_depth_luma = r.ue()? + 8;
    let bit_depth_chroma = r.ue()? + 8;
    let (sub_w, sub_h): (u32, u32) = match chroma_format {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let crop_w = u64::from(sub_w) * (u64::from(cl) + u64::from(cr));
    let crop_h = u64::from(sub_h) * (u64::from(ct) + u64::from(cb));
    if width == 0
        || height == 0
        || width > 16384
        || height > 16384
        || crop_w >= u64::from(width)
        || crop_h >= u64::from(height)
    {
        return Err(MediaError::invalid(
            W,
            format!("implausible picture size {width}x{height}"),
        ));
    }
    Ok(HevcSps {
        profile_space,
        tier,
        profile_idc,
        compatibility,
        constraints,
        level_idc,
        chroma_format: chroma_format as u8,
        bit_depth_luma: bit_depth_luma.min(16) as u8,
        bit_depth_chroma: bit_depth_chroma.min(16) as u8,
        width: width - crop_w as u32,
        height: height - crop_h as u32,
    })
}

impl HevcConfig {
    /// Builds the record from one VPS, SPS and PPS.
    pub fn from_parameter_sets(vps: &[u8], sps: &[u8], pps: &[u8]) -> Result<Self> {
        let info = parse_sps(sps)?;
        let mut r = BytesMut::with_capacity(64 + vps.len() + sps.len() + pps.len());
        r.put_u8(1);
        r.put_u8((info.profile_space << 6) | (u8::from(info.tier) << 5) | info.profile_idc);
        r.put_u32(info.compatibility);
        r.put_u16((info.constraints >> 32) as u16);
        r.put_u32(info.constraints as u32);
        r.put_u8(info.level_idc);
        r.put_u16(0xf000); // min_spatial_segmentation_idc 0
        r.put_u8(0xfc); // parallelismType 0
        r.put_u8(0xfc | info.chroma_format);
        r.put_u8(0xf8 | (info.bit_depth_luma - 8));
        r.put_u8(0xf8 | (info.bit_depth_chroma - 8));
        r.put_u16(0); // avgFrameRate
        r.put_u8(0x0f); // constantFrameRate 0, numTemporalLayers 1, temporalIdNested 1, lengthSizeMinusOne 3
        r.put_u8(3);
        for (t, nal) in [(VPS, vps), (SPS, sps), (PPS, pps)] {
            r.put_u8(0x80 | t); // array_completeness
            r.put_u16(1);
            r.put_u16(
                u16::try_from(nal.len())
                    .map_err(|_| MediaError::invalid(W, "parameter set too large"))?,
            );
            r.put_slice(nal);
        }
        Ok(HevcConfig {
            sps: info,
            record: r.freeze(),
        })
    }

    /// Parses an HEVCDecoderConfigurationRecord (as Enhanced RTMP sends it).
    pub fn parse(record: Bytes) -> Result<Self> {
        const R: &str = "HEVCDecoderConfigurationRecord";
        if record.len() < 23 || record[0] != 1 {
            return Err(MediaError::invalid(R, "too short or wrong version"));
        }
        let mut pos = 23;
        let arrays = record[22];
        for _ in 0..arrays {
            let t = *record.get(pos).ok_or(MediaError::Truncated { what: R })? & 0x3f;
            let n = u16::from_be_bytes([
                *record
                    .get(pos + 1)
                    .ok_or(MediaError::Truncated { what: R })?,
                *record
                    .get(pos + 2)
                    .ok_or(MediaError::Truncated { what: R })?,
            ]);
            pos += 3;
            for _ in 0..n {
                let len = usize::from(u16::from_be_bytes([
                    *record.get(pos).ok_or(MediaError::Truncated { what: R })?,
                    *record
                        .get(pos + 1)
                        .ok_or(MediaError::Truncated { what: R })?,
                ]));
                pos += 2;
                let nal = record
                    .get(pos..pos + len)
                    .ok_or(MediaError::Truncated { what: R })?;
                if t == SPS {
                    let sps = parse_sps(nal)?;
                    return Ok(HevcConfig { sps, record });
                }
                pos += len;
            }
        }
        Err(MediaError::invalid(R, "no SPS"))
    }

    /// The CODECS value, e.g. `hvc1.1.6.L93.B0`.
    pub fn codec_string(&self) -> String {
        let s = &self.sps;
        let space = match s.profile_space {
            1 => "A",
            2 => "B",
            3 => "C",
            _ => "",
        };
        let compat = s.compatibility.reverse_bits();
        let tier = if s.tier { 'H' } else { 'L' };
        let mut out = format!(
            "hvc1.{space}{}.{compat:X}.{tier}{}",
            s.profile_idc, s.level_idc
        );
        let bytes = s.constraints.to_be_bytes();
        let constraint = &bytes[2..];
        let last = constraint.iter().rposition(|b| *b != 0);
        if let Some(last) = last {
            for b in &constraint[..=last] {
                out.push_str(&format!(".{b:X}"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameter sets written by x265 for 1280x720 Main.
    const VPS_NAL: [u8; 24] = [
        0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00,
        0x03, 0x00, 0x00, 0x03, 0x00, 0x5d, 0x95, 0x98, 0x09,
    ];
    const SPS_NAL: [u8; 43] = [
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x5d, 0xa0, 0x02, 0x80, 0x80, 0x2d, 0x16, 0x59, 0x59, 0xa4, 0x93, 0x2b, 0xc0,
        0x5a, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x10,
    ];
    const PPS_NAL: [u8; 7] = [0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40];

    #[test]
    fn x265_720p_main() {
        let c = HevcConfig::from_parameter_sets(&VPS_NAL, &SPS_NAL, &PPS_NAL).unwrap();
        assert_eq!((c.sps.width, c.sps.height), (1280, 720));
        assert_eq!(
            (c.sps.profile_idc, c.sps.level_idc, c.sps.tier),
            (1, 93, false)
        );
        assert_eq!(c.codec_string(), "hvc1.1.6.L93.90");
        // The record parses back to the same configuration.
        assert_eq!(HevcConfig::parse(c.record.clone()).unwrap(), c);
    }

    #[test]
    fn malformed_parameter_sets_are_errors() {
        // Everything up to the bit depths is needed; any shorter SPS is refused, never a panic.
        for cut in 0..SPS_NAL.len() {
            let parsed = parse_sps(&SPS_NAL[..cut]);
            if cut < 22 {
                assert!(parsed.is_err(), "cut at {cut}");
            }
        }
        assert!(parse_sps(&PPS_NAL).is_err());
        assert!(HevcConfig::parse(Bytes::from_static(&[1, 2, 3])).is_err());
    }
}
