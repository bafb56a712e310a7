//! Thumbnails: one keyframe decoded and encoded as a JPEG of the picture's own size, for
//! the origin's per-stream thumbnail (the directory's preview, `thumbnailUrl`).

use potok_media::frame::CodecConfig;

use crate::VideoCodec;
use crate::ffi::{AvError, Decoder, Encoder, EncoderParams, PixFmt, Scaler};

/// A decoded thumbnail.
#[derive(Clone, Debug)]
pub struct Thumbnail {
    /// The JPEG file.
    pub jpeg: Vec<u8>,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
}

/// A JPEG of the keyframe `sample` (length-prefixed NAL units / an AV1 temporal unit) of a
/// stream with video configuration `config`, at the picture's own size. `None` for a
/// configuration that is not video or a sample that gives no picture.
pub fn jpeg(config: &CodecConfig, sample: &[u8]) -> Result<Option<Thumbnail>, AvError> {
    let (codec, record) = match config {
        CodecConfig::Avc(c) => (VideoCodec::H264, &c.record),
        CodecConfig::Hevc(c) => (VideoCodec::Hevc, &c.record),
        CodecConfig::Av1(c) => (VideoCodec::Av1, &c.record),
        CodecConfig::Aac(_) => return Ok(None),
    };
    let mut decoder = Decoder::open(codec, record, 1)?;
    decoder.send(Some((sample, 0, 0, true)))?;
    decoder.send(None)?;
    let Some(frame) = decoder.receive()? else {
        return Ok(None);
    };
    let (width, height) = frame.size();
    let picture = Scaler::new(width, height, PixFmt::Yuv420p).scale(&frame)?;
    let mut encoder = Encoder::open(
        &EncoderParams {
            name: "mjpeg".into(),
            width,
            height,
            fps: 1.0,
            bitrate: 0,
            max_bitrate: 0,
            gop: 1,
            threads: 1,
            upload: None,
            // Full-range JPEG from limited-range YUV 4:2:0 needs the "unofficial" level.
            options: vec![
                ("strict".into(), "unofficial".into()),
                ("flags".into(), "+qscale".into()),
                ("global_quality".into(), "472".into()),
            ],
        },
        None,
    )?;
    let mut picture = picture;
    picture.set_pts(0);
    encoder.send(Some(&picture))?;
    encoder.send(None)?;
    match encoder.receive()? {
        Some(out) => Ok(Some(Thumbnail {
            jpeg: out.data,
            width,
            height,
        })),
        None => Ok(None),
    }
}
