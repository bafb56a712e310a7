//! The REST API over real HTTP, in-process on 127.0.0.1:0 with an SQLite database: every
//! endpoint, its auth failures and validation errors, and the OpenAPI document.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use potok_config::Config;
use serde_json::{Value, json};

use common::{Cp, SECRET, code, wait_for};

/// A control plane with quick heartbeats (the scheduling tests wait for dead nodes).
async fn start(tune: impl FnOnce(&mut Config)) -> Cp {
    common::start(|c| {
        c.control_plane.heartbeat_interval = "200ms".parse().unwrap();
        c.control_plane.node_timeout = "1s".parse().unwrap();
        tune(c);
    })
    .await
}

impl Cp {
    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.call("GET", path, token, None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call("POST", path, token, Some(body)).await
    }
}

#[tokio::test]
async fn accounts_tokens_and_stream_keys() {
    let cp = start(|_| {}).await;
    // Validation: every bad field named.
    let (s, e) = cp
        .post(
            "/api/v1/users",
            None,
            json!({"username": "A!", "password": "short"}),
        )
        .await;
    assert_eq!((s, code(&e)), (422, "VALIDATION_FAILED"), "{e}");
    let fields: Vec<&str> = e["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["username", "password"]);
    let (s, e) = cp.post("/api/v1/users", None, json!({"username": 5})).await;
    assert_eq!(
        (s, code(&e)),
        (422, "VALIDATION_FAILED"),
        "malformed JSON: {e}"
    );

    // The first account is the admin.
    let (admin, admin_token) = cp.account("root", "viewer", None).await;
    assert_eq!(admin["role"], "admin");
    let (s, e) = cp
        .post(
            "/api/v1/users",
            None,
            json!({"username": "root", "password": "another password"}),
        )
        .await;
    assert_eq!((s, code(&e)), (409, "CONFLICT"));
    // Only an admin makes moderators.
    let (s, e) = cp
        .post(
            "/api/v1/users",
            None,
            json!({"username": "mod", "password": "a long password", "role": "moderator"}),
        )
        .await;
    assert_eq!((s, code(&e)), (403, "FORBIDDEN"));
    let (m, _) = cp.account("mod", "moderator", Some(&admin_token)).await;
    assert_eq!(m["role"], "moderator");

    // Login failures.
    let (s, e) = cp
        .post(
            "/api/v1/sessions",
            None,
            json!({"username": "root", "password": "wrong password"}),
        )
        .await;
    assert_eq!((s, code(&e)), (401, "UNAUTHORIZED"));
    let (s, _) = cp
        .post(
            "/api/v1/sessions",
            None,
            json!({"username": "nobody", "password": "wrong password"}),
        )
        .await;
    assert_eq!(s, 401);

    // /me.
    assert_eq!(cp.get("/api/v1/me", None).await.0, 401);
    assert_eq!(cp.get("/api/v1/me", Some("pt_nope")).await.0, 401);
    let (s, me) = cp.get("/api/v1/me", Some(&admin_token)).await;
    assert_eq!((s, me["username"].as_str()), (200, Some("root")));

    // API tokens: shown once, listed without the value, revocable.
    let (s, e) = cp
        .post("/api/v1/tokens", Some(&admin_token), json!({"name": ""}))
        .await;
    assert_eq!((s, code(&e)), (422, "VALIDATION_FAILED"));
    let (s, t) = cp
        .post("/api/v1/tokens", Some(&admin_token), json!({"name": "ci"}))
        .await;
    assert_eq!(s, 201);
    let token = t["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pt_"));
    assert_eq!(cp.get("/api/v1/me", Some(&token)).await.0, 200);
    let (_, list) = cp.get("/api/v1/tokens", Some(&token)).await;
    assert!(
        !list.to_string().contains(&token),
        "the value is never listed"
    );
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let id = t["info"]["id"].as_str().unwrap();
    assert_eq!(
        cp.call(
            "DELETE",
            &format!("/api/v1/tokens/{id}"),
            Some(&admin_token),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        cp.call(
            "DELETE",
            &format!("/api/v1/tokens/{id}"),
            Some(&admin_token),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(cp.get("/api/v1/me", Some(&token)).await.0, 401, "revoked");

    // Stream keys: streamers only; shown once; rotate and revoke.
    let (_, viewer) = cp.account("vera", "viewer", None).await;
    let (s, e) = cp
        .post("/api/v1/stream-keys", Some(&viewer), json!({}))
        .await;
    assert_eq!((s, code(&e)), (403, "FORBIDDEN"));
    let (_, streamer) = cp.account("alice", "streamer", None).await;
    let (s, k) = cp
        .post("/api/v1/stream-keys", Some(&streamer), json!({}))
        .await;
    assert_eq!(s, 201, "{k}");
    let key = k["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk_") && key.len() > 60);
    let (_, keys) = cp.get("/api/v1/stream-keys", Some(&streamer)).await;
    assert!(!keys.to_string().contains(&key));
    assert_eq!(keys[0]["prefix"].as_str().unwrap(), &key[..8]);
    let kid = k["info"]["id"].as_str().unwrap().to_owned();
    let (s, rotated) = cp
        .post(
            &format!("/api/v1/stream-keys/{kid}/rotate"),
            Some(&streamer),
            json!({}),
        )
        .await;
    assert_eq!(s, 201);
    assert_ne!(rotated["key"], k["key"]);
    let (s, e) = cp
        .post(
            &format!("/api/v1/stream-keys/{kid}/rotate"),
            Some(&streamer),
            json!({}),
        )
        .await;
    assert_eq!((s, code(&e)), (404, "NOT_FOUND"), "the old key is gone");
    let new_id = rotated["info"]["id"].as_str().unwrap();
    // Another user's key is not found, not revoked.
    assert_eq!(
        cp.call(
            "DELETE",
            &format!("/api/v1/stream-keys/{new_id}"),
            Some(&viewer),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        cp.call(
            "DELETE",
            &format!("/api/v1/stream-keys/{new_id}"),
            Some(&streamer),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        cp.get("/api/v1/stream-keys", Some(&streamer)).await.1,
        json!([])
    );

    // Unknown endpoints answer in the API's format.
    let (s, e) = cp.get("/api/v1/nothing-here", None).await;
    assert_eq!((s, code(&e)), (404, "NOT_FOUND"));
    // Nodes: admins only.
    assert_eq!(cp.get("/api/v1/nodes", Some(&streamer)).await.0, 403);
    assert_eq!(
        cp.get("/api/v1/nodes", Some(&admin_token)).await,
        (200, json!([]))
    );
    drop(admin);
}

#[tokio::test]
async fn streams_lifecycle_filters_and_permissions() {
    let cp = start(|_| {}).await;
    let (_, admin) = cp.account("root", "admin", None).await;
    let (_, alice) = cp.account("alice", "streamer", None).await;
    let (_, bob) = cp.account("bob", "streamer", None).await;
    let (_, viewer) = cp.account("vera", "viewer", None).await;
    let (_, moderator) = cp.account("mod", "moderator", Some(&admin)).await;

    let (s, e) = cp
        .post(
            "/api/v1/streams",
            Some(&alice),
            json!({"title": "", "category": "", "language": "russian", "tags": ["", "ok"]}),
        )
        .await;
    assert_eq!((s, code(&e)), (422, "VALIDATION_FAILED"));
    let fields: Vec<&str> = e["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["title", "category", "language", "tags[0]"]);
    assert_eq!(cp.post("/api/v1/streams", None, json!({})).await.0, 401);
    let (s, e) = cp
        .post(
            "/api/v1/streams",
            Some(&viewer),
            json!({"title": "t", "category": "c", "language": "ru"}),
        )
        .await;
    assert_eq!((s, code(&e)), (403, "FORBIDDEN"));

    let (s, a) = cp
        .post("/api/v1/streams", Some(&alice), json!({"title": "Dota ranked", "category": "dota2", "language": "ru", "tags": ["ranked"]}))
        .await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["status"], "starting");
    assert_eq!(a["playback_path"], "/live/alice/master.m3u8");
    let (s, e) = cp
        .post(
            "/api/v1/streams",
            Some(&alice),
            json!({"title": "again", "category": "dota2", "language": "ru"}),
        )
        .await;
    assert_eq!((s, code(&e)), (409, "CONFLICT"));
    assert_eq!(e["stream_id"], a["id"]);
    let (_, b) = cp
        .post(
            "/api/v1/streams",
            Some(&bob),
            json!({"title": "CS", "category": "cs2", "language": "en", "tags": ["fun"]}),
        )
        .await;
    let aid = a["id"].as_str().unwrap();
    let bid = b["id"].as_str().unwrap();

    // Get, list, filters, pages.
    assert_eq!(
        cp.get(&format!("/api/v1/streams/{aid}"), None).await.1["title"],
        "Dota ranked"
    );
    assert_eq!(cp.get("/api/v1/streams/nope", None).await.0, 404);
    let (_, all) = cp.get("/api/v1/streams", None).await;
    assert_eq!(all["total"], 2);
    let (_, ru) = cp
        .get(
            "/api/v1/streams?language=ru&category=dota2&tag=ranked",
            None,
        )
        .await;
    assert_eq!(ru["items"].as_array().unwrap().len(), 1);
    assert_eq!(ru["items"][0]["id"], a["id"]);
    let (_, page) = cp.get("/api/v1/streams?limit=1&offset=1", None).await;
    assert_eq!(
        (
            page["items"].as_array().unwrap().len(),
            page["total"].as_i64()
        ),
        (1, Some(2))
    );
    let (s, e) = cp.get("/api/v1/streams?limit=1000", None).await;
    assert_eq!((s, code(&e)), (422, "VALIDATION_FAILED"));
    let (_, active) = cp.get("/api/v1/streams/active", None).await;
    assert_eq!(active["total"], 0, "nothing live yet");

    // Update: owner and moderators, not other streamers.
    let path = format!("/api/v1/streams/{aid}");
    let (s, u) = cp
        .call(
            "PATCH",
            &path,
            Some(&alice),
            Some(json!({"title": "Dota ranked grind", "tags": ["ranked", "ru"]})),
        )
        .await;
    assert_eq!(
        (s, u["title"].as_str(), u["category"].as_str()),
        (200, Some("Dota ranked grind"), Some("dota2"))
    );
    assert_eq!(
        cp.call("PATCH", &path, Some(&bob), Some(json!({"title": "mine"})))
            .await
            .0,
        403
    );
    assert_eq!(
        cp.call("PATCH", &path, None, Some(json!({"title": "mine"})))
            .await
            .0,
        401
    );
    let (s, e) = cp
        .call(
            "PATCH",
            &path,
            Some(&alice),
            Some(json!({"language": "xx1"})),
        )
        .await;
    assert_eq!((s, code(&e)), (422, "VALIDATION_FAILED"));
    let (s, u) = cp
        .call(
            "PATCH",
            &path,
            Some(&moderator),
            Some(json!({"category": "dota-2"})),
        )
        .await;
    assert_eq!((s, u["category"].as_str()), (200, Some("dota-2")));

    // Stop: not live, so straight to ended; then 409.
    assert_eq!(
        cp.post(
            &format!("/api/v1/streams/{bid}/stop"),
            Some(&alice),
            json!({})
        )
        .await
        .0,
        403
    );
    let (s, stopped) = cp
        .post(&format!("{path}/stop"), Some(&alice), json!({}))
        .await;
    assert_eq!((s, stopped["status"].as_str()), (200, Some("ended")));
    assert!(stopped["ended_at"].is_i64());
    let (s, e) = cp
        .post(&format!("{path}/stop"), Some(&alice), json!({}))
        .await;
    assert_eq!((s, code(&e)), (409, "CONFLICT"));
    let (_, open) = cp.get("/api/v1/streams", None).await;
    assert_eq!(open["total"], 1, "ended streams are not listed by default");
    let (_, with_ended) = cp.get("/api/v1/streams?include_ended=true", None).await;
    assert_eq!(with_ended["total"], 2);
}

fn origin(name: &str, max_streams: u32) -> Value {
    json!({
        "role": "origin", "name": name, "http_url": format!("http://{name}:8081"),
        "rtmp_url": format!("rtmp://{name}:1935/live"), "srt_url": format!("srt://{name}:9000"),
        "max_streams": max_streams,
    })
}

#[tokio::test]
async fn scheduling_publish_authorization_and_failover() {
    let cp = start(|c| c.control_plane.auth_failures_per_minute = 20).await;
    let (_, admin) = cp.account("root", "admin", None).await;
    let (_, alice) = cp.account("alice", "streamer", None).await;
    let (_, key) = cp
        .post("/api/v1/stream-keys", Some(&alice), json!({}))
        .await;
    let key = key["key"].as_str().unwrap().to_owned();

    // No origin yet.
    let (s, e) = cp.get("/api/v1/ingest", Some(&alice)).await;
    assert_eq!((s, code(&e)), (503, "NO_ORIGIN_AVAILABLE"));
    assert_eq!(cp.get("/api/v1/ingest", None).await.0, 401);

    // Cluster endpoints need the secret.
    assert_eq!(
        cp.post("/api/v1/cluster/nodes", None, origin("o1", 1))
            .await
            .0,
        401
    );
    assert_eq!(
        cp.post(
            "/api/v1/cluster/nodes",
            Some("wrong-secret-wrong-secret"),
            origin("o1", 1)
        )
        .await
        .0,
        401
    );
    let (s, e) = cp
        .post(
            "/api/v1/cluster/nodes",
            Some(SECRET),
            json!({"role": "origin"}),
        )
        .await;
    assert_eq!((s, code(&e)), (422, "VALIDATION_FAILED"));
    let (s, o1) = cp
        .post("/api/v1/cluster/nodes", Some(SECRET), origin("o1", 1))
        .await;
    assert_eq!(s, 200, "{o1}");
    assert_eq!(o1["heartbeat_ms"], 200);
    let (_, o2) = cp
        .post("/api/v1/cluster/nodes", Some(SECRET), origin("o2", 5))
        .await;
    let (o1, o2) = (
        o1["node_id"].as_str().unwrap().to_owned(),
        o2["node_id"].as_str().unwrap().to_owned(),
    );
    // o2 is busier by CPU; o1 is picked (both empty).
    let beat = |id: String, streams: Value, cpu: f64| {
        let cp = &cp;
        async move {
            cp.post(
                &format!("/api/v1/cluster/nodes/{id}/heartbeat"),
                Some(SECRET),
                json!({"cpu": cpu, "streams": streams}),
            )
            .await
        }
    };
    assert_eq!(beat(o1.clone(), json!([]), 0.1).await.0, 200);
    assert_eq!(beat(o2.clone(), json!([]), 1.5).await.0, 200);
    assert_eq!(beat("unknown".into(), json!([]), 0.0).await.0, 404);
    let (s, ing) = cp.get("/api/v1/ingest", Some(&alice)).await;
    assert_eq!((s, ing["origin"].as_str()), (200, Some("o1")), "{ing}");
    assert_eq!(ing["rtmp_url"], "rtmp://o1:1935/live");
    assert_eq!(ing["playback_path"], "/live/alice/master.m3u8");
    let stream_id = ing["stream_id"].as_str().unwrap().to_owned();
    // The same origin again.
    assert_eq!(
        cp.get("/api/v1/ingest", Some(&alice)).await.1["origin"],
        "o1"
    );

    // Publish authorization: bad key refused; the right key granted on o1.
    let publish = |node: &str, key: &str| json!({"node_id": node, "key": key, "protocol": "rtmp", "client_addr": "198.51.100.7"});
    let (s, e) = cp
        .post(
            "/api/v1/cluster/publish",
            Some(SECRET),
            publish(&o1, "sk_wrong"),
        )
        .await;
    assert_eq!((s, code(&e)), (403, "STREAM_KEY_INVALID"));
    let (s, grant) = cp
        .post("/api/v1/cluster/publish", Some(SECRET), publish(&o1, &key))
        .await;
    assert_eq!(s, 200, "{grant}");
    assert_eq!(
        (
            grant["name"].as_str(),
            grant["stream_id"].as_str(),
            grant["continues"].as_bool()
        ),
        (Some("alice"), Some(stream_id.as_str()), Some(false))
    );
    let (_, st) = cp.get(&format!("/api/v1/streams/{stream_id}"), None).await;
    assert_eq!(
        (st["status"].as_str(), st["origin_node_id"].as_str()),
        (Some("live"), Some(o1.as_str()))
    );
    // A second publisher of the same stream on the other origin is refused.
    let (s, e) = cp
        .post("/api/v1/cluster/publish", Some(SECRET), publish(&o2, &key))
        .await;
    assert_eq!((s, code(&e)), (409, "STREAM_ALREADY_LIVE"));
    // Edges find it on o1.
    let (s, r) = cp
        .get("/api/v1/cluster/streams/alice/origin", Some(SECRET))
        .await;
    assert_eq!((s, r["origins"][0].as_str()), (200, Some("http://o1:8081")));
    assert_eq!(
        cp.get("/api/v1/cluster/streams/nobody/origin", Some(SECRET))
            .await
            .0,
        404
    );
    assert_eq!(
        cp.get("/api/v1/cluster/streams/alice/origin", None).await.0,
        401
    );
    let (_, all) = cp.get("/api/v1/cluster/origins", Some(SECRET)).await;
    assert_eq!(all["origins"].as_array().unwrap().len(), 2);

    // Heartbeats move the status: in grace -> paused, publishing again -> live.
    beat(
        o1.clone(),
        json!([{"name": "alice", "publishing": false}]),
        0.2,
    )
    .await;
    assert_eq!(
        cp.get(&format!("/api/v1/streams/{stream_id}"), None)
            .await
            .1["status"],
        "paused"
    );
    beat(
        o1.clone(),
        json!([{"name": "alice", "publishing": true}]),
        0.2,
    )
    .await;
    assert_eq!(
        cp.get(&format!("/api/v1/streams/{stream_id}"), None)
            .await
            .1["status"],
        "live"
    );
    let (_, active) = cp.get("/api/v1/streams/active", None).await;
    assert_eq!(active["total"], 1);

    // Edges report viewers; the stream shows their sum and its peak.
    let (_, e1) = cp
        .post(
            "/api/v1/cluster/nodes",
            Some(SECRET),
            json!({"role": "edge", "name": "e1", "http_url": "http://e1:8080"}),
        )
        .await;
    let e1 = e1["node_id"].as_str().unwrap().to_owned();
    let (s, _) = cp
        .post(
            &format!("/api/v1/cluster/nodes/{e1}/heartbeat"),
            Some(SECRET),
            json!({"cpu": 0.1, "viewers": [{"name": "alice", "viewers": 12}]}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, st) = cp.get(&format!("/api/v1/streams/{stream_id}"), None).await;
    assert_eq!(
        (st["current_viewers"].as_i64(), st["peak_viewers"].as_i64()),
        (Some(12), Some(12))
    );

    // o1 is full (1 of 1): a second streamer is scheduled on o2.
    let (_, bob) = cp.account("bob", "streamer", None).await;
    assert_eq!(cp.get("/api/v1/ingest", Some(&bob)).await.1["origin"], "o2");

    // o1 stops heartbeating: dead after node_timeout, alice's stream goes to error and her
    // next ingest request moves her to o2, where the publish continues the stream.
    wait_for(Duration::from_secs(10), async || {
        beat(o2.clone(), json!([]), 0.1).await;
        cp.get(&format!("/api/v1/streams/{stream_id}"), None)
            .await
            .1["status"]
            == "error"
    })
    .await;
    assert_eq!(
        cp.get("/api/v1/cluster/streams/alice/origin", Some(SECRET))
            .await
            .0,
        404
    );
    // The edge stopped heartbeating at about the same time; on a loaded machine its
    // timeout may end a sweep later than o1's.
    wait_for(Duration::from_secs(10), async || {
        beat(o2.clone(), json!([]), 0.1).await;
        let (_, nodes) = cp.get("/api/v1/nodes", Some(&admin)).await;
        let states: Vec<(String, String)> = nodes
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["name"].as_str().unwrap().to_owned(),
                    n["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        states
            == [("e1", "dead"), ("o1", "dead"), ("o2", "alive")]
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
    })
    .await;
    assert_eq!(
        cp.get("/api/v1/ingest", Some(&alice)).await.1["origin"],
        "o2"
    );
    let (s, grant) = cp
        .post("/api/v1/cluster/publish", Some(SECRET), publish(&o2, &key))
        .await;
    assert_eq!(
        (s, grant["continues"].as_bool()),
        (200, Some(true)),
        "{grant}"
    );
    assert_eq!(
        grant["stream_id"].as_str(),
        Some(stream_id.as_str()),
        "the same stream"
    );
    let (_, r) = cp
        .get("/api/v1/cluster/streams/alice/origin", Some(SECRET))
        .await;
    assert_eq!(r["origins"][0], "http://o2:8081");

    // Stop through the API: ending, the origin is told to drop the publisher, then ended.
    let (_, st) = cp
        .post(
            &format!("/api/v1/streams/{stream_id}/stop"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(st["status"], "ending");
    let (_, reply) = beat(
        o2.clone(),
        json!([{"name": "alice", "publishing": true}]),
        0.1,
    )
    .await;
    assert_eq!(reply["stop"], json!(["alice"]));
    beat(o2.clone(), json!([]), 0.1).await;
    assert_eq!(
        cp.get(&format!("/api/v1/streams/{stream_id}"), None)
            .await
            .1["status"],
        "ended"
    );

    // Brute force: after 20 failures per minute from one address, even a good key is
    // refused with 429 from that address (other addresses are unaffected).
    for _ in 0..19 {
        let (s, _) = cp
            .post(
                "/api/v1/cluster/publish",
                Some(SECRET),
                publish(&o2, "sk_guess"),
            )
            .await;
        assert_eq!(s, 403);
    }
    let (s, e) = cp
        .post("/api/v1/cluster/publish", Some(SECRET), publish(&o2, &key))
        .await;
    assert_eq!((s, code(&e)), (429, "RATE_LIMITED"));
    let mut other = publish(&o2, &key);
    other["client_addr"] = json!("203.0.113.9");
    assert_eq!(
        cp.post("/api/v1/cluster/publish", Some(SECRET), other)
            .await
            .0,
        200
    );

    // Metrics.
    let m = cp.metrics.encode();
    for want in [
        "potok_cp_publish_authorizations_total{result=\"granted\"}",
        "potok_cp_publish_authorizations_total{result=\"bad_key\"} 20",
        "potok_cp_publish_authorizations_total{result=\"rate_limited\"} 1",
        "potok_cp_publish_authorizations_total{result=\"already_live\"} 1",
        "potok_cp_scheduling_decisions_total{result=\"no_origin\"} 1",
        "potok_cp_scheduling_decisions_total{result=\"same_origin\"}",
        "potok_cp_nodes{role=\"origin\",state=\"dead\"} 1",
    ] {
        assert!(m.contains(want), "{want} missing:\n{m}");
    }
}

#[tokio::test]
async fn logins_are_rate_limited_per_address() {
    let cp = start(|c| c.control_plane.auth_failures_per_minute = 3).await;
    cp.account("alice", "streamer", None).await;
    for _ in 0..3 {
        let (s, _) = cp
            .post(
                "/api/v1/sessions",
                None,
                json!({"username": "alice", "password": "wrong password"}),
            )
            .await;
        assert_eq!(s, 401);
    }
    let (s, e) = cp
        .post(
            "/api/v1/sessions",
            None,
            json!({"username": "alice", "password": "a long password"}),
        )
        .await;
    assert_eq!(
        (s, code(&e)),
        (429, "RATE_LIMITED"),
        "even the right password"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_endpoint_and_its_errors() {
    let cp = start(|_| {}).await;
    let (s, doc) = cp.get("/api/v1/openapi.json", None).await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/users", &["post"][..]),
        ("/api/v1/sessions", &["post"]),
        ("/api/v1/me", &["get"]),
        ("/api/v1/tokens", &["get", "post"]),
        ("/api/v1/tokens/{id}", &["delete"]),
        ("/api/v1/stream-keys", &["get", "post"]),
        ("/api/v1/stream-keys/{id}", &["delete"]),
        ("/api/v1/stream-keys/{id}/rotate", &["post"]),
        ("/api/v1/streams", &["get", "post"]),
        ("/api/v1/streams/active", &["get"]),
        ("/api/v1/streams/{id}", &["get", "patch"]),
        ("/api/v1/streams/{id}/stop", &["post"]),
        ("/api/v1/ingest", &["get"]),
        ("/api/v1/nodes", &["get"]),
        ("/api/v1/cluster/nodes", &["post"]),
        ("/api/v1/cluster/nodes/{id}/heartbeat", &["post"]),
        ("/api/v1/cluster/publish", &["post"]),
        ("/api/v1/cluster/streams/{name}/origin", &["get"]),
        ("/api/v1/cluster/origins", &["get"]),
    ] {
        let p = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} not documented"));
        for m in methods {
            assert!(p.get(*m).is_some(), "{m} {path} not documented");
        }
    }
    // Error answers are documented with the error schema.
    let post_streams = &doc["paths"]["/api/v1/streams"]["post"]["responses"];
    for status in ["401", "403", "409", "422"] {
        assert!(
            post_streams[status]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .is_some_and(|r| r.ends_with("/ApiError")),
            "{status}: {post_streams}"
        );
    }
    let codes = doc["components"]["schemas"]["StreamingErrorCode"].to_string();
    for c in [
        "STREAM_KEY_INVALID",
        "RATE_LIMITED",
        "NO_ORIGIN_AVAILABLE",
        "VALIDATION_FAILED",
    ] {
        assert!(codes.contains(c), "{c} missing: {codes}");
    }
    assert!(doc["components"]["securitySchemes"]["token"].is_object());
}

#[tokio::test]
async fn replicas_on_one_database_share_the_failure_limit() {
    let url = common::fresh_postgres().await;
    let on_shared = |c: &mut Config| {
        c.control_plane.database.url = Some(potok_config::DatabaseUrl::new(url.clone()));
        c.control_plane.auth_failures_per_minute = 3;
    };
    let a = start(on_shared).await;
    let b = start(on_shared).await;
    a.account("alice", "streamer", None).await;
    let wrong = json!({"username": "alice", "password": "wrong password"});
    assert_eq!(a.post("/api/v1/sessions", None, wrong.clone()).await.0, 401);
    assert_eq!(a.post("/api/v1/sessions", None, wrong.clone()).await.0, 401);
    assert_eq!(b.post("/api/v1/sessions", None, wrong).await.0, 401);
    // The third failure was on the other replica: both refuse now.
    let right = json!({"username": "alice", "password": "a long password"});
    let (s, e) = b.post("/api/v1/sessions", None, right.clone()).await;
    assert_eq!((s, code(&e)), (429, "RATE_LIMITED"));
    assert_eq!(a.post("/api/v1/sessions", None, right).await.0, 429);
    drop((a, b));
    common::drop_postgres(url.rsplit('/').next().unwrap()).await;
}

#[tokio::test]
async fn oversized_and_malformed_bodies_get_clear_errors() {
    let cp = start(|_| {}).await;
    // 3 MiB of JSON: refused before it is parsed (the body limit is 2 MiB).
    let big = json!({"username": "x".repeat(3 << 20), "password": "a long password"});
    let (s, e) = cp.post("/api/v1/users", None, big).await;
    assert_eq!((s, code(&e)), (422, "VALIDATION_FAILED"), "{e}");
    assert!(e["message"].as_str().unwrap().contains("limit"), "{e}");
    // Not JSON at all, and JSON of the wrong shape.
    let (s, e) = cp
        .call(
            "POST",
            "/api/v1/sessions",
            None,
            Some(json!("just a string")),
        )
        .await;
    assert_eq!((s, code(&e)), (422, "VALIDATION_FAILED"));
    let (s, e) = cp
        .post(
            "/api/v1/cluster/publish",
            Some(SECRET),
            json!({"node_id": 1}),
        )
        .await;
    assert_eq!((s, code(&e)), (422, "VALIDATION_FAILED"));
    // Query strings that do not parse answer in the API's JSON format too.
    for q in ["limit=abc", "offset=-x", "live=maybe"] {
        let (s, e) = cp.get(&format!("/api/v1/streams?{q}"), None).await;
        assert_eq!((s, code(&e)), (422, "VALIDATION_FAILED"), "{q}: {e}");
    }
    // Nothing was created.
    assert_eq!(
        cp.post(
            "/api/v1/sessions",
            None,
            json!({"username": "x", "password": "a long password"})
        )
        .await
        .0,
        401
    );
}

/// Issue 11, item 3: fifty wrong passwords at once cannot slip past a limit of ten, and the
/// right password is refused once the limit is reached.
#[tokio::test]
async fn parallel_logins_cannot_pass_the_failure_limit() {
    let cp = std::sync::Arc::new(start(|c| c.control_plane.auth_failures_per_minute = 10).await);
    cp.account("alice", "streamer", None).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let cp = std::sync::Arc::clone(&cp);
        tasks.push(tokio::spawn(async move {
            cp.post(
                "/api/v1/sessions",
                None,
                json!({"username": "alice", "password": "wrong password"}),
            )
            .await
            .0
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let mut judged = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    // Parallel attempts may refuse each other early; one at a time, the address reaches
    // its limit of ten checked passwords and no more.
    loop {
        let (s, _) = cp
            .post(
                "/api/v1/sessions",
                None,
                json!({"username": "alice", "password": "wrong password"}),
            )
            .await;
        match s {
            401 => judged += 1,
            429 => break,
            other => panic!("{other}"),
        }
        assert!(judged <= 10, "{judged} wrong passwords were checked");
    }
    assert_eq!(
        judged, 10,
        "the session login of `account` gave its attempt back"
    );
    let (s, e) = cp
        .post(
            "/api/v1/sessions",
            None,
            json!({"username": "alice", "password": "a long password"}),
        )
        .await;
    assert_eq!((s, code(&e)), (429, "RATE_LIMITED"));
}

/// Issue 11, item 4: a hundred logins at once run at most `password_hash_concurrency` hashes;
/// past the queue they are refused with 503 SERVICE_BUSY, never a 500.
#[tokio::test]
async fn password_hashing_is_bounded() {
    let cp = std::sync::Arc::new(
        start(|c| {
            c.control_plane.auth_failures_per_minute = 10_000;
            c.control_plane.password_hash_concurrency = 1;
            c.control_plane.password_hash_queue = 2;
        })
        .await,
    );
    cp.account("alice", "streamer", None).await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let cp = std::sync::Arc::clone(&cp);
        tasks.push(tokio::spawn(async move {
            let (s, e) = cp
                .post(
                    "/api/v1/sessions",
                    None,
                    json!({"username": "alice", "password": "wrong password"}),
                )
                .await;
            (s, code(&e).to_owned())
        }));
    }
    let mut busy = 0;
    let mut wrong = 0;
    for t in tasks {
        match t.await.unwrap() {
            (401, _) => wrong += 1,
            (503, c) if c == "SERVICE_BUSY" => busy += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(busy > 0, "no request was refused: {wrong} checked");
    assert!(wrong >= 3, "{wrong} checked, {busy} refused");
    let m = cp.metrics.encode();
    assert!(m.contains("potok_cp_logins_total{result=\"busy\"}"), "{m}");
}

/// Issue 11, items 4 and 5: sign-ups are limited per address, and concurrent first sign-ups
/// make exactly one admin.
#[tokio::test]
async fn signups_are_limited_and_only_one_first_admin() {
    let cp = std::sync::Arc::new(start(|c| c.control_plane.signups_per_hour = 8).await);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let cp = std::sync::Arc::clone(&cp);
        tasks.push(tokio::spawn(async move {
            cp.post(
                "/api/v1/users",
                None,
                json!({"username": format!("first{i}"), "password": "a long password"}),
            )
            .await
        }));
    }
    let mut admins = 0;
    for t in tasks {
        let (s, u) = t.await.unwrap();
        assert_eq!(s, 201, "{u}");
        if u["role"] == "admin" {
            admins += 1;
        }
    }
    assert_eq!(admins, 1, "concurrent first sign-ups");
    // A non-admin cannot ask for admin any more.
    let (s, _) = cp
        .post(
            "/api/v1/users",
            None,
            json!({"username": "sneaky", "password": "a long password", "role": "admin"}),
        )
        .await;
    assert_eq!(s, 403);
    // Sign-ups 7 and 8 pass, the next is limited.
    for name in ["seventh", "eighth"] {
        let (s, u) = cp
            .post(
                "/api/v1/users",
                None,
                json!({"username": name, "password": "a long password"}),
            )
            .await;
        assert_eq!(s, 201, "{u}");
    }
    let (s, e) = cp
        .post(
            "/api/v1/users",
            None,
            json!({"username": "ninth", "password": "a long password"}),
        )
        .await;
    assert_eq!((s, code(&e)), (429, "RATE_LIMITED"), "{e}");
}

/// Issue 11, item 1: a stream name that configuration owns (sent by the origin when it
/// registers) cannot be taken by signing up, and an account that already had the name
/// cannot publish under it.
#[tokio::test]
async fn configured_stream_names_belong_to_configuration() {
    let cp = start(|_| {}).await;
    cp.account("root", "admin", None).await;
    let (_, early) = cp.account("early", "streamer", None).await;
    let (_, key) = cp
        .post("/api/v1/stream-keys", Some(&early), json!({}))
        .await;
    let key = key["key"].as_str().unwrap().to_owned();
    let mut o = origin("o1", 0);
    o["reserved_names"] = json!(["operator", "early"]);
    let (s, reg) = cp.post("/api/v1/cluster/nodes", Some(SECRET), o).await;
    assert_eq!(s, 200, "{reg}");
    let node = reg["node_id"].as_str().unwrap().to_owned();
    let (s, e) = cp
        .post(
            "/api/v1/users",
            None,
            json!({"username": "operator", "password": "a long password", "role": "streamer"}),
        )
        .await;
    assert_eq!((s, code(&e)), (409, "CONFLICT"), "{e}");
    let (s, e) = cp
        .post(
            "/api/v1/cluster/publish",
            Some(SECRET),
            json!({"node_id": node, "key": key, "protocol": "rtmp", "client_addr": "10.0.0.1"}),
        )
        .await;
    assert_eq!((s, code(&e)), (409, "CONFLICT"), "{e}");
    assert!(e["message"].as_str().unwrap().contains("reserved"), "{e}");
}
