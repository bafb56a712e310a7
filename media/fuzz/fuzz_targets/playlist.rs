//! Playlist parsers (used on origin answers by tests and benchmarks) from untrusted text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use potok_media::hls::playlist::{MasterPlaylist, MediaPlaylist};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = MediaPlaylist::parse(text) {
            let _ = MediaPlaylist::parse(&p.render());
        }
        let _ = MasterPlaylist::parse(text);
    }
});
