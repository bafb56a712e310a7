//! The repository against both databases: every test body runs on SQLite and on
//! PostgreSQL (the machine's server; a fresh database per test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestDb;
use potok_config::wire::{Heartbeat, LiveStream, NodeRole, Register};
use potok_control_plane::db::{Db, RepoError, StreamFilter, StreamMeta};
use potok_control_plane::model::{StreamStatus, UserRole, now_ms};

macro_rules! both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let t = super::TestDb::sqlite().await;
                super::$body(&t.db).await;
                t.cleanup().await;
            }
            #[tokio::test]
            async fn postgres() {
                let t = super::TestDb::postgres().await;
                super::$body(&t.db).await;
                t.cleanup().await;
            }
        }
    };
}

both!(users_and_tokens, users_and_tokens_body);
both!(stream_keys, stream_keys_body);
both!(streams_and_filters, streams_and_filters_body);
both!(status_machine, status_machine_body);
both!(nodes, nodes_body);
both!(viewers, viewers_body);
both!(failures, failures_body);

async fn users_and_tokens_body(db: &Db) {
    assert_eq!(db.count_users().await.unwrap(), 0);
    let alice = db
        .create_user("alice", "hash-a", UserRole::Streamer)
        .await
        .unwrap();
    assert!(matches!(
        db.create_user("alice", "x", UserRole::Viewer).await,
        Err(RepoError::Conflict("username"))
    ));
    let (found, hash) = db.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!((found.clone(), hash.as_str()), (alice.clone(), "hash-a"));
    assert_eq!(db.user(&alice.id).await.unwrap(), Some(alice.clone()));
    assert!(db.user_by_name("bob").await.unwrap().is_none());

    let t1 = db.create_token(&alice.id, "cli", "h1", None).await.unwrap();
    let expired = db
        .create_token(&alice.id, "old", "h2", Some(now_ms() - 1))
        .await
        .unwrap();
    assert_eq!(db.user_by_token("h1").await.unwrap(), Some(alice.clone()));
    assert_eq!(db.user_by_token("h2").await.unwrap(), None, "expired");
    assert_eq!(db.user_by_token("nope").await.unwrap(), None);
    let listed: Vec<String> = db
        .tokens(&alice.id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert!(listed.contains(&t1.id) && listed.contains(&expired.id));
    assert!(db.revoke_token(&alice.id, &t1.id).await.unwrap());
    assert!(!db.revoke_token(&alice.id, &t1.id).await.unwrap(), "twice");
    assert_eq!(db.user_by_token("h1").await.unwrap(), None);
    // Another user cannot revoke alice's token.
    let bob = db
        .create_user("bob", "hash-b", UserRole::Viewer)
        .await
        .unwrap();
    assert!(!db.revoke_token(&bob.id, &expired.id).await.unwrap());
}

async fn stream_keys_body(db: &Db) {
    let alice = db
        .create_user("alice", "h", UserRole::Streamer)
        .await
        .unwrap();
    let k = db.create_key(&alice.id, "kh1", "sk_abcd").await.unwrap();
    assert_eq!(db.user_by_key("kh1").await.unwrap(), Some(alice.clone()));
    assert_eq!(db.keys(&alice.id).await.unwrap(), vec![k.clone()]);
    assert!(db.revoke_key(&alice.id, &k.id).await.unwrap());
    assert_eq!(db.user_by_key("kh1").await.unwrap(), None);
    assert!(db.keys(&alice.id).await.unwrap().is_empty());
}

fn meta(title: &str, category: &str, language: &str, tags: &[&str]) -> StreamMeta {
    StreamMeta {
        title: title.into(),
        description: String::new(),
        category: category.into(),
        language: language.into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    }
}

async fn streams_and_filters_body(db: &Db) {
    let a = db
        .create_user("alice", "h", UserRole::Streamer)
        .await
        .unwrap();
    let b = db
        .create_user("bob", "h", UserRole::Streamer)
        .await
        .unwrap();
    let c = db
        .create_user("carol", "h", UserRole::Streamer)
        .await
        .unwrap();
    let sa = db
        .create_stream(&a, &meta("Dota ranked", "dota2", "ru", &["ranked", "pro"]))
        .await
        .unwrap();
    let sb = db
        .create_stream(&b, &meta("CS2 with friends", "cs2", "en", &["fun"]))
        .await
        .unwrap();
    let sc = db
        .create_stream(&c, &meta("Dota chill", "dota2", "en", &["ranked_"]))
        .await
        .unwrap();
    assert_eq!(sa.status, StreamStatus::Starting);
    assert_eq!(sa.name, "alice");
    assert_eq!(sa.tags, ["ranked", "pro"]);
    db.transition(&sa.id, StreamStatus::Live, None)
        .await
        .unwrap();
    db.transition(&sb.id, StreamStatus::Live, None)
        .await
        .unwrap();
    db.set_viewers(&sb.id, 50).await.unwrap();
    db.set_viewers(&sb.id, 20).await.unwrap();

    let page = |f: StreamFilter| async move { db.list_streams(&f).await.unwrap() };
    let all = page(StreamFilter {
        limit: 20,
        ..Default::default()
    })
    .await;
    assert_eq!(all.1, 3);
    let live = page(StreamFilter {
        live_only: true,
        limit: 20,
        ..Default::default()
    })
    .await;
    assert_eq!(live.1, 2);
    assert_eq!(live.0[0].id, sb.id, "most viewers first");
    assert_eq!(live.0[0].peak_viewers, 50);
    assert_eq!(live.0[0].current_viewers, 20);
    let dota = page(StreamFilter {
        category: Some("dota2".into()),
        limit: 20,
        ..Default::default()
    })
    .await;
    assert_eq!(dota.1, 2);
    let en_dota = page(StreamFilter {
        category: Some("dota2".into()),
        language: Some("en".into()),
        limit: 20,
        ..Default::default()
    })
    .await;
    assert_eq!(
        en_dota.0.iter().map(|s| &s.id).collect::<Vec<_>>(),
        [&sc.id]
    );
    // A whole tag, not a prefix, and LIKE wildcards in the tag are literal.
    let ranked = page(StreamFilter {
        tag: Some("ranked".into()),
        limit: 20,
        ..Default::default()
    })
    .await;
    assert_eq!(ranked.0.iter().map(|s| &s.id).collect::<Vec<_>>(), [&sa.id]);
    let underscore = page(StreamFilter {
        tag: Some("ranked_".into()),
        limit: 20,
        ..Default::default()
    })
    .await;
    assert_eq!(
        underscore.0.iter().map(|s| &s.id).collect::<Vec<_>>(),
        [&sc.id]
    );
    // Pages.
    let first = page(StreamFilter {
        limit: 2,
        ..Default::default()
    })
    .await;
    let second = page(StreamFilter {
        limit: 2,
        offset: 2,
        ..Default::default()
    })
    .await;
    assert_eq!((first.0.len(), second.0.len(), first.1), (2, 1, 3));
    assert!(!first.0.iter().any(|s| s.id == second.0[0].id));

    let updated = db
        .update_stream(&sa.id, &meta("New title", "dota2", "ru", &["x"]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (updated.title.as_str(), updated.tags.len()),
        ("New title", 1)
    );
    assert_eq!(db.open_stream_of(&a.id).await.unwrap().unwrap().id, sa.id);
    assert_eq!(
        db.open_stream_named("alice").await.unwrap().unwrap().id,
        sa.id
    );
}

async fn status_machine_body(db: &Db) {
    let a = db
        .create_user("alice", "h", UserRole::Streamer)
        .await
        .unwrap();
    let s = db
        .create_stream(&a, &meta("t", "c", "ru", &[]))
        .await
        .unwrap();
    let origin = db.register_node(&register("origin-1", 0)).await.unwrap();
    // starting -> paused is not allowed: nothing changes.
    let same = db
        .transition(&s.id, StreamStatus::Paused, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same.status, StreamStatus::Starting);
    let live = db
        .transition(&s.id, StreamStatus::Live, Some(Some(&origin.id)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.status, StreamStatus::Live);
    assert_eq!(live.origin_node_id.as_deref(), Some(origin.id.as_str()));
    assert!(live.started_at.is_some());
    assert_eq!(
        db.streams_on_node(&origin.id, &[StreamStatus::Live])
            .await
            .unwrap()
            .len(),
        1
    );
    let paused = db
        .transition(&s.id, StreamStatus::Paused, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(paused.status, StreamStatus::Paused);
    let err = db
        .transition(&s.id, StreamStatus::Error, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(err.status, StreamStatus::Error);
    let ended = db
        .transition(&s.id, StreamStatus::Ended, Some(None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.status, StreamStatus::Ended);
    assert!(ended.ended_at.is_some() && ended.origin_node_id.is_none());
    // Ended is final.
    let still = db
        .transition(&s.id, StreamStatus::Live, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.status, StreamStatus::Ended);
    assert!(db.open_stream_of(&a.id).await.unwrap().is_none());
}

fn register(name: &str, max_streams: u32) -> Register {
    Register {
        role: NodeRole::Origin,
        name: name.into(),
        http_url: format!("http://{name}:8081"),
        rtmp_url: Some(format!("rtmp://{name}:1935/live")),
        rtmps_url: None,
        srt_url: Some(format!("srt://{name}:9000")),
        max_streams,
    }
}

async fn nodes_body(db: &Db) {
    let o1 = db.register_node(&register("origin-1", 2)).await.unwrap();
    let o2 = db.register_node(&register("origin-2", 0)).await.unwrap();
    assert_eq!(o1.state, "alive");
    assert!(o1.has_capacity());
    // Registering again keeps the id.
    let again = db.register_node(&register("origin-1", 2)).await.unwrap();
    assert_eq!(again.id, o1.id);

    let hb = Heartbeat {
        cpu: 1.5,
        streams: vec![
            LiveStream {
                name: "a".into(),
                publishing: true,
            },
            LiveStream {
                name: "b".into(),
                publishing: false,
            },
        ],
        transcode_rtf: Some(1.2),
        egress_bps: 1_000_000,
        viewers: Vec::new(),
    };
    let after = db.heartbeat(&o1.id, &hb).await.unwrap().unwrap();
    assert_eq!(
        (after.live_streams, after.cpu, after.transcode_rtf),
        (2, 1.5, Some(1.2))
    );
    assert!(!after.has_capacity(), "2 of 2 streams");
    assert!(db.heartbeat("unknown", &hb).await.unwrap().is_none());

    let all = db.nodes(Some("origin")).await.unwrap();
    assert_eq!(all.len(), 2);
    // Nobody heartbeats after a cutoff in the future: both die, once.
    let dead = db.mark_dead(now_ms() + 1000).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert!(db.mark_dead(now_ms() + 1000).await.unwrap().is_empty());
    assert_eq!(db.node(&o2.id).await.unwrap().unwrap().state, "dead");
    // A heartbeat revives.
    let revived = db
        .heartbeat(&o2.id, &Heartbeat::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revived.state, "alive");
}

async fn viewers_body(db: &Db) {
    use potok_config::wire::StreamViewers;
    let a = db
        .create_user("alice", "h", UserRole::Streamer)
        .await
        .unwrap();
    let s = db
        .create_stream(&a, &meta("t", "c", "ru", &[]))
        .await
        .unwrap();
    let edge = |name: &str| Register {
        role: NodeRole::Edge,
        name: name.into(),
        http_url: format!("http://{name}:8080"),
        rtmp_url: None,
        rtmps_url: None,
        srt_url: None,
        max_streams: 0,
    };
    let e1 = db.register_node(&edge("e1")).await.unwrap();
    let e2 = db.register_node(&edge("e2")).await.unwrap();
    let watching = |n: u64| {
        vec![StreamViewers {
            name: "alice".into(),
            viewers: n,
        }]
    };
    db.report_viewers(&e1.id, &watching(3)).await.unwrap();
    db.report_viewers(&e2.id, &watching(4)).await.unwrap();
    let now = db.stream(&s.id).await.unwrap().unwrap();
    assert_eq!((now.current_viewers, now.peak_viewers), (7, 7));
    // e1's viewers left; the peak stays.
    db.report_viewers(&e1.id, &[]).await.unwrap();
    let now = db.stream(&s.id).await.unwrap().unwrap();
    assert_eq!((now.current_viewers, now.peak_viewers), (4, 7));
    // Reports of dead edges do not count (the heartbeat that revives an edge comes first).
    db.mark_dead(now_ms() + 1000).await.unwrap();
    db.report_viewers(&e2.id, &watching(4)).await.unwrap();
    let now = db.stream(&s.id).await.unwrap().unwrap();
    assert_eq!((now.current_viewers, now.peak_viewers), (0, 7));
}

async fn failures_body(db: &Db) {
    let t = now_ms();
    assert_eq!(db.failures_since("1.2.3.4", t - 60_000).await.unwrap(), 0);
    db.record_failure("1.2.3.4", t - 70_000).await.unwrap();
    db.record_failure("1.2.3.4", t - 1_000).await.unwrap();
    db.record_failure("1.2.3.4", t).await.unwrap();
    db.record_failure("5.6.7.8", t).await.unwrap();
    assert_eq!(db.failures_since("1.2.3.4", t - 60_000).await.unwrap(), 2);
    db.forget_failures_before(t - 60_000).await.unwrap();
    assert_eq!(db.failures_since("1.2.3.4", 0).await.unwrap(), 2);
    assert_eq!(db.failures_since("5.6.7.8", 0).await.unwrap(), 1);
}
