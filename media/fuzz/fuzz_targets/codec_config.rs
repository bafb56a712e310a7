//! AVC and AAC configuration records (RTMP sequence headers) from untrusted bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use potok_media::aac::AacConfig;
use potok_media::avc::{AvcConfig, parse_sps};

fuzz_target!(|data: &[u8]| {
    let _ = AvcConfig::parse(Bytes::copy_from_slice(data)).map(|c| c.codec_string());
    let _ = parse_sps(data);
    let _ = AacConfig::parse(Bytes::copy_from_slice(data)).map(|c| c.codec_string());
});
