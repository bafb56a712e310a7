//! Payment providers behind one interface: YooKassa's API (`/v3/payments`, `/v3/refunds`,
//! `/v3/payouts`, HTTP Basic with the shop id and secret key, an `Idempotence-Key` on every
//! POST) and the sandbox (payments kept in the database, confirmed or failed on a local
//! checkout page). The payments area never trusts what a notification says: it asks the
//! provider ([`Provider::payment`]) and acts on that answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use potok_config::{Secret, YooKassaConfig};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;

use crate::db::Db;
use crate::model::now_ms;

/// Largest provider answer read, in bytes.
const MAX_ANSWER: usize = 256 * 1024;

/// What a provider says about a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProviderPayment {
    /// The provider's id.
    pub(crate) id: String,
    /// `pending`, `waiting_for_capture`, `succeeded` or `canceled`.
    pub(crate) status: String,
    /// Amount in minor units.
    pub(crate) amount: i64,
    /// ISO 4217.
    pub(crate) currency: String,
    /// Our donation id, from the payment's metadata.
    pub(crate) donation_id: Option<String>,
    /// Where the payer confirms (redirect), when pending.
    pub(crate) confirmation_url: Option<String>,
    /// A fingerprint of the card paid with (never the number).
    pub(crate) card_fingerprint: Option<String>,
    /// Why it was canceled.
    pub(crate) cancellation_reason: Option<String>,
    /// The payment method saved for recurring charges (YooKassa's `payment_method.id` when
    /// `payment_method.saved` is true).
    pub(crate) payment_method_id: Option<String>,
}

/// What a provider says about a refund.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProviderRefund {
    pub(crate) id: String,
    pub(crate) payment_id: String,
    /// `pending`, `succeeded` or `canceled`.
    pub(crate) status: String,
    pub(crate) amount: i64,
    pub(crate) currency: String,
}

/// What a provider says about a payout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProviderPayout {
    pub(crate) id: String,
    /// `pending`, `succeeded` or `canceled`.
    pub(crate) status: String,
    pub(crate) cancellation_reason: Option<String>,
}

/// A payment to create.
pub(crate) struct NewPayment<'a> {
    pub(crate) donation_id: &'a str,
    pub(crate) amount: i64,
    pub(crate) currency: &'a str,
    /// `bank_card` or `sbp`.
    pub(crate) method: &'a str,
    pub(crate) description: &'a str,
    pub(crate) return_url: &'a str,
    /// Sent as `Idempotence-Key`: the same key never makes a second payment.
    pub(crate) idempotence_key: &'a str,
    /// Ask the provider to keep the payment method for later charges without the payer.
    pub(crate) save_payment_method: bool,
    /// Charge a saved payment method: no confirmation, the answer is final or pending.
    pub(crate) payment_method_id: Option<&'a str>,
}

/// Why a provider call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProviderError {
    /// The provider refused the request (4xx): the message says why.
    #[error("the payment provider refused: {0}")]
    Refused(String),
    /// It could not be reached or failed (5xx, timeout): retry later.
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
    /// Not found at the provider.
    #[error("unknown at the payment provider")]
    NotFound,
}

type PResult<T> = Result<T, ProviderError>;

/// A payment provider.
#[async_trait::async_trait]
pub(crate) trait Provider: Send + Sync {
    /// `sandbox` or `yookassa`.
    fn name(&self) -> &'static str;
    /// Creates a payment (captured automatically once the payer confirms).
    async fn create_payment(&self, p: &NewPayment<'_>) -> PResult<ProviderPayment>;
    /// The payment as the provider knows it now.
    async fn payment(&self, id: &str) -> PResult<ProviderPayment>;
    /// Refunds `amount` of a payment.
    async fn create_refund(
        &self,
        payment_id: &str,
        amount: i64,
        currency: &str,
        idempotence_key: &str,
    ) -> PResult<ProviderRefund>;
    /// The refund as the provider knows it now.
    async fn refund(&self, id: &str) -> PResult<ProviderRefund>;
    /// Pays a streamer out.
    async fn create_payout(
        &self,
        amount: i64,
        currency: &str,
        method: &str,
        destination: &str,
        idempotence_key: &str,
    ) -> PResult<ProviderPayout>;
}

/// Formats minor units as YooKassa's decimal string (`12345` → `"123.45"`).
pub(crate) fn decimal(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    format!("{sign}{}.{:02}", m / 100, m % 100)
}

/// Parses YooKassa's decimal string into minor units, exactly (`"2.5"` → 250); anything
/// else (more than two decimals, signs, exponents, overflow) is `None`.
pub(crate) fn parse_decimal(s: &str) -> Option<i64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty()
        || whole.len() > 15
        || frac.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let w: i64 = whole.parse().ok()?;
    let f: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    w.checked_mul(100)?.checked_add(f)
}

#[derive(Deserialize)]
struct Amount {
    value: String,
    currency: String,
}

fn amount_of(v: &Value) -> PResult<(i64, String)> {
    let a: Amount = serde_json::from_value(v.get("amount").cloned().unwrap_or(Value::Null))
        .map_err(|e| ProviderError::Unavailable(format!("bad amount in answer: {e}")))?;
    let minor = parse_decimal(&a.value)
        .ok_or_else(|| ProviderError::Unavailable(format!("bad amount {:?}", a.value)))?;
    Ok((minor, a.currency))
}

fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    let mut v = v;
    for p in path {
        v = v.get(*p)?;
    }
    v.as_str().map(str::to_owned)
}

/// A payment object from YooKassa's API (also the `object` of a notification).
pub(crate) fn payment_from_json(v: &Value) -> PResult<ProviderPayment> {
    let id = str_at(v, &["id"]).ok_or_else(|| ProviderError::Unavailable("no id".into()))?;
    let status =
        str_at(v, &["status"]).ok_or_else(|| ProviderError::Unavailable("no status".into()))?;
    let (amount, currency) = amount_of(v)?;
    let card = v.get("payment_method").and_then(|m| m.get("card"));
    let card_fingerprint = card.map(|c| {
        let part = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
        crate::secrets::hash_secret(&format!(
            "{}|{}|{}|{}",
            part("first6"),
            part("last4"),
            part("expiry_month"),
            part("expiry_year")
        ))
    });
    Ok(ProviderPayment {
        id,
        status,
        amount,
        currency,
        donation_id: str_at(v, &["metadata", "donation_id"]),
        confirmation_url: str_at(v, &["confirmation", "confirmation_url"]),
        card_fingerprint,
        cancellation_reason: str_at(v, &["cancellation_details", "reason"]),
        payment_method_id: v
            .get("payment_method")
            .filter(|m| m.get("saved").and_then(Value::as_bool) == Some(true))
            .and_then(|m| m.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

fn refund_from_json(v: &Value) -> PResult<ProviderRefund> {
    let (amount, currency) = amount_of(v)?;
    Ok(ProviderRefund {
        id: str_at(v, &["id"]).ok_or_else(|| ProviderError::Unavailable("no id".into()))?,
        payment_id: str_at(v, &["payment_id"])
            .ok_or_else(|| ProviderError::Unavailable("no payment_id".into()))?,
        status: str_at(v, &["status"])
            .ok_or_else(|| ProviderError::Unavailable("no status".into()))?,
        amount,
        currency,
    })
}

fn payout_from_json(v: &Value) -> PResult<ProviderPayout> {
    Ok(ProviderPayout {
        id: str_at(v, &["id"]).ok_or_else(|| ProviderError::Unavailable("no id".into()))?,
        status: str_at(v, &["status"])
            .ok_or_else(|| ProviderError::Unavailable("no status".into()))?,
        cancellation_reason: str_at(v, &["cancellation_details", "reason"]),
    })
}

// ---- YooKassa ----

/// YooKassa's API over HTTPS (or plain HTTP for a test server).
pub(crate) struct YooKassa {
    base: http::Uri,
    auth: String,
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
}

impl YooKassa {
    pub(crate) fn new(cfg: &YooKassaConfig) -> Result<Self, String> {
        let base: http::Uri = cfg
            .api_url
            .trim_end_matches('/')
            .parse()
            .map_err(|e| format!("yookassa.api_url: {e}"))?;
        let shop = cfg.shop_id.clone().unwrap_or_default();
        let key = cfg.secret_key.as_ref().map(Secret::expose).unwrap_or("");
        let auth = format!("Basic {}", base64(format!("{shop}:{key}").as_bytes()));
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(YooKassa {
            base,
            auth,
            timeout: cfg.request_timeout.get(),
            tls: Arc::new(tls),
        })
    }

    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<(Value, &str)>,
    ) -> PResult<Value> {
        match tokio::time::timeout(self.timeout, self.call_once(method, path, body)).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::Unavailable("timed out".into())),
        }
    }

    async fn call_once(
        &self,
        method: http::Method,
        path: &str,
        body: Option<(Value, &str)>,
    ) -> PResult<Value> {
        let unavailable = |e: &dyn std::fmt::Display| ProviderError::Unavailable(e.to_string());
        let host = self
            .base
            .host()
            .ok_or_else(|| unavailable(&"no host"))?
            .to_owned();
        let https = self.base.scheme_str() == Some("https");
        let port = self.base.port_u16().unwrap_or(if https { 443 } else { 80 });
        let prefix = self.base.path().trim_end_matches('/');
        let uri = format!("{prefix}{path}");
        let mut req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::HOST, host.as_str())
            .header(http::header::AUTHORIZATION, &self.auth)
            .header(http::header::ACCEPT, "application/json");
        let payload = match body {
            Some((v, key)) => {
                req = req
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .header("Idempotence-Key", key);
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(payload)).map_err(|e| unavailable(&e))?;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| unavailable(&e))?;
        let res = if https {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| unavailable(&e))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
                .connect(name, tcp)
                .await
                .map_err(|e| unavailable(&e))?;
            send(hyper_util::rt::TokioIo::new(tls), req).await?
        } else {
            send(hyper_util::rt::TokioIo::new(tcp), req).await?
        };
        let (parts, body) = res.into_parts();
        let bytes = Limited::new(body, MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| unavailable(&e))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        match parts.status.as_u16() {
            200..=299 => Ok(v),
            404 => Err(ProviderError::NotFound),
            400..=499 => Err(ProviderError::Refused(
                v.get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("request refused")
                    .chars()
                    .take(300)
                    .collect(),
            )),
            s => Err(ProviderError::Unavailable(format!("HTTP {s}"))),
        }
    }
}

async fn send<I>(
    io: I,
    req: http::Request<Full<Bytes>>,
) -> PResult<http::Response<hyper::body::Incoming>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| ProviderError::Unavailable(e.to_string()))
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn amount_json(minor: i64, currency: &str) -> Value {
    json!({"value": decimal(minor), "currency": currency})
}

#[async_trait::async_trait]
impl Provider for YooKassa {
    fn name(&self) -> &'static str {
        "yookassa"
    }

    async fn create_payment(&self, p: &NewPayment<'_>) -> PResult<ProviderPayment> {
        let description = p.description.chars().take(128).collect::<String>();
        let body = match p.payment_method_id {
            // A recurring charge: the saved method, no confirmation by the payer.
            Some(method) => json!({
                "amount": amount_json(p.amount, p.currency),
                "capture": true,
                "payment_method_id": method,
                "description": description,
                "metadata": {"donation_id": p.donation_id},
            }),
            None => {
                let mut b = json!({
                    "amount": amount_json(p.amount, p.currency),
                    "capture": true,
                    "confirmation": {"type": "redirect", "return_url": p.return_url},
                    "payment_method_data": {"type": p.method},
                    "description": description,
                    "metadata": {"donation_id": p.donation_id},
                });
                if p.save_payment_method
                    && let Some(o) = b.as_object_mut()
                {
                    o.insert("save_payment_method".into(), json!(true));
                }
                b
            }
        };
        let v = self
            .call(
                http::Method::POST,
                "/payments",
                Some((body, p.idempotence_key)),
            )
            .await?;
        payment_from_json(&v)
    }

    async fn payment(&self, id: &str) -> PResult<ProviderPayment> {
        if !safe_id(id) {
            return Err(ProviderError::NotFound);
        }
        let v = self
            .call(http::Method::GET, &format!("/payments/{id}"), None)
            .await?;
        payment_from_json(&v)
    }

    async fn create_refund(
        &self,
        payment_id: &str,
        amount: i64,
        currency: &str,
        idempotence_key: &str,
    ) -> PResult<ProviderRefund> {
        let body = json!({"payment_id": payment_id, "amount": amount_json(amount, currency)});
        let v = self
            .call(
                http::Method::POST,
                "/refunds",
                Some((body, idempotence_key)),
            )
            .await?;
        refund_from_json(&v)
    }

    async fn refund(&self, id: &str) -> PResult<ProviderRefund> {
        if !safe_id(id) {
            return Err(ProviderError::NotFound);
        }
        let v = self
            .call(http::Method::GET, &format!("/refunds/{id}"), None)
            .await?;
        refund_from_json(&v)
    }

    async fn create_payout(
        &self,
        amount: i64,
        currency: &str,
        method: &str,
        destination: &str,
        idempotence_key: &str,
    ) -> PResult<ProviderPayout> {
        let dest = match method {
            "bank_card" => json!({"type": "bank_card", "card": {"number": destination}}),
            "sbp" => json!({"type": "sbp", "phone": destination}),
            _ => json!({"type": "yoo_money", "account_number": destination}),
        };
        let body = json!({"amount": amount_json(amount, currency), "payout_destination_data": dest,
            "description": "Potok payout"});
        let v = self
            .call(
                http::Method::POST,
                "/payouts",
                Some((body, idempotence_key)),
            )
            .await?;
        payout_from_json(&v)
    }
}

/// Provider ids go into URL paths: letters, digits and `-`/`_` only.
fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

// ---- Sandbox ----

/// The sandbox: payments in the database, confirmed or failed on `/pay/sandbox/{id}`. No
/// money moves; everything else (webhook path, ledger, events) runs as with a real provider.
pub(crate) struct Sandbox {
    db: Db,
    base_url: String,
}

impl Sandbox {
    pub(crate) fn new(db: Db, base_url: String) -> Self {
        Sandbox { db, base_url }
    }

    /// Settles a pending sandbox payment as the payer chose: `succeeded` or `canceled`.
    /// Returns false when it is not pending (already settled, or unknown).
    pub(crate) async fn settle(
        &self,
        id: &str,
        succeeded: bool,
        card: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        let status = if succeeded { "succeeded" } else { "canceled" };
        let fp = card.map(crate::secrets::hash_secret);
        let now = now_ms();
        // A payment that asked to save its method saves it when it succeeds.
        let method = format!("sbm-{id}");
        let r = sqlx::query(
            "UPDATE sandbox_payments SET status = $1, card_fingerprint = $2, updated_at = $3, \
             payment_method_id = CASE WHEN save_method = 1 AND $1 = 'succeeded' THEN $5 ELSE NULL END \
             WHERE id = $4 AND status = 'pending'",
        )
        .bind(status)
        .bind(&fp)
        .bind(now)
        .bind(id)
        .bind(&method)
        .execute(self.db.pool())
        .await?;
        if r.rows_affected() == 1 && succeeded {
            sqlx::query(
                "INSERT INTO sandbox_payment_methods (id, card_fingerprint, created_at) \
                 SELECT payment_method_id, card_fingerprint, $2 FROM sandbox_payments \
                 WHERE id = $1 AND payment_method_id IS NOT NULL ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(now)
            .execute(self.db.pool())
            .await?;
        }
        Ok(r.rows_affected() == 1)
    }

    /// The payment and its return URL, for the checkout page.
    pub(crate) async fn checkout(
        &self,
        id: &str,
    ) -> Result<Option<(ProviderPayment, String)>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT id, status, amount, currency, donation_id, card_fingerprint, payment_method_id, return_url \
             FROM sandbox_payments WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|r| Ok((self.row(&r)?, r.try_get(7)?))).transpose()
    }

    fn row(&self, r: &sqlx::any::AnyRow) -> Result<ProviderPayment, sqlx::Error> {
        let id: String = r.try_get(0)?;
        let status: String = r.try_get(1)?;
        Ok(ProviderPayment {
            confirmation_url: (status == "pending")
                .then(|| format!("{}/pay/sandbox/{id}", self.base_url)),
            cancellation_reason: (status == "canceled").then(|| "canceled_by_payer".to_owned()),
            id,
            status,
            amount: r.try_get(2)?,
            currency: r.try_get(3)?,
            donation_id: r.try_get(4)?,
            card_fingerprint: r.try_get(5)?,
            payment_method_id: r.try_get(6)?,
        })
    }
}

fn db_unavailable(e: sqlx::Error) -> ProviderError {
    ProviderError::Unavailable(e.to_string())
}

#[async_trait::async_trait]
impl Provider for Sandbox {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    async fn create_payment(&self, p: &NewPayment<'_>) -> PResult<ProviderPayment> {
        // The idempotence key makes a retried create return the first payment.
        if let Some(r) = sqlx::query("SELECT id FROM sandbox_payments WHERE idempotence_key = $1")
            .bind(p.idempotence_key)
            .fetch_optional(self.db.pool())
            .await
            .map_err(db_unavailable)?
        {
            let id: String = r.try_get(0).map_err(db_unavailable)?;
            return self.payment(&id).await;
        }
        let id = format!("sbx-{}", crate::secrets::new_id());
        let now = now_ms();
        // A charge of a saved method settles at once: succeeded when the method exists.
        let (status, card, method) = match p.payment_method_id {
            Some(m) => {
                let saved: Option<(Option<String>,)> = sqlx::query_as(
                    "SELECT card_fingerprint FROM sandbox_payment_methods WHERE id = $1",
                )
                .bind(m)
                .fetch_optional(self.db.pool())
                .await
                .map_err(db_unavailable)?;
                match saved {
                    Some((fp,)) => ("succeeded", fp, Some(m.to_owned())),
                    None => ("canceled", None, None),
                }
            }
            None => ("pending", None, None),
        };
        sqlx::query(
            "INSERT INTO sandbox_payments (id, idempotence_key, status, amount, currency, method, \
             donation_id, return_url, created_at, updated_at, save_method, card_fingerprint, payment_method_id) \
             VALUES ($1, $2, $9, $3, $4, $5, $6, $7, $8, $8, $10, $11, $12)",
        )
        .bind(&id)
        .bind(p.idempotence_key)
        .bind(p.amount)
        .bind(p.currency)
        .bind(p.method)
        .bind(p.donation_id)
        .bind(p.return_url)
        .bind(now)
        .bind(status)
        .bind(i64::from(p.save_payment_method))
        .bind(card)
        .bind(method)
        .execute(self.db.pool())
        .await
        .map_err(db_unavailable)?;
        self.payment(&id).await
    }

    async fn payment(&self, id: &str) -> PResult<ProviderPayment> {
        let r = sqlx::query(
            "SELECT id, status, amount, currency, donation_id, card_fingerprint, payment_method_id FROM sandbox_payments WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_unavailable)?
        .ok_or(ProviderError::NotFound)?;
        self.row(&r).map_err(db_unavailable)
    }

    async fn create_refund(
        &self,
        payment_id: &str,
        amount: i64,
        currency: &str,
        idempotence_key: &str,
    ) -> PResult<ProviderRefund> {
        let paid = self.payment(payment_id).await?;
        if paid.status != "succeeded" {
            return Err(ProviderError::Refused(
                "the payment has not succeeded".into(),
            ));
        }
        if paid.currency != currency || amount > paid.amount || amount < 1 {
            return Err(ProviderError::Refused(
                "the refund exceeds the payment".into(),
            ));
        }
        let id = format!(
            "sbr-{}",
            crate::secrets::hash_secret(idempotence_key)
                .get(..24)
                .unwrap_or("x")
        );
        sqlx::query(
            "INSERT INTO sandbox_refunds (id, payment_id, amount, currency, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&id)
        .bind(payment_id)
        .bind(amount)
        .bind(currency)
        .bind(now_ms())
        .execute(self.db.pool())
        .await
        .map_err(db_unavailable)?;
        self.refund(&id).await
    }

    async fn refund(&self, id: &str) -> PResult<ProviderRefund> {
        let r = sqlx::query(
            "SELECT id, payment_id, amount, currency FROM sandbox_refunds WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_unavailable)?
        .ok_or(ProviderError::NotFound)?;
        Ok(ProviderRefund {
            id: r.try_get(0).map_err(db_unavailable)?,
            payment_id: r.try_get(1).map_err(db_unavailable)?,
            status: "succeeded".into(),
            amount: r.try_get(2).map_err(db_unavailable)?,
            currency: r.try_get(3).map_err(db_unavailable)?,
        })
    }

    async fn create_payout(
        &self,
        _amount: i64,
        _currency: &str,
        _method: &str,
        _destination: &str,
        idempotence_key: &str,
    ) -> PResult<ProviderPayout> {
        Ok(ProviderPayout {
            id: format!(
                "sbp-{}",
                crate::secrets::hash_secret(idempotence_key)
                    .get(..24)
                    .unwrap_or("x")
            ),
            status: "succeeded".into(),
            cancellation_reason: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_round_trip_exactly() {
        assert_eq!(decimal(12345), "123.45");
        assert_eq!(decimal(5), "0.05");
        assert_eq!(decimal(100), "1.00");
        assert_eq!(parse_decimal("123.45"), Some(12345));
        assert_eq!(parse_decimal("2.5"), Some(250));
        assert_eq!(parse_decimal("7"), Some(700));
        for bad in [
            "",
            "1.234",
            "-1.00",
            "1e3",
            "1,00",
            ".5",
            "99999999999999999.00",
            " 1.00",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad}");
        }
        for k in [0, 1, 99, 100, 101, 123_456_789] {
            assert_eq!(parse_decimal(&decimal(k)), Some(k));
        }
    }

    #[test]
    fn basic_auth_is_base64() {
        assert_eq!(base64(b"shop:key"), "c2hvcDprZXk=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }

    #[test]
    fn a_payment_object_reads_without_trusting_shape() {
        let v = json!({"id": "2d", "status": "succeeded", "amount": {"value": "10.00", "currency": "RUB"},
            "metadata": {"donation_id": "d1"}, "payment_method": {"type": "bank_card",
            "card": {"first6": "555555", "last4": "4444", "expiry_month": "07", "expiry_year": "2030"}}});
        let p = payment_from_json(&v).unwrap();
        assert_eq!((p.amount, p.donation_id.as_deref()), (1000, Some("d1")));
        assert!(p.card_fingerprint.is_some());
        assert!(payment_from_json(&json!({"id": "x"})).is_err());
        assert!(payment_from_json(&json!({"id": "x", "status": "pending", "amount": {"value": "1.001", "currency": "RUB"}})).is_err());
    }
}
