//! Chat over the real-time gateway and the REST API, in-process on 127.0.0.1:0: rooms,
//! history and resume, moderation, modes, filters, bad input on the socket, and two
//! control-plane replicas on PostgreSQL + NATS JetStream delivering in one order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use potok_config::Config;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use common::{Cp, SECRET, code, start, wait_for};

impl Cp {
    async fn say(&self, token: &str, room: &str, text: &str) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/api/v1/chat/{room}/messages"),
            Some(token),
            Some(json!({"text": text})),
        )
        .await
    }

    async fn ws(&self, token: Option<&str>) -> Ws {
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                format!("ws://{}/api/v1/realtime", self.addr),
            )
            .unwrap();
        if let Some(t) = token {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(req),
        )
        .await
        .unwrap()
        .unwrap();
        let mut ws = Ws(ws);
        assert_eq!(ws.next_json().await["type"], "hello");
        ws
    }
}

struct Ws(
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
);

impl Ws {
    async fn send(&mut self, v: Value) {
        self.0
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    /// The next frame (text frames as JSON; a close as `{"type":"close",...}`).
    async fn next_json(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.0.next())
                .await
                .expect("no frame within 10 s");
            match m {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(Message::Close(c))) => {
                    return json!({"type": "close", "code": c.as_ref().map(|c| u16::from(c.code)),
                        "reason": c.as_ref().map(|c| c.reason.to_string())});
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return json!({"type": "close", "error": e.to_string()}),
                None => return json!({"type": "close"}),
            }
        }
    }

    /// Frames until one of `kind` (`type`), skipping others.
    async fn until(&mut self, kind: &str) -> Value {
        loop {
            let v = self.next_json().await;
            eprintln!("frame: {v}");
            if v["type"] == kind {
                return v;
            }
            assert_ne!(v["type"], "close", "closed while waiting for {kind}: {v}");
        }
    }

    async fn subscribe(&mut self, room: &str, since: Option<i64>) -> Value {
        self.subscribe_to(&format!("chat:{room}"), since).await
    }

    async fn subscribe_to(&mut self, channel: &str, since: Option<i64>) -> Value {
        let mut f = json!({"type": "subscribe", "channel": channel});
        if let Some(s) = since {
            f["since"] = json!(s);
        }
        self.send(f).await;
        self.until("subscribed").await
    }

    /// The next room event's (offset, data).
    async fn event(&mut self) -> (i64, Value) {
        let v = self.until("event").await;
        (v["offset"].as_i64().unwrap(), v["data"].clone())
    }
}

#[tokio::test]
async fn two_clients_chat_and_a_reconnect_resumes_from_its_offset() {
    let cp = start(|_| {}).await;
    let alice = cp.account("alice", "streamer", None).await.1;
    let bob = cp.account("bob", "viewer", None).await.1;
    cp.say(&alice, "alice", "welcome to the stream").await;

    let mut a = cp.ws(Some(&alice)).await;
    let mut b = cp.ws(None).await; // anonymous: reads only
    b.send(json!({"type": "auth", "token": bob})).await;
    assert_eq!(b.until("hello").await["user"], "bob");
    let sub = b.subscribe("alice", None).await;
    assert_eq!(
        sub["history"][0]["content"]["text"],
        "welcome to the stream"
    );
    assert_eq!(sub["offset"], 1);
    a.subscribe("alice", None).await;

    a.send(json!({"type": "send", "channel": "chat:alice", "text": "hi @bob", "ref": 7}))
        .await;
    let ack = a.until("ack").await;
    assert_eq!(
        (ack["ref"].clone(), ack["offset"].clone()),
        (json!(7), json!(2))
    );
    let (off, data) = b.event().await;
    assert_eq!(off, 2);
    assert_eq!(data["kind"], "message");
    assert_eq!(data["message"]["content"]["mentions"][0]["username"], "bob");
    let (s, m) = cp.say(&bob, "alice", "hello alice").await;
    assert_eq!(s, 201, "{m}");
    // Alice's own message (offset 2) may have come before or after her ack.
    let (mut off, mut data) = a.event().await;
    if off == 2 {
        (off, data) = a.event().await;
    }
    assert_eq!(
        (off, data["message"]["content"]["text"].as_str()),
        (3, Some("hello alice"))
    );
    assert_eq!(b.event().await.0, 3);

    // Anonymous sockets cannot write.
    let mut anon = cp.ws(None).await;
    anon.send(json!({"type": "send", "channel": "chat:alice", "text": "x", "ref": 1}))
        .await;
    assert_eq!(code(&anon.until("error").await), "UNAUTHORIZED");

    // Bob drops; three messages later he resumes from offset 3 and misses nothing.
    drop(b);
    for t in ["one", "two", "three"] {
        assert_eq!(cp.say(&alice, "alice", t).await.0, 201);
    }
    let mut b = cp.ws(Some(&bob)).await;
    let sub = b.subscribe("alice", Some(3)).await;
    assert_eq!(sub["recovered"], true, "{sub}");
    let missed: Vec<i64> = sub["missed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(missed, vec![4, 5, 6]);
    assert_eq!(sub["offset"], 6);
    // An offset the room never had cannot be recovered.
    let mut c = cp.ws(None).await;
    assert_eq!(c.subscribe("alice", Some(99)).await["recovered"], false);

    // Delete (own), edit (own), REST history reflects both.
    let (_, mine) = cp.say(&bob, "alice", "typo mesage").await;
    let id = mine["id"].as_str().unwrap();
    let (s, edited) = cp
        .call(
            "PATCH",
            &format!("/api/v1/chat/alice/messages/{id}"),
            Some(&bob),
            Some(json!({"text": "typo message"})),
        )
        .await;
    assert_eq!(s, 200, "{edited}");
    assert_eq!(b.event().await.1["kind"], "message");
    assert_eq!(b.event().await.1["kind"], "edited");
    assert_eq!(
        cp.call(
            "DELETE",
            &format!("/api/v1/chat/alice/messages/{id}"),
            Some(&alice),
            None
        )
        .await
        .0,
        204,
        "the owner deletes"
    );
    let (off, data) = b.event().await;
    assert_eq!((off, data["kind"].as_str()), (9, Some("deleted")));
    let (_, h) = cp
        .call("GET", "/api/v1/chat/alice/messages?limit=3", None, None)
        .await;
    let texts: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["one", "two", "three"]);
    // No room for viewers, and someone else's message cannot be deleted by a viewer.
    assert_eq!(
        cp.call("GET", "/api/v1/chat/bob/messages", None, None)
            .await
            .0,
        404
    );
    let (_, other) = cp.say(&alice, "alice", "from the owner").await;
    let (s, _) = cp
        .call(
            "DELETE",
            &format!(
                "/api/v1/chat/alice/messages/{}",
                other["id"].as_str().unwrap()
            ),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn moderation_bans_timeouts_and_roles() {
    let cp = start(|_| {}).await;
    let alice = cp.account("alice", "streamer", None).await.1;
    let bob = cp.account("bob", "viewer", None).await.1;
    let carol = cp.account("carol", "viewer", None).await.1;
    let mut b = cp.ws(Some(&bob)).await;
    b.subscribe("alice", None).await;
    let mut c = cp.ws(Some(&carol)).await;
    c.subscribe("alice", None).await;
    let (_, spam) = cp.say(&bob, "alice", "buy followers cheap").await;

    // Carol is no moderator yet.
    let ban = json!({"username": "bob", "reason": "spam"});
    assert_eq!(
        cp.call(
            "POST",
            "/api/v1/chat/alice/bans",
            Some(&carol),
            Some(ban.clone())
        )
        .await
        .0,
        403
    );
    assert_eq!(
        cp.call(
            "PUT",
            "/api/v1/chat/alice/roles/carol",
            Some(&alice),
            Some(json!({"role": "moderator"}))
        )
        .await
        .0,
        204
    );
    assert_eq!(
        cp.call("POST", "/api/v1/chat/alice/bans", Some(&carol), Some(ban))
            .await
            .0,
        204
    );
    // Bob's socket leaves the room with the reason; his message is hidden for everyone.
    let e = b.until("error").await;
    assert_eq!(code(&e), "USER_BANNED", "{e}");
    let (_, data) = c.event().await; // bob's message
    assert_eq!(data["kind"], "message");
    let (_, data) = c.event().await;
    assert_eq!(data["kind"], "user_sanctioned");
    assert_eq!(data["hidden"][0], spam["id"]);
    let (_, h) = cp
        .call("GET", "/api/v1/chat/alice/messages", None, None)
        .await;
    assert!(h["messages"].as_array().unwrap().is_empty(), "{h}");
    // He can neither write nor rejoin.
    let (s, e) = cp.say(&bob, "alice", "let me back").await;
    assert_eq!((s, code(&e)), (403, "USER_BANNED"));
    b.send(json!({"type": "subscribe", "channel": "chat:alice"}))
        .await;
    assert_eq!(code(&b.until("error").await), "USER_BANNED");
    // A moderator cannot ban the owner.
    let (s, _) = cp
        .call(
            "POST",
            "/api/v1/chat/alice/bans",
            Some(&carol),
            Some(json!({"username": "alice"})),
        )
        .await;
    assert_eq!(s, 403);
    // Unban; a one-second timeout expires by itself.
    assert_eq!(
        cp.call("DELETE", "/api/v1/chat/alice/bans/bob", Some(&carol), None)
            .await
            .0,
        204
    );
    assert_eq!(cp.say(&bob, "alice", "sorry").await.0, 201);
    assert_eq!(
        cp.call(
            "POST",
            "/api/v1/chat/alice/timeouts",
            Some(&alice),
            Some(json!({"username": "bob", "seconds": 1}))
        )
        .await
        .0,
        204
    );
    let (s, e) = cp.say(&bob, "alice", "am I out?").await;
    assert_eq!((s, code(&e)), (403, "USER_BANNED"), "{e}");
    assert!(e["message"].as_str().unwrap().contains("timed out"));
    wait_for(Duration::from_secs(5), async || {
        cp.say(&bob, "alice", "back again").await.0 == 201
    })
    .await;
    // The moderation log names who did what.
    let (s, log) = cp
        .call("GET", "/api/v1/chat/alice/modlog", Some(&carol), None)
        .await;
    assert_eq!(s, 200);
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    for a in ["add_moderator", "ban", "unban", "timeout"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert_eq!(
        cp.call("GET", "/api/v1/chat/alice/modlog", Some(&bob), None)
            .await
            .0,
        403
    );
    // moderateMessage: delete and time out in one.
    let (_, m) = cp.say(&bob, "alice", "one more spam").await;
    let (s, _) = cp
        .call(
            "POST",
            &format!(
                "/api/v1/chat/alice/messages/{}/moderate",
                m["id"].as_str().unwrap()
            ),
            Some(&carol),
            Some(json!({"action": "timeout", "seconds": 60, "reason": "spam"})),
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(code(&cp.say(&bob, "alice", "hm").await.1), "USER_BANNED");
}

#[tokio::test]
async fn modes_limits_and_filters() {
    let cp = start(|c| c.control_plane.chat.user_messages_per_30s = 5).await;
    let alice = cp.account("alice", "streamer", None).await.1;
    let bob = cp.account("bob", "viewer", None).await.1;
    let set = async |s: Value| {
        let (st, v) = cp
            .call("PUT", "/api/v1/chat/alice/settings", Some(&alice), Some(s))
            .await;
        assert_eq!(st, 200, "{v}");
    };
    // Flood control: 5 per 30 s for users.
    for i in 0..5 {
        assert_eq!(cp.say(&bob, "alice", &format!("line {i}")).await.0, 201);
    }
    let (s, e) = cp.say(&bob, "alice", "line 5").await;
    assert_eq!((s, code(&e)), (429, "RATE_LIMITED"));
    // The owner has the moderators' limit.
    for i in 0..7 {
        assert_eq!(cp.say(&alice, "alice", &format!("owner {i}")).await.0, 201);
    }
    let carol = cp.account("carol", "viewer", None).await.1;
    // Duplicates, even respelled.
    assert_eq!(cp.say(&carol, "alice", "gg wp").await.0, 201);
    let (s, e) = cp.say(&carol, "alice", "GG  wp").await;
    assert_eq!((s, code(&e)), (422, "MESSAGE_BLOCKED"), "{e}");
    // Blocked terms, matched through look-alikes, leetspeak, repeats and zero-width spaces.
    set(json!({"blocked_terms": ["кринж"]})).await;
    for text in [
        "это КРИНЖ",
        "это крuнж",
        "это крииинж",
        "это к\u{200B}ринж",
        "это kpинж",
    ] {
        let (s, e) = cp.say(&carol, "alice", text).await;
        assert_eq!((s, code(&e)), (422, "MESSAGE_BLOCKED"), "{text}: {e}");
    }
    let (s, e) = cp.say(&carol, "alice", "what the fuuuck").await;
    assert_eq!((s, code(&e)), (422, "MESSAGE_BLOCKED"), "{e}");
    // Links: refused unless allowed.
    let dave = cp.account("dave", "viewer", None).await.1;
    let (s, e) = cp.say(&dave, "alice", "see https://evil.example/x").await;
    assert_eq!((s, code(&e)), (422, "MESSAGE_BLOCKED"));
    set(json!({"link_allow_list": ["youtube.com"]})).await;
    assert_eq!(
        cp.say(&dave, "alice", "clip: https://www.youtube.com/watch?v=1")
            .await
            .0,
        201
    );
    // Slow mode: one message per 60 s (moderators exempt).
    set(json!({"slow_secs": 60})).await;
    let (s, e) = cp.say(&dave, "alice", "second one").await;
    assert_eq!((s, code(&e)), (429, "RATE_LIMITED"));
    assert!(e["message"].as_str().unwrap().contains("slow mode"));
    assert_eq!(
        cp.say(&alice, "alice", "owners are never slowed").await.0,
        201
    );
    // Followers-only: follow first.
    set(json!({"followers_only_minutes": 0})).await;
    let erin = cp.account("erin", "viewer", None).await.1;
    let (s, e) = cp.say(&erin, "alice", "hello").await;
    assert_eq!((s, code(&e)), (422, "MESSAGE_BLOCKED"));
    let (s, ch) = cp
        .call("PUT", "/api/v1/channels/alice/follow", Some(&erin), None)
        .await;
    assert_eq!((s, ch["followers"].clone()), (200, json!(1)));
    assert_eq!(cp.say(&erin, "alice", "hello").await.0, 201);
    // Emote-only and unique chat.
    set(json!({"emote_only": true, "emotes": ["potokHype"]})).await;
    let frank = cp.account("frank", "viewer", None).await.1;
    assert_eq!(
        code(&cp.say(&frank, "alice", "words").await.1),
        "MESSAGE_BLOCKED"
    );
    assert_eq!(
        code(&cp.say(&frank, "alice", ":unknown:").await.1),
        "MESSAGE_BLOCKED"
    );
    assert_eq!(cp.say(&frank, "alice", "🔥🔥").await.0, 201);
    let (s, m) = cp.say(&frank, "alice", ":potokHype: 🔥").await;
    assert_eq!(
        (s, m["content"]["emojis"][0].as_str()),
        (201, Some("potokHype")),
        "{m}"
    );
    let (s, _) = cp
        .call(
            "PUT",
            "/api/v1/chat/alice/settings",
            Some(&alice),
            Some(json!({"emotes": ["no spaces"]})),
        )
        .await;
    assert_eq!(s, 422);
    set(json!({"unique_chat": true})).await;
    let gina = cp.account("gina", "viewer", None).await.1;
    assert_eq!(
        code(&cp.say(&gina, "alice", "gg wp").await.1),
        "MESSAGE_BLOCKED"
    );
    // Minimum account age.
    set(json!({"min_account_age_secs": 3600})).await;
    let hank = cp.account("hank", "viewer", None).await.1;
    assert_eq!(
        code(&cp.say(&hank, "alice", "first!").await.1),
        "MESSAGE_BLOCKED"
    );
    // Length.
    let (s, e) = cp.say(&hank, "alice", &"x".repeat(501)).await;
    assert_eq!((s, code(&e)), (422, "VALIDATION_FAILED"));
    // Settings are for the room's moderators only.
    let (s, _) = cp
        .call(
            "PUT",
            "/api/v1/chat/alice/settings",
            Some(&bob),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn bad_input_on_the_socket_gets_a_reason_and_never_a_panic() {
    let cp = start(|c| {
        c.control_plane.chat.max_frame_bytes = 1024;
        c.control_plane.chat.client_frames_per_second = 5;
        c.control_plane.chat.max_connections_per_address = 6;
    })
    .await;
    let alice = cp.account("alice", "streamer", None).await.1;
    // Invalid JSON and unknown types: an error frame, the socket stays.
    let mut w = cp.ws(Some(&alice)).await;
    w.0.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(code(&w.until("error").await), "VALIDATION_FAILED");
    w.send(json!({"type": "teleport"})).await;
    assert_eq!(code(&w.until("error").await), "VALIDATION_FAILED");
    w.send(json!({"type": "subscribe", "channel": "chat:../../etc"}))
        .await;
    assert_eq!(code(&w.until("error").await), "VALIDATION_FAILED");
    w.send(json!({"type": "ping", "ref": "p"})).await;
    assert_eq!(w.until("pong").await["ref"], "p");
    // Binary frames: closed with a reason.
    w.0.send(Message::Binary(vec![0u8; 16].into()))
        .await
        .unwrap();
    let close = w.until("close").await;
    assert_eq!(close["code"], 1003, "{close}");
    // Oversized frames: closed.
    let mut w = cp.ws(Some(&alice)).await;
    let _ = w.0.send(Message::Text("x".repeat(4096).into())).await;
    assert_eq!(w.until("close").await["type"], "close");
    // A flood: closed with 1008.
    let mut w = cp.ws(Some(&alice)).await;
    for _ in 0..30 {
        if w.0
            .send(Message::Text(json!({"type": "ping"}).to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let close = w.until("close").await;
    assert_eq!(close["code"], 1008, "{close}");
    assert!(
        close["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("flood"),
        "{close}"
    );
    // A foreign page's origin is refused before the upgrade.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/api/v1/realtime", cp.addr),
    )
    .unwrap();
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    // Too many sockets from one address.
    let mut open = Vec::new();
    let mut refused = false;
    for _ in 0..10 {
        let req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            format!("ws://{}/api/v1/realtime", cp.addr),
        )
        .unwrap();
        match tokio_tungstenite::connect_async(req).await {
            Ok((s, _)) => open.push(s),
            Err(_) => {
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "{} sockets from one address", open.len());
    drop(open);
    // The server is fine afterwards.
    wait_for(Duration::from_secs(5), async || {
        cp.say(&alice, "alice", "still here").await.0 == 201
    })
    .await;
}

/// Two control planes on one PostgreSQL database and one NATS: clients on either see every
/// message in the same order, and a client that reconnects to the other replica with its
/// last offset gets what it missed.
#[tokio::test]
async fn replicas_on_postgres_and_nats_deliver_in_one_order() {
    let url = common::fresh_postgres().await;
    let tune = |c: &mut Config| {
        c.control_plane.database.url = Some(potok_config::DatabaseUrl::new(url.clone()));
        c.control_plane.chat.nats_url = Some("nats://127.0.0.1:4222".into());
        c.control_plane.chat.moderator_messages_per_30s = 1000;
        c.control_plane.chat.user_messages_per_30s = 1000;
    };
    let a = start(tune).await;
    let b = start(tune).await;
    let alice = a.account("alice", "streamer", None).await.1;
    let bob = b.account("bob", "viewer", None).await.1;
    let mut on_a = a.ws(Some(&alice)).await;
    on_a.subscribe("alice", None).await;
    let mut on_b = b.ws(Some(&bob)).await;
    on_b.subscribe("alice", None).await;
    // Presence counts the sockets of both replicas.
    for cp in [&a, &b] {
        wait_for(Duration::from_secs(10), async || {
            cp.call("GET", "/api/v1/chat/alice/presence", None, None)
                .await
                .1["present"]
                == 2
        })
        .await;
    }
    // Both write at once through different replicas.
    let writers = [
        tokio::spawn({
            let (addr, t) = (a.addr, alice.clone());
            async move { say_many(addr, &t, "a").await }
        }),
        tokio::spawn({
            let (addr, t) = (b.addr, bob.clone());
            async move { say_many(addr, &t, "b").await }
        }),
    ];
    for w in writers {
        w.await.unwrap();
    }
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    for _ in 0..40 {
        let (o, d) = on_a.event().await;
        seen_a.push((
            o,
            d["message"]["content"]["text"].as_str().unwrap().to_owned(),
        ));
        let (o, d) = on_b.event().await;
        seen_b.push((
            o,
            d["message"]["content"]["text"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(seen_a, seen_b, "the replicas delivered different orders");
    let offsets: Vec<i64> = seen_a.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (1..=40).collect::<Vec<_>>());
    // Bob moves to replica A after missing three messages sent through B.
    drop(on_b);
    wait_for(Duration::from_secs(10), async || {
        a.call("GET", "/api/v1/chat/alice/presence", None, None)
            .await
            .1["present"]
            == 1
    })
    .await;
    for t in ["x", "y", "z"] {
        assert_eq!(b.say(&alice, "alice", t).await.0, 201);
    }
    let mut again = a.ws(Some(&bob)).await;
    let sub = again.subscribe("alice", Some(40)).await;
    assert_eq!(sub["recovered"], true, "{sub}");
    assert_eq!(sub["missed"].as_array().unwrap().len(), 3);
    drop((a, b));
    common::drop_postgres(url.rsplit('/').next().unwrap()).await;
}

async fn say_many(addr: SocketAddr, token: &str, prefix: &str) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    for i in 0..20 {
        let req = hyper::Request::post(format!("http://{addr}/api/v1/chat/alice/messages"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                json!({"text": format!("{prefix} {i}")}).to_string(),
            )))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 201);
    }
}

#[tokio::test]
async fn automod_holds_reports_and_reactions() {
    let cp = start(|_| {}).await;
    let alice = cp.account("alice", "streamer", None).await.1;
    let bob = cp.account("bob", "viewer", None).await.1;
    let carol = cp.account("carol", "viewer", None).await.1;
    let mut watcher = cp.ws(Some(&carol)).await;
    watcher.subscribe("alice", None).await;
    let (s, _) = cp
        .call(
            "PUT",
            "/api/v1/chat/alice/settings",
            Some(&alice),
            Some(json!({"automod_level": 3})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(watcher.event().await.1["kind"], "settings");
    // An insult is held, not posted; a friendly line is posted.
    let (s, held) = cp.say(&bob, "alice", "ты идиот").await;
    assert_eq!(s, 202, "{held}");
    assert_eq!(held["reason"], "insult");
    let (s, _) = cp.say(&bob, "alice", "good game").await;
    assert_eq!(s, 201);
    let (off, ev) = watcher.event().await;
    assert_eq!(
        (off, ev["message"]["content"]["text"].as_str()),
        (2, Some("good game"))
    );
    let (s, _) = cp.say(&bob, "alice", "kys").await;
    assert_eq!(s, 202);
    // Only moderators see the queue; allowing posts it, denying drops it.
    assert_eq!(
        cp.call("GET", "/api/v1/chat/alice/held", Some(&bob), None)
            .await
            .0,
        403
    );
    let (s, queue) = cp
        .call("GET", "/api/v1/chat/alice/held", Some(&alice), None)
        .await;
    assert_eq!(s, 200);
    let ids: Vec<String> = queue
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{queue}");
    let (s, posted) = cp
        .call(
            "POST",
            &format!("/api/v1/chat/alice/held/{}", ids[0]),
            Some(&alice),
            Some(json!({"allow": true})),
        )
        .await;
    assert_eq!(s, 200, "{posted}");
    assert_eq!(posted["username"], "bob");
    let (off, ev) = watcher.event().await;
    assert_eq!(
        (off, ev["message"]["content"]["text"].as_str()),
        (3, Some("ты идиот"))
    );
    let (s, _) = cp
        .call(
            "POST",
            &format!("/api/v1/chat/alice/held/{}", ids[1]),
            Some(&alice),
            Some(json!({"allow": false})),
        )
        .await;
    assert_eq!(s, 204);
    assert!(
        cp.call("GET", "/api/v1/chat/alice/held", Some(&alice), None)
            .await
            .1
            .as_array()
            .unwrap()
            .is_empty()
    );
    // The denied message took no offset: the next event is 4.
    let (_, m) = cp.say(&alice, "alice", "thanks for watching").await;
    assert_eq!(m["seq"], 4);
    assert_eq!(watcher.event().await.0, 4);

    // Reports: once per user and message; moderators read and close them.
    let mid = m["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/chat/alice/messages/{mid}/report");
    assert_eq!(
        cp.call("POST", &path, Some(&bob), Some(json!({"reason": "spam"})))
            .await
            .0,
        201
    );
    assert_eq!(
        cp.call("POST", &path, Some(&bob), Some(json!({"reason": "spam"})))
            .await
            .0,
        409
    );
    assert_eq!(
        cp.call("GET", "/api/v1/chat/alice/reports", Some(&bob), None)
            .await
            .0,
        403
    );
    let (_, reports) = cp
        .call("GET", "/api/v1/chat/alice/reports", Some(&alice), None)
        .await;
    let rid = reports[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        cp.call(
            "DELETE",
            &format!("/api/v1/chat/alice/reports/{rid}"),
            Some(&alice),
            None
        )
        .await
        .0,
        204
    );
    assert!(
        cp.call("GET", "/api/v1/chat/alice/reports", Some(&alice), None)
            .await
            .1
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Reactions: counted per emoji, sent to the room, kept in the history.
    let fire = "%F0%9F%94%A5"; // 🔥
    let rpath = format!("/api/v1/chat/alice/messages/{mid}/reactions/{fire}");
    assert_eq!(cp.call("PUT", &rpath, Some(&bob), None).await.0, 200);
    let (_, r) = cp.call("PUT", &rpath, Some(&carol), None).await;
    assert_eq!(
        (r[0]["emoji"].as_str(), r[0]["count"].as_i64()),
        (Some("🔥"), Some(2))
    );
    assert_eq!(
        cp.call("PUT", &rpath, Some(&carol), None).await.1[0]["count"],
        2,
        "once per user"
    );
    let (_, ev) = watcher.event().await;
    assert_eq!(ev["kind"], "reactions");
    let (_, r) = cp.call("DELETE", &rpath, Some(&bob), None).await;
    assert_eq!(r[0]["count"], 1);
    let (_, h) = cp
        .call("GET", "/api/v1/chat/alice/messages?limit=1", None, None)
        .await;
    assert_eq!(h["messages"][0]["reactions"][0]["count"], 1, "{h}");
    let bad = format!("/api/v1/chat/alice/messages/{mid}/reactions/hello");
    assert_eq!(cp.call("PUT", &bad, Some(&bob), None).await.0, 422);
}

#[tokio::test]
async fn notifications_arrive_live_resume_and_reach_the_outbox() {
    let cp = start(|_| {}).await;
    let alice = cp.account("alice", "streamer", None).await.1;
    let bob = cp.account("bob", "viewer", None).await.1;
    let mut feed = cp.ws(Some(&alice)).await;
    let sub = feed.subscribe_to("user:me", None).await;
    let me = sub["channel"].as_str().unwrap().to_owned();
    assert!(me.starts_with("user:"), "{sub}");
    assert_eq!(sub["offset"], 0);
    // A new follower and a mention reach alice's socket live, numbered.
    assert_eq!(
        cp.call("PUT", "/api/v1/channels/alice/follow", Some(&bob), None)
            .await
            .0,
        200
    );
    let (off, ev) = feed.event().await;
    assert_eq!(
        (off, ev["notification"]["type"].as_str()),
        (1, Some("new_follower"))
    );
    assert_eq!(ev["notification"]["data"]["follower"], "bob");
    // Following again is no news.
    cp.call("PUT", "/api/v1/channels/alice/follow", Some(&bob), None)
        .await;
    assert_eq!(cp.say(&bob, "alice", "nice play @alice").await.0, 201);
    let (off, ev) = feed.event().await;
    assert_eq!(
        (off, ev["notification"]["type"].as_str()),
        (2, Some("mention"))
    );
    // Anonymous sockets have no feed; nobody reads another's.
    let mut anon = cp.ws(None).await;
    anon.send(json!({"type": "subscribe", "channel": "user:me"}))
        .await;
    assert_eq!(code(&anon.until("error").await), "UNAUTHORIZED");
    anon.send(json!({"type": "subscribe", "channel": me})).await;
    assert_eq!(code(&anon.until("error").await), "VALIDATION_FAILED");
    // Resume after a reconnect.
    drop(feed);
    cp.say(&bob, "alice", "@alice again").await;
    let mut feed = cp.ws(Some(&alice)).await;
    let sub = feed.subscribe_to("user:me", Some(2)).await;
    assert_eq!(sub["recovered"], true, "{sub}");
    assert_eq!(sub["missed"][0]["offset"], 3);
    // REST: list, unread, mark read.
    let (_, list) = cp
        .call("GET", "/api/v1/notifications", Some(&alice), None)
        .await;
    assert_eq!(
        (list["unread"].clone(), list["offset"].clone()),
        (json!(3), json!(3))
    );
    assert_eq!(
        cp.call(
            "POST",
            "/api/v1/notifications/read",
            Some(&alice),
            Some(json!({"up_to": 2}))
        )
        .await
        .0,
        204
    );
    let (_, list) = cp
        .call("GET", "/api/v1/notifications", Some(&alice), None)
        .await;
    assert_eq!(list["unread"], 1);
    // The outbox: every notification until acknowledged (cluster secret).
    let secret = SECRET;
    assert_eq!(
        cp.call("GET", "/api/v1/cluster/notifications/outbox", None, None)
            .await
            .0,
        401
    );
    let (_, out) = cp
        .call(
            "GET",
            "/api/v1/cluster/notifications/outbox",
            Some(secret),
            None,
        )
        .await;
    assert_eq!(out.as_array().unwrap().len(), 3, "{out}");
    let id = out[0]["id"].as_str().unwrap();
    assert_eq!(
        cp.call(
            "DELETE",
            &format!("/api/v1/cluster/notifications/outbox/{id}"),
            Some(secret),
            None
        )
        .await
        .0,
        204
    );
    let (_, out) = cp
        .call(
            "GET",
            "/api/v1/cluster/notifications/outbox",
            Some(secret),
            None,
        )
        .await;
    assert_eq!(out.as_array().unwrap().len(), 2);
}
