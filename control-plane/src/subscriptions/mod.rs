//! The subscriptions area (the seed's `SubscriptionMembershipService`): per-channel tiers,
//! paid monthly subscriptions renewed with a saved payment method, upgrades with proration,
//! gifts and gift series, pauses, cancellations at the period's end, expiring notices and
//! renewal discounts.
//!
//! Money moves only through the payments area: every charge (first payment, renewal,
//! upgrade, gift) is a donation of kind `subscription` ([`crate::payments::Payments::insert_charge`]),
//! credited, failed, refunded or charged back exactly once by the same code as any donation,
//! with the ledger's subscription share (`payments.shares.subscriptions`, 70 %). The payments
//! area calls this area's hooks ([`repo::charge_paid`], [`repo::charge_failed`],
//! [`repo::charge_reversed`]) in those transactions, so a subscription's period and its
//! ledger posting change together. What is due when ([`core`]) takes `now` as an argument:
//! the renewal task passes the clock, the admins' `run_subscription_renewals` call a time
//! of their choosing. Owns the tables of migration 0012.

// utoipa's generated code names parameter types with their full paths.
#![allow(unused_qualifications)]

pub(crate) mod core;
pub(crate) mod repo;
pub(crate) mod routes;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;
use utoipa::ToSchema;

use self::core::{Due, State, Status, Timing};
use self::repo::{SUB_COLUMNS, SubRow, TIER_COLUMNS, db_err, history, sub_row, tier_row};
use crate::db::Db;
use crate::error::{ApiError, StreamingErrorCode};
use crate::model::{User, now_ms};
use crate::payments::{Charge, Outcome, PaymentMethod, Payments, events};
use crate::secrets::new_id;

fn refuse(code: StreamingErrorCode, why: impl Into<String>) -> ApiError {
    ApiError::new(code, why)
}

/// The smallest charge a provider takes (YooKassa: 1 ₽); a smaller upgrade is free.
pub(crate) const MIN_CHARGE: i64 = 100;

/// What a tier gives (the seed's `TierPrivileges`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TierPrivileges {
    /// Writes in subscriber-only chat.
    pub subscriber_chat: bool,
    /// Watches without ads.
    pub ad_free: bool,
    /// Watches the channel's private streams.
    pub private_streams: bool,
    /// Sees recordings before everyone else.
    pub early_access: bool,
}

/// The badge a tier's subscribers wear (the seed's `BadgeDesign`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BadgeDesign {
    /// The badge's text (1-16 characters).
    #[schema(
        min_length = 1,
        max_length = 16,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub label: String,
    /// Its colour, `#RRGGBB`.
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$")]
    pub color: String,
}

impl Default for BadgeDesign {
    fn default() -> Self {
        BadgeDesign {
            label: "Sub".into(),
            color: "#3FA34D".into(),
        }
    }
}

/// A subscription tier of a channel (the seed's `SubscriptionTier`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Tier {
    /// Id.
    pub id: String,
    /// The channel.
    pub channel: String,
    /// `supporter`, `vip`, `champion` (the seed's defaults) or `custom-…`.
    pub code: String,
    /// Its name.
    pub name: String,
    /// Monthly price in minor units (kopecks).
    pub price: i64,
    /// ISO 4217.
    pub currency: String,
    /// What it gives.
    pub privileges: TierPrivileges,
    /// The badge.
    pub badge: BadgeDesign,
    /// Emote codes only its subscribers use.
    pub exclusive_emotes: Vec<String>,
    /// Whether it can be bought.
    pub active: bool,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A tier, as a subscription names it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TierRef {
    /// Id.
    pub id: String,
    /// Code.
    pub code: String,
    /// Name.
    pub name: String,
    /// Monthly price in minor units (kopecks).
    pub price: i64,
    /// ISO 4217.
    pub currency: String,
}

/// A subscription's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Its first payment is not made.
    Incomplete,
    /// Paid for the current period.
    Active,
    /// A renewal failed: still active through the grace period, retried.
    PastDue,
    /// Paused: no privileges, no renewal; the period's end moves by the pause.
    Paused,
    /// Cancelled and its period is over.
    Cancelled,
    /// Not renewed, or refunded.
    Expired,
}

impl From<Status> for SubscriptionStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Incomplete => SubscriptionStatus::Incomplete,
            Status::Active => SubscriptionStatus::Active,
            Status::PastDue => SubscriptionStatus::PastDue,
            Status::Paused => SubscriptionStatus::Paused,
            Status::Cancelled => SubscriptionStatus::Cancelled,
            Status::Expired => SubscriptionStatus::Expired,
        }
    }
}

/// A viewer's subscription to a channel.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Subscription {
    /// Id.
    pub id: String,
    /// The channel.
    pub channel: String,
    /// The subscriber.
    pub user_id: String,
    /// The subscriber's name.
    pub username: String,
    /// The tier.
    pub tier: TierRef,
    /// State.
    pub status: SubscriptionStatus,
    /// Renews with the saved payment method (false for gifts).
    pub auto_renew: bool,
    /// Ends at `period_end` instead of renewing.
    pub cancel_at_period_end: bool,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
    /// A payment method is saved for renewals.
    pub has_saved_payment_method: bool,
    /// Who gave it, for a gift.
    pub gifted_by: Option<String>,
    /// First paid (Unix milliseconds).
    pub started_at: Option<i64>,
    /// The current period.
    pub period_start: Option<i64>,
    /// The current period's end: the next renewal.
    pub period_end: Option<i64>,
    /// Privileges last until then (0: none now).
    pub access_until: i64,
    /// Months paid or gifted in all.
    pub months: i64,
    /// The badge's step for `months` (1, 3, 6, 12, 24).
    pub badge_months: i64,
    /// When it was paused.
    pub paused_at: Option<i64>,
    /// When the pause ends by itself.
    pub pause_until: Option<i64>,
    /// The next attempt after a failed renewal.
    pub retry_at: Option<i64>,
    /// Failed renewals in a row.
    pub failed_attempts: i64,
    /// The charge waiting at the provider.
    pub pending_charge: Option<String>,
    /// Percent off the next renewal (offered by the streamer).
    pub renewal_discount_percent: Option<i64>,
    /// What the next renewal charges, in minor units.
    pub next_renewal_amount: i64,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A subscriber's badge on a chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChatBadge {
    /// The tier's code.
    pub tier: String,
    /// The tier's name.
    pub tier_name: String,
    /// The badge's text.
    pub label: String,
    /// Its colour.
    pub color: String,
    /// The months step (1, 3, 6, 12, 24).
    pub months: i64,
}

/// A line of a subscription's history.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    /// The subscription.
    pub subscription_id: String,
    /// The channel.
    pub channel: String,
    /// `started`, `renewed`, `renewal_failed`, `upgraded`, `gifted`, `cancel_requested`,
    /// `paused`, `resumed`, `cancelled`, `expired`, `reversed`, `discount_offered`.
    pub kind: String,
    /// The tier then.
    pub tier_id: String,
    /// Money charged, in minor units (negative: reversed).
    pub amount: i64,
    /// The charge (a donation of type `subscription`).
    pub charge_id: Option<String>,
    /// Details.
    pub detail: Value,
    /// Unix milliseconds.
    pub at: i64,
}

/// What [`Subscriptions::run_due`] did.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct RenewalRun {
    /// The time it ran as (Unix milliseconds).
    pub at: i64,
    /// Renewals charged and credited.
    pub renewed: i64,
    /// Renewal charges that failed (retried later, within the grace period).
    pub failed: i64,
    /// Renewal charges still waiting at the provider.
    pub pending: i64,
    /// Pauses that ended.
    pub resumed: i64,
    /// Cancelled subscriptions whose period ended.
    pub cancelled: i64,
    /// Subscriptions that ended unrenewed.
    pub expired: i64,
    /// Expiring notices sent.
    pub notified: i64,
}

/// The subscriptions area.
pub(crate) struct Subscriptions {
    pub(crate) db: Db,
    pub(crate) payments: Arc<Payments>,
    pub(crate) timing: Timing,
    check_interval: Duration,
}

impl Subscriptions {
    pub(crate) fn new(db: Db, payments: Arc<Payments>) -> Self {
        let cfg = &payments.cfg.subscriptions;
        Subscriptions {
            timing: Timing::of(cfg),
            check_interval: cfg.check_interval.get(),
            db,
            payments,
        }
    }

    /// A channel's tiers, cheapest first; the seed's three are added the first time (for
    /// streamers' channels).
    pub(crate) async fn tiers(&self, channel: &User) -> Result<Vec<Tier>, ApiError> {
        self.ensure_defaults(channel).await?;
        let rows = sqlx::query(crate::db::sql(format!(
            "{TIER_COLUMNS} WHERE t.channel_id = $1 ORDER BY t.price, t.created_at"
        )))
        .bind(&channel.id)
        .fetch_all(self.db.pool())
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| tier_row(r, &channel.username))
            .collect()
    }

    async fn ensure_defaults(&self, channel: &User) -> Result<(), ApiError> {
        // A viewer's account has no channel to subscribe to: no tiers unless it makes some.
        if channel.role == crate::model::UserRole::Viewer {
            return Ok(());
        }
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM subscription_tiers WHERE channel_id = $1")
                .bind(&channel.id)
                .fetch_one(self.db.pool())
                .await
                .map_err(db_err)?;
        if n > 0 {
            return Ok(());
        }
        let now = now_ms();
        for (code, name, price, color) in repo::DEFAULT_TIERS {
            let privileges = TierPrivileges {
                subscriber_chat: true,
                ad_free: code != "supporter",
                private_streams: code != "supporter",
                early_access: code == "champion",
            };
            let badge = BadgeDesign {
                label: name.into(),
                color: color.into(),
            };
            sqlx::query(
                "INSERT INTO subscription_tiers (id, channel_id, code, name, price, currency, privileges, badge, emotes, \
                 active, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'RUB', $6, $7, '[]', 1, $8, $8) \
                 ON CONFLICT (channel_id, code) DO NOTHING",
            )
            .bind(new_id())
            .bind(&channel.id)
            .bind(code)
            .bind(name)
            .bind(price)
            .bind(json!(privileges).to_string())
            .bind(json!(badge).to_string())
            .bind(now)
            .execute(self.db.pool())
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }

    /// A tier by id, with its channel's name.
    pub(crate) async fn tier(&self, id: &str) -> Result<Option<(Tier, String)>, ApiError> {
        let row = sqlx::query(
            "SELECT t.id, t.channel_id, t.code, t.name, t.price, t.currency, t.privileges, t.badge, t.emotes, t.active, \
             t.created_at, u.username FROM subscription_tiers t JOIN users u ON u.id = t.channel_id WHERE t.id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_err)?;
        row.map(|r| {
            let name: String = r.try_get(11).map_err(db_err)?;
            let channel_id: String = r.try_get(1).map_err(db_err)?;
            Ok((tier_row(&r, &name)?, channel_id))
        })
        .transpose()
    }

    /// createSubscriptionTier.
    pub(crate) async fn create_tier(
        &self,
        channel: &User,
        t: &routes::TierInput,
    ) -> Result<Tier, ApiError> {
        self.ensure_defaults(channel).await?;
        let id = new_id();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO subscription_tiers (id, channel_id, code, name, price, currency, privileges, badge, emotes, \
             active, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'RUB', $6, $7, $8, 1, $9, $9)",
        )
        .bind(&id)
        .bind(&channel.id)
        .bind(format!("custom-{}", &id[..id.len().min(12)]))
        .bind(&t.name)
        .bind(t.price)
        .bind(json!(t.privileges).to_string())
        .bind(json!(t.badge).to_string())
        .bind(json!(t.exclusive_emotes).to_string())
        .bind(now)
        .execute(self.db.pool())
        .await
        .map_err(db_err)?;
        Ok(self
            .tier(&id)
            .await?
            .ok_or_else(|| ApiError::not_found("tier"))?
            .0)
    }

    /// updateTierPrivileges: name, price (from the next renewal on), privileges, badge,
    /// emotes, whether it is sold.
    pub(crate) async fn update_tier(
        &self,
        id: &str,
        p: &routes::TierPatch,
    ) -> Result<Tier, ApiError> {
        let (old, _) = self
            .tier(id)
            .await?
            .ok_or_else(|| ApiError::not_found("tier"))?;
        sqlx::query(
            "UPDATE subscription_tiers SET name = $1, price = $2, privileges = $3, badge = $4, emotes = $5, active = $6, \
             updated_at = $7 WHERE id = $8",
        )
        .bind(p.name.as_ref().unwrap_or(&old.name))
        .bind(p.price.unwrap_or(old.price))
        .bind(json!(p.privileges.as_ref().unwrap_or(&old.privileges)).to_string())
        .bind(json!(p.badge.as_ref().unwrap_or(&old.badge)).to_string())
        .bind(json!(p.exclusive_emotes.as_ref().unwrap_or(&old.exclusive_emotes)).to_string())
        .bind(i64::from(p.active.unwrap_or(old.active)))
        .bind(now_ms())
        .bind(id)
        .execute(self.db.pool())
        .await
        .map_err(db_err)?;
        Ok(self
            .tier(id)
            .await?
            .ok_or_else(|| ApiError::not_found("tier"))?
            .0)
    }

    /// A subscription by id.
    pub(crate) async fn get(&self, id: &str) -> Result<Option<SubRow>, ApiError> {
        let row = sqlx::query(crate::db::sql(format!("{SUB_COLUMNS} WHERE s.id = $1")))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(db_err)?;
        row.map(|r| sub_row(&r)).transpose()
    }

    async fn get_or_404(&self, id: &str) -> Result<SubRow, ApiError> {
        self.get(id)
            .await?
            .ok_or_else(|| ApiError::not_found("subscription"))
    }

    /// A subscription its subscriber (or an admin) acts on.
    pub(crate) async fn own(&self, id: &str, caller: &User) -> Result<SubRow, ApiError> {
        let s = self.get_or_404(id).await?;
        if s.sub.user_id != caller.id && caller.role != crate::model::UserRole::Admin {
            return Err(ApiError::not_found("subscription"));
        }
        Ok(s)
    }

    /// A channel's subscribers with privileges now, newest first.
    pub(crate) async fn subscribers(
        &self,
        channel: &User,
        limit: i64,
    ) -> Result<Vec<Subscription>, ApiError> {
        let rows = sqlx::query(crate::db::sql(format!(
            "{SUB_COLUMNS} WHERE s.channel_id = $1 AND s.status IN ('active', 'past_due', 'paused') \
             ORDER BY s.started_at DESC LIMIT $2"
        )))
        .bind(&channel.id)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
        .map_err(db_err)?;
        rows.iter().map(|r| Ok(sub_row(r)?.sub)).collect()
    }

    /// subscribeToStreamer: a pending subscription and its first charge, which saves the
    /// payment method for the renewals. The payer confirms at the answer's URL.
    pub(crate) async fn subscribe(
        &self,
        channel: &User,
        user: &User,
        tier_id: &str,
        method: PaymentMethod,
        return_url: Option<&str>,
    ) -> Result<(Subscription, Option<String>), ApiError> {
        if channel.id == user.id {
            return Err(refuse(
                StreamingErrorCode::Forbidden,
                "you cannot subscribe to your own channel",
            ));
        }
        self.ensure_defaults(channel).await?;
        let (tier, tier_channel) = self
            .tier(tier_id)
            .await?
            .filter(|(t, c)| t.active && *c == channel.id)
            .ok_or_else(|| ApiError::not_found("tier"))?;
        let existing = sqlx::query(
            "SELECT id, status, pending_charge FROM subscriptions WHERE channel_id = $1 AND user_id = $2",
        )
        .bind(&tier_channel)
        .bind(&user.id)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_err)?;
        let id = match existing {
            Some(r) => {
                let status = Status::parse(&r.try_get::<String, _>(1).map_err(db_err)?);
                if !status.ended() {
                    return Err(refuse(
                        StreamingErrorCode::Conflict,
                        "already subscribed to this channel (upgrade or resume it instead)",
                    ));
                }
                // An unpaid first charge is paid or times out first (the payments sweep
                // fails it after `payment_timeout`): a payment for it could still arrive.
                if r.try_get::<Option<String>, _>(2).map_err(db_err)?.is_some() {
                    return Err(refuse(
                        StreamingErrorCode::Conflict,
                        "a payment for this subscription is waiting: confirm it or let it expire",
                    ));
                }
                r.try_get::<String, _>(0).map_err(db_err)?
            }
            None => new_id(),
        };
        let now = now_ms();
        let mut tx = self.db.begin_write().await?;
        let charge = self
            .payments
            .insert_charge(
                &mut tx,
                &Charge {
                    streamer: channel,
                    payer: user,
                    amount: tier.price,
                    currency: &tier.currency,
                    purpose: json!({"subscription": {"charge": "initial", "subscription_id": id,
                        "tier_id": tier.id, "tier": tier.name, "at": now}}),
                    idempotence_key: &format!("sub-{id}-initial-{}", new_id()),
                    method,
                    return_url,
                },
            )
            .await?;
        let changed = sqlx::query(
            "INSERT INTO subscriptions (id, channel_id, channel, user_id, tier_id, status, auto_renew, cancel_at_period_end, \
             access_until, months, failed_attempts, pending_charge, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'incomplete', 1, 0, 0, 0, 0, $6, $7, $7) \
             ON CONFLICT (channel_id, user_id) DO UPDATE SET tier_id = $5, status = 'incomplete', auto_renew = 1, \
             cancel_at_period_end = 0, cancel_reason = NULL, gifted_by = NULL, access_until = 0, paused_at = NULL, \
             pause_until = NULL, retry_at = NULL, failed_attempts = 0, pending_charge = $6, discount_percent = NULL, \
             updated_at = $7 WHERE subscriptions.status IN ('incomplete', 'cancelled', 'expired') \
             AND subscriptions.pending_charge IS NULL",
        )
        .bind(&id)
        .bind(&channel.id)
        .bind(&channel.username)
        .bind(&user.id)
        .bind(&tier.id)
        .bind(&charge)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if changed.rows_affected() == 0 {
            tx.rollback().await.map_err(db_err)?;
            return Err(refuse(
                StreamingErrorCode::Conflict,
                "a subscription to this channel is being paid for already",
            ));
        }
        tx.commit().await.map_err(db_err)?;
        let paid = self.payments.pay_charge(&charge, None, true).await?;
        if paid.outcome == Outcome::Failed {
            return Err(refuse(
                StreamingErrorCode::PaymentFailed,
                paid.reason.unwrap_or_else(|| "the payment failed".into()),
            ));
        }
        Ok((self.get_or_404(&id).await?.sub, paid.confirmation_url))
    }

    /// cancelSubscription: it ends at the end of the paid period (no refund, no renewal).
    pub(crate) async fn cancel(
        &self,
        s: &SubRow,
        reason: Option<&str>,
    ) -> Result<Subscription, ApiError> {
        if !matches!(
            s.sub.status,
            SubscriptionStatus::Active | SubscriptionStatus::PastDue | SubscriptionStatus::Paused
        ) {
            return Err(refuse(
                StreamingErrorCode::Conflict,
                "this subscription is not running",
            ));
        }
        if s.sub.cancel_at_period_end {
            return Ok(s.sub.clone());
        }
        let now = now_ms();
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE subscriptions SET cancel_at_period_end = 1, cancel_reason = $1, updated_at = $2 \
             WHERE id = $3 AND cancel_at_period_end = 0",
        )
        .bind(reason)
        .bind(now)
        .bind(&s.sub.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if changed.rows_affected() == 1 {
            history(
                &mut tx,
                &format!("{}:cancel:{now}", s.sub.id),
                &s.sub.id,
                &s.sub.user_id,
                &s.sub.channel,
                "cancel_requested",
                &s.sub.tier.id,
                0,
                None,
                json!({"reason": reason, "ends_at": s.sub.period_end}),
                now,
            )
            .await?;
            events::record(
                &mut tx,
                "SubscriptionCancelled",
                json!({"streamer_id": s.channel_id, "channel": s.sub.channel, "subscription_id": s.sub.id,
                    "user_id": s.sub.user_id, "username": s.sub.username, "tier": s.sub.tier.name,
                    "reason": reason, "ends_at": s.sub.period_end}),
            )
            .await?;
        }
        tx.commit().await.map_err(db_err)?;
        self.payments.kick();
        Ok(self.get_or_404(&s.sub.id).await?.sub)
    }

    /// upgradeSubscription: the new tier now, for the price difference over what is left of
    /// the period ([`core::prorate`]), charged to the saved payment method. Returns the
    /// subscription, the prorated amount and the time it was computed at.
    pub(crate) async fn upgrade(
        &self,
        s: &SubRow,
        tier_id: &str,
        payer: &User,
    ) -> Result<(Subscription, i64, i64, Option<String>), ApiError> {
        if s.sub.status != SubscriptionStatus::Active || s.sub.pending_charge.is_some() {
            return Err(refuse(
                StreamingErrorCode::Conflict,
                "only an active subscription with no payment in progress can be upgraded",
            ));
        }
        let (tier, tier_channel) = self
            .tier(tier_id)
            .await?
            .filter(|(t, c)| t.active && *c == s.channel_id)
            .ok_or_else(|| ApiError::not_found("tier"))?;
        let _ = tier_channel;
        if tier.price <= s.sub.tier.price || tier.currency != s.sub.tier.currency {
            return Err(refuse(
                StreamingErrorCode::ValidationFailed,
                "an upgrade goes to a more expensive tier in the same currency",
            ));
        }
        let now = now_ms();
        let end = s.sub.period_end.unwrap_or(now);
        let amount = core::prorate(tier.price - s.sub.tier.price, end - now, self.timing.period);
        if amount < MIN_CHARGE {
            // Less than the provider's smallest charge: the rest of the period is on us.
            let mut tx = self.db.begin_write().await?;
            sqlx::query("UPDATE subscriptions SET tier_id = $1, updated_at = $2 WHERE id = $3")
                .bind(&tier.id)
                .bind(now)
                .bind(&s.sub.id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            history(
                &mut tx,
                &format!("{}:upgrade:{now}", s.sub.id),
                &s.sub.id,
                &s.sub.user_id,
                &s.sub.channel,
                "upgraded",
                &tier.id,
                0,
                None,
                json!({"from_tier": s.sub.tier.id}),
                now,
            )
            .await?;
            tx.commit().await.map_err(db_err)?;
            return Ok((self.get_or_404(&s.sub.id).await?.sub, 0, now, None));
        }
        let method = s.payment_method_id.as_deref().ok_or_else(|| {
            refuse(
                StreamingErrorCode::Conflict,
                "no saved payment method (a gifted subscription): subscribe when it ends",
            )
        })?;
        let channel = self
            .db
            .user(&s.channel_id)
            .await?
            .ok_or_else(|| ApiError::not_found("channel"))?;
        let mut tx = self.db.begin_write().await?;
        let charge = self
            .payments
            .insert_charge(
                &mut tx,
                &Charge {
                    streamer: &channel,
                    payer,
                    amount,
                    currency: &tier.currency,
                    purpose: json!({"subscription": {"charge": "upgrade", "subscription_id": s.sub.id,
                        "tier_id": s.sub.tier.id, "to_tier": tier.id, "tier": tier.name, "at": now,
                        "remaining_ms": end - now}}),
                    idempotence_key: &format!("sub-{}-upgrade-{}", s.sub.id, new_id()),
                    method: PaymentMethod::BankCard,
                    return_url: None,
                },
            )
            .await?;
        let changed = sqlx::query(
            "UPDATE subscriptions SET pending_charge = $1, updated_at = $2 WHERE id = $3 AND pending_charge IS NULL \
             AND status = 'active'",
        )
        .bind(&charge)
        .bind(now)
        .bind(&s.sub.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if changed.rows_affected() == 0 {
            tx.rollback().await.map_err(db_err)?;
            return Err(refuse(
                StreamingErrorCode::Conflict,
                "a payment for this subscription is in progress",
            ));
        }
        tx.commit().await.map_err(db_err)?;
        let paid = self
            .payments
            .pay_charge(&charge, Some(method), false)
            .await?;
        if paid.outcome == Outcome::Failed {
            return Err(refuse(
                StreamingErrorCode::PaymentFailed,
                paid.reason.unwrap_or_else(|| "the payment failed".into()),
            ));
        }
        Ok((
            self.get_or_404(&s.sub.id).await?.sub,
            amount,
            now,
            Some(charge),
        ))
    }

    /// giftSubscription / handleGiftSubscriptionSeries: one charge the gifter confirms;
    /// when it is paid each recipient gets `months` of `tier` (added to a running one).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn gift(
        &self,
        channel: &User,
        gifter: &User,
        tier_id: &str,
        recipients: &[User],
        months: i64,
        method: PaymentMethod,
        return_url: Option<&str>,
    ) -> Result<(String, i64, Option<String>), ApiError> {
        let (tier, _) = self
            .tier(tier_id)
            .await?
            .filter(|(t, c)| t.active && *c == channel.id)
            .ok_or_else(|| ApiError::not_found("tier"))?;
        let amount = tier
            .price
            .checked_mul(months)
            .and_then(|a| a.checked_mul(recipients.len() as i64))
            .ok_or_else(|| refuse(StreamingErrorCode::ValidationFailed, "too much"))?;
        let now = now_ms();
        let list: Vec<Value> = recipients
            .iter()
            .map(|u| json!({"user_id": u.id, "username": u.username}))
            .collect();
        let mut tx = self.db.begin_write().await?;
        let charge = self
            .payments
            .insert_charge(
                &mut tx,
                &Charge {
                    streamer: channel,
                    payer: gifter,
                    amount,
                    currency: &tier.currency,
                    purpose: json!({"subscription": {"charge": "gift", "tier_id": tier.id, "tier": tier.name,
                        "months": months, "recipients": list, "at": now}}),
                    idempotence_key: &format!("sub-gift-{}", new_id()),
                    method,
                    return_url,
                },
            )
            .await?;
        tx.commit().await.map_err(db_err)?;
        let paid = self.payments.pay_charge(&charge, None, false).await?;
        if paid.outcome == Outcome::Failed {
            return Err(refuse(
                StreamingErrorCode::PaymentFailed,
                paid.reason.unwrap_or_else(|| "the payment failed".into()),
            ));
        }
        Ok((charge, amount, paid.confirmation_url))
    }

    /// Up to `count` signed-in viewers present in the channel's chat now, chosen at random,
    /// who are not its streamer, not `gifter` and not subscribed already.
    pub(crate) async fn eligible_viewers(
        &self,
        channel: &User,
        gifter: &User,
        count: usize,
    ) -> Result<Vec<User>, ApiError> {
        let now = now_ms();
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT p.user_id FROM presence_users p WHERE p.channel = $1 AND p.updated_at > $2 \
             AND p.user_id <> $3 AND p.user_id <> $4 AND NOT EXISTS (SELECT 1 FROM subscriptions s \
             WHERE s.channel_id = $3 AND s.user_id = p.user_id AND s.status IN ('active', 'past_due', 'paused') \
             AND (s.access_until > $5 OR s.status = 'paused')) LIMIT 10000",
        )
        .bind(format!("chat:{}", channel.username))
        .bind(now - 60_000)
        .bind(&channel.id)
        .bind(&gifter.id)
        .bind(now)
        .fetch_all(self.db.pool())
        .await
        .map_err(db_err)?;
        let mut ids: Vec<String> = rows.into_iter().map(|r| r.0).collect();
        // Fisher-Yates with the OS's randomness.
        for i in (1..ids.len()).rev() {
            let mut b = [0u8; 8];
            getrandom::getrandom(&mut b)
                .map_err(|_| refuse(StreamingErrorCode::Internal, "no randomness"))?;
            let j = (u64::from_le_bytes(b) % (i as u64 + 1)) as usize;
            ids.swap(i, j);
        }
        let mut out = Vec::new();
        for id in ids.into_iter().take(count) {
            if let Some(u) = self.db.user(&id).await? {
                out.push(u);
            }
        }
        Ok(out)
    }

    /// pauseSubscription: no privileges and no renewal for `days`; the period's end moves
    /// by the time paused (see [`Self::resume`]).
    pub(crate) async fn pause(&self, s: &SubRow, days: i64) -> Result<Subscription, ApiError> {
        if s.sub.status != SubscriptionStatus::Active || s.sub.pending_charge.is_some() {
            return Err(refuse(
                StreamingErrorCode::Conflict,
                "only an active subscription with no payment in progress can be paused",
            ));
        }
        let now = now_ms();
        let until = now + days * core::DAY_MS;
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE subscriptions SET status = 'paused', paused_at = $1, pause_until = $2, access_until = 0, \
             updated_at = $1 WHERE id = $3 AND status = 'active' AND pending_charge IS NULL",
        )
        .bind(now)
        .bind(until)
        .bind(&s.sub.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if changed.rows_affected() == 0 {
            tx.rollback().await.map_err(db_err)?;
            return Err(refuse(StreamingErrorCode::Conflict, "it changed meanwhile"));
        }
        history(
            &mut tx,
            &format!("{}:pause:{now}", s.sub.id),
            &s.sub.id,
            &s.sub.user_id,
            &s.sub.channel,
            "paused",
            &s.sub.tier.id,
            0,
            None,
            json!({"until": until}),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(self.get_or_404(&s.sub.id).await?.sub)
    }

    /// resumeSubscription (or the pause's own end, at `now`): the period's end moves by the
    /// time paused.
    pub(crate) async fn resume_at(&self, id: &str, now: i64) -> Result<bool, ApiError> {
        let mut tx = self.db.begin_write().await?;
        let row = sqlx::query(
            "SELECT paused_at, pause_until, user_id, channel, tier_id FROM subscriptions WHERE id = $1 AND status = 'paused'",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        };
        let paused_at: i64 = row
            .try_get::<Option<i64>, _>(0)
            .map_err(db_err)?
            .unwrap_or(now);
        let until: Option<i64> = row.try_get(1).map_err(db_err)?;
        let end_of_pause = until.map_or(now, |u| now.min(u)).max(paused_at);
        let shift = end_of_pause - paused_at;
        sqlx::query(
            "UPDATE subscriptions SET status = 'active', period_end = period_end + $1, access_until = period_end + $1, \
             paused_at = NULL, pause_until = NULL, updated_at = $2 WHERE id = $3 AND status = 'paused'",
        )
        .bind(shift)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let g = |i: usize| row.try_get::<String, _>(i).map_err(db_err);
        history(
            &mut tx,
            &format!("{id}:resume:{paused_at}"),
            id,
            &g(2)?,
            &g(3)?,
            "resumed",
            &g(4)?,
            0,
            None,
            json!({"shift_ms": shift}),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    /// getSubscriptionHistory: a user's subscriptions and what happened to them.
    pub(crate) async fn history_of(
        &self,
        user: &User,
    ) -> Result<(Vec<Subscription>, Vec<HistoryEntry>), ApiError> {
        let rows = sqlx::query(crate::db::sql(format!(
            "{SUB_COLUMNS} WHERE s.user_id = $1 ORDER BY s.created_at DESC LIMIT 500"
        )))
        .bind(&user.id)
        .fetch_all(self.db.pool())
        .await
        .map_err(db_err)?;
        let subs = rows
            .iter()
            .map(|r| Ok(sub_row(r)?.sub))
            .collect::<Result<Vec<_>, ApiError>>()?;
        let rows = sqlx::query(
            "SELECT subscription_id, channel, kind, tier_id, amount, donation_id, detail, at FROM subscription_history \
             WHERE user_id = $1 ORDER BY at DESC, id LIMIT 500",
        )
        .bind(&user.id)
        .fetch_all(self.db.pool())
        .await
        .map_err(db_err)?;
        let events = rows
            .iter()
            .map(|r| {
                Ok(HistoryEntry {
                    subscription_id: r.try_get(0).map_err(db_err)?,
                    channel: r.try_get(1).map_err(db_err)?,
                    kind: r.try_get(2).map_err(db_err)?,
                    tier_id: r.try_get(3).map_err(db_err)?,
                    amount: r.try_get(4).map_err(db_err)?,
                    charge_id: r.try_get(5).map_err(db_err)?,
                    detail: serde_json::from_str(&r.try_get::<String, _>(6).map_err(db_err)?)
                        .unwrap_or(Value::Null),
                    at: r.try_get(7).map_err(db_err)?,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok((subs, events))
    }

    /// notifyExpiringSubscription: tells the subscriber when it ends, once per period.
    pub(crate) async fn notify_expiring(&self, s: &Subscription) -> Result<String, ApiError> {
        let key = format!("sub:{}:expiring:{}", s.id, s.period_end.unwrap_or(0));
        self.payments
            .notifications
            .notify_once(
                &s.user_id,
                "subscription_expiring",
                json!({"subscription_id": s.id, "channel": s.channel, "tier": s.tier.name,
                    "ends_at": s.period_end, "renews": s.auto_renew && !s.cancel_at_period_end}),
                &key,
            )
            .await?;
        Ok(key)
    }

    /// offerRenewalDiscount: `percent` off the next renewal, once; the subscriber is told.
    pub(crate) async fn offer_discount(
        &self,
        s: &SubRow,
        percent: i64,
    ) -> Result<Subscription, ApiError> {
        if !matches!(
            s.sub.status,
            SubscriptionStatus::Active | SubscriptionStatus::PastDue | SubscriptionStatus::Paused
        ) || !s.sub.auto_renew
        {
            return Err(refuse(
                StreamingErrorCode::Conflict,
                "only a running subscription that renews can get a renewal discount",
            ));
        }
        let now = now_ms();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE subscriptions SET discount_percent = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(percent)
        .bind(now)
        .bind(&s.sub.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        history(
            &mut tx,
            &format!("{}:discount:{now}", s.sub.id),
            &s.sub.id,
            &s.sub.user_id,
            &s.sub.channel,
            "discount_offered",
            &s.sub.tier.id,
            0,
            None,
            json!({"percent": percent}),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        let sub = self.get_or_404(&s.sub.id).await?.sub;
        self.payments
            .notifications
            .notify_once(
                &sub.user_id,
                "subscription_discount",
                json!({"subscription_id": sub.id, "channel": sub.channel, "percent": percent,
                    "next_renewal_amount": sub.next_renewal_amount, "renews_at": sub.period_end}),
                &format!("sub:{}:discount:{now}", sub.id),
            )
            .await?;
        Ok(sub)
    }

    /// Everything due at `at` ([`core::due`]): renewals charged to the saved method, their
    /// retries, pauses ended, cancelled and unrenewed subscriptions ended, expiring notices.
    pub(crate) async fn run_due(&self, at: i64) -> Result<RenewalRun, ApiError> {
        let mut run = RenewalRun {
            at,
            ..RenewalRun::default()
        };
        let t = self.timing;
        let rows = sqlx::query(crate::db::sql(format!(
            "{SUB_COLUMNS} WHERE (s.status IN ('active', 'past_due') AND s.period_end <= $1) \
             OR (s.status = 'paused' AND s.pause_until <= $2) ORDER BY s.period_end LIMIT 500"
        )))
        .bind(at.saturating_add(t.notice))
        .bind(at)
        .fetch_all(self.db.pool())
        .await
        .map_err(db_err)?;
        for r in rows {
            let s = sub_row(&r)?;
            let state = State {
                status: Status::parse(&r.try_get::<String, _>(5).map_err(db_err)?),
                auto_renew: s.sub.auto_renew,
                cancel_at_period_end: s.sub.cancel_at_period_end,
                period_end: s.sub.period_end.unwrap_or(0),
                paused_at: s.sub.paused_at,
                pause_until: s.sub.pause_until,
                retry_at: s.sub.retry_at,
                charging: s.sub.pending_charge.is_some(),
            };
            if core::expiring_soon(&state, at, &t) {
                self.notify_expiring(&s.sub).await?;
                run.notified += 1;
            }
            match core::due(&state, at, &t) {
                Due::Nothing => {}
                Due::Resume { .. } => {
                    if self.resume_at(&s.sub.id, at).await? {
                        run.resumed += 1;
                    }
                }
                Due::Cancel => {
                    if self.end(&s, "cancelled", at).await? {
                        run.cancelled += 1;
                    }
                }
                Due::Expire => {
                    if self.end(&s, "expired", at).await? {
                        run.expired += 1;
                    }
                }
                Due::Charge => match self.renew(&s, at).await {
                    Ok(Outcome::Credited) => run.renewed += 1,
                    Ok(Outcome::Failed) => run.failed += 1,
                    Ok(_) => run.pending += 1,
                    Err(e) => {
                        tracing::warn!(subscription = %s.sub.id, error = %e.message, "renewal not charged");
                        run.failed += 1;
                    }
                },
            }
        }
        self.payments.kick();
        Ok(run)
    }

    /// Ends a subscription whose period is over (`cancelled` or `expired`).
    async fn end(&self, s: &SubRow, status: &str, at: i64) -> Result<bool, ApiError> {
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE subscriptions SET status = $1, access_until = 0, updated_at = $2 \
             WHERE id = $3 AND status IN ('active', 'past_due') AND pending_charge IS NULL",
        )
        .bind(status)
        .bind(at)
        .bind(&s.sub.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if changed.rows_affected() == 0 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        let end = s.sub.period_end.unwrap_or(0);
        history(
            &mut tx,
            &format!("{}:end:{end}", s.sub.id),
            &s.sub.id,
            &s.sub.user_id,
            &s.sub.channel,
            status,
            &s.sub.tier.id,
            0,
            None,
            json!({"period_end": end}),
            at,
        )
        .await?;
        events::record(
            &mut tx,
            "SubscriptionEnded",
            json!({"streamer_id": s.channel_id, "channel": s.sub.channel, "subscription_id": s.sub.id,
                "user_id": s.sub.user_id, "username": s.sub.username, "tier": s.sub.tier.name, "status": status}),
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    /// Charges the next period to the saved payment method (or retries it).
    async fn renew(&self, s: &SubRow, at: i64) -> Result<Outcome, ApiError> {
        let Some(method) = s.payment_method_id.as_deref() else {
            return Ok(if self.end(s, "expired", at).await? {
                Outcome::Failed
            } else {
                Outcome::Unchanged
            });
        };
        let (tier, _) = self
            .tier(&s.sub.tier.id)
            .await?
            .ok_or_else(|| ApiError::not_found("tier"))?;
        let amount = core::discounted(tier.price, s.sub.renewal_discount_percent.unwrap_or(0));
        let channel = self
            .db
            .user(&s.channel_id)
            .await?
            .ok_or_else(|| ApiError::not_found("channel"))?;
        let payer = self
            .db
            .user(&s.sub.user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("subscriber"))?;
        let start = s.sub.period_end.unwrap_or(at);
        let mut tx = self.db.begin_write().await?;
        let charge = self
            .payments
            .insert_charge(
                &mut tx,
                &Charge {
                    streamer: &channel,
                    payer: &payer,
                    amount,
                    currency: &tier.currency,
                    purpose: json!({"subscription": {"charge": "renewal", "subscription_id": s.sub.id,
                        "tier_id": tier.id, "tier": tier.name, "at": at, "period_start": start,
                        "period_end": start + self.timing.period, "attempt": s.sub.failed_attempts + 1,
                        "discount_percent": s.sub.renewal_discount_percent}}),
                    idempotence_key: &format!(
                        "sub-{}-renew-{start}-{}",
                        s.sub.id, s.sub.failed_attempts
                    ),
                    method: PaymentMethod::BankCard,
                    return_url: None,
                },
            )
            .await?;
        let changed = sqlx::query(
            "UPDATE subscriptions SET pending_charge = $1, updated_at = $2 WHERE id = $3 AND pending_charge IS NULL \
             AND status IN ('active', 'past_due') AND period_end = $4",
        )
        .bind(&charge)
        .bind(at)
        .bind(&s.sub.id)
        .bind(start)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if changed.rows_affected() == 0 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(Outcome::Unchanged);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(self
            .payments
            .pay_charge(&charge, Some(method), false)
            .await?
            .outcome)
    }

    /// Runs [`Self::run_due`] with the clock every `check_interval`, until shutdown.
    pub(crate) async fn run(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let mut every = tokio::time::interval(self.check_interval);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {
                    if let Err(e) = self.run_due(now_ms()).await {
                        tracing::warn!(error = %e.message, "subscription renewals failed");
                    }
                }
            }
        }
    }
}

/// The payments dispatcher's consumer of `Subscription*` events: the overlay's alert, the
/// streamer's and the subscriber's notifications; each keyed by the event, so once.
pub(crate) async fn consume(p: &Payments, e: &events::Event) -> Result<(), ApiError> {
    let v = &e.payload;
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let streamer = s("streamer_id");
    let channel = s("channel");
    let alert = |kind: &str| {
        json!({"kind": "subscription", "event": kind, "subscription": {
        "channel": v.get("channel"), "username": v.get("username"), "tier": v.get("tier"),
        "months": v.get("months"), "gifter": v.get("gifter"), "recipients": v.get("recipients"),
        "amount": v.get("amount"), "currency": v.get("currency")}})
    };
    match e.kind.as_str() {
        "SubscriptionStarted"
        | "SubscriptionRenewed"
        | "SubscriptionGifted"
        | "SubscriptionUpgraded" => {
            let kind = match e.kind.as_str() {
                "SubscriptionStarted" => "new",
                "SubscriptionRenewed" => "renewal",
                "SubscriptionGifted" => "gift",
                _ => "upgrade",
            };
            events::overlay_append(
                &p.db,
                &p.bus,
                &channel,
                &format!("{}:alert", e.id),
                alert(kind),
            )
            .await?;
            p.notifications
                .notify_once(
                    &streamer,
                    "subscription",
                    json!({"event": kind, "subscription": v}),
                    &format!("{}:streamer", e.id),
                )
                .await?;
            if let Some(list) = v.get("recipients").and_then(Value::as_array) {
                for r in list {
                    let uid = r.get("user_id").and_then(Value::as_str).unwrap_or_default();
                    p.notifications
                        .notify_once(uid, "subscription_gift", json!({"channel": channel,
                            "tier": v.get("tier"), "months": v.get("months"), "gifter": v.get("gifter")}),
                            &format!("{}:recipient:{uid}", e.id))
                        .await?;
                }
            }
        }
        "SubscriptionFailed" => {
            p.notifications
                .notify_once(
                    &s("user_id"),
                    "subscription_payment_failed",
                    v.clone(),
                    &format!("{}:subscriber", e.id),
                )
                .await?;
        }
        "SubscriptionCancelled" | "SubscriptionEnded" => {
            p.notifications
                .notify_once(
                    &streamer,
                    if e.kind == "SubscriptionCancelled" {
                        "subscription_cancelled"
                    } else {
                        "subscription_ended"
                    },
                    v.clone(),
                    &format!("{}:streamer", e.id),
                )
                .await?;
        }
        _ => {}
    }
    Ok(())
}
