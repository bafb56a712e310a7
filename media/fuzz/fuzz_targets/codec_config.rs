//! Codec configuration records (RTMP / Enhanced RTMP sequence headers, in-band parameter
//! sets) from untrusted bytes: AVC, HEVC, AV1, AAC.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use potok_media::aac::AacConfig;
use potok_media::av1::Av1Config;
use potok_media::avc::{AvcConfig, parse_sps};
use potok_media::hevc::{self, HevcConfig};

fuzz_target!(|data: &[u8]| {
    let _ = AvcConfig::parse(Bytes::copy_from_slice(data)).map(|c| c.codec_string());
    let _ = parse_sps(data);
    let _ = AacConfig::parse(Bytes::copy_from_slice(data)).map(|c| c.codec_string());
    let _ = HevcConfig::parse(Bytes::copy_from_slice(data)).map(|c| c.codec_string());
    let _ = hevc::parse_sps(data);
    let _ = Av1Config::parse(Bytes::copy_from_slice(data)).map(|c| c.codec_string());
});
