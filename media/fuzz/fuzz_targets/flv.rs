//! FLV files and RTMP audio/video message bodies from untrusted bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use potok_media::flv::{FlvReader, parse_audio, parse_video};

fuzz_target!(|data: &[u8]| {
    let mut r = FlvReader::new();
    for chunk in data.chunks(7) {
        r.push(chunk);
        while let Ok(Some(tag)) = r.next_tag() {
            let _ = parse_video(tag.body.clone());
            let _ = parse_audio(tag.body);
        }
    }
    let _ = parse_video(Bytes::copy_from_slice(data));
    let _ = parse_audio(Bytes::copy_from_slice(data));
});
