//! MPEG-TS (SRT ingest) from untrusted bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use potok_media::ts::TsDemuxer;

fuzz_target!(|data: &[u8]| {
    let mut d = TsDemuxer::new();
    for chunk in data.chunks(1316) {
        let _ = d.push(chunk);
    }
    let _ = d.finish();
});
