//! H.264: the AVCDecoderConfigurationRecord (`avcC`) that RTMP sends as the AVC sequence
//! header, and the fields of the sequence parameter set that players need to know up front
//! (profile, level, coded size) and the `avc1.PPCCLL` CODECS string.

use bytes::Bytes;

use crate::bits::{BitReader, rbsp};
use crate::error::{MediaError, Result};

/// A parsed AVCDecoderConfigurationRecord.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcConfig {
    /// `AVCProfileIndication`.
    pub profile: u8,
    /// `profile_compatibility` (the constraint flags).
    pub compatibility: u8,
    /// `AVCLevelIndication`.
    pub level: u8,
    /// Bytes in each NAL unit length prefix of the samples (1, 2 or 4).
    pub nal_length_size: u8,
    /// Sequence parameter sets.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets.
    pub pps: Vec<Bytes>,
    /// What the first SPS says.
    pub sps_info: SpsInfo,
    /// The record as received, written unchanged into the init segment's `avcC` box.
    pub record: Bytes,
}

/// What the sequence parameter set says about the picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpsInfo {
    /// `profile_idc`.
    pub profile_idc: u8,
    /// The constraint-set flags byte.
    pub constraint_flags: u8,
    /// `level_idc`.
    pub level_idc: u8,
    /// Displayed width in pixels (after cropping).
    pub width: u32,
    /// Displayed height in pixels (after cropping).
    pub height: u32,
}

const WHAT: &str = "AVCDecoderConfigurationRecord";

impl AvcConfig {
    /// Parses an AVCDecoderConfigurationRecord.
    pub fn parse(record: Bytes) -> Result<Self> {
        let d = &record[..];
        if d.len() < 7 {
            return Err(MediaError::Truncated { what: WHAT });
        }
        if d[0] != 1 {
            return Err(MediaError::invalid(
                WHAT,
                format!("configurationVersion {} (expected 1)", d[0]),
            ));
        }
        let nal_length_size = (d[4] & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(MediaError::invalid(WHAT, "NAL length size 3"));
        }
        let mut pos = 5;
        let read_sets = |pos: &mut usize, count: usize| -> Result<Vec<Bytes>> {
            let mut sets = Vec::with_capacity(count.min(32));
            for _ in 0..count {
                let len_bytes = d
                    .get(*pos..*pos + 2)
                    .ok_or(MediaError::Truncated { what: WHAT })?;
                let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
                *pos += 2;
                if len == 0 || *pos + len > d.len() {
                    return Err(MediaError::Truncated { what: WHAT });
                }
                sets.push(record.slice(*pos..*pos + len));
                *pos += len;
            }
            Ok(sets)
        };
        let num_sps = usize::from(d[pos] & 0x1f);
        pos += 1;
        let sps = read_sets(&mut pos, num_sps)?;
        let num_pps = usize::from(*d.get(pos).ok_or(MediaError::Truncated { what: WHAT })?);
        pos += 1;
        let pps = read_sets(&mut pos, num_pps)?;
        let first = sps
            .first()
            .ok_or_else(|| MediaError::invalid(WHAT, "no SPS"))?;
        if pps.is_empty() {
            return Err(MediaError::invalid(WHAT, "no PPS"));
        }
        let sps_info = parse_sps(first)?;
        Ok(AvcConfig {
            profile: d[1],
            compatibility: d[2],
            level: d[3],
            nal_length_size,
            sps,
            pps,
            sps_info,
            record,
        })
    }

    /// The RFC 6381 CODECS value, from the SPS: `avc1.PPCCLL` in hex.
    pub fn codec_string(&self) -> String {
        let s = &self.sps_info;
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            s.profile_idc, s.constraint_flags, s.level_idc
        )
    }
}

/// Parses the picture size, profile and level from an SPS NAL unit (with its header byte).
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo> {
    const W: &str = "H.264 SPS";
    let header = *nal.first().ok_or(MediaError::Truncated { what: W })?;
    if header & 0x1f != 7 {
        return Err(MediaError::invalid(
            W,
            format!("NAL type {} is not an SPS", header & 0x1f),
        ));
    }
    let data = rbsp(&nal[1..]);
    let mut r = BitReader::new(&data, W);
    let profile_idc = r.bits(8)? as u8;
    let constraint_flags = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    let _sps_id = r.ue()?;
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return Err(MediaError::invalid(
                W,
                format!("chroma_format_idc {chroma_format_idc}"),
            ));
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        let _bit_depth_luma = r.ue()?;
        let _bit_depth_chroma = r.ue()?;
        let _qpprime_bypass = r.flag()?;
        if r.flag()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            let delta = r.se()?;
                            next = (last + delta + 256).rem_euclid(256);
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    let _log2_max_frame_num = r.ue()?;
    match r.ue()? {
        0 => {
            let _log2_max_poc_lsb = r.ue()?;
        }
        1 => {
            let _delta_always_zero = r.flag()?;
            let _offset_non_ref = r.se()?;
            let _offset_top_bottom = r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return Err(MediaError::invalid(
                    W,
                    "num_ref_frames_in_pic_order_cnt_cycle > 255",
                ));
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        t => return Err(MediaError::invalid(W, format!("pic_order_cnt_type {t}"))),
    }
    let _max_num_ref_frames = r.ue()?;
    let _gaps_allowed = r.flag()?;
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        let _mb_adaptive = r.flag()?;
    }
    let _direct_8x8 = r.flag()?;
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
    if r.flag()? {
        crop_l = r.ue()?.into();
        crop_r = r.ue()?.into();
        crop_t = r.ue()?.into();
        crop_b = r.ue()?.into();
    }
    let frame_height_factor = if frame_mbs_only { 1 } else { 2 };
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (crop_x, crop_y) = match chroma_array_type {
        0 => (1, frame_height_factor),
        1 => (2, 2 * frame_height_factor),
        2 => (2, frame_height_factor),
        _ => (1, frame_height_factor),
    };
    let full_w = width_mbs * 16;
    let full_h = height_map_units * 16 * frame_height_factor;
    let cut_w = crop_x * (crop_l + crop_r);
    let cut_h = crop_y * (crop_t + crop_b);
    if cut_w >= full_w || cut_h >= full_h || full_w > 16_384 || full_h > 16_384 {
        return Err(MediaError::invalid(
            W,
            format!("implausible picture size {full_w}x{full_h} cropped by {cut_w}x{cut_h}"),
        ));
    }
    Ok(SpsInfo {
        profile_idc,
        constraint_flags,
        level_idc,
        width: (full_w - cut_w) as u32,
        height: (full_h - cut_h) as u32,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// SPS and PPS written by x264 (`-profile:v high`, 1280x720: 80x45 macroblocks).
    pub(crate) const SPS_720P: [u8; 26] = [
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    pub(crate) const PPS: [u8; 6] = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    pub(crate) fn record(sps: &[u8], pps: &[u8]) -> Vec<u8> {
        let mut r = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        r.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        r.extend_from_slice(sps);
        r.push(1);
        r.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        r.extend_from_slice(pps);
        r
    }

    #[test]
    fn parses_a_720p_high_profile_record() {
        let c = AvcConfig::parse(Bytes::from(record(&SPS_720P, &PPS))).unwrap();
        assert_eq!((c.sps_info.width, c.sps_info.height), (1280, 720));
        assert_eq!(c.nal_length_size, 4);
        assert_eq!(c.codec_string(), "avc1.64001f");
        assert_eq!(c.sps.len(), 1);
        assert_eq!(c.pps.len(), 1);
    }

    #[test]
    fn cropping_is_applied() {
        // x264 baseline 1920x1080: 120x68 macroblocks cropped by 8 lines at the bottom.
        let sps = [
            0x67, 0x42, 0xc0, 0x28, 0xd9, 0x00, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
            0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc9, 0x20,
        ];
        let info = parse_sps(&sps).unwrap();
        assert_eq!((info.width, info.height), (1920, 1080));
        assert_eq!(info.profile_idc, 66);
    }

    #[test]
    fn malformed_records_are_errors() {
        let good = record(&SPS_720P, &PPS);
        for cut in 0..good.len() {
            assert!(
                AvcConfig::parse(Bytes::copy_from_slice(&good[..cut])).is_err(),
                "cut at {cut}"
            );
        }
        let mut bad = good.clone();
        bad[0] = 2;
        assert!(AvcConfig::parse(Bytes::from(bad)).is_err());
        assert!(parse_sps(&PPS).is_err());
        assert!(parse_sps(&[0x67, 0x64, 0, 0x1f, 0, 0, 0, 0]).is_err());
    }
}
