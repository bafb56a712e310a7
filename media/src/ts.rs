//! MPEG-TS demuxing (what SRT carries): PAT and PMT, PES reassembly per elementary stream,
//! continuity-counter errors counted and survived, 33-bit PTS/DTS unwrapped into a
//! monotonic 90 kHz timeline; H.264 Annex-B access units become length-prefixed samples
//! with an AVCDecoderConfigurationRecord built from their SPS/PPS, ADTS AAC frames become
//! raw frames with an AudioSpecificConfig. Sans-IO and incremental: feed bytes, take events.

use bytes::{BufMut, Bytes, BytesMut};

use crate::aac::AacConfig;
use crate::annexb::{avc_record, nal_units};
use crate::avc::AvcConfig;
use crate::error::{MediaError, Result};
use crate::frame::{AccessUnit, CodecConfig, TrackKind};
use crate::hevc::{self, HevcConfig};

/// TS packet size.
pub const PACKET: usize = 188;
/// Largest PES accepted (a very large keyframe); bigger ones are dropped and counted.
pub const MAX_PES: usize = 16 << 20;

/// What the demuxer produces.
#[derive(Clone, Debug, PartialEq)]
pub enum TsEvent {
    /// A track's codec configuration (first time, and whenever it changes).
    Config(CodecConfig),
    /// An access unit, timestamps on the unwrapped 90 kHz timeline.
    Frame(AccessUnit),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    H264,
    H265,
    Aac,
}

struct Pes {
    pid: u16,
    kind: Kind,
    buf: BytesMut,
    cc: Option<u8>,
    dropping: bool,
}

/// Counters of what went wrong in the input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TsStats {
    /// Packets whose continuity counter skipped (lost packets).
    pub cc_errors: u64,
    /// Packets without the 0x47 sync byte (resynchronised).
    pub sync_losses: u64,
    /// PES packets dropped (damaged or too large).
    pub dropped_pes: u64,
}

/// Unwraps a 33-bit clock into a monotonic i64.
#[derive(Default)]
struct Unwrap {
    last: Option<i64>,
    offset: i64,
}

impl Unwrap {
    fn unwrap(&mut self, raw: u64) -> i64 {
        const WRAP: i64 = 1 << 33;
        let raw = raw as i64;
        if let Some(last) = self.last {
            let prev = last - self.offset;
            if raw < prev && prev - raw > WRAP / 2 {
                self.offset += WRAP;
            } else if raw > prev && raw - prev > WRAP / 2 && self.offset >= WRAP {
                // A late timestamp from before the wrap.
                return raw + self.offset - WRAP;
            }
        }
        let v = raw + self.offset;
        self.last = Some(v);
        v
    }
}

/// The demuxer.
#[derive(Default)]
pub struct TsDemuxer {
    buf: BytesMut,
    pmt_pid: Option<u16>,
    streams: Vec<Pes>,
    clock: Unwrap,
    avc: Option<AvcConfig>,
    aac: Option<AacConfig>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    hevc: Option<HevcConfig>,
    hevc_sets: [Option<Bytes>; 3],
    stats: TsStats,
}

impl TsDemuxer {
    /// A demuxer waiting for a PAT.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the PMT announced an AAC stream.
    pub fn has_audio(&self) -> bool {
        self.streams.iter().any(|s| s.kind == Kind::Aac)
    }

    /// Errors counted so far.
    pub fn stats(&self) -> TsStats {
        self.stats
    }

    /// Feeds bytes (any split); returns the events completed by them.
    pub fn push(&mut self, data: &[u8]) -> Vec<TsEvent> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            // Resynchronise on the sync byte.
            let Some(start) = self.buf.iter().position(|b| *b == 0x47) else {
                if !self.buf.is_empty() {
                    self.stats.sync_losses += 1;
                }
                self.buf.clear();
                break;
            };
            if start > 0 {
                self.stats.sync_losses += 1;
                let _ = self.buf.split_to(start);
            }
            if self.buf.len() < PACKET {
                break;
            }
            let packet = self.buf.split_to(PACKET).freeze();
            self.packet(&packet, &mut out);
        }
        out
    }

    /// Flushes PES packets still being gathered (end of input).
    pub fn finish(&mut self) -> Vec<TsEvent> {
        let mut out = Vec::new();
        for i in 0..self.streams.len() {
            let buf = std::mem::take(&mut self.streams[i].buf);
            let kind = self.streams[i].kind;
            if !buf.is_empty() {
                self.pes(kind, buf.freeze(), &mut out);
            }
        }
        out
    }

    fn packet(&mut self, p: &[u8], out: &mut Vec<TsEvent>) {
        let pusi = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let afc = (p[3] >> 4) & 0x3;
        let cc = p[3] & 0x0f;
        let mut pos = 4;
        if afc & 0x2 != 0 {
            pos += 1 + usize::from(p[4]);
        }
        if afc & 0x1 == 0 || pos >= PACKET {
            return; // no payload
        }
        let payload = &p[pos..];
        if pid == 0 {
            if pusi {
                self.pat(payload);
            }
            return;
        }
        if Some(pid) == self.pmt_pid {
            if pusi {
                self.pmt(payload);
            }
            return;
        }
        let Some(i) = self.streams.iter().position(|s| s.pid == pid) else {
            return;
        };
        let s = &mut self.streams[i];
        if let Some(prev) = s.cc
            && cc != (prev + 1) & 0x0f
            && cc != prev
        {
            // Lost packets: the PES being gathered is damaged.
            self.stats.cc_errors += 1;
            if !s.buf.is_empty() {
                s.dropping = true;
            }
        }
        s.cc = Some(cc);
        if pusi {
            let done = std::mem::take(&mut s.buf);
            let damaged = std::mem::replace(&mut s.dropping, false);
            let kind = s.kind;
            s.buf.extend_from_slice(payload);
            if !done.is_empty() {
                if damaged {
                    self.stats.dropped_pes += 1;
                } else {
                    self.pes(kind, done.freeze(), out);
                }
            }
        } else if !s.buf.is_empty() {
            if s.buf.len() + payload.len() > MAX_PES {
                s.buf.clear();
                self.stats.dropped_pes += 1;
            } else {
                s.buf.extend_from_slice(payload);
            }
        }
    }

    fn section(payload: &[u8]) -> Option<&[u8]> {
        let pointer = usize::from(*payload.first()?);
        let sec = payload.get(1 + pointer..)?;
        let len = (usize::from(sec.get(1)? & 0x0f) << 8) | usize::from(*sec.get(2)?);
        sec.get(..3 + len)
    }

    fn pat(&mut self, payload: &[u8]) {
        let Some(sec) = Self::section(payload) else {
            return;
        };
        // Skip the 8-byte header; the last 4 bytes are the CRC.
        let Some(entries) = sec.get(8..sec.len().saturating_sub(4)) else {
            return;
        };
        for e in entries.chunks_exact(4) {
            let program = u16::from_be_bytes([e[0], e[1]]);
            if program != 0 {
                self.pmt_pid = Some((u16::from(e[2] & 0x1f) << 8) | u16::from(e[3]));
                return;
            }
        }
    }

    fn pmt(&mut self, payload: &[u8]) {
        let Some(sec) = Self::section(payload) else {
            return;
        };
        let Some(info_len) = sec
            .get(10..12)
            .map(|b| (usize::from(b[0] & 0x0f) << 8) | usize::from(b[1]))
        else {
            return;
        };
        let mut pos = 12 + info_len;
        let end = sec.len().saturating_sub(4);
        while pos + 5 <= end {
            let stream_type = sec[pos];
            let pid = (u16::from(sec[pos + 1] & 0x1f) << 8) | u16::from(sec[pos + 2]);
            let es_len = (usize::from(sec[pos + 3] & 0x0f) << 8) | usize::from(sec[pos + 4]);
            let kind = match stream_type {
                0x1b => Some(Kind::H264),
                0x24 => Some(Kind::H265),
                0x0f => Some(Kind::Aac),
                _ => None,
            };
            if let Some(kind) = kind
                && !self.streams.iter().any(|s| s.pid == pid)
            {
                self.streams.push(Pes {
                    pid,
                    kind,
                    buf: BytesMut::new(),
                    cc: None,
                    dropping: false,
                });
            }
            pos += 5 + es_len;
        }
    }

    fn pes(&mut self, kind: Kind, pes: Bytes, out: &mut Vec<TsEvent>) {
        let Ok((pts, dts, data)) = parse_pes(&pes) else {
            self.stats.dropped_pes += 1;
            return;
        };
        let Some(pts) = pts else {
            self.stats.dropped_pes += 1;
            return;
        };
        let pts = self.clock.unwrap(pts);
        let dts = dts.map_or(pts, |d| pts - ((pts - d as i64).rem_euclid(1 << 33)));
        match kind {
            Kind::H264 => self.h264(pts, dts, &data, out),
            Kind::H265 => self.h265(pts, dts, &data, out),
            Kind::Aac => self.adts(pts, &data, out),
        }
    }

    fn h264(&mut self, pts: i64, dts: i64, annexb: &[u8], out: &mut Vec<TsEvent>) {
        let mut sample = BytesMut::with_capacity(annexb.len() + 16);
        let mut keyframe = false;
        let mut params_changed = false;
        for nal in nal_units(annexb) {
            match nal[0] & 0x1f {
                7 => {
                    params_changed |= self.sps.as_deref() != Some(nal);
                    self.sps = Some(Bytes::copy_from_slice(nal));
                }
                8 => {
                    params_changed |= self.pps.as_deref() != Some(nal);
                    self.pps = Some(Bytes::copy_from_slice(nal));
                }
                9 => continue, // access unit delimiter: not needed in MP4 samples
                5 => keyframe = true,
                _ => {}
            }
            sample.put_u32(nal.len() as u32);
            sample.put_slice(nal);
        }
        if params_changed
            && let (Some(sps), Some(pps)) = (&self.sps, &self.pps)
            && let Ok(cfg) = AvcConfig::parse(avc_record(sps, pps))
        {
            self.avc = Some(cfg.clone());
            out.push(TsEvent::Config(CodecConfig::Avc(cfg)));
        }
        if self.avc.is_none() || sample.is_empty() {
            return; // nothing decodable before the parameter sets
        }
        out.push(TsEvent::Frame(AccessUnit {
            track: TrackKind::Video,
            dts,
            pts,
            keyframe,
            data: sample.freeze(),
        }));
    }

    fn h265(&mut self, pts: i64, dts: i64, annexb: &[u8], out: &mut Vec<TsEvent>) {
        let mut sample = BytesMut::with_capacity(annexb.len() + 16);
        let mut keyframe = false;
        let mut params_changed = false;
        for nal in nal_units(annexb) {
            let t = hevc::nal_type(nal);
            let slot = match t {
                hevc::VPS => Some(0),
                hevc::SPS => Some(1),
                hevc::PPS => Some(2),
                hevc::AUD => continue,
                t if hevc::is_irap(t) => {
                    keyframe = true;
                    None
                }
                _ => None,
            };
            if let Some(i) = slot {
                params_changed |= self.hevc_sets[i].as_deref() != Some(nal);
                self.hevc_sets[i] = Some(Bytes::copy_from_slice(nal));
            }
            sample.put_u32(nal.len() as u32);
            sample.put_slice(nal);
        }
        if params_changed
            && let [Some(vps), Some(sps), Some(pps)] = &self.hevc_sets
            && let Ok(cfg) = HevcConfig::from_parameter_sets(vps, sps, pps)
        {
            self.hevc = Some(cfg.clone());
            out.push(TsEvent::Config(CodecConfig::Hevc(cfg)));
        }
        if self.hevc.is_none() || sample.is_empty() {
            return;
        }
        out.push(TsEvent::Frame(AccessUnit {
            track: TrackKind::Video,
            dts,
            pts,
            keyframe,
            data: sample.freeze(),
        }));
    }

    fn adts(&mut self, pts: i64, mut data: &[u8], out: &mut Vec<TsEvent>) {
        let mut t = pts;
        while data.len() >= 7 {
            if data[0] != 0xff || data[1] & 0xf0 != 0xf0 {
                self.stats.dropped_pes += 1;
                return;
            }
            let protection_absent = data[1] & 0x01 == 1;
            let profile = (data[2] >> 6) + 1;
            let freq = (data[2] >> 2) & 0x0f;
            let channels = ((data[2] & 0x01) << 2) | (data[3] >> 6);
            let len = (usize::from(data[3] & 0x03) << 11)
                | (usize::from(data[4]) << 3)
                | usize::from(data[5] >> 5);
            let header = if protection_absent { 7 } else { 9 };
            if len < header || len > data.len() {
                self.stats.dropped_pes += 1;
                return;
            }
            let asc = Bytes::from(vec![
                (profile << 3) | (freq >> 1),
                ((freq & 1) << 7) | (channels << 3),
            ]);
            if self.aac.as_ref().is_none_or(|a| a.config != asc)
                && let Ok(cfg) = AacConfig::parse(asc)
            {
                self.aac = Some(cfg.clone());
                out.push(TsEvent::Config(CodecConfig::Aac(cfg)));
            }
            let Some(cfg) = &self.aac else { return };
            out.push(TsEvent::Frame(AccessUnit {
                track: TrackKind::Audio,
                dts: t,
                pts: t,
                keyframe: true,
                data: Bytes::copy_from_slice(&data[header..len]),
            }));
            t += 1024 * 90_000 / i64::from(cfg.sample_rate);
            data = &data[len..];
        }
    }
}

fn ts33(b: &[u8]) -> u64 {
    (u64::from(b[0] & 0x0e) << 29)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] & 0xfe) << 14)
        | (u64::from(b[3]) << 7)
        | (u64::from(b[4]) >> 1)
}

/// PTS, DTS and payload of a PES packet.
fn parse_pes(pes: &[u8]) -> Result<(Option<u64>, Option<u64>, Bytes)> {
    const W: &str = "PES packet";
    if pes.len() < 9 || pes[..3] != [0, 0, 1] {
        return Err(MediaError::invalid(W, "no start code"));
    }
    let flags = pes[7] >> 6;
    let header_len = usize::from(pes[8]);
    let start = 9 + header_len;
    if start > pes.len() {
        return Err(MediaError::Truncated { what: W });
    }
    let pts = (flags & 0x2 != 0 && header_len >= 5).then(|| ts33(&pes[9..14]));
    let dts = (flags == 0x3 && header_len >= 10).then(|| ts33(&pes[14..19]));
    Ok((pts, dts, Bytes::copy_from_slice(&pes[start..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_unwrap_at_2_pow_33() {
        let mut u = Unwrap::default();
        let near = (1u64 << 33) - 3000;
        assert_eq!(u.unwrap(near), near as i64);
        assert_eq!(u.unwrap(3000), (1i64 << 33) + 3000);
        assert_eq!(
            u.unwrap(near + 1000),
            near as i64 + 1000,
            "a late frame from before the wrap"
        );
        assert_eq!(u.unwrap(6000), (1i64 << 33) + 6000);
    }

    #[test]
    fn garbage_never_panics() {
        let mut d = TsDemuxer::new();
        let mut x: u32 = 7;
        let mut junk = Vec::new();
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            junk.push(if x.is_multiple_of(50) { 0x47 } else { x as u8 });
        }
        let _ = d.push(&junk);
        let _ = d.finish();
        assert!(d.stats().sync_losses > 0);
    }
}
