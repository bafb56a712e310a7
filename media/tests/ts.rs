//! The MPEG-TS demuxer on streams ffmpeg writes: tracks and configs found, PES split across
//! packets reassembled, a continuity-counter gap survived, a PTS wrap at 2^33 unwrapped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use potok_media::frame::{CodecConfig, TrackKind};
use potok_media::ts::{PACKET, TsDemuxer, TsEvent};

/// Four seconds of 320x180 H.264 + AAC as MPEG-TS, timestamps starting at `offset` seconds.
fn fixture(offset: f64) -> Vec<u8> {
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=30",
        ])
        .args(["-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", "4"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "30",
            "-bf",
            "2",
            "-c:a",
            "aac",
        ])
        .args([
            "-output_ts_offset",
            &offset.to_string(),
            "-f",
            "mpegts",
            "pipe:1",
        ])
        .output()
        .expect("ffmpeg not found: run scripts/setup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn demux(data: &[u8], chunk: usize) -> (Vec<TsEvent>, TsDemuxer) {
    let mut d = TsDemuxer::new();
    let mut events = Vec::new();
    for c in data.chunks(chunk) {
        events.extend(d.push(c));
    }
    events.extend(d.finish());
    (events, d)
}

fn frames(events: &[TsEvent], track: TrackKind) -> Vec<(i64, i64, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Frame(f) if f.track == track => Some((f.dts, f.pts, f.keyframe)),
            _ => None,
        })
        .collect()
}

#[test]
fn finds_both_tracks_and_every_frame_whatever_the_chunking() {
    let data = fixture(0.0);
    let (events, d) = demux(&data, 1316);
    let configs: Vec<String> = events
        .iter()
        .filter_map(|e| {
            if let TsEvent::Config(c) = e {
                Some(c.codec_string())
            } else {
                None
            }
        })
        .collect();
    assert!(
        configs.iter().any(|c| c.starts_with("avc1.")),
        "{configs:?}"
    );
    assert!(configs.iter().any(|c| c == "mp4a.40.2"), "{configs:?}");
    let video = frames(&events, TrackKind::Video);
    assert_eq!(video.len(), 120, "4 s at 30 fps");
    assert_eq!(
        video.iter().filter(|f| f.2).count(),
        4,
        "a keyframe a second"
    );
    assert!(video.windows(2).all(|w| w[1].0 > w[0].0), "DTS increases");
    assert!(video.iter().all(|f| f.1 >= f.0), "PTS >= DTS with B-frames");
    let audio = frames(&events, TrackKind::Audio);
    assert!(audio.len() >= 180, "{} AAC frames", audio.len());
    assert_eq!(d.stats().cc_errors, 0);
    // Byte-by-byte feeding gives the same result.
    let (slow, _) = demux(&data[..PACKET * 400], 1);
    let (fast, _) = demux(&data[..PACKET * 400], 4096);
    assert_eq!(slow, fast);
    if let Some(TsEvent::Config(CodecConfig::Avc(avc))) = events
        .iter()
        .find(|e| matches!(e, TsEvent::Config(CodecConfig::Avc(_))))
    {
        assert_eq!((avc.sps_info.width, avc.sps_info.height), (320, 180));
    }
}

#[test]
fn a_lost_packet_is_counted_and_survived() {
    let mut data = fixture(0.0);
    // Drop one packet from the middle of the video PID's stream.
    let video_pid = data
        .chunks(PACKET)
        .map(|p| (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]))
        .find(|pid| *pid == 0x100)
        .unwrap();
    let victim = data
        .chunks(PACKET)
        .enumerate()
        .filter(|(_, p)| {
            (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]) == video_pid && p[1] & 0x40 == 0
        })
        .nth(200)
        .unwrap()
        .0;
    data.drain(victim * PACKET..(victim + 1) * PACKET);
    let (events, d) = demux(&data, 1316);
    assert_eq!(d.stats().cc_errors, 1);
    assert_eq!(d.stats().dropped_pes, 1);
    assert_eq!(
        frames(&events, TrackKind::Video).len(),
        119,
        "only the damaged frame is lost"
    );
}

#[test]
fn pts_wrap_at_2_pow_33_keeps_time_moving_forward() {
    // 2^33 / 90 kHz = 95443.72 s: start two seconds before the wrap.
    let data = fixture(95_441.7);
    let (events, _) = demux(&data, 1316);
    let video = frames(&events, TrackKind::Video);
    assert_eq!(video.len(), 120);
    assert!(
        video.windows(2).all(|w| w[1].0 > w[0].0),
        "DTS went backwards at the wrap"
    );
    assert!(
        video.last().unwrap().0 > 1 << 33,
        "the timeline continued past 2^33"
    );
    let audio = frames(&events, TrackKind::Audio);
    assert!(audio.windows(2).all(|w| w[1].0 > w[0].0));
}
