//! The subscriptions area's tables (migration 0012): tiers, subscriptions, their history and
//! who is present in a chat room; and the three hooks the payments area calls inside the
//! transaction that credits, fails or reverses a subscription charge ([`charge_paid`],
//! [`charge_failed`], [`charge_reversed`]). Each hook changes a subscription only when the
//! charge is still the one it waits for (`pending_charge`) or the one that last extended it
//! (`last_charge`), so a charge takes effect once, whatever order its notifications come in.

use serde_json::{Value, json};
use sqlx::Row;

use super::core::{Status, Timing};
use super::{BadgeDesign, ChatBadge, Subscription, Tier, TierPrivileges, TierRef};
use crate::error::ApiError;
use crate::payments::Donation;
use crate::payments::events;
use crate::payments::ledger::Tx;
use crate::secrets::new_id;

pub(crate) fn db_err(e: sqlx::Error) -> ApiError {
    ApiError::from(crate::db::RepoError::Db(e))
}

/// The seed's tiers, given to every channel (editable by its streamer).
pub(crate) const DEFAULT_TIERS: [(&str, &str, i64, &str); 3] = [
    ("supporter", "Supporter", 19_900, "#3FA34D"),
    ("vip", "VIP", 49_900, "#2D7FF9"),
    ("champion", "Champion", 99_900, "#E0A100"),
];

pub(crate) const TIER_COLUMNS: &str = "SELECT t.id, t.channel_id, t.code, t.name, t.price, t.currency, t.privileges, \
     t.badge, t.emotes, t.active, t.created_at FROM subscription_tiers t";

pub(crate) fn tier_row(r: &sqlx::any::AnyRow, channel: &str) -> Result<Tier, ApiError> {
    let s = |i: usize| r.try_get::<String, _>(i).map_err(db_err);
    Ok(Tier {
        id: s(0)?,
        channel: channel.to_owned(),
        code: s(2)?,
        name: s(3)?,
        price: r.try_get(4).map_err(db_err)?,
        currency: s(5)?,
        privileges: serde_json::from_str::<TierPrivileges>(&s(6)?).unwrap_or_default(),
        badge: serde_json::from_str::<BadgeDesign>(&s(7)?).unwrap_or_default(),
        exclusive_emotes: serde_json::from_str(&s(8)?).unwrap_or_default(),
        active: r.try_get::<i64, _>(9).map_err(db_err)? != 0,
        created_at: r.try_get(10).map_err(db_err)?,
    })
}

pub(crate) const SUB_COLUMNS: &str = "SELECT s.id, s.channel_id, s.channel, s.user_id, s.tier_id, s.status, s.auto_renew, \
     s.cancel_at_period_end, s.cancel_reason, s.payment_method_id, s.gifted_by, s.started_at, s.period_start, s.period_end, \
     s.access_until, s.months, s.paused_at, s.pause_until, s.retry_at, s.failed_attempts, s.pending_charge, s.discount_percent, \
     s.created_at, t.code, t.name, t.price, t.currency, u.username \
     FROM subscriptions s JOIN subscription_tiers t ON t.id = s.tier_id LEFT JOIN users u ON u.id = s.user_id";

/// A subscription row with what only the area needs.
pub(crate) struct SubRow {
    pub(crate) sub: Subscription,
    pub(crate) channel_id: String,
    pub(crate) payment_method_id: Option<String>,
}

pub(crate) fn sub_row(r: &sqlx::any::AnyRow) -> Result<SubRow, ApiError> {
    let s = |i: usize| r.try_get::<String, _>(i).map_err(db_err);
    let o = |i: usize| r.try_get::<Option<String>, _>(i).map_err(db_err);
    let n = |i: usize| r.try_get::<i64, _>(i).map_err(db_err);
    let on = |i: usize| r.try_get::<Option<i64>, _>(i).map_err(db_err);
    let status = Status::parse(&s(5)?);
    let months = n(15)?;
    let price = n(25)?;
    let discount = on(21)?;
    Ok(SubRow {
        channel_id: s(1)?,
        payment_method_id: o(9)?,
        sub: Subscription {
            id: s(0)?,
            channel: s(2)?,
            user_id: s(3)?,
            username: o(27)?.unwrap_or_default(),
            tier: TierRef {
                id: s(4)?,
                code: s(23)?,
                name: s(24)?,
                price,
                currency: s(26)?,
            },
            status: super::SubscriptionStatus::from(status),
            auto_renew: n(6)? != 0,
            cancel_at_period_end: n(7)? != 0,
            cancel_reason: o(8)?,
            has_saved_payment_method: o(9)?.is_some(),
            gifted_by: o(10)?,
            started_at: on(11)?,
            period_start: on(12)?,
            period_end: on(13)?,
            access_until: n(14)?,
            months,
            badge_months: super::core::badge_months(months),
            paused_at: on(16)?,
            pause_until: on(17)?,
            retry_at: on(18)?,
            failed_attempts: n(19)?,
            pending_charge: o(20)?,
            renewal_discount_percent: discount,
            next_renewal_amount: super::core::discounted(price, discount.unwrap_or(0)),
            created_at: n(22)?,
        },
    })
}

/// Adds a line to the history once per `key`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn history(
    tx: &mut Tx,
    key: &str,
    sub: &str,
    user: &str,
    channel: &str,
    kind: &str,
    tier: &str,
    amount: i64,
    donation: Option<&str>,
    detail: Value,
    at: i64,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO subscription_history (id, event_key, subscription_id, user_id, channel, kind, tier_id, amount, \
         donation_id, detail, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (event_key) DO NOTHING",
    )
    .bind(new_id())
    .bind(key)
    .bind(sub)
    .bind(user)
    .bind(channel)
    .bind(kind)
    .bind(tier)
    .bind(amount)
    .bind(donation)
    .bind(detail.to_string())
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn tier_name(tx: &mut Tx, tier: &str) -> Result<String, ApiError> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT name FROM subscription_tiers WHERE id = $1")
            .bind(tier)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
    Ok(row.map(|r| r.0).unwrap_or_default())
}

fn field<'a>(p: &'a Value, k: &str) -> &'a str {
    p.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn num(p: &Value, k: &str) -> i64 {
    p.get(k).and_then(Value::as_i64).unwrap_or_default()
}

/// A subscription charge was paid (in the crediting transaction): the period it pays for
/// starts, the tier changes, or the gift's recipients are subscribed.
pub(crate) async fn charge_paid(
    tx: &mut Tx,
    cfg: &potok_config::SubscriptionsConfig,
    d: &Donation,
    saved_method: Option<&str>,
    now: i64,
) -> Result<(), ApiError> {
    let Some(p) = d.purpose.get("subscription") else {
        return Ok(());
    };
    let t = Timing::of(cfg);
    let sub = field(p, "subscription_id");
    let tier = field(p, "tier_id");
    let name = tier_name(tx, tier).await?;
    let base = json!({"streamer_id": d.streamer_id, "channel": d.channel, "subscription_id": sub,
        "tier_id": tier, "tier": name, "amount": d.amount, "currency": d.currency, "charge_id": d.id});
    let with = |extra: Value| {
        let mut v = base.clone();
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    };
    match field(p, "charge") {
        "initial" => {
            let end = now + t.period;
            let changed = sqlx::query(
                "UPDATE subscriptions SET status = 'active', tier_id = $1, payment_method_id = $2, auto_renew = $3, \
                 started_at = COALESCE(started_at, $4), period_start = $4, period_end = $5, access_until = $5, \
                 months = months + 1, pending_charge = NULL, last_charge = $6, failed_attempts = 0, retry_at = NULL, \
                 cancel_at_period_end = 0, updated_at = $4 WHERE id = $7 AND (pending_charge = $6 OR \
                 (pending_charge IS NULL AND status IN ('incomplete', 'cancelled', 'expired')))",
            )
            .bind(tier)
            .bind(saved_method)
            .bind(i64::from(saved_method.is_some()))
            .bind(now)
            .bind(end)
            .bind(&d.id)
            .bind(sub)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
            if changed.rows_affected() == 1 {
                let user = d.donor_id.as_deref().unwrap_or_default();
                history(
                    tx,
                    &format!("{}:paid", d.id),
                    sub,
                    user,
                    &d.channel,
                    "started",
                    tier,
                    d.amount,
                    Some(&d.id),
                    json!({"period_end": end}),
                    now,
                )
                .await?;
                events::record(
                    tx,
                    "SubscriptionStarted",
                    with(json!({"user_id": user,
                    "username": d.donor_name, "months": 1, "period_end": end})),
                )
                .await?;
            }
        }
        "renewal" => {
            let (start, end) = (num(p, "period_start"), num(p, "period_end"));
            let changed = sqlx::query(
                "UPDATE subscriptions SET status = 'active', period_start = $1, period_end = $2, access_until = $2, \
                 months = months + 1, pending_charge = NULL, last_charge = $3, failed_attempts = 0, retry_at = NULL, \
                 discount_percent = NULL, updated_at = $4 WHERE id = $5 AND pending_charge = $3",
            )
            .bind(start)
            .bind(end)
            .bind(&d.id)
            .bind(now)
            .bind(sub)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
            if changed.rows_affected() == 1 {
                let user = d.donor_id.as_deref().unwrap_or_default();
                let (months,): (i64,) =
                    sqlx::query_as("SELECT months FROM subscriptions WHERE id = $1")
                        .bind(sub)
                        .fetch_one(&mut **tx)
                        .await
                        .map_err(db_err)?;
                history(
                    tx,
                    &format!("{}:paid", d.id),
                    sub,
                    user,
                    &d.channel,
                    "renewed",
                    tier,
                    d.amount,
                    Some(&d.id),
                    json!({"period_start": start, "period_end": end}),
                    now,
                )
                .await?;
                events::record(
                    tx,
                    "SubscriptionRenewed",
                    with(json!({"user_id": user,
                    "username": d.donor_name, "months": months, "period_end": end})),
                )
                .await?;
            }
        }
        "upgrade" => {
            let to = field(p, "to_tier");
            let changed = sqlx::query(
                "UPDATE subscriptions SET tier_id = $1, pending_charge = NULL, updated_at = $2 \
                 WHERE id = $3 AND pending_charge = $4",
            )
            .bind(to)
            .bind(now)
            .bind(sub)
            .bind(&d.id)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
            if changed.rows_affected() == 1 {
                let user = d.donor_id.as_deref().unwrap_or_default();
                let to_name = tier_name(tx, to).await?;
                history(
                    tx,
                    &format!("{}:paid", d.id),
                    sub,
                    user,
                    &d.channel,
                    "upgraded",
                    to,
                    d.amount,
                    Some(&d.id),
                    json!({"from_tier": tier}),
                    now,
                )
                .await?;
                events::record(
                    tx,
                    "SubscriptionUpgraded",
                    with(json!({"user_id": user,
                    "username": d.donor_name, "tier_id": to, "tier": to_name})),
                )
                .await?;
            }
        }
        "gift" => {
            let months = num(p, "months").clamp(1, 12);
            let add = t.period * months;
            let gifter = d.donor_id.as_deref().unwrap_or_default();
            let recipients: Vec<(String, String)> = p
                .get("recipients")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|r| {
                            (
                                field(r, "user_id").to_owned(),
                                field(r, "username").to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut given = Vec::new();
            for (user, username) in &recipients {
                let sub_id = gift_to(tx, d, tier, user, gifter, months, add, now).await?;
                history(
                    tx,
                    &format!("{}:gift:{user}", d.id),
                    &sub_id,
                    user,
                    &d.channel,
                    "gifted",
                    tier,
                    d.amount / recipients.len().max(1) as i64,
                    Some(&d.id),
                    json!({"gifted_by": gifter, "months": months}),
                    now,
                )
                .await?;
                given.push(
                    json!({"user_id": user, "username": username, "subscription_id": sub_id}),
                );
            }
            events::record(
                tx,
                "SubscriptionGifted",
                with(json!({"gifter_id": gifter,
                "gifter": d.donor_name, "months": months, "recipients": given})),
            )
            .await?;
        }
        other => tracing::warn!(charge = %d.id, kind = other, "unknown subscription charge"),
    }
    Ok(())
}

/// Subscribes (or extends) a gift's recipient; returns the subscription's id.
#[allow(clippy::too_many_arguments)]
async fn gift_to(
    tx: &mut Tx,
    d: &Donation,
    tier: &str,
    user: &str,
    gifter: &str,
    months: i64,
    add: i64,
    now: i64,
) -> Result<String, ApiError> {
    let row = sqlx::query(
        "SELECT id, status, access_until FROM subscriptions WHERE channel_id = $1 AND user_id = $2",
    )
    .bind(&d.streamer_id)
    .bind(user)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?;
    if let Some(r) = &row {
        let id: String = r.try_get(0).map_err(db_err)?;
        let status = Status::parse(&r.try_get::<String, _>(1).map_err(db_err)?);
        let until: i64 = r.try_get(2).map_err(db_err)?;
        // A running subscription gets the months on top (its tier stays).
        if status == Status::Paused || (!status.ended() && until > now) {
            sqlx::query(
                "UPDATE subscriptions SET period_end = period_end + $1, \
                 access_until = CASE WHEN status = 'paused' THEN access_until ELSE period_end + $1 END, \
                 status = CASE WHEN status = 'paused' THEN 'paused' ELSE 'active' END, \
                 months = months + $2, last_charge = $3, retry_at = NULL, failed_attempts = 0, updated_at = $4 WHERE id = $5",
            )
            .bind(add)
            .bind(months)
            .bind(&d.id)
            .bind(now)
            .bind(&id)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
            return Ok(id);
        }
    }
    let id = match &row {
        Some(r) => r.try_get::<String, _>(0).map_err(db_err)?,
        None => new_id(),
    };
    sqlx::query(
        "INSERT INTO subscriptions (id, channel_id, channel, user_id, tier_id, status, auto_renew, cancel_at_period_end, \
         gifted_by, started_at, period_start, period_end, access_until, months, failed_attempts, last_charge, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, 'active', 0, 0, $6, $7, $7, $8, $8, $9, 0, $10, $7, $7) \
         ON CONFLICT (channel_id, user_id) DO UPDATE SET tier_id = $5, status = 'active', auto_renew = 0, \
         cancel_at_period_end = 0, cancel_reason = NULL, payment_method_id = NULL, gifted_by = $6, period_start = $7, \
         period_end = $8, access_until = $8, months = subscriptions.months + $9, paused_at = NULL, pause_until = NULL, \
         retry_at = NULL, failed_attempts = 0, pending_charge = NULL, last_charge = $10, discount_percent = NULL, updated_at = $7",
    )
    .bind(&id)
    .bind(&d.streamer_id)
    .bind(&d.channel)
    .bind(user)
    .bind(tier)
    .bind(gifter)
    .bind(now)
    .bind(now + add)
    .bind(months)
    .bind(&d.id)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(id)
}

/// A subscription charge failed (in the failing transaction): a renewal becomes past due
/// and is retried `retry_interval` after the attempt, within the grace period.
pub(crate) async fn charge_failed(
    tx: &mut Tx,
    cfg: &potok_config::SubscriptionsConfig,
    donation: &str,
    purpose: &Value,
    reason: &str,
) -> Result<(), ApiError> {
    let Some(p) = purpose.get("subscription") else {
        return Ok(());
    };
    let t = Timing::of(cfg);
    let sub = field(p, "subscription_id");
    let at = num(p, "at");
    match field(p, "charge") {
        "renewal" => {
            let retry_at = at + t.retry;
            let changed = sqlx::query(
                "UPDATE subscriptions SET status = 'past_due', failed_attempts = failed_attempts + 1, retry_at = $1, \
                 access_until = period_end + $2, pending_charge = NULL, updated_at = $3 \
                 WHERE id = $4 AND pending_charge = $5",
            )
            .bind(retry_at)
            .bind(t.grace)
            .bind(at)
            .bind(sub)
            .bind(donation)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
            if changed.rows_affected() == 1 {
                let row = sqlx::query(
                    "SELECT s.user_id, s.channel, s.channel_id, s.tier_id, s.failed_attempts, s.period_end FROM subscriptions s WHERE s.id = $1",
                )
                .bind(sub)
                .fetch_one(&mut **tx)
                .await
                .map_err(db_err)?;
                let g = |i: usize| row.try_get::<String, _>(i).map_err(db_err);
                let (user, channel, channel_id, tier) = (g(0)?, g(1)?, g(2)?, g(3)?);
                let attempts: i64 = row.try_get(4).map_err(db_err)?;
                let end: i64 = row.try_get(5).map_err(db_err)?;
                let reason: String = reason.chars().take(300).collect();
                history(
                    tx,
                    &format!("{donation}:failed"),
                    sub,
                    &user,
                    &channel,
                    "renewal_failed",
                    &tier,
                    0,
                    Some(donation),
                    json!({"reason": reason, "retry_at": retry_at, "attempt": attempts}),
                    at,
                )
                .await?;
                events::record(
                    tx,
                    "SubscriptionFailed",
                    json!({"streamer_id": channel_id, "channel": channel,
                    "subscription_id": sub, "user_id": user, "reason": reason, "attempt": attempts,
                    "retry_at": retry_at, "grace_until": end + t.grace, "charge_id": donation}),
                )
                .await?;
            }
        }
        "initial" | "upgrade" => {
            sqlx::query(
                "UPDATE subscriptions SET pending_charge = NULL, updated_at = $1 WHERE id = $2 AND pending_charge = $3",
            )
            .bind(crate::model::now_ms())
            .bind(sub)
            .bind(donation)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        }
        _ => {}
    }
    Ok(())
}

/// A subscription charge was refunded or charged back (in the reversing transaction): what
/// it paid for ends now.
pub(crate) async fn charge_reversed(tx: &mut Tx, d: &Donation, now: i64) -> Result<(), ApiError> {
    if d.purpose.get("subscription").is_none() {
        return Ok(());
    }
    let rows = sqlx::query(
        "SELECT id, user_id, tier_id FROM subscriptions WHERE last_charge = $1 AND status IN ('active', 'past_due', 'paused')",
    )
    .bind(&d.id)
    .fetch_all(&mut **tx)
    .await
    .map_err(db_err)?;
    for r in rows {
        let g = |i: usize| r.try_get::<String, _>(i).map_err(db_err);
        let (id, user, tier) = (g(0)?, g(1)?, g(2)?);
        sqlx::query(
            "UPDATE subscriptions SET status = 'expired', access_until = $1, auto_renew = 0, updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(&id)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
        history(
            tx,
            &format!("{}:reversed:{id}", d.id),
            &id,
            &user,
            &d.channel,
            "reversed",
            &tier,
            -d.amount,
            Some(&d.id),
            json!({}),
            now,
        )
        .await?;
    }
    Ok(())
}

/// What a user's subscription to a channel gives now (the chat's `subscribers_only` mode
/// and badges ask this): the tier's code, name and badge, and the months subscribed.
pub(crate) async fn entitled_in(
    conn: &mut sqlx::AnyConnection,
    channel_id: &str,
    user_id: &str,
    now: i64,
) -> Result<Option<ChatBadge>, ApiError> {
    let row = sqlx::query(
        "SELECT t.code, t.name, t.badge, s.months FROM subscriptions s JOIN subscription_tiers t ON t.id = s.tier_id \
         WHERE s.channel_id = $1 AND s.user_id = $2 AND s.status IN ('active', 'past_due') AND s.access_until > $3",
    )
    .bind(channel_id)
    .bind(user_id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    row.map(|r| {
        let badge =
            serde_json::from_str::<BadgeDesign>(&r.try_get::<String, _>(2).map_err(db_err)?)
                .unwrap_or_default();
        let months: i64 = r.try_get(3).map_err(db_err)?;
        Ok(ChatBadge {
            tier: r.try_get(0).map_err(db_err)?,
            tier_name: r.try_get(1).map_err(db_err)?,
            label: badge.label,
            color: badge.color,
            months: super::core::badge_months(months),
        })
    })
    .transpose()
}

/// The first of `codes` (emote codes used in a message) that is exclusive to a tier of the
/// channel `user_id` does not have now, with that tier's name. A tier includes the exclusive
/// emotes of every cheaper tier.
pub(crate) async fn emote_refused(
    conn: &mut sqlx::AnyConnection,
    channel_id: &str,
    user_id: &str,
    codes: &[String],
    now: i64,
) -> Result<Option<(String, String)>, ApiError> {
    if codes.is_empty() {
        return Ok(None);
    }
    let tiers: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT name, price, emotes FROM subscription_tiers WHERE channel_id = $1 AND emotes <> '[]' ORDER BY price",
    )
    .bind(channel_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    if tiers.is_empty() {
        return Ok(None);
    }
    let mine: Option<(i64,)> = sqlx::query_as(
        "SELECT t.price FROM subscriptions s JOIN subscription_tiers t ON t.id = s.tier_id WHERE s.channel_id = $1 \
         AND s.user_id = $2 AND s.status IN ('active', 'past_due') AND s.access_until > $3",
    )
    .bind(channel_id)
    .bind(user_id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    let paid = mine.map_or(-1, |m| m.0);
    for (name, price, emotes) in tiers {
        if price <= paid {
            continue;
        }
        let list: Vec<String> = serde_json::from_str(&emotes).unwrap_or_default();
        if let Some(code) = codes.iter().find(|c| list.contains(c)) {
            return Ok(Some((code.clone(), name)));
        }
    }
    Ok(None)
}
