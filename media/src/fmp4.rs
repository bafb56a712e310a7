//! A CMAF fragmented-MP4 writer: the init segment (`ftyp` + `moov` with `mvex`) and media
//! fragments (`moof` + `mdat`) with `tfdt` and per-sample duration, size, flags and
//! composition offset.
//!
//! Written by hand (the `mp4` crate cannot write fragmented files): each box is appended
//! with a placeholder size that is patched when the box is closed.

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::CodecConfig;

/// A track of the init segment.
#[derive(Clone, Debug)]
pub struct TrackSpec {
    /// Track ID (1-based), used by fragments to refer to it.
    pub id: u32,
    /// Codec and configuration; also decides the timescale.
    pub codec: CodecConfig,
}

/// One sample of a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Duration in the track's timescale.
    pub duration: u32,
    /// Size of its data in bytes.
    pub size: u32,
    /// A sync sample (decoding can start here).
    pub keyframe: bool,
    /// Presentation minus decode time, in the track's timescale.
    pub composition_offset: i32,
}

/// One track's run of samples in a fragment.
#[derive(Clone, Debug)]
pub struct TrackRun {
    /// The track.
    pub track_id: u32,
    /// Decode time of the first sample, in the track's timescale (`tfdt`).
    pub base_decode_time: u64,
    /// The samples.
    pub samples: Vec<Sample>,
    /// Their data, in order.
    pub data: Vec<Bytes>,
}

struct Writer {
    buf: BytesMut,
    open: Vec<usize>,
}

impl Writer {
    fn new() -> Self {
        Writer {
            buf: BytesMut::with_capacity(1024),
            open: Vec::new(),
        }
    }

    fn open(&mut self, fourcc: &[u8; 4]) {
        self.open.push(self.buf.len());
        self.buf.put_u32(0);
        self.buf.put_slice(fourcc);
    }

    fn open_full(&mut self, fourcc: &[u8; 4], version: u8, flags: u32) {
        self.open(fourcc);
        self.buf
            .put_u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
    }

    fn close(&mut self) {
        if let Some(start) = self.open.pop() {
            let size = (self.buf.len() - start) as u32;
            self.buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
        }
    }

    fn zeros(&mut self, n: usize) {
        self.buf.put_bytes(0, n);
    }

    fn matrix(&mut self) {
        for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
            self.buf.put_u32(v);
        }
    }

    fn finish(self) -> Bytes {
        debug_assert!(self.open.is_empty());
        self.buf.freeze()
    }
}

/// The init segment for `tracks`.
pub fn init_segment(tracks: &[TrackSpec]) -> Bytes {
    let mut w = Writer::new();
    w.open(b"ftyp");
    w.buf.put_slice(b"iso6");
    w.buf.put_u32(0);
    for brand in [b"iso6", b"cmfc", b"isom", b"mp41"] {
        w.buf.put_slice(brand);
    }
    w.close();

    w.open(b"moov");
    w.open_full(b"mvhd", 0, 0);
    w.zeros(8); // creation, modification
    w.buf.put_u32(1000); // timescale
    w.buf.put_u32(0); // duration: unknown (fragmented)
    w.buf.put_u32(0x0001_0000); // rate 1.0
    w.buf.put_u16(0x0100); // volume 1.0
    w.zeros(10);
    w.matrix();
    w.zeros(24); // pre_defined
    w.buf
        .put_u32(tracks.iter().map(|t| t.id).max().unwrap_or(0) + 1);
    w.close();

    for t in tracks {
        write_trak(&mut w, t);
    }

    w.open(b"mvex");
    for t in tracks {
        w.open_full(b"trex", 0, 0);
        w.buf.put_u32(t.id);
        w.buf.put_u32(1); // sample description index
        w.zeros(12); // default duration, size, flags
        w.close();
    }
    w.close();
    w.close(); // moov
    w.finish()
}

fn write_trak(w: &mut Writer, t: &TrackSpec) {
    let (width, height) = t.codec.resolution().unwrap_or((0, 0));
    let is_video = t.codec.resolution().is_some();
    w.open(b"trak");
    w.open_full(b"tkhd", 0, 0x3); // enabled, in movie
    w.zeros(8);
    w.buf.put_u32(t.id);
    w.zeros(4);
    w.buf.put_u32(0); // duration
    w.zeros(8);
    w.buf.put_u16(0); // layer
    w.buf.put_u16(0); // alternate group
    w.buf.put_u16(if is_video { 0 } else { 0x0100 });
    w.zeros(2);
    w.matrix();
    w.buf.put_u32(width << 16);
    w.buf.put_u32(height << 16);
    w.close();

    w.open(b"mdia");
    w.open_full(b"mdhd", 0, 0);
    w.zeros(8);
    w.buf.put_u32(t.codec.timescale());
    w.buf.put_u32(0);
    w.buf.put_u16(0x55c4); // "und"
    w.buf.put_u16(0);
    w.close();
    w.open_full(b"hdlr", 0, 0);
    w.buf.put_u32(0);
    w.buf.put_slice(if is_video { b"vide" } else { b"soun" });
    w.zeros(12);
    w.buf.put_slice(if is_video {
        b"Potok video\0"
    } else {
        b"Potok audio\0"
    });
    w.close();

    w.open(b"minf");
    if is_video {
        w.open_full(b"vmhd", 0, 1);
        w.zeros(8);
    } else {
        w.open_full(b"smhd", 0, 0);
        w.zeros(4);
    }
    w.close();
    w.open(b"dinf");
    w.open_full(b"dref", 0, 0);
    w.buf.put_u32(1);
    w.open_full(b"url ", 0, 1); // media in the same file
    w.close();
    w.close();
    w.close();

    w.open(b"stbl");
    w.open_full(b"stsd", 0, 0);
    w.buf.put_u32(1);
    match &t.codec {
        CodecConfig::Avc(c) => write_visual_entry(w, b"avc1", b"avcC", width, height, &c.record),
        CodecConfig::Hevc(c) => write_visual_entry(w, b"hvc1", b"hvcC", width, height, &c.record),
        CodecConfig::Av1(c) => write_visual_entry(w, b"av01", b"av1C", width, height, &c.record),
        CodecConfig::Aac(c) => {
            w.open(b"mp4a");
            w.zeros(6);
            w.buf.put_u16(1);
            w.zeros(8);
            w.buf.put_u16(u16::from(c.channels));
            w.buf.put_u16(16);
            w.zeros(4);
            w.buf.put_u32(if c.sample_rate < 65536 {
                c.sample_rate << 16
            } else {
                0
            });
            write_esds(w, t.id, &c.config);
            w.close();
        }
    }
    w.close(); // stsd
    for empty in [b"stts", b"stsc", b"stco"] {
        w.open_full(empty, 0, 0);
        w.buf.put_u32(0);
        w.close();
    }
    w.open_full(b"stsz", 0, 0);
    w.zeros(8);
    w.close();
    w.close(); // stbl
    w.close(); // minf
    w.close(); // mdia
    w.close(); // trak
}

fn write_visual_entry(
    w: &mut Writer,
    entry: &[u8; 4],
    config: &[u8; 4],
    width: u32,
    height: u32,
    record: &[u8],
) {
    w.open(entry);
    w.zeros(6);
    w.buf.put_u16(1); // data reference index
    w.zeros(16);
    w.buf.put_u16(width as u16);
    w.buf.put_u16(height as u16);
    w.buf.put_u32(0x0048_0000); // 72 dpi
    w.buf.put_u32(0x0048_0000);
    w.zeros(4);
    w.buf.put_u16(1); // frame count
    w.zeros(32); // compressor name
    w.buf.put_u16(0x0018); // depth
    w.buf.put_i16(-1);
    w.open(config);
    w.buf.put_slice(record);
    w.close();
    w.close();
}

fn write_esds(w: &mut Writer, track_id: u32, asc: &[u8]) {
    // Descriptor lengths use the 4-byte form so that no length needs computing twice.
    fn descriptor(w: &mut Writer, tag: u8, len: usize) {
        w.buf.put_u8(tag);
        let len = len as u32;
        w.buf.put_slice(&[
            0x80 | ((len >> 21) & 0x7f) as u8,
            0x80 | ((len >> 14) & 0x7f) as u8,
            0x80 | ((len >> 7) & 0x7f) as u8,
            (len & 0x7f) as u8,
        ]);
    }
    let dsi = 5 + asc.len();
    let dcd = 13 + dsi;
    let sl = 5 + 1;
    let es = 3 + 5 + dcd + sl;
    w.open_full(b"esds", 0, 0);
    descriptor(w, 0x03, es - 5);
    w.buf.put_u16(track_id as u16);
    w.buf.put_u8(0);
    descriptor(w, 0x04, dcd - 5);
    w.buf.put_u8(0x40); // MPEG-4 audio
    w.buf.put_u8(0x15); // audio stream
    w.zeros(3); // buffer size
    w.buf.put_u32(0); // max bitrate
    w.buf.put_u32(0); // average bitrate
    descriptor(w, 0x05, asc.len());
    w.buf.put_slice(asc);
    descriptor(w, 0x06, 1);
    w.buf.put_u8(0x02);
    w.close();
}

const SAMPLE_SYNC: u32 = 0x0200_0000; // depends on no other sample
const SAMPLE_NON_SYNC: u32 = 0x0101_0000; // depends on others, not a sync sample

/// One media fragment (`moof` + `mdat`) holding `runs`; `sequence` is the fragment's
/// sequence number (`mfhd`), increasing by one per fragment of a track set.
pub fn media_fragment(sequence: u32, runs: &[TrackRun]) -> Bytes {
    let mut w = Writer::new();
    w.open(b"moof");
    w.open_full(b"mfhd", 0, 0);
    w.buf.put_u32(sequence);
    w.close();
    let mut offset_fields = Vec::with_capacity(runs.len());
    for run in runs {
        w.open(b"traf");
        w.open_full(b"tfhd", 0, 0x02_0000); // default-base-is-moof
        w.buf.put_u32(run.track_id);
        w.close();
        w.open_full(b"tfdt", 1, 0);
        w.buf.put_u64(run.base_decode_time);
        w.close();
        // data offset, duration, size, flags, composition offset (signed: version 1)
        w.open_full(b"trun", 1, 0x0001 | 0x0100 | 0x0200 | 0x0400 | 0x0800);
        w.buf.put_u32(run.samples.len() as u32);
        offset_fields.push(w.buf.len());
        w.buf.put_i32(0);
        for s in &run.samples {
            w.buf.put_u32(s.duration);
            w.buf.put_u32(s.size);
            w.buf.put_u32(if s.keyframe {
                SAMPLE_SYNC
            } else {
                SAMPLE_NON_SYNC
            });
            w.buf.put_i32(s.composition_offset);
        }
        w.close();
        w.close();
    }
    w.close(); // moof
    let moof_len = w.buf.len();
    let mut data_start = moof_len + 8;
    for (field, run) in offset_fields.into_iter().zip(runs) {
        w.buf[field..field + 4].copy_from_slice(&(data_start as i32).to_be_bytes());
        data_start += run.data.iter().map(Bytes::len).sum::<usize>();
    }
    w.open(b"mdat");
    for run in runs {
        for d in &run.data {
            w.buf.put_slice(d);
        }
    }
    w.close();
    w.finish()
}
