//! Subscriptions over real HTTP against a YooKassa-shaped server (saved payment methods,
//! recurring charges without confirmation): subscribe, renew, a failed renewal retried,
//! upgrade with proration to the kopeck, cancel at the period's end, a chargeback reversed
//! once, gift series to viewers present in the chat, pause/resume, subscriber-only chat and
//! badges; the ledger reconciles. Time moves through the admins' "run renewals at T" call,
//! never by sleeping.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use common::{Cp, code, start, wait_for};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

const SHOP: &str = "654321";
const KEY: &str = "test_secret_key_subs";
const DAY: i64 = 24 * 3_600_000;
const PERIOD: i64 = 30 * DAY;

// ---- a YooKassa-shaped server with saved payment methods ----

#[derive(Default)]
struct Books {
    payments: HashMap<String, Value>,
    by_key: HashMap<String, Value>,
    posts: Vec<Value>,
    /// Saved methods (YooKassa: `payment_method.saved` after a payment with
    /// `save_payment_method: true` succeeds).
    methods: HashSet<String>,
    /// Recurring charges to decline next.
    declines: u32,
    next: u64,
}

#[derive(Clone, Default)]
struct YooKassa {
    books: Arc<Mutex<Books>>,
}

fn yk_error(status: StatusCode, code: &str, description: &str) -> (StatusCode, Json<Value>) {
    (
        status,
        Json(json!({"type": "error", "code": code, "description": description})),
    )
}

async fn yk_create_payment(
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
    if h.get("authorization").is_none() {
        return yk_error(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "no credentials",
        );
    }
    let mut b = y.books.lock().unwrap();
    b.posts.push(body.clone());
    if let Some(p) = b.by_key.get(&key) {
        return (StatusCode::OK, Json(p.clone()));
    }
    let value = body["amount"]["value"].as_str().unwrap_or_default();
    if value.split('.').nth(1).map(str::len) != Some(2) || body["capture"] != true {
        return yk_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "amount.value like 10.00 and capture true",
        );
    }
    b.next += 1;
    let id = format!("2e{:06x}-000f-5000-9000-1b68e7b15f3f", b.next);
    let p = if let Some(method) = body["payment_method_id"].as_str() {
        // A recurring charge: no confirmation; succeeded or canceled at once.
        if body.get("confirmation").is_some() || !b.methods.contains(method) {
            return yk_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "unknown payment_method_id",
            );
        }
        let declined = b.declines > 0;
        if declined {
            b.declines -= 1;
        }
        let mut p = json!({
            "id": id, "status": if declined { "canceled" } else { "succeeded" }, "paid": !declined,
            "amount": body["amount"], "created_at": "2026-12-02T06:00:00.000Z", "description": body["description"],
            "metadata": body["metadata"], "recipient": {"account_id": SHOP, "gateway_id": "1"},
            "refundable": !declined, "test": true,
            "payment_method": {"type": "bank_card", "id": method, "saved": true,
                "card": {"first6": "555555", "last4": "4444", "expiry_month": "07", "expiry_year": "2030"}},
        });
        if declined {
            p["cancellation_details"] = json!({"party": "issuer", "reason": "insufficient_funds"});
        }
        p
    } else {
        json!({
            "id": id, "status": "pending", "paid": false, "amount": body["amount"],
            "confirmation": {"type": "redirect", "confirmation_url": format!("https://yoomoney.ru/checkout/payments/v2/contract?orderId={id}"),
                "return_url": body["confirmation"]["return_url"]},
            "created_at": "2026-12-02T06:00:00.000Z", "description": body["description"], "metadata": body["metadata"],
            "recipient": {"account_id": SHOP, "gateway_id": "1"}, "refundable": false, "test": true,
            "save_payment_method": body["save_payment_method"] == true,
            "payment_method": {"type": body["payment_method_data"]["type"], "id": id, "saved": false},
        })
    };
    b.payments.insert(id, p.clone());
    b.by_key.insert(key, p.clone());
    (StatusCode::OK, Json(p))
}

async fn yk_get_payment(
    State(y): State<YooKassa>,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    match y.books.lock().unwrap().payments.get(&id) {
        Some(p) => (StatusCode::OK, Json(p.clone())),
        None => yk_error(StatusCode::NOT_FOUND, "not_found", "payment not found"),
    }
}

impl YooKassa {
    async fn start() -> (YooKassa, SocketAddr) {
        let y = YooKassa::default();
        let app = axum::Router::new()
            .route("/v3/payments", post(yk_create_payment))
            .route("/v3/payments/{id}", get(yk_get_payment))
            .with_state(y.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (y, addr)
    }

    /// The payer confirms with a card; a payment that asked to save it saves it.
    fn succeed(&self, id: &str) {
        let mut b = self.books.lock().unwrap();
        let p = b.payments.get_mut(id).unwrap();
        p["status"] = json!("succeeded");
        p["paid"] = json!(true);
        p["refundable"] = json!(true);
        let save = p["save_payment_method"] == true;
        p["payment_method"]["saved"] = json!(save);
        p["payment_method"]["card"] = json!({"first6": "555555", "last4": "4444", "expiry_month": "07", "expiry_year": "2030"});
        p.as_object_mut().unwrap().remove("confirmation");
        if save {
            b.methods.insert(id.to_owned());
        }
    }

    fn decline_next(&self, n: u32) {
        self.books.lock().unwrap().declines = n;
    }

    fn posts(&self) -> Vec<Value> {
        self.books.lock().unwrap().posts.clone()
    }
}

async fn notify_paid(cp: &Cp, id: &str) {
    let (s, v) = cp
        .call(
            "POST",
            "/api/v1/payments/yookassa/notifications",
            None,
            Some(
                json!({"type": "notification", "event": "payment.succeeded", "object": {"id": id}}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

fn order_id(started: &Value) -> String {
    let url = started["confirmation"]["url"].as_str().unwrap();
    url.rsplit("orderId=").next().unwrap().to_owned()
}

async fn yookassa_cp(addr: SocketAddr, postgres: Option<&str>) -> Cp {
    start(|c| {
        if let Some(url) = postgres {
            c.control_plane.database.url = Some(potok_config::DatabaseUrl::new(url));
        }
        let p = &mut c.control_plane.payments;
        p.provider = potok_config::PaymentProvider::Yookassa;
        p.yookassa.api_url = format!("http://{addr}/v3");
        p.yookassa.shop_id = Some(SHOP.into());
        p.yookassa.secret_key = Some(potok_config::Secret::new(KEY));
        p.yookassa.webhook_sources = vec!["127.0.0.1".into()];
    })
    .await
}

async fn balance(cp: &Cp, token: &str) -> i64 {
    let (s, b) = cp.call("GET", "/api/v1/balance", Some(token), None).await;
    assert_eq!(s, 200, "{b}");
    b["balance"].as_i64().unwrap()
}

async fn reconciles(cp: &Cp, admin: &str) {
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
}

async fn run_at(cp: &Cp, admin: &str, at: i64) -> Value {
    let (s, r) = cp
        .call(
            "POST",
            "/api/v1/subscriptions/renewals",
            Some(admin),
            Some(json!({"at": at})),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    r
}

async fn sub(cp: &Cp, token: &str, id: &str) -> Value {
    let (s, v) = cp
        .call(
            "GET",
            &format!("/api/v1/subscriptions/{id}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// The streamer's 70 % of `amount`, the platform's fee rounded down (payments::split).
fn share(amount: i64) -> i64 {
    amount - amount * 30 / 100
}

async fn tier(cp: &Cp, channel: &str, code_: &str) -> Value {
    let (s, tiers) = cp
        .call(
            "GET",
            &format!("/api/v1/channels/{channel}/subscription-tiers"),
            None,
            None,
        )
        .await;
    assert_eq!(s, 200, "{tiers}");
    tiers
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["code"] == code_)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn subscribe_renew_fail_retry_upgrade_cancel_and_chargeback_reconcile() {
    lifecycle(None).await;
}

#[tokio::test]
async fn the_same_lifecycle_on_postgresql() {
    let url = common::fresh_postgres().await;
    lifecycle(Some(&url)).await;
    common::drop_postgres(url.rsplit('/').next().unwrap()).await;
}

async fn lifecycle(postgres: Option<&str>) {
    let (y, yaddr) = YooKassa::start().await;
    let cp = yookassa_cp(yaddr, postgres).await;
    let (_, admin) = cp.account("root", "admin", None).await;
    let (_, alice) = cp.account("alice", "streamer", Some(&admin)).await;
    let (_, bob) = cp.account("bob", "viewer", None).await;

    // The seed's tiers, in kopecks.
    let (s, tiers) = cp
        .call(
            "GET",
            "/api/v1/channels/alice/subscription-tiers",
            None,
            None,
        )
        .await;
    assert_eq!(s, 200, "{tiers}");
    let prices: Vec<(String, i64)> = tiers
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["code"].as_str().unwrap().to_owned(),
                t["price"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        prices,
        [
            ("supporter".into(), 19_900),
            ("vip".into(), 49_900),
            ("champion".into(), 99_900)
        ]
    );
    let supporter = tier(&cp, "alice", "supporter").await;
    let vip = tier(&cp, "alice", "vip").await;

    // Only the streamer edits tiers.
    let path = format!(
        "/api/v1/subscription-tiers/{}",
        supporter["id"].as_str().unwrap()
    );
    let (s, _) = cp
        .call("PATCH", &path, Some(&bob), Some(json!({"name": "Fan"})))
        .await;
    assert_eq!(s, 403);
    let (s, t) = cp
        .call(
            "PATCH",
            &path,
            Some(&alice),
            Some(json!({"badge": {"label": "Fan", "color": "#112233"},
            "exclusive_emotes": ["aliceHype"]})),
        )
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["exclusive_emotes"], json!(["aliceHype"]));
    let (s, e) = cp
        .call(
            "PATCH",
            &path,
            Some(&alice),
            Some(json!({"badge": {"label": "Fan", "color": "red"}})),
        )
        .await;
    assert_eq!((s, code(&e)), (422, "VALIDATION_FAILED"), "{e}");

    // Subscribe: the first payment asks YooKassa to save the method.
    let (s, started) = cp
        .call(
            "POST",
            "/api/v1/channels/alice/subscriptions",
            Some(&bob),
            Some(json!({"tier_id": supporter["id"]})),
        )
        .await;
    assert_eq!(s, 201, "{started}");
    assert_eq!(started["subscription"]["status"], "incomplete");
    let first = y.posts().last().unwrap().clone();
    assert_eq!(first["save_payment_method"], true, "{first}");
    assert_eq!(first["amount"]["value"], "199.00");
    let id = started["subscription"]["id"].as_str().unwrap().to_owned();
    // A second subscription to the same channel waits for this one.
    let (s, _) = cp
        .call(
            "POST",
            "/api/v1/channels/alice/subscriptions",
            Some(&bob),
            Some(json!({"tier_id": supporter["id"]})),
        )
        .await;
    assert_eq!(s, 409);

    let pid = order_id(&started);
    y.succeed(&pid);
    notify_paid(&cp, &pid).await;
    notify_paid(&cp, &pid).await; // a replay credits nothing
    let s1 = sub(&cp, &bob, &id).await;
    assert_eq!(s1["status"], "active", "{s1}");
    assert_eq!(s1["months"], 1);
    assert_eq!(s1["has_saved_payment_method"], true);
    let end1 = s1["period_end"].as_i64().unwrap();
    assert_eq!(end1 - s1["period_start"].as_i64().unwrap(), PERIOD);
    assert_eq!(balance(&cp, &alice).await, share(19_900));

    // Renewal: nothing before the period ends, then one recurring charge, no confirmation.
    let r = run_at(&cp, &admin, end1 - 1).await;
    assert_eq!(r["renewed"], 0, "{r}");
    let r = run_at(&cp, &admin, end1).await;
    assert_eq!(r["renewed"], 1, "{r}");
    let renewal = y.posts().last().unwrap().clone();
    assert_eq!(renewal["payment_method_id"], pid.as_str(), "{renewal}");
    assert!(renewal.get("confirmation").is_none(), "{renewal}");
    let r = run_at(&cp, &admin, end1).await;
    assert_eq!(r["renewed"], 0, "renewed twice: {r}");
    let s2 = sub(&cp, &bob, &id).await;
    let end2 = s2["period_end"].as_i64().unwrap();
    assert_eq!(
        (end2, s2["months"].as_i64().unwrap()),
        (end1 + PERIOD, 2),
        "{s2}"
    );
    assert_eq!(balance(&cp, &alice).await, 2 * share(19_900));

    // A failed renewal: past due but still active, retried a day later, then paid.
    y.decline_next(1);
    let r = run_at(&cp, &admin, end2).await;
    assert_eq!(r["failed"], 1, "{r}");
    let s3 = sub(&cp, &bob, &id).await;
    assert_eq!(s3["status"], "past_due", "{s3}");
    assert_eq!(s3["retry_at"], end2 + DAY);
    assert_eq!(s3["access_until"], end2 + 3 * DAY);
    let r = run_at(&cp, &admin, end2 + DAY - 1).await;
    assert_eq!(
        (r["renewed"].as_i64(), r["failed"].as_i64()),
        (Some(0), Some(0)),
        "{r}"
    );
    let r = run_at(&cp, &admin, end2 + DAY).await;
    assert_eq!(r["renewed"], 1, "{r}");
    let s4 = sub(&cp, &bob, &id).await;
    assert_eq!(s4["status"], "active", "{s4}");
    // The period continues from where it ended, not from the retry.
    let end3 = s4["period_end"].as_i64().unwrap();
    assert_eq!(end3, end2 + PERIOD);
    assert_eq!(s4["months"], 3);
    assert_eq!(balance(&cp, &alice).await, 3 * share(19_900));

    // Upgrade: (499 ₽ - 199 ₽) × the part of the period left, rounded down to the kopeck.
    let (s, up) = cp
        .call(
            "POST",
            &format!("/api/v1/subscriptions/{id}/upgrade"),
            Some(&bob),
            Some(json!({"tier_id": vip["id"]})),
        )
        .await;
    assert_eq!(s, 200, "{up}");
    let at = up["at"].as_i64().unwrap();
    let remaining = (end3 - at).clamp(0, PERIOD);
    let expected = (30_000_i128 * i128::from(remaining) / i128::from(PERIOD)) as i64;
    assert_eq!(up["prorated_amount"], expected, "{up}");
    assert_eq!(up["subscription"]["tier"]["code"], "vip", "{up}");
    let charged = y.posts().last().unwrap().clone();
    assert_eq!(
        charged["amount"]["value"],
        format!("{}.{:02}", expected / 100, expected % 100)
    );
    let upgrade_charge = up["charge_id"].as_str().unwrap().to_owned();
    let after_upgrade = 3 * share(19_900) + share(expected);
    assert_eq!(balance(&cp, &alice).await, after_upgrade);

    // A renewal discount for the next period, once.
    let (s, d) = cp
        .call(
            "POST",
            &format!("/api/v1/subscriptions/{id}/renewal-discount"),
            Some(&alice),
            Some(json!({"discount_percentage": 20})),
        )
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["next_renewal_amount"], 39_920);
    let (s, _) = cp
        .call(
            "POST",
            &format!("/api/v1/subscriptions/{id}/renewal-discount"),
            Some(&bob),
            Some(json!({"discount_percentage": 90})),
        )
        .await;
    assert_eq!(s, 403);
    let r = run_at(&cp, &admin, end3).await;
    assert_eq!(r["renewed"], 1, "{r}");
    assert_eq!(y.posts().last().unwrap()["amount"]["value"], "399.20");
    let s5 = sub(&cp, &bob, &id).await;
    assert_eq!(s5["renewal_discount_percent"], Value::Null);
    assert_eq!(s5["next_renewal_amount"], 49_900);
    let end4 = s5["period_end"].as_i64().unwrap();
    let after_discount = after_upgrade + share(39_920);
    assert_eq!(balance(&cp, &alice).await, after_discount);

    // Cancel: active until the period ends, told before, then not renewed.
    let (s, c) = cp
        .call(
            "POST",
            &format!("/api/v1/subscriptions/{id}/cancel"),
            Some(&bob),
            Some(json!({"reason": "too expensive"})),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(
        (c["status"].as_str(), c["cancel_at_period_end"].as_bool()),
        (Some("active"), Some(true))
    );
    let r = run_at(&cp, &admin, end4 - 2 * DAY).await;
    assert_eq!(r["notified"], 1, "{r}");
    run_at(&cp, &admin, end4 - DAY).await; // the same notice, not again
    let posts_before = y.posts().len();
    let r = run_at(&cp, &admin, end4).await;
    assert_eq!(r["cancelled"], 1, "{r}");
    assert_eq!(
        y.posts().len(),
        posts_before,
        "a cancelled subscription was charged"
    );
    assert_eq!(sub(&cp, &bob, &id).await["status"], "cancelled");
    let (s, n) = cp
        .call("GET", "/api/v1/notifications", Some(&bob), None)
        .await;
    assert_eq!(s, 200, "{n}");
    let expiring = n.to_string().matches("subscription_expiring").count();
    assert_eq!(expiring, 1, "{n}");

    // A chargeback of the upgrade's charge reverses its share once.
    for _ in 0..2 {
        let (s, v) = cp
            .call(
                "POST",
                &format!("/api/v1/donations/{upgrade_charge}/chargeback"),
                Some(&admin),
                Some(json!({"reference": "cb-1", "reason": "disputed"})),
            )
            .await;
        assert!(s == 200 || s == 409, "{s} {v}");
    }
    assert_eq!(balance(&cp, &alice).await, after_discount - share(expected));
    reconciles(&cp, &admin).await;

    // The history tells the story.
    let (s, h) = cp
        .call("GET", "/api/v1/subscriptions", Some(&bob), None)
        .await;
    assert_eq!(s, 200, "{h}");
    let kinds: Vec<&str> = h["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in [
        "started",
        "renewed",
        "renewal_failed",
        "upgraded",
        "discount_offered",
        "cancel_requested",
        "cancelled",
    ] {
        assert!(kinds.contains(&k), "{k} missing in {kinds:?}");
    }
    // Someone else's subscription is not visible.
    let (_, carol) = cp.account("carol", "viewer", None).await;
    let (s, _) = cp
        .call(
            "GET",
            &format!("/api/v1/subscriptions/{id}"),
            Some(&carol),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = cp
        .call(
            "POST",
            "/api/v1/subscriptions/renewals",
            Some(&carol),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 403);
    drop(cp);
}

async fn ws(
    cp: &Cp,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/api/v1/realtime", cp.addr),
    )
    .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"type": "subscribe", "channel": "chat:alice"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    // Read until subscribed.
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "subscribed" {
                return ws;
            }
        }
    }
}

#[tokio::test]
async fn gift_series_to_viewers_in_chat_pause_resume_and_subscriber_only_chat() {
    let (y, yaddr) = YooKassa::start().await;
    let cp = yookassa_cp(yaddr, None).await;
    let (_, admin) = cp.account("root", "admin", None).await;
    let (_, alice) = cp.account("alice", "streamer", Some(&admin)).await;
    let (_, gifter) = cp.account("gifter", "viewer", None).await;
    let mut viewers = Vec::new();
    for name in ["viewer1", "viewer2", "viewer3"] {
        let (u, t) = cp.account(name, "viewer", None).await;
        viewers.push((u["id"].as_str().unwrap().to_owned(), t));
    }
    let (_, outsider) = cp.account("outsider", "viewer", None).await;
    let supporter = tier(&cp, "alice", "supporter").await;

    // Nobody in the chat yet: nothing to gift.
    let series = json!({"tier_id": supporter["id"], "count": 2});
    let path = "/api/v1/channels/alice/gift-subscriptions/series";
    let (s, e) = cp
        .call("POST", path, Some(&gifter), Some(series.clone()))
        .await;
    assert_eq!((s, code(&e)), (409, "CONFLICT"), "{e}");

    // Three viewers join the room; the series picks two of them at random.
    let mut sockets = Vec::new();
    for (_, t) in &viewers {
        sockets.push(ws(&cp, t).await);
    }
    let mut started = Value::Null;
    wait_for(Duration::from_secs(10), async || {
        let (s, v) = cp
            .call("POST", path, Some(&gifter), Some(series.clone()))
            .await;
        started = v;
        s == 201
    })
    .await;
    assert_eq!(started["amount"], 2 * 19_900, "{started}");
    let recipients: Vec<String> = started["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recipients.len(), 2);
    assert!(
        recipients
            .iter()
            .all(|r| viewers.iter().any(|(id, _)| id == r))
    );
    assert_ne!(recipients[0], recipients[1]);
    let pid = order_id(&started);
    y.succeed(&pid);
    notify_paid(&cp, &pid).await;
    notify_paid(&cp, &pid).await;
    assert_eq!(balance(&cp, &alice).await, share(2 * 19_900));

    let token_of = |id: &str| viewers.iter().find(|(v, _)| v == id).unwrap().1.clone();
    let lucky = token_of(&recipients[0]);
    let left_out = viewers
        .iter()
        .find(|(v, _)| !recipients.contains(v))
        .unwrap()
        .1
        .clone();
    let (s, h) = cp
        .call("GET", "/api/v1/subscriptions", Some(&lucky), None)
        .await;
    assert_eq!(s, 200, "{h}");
    let gift = h["subscriptions"][0].clone();
    assert_eq!(
        (gift["status"].as_str(), gift["auto_renew"].as_bool()),
        (Some("active"), Some(false)),
        "{gift}"
    );
    let gift_id = gift["id"].as_str().unwrap().to_owned();
    let (s, h) = cp
        .call("GET", "/api/v1/subscriptions", Some(&left_out), None)
        .await;
    assert_eq!(
        (s, h["subscriptions"].as_array().unwrap().len()),
        (200, 0),
        "{h}"
    );
    let (s, subs) = cp
        .call(
            "GET",
            "/api/v1/channels/alice/subscribers",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!((s, subs.as_array().unwrap().len()), (200, 2), "{subs}");

    // Subscriber-only chat: a subscriber writes (with the tier's badge), others do not.
    let (s, v) = cp
        .call(
            "PUT",
            "/api/v1/chat/alice/settings",
            Some(&alice),
            Some(json!({"subscribers_only": true})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let say = |token: String, text: &'static str| {
        let cp = &cp;
        async move {
            cp.call(
                "POST",
                "/api/v1/chat/alice/messages",
                Some(&token),
                Some(json!({"text": text})),
            )
            .await
        }
    };
    let (s, e) = say(left_out.clone(), "hello").await;
    assert_eq!((s, code(&e)), (422, "MESSAGE_BLOCKED"), "{e}");
    let (s, e) = say(outsider.clone(), "hello").await;
    assert_eq!((s, code(&e)), (422, "MESSAGE_BLOCKED"), "{e}");
    let (s, m) = say(lucky.clone(), "thanks for the gift").await;
    assert!(s == 200 || s == 201, "{s} {m}");
    assert_eq!(m["content"]["badge"]["tier"], "supporter", "{m}");
    assert_eq!(m["content"]["badge"]["months"], 1, "{m}");

    // Pause: no privileges while paused; resumed, the period's end moved by the pause.
    let end = gift["period_end"].as_i64().unwrap();
    let (s, p) = cp
        .call(
            "POST",
            &format!("/api/v1/subscriptions/{gift_id}/pause"),
            Some(&lucky),
            Some(json!({"days": 7})),
        )
        .await;
    assert_eq!((s, p["status"].as_str()), (200, Some("paused")), "{p}");
    let paused_at = p["paused_at"].as_i64().unwrap();
    let (s, e) = say(lucky.clone(), "still here?").await;
    assert_eq!((s, code(&e)), (422, "MESSAGE_BLOCKED"), "{e}");
    let (s, r) = cp
        .call(
            "POST",
            &format!("/api/v1/subscriptions/{gift_id}/resume"),
            Some(&lucky),
            None,
        )
        .await;
    assert_eq!((s, r["status"].as_str()), (200, Some("active")), "{r}");
    let shift = r["period_end"].as_i64().unwrap() - end;
    assert!(shift >= 0 && shift <= common_now() - paused_at, "{shift}");
    let end = r["period_end"].as_i64().unwrap();
    // A pause that runs out resumes by itself, moving the end by exactly its length.
    let (_, p) = cp
        .call(
            "POST",
            &format!("/api/v1/subscriptions/{gift_id}/pause"),
            Some(&lucky),
            Some(json!({"days": 7})),
        )
        .await;
    let until = p["pause_until"].as_i64().unwrap();
    let r = run_at(&cp, &admin, until).await;
    assert_eq!(r["resumed"], 1, "{r}");
    let g = sub(&cp, &lucky, &gift_id).await;
    assert_eq!(
        (g["status"].as_str(), g["period_end"].as_i64()),
        (Some("active"), Some(end + 7 * DAY)),
        "{g}"
    );

    // A gift is not renewed: it expires at its end.
    let r = run_at(&cp, &admin, end + 7 * DAY).await;
    assert!(r["expired"].as_i64().unwrap() >= 1, "{r}");
    assert_eq!(sub(&cp, &lucky, &gift_id).await["status"], "expired");
    // A single gift: the giver pays 3 months for the viewer left out.
    let (s, g) = cp
        .call(
            "POST",
            "/api/v1/channels/alice/gift-subscriptions",
            Some(&gifter),
            Some(json!({"recipient": "outsider", "tier_id": supporter["id"], "months": 3})),
        )
        .await;
    assert_eq!((s, g["amount"].as_i64()), (201, Some(3 * 19_900)), "{g}");
    let pid = order_id(&g);
    y.succeed(&pid);
    notify_paid(&cp, &pid).await;
    let (_, h) = cp
        .call("GET", "/api/v1/subscriptions", Some(&outsider), None)
        .await;
    let o = &h["subscriptions"][0];
    assert_eq!(
        o["period_end"].as_i64().unwrap() - o["period_start"].as_i64().unwrap(),
        3 * PERIOD,
        "{o}"
    );
    // Exclusive emotes: VIP's emote is refused to a Supporter, the plain ones pass.
    let vip = tier(&cp, "alice", "vip").await;
    let (s, v) = cp
        .call(
            "PATCH",
            &format!("/api/v1/subscription-tiers/{}", vip["id"].as_str().unwrap()),
            Some(&alice),
            Some(json!({"exclusive_emotes": ["aliceVip"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, e) = say(outsider.clone(), "look :aliceVip:").await;
    assert_eq!((s, code(&e)), (422, "MESSAGE_BLOCKED"), "{e}");
    let (s, m) = say(outsider.clone(), "hello :wave:").await;
    assert!(s == 200 || s == 201, "{s} {m}");
    reconciles(&cp, &admin).await;
    drop(sockets);
}

fn common_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `potok all`'s sandbox: the checkout page saves the card, renewals charge it.
#[tokio::test]
async fn in_the_sandbox_the_checkout_saves_the_card_and_renewals_charge_it() {
    let cp = start(|_| {}).await;
    let (_, admin) = cp.account("root", "admin", None).await;
    let (_, alice) = cp.account("alice", "streamer", Some(&admin)).await;
    let (_, bob) = cp.account("bob", "viewer", None).await;
    let champion = tier(&cp, "alice", "champion").await;
    let (s, started) = cp
        .call(
            "POST",
            "/api/v1/channels/alice/subscriptions",
            Some(&bob),
            Some(json!({"tier_id": champion["id"]})),
        )
        .await;
    assert_eq!(s, 201, "{started}");
    let id = started["subscription"]["id"].as_str().unwrap().to_owned();
    let url = started["confirmation"]["url"].as_str().unwrap();
    let pay = url.rsplit('/').next().unwrap();
    let (s, ack) = cp
        .call(
            "POST",
            &format!("/api/v1/payments/sandbox/{pay}"),
            None,
            Some(json!({"succeed": true})),
        )
        .await;
    assert_eq!(s, 200, "{ack}");
    let s1 = sub(&cp, &bob, &id).await;
    assert_eq!(
        (
            s1["status"].as_str(),
            s1["has_saved_payment_method"].as_bool()
        ),
        (Some("active"), Some(true)),
        "{s1}"
    );
    let end = s1["period_end"].as_i64().unwrap();
    let r = run_at(&cp, &admin, end).await;
    assert_eq!(r["renewed"], 1, "{r}");
    assert_eq!(sub(&cp, &bob, &id).await["months"], 2);
    assert_eq!(balance(&cp, &alice).await, 2 * share(99_900));
    // The streamer hears of the new subscriber and of the renewal, once each (the overlay's
    // alerts come from the same events).
    wait_for(Duration::from_secs(10), async || {
        let (_, n) = cp
            .call("GET", "/api/v1/notifications", Some(&alice), None)
            .await;
        let n = n.to_string();
        n.matches("\"event\":\"renewal\"").count() == 1
            && n.matches("\"event\":\"new\"").count() == 1
    })
    .await;
    reconciles(&cp, &admin).await;
}

/// Outside tests, renewals cannot be run ahead of the clock (that would charge early).
#[tokio::test]
async fn renewals_cannot_be_run_in_the_future_outside_tests() {
    let cp = start(|c| c.control_plane.payments.subscriptions.allow_future_runs = false).await;
    let (_, admin) = cp.account("root", "viewer", None).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let later = json!({"at": now + 2 * 86_400_000});
    let (s, v) = cp
        .call(
            "POST",
            "/api/v1/subscriptions/renewals",
            Some(&admin),
            Some(later),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(run_at(&cp, &admin, now).await["renewed"], json!(0));
}
