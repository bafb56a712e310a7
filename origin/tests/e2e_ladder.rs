//! The ABR ladder end to end: ffmpeg pushes 1280x720 over RTMP, the origin serves the source
//! plus transcoded rungs, ffprobe and a box walker check each rung.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{KEY, Origin, Publisher, STREAM, ffprobe, get, wait_ok};
use potok_config::RungConfig;
use potok_media::hls::playlist::{MasterPlaylist, MediaPlaylist};

/// x264 with its default B-frames (the rungs have none), a keyframe every 2 s.
const SOURCE_X264: [&str; 10] = [
    "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-b:v", "3000k", "-pix_fmt", "yuv420p",
];

/// The ladder tests load the CPU on purpose (one of them overloads it): they run one at a
/// time, so one's load never sheds another's rungs.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn master(origin: &Origin) -> MasterPlaylist {
    let text = get(&origin.url(&format!("/live/{STREAM}/master.m3u8")))
        .await
        .text();
    MasterPlaylist::parse(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

async fn media(origin: &Origin, rendition: &str) -> MediaPlaylist {
    let got = get(&origin.url(&format!("/live/{STREAM}/{rendition}/index.m3u8"))).await;
    assert_eq!(got.status, 200, "{rendition}: {}", got.text());
    MediaPlaylist::parse(&got.text()).unwrap_or_else(|e| panic!("{e}:\n{}", got.text()))
}

/// Waits until the master lists `n` variants, each with `segments` complete segments.
async fn wait_for_ladder(
    origin: &Origin,
    n: usize,
    segments: usize,
    limit: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    wait_ok(&origin.url(&format!("/live/{STREAM}/master.m3u8")), limit).await;
    loop {
        let m = master(origin).await;
        let names: Vec<String> = m
            .variants
            .iter()
            .map(|v| v.uri.trim_end_matches("/index.m3u8").to_owned())
            .collect();
        if names.len() >= n {
            let mut ready = true;
            for name in &names {
                let p = media(origin, name).await;
                if p.segments.iter().filter(|s| s.uri.is_some()).count() < segments {
                    ready = false;
                }
            }
            if ready {
                return names;
            }
        }
        assert!(
            Instant::now() < deadline,
            "ladder not ready after {limit:?}: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Top-level and nested ISO-BMFF boxes: (type, payload).
fn boxes(mut data: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 8 {
        let size = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = data[4..8].try_into().unwrap();
        assert!(size >= 8 && size <= data.len(), "bad box size");
        out.push((kind, &data[8..size]));
        data = &data[size..];
    }
    out
}

/// The video track's (track 1) first `tfdt` in a segment.
fn first_video_tfdt(segment: &[u8]) -> u64 {
    for (kind, moof) in boxes(segment) {
        if &kind != b"moof" {
            continue;
        }
        for (kind, traf) in boxes(moof) {
            if &kind != b"traf" {
                continue;
            }
            let inner = boxes(traf);
            let track = inner
                .iter()
                .find(|(k, _)| k == b"tfhd")
                .map(|(_, p)| u32::from_be_bytes(p[4..8].try_into().unwrap()))
                .unwrap();
            if track != 1 {
                continue;
            }
            let (_, tfdt) = inner.iter().find(|(k, _)| k == b"tfdt").unwrap();
            return if tfdt[0] == 1 {
                u64::from_be_bytes(tfdt[4..12].try_into().unwrap())
            } else {
                u64::from(u32::from_be_bytes(tfdt[4..8].try_into().unwrap()))
            };
        }
    }
    panic!("no video traf in the segment");
}

/// Whether the first video frame of init+segment is a keyframe (ffprobe decides).
async fn starts_with_keyframe(dir: &std::path::Path, init: &[u8], segment: &[u8]) -> bool {
    let path = dir.join("probe.mp4");
    let mut both = init.to_vec();
    both.extend_from_slice(segment);
    std::fs::write(&path, both).unwrap();
    let out = ffprobe_frames(&path).await;
    out.lines()
        .next()
        .is_some_and(|l| l.trim_end_matches(',').trim() == "1")
}

async fn ffprobe_frames(path: &std::path::Path) -> String {
    let path = path.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v",
                "-read_intervals",
                "%+#1",
                "-show_entries",
                "frame=key_frame",
                "-of",
                "csv=p=0",
            ])
            .arg(&path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)] // measured bitrates go to the test log
async fn rungs_are_keyframe_aligned_and_hit_their_bitrates() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(|c| {
        c.origin.transcode.enabled = true;
        // A busy CI machine must not shed the rungs this test measures.
        c.origin.transcode.max_lag = "20s".parse().unwrap();
    })
    .await;
    let _pusher =
        Publisher::start_encoded(&origin.rtmp_url(KEY), "1280x720", 60, "flv", &SOURCE_X264);
    // 720p is the source itself: no 720p rung (no re-encode at the same height).
    let names = wait_for_ladder(&origin, 3, 6, Duration::from_secs(45)).await;
    assert_eq!(names, ["source", "480p", "360p"], "variants in the master");

    // The multivariant playlist describes each rung from its own output.
    let m = master(&origin).await;
    for v in &m.variants {
        assert!(v.bandwidth > 0 && v.average_bandwidth.is_some(), "{v:?}");
        assert!(v.codecs.as_deref().unwrap().starts_with("avc1."), "{v:?}");
        assert!(v.codecs.as_deref().unwrap().contains("mp4a.40.2"), "{v:?}");
        assert_eq!(v.frame_rate.map(f64::round), Some(30.0), "{v:?}");
    }
    let res: Vec<_> = m.variants.iter().map(|v| v.resolution).collect();
    assert_eq!(res, [Some((1280, 720)), Some((854, 480)), Some((640, 360))]);

    // ffprobe reads every rung as H.264 at its size.
    for (name, size) in [("480p", "854,480"), ("360p", "640,360")] {
        let out = ffprobe(
            &origin.url(&format!("/live/{STREAM}/{name}/index.m3u8")),
            "codec_name,width,height",
        )
        .await;
        assert!(out.contains(&format!("h264,{size}")), "{name}: {out}");
        assert!(out.contains("aac"), "{name}: {out}");
    }

    // Every playlist reports the others, with the same targets.
    let playlists: BTreeMap<&str, MediaPlaylist> = {
        let mut p = BTreeMap::new();
        for n in ["source", "480p", "360p"] {
            p.insert(n, media(&origin, n).await);
        }
        p
    };
    let source = &playlists["source"];
    for (name, p) in &playlists {
        assert_eq!(p.target_duration, source.target_duration, "{name}");
        assert_eq!(p.part_target, source.part_target, "{name}");
        assert_eq!(p.server_control, source.server_control, "{name}");
        assert_eq!(
            p.rendition_reports.len(),
            2,
            "{name}: {:?}",
            p.rendition_reports
        );
    }

    // Segment N starts at the same decode time in every rendition, with a keyframe.
    let dir = tempfile::tempdir().unwrap();
    let msns = |p: &MediaPlaylist| -> Vec<u64> {
        let first = p.media_sequence;
        p.segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.uri.is_some())
            .map(|(i, _)| first + i as u64)
            .collect()
    };
    let mut common: Vec<u64> = msns(source);
    for p in playlists.values() {
        let have = msns(p);
        common.retain(|m| have.contains(m));
    }
    assert!(common.len() >= 4, "segments in every rendition: {common:?}");
    let mut checked = 0;
    for msn in &common {
        let mut tfdts = BTreeMap::new();
        for name in playlists.keys() {
            let base = format!("/live/{STREAM}/{name}");
            let seg = get(&origin.url(&format!("{base}/{msn}.m4s"))).await;
            assert_eq!(seg.status, 200, "{name} {msn}");
            let init = get(&origin.url(&format!("{base}/init.mp4"))).await;
            tfdts.insert(*name, first_video_tfdt(&seg.body));
            assert!(
                starts_with_keyframe(dir.path(), &init.body, &seg.body).await,
                "{name} segment {msn} does not start with a keyframe"
            );
        }
        let first = tfdts["source"];
        assert!(
            tfdts.values().all(|t| *t == first),
            "segment {msn}: tfdt differs between renditions: {tfdts:?}"
        );
        checked += 1;
    }
    assert!(checked >= 4);

    // Average bitrate of each rung within ±30 % of its target (video: total less the
    // 64 kbit/s of audio), over the complete segments listed.
    for (name, target_kbps) in [("480p", 1400.0), ("360p", 800.0)] {
        let p = &playlists[name];
        let mut bytes = 0usize;
        let mut secs = 0.0;
        for (i, s) in p.segments.iter().enumerate() {
            if s.uri.is_none() {
                continue;
            }
            let msn = p.media_sequence + i as u64;
            bytes += get(&origin.url(&format!("/live/{STREAM}/{name}/{msn}.m4s")))
                .await
                .body
                .len();
            secs += s.duration;
        }
        let kbps = bytes as f64 * 8.0 / secs / 1000.0 - 64.0;
        println!("{name}: {kbps:.0} kbit/s over {secs:.1} s (target {target_kbps})");
        assert!(
            (kbps - target_kbps).abs() <= target_kbps * 0.3,
            "{name}: {kbps:.0} kbit/s, target {target_kbps}"
        );
    }

    // Metrics: per rung fps and the encoder in use; the ladder keeps up.
    let metrics = origin.metrics.encode();
    assert!(
        metrics.contains("potok_transcode_encoder_info{encoder=\"libx264\",requested=\"auto\"} 1"),
        "{metrics}"
    );
    for rung in ["480p", "360p"] {
        assert!(
            metrics.contains(&format!(
                "potok_transcode_rung_active{{encoder=\"libx264\",rung=\"{rung}\",stream=\"{STREAM}\"}} 1"
            )),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!(
                "potok_transcode_fps{{rung=\"{rung}\",stream=\"{STREAM}\"}}"
            )),
            "{metrics}"
        );
    }
    assert!(
        metrics.contains("potok_transcode_realtime_factor{"),
        "{metrics}"
    );
}

fn rung(name: &str, height: u32) -> RungConfig {
    RungConfig {
        name: name.into(),
        height,
        max_fps: 0.0,
        bitrate_kbps: 4000,
        max_bitrate_kbps: 4400,
        profile: "high".into(),
    }
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_ladder_sheds_rungs_and_the_source_keeps_flowing() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(|c| {
        let t = &mut c.origin.transcode;
        t.enabled = true;
        t.preset = "slower".into();
        t.tune = String::new();
        t.max_lag = "1s".parse().unwrap();
        t.rungs = (0..6)
            .map(|i| rung(&format!("r{i}"), 704 - 16 * i))
            .collect();
    })
    .await;
    let _pusher = Publisher::start(&origin.rtmp_url(KEY), "1280x720", 60);
    wait_ok(
        &origin.url(&format!("/live/{STREAM}/source/index.m3u8")),
        Duration::from_secs(20),
    )
    .await;

    // The monitor sheds rungs, and says so in the metrics.
    let deadline = Instant::now() + Duration::from_secs(40);
    let shed = loop {
        let shed = metric(&origin.metrics.encode(), "potok_transcode_shed_total{");
        if shed >= 2.0 {
            break shed;
        }
        assert!(
            Instant::now() < deadline,
            "no rung shed after 40 s:\n{}",
            origin.metrics.encode()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let text = origin.metrics.encode();
    let active = metric(&text, "potok_transcode_rung_active{");
    assert!(active <= 6.0 - shed, "{text}");

    // The shed rungs are gone from the master playlist and from every rendition report;
    // the most expensive (tallest) went first.
    let m = master(&origin).await;
    let listed: Vec<&str> = m.variants.iter().map(|v| v.uri.as_str()).collect();
    assert!(!listed.contains(&"r0/index.m3u8"), "{listed:?}");
    assert!(listed.contains(&"source/index.m3u8"), "{listed:?}");
    // The source rendition keeps producing segments at real-time pace.
    let before = media(&origin, "source").await;
    let last = |p: &MediaPlaylist| p.media_sequence + p.segments.len() as u64;
    let start = last(&before);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = media(&origin, "source").await;
        if last(&now) >= start + 2 {
            assert!(
                !now.rendition_reports.iter().any(|r| r.uri.contains("/r0/")),
                "{:?}",
                now.rendition_reports
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the source stalled while the ladder was overloaded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hevc_source_is_decoded_and_its_rungs_are_h264() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(|c| {
        c.origin.transcode.enabled = true;
        c.origin.transcode.max_lag = "20s".parse().unwrap();
        c.origin.transcode.rungs = vec![RungConfig {
            bitrate_kbps: 300,
            max_bitrate_kbps: 330,
            profile: "main".into(),
            ..rung("180p", 180)
        }];
    })
    .await;
    let video = [
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=none:keyint=60:min-keyint=60",
        "-pix_fmt",
        "yuv420p",
    ];
    let url = format!(
        "srt://{}?mode=caller&latency=120000&streamid=live/{KEY}",
        origin.srt
    );
    let _pusher = Publisher::start_encoded(&url, "640x360", 40, "mpegts", &video);
    let names = wait_for_ladder(&origin, 2, 2, Duration::from_secs(45)).await;
    assert_eq!(names, ["source", "180p"]);
    let m = master(&origin).await;
    assert!(
        m.variants[0]
            .codecs
            .as_deref()
            .unwrap()
            .starts_with("hvc1.")
    );
    assert!(
        m.variants[1]
            .codecs
            .as_deref()
            .unwrap()
            .starts_with("avc1.4d")
    );
    assert_eq!(m.variants[1].resolution, Some((320, 180)));
    let out = ffprobe(
        &origin.url(&format!("/live/{STREAM}/180p/index.m3u8")),
        "codec_name,profile,width,height",
    )
    .await;
    assert!(out.contains("h264,Main,320,180"), "{out}");
}

/// When part `(msn, part)` of `rendition` is published: a blocking playlist request for it
/// returns.
async fn published(url: String) -> Instant {
    let got = get(&url).await;
    assert_eq!(got.status, 200, "{url}: {}", got.text());
    Instant::now()
}

/// Measures, part by part, how long after the source each rung publishes the same part.
/// Returns per rung the skews in milliseconds (positive: the rung is later).
async fn part_skews(origin: &Origin, rungs: &[&str], parts: usize) -> BTreeMap<String, Vec<f64>> {
    let mut skews: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..parts {
        let p = media(origin, "source").await;
        let last = p.segments.last().unwrap();
        let last_msn = p.media_sequence + p.segments.len() as u64 - 1;
        // The next part: the source has not published it yet.
        let (msn, part) = if last.uri.is_some() {
            (last_msn + 1, 0)
        } else {
            (last_msn, last.parts.len())
        };
        let url = |r: &str| {
            origin.url(&format!(
                "/live/{STREAM}/{r}/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"
            ))
        };
        let source = tokio::spawn(published(url("source")));
        let others: Vec<_> = rungs
            .iter()
            .map(|r| tokio::spawn(published(url(r))))
            .collect();
        let t0 = source.await.unwrap();
        for (r, h) in rungs.iter().zip(others) {
            let t = h.await.unwrap();
            let ms = if t >= t0 {
                t.duration_since(t0).as_secs_f64() * 1000.0
            } else {
                -(t0.duration_since(t).as_secs_f64() * 1000.0)
            };
            skews.entry((*r).to_owned()).or_default().push(ms);
        }
    }
    skews
}

/// Measures the skew of 40 parts with `video` as the source's encoder arguments and
/// checks each rung's median and 90th percentile (ms).
#[allow(clippy::print_stdout)] // the measured skew is worth seeing in the test log
async fn check_skew(what: &str, video: &[&str], max_median: f64, max_p90: f64) {
    let origin = Origin::start(|c| {
        c.origin.transcode.enabled = true;
        c.origin.transcode.max_lag = "20s".parse().unwrap();
    })
    .await;
    let _pusher = Publisher::start_encoded(&origin.rtmp_url(KEY), "1280x720", 40, "flv", video);
    let names = wait_for_ladder(&origin, 3, 2, Duration::from_secs(45)).await;
    assert_eq!(names, ["source", "480p", "360p"]);
    let skews = part_skews(&origin, &["480p", "360p"], 40).await;
    let mut summary = Vec::new();
    for (rung, mut v) in skews {
        v.sort_by(f64::total_cmp);
        let med = v[v.len() / 2];
        let p90 = v[v.len() * 9 / 10];
        println!(
            "{what}: {rung} publishes each part {med:.1} ms after the source (median), p90 {p90:.1} ms, min {:.1}, max {:.1} ms",
            v[0],
            v[v.len() - 1]
        );
        summary.push((rung, med, p90, v));
    }
    for (rung, med, p90, v) in summary {
        assert!(
            med <= max_median && p90 <= max_p90,
            "{what}: {rung} runs behind the source: {v:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rungs_publish_each_part_right_after_the_source() {
    let _serial = SERIAL.lock().await;
    // Without B-frames in the source, a rung's part is complete as soon as the source's
    // last picture of it is decoded: the rung announces each picture to its packager when
    // it starts encoding it (LadderSink::next_picture), so no encode is waited for.
    check_skew(
        "source without B-frames",
        &common::X264_ZEROLATENCY,
        10.0,
        25.0,
    )
    .await;
    // With x264's default B-frames the decoder holds two pictures back for reordering:
    // a rung cannot have a picture before it is decoded, so it trails by about two frame
    // intervals (67 ms at 30 fps), still well under a part.
    check_skew("source with B-frames", &SOURCE_X264, 100.0, 130.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shed_rung_stays_answerable_with_the_next_lower_rungs_output() {
    let _serial = SERIAL.lock().await;
    // Its own stream name: shed requests go to the ladder of a stream by name.
    const NAME: &str = "shed-answerable";
    let origin = Origin::start(|c| {
        c.origin.transcode.enabled = true;
        c.origin.transcode.max_lag = "20s".parse().unwrap();
        c.origin.streams.push(potok_config::StreamKeyConfig {
            name: NAME.into(),
            key: potok_config::Secret::new("shed-answerable-key-0123"),
            srt_passphrase: None,
            transcode: None,
        });
    })
    .await;
    let _pusher = Publisher::start(&origin.rtmp_url("shed-answerable-key-0123"), "1280x720", 40);
    let playlist = |r: &str| origin.url(&format!("/live/{NAME}/{r}/index.m3u8"));
    let master_url = origin.url(&format!("/live/{NAME}/master.m3u8"));
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let got = get(&master_url).await;
        if got.text().contains("480p/index.m3u8") && got.text().contains("360p/index.m3u8") {
            break;
        }
        assert!(Instant::now() < deadline, "no ladder: {}", got.text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    potok_transcoder::request_shed(NAME, "480p");
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&master_url).await.text().contains("480p/index.m3u8") {
        assert!(Instant::now() < deadline, "480p was not shed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 480p keeps answering and growing with 360p's media after a discontinuity; every part
    // it hints comes into existence.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut hints_fetched = 0;
    let p = loop {
        let got = get(&playlist("480p")).await;
        assert_eq!(got.status, 200, "{}", got.text());
        let p = MediaPlaylist::parse(&got.text()).unwrap();
        assert!(!p.ended, "{}", got.text());
        if let Some(hint) = &p.preload_hint {
            let part = get(&origin.url(&format!("/live/{NAME}/480p/{hint}"))).await;
            assert_eq!(part.status, 200, "hinted {hint}");
            hints_fetched += 1;
        }
        let after = p.segments.iter().position(|s| s.discontinuity);
        if after.is_some_and(|a| p.segments[a..].iter().filter(|s| s.uri.is_some()).count() >= 2) {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "480p does not carry 360p:\n{}",
            got.text()
        );
    };
    assert!(hints_fetched >= 3);
    let after = p.segments.iter().position(|s| s.discontinuity).unwrap();
    let map = p.segments[after].map.clone().expect("a new EXT-X-MAP");
    assert_eq!(
        get(&origin.url(&format!("/live/{NAME}/480p/{map}")))
            .await
            .body,
        get(&origin.url(&format!("/live/{NAME}/360p/init.mp4")))
            .await
            .body,
        "480p now starts from 360p's init segment"
    );
    let msn = p.media_sequence + after as u64;
    assert_eq!(
        get(&origin.url(&format!("/live/{NAME}/480p/{msn}.m4s")))
            .await
            .body,
        get(&origin.url(&format!("/live/{NAME}/360p/{msn}.m4s")))
            .await
            .body,
    );
    // Reports only name what the master lists.
    let source = MediaPlaylist::parse(&get(&playlist("source")).await.text()).unwrap();
    let reported: Vec<&str> = source
        .rendition_reports
        .iter()
        .map(|r| r.uri.as_str())
        .collect();
    assert_eq!(reported, ["../360p/index.m3u8"]);
}
