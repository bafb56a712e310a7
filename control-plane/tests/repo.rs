//! The repository against both databases: every test body runs on SQLite and on
//! PostgreSQL (the machine's server; a fresh database per test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestDb;
use potok_config::wire::{Heartbeat, LiveStream, NodeRole, Register};
use potok_control_plane::db::{Attempt, Db, NewAccount, RepoError, StreamFilter, StreamMeta};
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
        reserved_names: Vec::new(),
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
                recording: None,
            },
            LiveStream {
                name: "b".into(),
                publishing: false,
                recording: None,
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
        reserved_names: Vec::new(),
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
    let limit = 3;
    assert_eq!(
        db.rate_count("auth", "1.2.3.4", t - 60_000).await.unwrap(),
        0
    );
    // An old attempt does not count in the window.
    let Attempt::Allowed(_) = db
        .rate_attempt("auth", "1.2.3.4", t - 70_000, t - 130_000, limit)
        .await
        .unwrap()
    else {
        panic!("first attempt refused");
    };
    let mut allowed = Vec::new();
    for _ in 0..3 {
        match db
            .rate_attempt("auth", "1.2.3.4", t, t - 60_000, limit)
            .await
            .unwrap()
        {
            Attempt::Allowed(id) => allowed.push(id),
            Attempt::Refused => panic!("refused within the limit"),
        }
    }
    assert_eq!(
        db.rate_attempt("auth", "1.2.3.4", t, t - 60_000, limit)
            .await
            .unwrap(),
        Attempt::Refused
    );
    // The refused attempt left no row; other kinds and addresses are apart.
    assert_eq!(
        db.rate_count("auth", "1.2.3.4", t - 60_000).await.unwrap(),
        3
    );
    assert_eq!(db.rate_count("signup", "1.2.3.4", 0).await.unwrap(), 0);
    assert!(matches!(
        db.rate_attempt("auth", "5.6.7.8", t, t - 60_000, limit)
            .await
            .unwrap(),
        Attempt::Allowed(_)
    ));
    // A released attempt (a right password) frees its place.
    db.rate_release(&allowed[0]).await.unwrap();
    assert!(matches!(
        db.rate_attempt("auth", "1.2.3.4", t, t - 60_000, limit)
            .await
            .unwrap(),
        Attempt::Allowed(_)
    ));
    db.rate_forget_before("auth", t - 60_000).await.unwrap();
    assert_eq!(db.rate_count("auth", "1.2.3.4", 0).await.unwrap(), 3);
    assert_eq!(db.rate_count("auth", "5.6.7.8", 0).await.unwrap(), 1);
}

both!(parallel_attempts, parallel_attempts_body);

/// Fifty attempts at once against a limit of ten: never more than ten are allowed.
async fn parallel_attempts_body(db: &Db) {
    let t = now_ms();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            db.rate_attempt("auth", "9.9.9.9", t, t - 60_000, 10)
                .await
                .unwrap()
        }));
    }
    let mut allowed = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), Attempt::Allowed(_)) {
            allowed += 1;
        }
    }
    assert!(allowed <= 10, "{allowed} of 50 parallel attempts allowed");
    assert!(db.rate_count("auth", "9.9.9.9", 0).await.unwrap() <= 10);
}

both!(first_admin, first_admin_body);

/// Six sign-ups at once on a fresh installation: exactly one becomes the admin. A privileged
/// role asked for by a non-admin creates nothing once the admin exists; reserved names
/// cannot be taken.
async fn first_admin_body(db: &Db) {
    assert!(!db.has_first_admin().await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..6 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            db.create_account(&format!("user{i}"), "h", UserRole::Viewer, false)
                .await
                .unwrap()
        }));
    }
    let mut admins = 0;
    for task in tasks {
        match task.await.unwrap() {
            NewAccount::Created(u) if u.role == UserRole::Admin => admins += 1,
            NewAccount::Created(u) => assert_eq!(u.role, UserRole::Viewer),
            NewAccount::NeedsAdmin => panic!("a viewer needs no admin"),
        }
    }
    assert_eq!(admins, 1);
    assert!(db.has_first_admin().await.unwrap());
    let stored: Vec<_> = futures_roles(db).await;
    assert_eq!(
        stored.iter().filter(|r| *r == "admin").count(),
        1,
        "{stored:?}"
    );
    assert!(matches!(
        db.create_account("sneaky", "h", UserRole::Admin, false)
            .await
            .unwrap(),
        NewAccount::NeedsAdmin
    ));
    assert!(db.user_by_name("sneaky").await.unwrap().is_none());
    assert!(matches!(
        db.create_account("mod", "h", UserRole::Moderator, true)
            .await
            .unwrap(),
        NewAccount::Created(u) if u.role == UserRole::Moderator
    ));
    // Reserved names.
    let clashes = db
        .reserve_names("origin-1", &["alice".into(), "user0".into()])
        .await
        .unwrap();
    assert_eq!(clashes, vec!["user0".to_owned()]);
    assert!(db.is_reserved("alice").await.unwrap());
    assert!(!db.is_reserved("bob").await.unwrap());
    assert!(matches!(
        db.create_account("alice", "h", UserRole::Streamer, false)
            .await,
        Err(RepoError::Conflict(_))
    ));
    // Reserving again (an origin restart) keeps the names.
    db.reserve_names("origin-1", &["alice".into()])
        .await
        .unwrap();
    assert!(db.is_reserved("alice").await.unwrap());
}

async fn futures_roles(db: &Db) -> Vec<String> {
    let mut roles = Vec::new();
    for i in 0..6 {
        let (u, _) = db.user_by_name(&format!("user{i}")).await.unwrap().unwrap();
        roles.push(u.role.as_str().to_owned());
    }
    roles
}

both!(concurrent_writes, concurrent_writes_body);

/// Heartbeats with viewer reports, stream transitions and account writes at once for a few
/// seconds: no `database is locked` (SQLite) and no other error.
async fn concurrent_writes_body(db: &Db) {
    use potok_config::wire::StreamViewers;
    let o = db.register_node(&register("origin-x", 0)).await.unwrap();
    let edges: Vec<_> = {
        let mut v = Vec::new();
        for i in 0..3 {
            let mut r = register(&format!("edge-{i}"), 0);
            r.role = NodeRole::Edge;
            v.push(db.register_node(&r).await.unwrap());
        }
        v
    };
    let owner = db
        .create_user("streamer", "h", UserRole::Streamer)
        .await
        .unwrap();
    let stream = db
        .create_stream(&owner, &meta("t", "c", "ru", &[]))
        .await
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut tasks = Vec::new();
    for (i, e) in edges.into_iter().enumerate() {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while std::time::Instant::now() < until {
                let hb = Heartbeat {
                    viewers: vec![StreamViewers {
                        name: "streamer".into(),
                        viewers: n % 7 + i as u64,
                    }],
                    ..Heartbeat::default()
                };
                db.heartbeat(&e.id, &hb).await.unwrap().unwrap();
                db.report_viewers(&e.id, &hb.viewers).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    {
        let db = db.clone();
        let id = stream.id.clone();
        let oid = o.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while std::time::Instant::now() < until {
                let hb = Heartbeat {
                    streams: vec![LiveStream {
                        name: "streamer".into(),
                        publishing: n.is_multiple_of(2),
                        recording: None,
                    }],
                    ..Heartbeat::default()
                };
                db.heartbeat(&oid, &hb).await.unwrap().unwrap();
                let to = if n.is_multiple_of(2) {
                    StreamStatus::Live
                } else {
                    StreamStatus::Paused
                };
                db.transition(&id, to, Some(Some(&oid))).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while std::time::Instant::now() < until {
                let u = db
                    .create_account(&format!("viewer{n}"), "h", UserRole::Viewer, false)
                    .await
                    .unwrap();
                let NewAccount::Created(u) = u else {
                    panic!("viewer refused")
                };
                db.create_token(&u.id, "t", &format!("hash{n}"), None)
                    .await
                    .unwrap();
                let t = now_ms();
                let _ = db
                    .rate_attempt("auth", "7.7.7.7", t, t - 60_000, 1_000_000)
                    .await
                    .unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert!(total > 10, "only {total} rounds ran");
}
