//! Enhanced RTMP: HEVC from libx265, wrapped in E-RTMP video messages (FourCC `hvc1`,
//! sequence start + coded frames) by the test and pushed over a real socket, comes out as
//! CMAF `hvc1` with the right CODECS. Debian's ffmpeg 5.1 cannot send E-RTMP itself.
//! Run alone with `cargo test -p potok-origin --test e2e_ertmp`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[allow(dead_code, unreachable_pub)]
#[path = "../../bench/src/rtmp.rs"]
mod rtmp_client;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::{KEY, Origin, STREAM};
use potok_media::flv::TagKind;
use potok_media::hevc::{self, HevcConfig};

/// Four seconds of a 320x180 test pattern encoded with `video` arguments into `format`.
fn encode(video: &[&str], format: &str) -> Vec<u8> {
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=30",
            "-t",
            "4",
        ])
        .args(video)
        .args(["-f", format, "pipe:1"])
        .output()
        .expect("ffmpeg not found: run scripts/setup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// HEVC as an Annex-B stream with access unit delimiters.
fn hevc_stream() -> Vec<u8> {
    encode(
        &[
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=none:aud=1:keyint=60:min-keyint=60:bframes=0",
        ],
        "hevc",
    )
}

fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let mut end = starts.get(k + 1).map_or(data.len(), |n| n - 3);
            while end > s && data[end - 1] == 0 && k + 1 < starts.len() {
                end -= 1;
            }
            &data[s..end]
        })
        .collect()
}

#[tokio::test]
async fn hevc_over_enhanced_rtmp_is_packaged_as_hvc1() {
    let origin = Origin::start(|_| {}).await;
    let stream = hevc_stream();
    let nals = nal_units(&stream);
    let find = |t: u8| *nals.iter().find(|n| hevc::nal_type(n) == t).unwrap();
    let config =
        HevcConfig::from_parameter_sets(find(hevc::VPS), find(hevc::SPS), find(hevc::PPS)).unwrap();

    // Access units: split at the delimiters.
    let mut units: Vec<Vec<&[u8]>> = Vec::new();
    for nal in &nals {
        match hevc::nal_type(nal) {
            hevc::AUD => units.push(Vec::new()),
            hevc::VPS | hevc::SPS | hevc::PPS => {}
            _ => {
                if let Some(u) = units.last_mut() {
                    u.push(nal);
                }
            }
        }
    }
    assert_eq!(units.len(), 120);

    let mut target = rtmp_client::Target::connect(origin.rtmp, "live", KEY)
        .await
        .unwrap();
    target.ready().await.unwrap();
    let mut start = BytesMut::from(&[0x90, b'h', b'v', b'c', b'1'][..]); // key frame, SequenceStart
    start.put_slice(&config.record);
    target.tag(TagKind::Video, 0, start.freeze()).await.unwrap();
    for (i, unit) in units.iter().enumerate() {
        let key = unit.iter().any(|n| hevc::is_irap(hevc::nal_type(n)));
        // CodedFramesX: no composition time (no B-frames).
        let mut body = BytesMut::from(
            &[
                0x80 | if key { 0x10 } else { 0x20 } | 3,
                b'h',
                b'v',
                b'c',
                b'1',
            ][..],
        );
        for nal in unit {
            body.put_u32(nal.len() as u32);
            body.put_slice(nal);
        }
        let ts = (i as f64 * 1000.0 / 30.0).round() as u32;
        target
            .tag(TagKind::Video, ts, Bytes::from(body))
            .await
            .unwrap();
    }

    let master = origin.live_master(Duration::from_secs(20)).await;
    let master_url = origin.url(&format!("/live/{STREAM}/master.m3u8"));
    assert_eq!(
        master.variants[0].codecs.as_deref(),
        Some(config.codec_string().as_str())
    );
    assert!(
        config.codec_string().starts_with("hvc1.1.6.L"),
        "{}",
        config.codec_string()
    );
    assert_eq!(master.variants[0].resolution, Some((320, 180)));
    let text = common::ffprobe(&master_url, "codec_name,codec_tag_string,width,height").await;
    assert!(text.contains("hevc,hvc1,320,180"), "{text}");
}

/// AV1 (SVT-AV1) as low-overhead OBUs.
fn av1_stream() -> Vec<u8> {
    encode(
        &[
            "-c:v",
            "libsvtav1",
            "-preset",
            "12",
            "-g",
            "60",
            "-pix_fmt",
            "yuv420p",
        ],
        "obu",
    )
}

/// (type, whole OBU bytes) of a low-overhead OBU stream.
fn obus(data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let start = pos;
        let header = data[pos];
        pos += 1 + usize::from(header & 0x04 != 0);
        let mut size = 0usize;
        let mut shift = 0;
        loop {
            let b = data[pos];
            pos += 1;
            size |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        pos += size;
        out.push(((header >> 3) & 0x0f, &data[start..pos]));
    }
    out
}

#[tokio::test]
async fn av1_over_enhanced_rtmp_is_packaged_as_av01() {
    let origin = Origin::start(|_| {}).await;
    let stream = av1_stream();
    let all = obus(&stream);
    let seq = all.iter().find(|(t, _)| *t == 1).unwrap().1;
    // Main profile, 8-bit 4:2:0; level from the sequence header (bits 24-28 with no timing
    // info and a single operating point).
    let level = seq[2 + 3] >> 3;
    let mut record = vec![0x81, level, 0x0c, 0x00];
    record.extend_from_slice(seq);
    let config = potok_media::av1::Av1Config::parse(Bytes::from(record.clone())).unwrap();

    // Temporal units: split at temporal delimiters, which ISOBMFF samples do not carry.
    let mut units: Vec<Vec<&[u8]>> = Vec::new();
    for (t, obu) in &all {
        if *t == 2 {
            units.push(Vec::new());
        } else if let Some(u) = units.last_mut() {
            u.push(obu);
        }
    }
    assert_eq!(units.len(), 120);

    let mut target = rtmp_client::Target::connect(origin.rtmp, "live", KEY)
        .await
        .unwrap();
    target.ready().await.unwrap();
    let mut start = BytesMut::from(&[0x90, b'a', b'v', b'0', b'1'][..]);
    start.put_slice(&record);
    target.tag(TagKind::Video, 0, start.freeze()).await.unwrap();
    for (i, unit) in units.iter().enumerate() {
        // A temporal unit with a sequence header starts a keyframe.
        let key = unit.iter().any(|o| (o[0] >> 3) & 0x0f == 1);
        let mut body = BytesMut::from(
            &[
                0x80 | if key { 0x10 } else { 0x20 } | 1,
                b'a',
                b'v',
                b'0',
                b'1',
            ][..],
        );
        for obu in unit {
            body.put_slice(obu);
        }
        let ts = (i as f64 * 1000.0 / 30.0).round() as u32;
        target.tag(TagKind::Video, ts, body.freeze()).await.unwrap();
    }

    let master = origin.live_master(Duration::from_secs(20)).await;
    let master_url = origin.url(&format!("/live/{STREAM}/master.m3u8"));
    assert_eq!(
        master.variants[0].codecs.as_deref(),
        Some(config.codec_string().as_str())
    );
    assert!(
        config.codec_string().starts_with("av01.0."),
        "{}",
        config.codec_string()
    );
    let text = common::ffprobe(&master_url, "codec_name,codec_tag_string,width,height").await;
    assert!(text.contains("av1,av01,320,180"), "{text}");
}
