//! Bit-level reading for codec headers (H.264 SPS, AudioSpecificConfig): fixed-width fields
//! and Exp-Golomb codes, with every read bounds-checked.

use crate::error::{MediaError, Result};

/// Reads bits MSB-first from a byte slice.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8], what: &'static str) -> Self {
        BitReader { data, pos: 0, what }
    }

    pub(crate) fn bit(&mut self) -> Result<u32> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or(MediaError::Truncated { what: self.what })?;
        let b = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(u32::from(b))
    }

    /// Reads `n` ≤ 32 bits.
    pub(crate) fn bits(&mut self, n: u32) -> Result<u32> {
        debug_assert!(n <= 32);
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Ok(v as u32)
    }

    pub(crate) fn flag(&mut self) -> Result<bool> {
        Ok(self.bit()? == 1)
    }

    /// Unsigned Exp-Golomb (`ue(v)`), limited to values that fit in 32 bits.
    pub(crate) fn ue(&mut self) -> Result<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(MediaError::invalid(
                    self.what,
                    "Exp-Golomb code longer than 32 bits",
                ));
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)) as u32)
    }

    /// Signed Exp-Golomb (`se(v)`).
    pub(crate) fn se(&mut self) -> Result<i32> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        Ok(v as i32)
    }
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`) from a NAL unit's payload.
pub(crate) fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_codes() {
        // 1 | 010 | 011 | 00100 | 00101 -> 0, 1, 2, 3, 4
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data, "test");
        assert_eq!(r.ue().unwrap(), 0);
        assert_eq!(r.ue().unwrap(), 1);
        assert_eq!(r.ue().unwrap(), 2);
        assert_eq!(r.ue().unwrap(), 3);
        assert_eq!(r.ue().unwrap(), 4);
        let mut r = BitReader::new(&[0b0100_1100], "test");
        assert_eq!(r.se().unwrap(), 1);
        assert_eq!(r.se().unwrap(), -1);
    }

    #[test]
    fn reads_past_the_end_are_errors() {
        let mut r = BitReader::new(&[0, 0, 0, 0, 0], "test");
        assert!(r.ue().is_err());
        let mut r = BitReader::new(&[0xff], "test");
        assert_eq!(r.bits(8).unwrap(), 255);
        assert_eq!(r.bit().unwrap_err(), MediaError::Truncated { what: "test" });
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(rbsp(&[0, 0, 3, 1, 0, 0, 3]), vec![0, 0, 1, 0, 0]);
        assert_eq!(rbsp(&[0, 3, 0]), vec![0, 3, 0]);
    }
}
