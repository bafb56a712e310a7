//! End to end: ffmpeg pushes RTMP into an origin; ffprobe and plain HTTP read LL-HLS back.
//! Run alone with `cargo test -p potok-origin --test e2e_rtmp`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{KEY, Origin, Publisher, STREAM, get, get_with, wait_ok};
use potok_media::hls::playlist::{MasterPlaylist, MediaPlaylist};

fn playlist_path() -> String {
    format!("/live/{STREAM}/source/index.m3u8")
}

fn parse(text: &str) -> MediaPlaylist {
    MediaPlaylist::parse(text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

/// The last listed part as (msn, index).
fn last_part(p: &MediaPlaylist) -> (u64, u64) {
    for (i, s) in p.segments.iter().enumerate().rev() {
        if !s.parts.is_empty() {
            return (p.msn_of(i), s.parts.len() as u64 - 1);
        }
    }
    panic!("no parts listed:\n{}", p.render());
}

#[tokio::test]
async fn ffprobe_reads_h264_720p_and_aac_from_the_master_playlist() {
    let origin = Origin::start(|_| {}).await;
    let _pusher = Publisher::start(&origin.rtmp_url(KEY), "1280x720", 30);
    let master_url = origin.url(&format!("/live/{STREAM}/master.m3u8"));
    // Two complete segments, so that ffprobe finds both tracks in what it reads.
    let pl = playlist_path();
    wait_ok(&origin.url(&pl), Duration::from_secs(20)).await;
    let got = get(&origin.url(&format!(
        "{pl}?_HLS_msn={}",
        parse(&get(&origin.url(&pl)).await.text()).media_sequence + 1
    )))
    .await;
    assert_eq!(got.status, 200, "{}", got.text());

    let master = get(&master_url).await;
    assert_eq!(
        master.headers["content-type"],
        "application/vnd.apple.mpegurl"
    );
    let m = MasterPlaylist::parse(&master.text()).unwrap();
    assert_eq!(m.variants.len(), 1);
    assert_eq!(
        m.variants[0].codecs.as_deref(),
        Some("avc1.64001f,mp4a.40.2")
    );
    assert_eq!(m.variants[0].resolution, Some((1280, 720)));

    let text = common::ffprobe(&master_url, "codec_name,width,height,sample_rate").await;
    assert!(text.contains("h264,1280,720"), "{text}");
    assert!(text.contains("aac"), "{text}");
}

#[tokio::test]
async fn the_live_playlist_follows_the_ll_hls_rules() {
    let origin = Origin::start(|_| {}).await;
    let _pusher = Publisher::start(&origin.rtmp_url(KEY), "320x180", 30);
    let url = origin.url(&playlist_path());
    let first = wait_ok(&url, Duration::from_secs(20)).await;
    assert_eq!(first.headers["cache-control"], "no-cache");
    assert_eq!(first.headers["access-control-allow-origin"], "*");

    // Watch the playlist for a while through blocking reloads: every rule on every version.
    let mut p = parse(&first.text());
    let mut last_seq = p.media_sequence;
    let until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < until {
        let pt = p.part_target.unwrap();
        let td = f64::from(p.target_duration);
        let sc = p.server_control.clone().unwrap();
        assert!(sc.can_block_reload);
        assert!(sc.part_hold_back.unwrap() >= 3.0 * pt - 1e-9);
        assert!(sc.hold_back.unwrap() >= 3.0 * td);
        assert!(sc.can_skip_until.unwrap() >= 6.0 * td);
        assert_eq!(pt, 0.2);
        assert_eq!(td, 2.0);
        assert!(p.media_sequence >= last_seq);
        last_seq = p.media_sequence;
        assert_eq!(p.segments[0].map.as_deref(), Some("init.mp4"));
        for s in &p.segments {
            assert!(s.program_date_time.is_some());
            assert!(s.duration.round() <= td, "EXTINF {}", s.duration);
            for (k, part) in s.parts.iter().enumerate() {
                assert!(
                    part.duration <= pt,
                    "part {} lasts {}",
                    part.uri,
                    part.duration
                );
                assert_eq!(part.independent, k == 0, "{}", part.uri);
            }
        }
        let (m, n) = last_part(&p);
        // The hint names the next part: of the same segment, or part 0 of the next one
        // when the segment holding the last part is complete.
        let last_complete = p.segments.last().is_some_and(|s| s.uri.is_some());
        let hint = if last_complete {
            format!("{}.0.m4s", m + 1)
        } else {
            format!("{m}.{}.m4s", n + 1)
        };
        assert_eq!(p.preload_hint.as_deref(), Some(hint.as_str()));

        // Ask for the next part: the origin holds the request until it exists.
        let asked = Instant::now();
        let next = get(&format!("{url}?_HLS_msn={m}&_HLS_part={}", n + 1)).await;
        let held = asked.elapsed();
        assert_eq!(next.status, 200, "{}", next.text());
        assert_eq!(next.headers["cache-control"], "public, max-age=6");
        p = parse(&next.text());
        let (m2, n2) = last_part(&p);
        assert!(
            (m2, n2) > (m, n),
            "asked for {m}.{} and got a playlist ending at {m2}.{n2}",
            n + 1
        );
        // Generous bound (ten part targets): the request waited for one part, not a timeout.
        assert!(held < Duration::from_secs(2), "held {held:?}");
    }
    // At least 6 segments once available is checked by the window unit tests; here the
    // stream is 7 s old, so every complete segment is listed.
    assert!(p.segments.iter().filter(|s| s.uri.is_some()).count() >= 3);
}

#[tokio::test]
async fn blocking_reload_edge_cases_and_preload_hints() {
    let origin = Origin::start(|_| {}).await;
    let _pusher = Publisher::start(&origin.rtmp_url(KEY), "320x180", 30);
    let url = origin.url(&playlist_path());
    let p = parse(&wait_ok(&url, Duration::from_secs(20)).await.text());
    // Wait for the first complete segment.
    let p = parse(
        &get(&format!("{url}?_HLS_msn={}", p.media_sequence))
            .await
            .text(),
    );
    let (m, _) = last_part(&p);

    // _HLS_part without _HLS_msn, far-ahead msn, a part past the advance limit, garbage.
    for (query, why) in [
        ("_HLS_part=1".to_owned(), "part without msn"),
        (format!("_HLS_msn={}", m + 3), "msn more than two ahead"),
        (
            format!("_HLS_msn={m}&_HLS_part=500"),
            "part beyond the advance limit",
        ),
        ("_HLS_msn=abc".to_owned(), "not a number"),
    ] {
        let asked = Instant::now();
        let got = get(&format!("{url}?{query}")).await;
        assert_eq!(got.status, 400, "{why}: {}", got.text());
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{why}: refused only after {:?}",
            asked.elapsed()
        );
    }

    // The preload-hinted part: requested before it exists, answered once complete.
    let p = parse(&get(&url).await.text());
    let hint = p.preload_hint.clone().unwrap();
    let got = get(&origin.url(&format!("/live/{STREAM}/source/{hint}"))).await;
    assert_eq!(got.status, 200);
    assert!(got.body.len() > 100);
    assert_eq!(&got.body[4..8], b"moof");
    assert_eq!(
        got.headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    // The playlist now lists it.
    let p = parse(&get(&url).await.text());
    assert!(
        p.segments
            .iter()
            .any(|s| s.parts.iter().any(|x| x.uri == hint)),
        "{hint} not listed"
    );

    // Segments, init and parts are served; unknown URIs are 404.
    let seg = p.segments.iter().position(|s| s.uri.is_some()).unwrap();
    let seg_uri = p.segments[seg].uri.clone().unwrap();
    let segment = get(&origin.url(&format!("/live/{STREAM}/source/{seg_uri}"))).await;
    assert_eq!(segment.status, 200);
    assert_eq!(
        segment.headers["content-length"],
        segment.body.len().to_string()
    );
    let init = get(&origin.url(&format!("/live/{STREAM}/source/init.mp4"))).await;
    assert_eq!(init.headers["content-type"], "video/mp4");
    assert_eq!(&init.body[4..8], b"ftyp");
    for missing in [
        "/live/nostream/master.m3u8".to_owned(),
        format!("/live/{STREAM}/nope/index.m3u8"),
        format!("/live/{STREAM}/source/init-7.mp4"),
        format!("/live/{STREAM}/source/{}.m4s", m + 50),
        format!("/live/{STREAM}/source/{}.0.m4s", m + 50),
        format!("/live/{STREAM}/source/..%2F..%2Fetc%2Fpasswd"),
        format!("/live/{KEY}/master.m3u8"),
    ] {
        assert_eq!(get(&origin.url(&missing)).await.status, 404, "{missing}");
    }

    // gzip for playlists when asked.
    let gz = get_with(&url, &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.headers["content-encoding"], "gzip");
    let plain = get_with(
        &origin.url(&format!("/live/{STREAM}/source/init.mp4")),
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert!(
        plain.headers.get("content-encoding").is_none(),
        "media is never gzipped"
    );
}

#[tokio::test]
async fn wrong_keys_and_second_publishers_are_refused() {
    let origin = Origin::start(|_| {}).await;
    let mut wrong = Publisher::start(&origin.rtmp_url("not-the-key-123"), "160x90", 10);
    assert!(
        !wrong.wait(Duration::from_secs(20)).await,
        "a push with a wrong key succeeded"
    );
    assert_eq!(
        get(&origin.url(&format!("/live/{STREAM}/master.m3u8")))
            .await
            .status,
        404
    );

    let _first = Publisher::start(&origin.rtmp_url(KEY), "320x180", 30);
    wait_ok(&origin.url(&playlist_path()), Duration::from_secs(20)).await;
    let mut second = Publisher::start(&origin.rtmp_url(KEY), "160x90", 10);
    assert!(
        !second.wait(Duration::from_secs(20)).await,
        "a second publisher on a live key was accepted"
    );
    // The first one still publishes.
    let p = parse(&get(&origin.url(&playlist_path())).await.text());
    let (m, n) = last_part(&p);
    let next = get(&origin.url(&format!(
        "{}?_HLS_msn={m}&_HLS_part={}",
        playlist_path(),
        n + 1
    )))
    .await;
    assert_eq!(next.status, 200);
    let refused = origin.metrics.encode();
    assert!(
        refused.contains("potok_ingest_refused_total 2"),
        "{refused}"
    );
    assert!(!refused.contains(KEY));
}

#[tokio::test]
async fn an_origin_at_capacity_refuses_new_publishes() {
    let other = "another-stream-key";
    let origin = Origin::start(|c| {
        c.origin.max_streams = 1;
        c.origin.streams.push(potok_config::StreamKeyConfig {
            name: "other".into(),
            key: potok_config::Secret::new(other),
            srt_passphrase: None,
            transcode: None,
        });
    })
    .await;
    let _first = Publisher::start(&origin.rtmp_url(KEY), "320x180", 30);
    wait_ok(&origin.url(&playlist_path()), Duration::from_secs(20)).await;
    let mut second = Publisher::start(&origin.rtmp_url(other), "160x90", 10);
    assert!(
        !second.wait(Duration::from_secs(20)).await,
        "a publish beyond origin.max_streams was accepted"
    );
    assert_eq!(
        get(&origin.url("/live/other/master.m3u8")).await.status,
        404
    );
    assert!(
        origin
            .metrics
            .encode()
            .contains("potok_ingest_refused_total 1")
    );
}

#[tokio::test]
async fn a_reconnect_within_grace_continues_the_stream_and_then_it_ends() {
    let origin = Origin::start(|c| {
        c.origin.hls.reconnect_grace = "3s".parse().unwrap();
        c.origin.hls.ended_retention = "30s".parse().unwrap();
    })
    .await;
    let url = origin.url(&playlist_path());
    let mut first = Publisher::start(&origin.rtmp_url(KEY), "320x180", 30);
    let p = parse(&wait_ok(&url, Duration::from_secs(20)).await.text());
    let first_seq = p.media_sequence;
    // Let a segment complete, then drop the publisher.
    let got = get(&format!("{url}?_HLS_msn={}", first_seq)).await;
    assert_eq!(got.status, 200);
    first.kill();

    // During the gap the playlist keeps answering 200.
    let gap_end = Instant::now() + Duration::from_millis(1200);
    while Instant::now() < gap_end {
        let got = get(&url).await;
        assert_eq!(
            got.status,
            200,
            "playlist during the reconnect gap: {}",
            got.text()
        );
        assert!(!parse(&got.text()).ended);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = parse(&get(&url).await.text());

    let mut second = Publisher::start(&origin.rtmp_url(KEY), "320x180", 4);
    // Wait until the new publisher's media is listed: a discontinuity appears.
    let deadline = Instant::now() + Duration::from_secs(20);
    let joined = loop {
        let p = parse(&get(&url).await.text());
        if p.segments.iter().any(|s| s.discontinuity) {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "no discontinuity after the reconnect:\n{}",
            p.render()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(joined.media_sequence, first_seq, "media sequence restarted");
    let metrics = origin.metrics.encode();
    assert!(
        metrics.contains(&format!(
            "potok_ingest_discontinuities_total{{stream=\"{STREAM}\"}} 1"
        )),
        "{metrics}"
    );
    let disc = joined
        .segments
        .iter()
        .position(|s| s.discontinuity)
        .unwrap();
    assert!(joined.msn_of(disc) > before.msn_of(0));
    assert!(!joined.ended);

    // The second publisher stops for good: after the grace period, EXT-X-ENDLIST.
    assert!(second.wait(Duration::from_secs(30)).await);
    let deadline = Instant::now() + Duration::from_secs(20);
    let ended = loop {
        let p = parse(&get(&url).await.text());
        if p.ended {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "no EXT-X-ENDLIST after the grace period"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(ended.preload_hint.is_none());
    // Directives are ignored once ended: answered at once.
    let asked = Instant::now();
    let got = get(&format!(
        "{url}?_HLS_msn={}&_HLS_part=0",
        ended.msn_of(ended.segments.len() - 1) + 1
    ))
    .await;
    assert_eq!(got.status, 200);
    assert!(asked.elapsed() < Duration::from_secs(1));

    // The archive holds every segment, the init segment and a VOD playlist.
    let archive = origin.archive().join(STREAM);
    let deadline = Instant::now() + Duration::from_secs(10);
    let vod = loop {
        let found = std::fs::read_dir(&archive)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("source/index.m3u8")).ok());
        if let Some(text) = found {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no VOD playlist in {}",
            archive.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let vod = parse(&vod);
    assert!(vod.ended);
    assert!(
        vod.segments.iter().any(|s| s.discontinuity),
        "the VOD keeps the join"
    );
    let dir = std::fs::read_dir(&archive)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("source");
    assert!(dir.join("init.mp4").is_file());
    for s in &vod.segments {
        let f = dir.join(s.uri.as_ref().unwrap());
        assert!(f.is_file(), "{} not archived", f.display());
    }
}

#[tokio::test]
async fn garbage_and_silence_on_the_rtmp_port_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = Origin::start(|c| c.origin.ingest_timeout = "1s".parse().unwrap()).await;

    // Not RTMP at all: an HTTP request, then bytes from a simple generator.
    let mut garbage = tokio::net::TcpStream::connect(origin.rtmp).await.unwrap();
    let mut bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes.push(x as u8);
    }
    let _ = garbage.write_all(&bytes).await;
    let mut sink = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(10), garbage.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "a connection sending garbage was kept open");

    // Silence after connecting: closed after origin.ingest_timeout.
    let mut silent = tokio::net::TcpStream::connect(origin.rtmp).await.unwrap();
    let asked = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "a silent connection was kept open");
    assert!(asked.elapsed() >= Duration::from_millis(900));

    // The listener still takes publishers.
    let _pusher = Publisher::start(&origin.rtmp_url(KEY), "160x90", 20);
    wait_ok(&origin.url(&playlist_path()), Duration::from_secs(20)).await;
}

#[tokio::test]
async fn held_requests_are_bounded_per_stream_and_in_time() {
    let origin = Origin::start(|c| {
        c.origin.hls.max_held_requests = 2;
        c.origin.hls.reconnect_grace = "60s".parse().unwrap();
    })
    .await;
    let url = origin.url(&playlist_path());
    let mut pusher = Publisher::start(&origin.rtmp_url(KEY), "160x90", 30);
    wait_ok(&url, Duration::from_secs(20)).await;
    // The publisher goes away (the stream waits for a reconnect): nothing new will come.
    pusher.kill();
    let p = parse(&get(&url).await.text());
    let (m, _) = last_part(&p);
    let future = format!("{url}?_HLS_msn={}", m + 1);

    let asked = Instant::now();
    let a = tokio::spawn(get_owned(future.clone()));
    let b = tokio::spawn(get_owned(future.clone()));
    // Both permits are taken once the metric says two requests are held.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !origin
        .metrics
        .encode()
        .contains("potok_hls_held_requests 2")
    {
        assert!(Instant::now() < deadline, "requests were not held");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let third = get(&future).await;
    assert_eq!(third.status, 503, "a third waiting request was accepted");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the third request waited"
    );

    // The held ones give up after three target durations (6 s) with 503.
    for held in [a, b] {
        let got = held.await.unwrap();
        assert_eq!(got, 503);
    }
    assert!(
        asked.elapsed() >= Duration::from_secs(6),
        "released after {:?}",
        asked.elapsed()
    );
    assert!(
        origin
            .metrics
            .encode()
            .contains("potok_hls_held_requests 0")
    );
}

async fn get_owned(url: String) -> u16 {
    get(&url).await.status
}

#[tokio::test]
async fn rtmps_with_a_self_signed_certificate_feeds_the_same_packager() {
    let origin = Origin::start(|c| c.origin.tls.self_signed = true).await;
    let rtmps = origin.rtmps.expect("no RTMPS listener");
    assert!(origin.data.path().join("origin-dev-cert.pem").is_file());
    let _pusher = Publisher::start(&format!("rtmps://{rtmps}/live/{KEY}"), "320x180", 20);
    let p = parse(
        &wait_ok(&origin.url(&playlist_path()), Duration::from_secs(20))
            .await
            .text(),
    );
    assert!(p.segments.iter().any(|s| s.uri.is_some()));
    // A wrong key over TLS is refused like over plain RTMP.
    let mut wrong = Publisher::start(
        &format!("rtmps://{rtmps}/live/not-the-key-123"),
        "160x90",
        10,
    );
    assert!(!wrong.wait(Duration::from_secs(20)).await);
}

/// Connects and completes the RTMP handshake as a client.
async fn handshaken(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut hs = Handshake::new(PeerType::Client);
    let c0c1 = hs.generate_outbound_p0_and_p1().unwrap();
    s.write_all(&c0c1).await.unwrap();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("handshake answer")
            .unwrap();
        assert!(n > 0, "closed during the handshake");
        match hs.process_bytes(&buf[..n]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => {
                s.write_all(&response_bytes).await.unwrap();
            }
            HandshakeProcessResult::Completed { response_bytes, .. } => {
                s.write_all(&response_bytes).await.unwrap();
                return s;
            }
        }
    }
}

/// How long until the server closes `s` (reading and discarding what it sends).
async fn time_to_close(s: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

#[tokio::test]
async fn before_publishing_a_large_message_or_chunk_size_is_refused_at_once() {
    use tokio::io::AsyncWriteExt;
    // The default ingest_timeout (10 s) would close these connections eventually; the
    // guard must close them at the header, before anything is buffered.
    let origin = Origin::start(|_| {}).await;

    // A 16 MiB message declared on chunk stream 3 (fmt 0), and its first 128-byte chunk.
    let mut big = handshaken(origin.rtmp).await;
    let mut msg = vec![0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0];
    msg.extend([0u8; 128]);
    let _ = big.write_all(&msg).await;
    let closed = time_to_close(&mut big, Duration::from_secs(5)).await;
    assert!(
        closed.is_some(),
        "a 16 MiB message before publishing was accepted"
    );

    // SetChunkSize 16 MiB on chunk stream 2.
    let mut chunky = handshaken(origin.rtmp).await;
    let mut msg = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0];
    msg.extend((16u32 << 20).to_be_bytes());
    let _ = chunky.write_all(&msg).await;
    let closed = time_to_close(&mut chunky, Duration::from_secs(5)).await;
    assert!(
        closed.is_some(),
        "a 16 MiB chunk size before publishing was accepted"
    );

    // Real publishers (ffmpeg sets a 4096-byte chunk size and sends keyframes far larger
    // than 64 KiB once publishing) are unaffected.
    let _pusher = Publisher::start(&origin.rtmp_url(KEY), "1280x720", 20);
    wait_ok(&origin.url(&playlist_path()), Duration::from_secs(20)).await;
}

#[tokio::test]
async fn trickling_clients_get_one_deadline_for_the_whole_connect_phase() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = Origin::start(|c| c.origin.ingest_timeout = "2s".parse().unwrap()).await;

    // Three clients send one byte of C0C1 every 300 ms: each read is well within the
    // timeout, the whole handshake never is.
    let mut slow = Vec::new();
    for _ in 0..3 {
        let addr = origin.rtmp;
        slow.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            let mut buf = [0u8; 64];
            let mut bytes = std::iter::once(3u8).chain(std::iter::repeat(0));
            loop {
                tokio::select! {
                    r = s.read(&mut buf) => match r {
                        Ok(0) | Err(_) => return Some(started.elapsed()),
                        Ok(_) => {}
                    },
                    () = tokio::time::sleep(Duration::from_millis(300)) => {
                        let b = [bytes.next().unwrap_or(0)];
                        if s.write_all(&b).await.is_err() {
                            return Some(started.elapsed());
                        }
                    }
                }
                if started.elapsed() > Duration::from_secs(8) {
                    return None;
                }
            }
        }));
    }
    // Meanwhile a real publisher gets through.
    let _pusher = Publisher::start(&origin.rtmp_url(KEY), "160x90", 20);
    wait_ok(&origin.url(&playlist_path()), Duration::from_secs(20)).await;
    for s in slow {
        let closed = s
            .await
            .unwrap()
            .expect("a trickling client was kept past the deadline");
        assert!(closed < Duration::from_secs(4), "closed after {closed:?}");
    }
    // The publisher, past its connect phase, is not cut off by the same deadline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let p = parse(&get(&origin.url(&playlist_path())).await.text());
    let again = get(&origin.url(&format!(
        "{}?_HLS_msn={}",
        playlist_path(),
        p.media_sequence + p.segments.len() as u64
    )))
    .await;
    assert_eq!(
        again.status, 200,
        "the stream stopped after the connect deadline"
    );
}

#[tokio::test]
async fn one_address_gets_at_most_its_share_of_rtmp_connections() {
    let origin = Origin::start(|c| c.origin.max_ingest_connections_per_address = 2).await;
    let _a = tokio::net::TcpStream::connect(origin.rtmp).await.unwrap();
    let _b = tokio::net::TcpStream::connect(origin.rtmp).await.unwrap();
    let mut c = tokio::net::TcpStream::connect(origin.rtmp).await.unwrap();
    // Closed at once, not after the 10 s ingest_timeout.
    let closed = time_to_close(&mut c, Duration::from_secs(3)).await;
    assert!(
        closed.is_some(),
        "a third connection from one address was kept"
    );
}
