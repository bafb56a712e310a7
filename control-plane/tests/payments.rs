//! Donations and payments over real HTTP: the sandbox end to end, a YooKassa-shaped server
//! (request and notification shapes of YooKassa's API v3), exactly-once crediting under
//! replayed, reordered and forged notifications, PostgreSQL going away mid-notification,
//! gifts, item keys, limits, blocks, the register rule and malformed bodies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use common::{Cp, SECRET, code, start, wait_for};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

const SHOP: &str = "123456";
const KEY: &str = "test_secret_key";

// ---- a YooKassa-shaped server ----

#[derive(Default)]
struct Books {
    payments: HashMap<String, Value>,
    refunds: HashMap<String, Value>,
    by_key: HashMap<String, Value>,
    posts: Vec<(String, Option<String>, Value)>,
    next: u64,
}

#[derive(Clone, Default)]
struct YooKassa {
    books: Arc<Mutex<Books>>,
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() {
                char::from(A[((n >> (18 - 6 * i)) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

fn yk_error(status: StatusCode, code: &str, description: &str) -> (StatusCode, Json<Value>) {
    (
        status,
        Json(json!({"type": "error", "code": code, "description": description})),
    )
}

fn authorized(h: &HeaderMap) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!(
            "Basic {}",
            b64(format!("{SHOP}:{KEY}").as_bytes())
        ))
}

async fn yk_create_payment(
    State(y): State<YooKassa>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&h) {
        return yk_error(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "bad shop id or key",
        );
    }
    let Some(key) = h
        .get("idempotence-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return yk_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Idempotence-Key header is missing",
        );
    };
    let mut b = y.books.lock().unwrap();
    b.posts
        .push(("/payments".into(), Some(key.clone()), body.clone()));
    if let Some(p) = b.by_key.get(&key) {
        return (StatusCode::OK, Json(p.clone()));
    }
    let value = body["amount"]["value"].as_str().unwrap_or_default();
    if !value.contains('.')
        || value.split('.').nth(1).map(str::len) != Some(2)
        || body["capture"] != true
    {
        return yk_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "amount.value must be like 10.00 and capture true",
        );
    }
    b.next += 1;
    let id = format!("2d{:06x}-000f-5000-9000-1b68e7b15f3f", b.next);
    let p = json!({
        "id": id, "status": "pending", "paid": false, "amount": body["amount"],
        "confirmation": {"type": "redirect", "confirmation_url": format!("https://yoomoney.ru/checkout/payments/v2/contract?orderId={id}"),
            "return_url": body["confirmation"]["return_url"]},
        "created_at": "2026-12-02T06:00:00.000Z", "description": body["description"], "metadata": body["metadata"],
        "recipient": {"account_id": SHOP, "gateway_id": "1"}, "refundable": false, "test": true,
        "payment_method": {"type": body["payment_method_data"]["type"], "id": id, "saved": false},
    });
    b.payments.insert(id, p.clone());
    b.by_key.insert(key, p.clone());
    (StatusCode::OK, Json(p))
}

async fn yk_get_payment(
    State(y): State<YooKassa>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&h) {
        return yk_error(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "bad shop id or key",
        );
    }
    match y.books.lock().unwrap().payments.get(&id) {
        Some(p) => (StatusCode::OK, Json(p.clone())),
        None => yk_error(StatusCode::NOT_FOUND, "not_found", "payment not found"),
    }
}

async fn yk_create_refund(
    State(y): State<YooKassa>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let Some(key) = h
        .get("idempotence-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return yk_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Idempotence-Key header is missing",
        );
    };
    let mut b = y.books.lock().unwrap();
    b.posts
        .push(("/refunds".into(), Some(key.clone()), body.clone()));
    if let Some(r) = b.by_key.get(&key) {
        return (StatusCode::OK, Json(r.clone()));
    }
    let pid = body["payment_id"].as_str().unwrap_or_default().to_owned();
    if b.payments.get(&pid).map(|p| p["status"] == "succeeded") != Some(true) {
        return yk_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "payment is not succeeded",
        );
    }
    b.next += 1;
    let id = format!("216749f7-{:04x}-50be-b000-078d43a63ae4", b.next);
    let r = json!({"id": id, "payment_id": pid, "status": "succeeded", "amount": body["amount"], "created_at": "2026-12-02T06:00:00.000Z"});
    b.refunds.insert(id, r.clone());
    b.by_key.insert(key, r.clone());
    (StatusCode::OK, Json(r))
}

async fn yk_get_refund(
    State(y): State<YooKassa>,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    match y.books.lock().unwrap().refunds.get(&id) {
        Some(r) => (StatusCode::OK, Json(r.clone())),
        None => yk_error(StatusCode::NOT_FOUND, "not_found", "refund not found"),
    }
}

impl YooKassa {
    async fn start() -> (YooKassa, SocketAddr) {
        let y = YooKassa::default();
        let app = axum::Router::new()
            .route("/v3/payments", post(yk_create_payment))
            .route("/v3/payments/{id}", get(yk_get_payment))
            .route("/v3/refunds", post(yk_create_refund))
            .route("/v3/refunds/{id}", get(yk_get_refund))
            .with_state(y.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (y, addr)
    }

    /// The payer confirms: the payment succeeds with a card.
    fn succeed(&self, id: &str, card_last4: &str) {
        let mut b = self.books.lock().unwrap();
        let p = b.payments.get_mut(id).unwrap();
        p["status"] = json!("succeeded");
        p["paid"] = json!(true);
        p["refundable"] = json!(true);
        p["payment_method"]["card"] = json!({"first6": "555555", "last4": card_last4, "expiry_month": "07",
            "expiry_year": "2030", "card_type": "MasterCard", "issuer_country": "RU"});
        p.as_object_mut().unwrap().remove("confirmation");
    }

    fn cancel(&self, id: &str) {
        let mut b = self.books.lock().unwrap();
        let p = b.payments.get_mut(id).unwrap();
        p["status"] = json!("canceled");
        p["cancellation_details"] =
            json!({"party": "yoo_money", "reason": "expired_on_confirmation"});
    }

    fn payment(&self, id: &str) -> Value {
        self.books.lock().unwrap().payments[id].clone()
    }

    fn posts(&self, path: &str) -> Vec<(Option<String>, Value)> {
        self.books
            .lock()
            .unwrap()
            .posts
            .iter()
            .filter(|p| p.0 == path)
            .map(|p| (p.1.clone(), p.2.clone()))
            .collect()
    }
}

/// Sends a notification the way YooKassa does (POST, JSON, no signature).
async fn notify(cp: &Cp, event: &str, object: Value) -> (u16, Value) {
    cp.call(
        "POST",
        "/api/v1/payments/yookassa/notifications",
        None,
        Some(json!({"type": "notification", "event": event, "object": object})),
    )
    .await
}

async fn yookassa_cp(addr: SocketAddr, tune: impl FnOnce(&mut potok_config::Config)) -> Cp {
    start(|c| {
        let p = &mut c.control_plane.payments;
        p.provider = potok_config::PaymentProvider::Yookassa;
        p.yookassa.api_url = format!("http://{addr}/v3");
        p.yookassa.shop_id = Some(SHOP.into());
        p.yookassa.secret_key = Some(potok_config::Secret::new(KEY));
        p.yookassa.webhook_sources = vec!["127.0.0.1".into()];
        tune(c);
    })
    .await
}

async fn balance(cp: &Cp, token: &str) -> i64 {
    let (s, b) = cp.call("GET", "/api/v1/balance", Some(token), None).await;
    assert_eq!(s, 200, "{b}");
    b["balance"].as_i64().unwrap()
}

async fn reconcile(cp: &Cp, admin: &str) -> Value {
    let (s, r) = cp
        .call("GET", "/api/v1/ledger/reconcile", Some(admin), None)
        .await;
    assert_eq!(s, 200, "{r}");
    assert!(
        r["mismatched_accounts"].as_array().unwrap().is_empty(),
        "{r}"
    );
    assert!(
        r["unbalanced_postings"].as_array().unwrap().is_empty(),
        "{r}"
    );
    assert!(
        r["donations_without_postings"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{r}"
    );
    assert_eq!(r["total"], 0, "{r}");
    r
}

async fn donate(cp: &Cp, channel: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    cp.call(
        "POST",
        &format!("/api/v1/channels/{channel}/donations"),
        token,
        Some(body),
    )
    .await
}

fn payment_id_of(started: &Value, y: &YooKassa) -> String {
    let url = started["confirmation"]["url"].as_str().unwrap();
    let id = url.rsplit("orderId=").next().unwrap().to_owned();
    assert!(y.books.lock().unwrap().payments.contains_key(&id), "{url}");
    id
}

#[tokio::test]
async fn yookassa_create_confirm_notify_credits_once_with_the_right_split() {
    let (y, yaddr) = YooKassa::start().await;
    let cp = yookassa_cp(yaddr, |_| {}).await;
    let (_, admin) = cp.account("root", "viewer", None).await;
    let (_, alice) = cp.account("alice", "streamer", Some(&admin)).await;
    let (_, bob) = cp.account("bob", "viewer", None).await;

    let (s, started) = donate(
        &cp,
        "alice",
        Some(&bob),
        json!({"amount": 50_000, "currency": "RUB",
        "message": "за стрим!", "method": "sbp", "return_url": "/alice"}),
    )
    .await;
    assert_eq!(s, 201, "{started}");
    assert_eq!(started["donation"]["status"], "pending");
    let pid = payment_id_of(&started, &y);
    // What reached YooKassa: the amount as a decimal string, RUB, capture, the method, our
    // id in metadata, an Idempotence-Key.
    let posts = y.posts("/payments");
    assert_eq!(posts.len(), 1);
    let (key, body) = &posts[0];
    assert!(key.as_deref().is_some_and(|k| !k.is_empty()));
    assert_eq!(
        body["amount"],
        json!({"value": "500.00", "currency": "RUB"})
    );
    assert_eq!(body["capture"], true);
    assert_eq!(body["payment_method_data"]["type"], "sbp");
    assert_eq!(body["confirmation"]["type"], "redirect");
    assert!(
        body["confirmation"]["return_url"]
            .as_str()
            .unwrap()
            .ends_with("/alice")
    );
    assert_eq!(body["metadata"]["donation_id"], started["donation"]["id"]);

    // A notification before the payer paid changes nothing (the API says pending).
    let (s, ack) = notify(&cp, "payment.succeeded", y.payment(&pid)).await;
    assert_eq!((s, ack["result"].as_str()), (200, Some("unchanged")));
    assert_eq!(balance(&cp, &alice).await, 0);

    // The payer pays; YooKassa notifies five times, some at once.
    y.succeed(&pid, "4444");
    let object = y.payment(&pid);
    let (a, b, c) = tokio::join!(
        notify(&cp, "payment.succeeded", object.clone()),
        notify(&cp, "payment.succeeded", object.clone()),
        notify(&cp, "payment.succeeded", object.clone()),
    );
    let results: Vec<_> = [a, b, c]
        .iter()
        .map(|(s, v)| (*s, v["result"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        results
            .iter()
            .filter(|(s, r)| *s == 200 && r == "credited")
            .count(),
        1,
        "{results:?}"
    );
    for _ in 0..2 {
        let (s, ack) = notify(&cp, "payment.succeeded", object.clone()).await;
        assert_eq!((s, ack["result"].as_str()), (200, Some("unchanged")));
    }
    // 85 % to the streamer.
    assert_eq!(balance(&cp, &alice).await, 42_500);
    let id = started["donation"]["id"].as_str().unwrap();
    let (_, d) = cp
        .call(
            "GET",
            &format!("/api/v1/donations/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(
        (
            d["status"].as_str(),
            d["streamer_share"].as_i64(),
            d["fee"].as_i64()
        ),
        (Some("completed"), Some(42_500), Some(7_500))
    );

    // `canceled` after `succeeded`: the API still says succeeded: nothing changes.
    let mut forged = object.clone();
    forged["status"] = json!("canceled");
    let (s, ack) = notify(&cp, "payment.canceled", forged).await;
    assert_eq!((s, ack["result"].as_str()), (200, Some("unchanged")));
    assert_eq!(balance(&cp, &alice).await, 42_500);

    // The chat shows it once, highlighted, with the amount (posted by the dispatcher).
    wait_for(Duration::from_secs(10), async || {
        let (_, h) = cp
            .call("GET", "/api/v1/chat/alice/messages", None, None)
            .await;
        h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["is_donation_message"] == true)
    })
    .await;
    let (_, history) = cp
        .call("GET", "/api/v1/chat/alice/messages", None, None)
        .await;
    let paid: Vec<_> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["is_donation_message"] == true)
        .collect();
    assert_eq!(paid.len(), 1, "{history}");
    assert_eq!(
        (
            paid[0]["donation_amount"].as_i64(),
            paid[0]["is_highlighted"].as_bool()
        ),
        (Some(50_000), Some(true))
    );
    assert_eq!(paid[0]["content"]["text"], "за стрим!");

    // A refund through YooKassa reverses the entries once, also when notified again.
    let (s, d) = cp
        .call(
            "POST",
            &format!("/api/v1/donations/{id}/refund"),
            Some(&alice),
            Some(json!({"reason": "asked by the donor"})),
        )
        .await;
    assert_eq!((s, d["status"].as_str()), (200, Some("refunded")), "{d}");
    let refunds = y.posts("/refunds");
    assert_eq!(refunds.len(), 1);
    assert_eq!(
        refunds[0].1["amount"],
        json!({"value": "500.00", "currency": "RUB"})
    );
    let refund_id = y
        .books
        .lock()
        .unwrap()
        .refunds
        .keys()
        .next()
        .unwrap()
        .clone();
    let refund_object = y.books.lock().unwrap().refunds[&refund_id].clone();
    for _ in 0..3 {
        let (s, ack) = notify(&cp, "refund.succeeded", refund_object.clone()).await;
        assert_eq!(
            (s, ack["result"].as_str()),
            (200, Some("unchanged")),
            "{ack}"
        );
    }
    assert_eq!(balance(&cp, &alice).await, 0);
    let r = reconcile(&cp, &admin).await;
    assert_eq!(r["postings"], 2, "{r}");
}

#[tokio::test]
async fn notifications_are_never_trusted() {
    let (y, yaddr) = YooKassa::start().await;
    let cp = yookassa_cp(yaddr, |_| {}).await;
    let (_, admin) = cp.account("root", "viewer", None).await;
    let (_, alice) = cp.account("alice", "streamer", Some(&admin)).await;
    let (_, bob) = cp.account("bob", "viewer", None).await;
    let (_, started) = donate(&cp, "alice", Some(&bob), json!({"amount": 10_000})).await;
    let pid = payment_id_of(&started, &y);

    // A body claiming success and a larger amount, while the payment is pending: nothing.
    let mut forged = y.payment(&pid);
    forged["status"] = json!("succeeded");
    forged["amount"] = json!({"value": "100000.00", "currency": "RUB"});
    let (s, ack) = notify(&cp, "payment.succeeded", forged.clone()).await;
    assert_eq!((s, ack["result"].as_str()), (200, Some("unchanged")));
    assert_eq!(balance(&cp, &alice).await, 0);

    // The provider reports a different amount than the donation asked: never credited.
    y.succeed(&pid, "1111");
    y.books.lock().unwrap().payments.get_mut(&pid).unwrap()["amount"] =
        json!({"value": "1.00", "currency": "RUB"});
    let (s, ack) = notify(&cp, "payment.succeeded", forged).await;
    assert_eq!((s, ack["result"].as_str()), (200, Some("mismatch")));
    assert_eq!(balance(&cp, &alice).await, 0);
    let id = started["donation"]["id"].as_str().unwrap();
    let (_, d) = cp
        .call(
            "GET",
            &format!("/api/v1/donations/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(d["status"], "pending", "{d}");
    assert!(d["failure_reason"].as_str().unwrap().contains("mismatch"));

    // A payment the payer abandoned: canceled at YooKassa, failed here, nothing credited.
    let (_, gone) = donate(&cp, "alice", Some(&bob), json!({"amount": 10_000})).await;
    let gone_pid = payment_id_of(&gone, &y);
    y.cancel(&gone_pid);
    let (s, ack) = notify(&cp, "payment.canceled", y.payment(&gone_pid)).await;
    assert_eq!((s, ack["result"].as_str()), (200, Some("failed")));
    let (s, ack) = notify(&cp, "payment.canceled", y.payment(&gone_pid)).await;
    assert_eq!((s, ack["result"].as_str()), (200, Some("unchanged")));
    let gid = gone["donation"]["id"].as_str().unwrap();
    let (_, d) = cp
        .call("GET", &format!("/api/v1/donations/{gid}"), Some(&bob), None)
        .await;
    assert_eq!(d["status"], "failed");

    // Unknown payments and events are acknowledged and ignored (YooKassa stops retrying).
    let (s, ack) = notify(&cp, "payment.succeeded", json!({"id": "nope"})).await;
    assert_eq!((s, ack["result"].as_str()), (200, Some("ignored")));
    let (s, _) = notify(&cp, "deal.closed", json!({"id": pid})).await;
    assert_eq!(s, 200);
    // Malformed notifications: 4xx in the API's error shape, nothing else.
    for body in [
        json!({"event": "payment.succeeded"}),
        json!([1, 2]),
        json!({"event": "payment.succeeded", "object": {"id": ""}}),
    ] {
        let (s, e) = cp
            .call(
                "POST",
                "/api/v1/payments/yookassa/notifications",
                None,
                Some(body),
            )
            .await;
        assert_eq!((s, code(&e)), (422, "VALIDATION_FAILED"), "{e}");
    }
    let huge = "x".repeat(70_000);
    let (s, _) = notify(&cp, "payment.succeeded", json!({"id": huge})).await;
    assert!((400..500).contains(&s), "{s}");
    reconcile(&cp, &admin).await;

    // From an address outside YooKassa's ranges: refused, nothing happens.
    let real = yookassa_cp(yaddr, |c| {
        c.control_plane.payments.yookassa.webhook_sources =
            potok_config::YooKassaConfig::default().webhook_sources;
    })
    .await;
    let (_, admin2) = real.account("root", "viewer", None).await;
    let (_, carol) = real.account("carol", "streamer", Some(&admin2)).await;
    let (_, dave) = real.account("dave", "viewer", None).await;
    let (_, started) = donate(&real, "carol", Some(&dave), json!({"amount": 10_000})).await;
    let pid = payment_id_of(&started, &y);
    y.succeed(&pid, "2222");
    let (s, e) = notify(&real, "payment.succeeded", y.payment(&pid)).await;
    assert_eq!((s, code(&e)), (403, "FORBIDDEN"), "{e}");
    assert_eq!(balance(&real, &carol).await, 0);

    // Behind a trusted proxy, its header is believed — only from that proxy.
    let proxied = yookassa_cp(yaddr, |c| {
        let y = &mut c.control_plane.payments.yookassa;
        y.webhook_sources = potok_config::YooKassaConfig::default().webhook_sources;
        y.trusted_proxy_header = Some("X-Forwarded-For".into());
        y.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let (_, admin3) = proxied.account("root", "viewer", None).await;
    let (_, erin) = proxied.account("erin", "streamer", Some(&admin3)).await;
    let (_, frank) = proxied.account("frank", "viewer", None).await;
    let (_, started) = donate(&proxied, "erin", Some(&frank), json!({"amount": 10_000})).await;
    let pid = payment_id_of(&started, &y);
    y.succeed(&pid, "3333");
    let body =
        json!({"type": "notification", "event": "payment.succeeded", "object": y.payment(&pid)});
    let post = |xff: &'static str| {
        let body = body.clone();
        let addr = proxied.addr;
        async move {
            let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http();
            let req = hyper::Request::post(format!(
                "http://{addr}/api/v1/payments/yookassa/notifications"
            ))
            .header("content-type", "application/json")
            .header("x-forwarded-for", xff)
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .unwrap();
            client.request(req).await.unwrap().status().as_u16()
        }
    };
    assert_eq!(post("10.0.0.1").await, 403);
    assert_eq!(post("10.0.0.1, 185.71.76.7").await, 200);
    assert_eq!(balance(&proxied, &erin).await, 8_500);
}

/// A TCP relay to PostgreSQL that the test can cut (the server "stops") and restore.
struct Relay {
    addr: SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (u, c) = (Arc::clone(&up), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !u.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut rx = c.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.changed() => {}
                    }
                });
            }
        });
        Relay { addr, up, cut }
    }

    fn stop(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn restart(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn postgres_gone_during_a_notification_means_5xx_then_exactly_one_credit() {
    let url = common::fresh_postgres().await;
    let name = url.rsplit('/').next().unwrap().to_owned();
    let relay = Relay::start("127.0.0.1:5432".parse().unwrap()).await;
    let relayed = url.replace("127.0.0.1:5432", &relay.addr.to_string());
    let (y, yaddr) = YooKassa::start().await;
    let cp = yookassa_cp(yaddr, |c| {
        c.control_plane.database.url = Some(potok_config::DatabaseUrl::new(&relayed));
    })
    .await;
    let (_, admin) = cp.account("root", "viewer", None).await;
    let (_, alice) = cp.account("alice", "streamer", Some(&admin)).await;
    let (_, bob) = cp.account("bob", "viewer", None).await;
    let (_, started) = donate(&cp, "alice", Some(&bob), json!({"amount": 20_000})).await;
    let pid = payment_id_of(&started, &y);
    y.succeed(&pid, "4242");

    relay.stop();
    let (s, e) = notify(&cp, "payment.succeeded", y.payment(&pid)).await;
    assert!(s >= 500, "{s} {e}");
    relay.restart();
    // YooKassa retries until it gets a 200; exactly one retry credits.
    let mut credited = 0;
    wait_for(Duration::from_secs(20), async || {
        let (s, ack) = notify(&cp, "payment.succeeded", y.payment(&pid)).await;
        if s == 200 && ack["result"] == "credited" {
            credited += 1;
        }
        s == 200
    })
    .await;
    for _ in 0..3 {
        let (s, ack) = notify(&cp, "payment.succeeded", y.payment(&pid)).await;
        assert_eq!((s, ack["result"].as_str()), (200, Some("unchanged")));
    }
    assert!(credited <= 1);
    assert_eq!(balance(&cp, &alice).await, 17_000);
    let r = reconcile(&cp, &admin).await;
    assert_eq!(r["postings"], 1, "{r}");
    drop(cp);
    common::drop_postgres(&name).await;
}

async fn sandbox_pay(cp: &Cp, started: &Value, succeed: bool) -> Value {
    let url = started["confirmation"]["url"].as_str().unwrap();
    let id = url.rsplit('/').next().unwrap();
    let (s, ack) = cp
        .call(
            "POST",
            &format!("/api/v1/payments/sandbox/{id}"),
            None,
            Some(json!({"succeed": succeed})),
        )
        .await;
    assert_eq!(s, 200, "{ack}");
    ack
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut WsStream) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[tokio::test]
async fn in_the_sandbox_a_donation_reaches_the_balance_the_chat_the_overlay_and_the_streamer() {
    let cp = start(|_| {}).await;
    let (_, admin) = cp.account("root", "viewer", None).await;
    let (alice_user, alice) = cp.account("alice", "streamer", Some(&admin)).await;
    // A goal and an overlay token, as the streamer sets them up.
    let (s, goal) = cp
        .call(
            "POST",
            "/api/v1/channels/alice/goals",
            Some(&alice),
            Some(json!({"title": "Новый микрофон", "target_amount": 1_000_000})),
        )
        .await;
    assert_eq!(s, 201, "{goal}");
    let (s, alerts) = cp.call("PUT", "/api/v1/channels/alice/donation-alerts", Some(&alice), Some(json!({
        "variants": [{"min_amount": 0, "animation": "slide", "sound": "chime", "duration_ms": 4000, "text_template": "{donor}"},
                     {"min_amount": 40_000, "animation": "fireworks", "sound": "epic", "duration_ms": 9000, "text_template": "{donor}!"}],
        "tts": {"enabled": true, "min_amount": 100_000}}))).await;
    assert_eq!(s, 200, "{alerts}");
    let (s, community) = cp
        .call(
            "POST",
            "/api/v1/channels/alice/community-goals",
            Some(&alice),
            Some(json!({"title": "Турнир", "target_amount": 100_000})),
        )
        .await;
    assert_eq!(s, 201, "{community}");
    let (s, ot) = cp
        .call("POST", "/api/v1/overlay-tokens", Some(&alice), None)
        .await;
    assert_eq!(s, 201, "{ot}");
    let overlay_token = ot["token"].as_str().unwrap().to_owned();
    assert!(
        ot["urls"][0]
            .as_str()
            .unwrap()
            .ends_with(&format!("/overlay/{overlay_token}/alerts"))
    );
    let (s, state) = cp
        .call(
            "GET",
            &format!("/api/v1/overlay/{overlay_token}"),
            None,
            None,
        )
        .await;
    assert_eq!(
        (s, state["channel"].as_str()),
        (200, Some("alice")),
        "{state}"
    );

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/v1/realtime", cp.addr))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "hello");
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"type": "subscribe", "channel": "overlay:alice"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let sub = next_json(&mut ws).await;
    assert_eq!(
        sub["type"], "error",
        "no overlay channel without its token: {sub}"
    );
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"type": "auth", "overlay_token": overlay_token})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["overlay"], "alice");
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"type": "subscribe", "channel": "overlay:alice"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");

    // An anonymous guest donates 500 ₽ with a message, pays on the checkout page.
    let (s, started) = donate(
        &cp,
        "alice",
        None,
        json!({"amount": 50_000, "message": "<img src=x onerror=alert(1)> привет",
        "donor_name": "Гость"}),
    )
    .await;
    assert_eq!(s, 201, "{started}");
    let url = started["confirmation"]["url"].as_str().unwrap();
    let path = url
        .split_once(&cp.addr.to_string())
        .map(|(_, p)| p.to_owned())
        .unwrap_or_else(|| url.to_owned());
    let path = if path.starts_with("http") {
        format!("/pay/sandbox/{}", url.rsplit('/').next().unwrap())
    } else {
        path
    };
    let (s, page) = cp.call("GET", &path, None, None).await;
    assert_eq!(s, 200);
    assert!(page.as_str().unwrap().contains("500.00 RUB"), "{page}");
    sandbox_pay(&cp, &started, true).await;
    let id = started["donation"]["id"].as_str().unwrap();
    let (_, d) = cp
        .call("GET", &format!("/api/v1/donations/{id}"), None, None)
        .await;
    assert_eq!(d["status"], "completed");
    assert_eq!(balance(&cp, &alice).await, 42_500);

    // The overlay gets the alert and the goal's progress.
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let e = next_json(&mut ws).await;
        if e["type"] == "event" {
            if e["data"]["kind"] == "donation" {
                assert_eq!(e["data"]["donation"]["donor_name"], "Гость");
                assert_eq!(e["data"]["donation"]["amount"], 50_000);
                // 500 ₽: the 400 ₽ variant; below the 1,000 ₽ speech minimum.
                assert_eq!(
                    e["data"]["alert"]["variant"]["animation"], "fireworks",
                    "{e}"
                );
                assert_eq!(e["data"]["alert"]["tts"], false, "{e}");
            }
            if e["data"]["kind"] == "goal" {
                assert_eq!(e["data"]["goal"]["current_amount"], 50_000);
            }
            kinds.push(e["data"]["kind"].as_str().unwrap().to_owned());
        }
    }
    kinds.sort();
    assert_eq!(kinds, ["donation", "goal"]);
    // The streamer is told.
    wait_for(Duration::from_secs(10), async || {
        let (_, n) = cp
            .call("GET", "/api/v1/notifications", Some(&alice), None)
            .await;
        n["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "donation")
    })
    .await;
    let (_, n) = cp
        .call("GET", "/api/v1/notifications", Some(&alice), None)
        .await;
    assert!(
        n["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "donation"),
        "{n}"
    );
    // The chat shows it (as text, not markup: pages render with textContent).
    wait_for(Duration::from_secs(10), async || {
        let (_, h) = cp
            .call("GET", "/api/v1/chat/alice/messages", None, None)
            .await;
        h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["is_donation_message"] == true)
    })
    .await;
    let (_, history) = cp
        .call("GET", "/api/v1/chat/alice/messages", None, None)
        .await;
    assert!(
        history["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["is_donation_message"] == true && m["username"] == "Гость"),
        "{history}"
    );
    // A community goal counts only donations that name it (processDonation's shape here).
    let (s, named) = cp
        .call(
            "POST",
            "/api/v1/donations",
            None,
            Some(json!({"channel": "alice",
        "donation": {"amount": 7_000, "donor_name": "Гость", "goal_id": community["id"]}})),
        )
        .await;
    assert_eq!(s, 201, "{named}");
    sandbox_pay(&cp, &named, true).await;
    let (_, goals) = cp
        .call("GET", "/api/v1/channels/alice/goals", None, None)
        .await;
    let current = |id: &Value| {
        goals
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == *id)
            .unwrap()["current_amount"]
            .as_i64()
    };
    assert_eq!(
        (current(&goal["id"]), current(&community["id"])),
        (Some(50_000), Some(7_000)),
        "{goals}"
    );
    let (_, top) = cp
        .call(
            "GET",
            "/api/v1/channels/alice/top-donors?period=day",
            None,
            None,
        )
        .await;
    assert_eq!(
        (top[0]["donor_name"].as_str(), top[0]["total"].as_i64()),
        (Some("Гость"), Some(57_000)),
        "{top}"
    );
    // A failed payment changes nothing but its status.
    let (_, failed) = donate(
        &cp,
        "alice",
        None,
        json!({"amount": 10_000, "donor_name": "Гость"}),
    )
    .await;
    sandbox_pay(&cp, &failed, false).await;
    let fid = failed["donation"]["id"].as_str().unwrap();
    let (_, d) = cp
        .call("GET", &format!("/api/v1/donations/{fid}"), None, None)
        .await;
    assert_eq!(d["status"], "failed");
    assert_eq!(balance(&cp, &alice).await, 42_500 + 5_950);
    // History and analytics.
    let (_, h) = cp
        .call(
            "GET",
            "/api/v1/channels/alice/donations?period=day",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(h.as_array().unwrap().len(), 3);
    let (_, a) = cp
        .call(
            "GET",
            "/api/v1/channels/alice/donation-analytics?period=week",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(
        (
            a["count"].as_i64(),
            a["total"].as_i64(),
            a["streamer_total"].as_i64()
        ),
        (Some(2), Some(57_000), Some(48_450)),
        "{a}"
    );
    let (s, _) = cp
        .call("GET", "/api/v1/channels/alice/donations", None, None)
        .await;
    assert_eq!(s, 401);
    // A payout of part of it; the balance follows.
    let (s, p) = cp
        .call(
            "POST",
            "/api/v1/payouts",
            Some(&alice),
            Some(json!({"amount": 40_000, "method": "sbp", "destination": "+79001234567"})),
        )
        .await;
    assert_eq!((s, p["status"].as_str()), (201, Some("completed")), "{p}");
    assert_eq!(p["destination"], "…4567");
    assert_eq!(balance(&cp, &alice).await, 8_450);
    let (s, e) = cp
        .call(
            "POST",
            "/api/v1/payouts",
            Some(&alice),
            Some(json!({"amount": 8_451, "method": "sbp", "destination": "+79001234567"})),
        )
        .await;
    assert_eq!((s, code(&e)), (409, "WITHDRAWAL_FAILED"));
    // Revoked overlay tokens stop working.
    let (s, _) = cp
        .call(
            "DELETE",
            &format!("/api/v1/overlay-tokens/{}", ot["id"].as_str().unwrap()),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = cp
        .call(
            "GET",
            &format!("/api/v1/overlay/{overlay_token}"),
            None,
            None,
        )
        .await;
    assert_eq!(s, 401);
    let _ = alice_user;
    reconcile(&cp, &admin).await;
}

#[tokio::test]
async fn gifts_items_limits_blocks_and_the_register_rule() {
    let cp = start(|c| {
        let p = &mut c.control_plane.payments;
        p.registry_follower_threshold = 1;
        let rub = p.currencies.get_mut("RUB").unwrap();
        rub.min = 1_000;
        rub.max = 100_000;
        rub.per_donor_per_day = 150_000;
        p.fraud.per_address_per_hour = 1000;
    })
    .await;
    let (_, admin) = cp.account("root", "viewer", None).await;
    let (_, alice) = cp.account("alice", "streamer", Some(&admin)).await;
    let (_, bob) = cp.account("bob", "viewer", None).await;
    let (_, carol) = cp.account("carol", "viewer", None).await;

    // Gifts: the platform's and the channel's own.
    let (s, gift) = cp
        .call(
            "POST",
            "/api/v1/gifts",
            Some(&alice),
            Some(json!({"name": "Печенька", "price": 2_000, "animation": "pulse"})),
        )
        .await;
    assert_eq!(s, 201, "{gift}");
    let (s, e) = cp
        .call(
            "POST",
            "/api/v1/gifts",
            Some(&bob),
            Some(json!({"name": "x", "price": 2_000})),
        )
        .await;
    assert_eq!((s, code(&e)), (403, "FORBIDDEN"));
    let (_, gifts) = cp
        .call("GET", "/api/v1/gifts?channel=alice", None, None)
        .await;
    assert!(
        gifts
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "Печенька")
    );
    assert!(
        gifts
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == "gift-rose")
    );
    let gift_id = gift["id"].as_str().unwrap();
    let (s, started) = cp
        .call(
            "POST",
            &format!("/api/v1/channels/alice/gifts/{gift_id}"),
            Some(&bob),
            Some(json!({"amount": 2_000})),
        )
        .await;
    assert_eq!(s, 201, "{started}");
    assert_eq!(
        (
            started["donation"]["amount"].as_i64(),
            started["donation"]["type"].as_str()
        ),
        (Some(2_000), Some("virtual_gift"))
    );
    sandbox_pay(&cp, &started, true).await;
    // Gifts: 80 % to the streamer.
    assert_eq!(balance(&cp, &alice).await, 1_600);

    // An item with a key pool: the key goes to the recipient only, once.
    let (s, item) = cp
        .call(
            "POST",
            "/api/v1/items",
            Some(&alice),
            Some(json!({"kind": "game_key", "name": "Hades", "price": 5_000})),
        )
        .await;
    assert_eq!(s, 201, "{item}");
    let item_id = item["id"].as_str().unwrap();
    let (s, added) = cp
        .call(
            "POST",
            &format!("/api/v1/items/{item_id}/keys"),
            Some(&alice),
            Some(json!({"keys": ["AAAA-BBBB-CCCC"]})),
        )
        .await;
    assert_eq!((s, added["available"].as_i64()), (200, Some(1)), "{added}");
    let (s, e) = donate(
        &cp,
        "alice",
        None,
        json!({"type": "game_key", "item_id": item_id, "donor_name": "x", "amount": 5_000}),
    )
    .await;
    assert_eq!((s, code(&e)), (401, "UNAUTHORIZED"), "{e}");
    let (s, started) = donate(
        &cp,
        "alice",
        Some(&bob),
        json!({"type": "game_key", "item_id": item_id, "recipient": "carol", "amount": 5_000}),
    )
    .await;
    assert_eq!(s, 201, "{started}");
    // Reserved: nobody else can buy the last key meanwhile.
    let (s, e) = donate(
        &cp,
        "alice",
        Some(&carol),
        json!({"type": "game_key", "item_id": item_id, "amount": 5_000}),
    )
    .await;
    assert_eq!((s, code(&e)), (409, "CONFLICT"), "{e}");
    let did = started["donation"]["id"].as_str().unwrap().to_owned();
    let (s, _) = cp
        .call(
            "POST",
            &format!("/api/v1/donations/{did}/key"),
            Some(&carol),
            None,
        )
        .await;
    assert_eq!(s, 404, "not before the payment");
    sandbox_pay(&cp, &started, true).await;
    let (s, _) = cp
        .call(
            "POST",
            &format!("/api/v1/donations/{did}/key"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(s, 404, "the buyer is not the recipient");
    let (s, k) = cp
        .call(
            "POST",
            &format!("/api/v1/donations/{did}/key"),
            Some(&carol),
            None,
        )
        .await;
    assert_eq!((s, k["key"].as_str()), (200, Some("AAAA-BBBB-CCCC")), "{k}");
    let (s, e) = cp
        .call(
            "POST",
            &format!("/api/v1/donations/{did}/key"),
            Some(&carol),
            None,
        )
        .await;
    assert_eq!((s, code(&e)), (409, "CONFLICT"));
    let (_, items) = cp
        .call("GET", "/api/v1/channels/alice/items", None, None)
        .await;
    assert_eq!(items[0]["available"], 0);
    assert!(!items.to_string().contains("AAAA"), "keys are never listed");

    // Limits: per donation and per donor per day.
    let (s, e) = donate(&cp, "alice", Some(&bob), json!({"amount": 999})).await;
    assert_eq!((s, code(&e)), (429, "DONATION_LIMIT_EXCEEDED"));
    let (s, e) = donate(&cp, "alice", Some(&bob), json!({"amount": 100_001})).await;
    assert_eq!((s, code(&e)), (429, "DONATION_LIMIT_EXCEEDED"));
    let (s, _) = donate(&cp, "alice", Some(&bob), json!({"amount": 100_000})).await;
    assert_eq!(s, 201);
    let (s, e) = donate(&cp, "alice", Some(&bob), json!({"amount": 50_000})).await;
    assert_eq!((s, code(&e)), (429, "DONATION_LIMIT_EXCEEDED"), "{e}");
    assert!(e["message"].as_str().unwrap().contains("per day"));
    // Messages: at most 300 characters, through the chat's word filter.
    let (s, e) = donate(
        &cp,
        "alice",
        Some(&carol),
        json!({"amount": 1_000, "message": "я".repeat(301)}),
    )
    .await;
    assert_eq!((s, code(&e)), (422, "VALIDATION_FAILED"));
    let (s, e) = donate(
        &cp,
        "alice",
        Some(&carol),
        json!({"amount": 1_000, "message": "ты п.и.з.д.е.ц"}),
    )
    .await;
    assert_eq!((s, code(&e)), (422, "MESSAGE_BLOCKED"), "{e}");

    // A blocked donor.
    let (s, _) = cp
        .call(
            "POST",
            "/api/v1/channels/alice/blocked-donors",
            Some(&alice),
            Some(json!({"username": "carol", "reason": "card testing"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, e) = donate(&cp, "alice", Some(&carol), json!({"amount": 1_000})).await;
    assert_eq!((s, code(&e)), (403, "FORBIDDEN"), "{e}");

    // The register rule: past the follower threshold, only with the number recorded.
    for who in [&bob, &carol] {
        let (s, _) = cp
            .call("PUT", "/api/v1/channels/alice/follow", Some(who), None)
            .await;
        assert!(s < 300, "{s}");
    }
    let (_, dave) = cp.account("dave", "viewer", None).await;
    let (s, e) = donate(&cp, "alice", Some(&dave), json!({"amount": 1_000})).await;
    assert_eq!((s, code(&e)), (403, "FORBIDDEN"), "{e}");
    assert!(e["message"].as_str().unwrap().contains("register"), "{e}");
    let (_, opts) = cp
        .call("GET", "/api/v1/channels/alice/donation-options", None, None)
        .await;
    assert_eq!(opts["accepting"], false);
    let (s, _) = cp
        .call(
            "PATCH",
            "/api/v1/channels/alice/donation-settings",
            Some(&alice),
            Some(json!({"registry_number": "4930-1234"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = donate(&cp, "alice", Some(&dave), json!({"amount": 1_000})).await;
    assert_eq!(s, 201);

    // Malformed and oversized bodies: 4xx in the API's error shape.
    for body in [
        json!({"amount": "lots"}),
        json!({"amount": 1.5}),
        json!({"amount": 1000, "currency": "RUBX"}),
        json!({"amount": 1000, "type": "cash"}),
        json!({"amount": 1000, "surprise": 1}),
    ] {
        let (s, e) = donate(&cp, "alice", Some(&dave), body.clone()).await;
        assert!(
            (400..500).contains(&s) && !code(&e).is_empty(),
            "{body}: {s} {e}"
        );
    }
    let (s, e) = donate(
        &cp,
        "alice",
        Some(&dave),
        json!({"amount": 1000, "message": "x".repeat(3_000_000)}),
    )
    .await;
    assert!((400..500).contains(&s), "{s} {e}");
    let (s, e) = donate(&cp, "nobody", Some(&dave), json!({"amount": 1000})).await;
    assert_eq!((s, code(&e)), (404, "NOT_FOUND"));
    let (s, e) = donate(&cp, "alice", Some(&alice), json!({"amount": 1000})).await;
    assert_eq!((s, code(&e)), (403, "FORBIDDEN"));
    reconcile(&cp, &admin).await;
}

#[tokio::test]
async fn requests_boosts_highlights_competitions_challenges_and_chargebacks() {
    let cp = start(|_| {}).await;
    let (_, admin) = cp.account("root", "viewer", None).await;
    let (_, alice) = cp.account("alice", "streamer", Some(&admin)).await;
    let (_, bob) = cp.account("bob", "viewer", None).await;

    // A song request: paid, then queued; refunded from the queue.
    let (s, started) = cp.call("POST", "/api/v1/channels/alice/song-requests", Some(&bob),
        Some(json!({"request": {"text": "Кино — Группа крови", "link": "https://example.com/v"}, "pay": {"amount": 10_000}}))).await;
    assert_eq!(s, 201, "{started}");
    sandbox_pay(&cp, &started, true).await;
    let (_, q) = cp
        .call("GET", "/api/v1/channels/alice/requests", Some(&alice), None)
        .await;
    assert_eq!(q.as_array().unwrap().len(), 1, "{q}");
    assert_eq!(q[0]["text"], "Кино — Группа крови");
    assert_eq!(balance(&cp, &alice).await, 8_500);
    let rid = q[0]["id"].as_str().unwrap();
    let (s, _) = cp
        .call(
            "POST",
            &format!("/api/v1/channels/alice/requests/{rid}"),
            Some(&alice),
            Some(json!({"action": "refund"})),
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(balance(&cp, &alice).await, 0);
    let (_, q) = cp
        .call(
            "GET",
            "/api/v1/channels/alice/requests?status=refunded",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(q.as_array().unwrap().len(), 1);
    let (s, e) = cp
        .call(
            "POST",
            "/api/v1/channels/alice/game-requests",
            Some(&bob),
            Some(json!({"request": {"text": "Hades"}, "pay": {"amount": 500}})),
        )
        .await;
    assert_eq!(
        (s, code(&e)),
        (429, "DONATION_LIMIT_EXCEEDED"),
        "below the request price"
    );

    // A boost pins a chat message for the minutes it buys.
    let (s, m) = cp
        .call(
            "POST",
            "/api/v1/chat/alice/messages",
            Some(&bob),
            Some(json!({"text": "смотрите сюда"})),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    let mid = m["id"].as_str().unwrap();
    let (s, started) = cp
        .call(
            "POST",
            &format!("/api/v1/chat/alice/messages/{mid}/boost"),
            Some(&bob),
            Some(json!({"amount": 5_000})),
        )
        .await;
    assert_eq!(s, 201, "{started}");
    sandbox_pay(&cp, &started, true).await;
    wait_for(Duration::from_secs(10), async || {
        let (_, st) = cp
            .call("GET", "/api/v1/chat/alice/settings", None, None)
            .await;
        st["pinned_message_id"] == mid
    })
    .await;
    let (_, settings) = cp
        .call("GET", "/api/v1/chat/alice/settings", None, None)
        .await;
    assert_eq!(settings["pinned_message_id"], mid, "{settings}");

    // A highlighted moment for the recordings.
    let (s, started) = cp
        .call(
            "POST",
            "/api/v1/channels/alice/highlights",
            Some(&bob),
            Some(json!({"note": "клатч 1v5", "pay": {"amount": 5_000}})),
        )
        .await;
    assert_eq!(s, 201, "{started}");
    sandbox_pay(&cp, &started, true).await;
    let (_, h) = cp
        .call(
            "GET",
            "/api/v1/channels/alice/highlights",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(h[0]["note"], "клатч 1v5", "{h}");

    // A competition: totals per option.
    let (s, c) = cp.call("POST", "/api/v1/channels/alice/competitions", Some(&alice),
        Some(json!({"title": "Какую игру дальше?", "options": ["Dota", "CS"], "duration_secs": 600}))).await;
    assert_eq!(s, 201, "{c}");
    let cid = c["id"].as_str().unwrap();
    for (option, amount) in [("a", 3_000), ("b", 7_000), ("b", 1_000)] {
        let (_, started) = donate(
            &cp,
            "alice",
            Some(&bob),
            json!({"amount": amount, "competition_id": cid, "option_id": option}),
        )
        .await;
        sandbox_pay(&cp, &started, true).await;
    }
    let (_, c) = cp
        .call(
            "GET",
            "/api/v1/channels/alice/competitions/current",
            None,
            None,
        )
        .await;
    assert_eq!(
        (
            c["options"][0]["total"].as_i64(),
            c["options"][1]["total"].as_i64()
        ),
        (Some(3_000), Some(8_000)),
        "{c}"
    );

    // A viewer challenge funded by donations, accepted and completed by the streamer.
    let (s, ch) = cp
        .call(
            "POST",
            "/api/v1/channels/alice/challenges",
            Some(&bob),
            Some(json!({"title": "Пройти уровень без урона", "target_amount": 5_000})),
        )
        .await;
    assert_eq!(s, 201, "{ch}");
    let chid = ch["id"].as_str().unwrap();
    let (_, started) = donate(
        &cp,
        "alice",
        Some(&bob),
        json!({"amount": 6_000, "challenge_id": chid}),
    )
    .await;
    sandbox_pay(&cp, &started, true).await;
    for (action, status) in [("accept", "accepted"), ("complete", "completed")] {
        let (s, ch) = cp
            .call(
                "POST",
                &format!("/api/v1/channels/alice/challenges/{chid}"),
                Some(&alice),
                Some(json!({"action": action})),
            )
            .await;
        assert_eq!((s, ch["status"].as_str()), (200, Some(status)), "{ch}");
    }
    let (_, ch) = cp
        .call(
            "GET",
            &format!("/api/v1/channels/alice/challenges/{chid}"),
            None,
            None,
        )
        .await;
    assert_eq!(ch["current_amount"], 6_000);

    // A chargeback reverses once, may take the balance below zero; later income nets it.
    let before = balance(&cp, &alice).await;
    let (s, p) = cp
        .call(
            "POST",
            "/api/v1/payouts",
            Some(&alice),
            Some(
                json!({"amount": before, "method": "yoo_money", "destination": "4100111122223333"}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(balance(&cp, &alice).await, 0);
    let did = started["donation"]["id"].as_str().unwrap();
    for _ in 0..2 {
        let (s, d) = cp
            .call(
                "POST",
                &format!("/api/v1/donations/{did}/chargeback"),
                Some(SECRET),
                Some(json!({"reference": "CB-1", "reason": "fraudulent card"})),
            )
            .await;
        assert_eq!((s, d["status"].as_str()), (200, Some("refunded")), "{d}");
    }
    assert_eq!(balance(&cp, &alice).await, -5_100);
    let (_, b) = cp.call("GET", "/api/v1/balance", Some(&alice), None).await;
    assert_eq!(b["available"], 0);
    wait_for(Duration::from_secs(10), async || {
        let (_, n) = cp
            .call("GET", "/api/v1/notifications", Some(&alice), None)
            .await;
        n["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "chargeback")
    })
    .await;
    let (_, n) = cp
        .call("GET", "/api/v1/notifications", Some(&alice), None)
        .await;
    assert!(
        n["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "chargeback"),
        "{n}"
    );
    let (s, _) = cp
        .call(
            "POST",
            &format!("/api/v1/donations/{did}/chargeback"),
            Some(&bob),
            Some(json!({"reference": "CB-2", "reason": "x"})),
        )
        .await;
    assert_eq!(s, 403);
    let (_, started) = donate(&cp, "alice", Some(&bob), json!({"amount": 10_000})).await;
    sandbox_pay(&cp, &started, true).await;
    assert_eq!(balance(&cp, &alice).await, 8_500 - 5_100);
    reconcile(&cp, &admin).await;
}

#[tokio::test]
async fn a_browser_session_is_a_cookie_and_its_changes_need_the_csrf_header() {
    use http_body_util::BodyExt;
    let cp = start(|_| {}).await;
    let (_, admin) = cp.account("root", "viewer", None).await;
    let _ = cp.account("alice", "streamer", Some(&admin)).await;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let send =
        |method: &str, path: &str, cookies: &str, csrf: Option<&str>, body: Option<Value>| {
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(format!("http://{}{path}", cp.addr));
            if !cookies.is_empty() {
                req = req.header("cookie", cookies);
            }
            if let Some(c) = csrf {
                req = req.header("x-csrf-token", c);
            }
            let body = match body {
                Some(b) => {
                    req = req.header("content-type", "application/json");
                    http_body_util::Full::new(bytes::Bytes::from(b.to_string()))
                }
                None => http_body_util::Full::new(bytes::Bytes::new()),
            };
            client.request(req.body(body).unwrap())
        };
    let res = send(
        "POST",
        "/api/v1/sessions",
        "",
        None,
        Some(json!({"username": "alice", "password": "a long password", "cookie": true})),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    let set: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("potok_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    let csrf_cookie = set.iter().find(|c| c.starts_with("potok_csrf=")).unwrap();
    assert!(!csrf_cookie.contains("HttpOnly"));
    let pair = |c: &str| c.split(';').next().unwrap().to_owned();
    let cookies = format!("{}; {}", pair(session), pair(csrf_cookie));
    let csrf = pair(csrf_cookie).split_once('=').unwrap().1.to_owned();
    // Reads need only the cookie.
    let res = send("GET", "/api/v1/me", &cookies, None, None)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let me: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(me["username"], "alice");
    // A change without the header (what another site's form would send) is refused.
    let goal = json!({"title": "Цель", "target_amount": 10_000});
    let res = send(
        "POST",
        "/api/v1/channels/alice/goals",
        &cookies,
        None,
        Some(goal.clone()),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 403);
    let res = send(
        "POST",
        "/api/v1/channels/alice/goals",
        &cookies,
        Some("csrf_wrong"),
        Some(goal.clone()),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 403);
    let res = send(
        "POST",
        "/api/v1/channels/alice/goals",
        &cookies,
        Some(&csrf),
        Some(goal),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    // Logging out revokes the session and clears the cookies.
    let res = send(
        "DELETE",
        "/api/v1/sessions/current",
        &cookies,
        Some(&csrf),
        None,
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 204);
    assert!(
        res.headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().starts_with("potok_session=;"))
    );
    let res = send("GET", "/api/v1/me", &cookies, None, None)
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn velocity_and_card_rules_refuse_or_refund_with_their_reasons() {
    let cp = start(|c| {
        let f = &mut c.control_plane.payments.fraud;
        f.per_donor_per_hour = 2;
        f.per_card_per_hour = 1;
        f.per_address_per_hour = 1000;
    })
    .await;
    let (_, admin) = cp.account("root", "viewer", None).await;
    let (_, alice) = cp.account("alice", "streamer", Some(&admin)).await;
    let (_, bob) = cp.account("bob", "viewer", None).await;
    let (_, carol) = cp.account("carol", "viewer", None).await;
    // Per donor per hour.
    for _ in 0..2 {
        let (s, _) = donate(&cp, "alice", Some(&bob), json!({"amount": 1_000})).await;
        assert_eq!(s, 201);
    }
    let (s, e) = donate(&cp, "alice", Some(&bob), json!({"amount": 1_000})).await;
    assert_eq!((s, code(&e)), (429, "DONATION_LIMIT_EXCEEDED"), "{e}");
    assert!(e["message"].as_str().unwrap().contains("per hour"), "{e}");
    // One card twice within the hour: the second payment is refunded with the reason.
    let pay_with = async |started: &Value, card: &str| {
        let id = started["confirmation"]["url"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        let (s, ack) = cp
            .call(
                "POST",
                &format!("/api/v1/payments/sandbox/{id}"),
                None,
                Some(json!({"succeed": true, "card": card})),
            )
            .await;
        assert_eq!(s, 200, "{ack}");
    };
    let (_, first) = donate(&cp, "alice", Some(&carol), json!({"amount": 2_000})).await;
    pay_with(&first, "5555 4444 3333 1111").await;
    let (_, second) = donate(&cp, "alice", Some(&carol), json!({"amount": 3_000})).await;
    pay_with(&second, "5555 4444 3333 1111").await;
    let id = second["donation"]["id"].as_str().unwrap();
    let (_, d) = cp
        .call(
            "GET",
            &format!("/api/v1/donations/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(d["status"], "refunded", "{d}");
    assert!(
        d["fraud_reasons"][0].as_str().unwrap().contains("one card"),
        "{d}"
    );
    assert!(
        d["refund_reason"].as_str().unwrap().starts_with("fraud"),
        "{d}"
    );
    assert_eq!(balance(&cp, &alice).await, 1_700);
    reconcile(&cp, &admin).await;
}
