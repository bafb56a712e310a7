//! End to end over SRT: ffmpeg calls with MPEG-TS inside; LL-HLS comes out.
//! Run alone with `cargo test -p potok-origin --test e2e_srt`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{KEY, Origin, Publisher, STREAM, get, wait_ok};
use potok_config::Secret;

fn srt_url(origin: &Origin, query: &str) -> String {
    format!("srt://{}?mode=caller&latency=120000&{query}", origin.srt)
}

#[tokio::test]
async fn h264_and_aac_over_srt_become_ll_hls() {
    let origin = Origin::start(|_| {}).await;
    let _pusher = Publisher::start_as(
        &srt_url(&origin, &format!("streamid=live/{KEY}")),
        "320x180",
        30,
        "mpegts",
    );
    let master = origin.live_master(Duration::from_secs(20)).await;
    let codecs = master.variants[0].codecs.clone().unwrap();
    assert!(
        codecs.starts_with("avc1.") && codecs.ends_with(",mp4a.40.2"),
        "{codecs}"
    );
    assert_eq!(master.variants[0].resolution, Some((320, 180)));

    let url = origin.url(&format!("/live/{STREAM}/master.m3u8"));
    let text = common::ffprobe(&url, "codec_name").await;
    assert!(text.contains("h264") && text.contains("aac"), "{text}");

    // Per-stream ingest metrics.
    let metrics = origin.metrics.encode();
    for series in [
        format!("potok_ingest_bytes_total{{protocol=\"srt\",stream=\"{STREAM}\"}}"),
        format!("potok_ingest_frames_total{{stream=\"{STREAM}\",track=\"video\"}}"),
        format!("potok_ingest_frames_total{{stream=\"{STREAM}\",track=\"audio\"}}"),
    ] {
        let value: f64 = metrics
            .lines()
            .find(|l| l.starts_with(&series))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"));
        assert!(value > 0.0, "{series} = {value}");
    }
}

#[tokio::test]
async fn access_control_stream_ids_passphrases_and_wrong_keys() {
    let pass = "a-long-srt-passphrase";
    let origin = Origin::start(|c| c.origin.srt.passphrase = Some(Secret::new(pass))).await;
    let pl = origin.url(&format!("/live/{STREAM}/source/index.m3u8"));

    // Wrong passphrase: refused, nothing published.
    let mut wrong = Publisher::start_as(
        &srt_url(
            &origin,
            &format!("streamid=live/{KEY}&passphrase=not-the-passphrase"),
        ),
        "160x90",
        8,
        "mpegts",
    );
    assert!(
        !wrong.wait(Duration::from_secs(30)).await,
        "a wrong passphrase was accepted"
    );
    assert_eq!(get(&pl).await.status, 404);

    // Wrong key: refused.
    let mut wrong_key = Publisher::start_as(
        &srt_url(
            &origin,
            &format!("streamid=live/not-the-key-123&passphrase={pass}"),
        ),
        "160x90",
        8,
        "mpegts",
    );
    assert!(
        !wrong_key.wait(Duration::from_secs(30)).await,
        "a wrong key was accepted"
    );

    // The access-control form with the right passphrase.
    let _pusher = Publisher::start_as(
        &srt_url(
            &origin,
            &format!("streamid=#!::r=live/{KEY},m=publish&passphrase={pass}"),
        ),
        "320x180",
        30,
        "mpegts",
    );
    wait_ok(&pl, Duration::from_secs(20)).await;
    let metrics = origin.metrics.encode();
    assert!(!metrics.contains(pass) && !metrics.contains(KEY));
}

#[tokio::test]
async fn h265_over_srt_is_packaged_as_hvc1() {
    let origin = Origin::start(|_| {}).await;
    let video = [
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=none:keyint=60:min-keyint=60:bframes=0",
        "-pix_fmt",
        "yuv420p",
    ];
    let _pusher = Publisher::start_encoded(
        &srt_url(&origin, &format!("streamid=live/{KEY}")),
        "320x180",
        30,
        "mpegts",
        &video,
    );
    let master = origin.live_master(Duration::from_secs(30)).await;
    let codecs = master.variants[0].codecs.clone().unwrap();
    assert!(
        codecs.starts_with("hvc1.1.6.L") && codecs.ends_with(",mp4a.40.2"),
        "{codecs}"
    );
    assert_eq!(master.variants[0].resolution, Some((320, 180)));
    let url = origin.url(&format!("/live/{STREAM}/master.m3u8"));
    let text = common::ffprobe(&url, "codec_name,codec_tag_string,width,height").await;
    assert!(text.contains("hevc,hvc1,320,180"), "{text}");
}

#[tokio::test]
async fn a_stream_can_have_its_own_srt_passphrase() {
    let own = "this-streams-own-passphrase";
    let origin =
        Origin::start(|c| c.origin.streams[0].srt_passphrase = Some(Secret::new(own))).await;
    // Without it: refused.
    let mut bare = Publisher::start_as(
        &srt_url(&origin, &format!("streamid=live/{KEY}")),
        "160x90",
        8,
        "mpegts",
    );
    assert!(
        !bare.wait(Duration::from_secs(30)).await,
        "a caller without the stream's passphrase was accepted"
    );
    // With it: published.
    let _pusher = Publisher::start_as(
        &srt_url(&origin, &format!("streamid=live/{KEY}&passphrase={own}")),
        "320x180",
        30,
        "mpegts",
    );
    wait_ok(
        &origin.url(&format!("/live/{STREAM}/source/index.m3u8")),
        Duration::from_secs(20),
    )
    .await;
}

#[tokio::test]
async fn an_srt_caller_above_the_bitrate_cap_is_cut_off() {
    let origin = Origin::start(|c| c.origin.srt.max_bitrate_kbps = 100).await;
    // 640x360 at x264's default quality is far above 100 kbit/s.
    let mut pusher = Publisher::start_as(
        &srt_url(&origin, &format!("streamid=live/{KEY}")),
        "640x360",
        60,
        "mpegts",
    );
    assert!(
        !pusher.wait(Duration::from_secs(30)).await,
        "the caller was not disconnected"
    );
}

#[tokio::test]
async fn malformed_datagrams_are_counted_exactly_and_the_listener_keeps_working() {
    let origin = Origin::start(|_| {}).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Too short to be an SRT header: every one is a parse error for the SRT library,
    // which warns per datagram; the log gets a few lines, the counter all of them.
    for i in 0..300u32 {
        sock.send_to(&i.to_be_bytes()[..3], origin.srt)
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = origin.metrics.encode();
        if text.contains("potok_srt_malformed_datagrams_total 300") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not counted: {}",
            text.lines()
                .find(|l| l.starts_with("potok_srt_malformed"))
                .unwrap_or("no series")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _pusher = Publisher::start_as(
        &srt_url(&origin, &format!("streamid=live/{KEY}")),
        "160x90",
        20,
        "mpegts",
    );
    origin.live_master(Duration::from_secs(20)).await;
}
