//! The payments area: donations and the money behind them (the seed's `DonationService`,
//! `PaymentServiceIntegration`, the server side of `DonationUIUXManager` and
//! `RealTimeDonationSystem`).
//!
//! A donation starts as a `pending` row and a payment at the provider ([`provider`]:
//! YooKassa or the sandbox). The provider's notification (or the sandbox's checkout page)
//! only says "look again": the payment is re-fetched from the provider and, when it has
//! succeeded with the donation's amount, the donation is completed in one transaction with
//! its ledger posting ([`ledger`]), its effects on goals, competitions, challenges, requests
//! and item keys, and its `DonationProcessed` event ([`events`]). Unique keys on the posting,
//! the conditional status change and every consumer make a replayed, duplicated or
//! out-of-order notification take effect exactly once. Owns the tables of migration 0010.

// utoipa's generated code names parameter types with their full paths.
#![allow(unused_qualifications)]

pub(crate) mod catalog;
pub(crate) mod events;
#[cfg(test)]
mod histories;
pub mod ledger;
pub(crate) mod overlay;
pub(crate) mod provider;
pub(crate) mod routes;

use std::sync::Arc;
use std::time::Duration;

use potok_config::{IpNet, PaymentProvider, PaymentsConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;
use utoipa::ToSchema;

use self::ledger::{Account, Tx};
use self::provider::{NewPayment, Provider, ProviderError, ProviderPayment, ProviderRefund};
use crate::chat::store::Chat;
use crate::db::Db;
use crate::error::{ApiError, StreamingErrorCode};
use crate::model::{User, now_ms};
use crate::notifications::Notifications;
use crate::realtime::bus::Bus;
use crate::secrets::new_id;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

fn db_err(e: sqlx::Error) -> ApiError {
    ApiError::from(crate::db::RepoError::Db(e))
}

fn refuse(code: StreamingErrorCode, why: impl Into<String>) -> ApiError {
    ApiError::new(code, why)
}

/// The seed's `DonationType`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DonationType {
    /// Money with an optional message.
    #[default]
    Money,
    /// A gift from the catalog.
    VirtualGift,
    /// A game key from the streamer's catalog.
    GameKey,
    /// An in-game item from the streamer's catalog.
    InGameItem,
    /// Downloadable content from the streamer's catalog.
    Dlc,
    /// A subscription (the subscriptions area).
    Subscription,
}

impl DonationType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DonationType::Money => "money",
            DonationType::VirtualGift => "virtual_gift",
            DonationType::GameKey => "game_key",
            DonationType::InGameItem => "in_game_item",
            DonationType::Dlc => "dlc",
            DonationType::Subscription => "subscription",
        }
    }

    fn parse(s: &str) -> DonationType {
        serde_json::from_value(json!(s)).unwrap_or_default()
    }
}

/// The seed's `DonationStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DonationStatus {
    /// Waiting for the payer.
    Pending,
    /// Paid and credited.
    Completed,
    /// Not paid (canceled, expired, refused).
    Failed,
    /// Paid, then refunded or charged back.
    Refunded,
}

impl DonationStatus {
    fn parse(s: &str) -> DonationStatus {
        match s {
            "completed" => DonationStatus::Completed,
            "failed" => DonationStatus::Failed,
            "refunded" => DonationStatus::Refunded,
            _ => DonationStatus::Pending,
        }
    }
}

/// How the donor pays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    /// A bank card (redirect to the provider's page, 3-D Secure).
    #[default]
    BankCard,
    /// The Faster Payments System (redirect to the bank's app or a QR code).
    Sbp,
}

impl PaymentMethod {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::BankCard => "bank_card",
            PaymentMethod::Sbp => "sbp",
        }
    }
}

/// A donation (the seed's `Donation`); amounts in the currency's minor unit (kopecks).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Donation {
    /// Id.
    pub id: String,
    /// The channel (streamer's name) it went to.
    pub channel: String,
    /// The streamer's user id.
    pub streamer_id: String,
    /// The stream that was live, if one was.
    pub stream_id: Option<String>,
    /// The donor's user id (hidden when anonymous).
    pub donor_id: Option<String>,
    /// The name shown.
    pub donor_name: String,
    /// Amount in minor units (kopecks).
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// The streamer's part of `amount`.
    pub streamer_share: i64,
    /// The platform's part of `amount`.
    pub fee: i64,
    /// The message.
    pub message: Option<String>,
    /// What was given.
    #[serde(rename = "type")]
    pub kind: DonationType,
    /// How it was paid.
    pub payment_method: String,
    /// Its state.
    pub status: DonationStatus,
    /// Whether the donor's name is hidden.
    pub is_anonymous: bool,
    /// Whether it was refunded or charged back.
    pub is_refunded: bool,
    /// Why it was refunded.
    pub refund_reason: Option<String>,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// What it pays for beyond the message: `gift`, `item`, `request`, `boost`, `highlight`,
    /// `goal_id`, `competition`, `challenge_id`.
    pub purpose: Value,
    /// Unix milliseconds.
    pub timestamp: i64,
    /// When it was credited.
    pub completed_at: Option<i64>,
    /// Why the fraud rules refunded it (seen by its streamer, its donor and admins).
    pub fraud_reasons: Vec<String>,
}

/// A donation as its creator gets it: with where to pay.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DonationStarted {
    /// The donation (pending).
    pub donation: Donation,
    /// Where the payer confirms.
    pub confirmation: Confirmation,
}

/// How the payer confirms.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Confirmation {
    /// `redirect`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The page to send the payer to.
    pub url: String,
}

/// A song or game request paid by a donation.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaRequest {
    /// The song or game, as text (1-200 characters).
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub text: String,
    /// A link (https), optional.
    #[serde(default)]
    #[schema(max_length = 500, pattern = "^https://[^\\s\\x00-\\x1F\\x7F-\\x9F]+$")]
    pub link: Option<String>,
}

/// What to start a donation with (processDonation / sendDonation).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DonationRequest {
    /// Amount in minor units (kopecks), within the currency's limits (RUB: 100-10,000,000
    /// by default); for a gift or an item, its price (a changed price is refused with 409).
    #[serde(default, deserialize_with = "crate::api::whole_opt")]
    #[schema(value_type = i64, minimum = 100, maximum = 10000000)]
    pub amount: Option<i64>,
    /// ISO 4217: RUB (or another of `control_plane.payments.currencies`).
    #[serde(default = "rub")]
    #[schema(pattern = "^RUB$")]
    pub currency: String,
    /// A message (at most `payments.max_message_chars`, 300), checked with the chat filters.
    #[serde(default)]
    #[schema(
        max_length = 300,
        pattern = "^[^\\x00-\\x09\\x0B-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x09\\x0B-\\x1F\\x7F-\\x9F]*$"
    )]
    pub message: Option<String>,
    /// Hide the donor's name.
    #[serde(default)]
    pub anonymous: bool,
    /// The name to show; required without signing in.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 32,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub donor_name: Option<String>,
    /// `bank_card` (default) or `sbp`.
    #[serde(default)]
    pub method: PaymentMethod,
    /// What is given (subscriptions are bought through their own endpoint).
    #[serde(default, rename = "type")]
    #[schema(value_type = GivenType)]
    pub kind: DonationType,
    /// The gift (type `virtual_gift`).
    #[serde(default)]
    pub gift_id: Option<String>,
    /// The catalog item (types `game_key`, `in_game_item`, `dlc`).
    #[serde(default)]
    pub item_id: Option<String>,
    /// Who receives the item's key (a username; default: the donor).
    #[serde(default)]
    pub recipient: Option<String>,
    /// The goal it counts toward (default: the channel's active goals).
    #[serde(default)]
    pub goal_id: Option<String>,
    /// A competition and the option voted for.
    #[serde(default)]
    pub competition_id: Option<String>,
    /// The option of `competition_id`.
    #[serde(default)]
    pub option_id: Option<String>,
    /// A viewer challenge it funds.
    #[serde(default)]
    pub challenge_id: Option<String>,
    /// The page the payer returns to (this site's path or `payments.public_url`).
    #[serde(default)]
    pub return_url: Option<String>,
    #[serde(skip)]
    pub(crate) extra: Extra,
}

/// What a donation gives (the seed's `DonationType` without subscriptions).
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum GivenType {
    /// Money.
    Money,
    /// A gift from the catalog.
    VirtualGift,
    /// A game key.
    GameKey,
    /// An in-game item.
    InGameItem,
    /// Downloadable content.
    Dlc,
}

impl Default for DonationRequest {
    fn default() -> Self {
        DonationRequest {
            amount: None,
            currency: rub(),
            message: None,
            anonymous: false,
            donor_name: None,
            method: PaymentMethod::BankCard,
            kind: DonationType::Money,
            gift_id: None,
            item_id: None,
            recipient: None,
            goal_id: None,
            competition_id: None,
            option_id: None,
            challenge_id: None,
            return_url: None,
            extra: Extra::default(),
        }
    }
}

fn rub() -> String {
    "RUB".into()
}

/// Purposes set by the interactive endpoints, not by clients directly.
#[derive(Clone, Debug, Default)]
pub(crate) struct Extra {
    pub(crate) request: Option<(String, MediaRequest)>,
    pub(crate) boost_message: Option<String>,
    pub(crate) highlight: Option<String>,
}

/// The seed's `StreamerBalance`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct StreamerBalance {
    /// ISO 4217.
    pub currency: String,
    /// What the platform owes the streamer (the ledger account's sum); negative after a
    /// chargeback larger than what was left, netted against later income.
    pub balance: i64,
    /// Payouts requested and not yet completed (already taken off `balance`).
    pub pending_payouts: i64,
    /// What can be paid out now.
    pub available: i64,
}

/// What happened to a notification or a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Credited now.
    Credited,
    /// Marked failed now.
    Failed,
    /// Refunded now.
    Refunded,
    /// Nothing to do (already done, or still pending).
    Unchanged,
    /// Not ours.
    Unknown,
    /// The provider's payment disagrees with the donation (amount or currency): nothing done.
    Mismatch,
}

/// A charge of the subscriptions area (see [`Payments::insert_charge`]).
pub(crate) struct Charge<'a> {
    pub(crate) streamer: &'a User,
    pub(crate) payer: &'a User,
    /// Minor units.
    pub(crate) amount: i64,
    pub(crate) currency: &'a str,
    /// `{"subscription": {...}}`: what the charge pays for.
    pub(crate) purpose: Value,
    /// Unique per charge: a retried request adds nothing.
    pub(crate) idempotence_key: &'a str,
    pub(crate) method: PaymentMethod,
    pub(crate) return_url: Option<&'a str>,
}

/// What [`Payments::pay_charge`] did.
#[derive(Debug)]
pub(crate) struct Charged {
    /// Credited, failed, or still pending (`Unchanged`).
    pub(crate) outcome: Outcome,
    /// Where the payer confirms, when it waits for them.
    pub(crate) confirmation_url: Option<String>,
    /// Why it failed.
    pub(crate) reason: Option<String>,
}

/// The payments area.
pub(crate) struct Payments {
    pub(crate) db: Db,
    pub(crate) cfg: PaymentsConfig,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) sandbox: Option<Arc<provider::Sandbox>>,
    pub(crate) webhook_sources: Vec<IpNet>,
    pub(crate) chat: Arc<Chat>,
    pub(crate) notifications: Arc<Notifications>,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) public_url: String,
    pub(crate) metrics: crate::metrics::CpMetrics,
    /// Wakes the dispatcher after a commit (answers never wait for the dispatch).
    kick: tokio::sync::Notify,
    /// One dispatch at a time in this process (consumers are idempotent across processes).
    dispatching: tokio::sync::Mutex<()>,
}

const DONATION_COLUMNS: &str = "SELECT id, channel, channel_id, stream_id, donor_id, donor_name, anonymous, kind, amount, \
     currency, streamer_share, fee, message, method, status, refund_reason, failure_reason, purpose, created_at, \
     completed_at, provider_payment_id, donor_key, client_addr, fraud FROM donations";

fn donation_row(r: &sqlx::any::AnyRow) -> Result<Donation, ApiError> {
    let g = |i: usize| r.try_get::<String, _>(i).map_err(db_err);
    let o = |i: usize| r.try_get::<Option<String>, _>(i).map_err(db_err);
    let n = |i: usize| r.try_get::<i64, _>(i).map_err(db_err);
    let anonymous = n(6)? != 0;
    let status = DonationStatus::parse(&g(14)?);
    Ok(Donation {
        id: g(0)?,
        channel: g(1)?,
        streamer_id: g(2)?,
        stream_id: o(3)?,
        donor_id: if anonymous { None } else { o(4)? },
        donor_name: g(5)?,
        is_anonymous: anonymous,
        kind: DonationType::parse(&g(7)?),
        amount: n(8)?,
        currency: g(9)?,
        streamer_share: n(10)?,
        fee: n(11)?,
        message: o(12)?,
        payment_method: g(13)?,
        status,
        is_refunded: status == DonationStatus::Refunded,
        refund_reason: o(15)?,
        failure_reason: o(16)?,
        purpose: serde_json::from_str(&g(17)?).unwrap_or(Value::Null),
        timestamp: n(18)?,
        completed_at: r.try_get::<Option<i64>, _>(19).map_err(db_err)?,
        fraud_reasons: o(23)?
            .and_then(|f| serde_json::from_str(&f).ok())
            .unwrap_or_default(),
    })
}

/// A donation with what only the area needs.
struct Stored {
    d: Donation,
    provider_payment_id: Option<String>,
    donor_user: Option<String>,
    donor_key: String,
}

/// Splits `amount` by the streamer's `percent`: (streamer, platform), in whole kopecks,
/// rounding the platform's fee down.
pub(crate) fn split(amount: i64, percent: u8) -> (i64, i64) {
    let fee_percent = 100 - i128::from(percent.min(100));
    let fee = (i128::from(amount) * fee_percent / 100) as i64;
    (amount - fee, fee)
}

impl Payments {
    pub(crate) async fn new(
        db: Db,
        cfg: PaymentsConfig,
        public_url: String,
        chat: Arc<Chat>,
        notifications: Arc<Notifications>,
        bus: Arc<dyn Bus>,
        metrics: crate::metrics::CpMetrics,
    ) -> Result<Self, String> {
        let (provider, sandbox): (Arc<dyn Provider>, _) = match cfg.provider {
            PaymentProvider::Yookassa => (Arc::new(provider::YooKassa::new(&cfg.yookassa)?), None),
            PaymentProvider::Sandbox => {
                let s = Arc::new(provider::Sandbox::new(db.clone(), public_url.clone()));
                (Arc::clone(&s) as Arc<dyn Provider>, Some(s))
            }
        };
        let webhook_sources = cfg
            .yookassa
            .webhook_sources
            .iter()
            .filter_map(|s| IpNet::parse(s).ok())
            .collect();
        Ok(Payments {
            db,
            cfg,
            provider,
            sandbox,
            webhook_sources,
            chat,
            notifications,
            bus,
            public_url,
            metrics,
            kick: tokio::sync::Notify::new(),
            dispatching: tokio::sync::Mutex::new(()),
        })
    }

    fn share_of(&self, kind: DonationType) -> u8 {
        match kind {
            DonationType::VirtualGift => self.cfg.shares.virtual_gifts,
            DonationType::Subscription => self.cfg.shares.subscriptions,
            _ => self.cfg.shares.donations,
        }
    }

    async fn stored(&self, id: &str) -> Result<Option<Stored>, ApiError> {
        let row = sqlx::query(crate::db::sql(format!("{DONATION_COLUMNS} WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(db_err)?;
        row.map(|r| {
            Ok(Stored {
                d: donation_row(&r)?,
                provider_payment_id: r.try_get(20).map_err(db_err)?,
                donor_user: r.try_get(4).map_err(db_err)?,
                donor_key: r.try_get(21).map_err(db_err)?,
            })
        })
        .transpose()
    }

    /// The provider's payment id of a donation.
    pub(crate) async fn provider_id(&self, id: &str) -> Result<Option<String>, ApiError> {
        Ok(self.stored(id).await?.and_then(|s| s.provider_payment_id))
    }

    /// Whether `user` made donation `d` (also an anonymous one).
    pub(crate) fn is_donor(&self, d: &Donation, user: &User) -> bool {
        d.donor_id.as_deref() == Some(user.id.as_str())
    }

    /// A donation by id.
    pub(crate) async fn donation(&self, id: &str) -> Result<Option<Donation>, ApiError> {
        Ok(self.stored(id).await?.map(|s| s.d))
    }

    /// Makes `return_url` safe: a path on this site or a URL under `public_url`; anything
    /// else (another site: an open redirect) becomes the channel's page.
    fn return_url(&self, asked: Option<&str>, channel: &str) -> String {
        let fallback = format!("{}/{channel}", self.public_url);
        match asked {
            Some(u)
                if u.starts_with('/')
                    && !u.starts_with("//")
                    && !u.contains('\\')
                    && u.len() <= 512 =>
            {
                format!("{}{u}", self.public_url)
            }
            Some(u)
                if u.len() <= 512
                    && (u == self.public_url
                        || u.starts_with(&format!("{}/", self.public_url))) =>
            {
                u.to_owned()
            }
            _ => fallback,
        }
    }

    /// The seed's `processDonation`: checks, limits and fraud rules, a pending donation, a
    /// payment at the provider. The donor pays at `confirmation.url`.
    pub(crate) async fn start(
        &self,
        channel: &str,
        donor: Option<&User>,
        addr: &str,
        mut req: DonationRequest,
    ) -> Result<DonationStarted, ApiError> {
        let (streamer, _) = self
            .db
            .user_by_name(channel)
            .await?
            .ok_or_else(|| ApiError::not_found("channel"))?;
        let settings = catalog::settings(&self.db, &streamer.id).await?;
        let currency = req.currency.trim().to_ascii_uppercase();
        let limits = self.cfg.currencies.get(&currency).ok_or_else(|| {
            refuse(
                StreamingErrorCode::ValidationFailed,
                format!("donations in {currency:?} are not accepted"),
            )
        })?;
        if donor.is_some_and(|d| d.id == streamer.id) {
            return Err(refuse(
                StreamingErrorCode::Forbidden,
                "you cannot donate to your own channel",
            ));
        }
        // The Russian bloggers' register: big channels need their number first.
        let threshold = self.cfg.registry_follower_threshold;
        if threshold > 0 && settings.registry_number.is_none() {
            let followers = self.chat.followers(&streamer.id).await?;
            if followers > threshold as i64 {
                return Err(refuse(
                    StreamingErrorCode::Forbidden,
                    format!(
                        "this channel has more than {threshold} followers and takes donations only once \
                         its number in the bloggers' register (Roskomnadzor) is recorded"
                    ),
                ));
            }
        }
        let donor_key = match donor {
            Some(u) => format!("user:{}", u.id),
            None => format!("addr:{addr}"),
        };
        if catalog::blocked(
            &self.db,
            &streamer.id,
            &[donor_key.as_str(), &format!("addr:{addr}")],
        )
        .await?
        {
            return Err(refuse(
                StreamingErrorCode::Forbidden,
                "donations from you are blocked on this channel",
            ));
        }
        // What is given and what it costs.
        let mut purpose = serde_json::Map::new();
        let mut reserve_item = None;
        let asked = req
            .amount
            .ok_or_else(|| refuse(StreamingErrorCode::ValidationFailed, "amount is required"))?;
        let amount = match req.kind {
            DonationType::Money => asked,
            DonationType::VirtualGift => {
                let id = req.gift_id.as_deref().ok_or_else(|| {
                    refuse(
                        StreamingErrorCode::ValidationFailed,
                        "gift_id is required for a virtual gift",
                    )
                })?;
                let gift = catalog::gift(&self.db, id)
                    .await?
                    .filter(|g| g.active && g.owner_id.as_deref().is_none_or(|o| o == streamer.id))
                    .ok_or_else(|| ApiError::not_found("gift"))?;
                if gift.currency != currency {
                    return Err(refuse(
                        StreamingErrorCode::ValidationFailed,
                        "the gift is priced in another currency",
                    ));
                }
                purpose.insert(
                    "gift".into(),
                    json!({"id": gift.id, "name": gift.name,
                    "image_url": gift.image_url, "animation": gift.animation}),
                );
                if asked != gift.price {
                    return Err(refuse(
                        StreamingErrorCode::Conflict,
                        format!("the gift costs {}", gift.price),
                    ));
                }
                gift.price
            }
            DonationType::GameKey | DonationType::InGameItem | DonationType::Dlc => {
                let donor = donor.ok_or_else(|| {
                    refuse(
                        StreamingErrorCode::Unauthorized,
                        "sign in to receive an item's key",
                    )
                })?;
                let id = req.item_id.as_deref().ok_or_else(|| {
                    refuse(
                        StreamingErrorCode::ValidationFailed,
                        "item_id is required for an item",
                    )
                })?;
                let item = catalog::item(&self.db, id)
                    .await?
                    .filter(|i| i.active && i.owner_id == streamer.id && i.kind == req.kind)
                    .ok_or_else(|| ApiError::not_found("item"))?;
                if item.currency != currency {
                    return Err(refuse(
                        StreamingErrorCode::ValidationFailed,
                        "the item is priced in another currency",
                    ));
                }
                let recipient = match req.recipient.as_deref() {
                    Some(name) => self
                        .db
                        .user_by_name(name)
                        .await?
                        .map(|(u, _)| u)
                        .ok_or_else(|| ApiError::not_found("recipient"))?,
                    None => donor.clone(),
                };
                purpose.insert(
                    "item".into(),
                    json!({"id": item.id, "name": item.name, "kind": item.kind,
                    "recipient_id": recipient.id, "recipient": recipient.username}),
                );
                reserve_item = Some(item.id.clone());
                if asked != item.price {
                    return Err(refuse(
                        StreamingErrorCode::Conflict,
                        format!("the item costs {}", item.price),
                    ));
                }
                item.price
            }
            DonationType::Subscription => {
                return Err(refuse(
                    StreamingErrorCode::ValidationFailed,
                    "subscriptions are bought through their own endpoint",
                ));
            }
        };
        if amount < limits.min {
            return Err(refuse(
                StreamingErrorCode::DonationLimitExceeded,
                format!(
                    "the smallest donation is {} {currency} (minor units)",
                    limits.min
                ),
            ));
        }
        if amount > limits.max {
            return Err(refuse(
                StreamingErrorCode::DonationLimitExceeded,
                format!(
                    "the largest donation is {} {currency} (minor units)",
                    limits.max
                ),
            ));
        }
        // Interactive purposes.
        let extra = std::mem::take(&mut req.extra);
        if let Some((kind, r)) = &extra.request {
            if amount < settings.request_price {
                return Err(refuse(
                    StreamingErrorCode::DonationLimitExceeded,
                    format!("a {kind} request costs at least {}", settings.request_price),
                ));
            }
            purpose.insert(
                "request".into(),
                json!({"kind": kind, "text": r.text, "link": r.link}),
            );
        }
        if let Some(message_id) = &extra.boost_message {
            let minutes = amount / settings.boost_price_per_minute.max(1);
            if minutes < 1 {
                return Err(refuse(
                    StreamingErrorCode::DonationLimitExceeded,
                    format!(
                        "a boost costs {} per minute",
                        settings.boost_price_per_minute
                    ),
                ));
            }
            purpose.insert(
                "boost".into(),
                json!({"message_id": message_id, "minutes": minutes.min(24 * 60)}),
            );
        }
        if let Some(note) = &extra.highlight {
            if amount < settings.highlight_price {
                return Err(refuse(
                    StreamingErrorCode::DonationLimitExceeded,
                    format!("a highlight costs at least {}", settings.highlight_price),
                ));
            }
            purpose.insert("highlight".into(), json!({"note": note}));
        }
        if let Some(goal) = &req.goal_id {
            catalog::goal(&self.db, goal)
                .await?
                .filter(|g| g.channel_id == streamer.id && g.is_active)
                .ok_or_else(|| ApiError::not_found("goal"))?;
            purpose.insert("goal_id".into(), json!(goal));
        }
        if let Some(c) = &req.competition_id {
            let comp = catalog::competition(&self.db, c)
                .await?
                .filter(|x| x.channel_id == streamer.id)
                .ok_or_else(|| ApiError::not_found("competition"))?;
            let option = req.option_id.as_deref().ok_or_else(|| {
                refuse(
                    StreamingErrorCode::ValidationFailed,
                    "option_id is required with competition_id",
                )
            })?;
            if comp.ends_at < now_ms() {
                return Err(refuse(
                    StreamingErrorCode::Conflict,
                    "the competition has ended",
                ));
            }
            if !comp.options.iter().any(|o| o.id == option) {
                return Err(ApiError::not_found("competition option"));
            }
            purpose.insert("competition".into(), json!({"id": c, "option_id": option}));
        }
        if let Some(ch) = &req.challenge_id {
            catalog::challenge(&self.db, ch)
                .await?
                .filter(|x| {
                    x.channel_id == streamer.id
                        && matches!(x.status.as_str(), "proposed" | "accepted")
                })
                .ok_or_else(|| ApiError::not_found("challenge"))?;
            purpose.insert("challenge_id".into(), json!(ch));
        }
        // The message, through the chat's filters.
        let message = match req
            .message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            None => None,
            Some(m) if m.chars().count() > self.cfg.max_message_chars as usize => {
                return Err(refuse(
                    StreamingErrorCode::ValidationFailed,
                    format!(
                        "a donation message has at most {} characters",
                        self.cfg.max_message_chars
                    ),
                ));
            }
            Some(m) => Some(self.chat.check_paid_text(&streamer.username, m).await?),
        };
        let donor_name = if req.anonymous {
            "Anonymous".to_owned()
        } else {
            match (
                req.donor_name
                    .as_deref()
                    .map(str::trim)
                    .filter(|n| !n.is_empty()),
                donor,
            ) {
                (Some(n), _) if n.chars().count() > 32 || n.chars().any(char::is_control) => {
                    return Err(refuse(
                        StreamingErrorCode::ValidationFailed,
                        "donor_name: 1-32 characters",
                    ));
                }
                (Some(n), _) => self.chat.check_paid_text(&streamer.username, n).await?,
                (None, Some(u)) => u.username.clone(),
                (None, None) => {
                    return Err(refuse(
                        StreamingErrorCode::ValidationFailed,
                        "donor_name is required without signing in",
                    ));
                }
            }
        };
        let (share, fee) = split(amount, self.share_of(req.kind));
        let stream_id = self.db.open_stream_of(&streamer.id).await?.map(|s| s.id);
        let id = new_id();
        let now = now_ms();
        let return_url = self.return_url(req.return_url.as_deref(), &streamer.username);
        // Limits and velocity, checked inside the write that adds the donation (the donor's
        // row is locked first, so parallel donations see each other).
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO donor_limits (donor_key, touched_at) VALUES ($1, $2) \
             ON CONFLICT (donor_key) DO UPDATE SET touched_at = $2",
        )
        .bind(&donor_key)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let (hour_count, day_sum): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(CASE WHEN created_at > $2 THEN 1 END), \
             CAST(SUM(CASE WHEN currency = $4 AND status IN ('pending', 'completed') THEN amount ELSE 0 END) AS BIGINT) \
             FROM donations WHERE donor_key = $1 AND created_at > $3",
        )
        .bind(&donor_key)
        .bind(now - HOUR_MS)
        .bind(now - DAY_MS)
        .bind(&currency)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let fraud = &self.cfg.fraud;
        if donor.is_some() && hour_count >= i64::from(fraud.per_donor_per_hour) {
            return Err(refuse(
                StreamingErrorCode::DonationLimitExceeded,
                format!("at most {} donations per hour", fraud.per_donor_per_hour),
            ));
        }
        if day_sum.unwrap_or(0) + amount > limits.per_donor_per_day {
            return Err(refuse(
                StreamingErrorCode::DonationLimitExceeded,
                format!(
                    "at most {} {currency} (minor units) per donor per day",
                    limits.per_donor_per_day
                ),
            ));
        }
        let (addr_count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM donations WHERE client_addr = $1 AND created_at > $2",
        )
        .bind(addr)
        .bind(now - HOUR_MS)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if addr_count >= i64::from(fraud.per_address_per_hour) {
            return Err(refuse(
                StreamingErrorCode::DonationLimitExceeded,
                format!(
                    "at most {} donations per hour from one address",
                    fraud.per_address_per_hour
                ),
            ));
        }
        if let Some(item) = &reserve_item {
            let free: Option<(String,)> = sqlx::query_as(
                "SELECT id FROM item_keys WHERE item_id = $1 AND donation_id IS NULL ORDER BY added_at LIMIT 1",
            )
            .bind(item)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            let reserved = match free {
                Some((key_id,)) => sqlx::query(
                    "UPDATE item_keys SET donation_id = $1 WHERE id = $2 AND donation_id IS NULL",
                )
                .bind(&id)
                .bind(&key_id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected()
                    == 1,
                None => false,
            };
            if !reserved {
                return Err(refuse(
                    StreamingErrorCode::Conflict,
                    "this item is sold out",
                ));
            }
        }
        sqlx::query(
            "INSERT INTO donations (id, channel_id, channel, stream_id, donor_id, donor_key, donor_name, anonymous, kind, \
             amount, currency, streamer_share, fee, message, method, provider, idempotence_key, status, purpose, client_addr, \
             return_url, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
             $16, $17, 'pending', $18, $19, $20, $21, $21)",
        )
        .bind(&id)
        .bind(&streamer.id)
        .bind(&streamer.username)
        .bind(&stream_id)
        .bind(donor.map(|u| u.id.clone()))
        .bind(&donor_key)
        .bind(&donor_name)
        .bind(i64::from(req.anonymous))
        .bind(req.kind.as_str())
        .bind(amount)
        .bind(&currency)
        .bind(share)
        .bind(fee)
        .bind(&message)
        .bind(req.method.as_str())
        .bind(self.provider.name())
        .bind(format!("pay-{id}"))
        .bind(Value::Object(purpose).to_string())
        .bind(addr)
        .bind(&return_url)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        // The payment, outside the transaction (a slow provider holds no lock).
        let description = format!("Donation to {}", streamer.username);
        let created = self
            .provider
            .create_payment(&NewPayment {
                donation_id: &id,
                amount,
                currency: &currency,
                method: req.method.as_str(),
                description: &description,
                return_url: &return_url,
                idempotence_key: &format!("pay-{id}"),
                save_payment_method: false,
                payment_method_id: None,
            })
            .await;
        let payment = match created {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(donation = %id, error = %e, "payment not created");
                self.fail(&id, &e.to_string()).await?;
                self.kick.notify_one();
                self.count("payment_failed");
                return Err(refuse(StreamingErrorCode::PaymentFailed, e.to_string()));
            }
        };
        let url = payment
            .confirmation_url
            .clone()
            .unwrap_or_else(|| return_url.clone());
        sqlx::query(
            "UPDATE donations SET provider_payment_id = $1, confirmation_url = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(&payment.id)
        .bind(&url)
        .bind(now_ms())
        .bind(&id)
        .execute(self.db.pool())
        .await
        .map_err(db_err)?;
        self.count("started");
        let donation = self
            .donation(&id)
            .await?
            .ok_or_else(|| ApiError::not_found("donation"))?;
        Ok(DonationStarted {
            donation,
            confirmation: Confirmation {
                kind: "redirect".into(),
                url,
            },
        })
    }

    /// Adds, in the caller's transaction, a pending charge for the subscriptions area: a
    /// donation of kind `subscription` (the subscription share of the ledger) whose `purpose`
    /// says what it pays for. [`Self::pay_charge`] asks the provider for it after the commit.
    pub(crate) async fn insert_charge(
        &self,
        tx: &mut Tx,
        c: &Charge<'_>,
    ) -> Result<String, ApiError> {
        if !self.cfg.currencies.contains_key(c.currency) {
            return Err(refuse(
                StreamingErrorCode::ValidationFailed,
                format!("payments in {:?} are not accepted", c.currency),
            ));
        }
        let (share, fee) = split(c.amount, self.share_of(DonationType::Subscription));
        let stream_id = self.db.open_stream_of(&c.streamer.id).await?.map(|s| s.id);
        let id = new_id();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO donations (id, channel_id, channel, stream_id, donor_id, donor_key, donor_name, anonymous, kind, \
             amount, currency, streamer_share, fee, message, method, provider, idempotence_key, status, purpose, client_addr, \
             return_url, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 'subscription', $8, $9, $10, $11, \
             NULL, $12, $13, $14, 'pending', $15, '', $16, $17, $17)",
        )
        .bind(&id)
        .bind(&c.streamer.id)
        .bind(&c.streamer.username)
        .bind(&stream_id)
        .bind(&c.payer.id)
        .bind(format!("user:{}", c.payer.id))
        .bind(&c.payer.username)
        .bind(c.amount)
        .bind(c.currency)
        .bind(share)
        .bind(fee)
        .bind(c.method.as_str())
        .bind(self.provider.name())
        .bind(c.idempotence_key)
        .bind(c.purpose.to_string())
        .bind(self.return_url(c.return_url, &c.streamer.username))
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(|e| ApiError::from(crate::db::unique(e, "charge")))?;
        Ok(id)
    }

    /// Creates the provider's payment of a charge from [`Self::insert_charge`]: with a saved
    /// method it settles now (credited or failed, both once, through the same path as a
    /// notification); otherwise the payer confirms at the answer's URL.
    pub(crate) async fn pay_charge(
        &self,
        id: &str,
        saved_method: Option<&str>,
        save_method: bool,
    ) -> Result<Charged, ApiError> {
        let stored = self
            .stored(id)
            .await?
            .ok_or_else(|| ApiError::not_found("charge"))?;
        let d = &stored.d;
        let (return_url,): (Option<String>,) =
            sqlx::query_as("SELECT return_url FROM donations WHERE id = $1")
                .bind(id)
                .fetch_one(self.db.pool())
                .await
                .map_err(db_err)?;
        let return_url = return_url.unwrap_or_else(|| self.return_url(None, &d.channel));
        let description = format!("Subscription to {}", d.channel);
        let created = self
            .provider
            .create_payment(&NewPayment {
                donation_id: id,
                amount: d.amount,
                currency: &d.currency,
                method: &d.payment_method,
                description: &description,
                return_url: &return_url,
                idempotence_key: &format!("pay-{id}"),
                save_payment_method: save_method,
                payment_method_id: saved_method,
            })
            .await;
        let payment = match created {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(charge = %id, error = %e, "subscription payment not created");
                self.fail(id, &e.to_string()).await?;
                self.kick.notify_one();
                self.count("payment_failed");
                return Ok(Charged {
                    outcome: Outcome::Failed,
                    confirmation_url: None,
                    reason: Some(e.to_string()),
                });
            }
        };
        sqlx::query(
            "UPDATE donations SET provider_payment_id = $1, confirmation_url = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(&payment.id)
        .bind(&payment.confirmation_url)
        .bind(now_ms())
        .bind(id)
        .execute(self.db.pool())
        .await
        .map_err(db_err)?;
        self.count("started");
        let outcome = if payment.status == "pending" {
            Outcome::Unchanged
        } else {
            self.sync_payment(&payment.id).await?
        };
        Ok(Charged {
            outcome,
            confirmation_url: payment.confirmation_url,
            reason: payment.cancellation_reason,
        })
    }

    /// Wakes the event dispatcher (after another area's commit that recorded events).
    pub(crate) fn kick(&self) {
        self.kick.notify_one();
    }

    fn count(&self, result: &str) {
        self.metrics.donations.with_label_values(&[result]).inc();
    }

    /// Acts on what the provider says about payment `provider_id` now (after a notification,
    /// a sandbox checkout, or a sweep). The notification's own content is never used.
    pub(crate) async fn sync_payment(&self, provider_id: &str) -> Result<Outcome, ApiError> {
        let payment = match self.provider.payment(provider_id).await {
            Ok(p) => p,
            Err(ProviderError::NotFound) => return Ok(Outcome::Unknown),
            Err(e) => return Err(refuse(StreamingErrorCode::PaymentFailed, e.to_string())),
        };
        let by_provider = sqlx::query("SELECT id FROM donations WHERE provider_payment_id = $1")
            .bind(&payment.id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(db_err)?;
        let donation_id = match (by_provider, &payment.donation_id) {
            (Some(r), _) => r.try_get::<String, _>(0).map_err(db_err)?,
            (None, Some(d)) => d.clone(),
            (None, None) => return Ok(Outcome::Unknown),
        };
        let Some(stored) = self.stored(&donation_id).await? else {
            return Ok(Outcome::Unknown);
        };
        if stored
            .provider_payment_id
            .as_deref()
            .is_some_and(|p| p != payment.id)
        {
            tracing::warn!(donation = %donation_id, "a payment names a donation that has another payment");
            return Ok(Outcome::Unknown);
        }
        match payment.status.as_str() {
            "succeeded" => self.credit(&stored, &payment).await,
            "canceled" => {
                let reason = payment.cancellation_reason.as_deref().unwrap_or("canceled");
                Ok(if self.fail(&donation_id, reason).await? {
                    Outcome::Failed
                } else {
                    Outcome::Unchanged
                })
            }
            _ => Ok(Outcome::Unchanged),
        }
    }

    /// Completes a paid donation: status, ledger posting, effects and event in one
    /// transaction, once.
    async fn credit(
        &self,
        stored: &Stored,
        payment: &ProviderPayment,
    ) -> Result<Outcome, ApiError> {
        let d = &stored.d;
        if payment.amount != d.amount || payment.currency != d.currency {
            tracing::error!(donation = %d.id, paid = payment.amount, asked = d.amount,
                "the provider's payment does not match the donation: not credited");
            self.count("mismatch");
            sqlx::query("UPDATE donations SET failure_reason = $1, updated_at = $2 WHERE id = $3")
                .bind(format!(
                    "amount mismatch: the provider reports {} {}",
                    payment.amount, payment.currency
                ))
                .bind(now_ms())
                .bind(&d.id)
                .execute(self.db.pool())
                .await
                .map_err(db_err)?;
            return Ok(Outcome::Mismatch);
        }
        let now = now_ms();
        let mut tx = self.db.begin_write().await?;
        // Only a pending (or timed-out) donation completes: the row lock makes parallel
        // notifications wait, and the second finds it completed.
        let changed = sqlx::query(
            "UPDATE donations SET status = 'completed', completed_at = $1, updated_at = $1, card_fingerprint = $2, \
             provider_payment_id = $3, failure_reason = NULL WHERE id = $4 AND status IN ('pending', 'failed')",
        )
        .bind(now)
        .bind(&payment.card_fingerprint)
        .bind(&payment.id)
        .bind(&d.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if changed.rows_affected() == 0 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(Outcome::Unchanged);
        }
        // What touches only this donation's rows first; the shared rows (platform
        // accounts, the event counter) last, so they are held only for the commit.
        let fraud = self.card_rules(&mut tx, stored, payment, now).await?;
        catalog::apply_effects(&mut tx, d, now).await?;
        if d.kind == DonationType::Subscription {
            crate::subscriptions::repo::charge_paid(
                &mut tx,
                &self.cfg.subscriptions,
                d,
                payment.payment_method_id.as_deref(),
                now,
            )
            .await?;
        }
        let posted = ledger::post(
            &mut tx,
            &format!("donation:{}:credit", d.id),
            "donation",
            &d.id,
            &d.currency,
            &[
                (Account::DonorFunds, -d.amount),
                (Account::Streamer(&d.streamer_id), d.streamer_share),
                (Account::PlatformFee, d.fee),
            ],
        )
        .await?;
        if !posted {
            tx.rollback().await.map_err(db_err)?;
            return Ok(Outcome::Unchanged);
        }
        events::record(
            &mut tx,
            "DonationProcessed",
            json!({"donation_id": d.id, "streamer_id": d.streamer_id, "amount": d.amount,
                "currency": d.currency, "status": "completed"}),
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.count("completed");
        if !fraud.is_empty() {
            let reason = format!("fraud: {}", fraud.join("; "));
            tracing::warn!(donation = %d.id, %reason, "refunding a suspicious donation");
            if let Err(e) = self.refund(&d.id, &reason).await {
                tracing::error!(donation = %d.id, error = %e.message, "fraud refund failed; retried by the sweeper");
            }
        }
        self.kick.notify_one();
        Ok(Outcome::Credited)
    }

    /// detectFraudulentDonation on the paid card: blocked cards, card velocity, card testing.
    /// Records the reasons on the donation; a non-empty answer means it is refunded.
    async fn card_rules(
        &self,
        tx: &mut Tx,
        stored: &Stored,
        payment: &ProviderPayment,
        now: i64,
    ) -> Result<Vec<String>, ApiError> {
        let Some(card) = &payment.card_fingerprint else {
            return Ok(Vec::new());
        };
        let mut reasons = Vec::new();
        let blocked = sqlx::query(
            "SELECT 1 FROM blocked_donors WHERE donor_key = $1 AND channel_id IN ($2, '*')",
        )
        .bind(format!("card:{card}"))
        .bind(&stored.d.streamer_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?;
        if blocked.is_some() {
            reasons.push("the card is blocked".to_owned());
        }
        let (card_hour,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM donations WHERE card_fingerprint = $1 AND completed_at > $2",
        )
        .bind(card)
        .bind(now - HOUR_MS)
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err)?;
        if card_hour > i64::from(self.cfg.fraud.per_card_per_hour) {
            reasons.push(format!(
                "more than {} payments per hour with one card",
                self.cfg.fraud.per_card_per_hour
            ));
        }
        let (cards,): (i64,) = sqlx::query_as(
            "SELECT COUNT(DISTINCT card_fingerprint) FROM donations WHERE donor_key = $1 AND completed_at > $2 \
             AND card_fingerprint IS NOT NULL",
        )
        .bind(&stored.donor_key)
        .bind(now - DAY_MS)
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err)?;
        if cards > i64::from(self.cfg.fraud.cards_per_donor_per_day) {
            reasons.push(format!(
                "more than {} cards per donor per day",
                self.cfg.fraud.cards_per_donor_per_day
            ));
        }
        if !reasons.is_empty() {
            sqlx::query("UPDATE donations SET fraud = $1 WHERE id = $2")
                .bind(json!(reasons).to_string())
                .bind(&stored.d.id)
                .execute(&mut **tx)
                .await
                .map_err(db_err)?;
        }
        Ok(reasons)
    }

    /// Marks a pending donation failed (and gives back its item key). True when it changed.
    pub(crate) async fn fail(&self, id: &str, reason: &str) -> Result<bool, ApiError> {
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE donations SET status = 'failed', failure_reason = $1, updated_at = $2 WHERE id = $3 AND status = 'pending'",
        )
        .bind(reason.chars().take(300).collect::<String>())
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if changed.rows_affected() == 0 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        sqlx::query("UPDATE item_keys SET donation_id = NULL WHERE donation_id = $1 AND revealed_at IS NULL")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let row = sqlx::query(
            "SELECT channel_id, amount, currency, kind, purpose FROM donations WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if row.try_get::<String, _>(3).map_err(db_err)? == DonationType::Subscription.as_str() {
            let purpose: Value =
                serde_json::from_str(&row.try_get::<String, _>(4).map_err(db_err)?)
                    .unwrap_or(Value::Null);
            crate::subscriptions::repo::charge_failed(
                &mut tx,
                &self.cfg.subscriptions,
                id,
                &purpose,
                reason,
            )
            .await?;
        }
        events::record(
            &mut tx,
            "DonationProcessed",
            json!({"donation_id": id, "streamer_id": row.try_get::<String, _>(0).map_err(db_err)?,
                "amount": row.try_get::<i64, _>(1).map_err(db_err)?,
                "currency": row.try_get::<String, _>(2).map_err(db_err)?, "status": "failed", "reason": reason}),
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.count("failed");
        Ok(true)
    }

    /// Refunds a completed donation in full through the provider (the streamer's queue, the
    /// fraud rules, an admin). The reversal is posted when the provider confirms the refund.
    pub(crate) async fn refund(&self, id: &str, reason: &str) -> Result<Outcome, ApiError> {
        let stored = self
            .stored(id)
            .await?
            .ok_or_else(|| ApiError::not_found("donation"))?;
        match stored.d.status {
            DonationStatus::Completed => {}
            DonationStatus::Refunded => return Ok(Outcome::Unchanged),
            _ => {
                return Err(refuse(
                    StreamingErrorCode::Conflict,
                    "only a completed donation can be refunded",
                ));
            }
        }
        let payment = stored
            .provider_payment_id
            .as_deref()
            .ok_or_else(|| refuse(StreamingErrorCode::Conflict, "the donation has no payment"))?;
        let key = format!("refund-{id}");
        sqlx::query(
            "INSERT INTO refunds (id, donation_id, amount, status, reason, idempotence_key, created_at) \
             VALUES ($1, $2, $3, 'pending', $4, $5, $6) ON CONFLICT (idempotence_key) DO NOTHING",
        )
        .bind(new_id())
        .bind(id)
        .bind(stored.d.amount)
        .bind(reason.chars().take(300).collect::<String>())
        .bind(&key)
        .bind(now_ms())
        .execute(self.db.pool())
        .await
        .map_err(db_err)?;
        let refund = self
            .provider
            .create_refund(payment, stored.d.amount, &stored.d.currency, &key)
            .await
            .map_err(|e| refuse(StreamingErrorCode::PaymentFailed, e.to_string()))?;
        if refund.status == "succeeded" {
            return self.apply_refund(&refund).await;
        }
        sqlx::query("UPDATE refunds SET provider_refund_id = $1 WHERE idempotence_key = $2")
            .bind(&refund.id)
            .bind(&key)
            .execute(self.db.pool())
            .await
            .map_err(db_err)?;
        Ok(Outcome::Unchanged)
    }

    /// Acts on what the provider says about refund `provider_id` now.
    pub(crate) async fn sync_refund(&self, provider_id: &str) -> Result<Outcome, ApiError> {
        match self.provider.refund(provider_id).await {
            Ok(r) if r.status == "succeeded" => self.apply_refund(&r).await,
            Ok(_) => Ok(Outcome::Unchanged),
            Err(ProviderError::NotFound) => Ok(Outcome::Unknown),
            Err(e) => Err(refuse(StreamingErrorCode::PaymentFailed, e.to_string())),
        }
    }

    /// Posts a succeeded refund's reversal once (crediting the payment first if its own
    /// notification has not come yet).
    async fn apply_refund(&self, refund: &ProviderRefund) -> Result<Outcome, ApiError> {
        if Box::pin(self.sync_payment(&refund.payment_id)).await? == Outcome::Unknown {
            return Ok(Outcome::Unknown);
        }
        let row = sqlx::query("SELECT id FROM donations WHERE provider_payment_id = $1")
            .bind(&refund.payment_id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(db_err)?;
        let Some(row) = row else {
            return Ok(Outcome::Unknown);
        };
        let id: String = row.try_get(0).map_err(db_err)?;
        let Some(stored) = self.stored(&id).await? else {
            return Ok(Outcome::Unknown);
        };
        let d = &stored.d;
        if refund.amount != d.amount || refund.currency != d.currency {
            tracing::error!(donation = %d.id, "a partial or foreign refund: not posted automatically");
            return Ok(Outcome::Mismatch);
        }
        let now = now_ms();
        let mut tx = self.db.begin_write().await?;
        let reason: Option<(String,)> = sqlx::query_as(
            "SELECT reason FROM refunds WHERE donation_id = $1 ORDER BY created_at LIMIT 1",
        )
        .bind(&d.id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let reason = reason.map_or_else(|| "refunded at the provider".to_owned(), |r| r.0);
        let changed = sqlx::query(
            "UPDATE donations SET status = 'refunded', refund_reason = $1, updated_at = $2 WHERE id = $3 AND status = 'completed'",
        )
        .bind(&reason)
        .bind(now)
        .bind(&d.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if changed.rows_affected() == 0 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(Outcome::Unchanged);
        }
        let posted = ledger::post(
            &mut tx,
            &format!("refund:{}", refund.id),
            "refund",
            &d.id,
            &d.currency,
            &[
                (Account::Streamer(&d.streamer_id), -d.streamer_share),
                (Account::PlatformFee, -d.fee),
                (Account::Refunds, d.amount),
            ],
        )
        .await?;
        if !posted {
            tx.rollback().await.map_err(db_err)?;
            return Ok(Outcome::Unchanged);
        }
        sqlx::query(
            "UPDATE refunds SET status = 'succeeded', provider_refund_id = $1, completed_at = $2 WHERE donation_id = $3",
        )
        .bind(&refund.id)
        .bind(now)
        .bind(&d.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        catalog::reverse_effects(&mut tx, d).await?;
        crate::subscriptions::repo::charge_reversed(&mut tx, d, now).await?;
        events::record(
            &mut tx,
            "DonationRefunded",
            json!({"donation_id": d.id, "streamer_id": d.streamer_id, "amount": d.amount,
                "currency": d.currency, "reason": reason}),
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.count("refunded");
        self.kick.notify_one();
        Ok(Outcome::Refunded)
    }

    /// handleChargeback: the bank took a completed donation back. Reverses its entries once
    /// per donation (the streamer's balance may go negative), records `ChargebackReceived`.
    pub(crate) async fn chargeback(
        &self,
        id: &str,
        reference: &str,
        reason: &str,
    ) -> Result<Outcome, ApiError> {
        let stored = self
            .stored(id)
            .await?
            .ok_or_else(|| ApiError::not_found("donation"))?;
        let d = &stored.d;
        let now = now_ms();
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO chargebacks (id, donation_id, reference, amount, reason, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(new_id())
        .bind(&d.id)
        .bind(reference)
        .bind(d.amount)
        .bind(reason)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(Outcome::Unchanged);
        }
        let changed = sqlx::query(
            "UPDATE donations SET status = 'refunded', refund_reason = $1, updated_at = $2 WHERE id = $3 AND status = 'completed'",
        )
        .bind(format!("chargeback: {reason}"))
        .bind(now)
        .bind(&d.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if changed.rows_affected() == 0 {
            tx.rollback().await.map_err(db_err)?;
            return Err(refuse(
                StreamingErrorCode::Conflict,
                "only a completed donation can be charged back",
            ));
        }
        ledger::post(
            &mut tx,
            &format!("chargeback:{}", d.id),
            "chargeback",
            &d.id,
            &d.currency,
            &[
                (Account::Streamer(&d.streamer_id), -d.streamer_share),
                (Account::PlatformFee, -d.fee),
                (Account::Chargebacks, d.amount),
            ],
        )
        .await?;
        catalog::reverse_effects(&mut tx, d).await?;
        crate::subscriptions::repo::charge_reversed(&mut tx, d, now).await?;
        let balance = ledger::balance_for_update(
            &mut tx,
            self.db.is_sqlite(),
            &Account::Streamer(&d.streamer_id),
            &d.currency,
        )
        .await?;
        events::record(
            &mut tx,
            "ChargebackReceived",
            json!({"donation_id": d.id, "streamer_id": d.streamer_id, "amount": d.amount,
                "currency": d.currency, "reason": reason, "balance_after": balance}),
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.count("charged_back");
        self.kick.notify_one();
        Ok(Outcome::Refunded)
    }

    /// The seed's `getStreamerBalance`.
    pub(crate) async fn balance(
        &self,
        streamer_id: &str,
        currency: &str,
    ) -> Result<StreamerBalance, ApiError> {
        let balance = ledger::balance(&self.db, &Account::Streamer(streamer_id), currency).await?;
        let (pending,): (Option<i64>,) = sqlx::query_as(
            "SELECT CAST(SUM(amount) AS BIGINT) FROM payouts WHERE streamer_id = $1 AND currency = $2 AND status = 'pending'",
        )
        .bind(streamer_id)
        .bind(currency)
        .fetch_one(self.db.pool())
        .await
        .map_err(db_err)?;
        Ok(StreamerBalance {
            currency: currency.to_owned(),
            balance,
            pending_payouts: pending.unwrap_or(0),
            available: balance.max(0),
        })
    }

    /// The seed's `requestStreamerPayout`: takes `amount` off the balance (never below
    /// zero: a negative balance is netted first), asks the provider to pay it out, and posts
    /// the completion or the reversal.
    pub(crate) async fn payout(
        &self,
        streamer: &User,
        amount: i64,
        currency: &str,
        method: &str,
        destination: &str,
    ) -> Result<Payout, ApiError> {
        let limits = self.cfg.currencies.get(currency).ok_or_else(|| {
            refuse(
                StreamingErrorCode::ValidationFailed,
                format!("payouts in {currency:?} are not possible"),
            )
        })?;
        if amount < limits.min {
            return Err(refuse(
                StreamingErrorCode::WithdrawalFailed,
                "the amount is below the minimum",
            ));
        }
        let id = new_id();
        let key = format!("payout-{id}");
        let now = now_ms();
        let mut tx = self.db.begin_write().await?;
        let balance = ledger::balance_for_update(
            &mut tx,
            self.db.is_sqlite(),
            &Account::Streamer(&streamer.id),
            currency,
        )
        .await?;
        if balance < amount {
            return Err(refuse(
                StreamingErrorCode::WithdrawalFailed,
                format!("the balance is {balance}; at most that can be paid out"),
            ));
        }
        let masked: String = destination
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        sqlx::query(
            "INSERT INTO payouts (id, streamer_id, amount, currency, method, destination, status, idempotence_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8)",
        )
        .bind(&id)
        .bind(&streamer.id)
        .bind(amount)
        .bind(currency)
        .bind(method)
        .bind(format!("…{masked}"))
        .bind(&key)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        ledger::post(
            &mut tx,
            &format!("payout:{id}:request"),
            "payout",
            &id,
            currency,
            &[
                (Account::Streamer(&streamer.id), -amount),
                (Account::PayoutsPending, amount),
            ],
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        let result = self
            .provider
            .create_payout(amount, currency, method, destination, &key)
            .await;
        match result {
            Ok(p) if p.status == "succeeded" => {
                self.settle_payout(&id, true, None, Some(&p.id)).await?
            }
            Ok(p) if p.status == "canceled" => {
                self.settle_payout(&id, false, p.cancellation_reason.as_deref(), Some(&p.id))
                    .await?
            }
            Ok(p) => {
                sqlx::query("UPDATE payouts SET provider_payout_id = $1 WHERE id = $2")
                    .bind(&p.id)
                    .bind(&id)
                    .execute(self.db.pool())
                    .await
                    .map_err(db_err)?;
            }
            Err(e) => {
                self.settle_payout(&id, false, Some(&e.to_string()), None)
                    .await?
            }
        }
        self.kick.notify_one();
        self.payout_by_id(&id)
            .await?
            .ok_or_else(|| ApiError::not_found("payout"))
    }

    /// Completes or reverses a pending payout, once.
    pub(crate) async fn settle_payout(
        &self,
        id: &str,
        succeeded: bool,
        reason: Option<&str>,
        provider_id: Option<&str>,
    ) -> Result<(), ApiError> {
        let now = now_ms();
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE payouts SET status = $1, failure_reason = $2, completed_at = $3, \
             provider_payout_id = COALESCE($4, provider_payout_id) WHERE id = $5 AND status = 'pending'",
        )
        .bind(if succeeded { "completed" } else { "failed" })
        .bind(reason.map(|r| r.chars().take(300).collect::<String>()))
        .bind(now)
        .bind(provider_id)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if changed.rows_affected() == 0 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(());
        }
        let row = sqlx::query("SELECT streamer_id, amount, currency FROM payouts WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        let streamer: String = row.try_get(0).map_err(db_err)?;
        let amount: i64 = row.try_get(1).map_err(db_err)?;
        let currency: String = row.try_get(2).map_err(db_err)?;
        if succeeded {
            ledger::post(
                &mut tx,
                &format!("payout:{id}:complete"),
                "payout",
                id,
                &currency,
                &[
                    (Account::PayoutsPending, -amount),
                    (Account::Payouts, amount),
                ],
            )
            .await?;
            events::record(
                &mut tx,
                "PayoutCompleted",
                json!({"payout_id": id, "streamer_id": streamer,
                "amount": amount, "currency": currency}),
            )
            .await?;
        } else {
            ledger::post(
                &mut tx,
                &format!("payout:{id}:reverse"),
                "payout",
                id,
                &currency,
                &[
                    (Account::PayoutsPending, -amount),
                    (Account::Streamer(&streamer), amount),
                ],
            )
            .await?;
            events::record(
                &mut tx,
                "PayoutFailed",
                json!({"payout_id": id, "streamer_id": streamer,
                "amount": amount, "currency": currency, "reason": reason}),
            )
            .await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    pub(crate) async fn payout_by_id(&self, id: &str) -> Result<Option<Payout>, ApiError> {
        let row = sqlx::query(
            "SELECT id, amount, currency, method, destination, status, failure_reason, created_at, completed_at \
             FROM payouts WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_err)?;
        row.map(|r| payout_row(&r)).transpose()
    }

    /// Hands undispatched events to their consumers and the bus (see [`events`]).
    pub(crate) async fn dispatch(&self) {
        let _one = self.dispatching.lock().await;
        for _ in 0..10 {
            let batch = match events::pending(&self.db, 100).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e.message, "payment events not read");
                    return;
                }
            };
            if batch.is_empty() {
                return;
            }
            for event in batch {
                if let Err(e) = self.consume(&event).await {
                    // Left undispatched: the sweeper tries again.
                    tracing::warn!(event = %event.kind, error = %e.message, "payment event not handled yet");
                    return;
                }
                events::publish(&self.bus, &event).await;
                if let Err(e) = events::mark_dispatched(&self.db, &event.id).await {
                    tracing::warn!(error = %e.message, "payment event not marked");
                    return;
                }
            }
        }
    }

    /// The in-process consumers, each idempotent by the event's id.
    async fn consume(&self, e: &events::Event) -> Result<(), ApiError> {
        let p = &e.payload;
        let streamer = p
            .get("streamer_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match e.kind.as_str() {
            "DonationProcessed" if p.get("status").and_then(Value::as_str) == Some("completed") => {
                let id = p
                    .get("donation_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let Some(stored) = self.stored(id).await? else {
                    return Ok(());
                };
                let d = &stored.d;
                if d.kind == DonationType::Subscription {
                    // Its Subscription* event carries the alert and the notices.
                    return Ok(());
                }
                let settings = catalog::settings(&self.db, &d.streamer_id).await?;
                let alert = catalog::alert_for(&settings.alerts, d.amount);
                let public = catalog::public_donation(d);
                events::overlay_append(
                    &self.db,
                    &self.bus,
                    &d.channel,
                    &format!("{}:alert", e.id),
                    json!({"kind": "donation", "donation": public, "alert": alert}),
                )
                .await?;
                for goal in catalog::goals_touched(&self.db, d).await? {
                    events::overlay_append(
                        &self.db,
                        &self.bus,
                        &d.channel,
                        &format!("{}:goal:{}", e.id, goal.id),
                        json!({"kind": "goal", "goal": goal}),
                    )
                    .await?;
                }
                if let Some(c) = catalog::competition_touched(&self.db, d).await? {
                    events::overlay_append(
                        &self.db,
                        &self.bus,
                        &d.channel,
                        &format!("{}:competition", e.id),
                        json!({"kind": "competition", "competition": c}),
                    )
                    .await?;
                }
                // publishDonationToChat: a highlighted message in the room.
                let donor = match (&stored.donor_user, d.is_anonymous) {
                    (Some(uid), false) => self.db.user(uid).await?,
                    _ => None,
                };
                let as_user = donor.unwrap_or_else(|| User {
                    id: String::new(),
                    username: d.donor_name.clone(),
                    role: crate::model::UserRole::Viewer,
                    created_at: 0,
                });
                let text = d.message.clone().unwrap_or_else(|| catalog::describe(d));
                self.chat
                    .post_donation(
                        &d.channel,
                        &format!("don-{}", d.id),
                        &as_user,
                        &text,
                        d.amount,
                    )
                    .await?;
                if let Some(b) = d.purpose.get("boost")
                    && let (Some(m), Some(min)) = (
                        b.get("message_id").and_then(Value::as_str),
                        b.get("minutes").and_then(Value::as_i64),
                    )
                    && self.chat.is_visible(&d.channel, m).await?
                {
                    self.chat
                        .boost(&d.channel, m, now_ms() + min * 60_000)
                        .await?;
                }
                self.notifications
                    .notify_once(
                        &d.streamer_id,
                        "donation",
                        json!({"donation": public}),
                        &format!("{}:streamer", e.id),
                    )
                    .await?;
                if let Some(item) = d.purpose.get("item")
                    && let Some(r) = item.get("recipient_id").and_then(Value::as_str)
                {
                    self.notifications
                        .notify_once(
                            r,
                            "item_key",
                            json!({"donation_id": d.id,
                        "item": item.get("name"), "channel": d.channel}),
                            &format!("{}:recipient", e.id),
                        )
                        .await?;
                }
            }
            "DonationRefunded" | "ChargebackReceived" => {
                self.notifications
                    .notify_once(
                        streamer,
                        if e.kind == "DonationRefunded" {
                            "donation_refunded"
                        } else {
                            "chargeback"
                        },
                        p.clone(),
                        &format!("{}:streamer", e.id),
                    )
                    .await?;
                let id = p
                    .get("donation_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if let Some(d) = self.donation(id).await? {
                    for goal in catalog::goals_touched(&self.db, &d).await? {
                        events::overlay_append(
                            &self.db,
                            &self.bus,
                            &d.channel,
                            &format!("{}:goal:{}", e.id, goal.id),
                            json!({"kind": "goal", "goal": goal}),
                        )
                        .await?;
                    }
                }
            }
            kind if kind.starts_with("Subscription") => {
                crate::subscriptions::consume(self, e).await?;
            }
            "PayoutCompleted" | "PayoutFailed" => {
                self.notifications
                    .notify_once(
                        streamer,
                        if e.kind == "PayoutCompleted" {
                            "payout_completed"
                        } else {
                            "payout_failed"
                        },
                        p.clone(),
                        &format!("{}:streamer", e.id),
                    )
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Periodic work: dispatch leftovers, settle payments nobody confirmed, retry refunds,
    /// unpin expired boosts.
    pub(crate) async fn sweep(&self) -> Result<(), ApiError> {
        self.dispatch().await;
        let cutoff = now_ms() - self.cfg.payment_timeout.get().as_millis() as i64;
        let stale: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT id, provider_payment_id FROM donations WHERE status = 'pending' AND created_at < $1 LIMIT 100",
        )
        .bind(cutoff)
        .fetch_all(self.db.pool())
        .await
        .map_err(db_err)?;
        for (id, payment) in stale {
            let outcome = match &payment {
                Some(p) => self.sync_payment(p).await.unwrap_or(Outcome::Unchanged),
                None => Outcome::Unchanged,
            };
            if outcome == Outcome::Unchanged || outcome == Outcome::Unknown {
                self.fail(&id, "not paid in time").await?;
            }
        }
        // Fraud refunds that could not reach the provider.
        let owed: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM donations WHERE status = 'completed' AND fraud IS NOT NULL LIMIT 100",
        )
        .fetch_all(self.db.pool())
        .await
        .map_err(db_err)?;
        for (id,) in owed {
            let _ = self.refund(&id, "fraud").await;
        }
        self.chat.expire_boosts().await?;
        self.dispatch().await;
        Ok(())
    }

    /// Dispatches events as their changes commit, and runs [`Self::sweep`] every few
    /// seconds, until shutdown.
    pub(crate) async fn run(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.kick.notified() => self.dispatch().await,
                _ = every.tick() => {
                    if let Err(e) = self.sweep().await {
                        tracing::warn!(error = %e.message, "payments sweep failed");
                    }
                }
            }
        }
    }
}

/// A payout (the seed's `PayoutRequest`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Payout {
    /// Id.
    pub id: String,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// `bank_card`, `sbp` or `yoo_money`.
    pub method: String,
    /// The destination's last characters.
    pub destination: String,
    /// `pending`, `completed` or `failed`.
    pub status: String,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// When it completed.
    pub completed_at: Option<i64>,
}

fn payout_row(r: &sqlx::any::AnyRow) -> Result<Payout, ApiError> {
    Ok(Payout {
        id: r.try_get(0).map_err(db_err)?,
        amount: r.try_get(1).map_err(db_err)?,
        currency: r.try_get(2).map_err(db_err)?,
        method: r.try_get(3).map_err(db_err)?,
        destination: r.try_get(4).map_err(db_err)?,
        status: r.try_get(5).map_err(db_err)?,
        failure_reason: r.try_get(6).map_err(db_err)?,
        created_at: r.try_get(7).map_err(db_err)?,
        completed_at: r.try_get(8).map_err(db_err)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_whole_kopecks_and_add_up() {
        assert_eq!(split(10_000, 85), (8_500, 1_500));
        assert_eq!(split(101, 85), (86, 15));
        assert_eq!(split(1, 80), (1, 0));
        assert_eq!(split(999, 100), (999, 0));
        assert_eq!(split(999, 0), (0, 999));
        for a in [1, 7, 99, 100, 12_345, 10_000_000] {
            for p in [0, 70, 80, 85, 90, 100] {
                let (s, f) = split(a, p);
                assert_eq!(s + f, a);
                assert!(s >= 0 && f >= 0);
            }
        }
    }
}
