//! The store against a real S3-protocol server (moto): multipart uploads, retention, and the
//! spool across an outage and a restart. `cargo test -p potok-storage --test s3`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/moto.rs"]
mod moto;

use std::time::{Duration, Instant};

use bytes::Bytes;
use potok_storage::recordings::{self, Kind, Manifest, RenditionInfo};
use potok_storage::{Spool, StorageMetrics, Store};
use tokio_util::sync::CancellationToken;

fn store(moto: &moto::Moto, tune: impl FnOnce(&mut potok_config::StorageConfig)) -> Store {
    let mut cfg = moto.storage();
    tune(&mut cfg);
    Store::open(&cfg, None, StorageMetrics::detached())
        .unwrap()
        .unwrap()
}

async fn wait_for(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn large_objects_go_up_in_parts() {
    let moto = moto::Moto::start().await;
    let store = store(&moto, |c| {
        c.s3.multipart_threshold = "5MiB".parse().unwrap();
        c.s3.multipart_part_size = "5MiB".parse().unwrap();
    });
    let big: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    store
        .put("big/object.bin", vec![Bytes::from(big.clone())])
        .await
        .unwrap();
    store
        .put("small/object.bin", vec![Bytes::from_static(b"small")])
        .await
        .unwrap();
    let meta = store.head("big/object.bin").await.unwrap().unwrap();
    // A multipart upload's ETag is the digest of its parts' digests, suffixed "-{parts}".
    let etag = meta.e_tag.unwrap_or_default();
    assert!(
        etag.trim_matches('"').ends_with("-3"),
        "ETag {etag}: not a 3-part upload"
    );
    let small = store.head("small/object.bin").await.unwrap().unwrap();
    assert!(!small.e_tag.unwrap_or_default().contains('-'));
    assert_eq!(store.get("big/object.bin").await.unwrap().unwrap(), big);
}

fn manifest(id: &str, kind: Kind, broadcast: &str, ended_ms: i64) -> Manifest {
    Manifest {
        id: id.into(),
        kind,
        stream: "chan".into(),
        broadcast: broadcast.into(),
        parent: None,
        range: None,
        started_ms: ended_ms - 1000,
        ended_ms: Some(ended_ms),
        duration: 1.0,
        renditions: vec![RenditionInfo {
            name: "source".into(),
            bandwidth: 1,
            codecs: "avc1.64001f".into(),
            resolution: None,
            frame_rate: None,
        }],
    }
}

#[tokio::test]
async fn retention_deletes_expired_recordings_and_media_nobody_uses() {
    let moto = moto::Moto::start().await;
    let store = store(&moto, |_| {});
    let day = 86_400_000;
    let now = 100 * day;
    // Old recording A (broadcast 1), old recording B (broadcast 2) with a recent clip,
    // recent recording C (broadcast 3).
    for (m, media) in [
        (
            manifest("chan-1", Kind::Recording, "1", now - 10 * day),
            true,
        ),
        (
            manifest("chan-2", Kind::Recording, "2", now - 10 * day),
            true,
        ),
        (
            manifest("chan-2-clip-0-1000", Kind::Clip, "2", now - day / 2),
            false,
        ),
        (
            manifest("chan-3", Kind::Recording, "3", now - day / 2),
            true,
        ),
    ] {
        store
            .put(&recordings::manifest_key(&m.id), vec![m.to_json()])
            .await
            .unwrap();
        store
            .put(
                &recordings::playlist_key(&m.id, "source"),
                vec![Bytes::from_static(b"#EXTM3U\n")],
            )
            .await
            .unwrap();
        if media {
            store
                .put(
                    &format!("chan/{}/source/5.m4s", m.broadcast),
                    vec![Bytes::from_static(b"x")],
                )
                .await
                .unwrap();
        }
    }
    let gone = recordings::sweep(&store, |_| 7, now).await.unwrap();
    assert_eq!(gone, ["chan-1", "chan-2"]);
    let left: Vec<String> = recordings::list(&store, None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(left, ["chan-2-clip-0-1000", "chan-3"]);
    assert!(
        store.get("chan/1/source/5.m4s").await.unwrap().is_none(),
        "media of A kept"
    );
    assert!(
        store.get("chan/2/source/5.m4s").await.unwrap().is_some(),
        "the clip's media went"
    );
    assert!(
        store
            .get(&recordings::playlist_key("chan-1", "source"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.metrics().retention_deletes.get(), 2);
    // 0 days: kept forever.
    assert!(
        recordings::sweep(&store, |_| 0, now + 1000 * day)
            .await
            .unwrap()
            .is_empty()
    );
    // Ids that could leave the index are refused before the store is asked.
    for bad in ["..", "a/b", "../recordings/x", "a.json"] {
        assert!(matches!(
            recordings::get(&store, bad).await,
            Err(recordings::RecordingError::InvalidId)
        ));
        assert!(recordings::delete(&store, bad).await.is_err());
    }
}

#[tokio::test]
async fn the_spool_keeps_writes_through_an_outage_and_a_restart() {
    let moto = moto::Moto::start().await;
    let store = store(&moto, |_| {});
    let dir = tempfile::tempdir().unwrap();
    moto.pause();
    let first = CancellationToken::new();
    let spool = Spool::start(store.clone(), dir.path(), 1 << 20, first.clone()).unwrap();
    for i in 0..5 {
        spool.put(
            format!("s/1/source/{i}.m4s"),
            vec![Bytes::from(vec![i as u8; 1000])],
        );
    }
    spool.put_after(
        "recordings/s-1.json".into(),
        vec![Bytes::from_static(b"{}")],
    );
    // Past the bound: dropped and counted.
    spool.put(
        "s/1/source/huge.m4s".into(),
        vec![Bytes::from(vec![0; 2 << 20])],
    );
    wait_for("writes on disk", Duration::from_secs(10), async || {
        std::fs::read_dir(dir.path()).unwrap().count() == 6
    })
    .await;
    assert_eq!(
        store
            .metrics()
            .uploads
            .with_label_values(&["dropped"])
            .get(),
        1
    );
    // The origin restarts while the store is still down.
    first.cancel();
    drop(spool);
    let second = CancellationToken::new();
    let spool = Spool::start(store.clone(), dir.path(), 1 << 20, second.clone()).unwrap();
    assert_eq!(store.metrics().spool_depth.get(), 6);
    moto.resume();
    wait_for("spool drained", Duration::from_secs(30), async || {
        spool.pending() == 0
    })
    .await;
    for i in 0..5 {
        let got = store.get(&format!("s/1/source/{i}.m4s")).await.unwrap();
        assert_eq!(got.unwrap(), vec![i as u8; 1000]);
    }
    assert!(store.get("recordings/s-1.json").await.unwrap().is_some());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    second.cancel();
}
