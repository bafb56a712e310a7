//! Annex-B byte streams (start-code delimited NAL units), as MPEG-TS carries H.264/H.265 and
//! as encoders write them, and the conversions to the length-prefixed form MP4 stores.

use bytes::{BufMut, Bytes, BytesMut};

/// NAL units of an Annex-B byte stream, without start codes.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(data.len(), |n| n - 3);
        // A 4-byte start code leaves a zero before the next 3-byte one.
        while end > s && data[end - 1] == 0 && starts.get(k + 1).is_some() {
            end -= 1;
        }
        if end > s {
            units.push(&data[s..end]);
        }
    }
    units.into_iter()
}

/// An AVCDecoderConfigurationRecord for one SPS and one PPS.
pub fn avc_record(sps: &[u8], pps: &[u8]) -> Bytes {
    let mut r = BytesMut::with_capacity(11 + sps.len() + pps.len());
    r.put_slice(&[
        1,
        *sps.get(1).unwrap_or(&0),
        *sps.get(2).unwrap_or(&0),
        *sps.get(3).unwrap_or(&0),
        0xff,
        0xe1,
    ]);
    r.put_u16(sps.len() as u16);
    r.put_slice(sps);
    r.put_u8(1);
    r.put_u16(pps.len() as u16);
    r.put_slice(pps);
    r.freeze()
}

/// Annex-B NAL units → one sample of 4-byte length-prefixed NAL units, leaving out those for
/// which `drop` is true (parameter sets and access unit delimiters, which MP4 keeps in the
/// sample entry or not at all).
pub fn to_length_prefixed(annexb: &[u8], mut drop: impl FnMut(&[u8]) -> bool) -> Bytes {
    let mut out = BytesMut::with_capacity(annexb.len() + 16);
    for nal in nal_units(annexb) {
        if drop(nal) {
            continue;
        }
        out.put_u32(nal.len() as u32);
        out.put_slice(nal);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annex_b_splits_on_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5,
        ];
        let units: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(
            units,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]
        );
    }

    #[test]
    fn length_prefixed_keeps_what_is_not_dropped() {
        let data = [0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x65, 4, 5];
        let s = to_length_prefixed(&data, |n| n[0] & 0x1f == 9);
        assert_eq!(&s[..], &[0, 0, 0, 3, 0x65, 4, 5]);
    }
}
