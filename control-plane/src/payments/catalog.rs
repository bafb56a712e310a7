//! What donations buy and count toward: gifts, catalog items with key pools, goals,
//! competitions, viewer challenges, song and game requests, highlights; per-channel
//! settings (alerts, the bloggers' register number, prices) and blocked donors; the
//! history and analytics read from completed donations.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;
use utoipa::ToSchema;

use super::ledger::Tx;
use super::{Donation, DonationStatus, DonationType};
use crate::db::Db;
use crate::error::{ApiError, StreamingErrorCode};
use crate::model::now_ms;
use crate::secrets::new_id;

fn db_err(e: sqlx::Error) -> ApiError {
    ApiError::from(crate::db::RepoError::Db(e))
}

// ---- settings ----

/// One alert look, used for donations of at least `min_amount`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertVariant {
    /// Smallest amount (minor units) this variant is for.
    #[serde(deserialize_with = "crate::api::whole")]
    #[schema(value_type = i64, minimum = 0, maximum = 1000000000000_i64)]
    pub(crate) min_amount: i64,
    /// Animation name the overlay knows (`slide`, `bounce`, `fireworks` ...).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,32}$")]
    pub(crate) animation: String,
    /// Sound name or URL path of a sound.
    #[schema(max_length = 200, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub(crate) sound: String,
    /// How long the alert stays, in milliseconds (1000-30000).
    #[serde(deserialize_with = "crate::api::whole")]
    #[schema(value_type = i64, minimum = 1000, maximum = 30000)]
    pub(crate) duration_ms: i64,
    /// The headline: `{donor}` and `{amount}` are replaced.
    #[schema(max_length = 200, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub(crate) text_template: String,
}

/// Text-to-speech of donation messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TtsSettings {
    /// Whether messages are read aloud.
    pub(crate) enabled: bool,
    /// Smallest amount whose message is read.
    #[serde(deserialize_with = "crate::api::whole")]
    #[schema(value_type = i64, minimum = 0, maximum = 1000000000000_i64)]
    pub(crate) min_amount: i64,
}

/// configureDonationAlerts: the alert variants by amount and text-to-speech.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertSettings {
    /// 1-10 variants; the one with the largest `min_amount` not above the amount wins.
    #[schema(min_items = 1, max_items = 10)]
    pub(crate) variants: Vec<AlertVariant>,
    /// Text-to-speech.
    pub(crate) tts: TtsSettings,
}

impl Default for AlertSettings {
    fn default() -> Self {
        let v = |min: i64, animation: &str, sound: &str, ms: i64| AlertVariant {
            min_amount: min,
            animation: animation.into(),
            sound: sound.into(),
            duration_ms: ms,
            text_template: "{donor} — {amount}".into(),
        };
        AlertSettings {
            variants: vec![
                v(0, "slide", "chime", 5000),
                v(50_000, "bounce", "fanfare", 7000),
                v(500_000, "fireworks", "epic", 10000),
            ],
            tts: TtsSettings {
                enabled: true,
                min_amount: 10_000,
            },
        }
    }
}

impl AlertSettings {
    pub(crate) fn problems(&self) -> Option<String> {
        if self.variants.is_empty() || self.variants.len() > 10 {
            return Some("variants: 1-10".into());
        }
        for (i, v) in self.variants.iter().enumerate() {
            if !(0..=1_000_000_000_000).contains(&v.min_amount)
                || !(1000..=30_000).contains(&v.duration_ms)
            {
                return Some(format!(
                    "variants[{i}]: min_amount >= 0, duration_ms 1000-30000"
                ));
            }
            if v.animation.is_empty()
                || v.animation.len() > 32
                || !v
                    .animation
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Some(format!(
                    "variants[{i}].animation: 1-32 letters, digits, '-' or '_'"
                ));
            }
            for (name, s, max) in [
                ("sound", &v.sound, 200),
                ("text_template", &v.text_template, 200),
            ] {
                if s.chars().count() > max || s.chars().any(char::is_control) {
                    return Some(format!("variants[{i}].{name}: at most {max} characters"));
                }
            }
        }
        if !(0..=1_000_000_000_000).contains(&self.tts.min_amount) {
            return Some("tts.min_amount: >= 0".into());
        }
        None
    }
}

/// What an alert for `amount` looks like.
pub(crate) fn alert_for(settings: &AlertSettings, amount: i64) -> Value {
    let variant = settings
        .variants
        .iter()
        .filter(|v| v.min_amount <= amount)
        .max_by_key(|v| v.min_amount)
        .or_else(|| settings.variants.first());
    json!({"variant": variant, "tts": settings.tts.enabled && amount >= settings.tts.min_amount})
}

/// A channel's donation settings.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct DonationSettings {
    /// Alerts.
    pub(crate) alerts: AlertSettings,
    /// The channel's number in the bloggers' register (Roskomnadzor), once recorded.
    pub(crate) registry_number: Option<String>,
    /// Price of a boost per minute (minor units).
    pub(crate) boost_price_per_minute: i64,
    /// Least amount of a song or game request.
    pub(crate) request_price: i64,
    /// Least amount of a highlighted moment.
    pub(crate) highlight_price: i64,
}

pub(crate) async fn settings(db: &Db, channel_id: &str) -> Result<DonationSettings, ApiError> {
    let row = sqlx::query(
        "SELECT alerts, registry_number, boost_price_per_minute, request_price, highlight_price \
         FROM donation_settings WHERE channel_id = $1",
    )
    .bind(channel_id)
    .fetch_optional(db.pool())
    .await
    .map_err(db_err)?;
    Ok(match row {
        None => DonationSettings {
            alerts: AlertSettings::default(),
            registry_number: None,
            boost_price_per_minute: 1_000,
            request_price: 10_000,
            highlight_price: 5_000,
        },
        Some(r) => DonationSettings {
            alerts: serde_json::from_str(&r.try_get::<String, _>(0).map_err(db_err)?)
                .unwrap_or_default(),
            registry_number: r.try_get(1).map_err(db_err)?,
            boost_price_per_minute: r.try_get(2).map_err(db_err)?,
            request_price: r.try_get(3).map_err(db_err)?,
            highlight_price: r.try_get(4).map_err(db_err)?,
        },
    })
}

pub(crate) async fn save_settings(
    db: &Db,
    channel_id: &str,
    s: &DonationSettings,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO donation_settings (channel_id, alerts, registry_number, boost_price_per_minute, request_price, \
         highlight_price, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (channel_id) DO UPDATE SET \
         alerts = $2, registry_number = $3, boost_price_per_minute = $4, request_price = $5, highlight_price = $6, updated_at = $7",
    )
    .bind(channel_id)
    .bind(serde_json::to_string(&s.alerts).unwrap_or_default())
    .bind(&s.registry_number)
    .bind(s.boost_price_per_minute)
    .bind(s.request_price)
    .bind(s.highlight_price)
    .bind(now_ms())
    .execute(db.pool())
    .await
    .map_err(db_err)?;
    Ok(())
}

// ---- blocked donors ----

/// Whether any of `keys` (`user:<id>`, `addr:<ip>`, `card:<fingerprint>`) is blocked on the
/// channel or everywhere.
pub(crate) async fn blocked(db: &Db, channel_id: &str, keys: &[&str]) -> Result<bool, ApiError> {
    for key in keys {
        let hit = sqlx::query(
            "SELECT 1 FROM blocked_donors WHERE donor_key = $1 AND channel_id IN ($2, '*')",
        )
        .bind(*key)
        .bind(channel_id)
        .fetch_optional(db.pool())
        .await
        .map_err(db_err)?;
        if hit.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// blockSuspiciousDonor: blocks a donor (by account, and the addresses and cards they
/// donated from) on a channel (`*`: everywhere).
pub(crate) async fn block_donor(
    db: &Db,
    channel_id: &str,
    donor_id: &str,
    reason: &str,
    by: &str,
) -> Result<usize, ApiError> {
    let mut keys = vec![format!("user:{donor_id}")];
    let rows = sqlx::query("SELECT DISTINCT card_fingerprint FROM donations WHERE donor_id = $1")
        .bind(donor_id)
        .fetch_all(db.pool())
        .await
        .map_err(db_err)?;
    for r in rows {
        if let Some(card) = r.try_get::<Option<String>, _>(0).map_err(db_err)? {
            keys.push(format!("card:{card}"));
        }
    }
    for key in &keys {
        sqlx::query(
            "INSERT INTO blocked_donors (channel_id, donor_key, reason, blocked_by, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (channel_id, donor_key) DO UPDATE SET reason = $3",
        )
        .bind(channel_id)
        .bind(key)
        .bind(reason)
        .bind(by)
        .bind(now_ms())
        .execute(db.pool())
        .await
        .map_err(db_err)?;
    }
    Ok(keys.len())
}

// ---- gifts ----

/// A virtual gift (the seed's `VirtualGift`).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub(crate) struct Gift {
    /// Id.
    pub(crate) id: String,
    /// The streamer who made it (a custom gift), or none for the platform's.
    pub(crate) owner_id: Option<String>,
    /// Name.
    pub(crate) name: String,
    /// Category (`basic`, `premium`, `custom`).
    pub(crate) category: String,
    /// Price in minor units.
    pub(crate) price: i64,
    /// ISO 4217.
    pub(crate) currency: String,
    /// Picture (a path or https URL).
    pub(crate) image_url: Option<String>,
    /// Animation name the overlay plays.
    pub(crate) animation: Option<String>,
    /// Whether it can be sent.
    pub(crate) active: bool,
}

const GIFT_COLUMNS: &str =
    "SELECT id, owner_id, name, category, price, currency, image_url, animation, active FROM gifts";

fn gift_row(r: &sqlx::any::AnyRow) -> Result<Gift, ApiError> {
    Ok(Gift {
        id: r.try_get(0).map_err(db_err)?,
        owner_id: r.try_get(1).map_err(db_err)?,
        name: r.try_get(2).map_err(db_err)?,
        category: r.try_get(3).map_err(db_err)?,
        price: r.try_get(4).map_err(db_err)?,
        currency: r.try_get(5).map_err(db_err)?,
        image_url: r.try_get(6).map_err(db_err)?,
        animation: r.try_get(7).map_err(db_err)?,
        active: r.try_get::<i64, _>(8).map_err(db_err)? != 0,
    })
}

pub(crate) async fn gift(db: &Db, id: &str) -> Result<Option<Gift>, ApiError> {
    let row = sqlx::query(crate::db::sql(format!("{GIFT_COLUMNS} WHERE id = $1")))
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .map_err(db_err)?;
    row.map(|r| gift_row(&r)).transpose()
}

/// getAvailableGifts: the platform's gifts and the channel's own, by category.
pub(crate) async fn gifts(
    db: &Db,
    channel_id: Option<&str>,
    category: Option<&str>,
) -> Result<Vec<Gift>, ApiError> {
    let rows = sqlx::query(crate::db::sql(format!(
        "{GIFT_COLUMNS} WHERE active = 1 AND (owner_id IS NULL OR owner_id = $1) AND ($2 = '' OR category = $2) \
         ORDER BY price, name LIMIT 200"
    )))
    .bind(channel_id.unwrap_or(""))
    .bind(category.unwrap_or(""))
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    rows.iter().map(gift_row).collect()
}

pub(crate) async fn create_gift(db: &Db, g: &Gift) -> Result<(), ApiError> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM gifts WHERE owner_id = $1")
        .bind(&g.owner_id)
        .fetch_one(db.pool())
        .await
        .map_err(db_err)?;
    if n >= 50 {
        return Err(ApiError::new(
            StreamingErrorCode::Conflict,
            "a channel has at most 50 custom gifts",
        ));
    }
    sqlx::query(
        "INSERT INTO gifts (id, owner_id, name, category, price, currency, image_url, animation, active, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9)",
    )
    .bind(&g.id)
    .bind(&g.owner_id)
    .bind(&g.name)
    .bind(&g.category)
    .bind(g.price)
    .bind(&g.currency)
    .bind(&g.image_url)
    .bind(&g.animation)
    .bind(now_ms())
    .execute(db.pool())
    .await
    .map_err(db_err)?;
    Ok(())
}

// ---- items and keys ----

/// A game key, in-game item or DLC a streamer sells (its keys in a pool).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub(crate) struct Item {
    /// Id.
    pub(crate) id: String,
    /// The streamer.
    pub(crate) owner_id: String,
    /// `game_key`, `in_game_item` or `dlc`.
    pub(crate) kind: DonationType,
    /// Name.
    pub(crate) name: String,
    /// Description.
    pub(crate) description: String,
    /// Price in minor units.
    pub(crate) price: i64,
    /// ISO 4217.
    pub(crate) currency: String,
    /// Whether it is on sale.
    pub(crate) active: bool,
    /// Keys left in the pool.
    pub(crate) available: i64,
}

const ITEM_COLUMNS: &str = "SELECT i.id, i.owner_id, i.kind, i.name, i.description, i.price, i.currency, i.active, \
     (SELECT COUNT(*) FROM item_keys k WHERE k.item_id = i.id AND k.donation_id IS NULL) FROM catalog_items i";

fn item_row(r: &sqlx::any::AnyRow) -> Result<Item, ApiError> {
    Ok(Item {
        id: r.try_get(0).map_err(db_err)?,
        owner_id: r.try_get(1).map_err(db_err)?,
        kind: DonationType::parse(&r.try_get::<String, _>(2).map_err(db_err)?),
        name: r.try_get(3).map_err(db_err)?,
        description: r.try_get(4).map_err(db_err)?,
        price: r.try_get(5).map_err(db_err)?,
        currency: r.try_get(6).map_err(db_err)?,
        active: r.try_get::<i64, _>(7).map_err(db_err)? != 0,
        available: r.try_get(8).map_err(db_err)?,
    })
}

pub(crate) async fn item(db: &Db, id: &str) -> Result<Option<Item>, ApiError> {
    let row = sqlx::query(crate::db::sql(format!("{ITEM_COLUMNS} WHERE i.id = $1")))
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .map_err(db_err)?;
    row.map(|r| item_row(&r)).transpose()
}

pub(crate) async fn items(db: &Db, owner_id: &str) -> Result<Vec<Item>, ApiError> {
    let rows = sqlx::query(crate::db::sql(format!(
        "{ITEM_COLUMNS} WHERE i.owner_id = $1 AND i.active = 1 ORDER BY i.price LIMIT 200"
    )))
    .bind(owner_id)
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    rows.iter().map(item_row).collect()
}

pub(crate) async fn create_item(db: &Db, i: &Item) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO catalog_items (id, owner_id, kind, name, description, price, currency, active, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8)",
    )
    .bind(&i.id)
    .bind(&i.owner_id)
    .bind(i.kind.as_str())
    .bind(&i.name)
    .bind(&i.description)
    .bind(i.price)
    .bind(&i.currency)
    .bind(now_ms())
    .execute(db.pool())
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Adds keys to an item's pool (duplicates within the pool are skipped). The keys are
/// never logged and never returned to the streamer again.
pub(crate) async fn add_keys(db: &Db, item_id: &str, keys: &[String]) -> Result<usize, ApiError> {
    let mut tx = db.begin_write().await?;
    let mut added = 0;
    for key in keys {
        let dup = sqlx::query("SELECT 1 FROM item_keys WHERE item_id = $1 AND secret = $2")
            .bind(item_id)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if dup.is_some() {
            continue;
        }
        sqlx::query(
            "INSERT INTO item_keys (id, item_id, secret, added_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(new_id())
        .bind(item_id)
        .bind(key)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        added += 1;
    }
    tx.commit().await.map_err(db_err)?;
    Ok(added)
}

/// What revealing a key found.
pub(crate) enum Reveal {
    /// The key, shown now for the first and only time.
    Key(String),
    /// Shown before, at this time.
    Already(i64),
    /// No key for this recipient and donation.
    None,
}

/// Reveals the key of a completed item donation to its recipient, once.
pub(crate) async fn reveal_key(
    db: &Db,
    donation_id: &str,
    recipient_id: &str,
) -> Result<Reveal, ApiError> {
    let mut tx = db.begin_write().await?;
    let row = sqlx::query(
        "SELECT k.id, k.secret, k.revealed_at FROM item_keys k JOIN donations d ON d.id = k.donation_id \
         WHERE k.donation_id = $1 AND k.recipient_id = $2 AND d.status = 'completed'",
    )
    .bind(donation_id)
    .bind(recipient_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let Some(row) = row else {
        tx.rollback().await.map_err(db_err)?;
        return Ok(Reveal::None);
    };
    if let Some(at) = row.try_get::<Option<i64>, _>(2).map_err(db_err)? {
        tx.rollback().await.map_err(db_err)?;
        return Ok(Reveal::Already(at));
    }
    let id: String = row.try_get(0).map_err(db_err)?;
    sqlx::query("UPDATE item_keys SET revealed_at = $1 WHERE id = $2 AND revealed_at IS NULL")
        .bind(now_ms())
        .bind(&id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(Reveal::Key(row.try_get(1).map_err(db_err)?))
}

// ---- goals, competitions, challenges ----

/// The seed's `DonationGoal` (also a community goal).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub(crate) struct Goal {
    /// Id.
    pub(crate) id: String,
    /// The streamer.
    #[serde(rename = "streamer_id")]
    pub(crate) channel_id: String,
    /// `donation` or `community`.
    pub(crate) kind: String,
    /// Title.
    pub(crate) title: String,
    /// Description.
    pub(crate) description: String,
    /// Target in minor units.
    pub(crate) target_amount: i64,
    /// Collected so far (completed donations, refunds taken off).
    pub(crate) current_amount: i64,
    /// ISO 4217.
    pub(crate) currency: String,
    /// Unix ms; none: open-ended.
    pub(crate) deadline: Option<i64>,
    /// Whether donations count toward it.
    pub(crate) is_active: bool,
    /// Unix ms.
    pub(crate) created_at: i64,
}

const GOAL_COLUMNS: &str = "SELECT g.id, g.channel_id, g.kind, g.title, g.description, g.target, \
     (SELECT COALESCE(CAST(SUM(c.amount) AS BIGINT), 0) FROM contributions c WHERE c.target_kind = 'goal' AND c.target_id = g.id), \
     g.currency, g.deadline, g.active, g.created_at FROM donation_goals g";

fn goal_row(r: &sqlx::any::AnyRow) -> Result<Goal, ApiError> {
    Ok(Goal {
        id: r.try_get(0).map_err(db_err)?,
        channel_id: r.try_get(1).map_err(db_err)?,
        kind: r.try_get(2).map_err(db_err)?,
        title: r.try_get(3).map_err(db_err)?,
        description: r.try_get(4).map_err(db_err)?,
        target_amount: r.try_get(5).map_err(db_err)?,
        current_amount: r.try_get(6).map_err(db_err)?,
        currency: r.try_get(7).map_err(db_err)?,
        deadline: r.try_get(8).map_err(db_err)?,
        is_active: r.try_get::<i64, _>(9).map_err(db_err)? != 0,
        created_at: r.try_get(10).map_err(db_err)?,
    })
}

pub(crate) async fn goal(db: &Db, id: &str) -> Result<Option<Goal>, ApiError> {
    let row = sqlx::query(crate::db::sql(format!("{GOAL_COLUMNS} WHERE g.id = $1")))
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .map_err(db_err)?;
    row.map(|r| goal_row(&r)).transpose()
}

pub(crate) async fn goals(
    db: &Db,
    channel_id: &str,
    active_only: bool,
) -> Result<Vec<Goal>, ApiError> {
    let rows = sqlx::query(crate::db::sql(format!(
        "{GOAL_COLUMNS} WHERE g.channel_id = $1 AND ($2 = 0 OR g.active = 1) ORDER BY g.created_at DESC LIMIT 100"
    )))
    .bind(channel_id)
    .bind(i64::from(active_only))
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    rows.iter().map(goal_row).collect()
}

pub(crate) async fn create_goal(db: &Db, g: &Goal) -> Result<(), ApiError> {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM donation_goals WHERE channel_id = $1 AND active = 1")
            .bind(&g.channel_id)
            .fetch_one(db.pool())
            .await
            .map_err(db_err)?;
    if n >= 10 {
        return Err(ApiError::new(
            StreamingErrorCode::Conflict,
            "at most 10 active goals per channel",
        ));
    }
    sqlx::query(
        "INSERT INTO donation_goals (id, channel_id, kind, title, description, target, currency, deadline, active, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9)",
    )
    .bind(&g.id)
    .bind(&g.channel_id)
    .bind(&g.kind)
    .bind(&g.title)
    .bind(&g.description)
    .bind(g.target_amount)
    .bind(&g.currency)
    .bind(g.deadline)
    .bind(g.created_at)
    .execute(db.pool())
    .await
    .map_err(db_err)?;
    Ok(())
}

pub(crate) async fn close_goal(db: &Db, channel_id: &str, id: &str) -> Result<bool, ApiError> {
    let r = sqlx::query("UPDATE donation_goals SET active = 0 WHERE id = $1 AND channel_id = $2")
        .bind(id)
        .bind(channel_id)
        .execute(db.pool())
        .await
        .map_err(db_err)?;
    Ok(r.rows_affected() == 1)
}

/// An option of a competition with its live total.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct CompetitionOption {
    /// Id (`a`, `b` ...).
    pub(crate) id: String,
    /// What it stands for.
    pub(crate) label: String,
    /// Donated to it so far (minor units).
    #[serde(default)]
    pub(crate) total: i64,
}

/// startDonationCompetition: options viewers donate for; the overlay shows the totals.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub(crate) struct Competition {
    /// Id.
    pub(crate) id: String,
    /// The streamer.
    pub(crate) channel_id: String,
    /// Title.
    pub(crate) title: String,
    /// Options and totals.
    pub(crate) options: Vec<CompetitionOption>,
    /// Unix ms when donations stop counting.
    pub(crate) ends_at: i64,
    /// Unix ms.
    pub(crate) created_at: i64,
}

pub(crate) async fn competition(db: &Db, id: &str) -> Result<Option<Competition>, ApiError> {
    let row = sqlx::query("SELECT id, channel_id, title, options, ends_at, created_at FROM competitions WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .map_err(db_err)?;
    let Some(r) = row else { return Ok(None) };
    let mut options: Vec<CompetitionOption> =
        serde_json::from_str(&r.try_get::<String, _>(3).map_err(db_err)?).unwrap_or_default();
    let totals: Vec<(String, i64)> = sqlx::query_as(
        "SELECT option_id, CAST(SUM(amount) AS BIGINT) FROM contributions WHERE target_kind = 'competition' \
         AND target_id = $1 GROUP BY option_id",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    for o in &mut options {
        o.total = totals.iter().find(|(k, _)| *k == o.id).map_or(0, |t| t.1);
    }
    Ok(Some(Competition {
        id: r.try_get(0).map_err(db_err)?,
        channel_id: r.try_get(1).map_err(db_err)?,
        title: r.try_get(2).map_err(db_err)?,
        options,
        ends_at: r.try_get(4).map_err(db_err)?,
        created_at: r.try_get(5).map_err(db_err)?,
    }))
}

/// The channel's running competition, if any.
pub(crate) async fn running_competition(
    db: &Db,
    channel_id: &str,
) -> Result<Option<Competition>, ApiError> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT id FROM competitions WHERE channel_id = $1 AND ends_at > $2 ORDER BY created_at DESC LIMIT 1",
    )
    .bind(channel_id)
    .bind(now_ms())
    .fetch_optional(db.pool())
    .await
    .map_err(db_err)?;
    match row {
        Some((id,)) => competition(db, &id).await,
        None => Ok(None),
    }
}

pub(crate) async fn create_competition(db: &Db, c: &Competition) -> Result<(), ApiError> {
    sqlx::query("INSERT INTO competitions (id, channel_id, title, options, ends_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&c.id)
        .bind(&c.channel_id)
        .bind(&c.title)
        .bind(serde_json::to_string(&c.options).unwrap_or_default())
        .bind(c.ends_at)
        .bind(c.created_at)
        .execute(db.pool())
        .await
        .map_err(db_err)?;
    Ok(())
}

/// A viewer challenge: a viewer proposes, donations fund it, the streamer accepts and
/// completes (or declines, which refunds nothing: donations are gifts).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub(crate) struct Challenge {
    /// Id.
    pub(crate) id: String,
    /// The streamer.
    pub(crate) channel_id: String,
    /// Who proposed it.
    pub(crate) proposer_id: String,
    /// What the streamer is challenged to do.
    pub(crate) title: String,
    /// The amount that makes it worth it.
    pub(crate) target_amount: i64,
    /// Donated to it so far.
    pub(crate) current_amount: i64,
    /// ISO 4217.
    pub(crate) currency: String,
    /// `proposed`, `accepted`, `completed` or `declined`.
    pub(crate) status: String,
    /// Unix ms.
    pub(crate) created_at: i64,
}

pub(crate) async fn challenge(db: &Db, id: &str) -> Result<Option<Challenge>, ApiError> {
    let row = sqlx::query(
        "SELECT x.id, x.channel_id, x.proposer_id, x.title, x.target, \
         (SELECT COALESCE(CAST(SUM(c.amount) AS BIGINT), 0) FROM contributions c WHERE c.target_kind = 'challenge' AND c.target_id = x.id), \
         x.currency, x.status, x.created_at FROM challenges x WHERE x.id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await
    .map_err(db_err)?;
    row.map(|r| {
        Ok(Challenge {
            id: r.try_get(0).map_err(db_err)?,
            channel_id: r.try_get(1).map_err(db_err)?,
            proposer_id: r.try_get(2).map_err(db_err)?,
            title: r.try_get(3).map_err(db_err)?,
            target_amount: r.try_get(4).map_err(db_err)?,
            current_amount: r.try_get(5).map_err(db_err)?,
            currency: r.try_get(6).map_err(db_err)?,
            status: r.try_get(7).map_err(db_err)?,
            created_at: r.try_get(8).map_err(db_err)?,
        })
    })
    .transpose()
}

pub(crate) async fn create_challenge(db: &Db, c: &Challenge) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO challenges (id, channel_id, proposer_id, title, target, currency, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'proposed', $7)",
    )
    .bind(&c.id)
    .bind(&c.channel_id)
    .bind(&c.proposer_id)
    .bind(&c.title)
    .bind(c.target_amount)
    .bind(&c.currency)
    .bind(c.created_at)
    .execute(db.pool())
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Moves a challenge: `accept` (from proposed), `complete` (from accepted), `decline`.
pub(crate) async fn decide_challenge(
    db: &Db,
    channel_id: &str,
    id: &str,
    action: &str,
) -> Result<bool, ApiError> {
    let (to, from): (&str, &[&str]) = match action {
        "accept" => ("accepted", &["proposed"]),
        "complete" => ("completed", &["accepted"]),
        "decline" => ("declined", &["proposed", "accepted"]),
        _ => {
            return Err(ApiError::new(
                StreamingErrorCode::ValidationFailed,
                "action: accept, complete or decline",
            ));
        }
    };
    let r = sqlx::query(
        "UPDATE challenges SET status = $1, decided_at = $2 WHERE id = $3 AND channel_id = $4 AND status IN ($5, $6)",
    )
    .bind(to)
    .bind(now_ms())
    .bind(id)
    .bind(channel_id)
    .bind(from[0])
    .bind(from.get(1).copied().unwrap_or(from[0]))
    .execute(db.pool())
    .await
    .map_err(db_err)?;
    Ok(r.rows_affected() == 1)
}

// ---- requests and highlights ----

/// A song or game request in the streamer's queue.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub(crate) struct QueuedRequest {
    /// Id.
    pub(crate) id: String,
    /// The donation that paid for it.
    pub(crate) donation_id: String,
    /// `song` or `game`.
    pub(crate) kind: String,
    /// What was asked for.
    pub(crate) text: String,
    /// A link.
    pub(crate) link: Option<String>,
    /// `queued`, `approved`, `skipped` or `refunded`.
    pub(crate) status: String,
    /// Who asked.
    pub(crate) donor_name: String,
    /// What it paid (minor units).
    pub(crate) amount: i64,
    /// Unix ms.
    pub(crate) created_at: i64,
}

pub(crate) async fn requests(
    db: &Db,
    channel_id: &str,
    status: Option<&str>,
) -> Result<Vec<QueuedRequest>, ApiError> {
    let rows = sqlx::query(
        "SELECT r.id, r.donation_id, r.kind, r.text, r.link, r.status, d.donor_name, d.amount, r.created_at \
         FROM donation_requests r JOIN donations d ON d.id = r.donation_id WHERE r.channel_id = $1 \
         AND ($2 = '' OR r.status = $2) ORDER BY r.created_at LIMIT 200",
    )
    .bind(channel_id)
    .bind(status.unwrap_or(""))
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(QueuedRequest {
                id: r.try_get(0).map_err(db_err)?,
                donation_id: r.try_get(1).map_err(db_err)?,
                kind: r.try_get(2).map_err(db_err)?,
                text: r.try_get(3).map_err(db_err)?,
                link: r.try_get(4).map_err(db_err)?,
                status: r.try_get(5).map_err(db_err)?,
                donor_name: r.try_get(6).map_err(db_err)?,
                amount: r.try_get(7).map_err(db_err)?,
                created_at: r.try_get(8).map_err(db_err)?,
            })
        })
        .collect()
}

/// Approves or skips a queued request; returns its donation id (for a refund) when it was
/// queued.
pub(crate) async fn decide_request(
    db: &Db,
    channel_id: &str,
    id: &str,
    status: &str,
) -> Result<Option<String>, ApiError> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT donation_id FROM donation_requests WHERE id = $1 AND channel_id = $2 AND status = 'queued'",
    )
    .bind(id)
    .bind(channel_id)
    .fetch_optional(db.pool())
    .await
    .map_err(db_err)?;
    if row.is_some() && status != "refunded" {
        sqlx::query("UPDATE donation_requests SET status = $1, decided_at = $2 WHERE id = $3 AND status = 'queued'")
            .bind(status)
            .bind(now_ms())
            .bind(id)
            .execute(db.pool())
            .await
            .map_err(db_err)?;
    }
    Ok(row.map(|r| r.0))
}

/// A moment marked by a donation (highlightMoment), for the recordings to clip.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub(crate) struct Highlight {
    /// Id.
    pub(crate) id: String,
    /// The stream that was live.
    pub(crate) stream_id: Option<String>,
    /// Wall-clock Unix ms of the moment.
    pub(crate) at_ms: i64,
    /// The donor's note.
    pub(crate) note: String,
    /// The donation.
    pub(crate) donation_id: String,
    /// The clip cut around the moment from the recording in progress (`/api/v1/recordings/{id}`).
    pub(crate) clip_id: Option<String>,
}

pub(crate) async fn highlights(db: &Db, channel_id: &str) -> Result<Vec<Highlight>, ApiError> {
    let rows = sqlx::query(
        "SELECT h.id, h.stream_id, h.at_ms, h.note, h.donation_id, h.clip_id FROM highlights h JOIN donations d ON d.id = h.donation_id \
         WHERE h.channel_id = $1 AND d.status = 'completed' ORDER BY h.at_ms DESC LIMIT 200",
    )
    .bind(channel_id)
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(Highlight {
                id: r.try_get(0).map_err(db_err)?,
                stream_id: r.try_get(1).map_err(db_err)?,
                at_ms: r.try_get(2).map_err(db_err)?,
                note: r.try_get(3).map_err(db_err)?,
                donation_id: r.try_get(4).map_err(db_err)?,
                clip_id: r.try_get(5).map_err(db_err)?,
            })
        })
        .collect()
}

// ---- effects of a completed donation ----

async fn contribute(
    tx: &mut Tx,
    kind: &str,
    target: &str,
    d: &Donation,
    option: &str,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO contributions (target_kind, target_id, donation_id, option_id, amount) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT DO NOTHING",
    )
    .bind(kind)
    .bind(target)
    .bind(&d.id)
    .bind(option)
    .bind(d.amount)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// What a completed donation changes besides money, in the crediting transaction.
pub(crate) async fn apply_effects(tx: &mut Tx, d: &Donation, now: i64) -> Result<(), ApiError> {
    let p = &d.purpose;
    let goal_ids: Vec<String> = match p.get("goal_id").and_then(Value::as_str) {
        Some(g) => vec![g.to_owned()],
        None => sqlx::query_as::<_, (String,)>(
            "SELECT id FROM donation_goals WHERE channel_id = $1 AND active = 1 AND kind = 'donation' \
             AND currency = $2 AND (deadline IS NULL OR deadline > $3)",
        )
        .bind(&d.streamer_id)
        .bind(&d.currency)
        .bind(now)
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(|r| r.0)
        .collect(),
    };
    for g in goal_ids {
        contribute(tx, "goal", &g, d, "").await?;
    }
    if let Some(c) = p.get("competition") {
        let (id, option) = (
            c.get("id").and_then(Value::as_str).unwrap_or_default(),
            c.get("option_id")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        contribute(tx, "competition", id, d, option).await?;
    }
    if let Some(ch) = p.get("challenge_id").and_then(Value::as_str) {
        contribute(tx, "challenge", ch, d, "").await?;
    }
    if let Some(r) = p.get("request") {
        sqlx::query(
            "INSERT INTO donation_requests (id, channel_id, donation_id, kind, text, link, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7) ON CONFLICT (donation_id) DO NOTHING",
        )
        .bind(new_id())
        .bind(&d.streamer_id)
        .bind(&d.id)
        .bind(r.get("kind").and_then(Value::as_str).unwrap_or("song"))
        .bind(r.get("text").and_then(Value::as_str).unwrap_or_default())
        .bind(r.get("link").and_then(Value::as_str))
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    if let Some(h) = p.get("highlight") {
        sqlx::query(
            "INSERT INTO highlights (id, channel_id, stream_id, at_ms, donation_id, note, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $4) ON CONFLICT (donation_id) DO NOTHING",
        )
        .bind(new_id())
        .bind(&d.streamer_id)
        .bind(&d.stream_id)
        .bind(now)
        .bind(&d.id)
        .bind(h.get("note").and_then(Value::as_str).unwrap_or_default())
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    if let Some(item) = p.get("item") {
        let recipient = item
            .get("recipient_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let item_id = item.get("id").and_then(Value::as_str).unwrap_or_default();
        let set = sqlx::query("UPDATE item_keys SET recipient_id = $1 WHERE donation_id = $2")
            .bind(recipient)
            .bind(&d.id)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        if set.rows_affected() == 0 {
            // The reservation lapsed (the payment came after the timeout): take a free key.
            let free: Option<(String,)> = sqlx::query_as(
                "SELECT id FROM item_keys WHERE item_id = $1 AND donation_id IS NULL ORDER BY added_at LIMIT 1",
            )
            .bind(item_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
            match free {
                Some((key,)) => {
                    sqlx::query("UPDATE item_keys SET donation_id = $1, recipient_id = $2 WHERE id = $3 AND donation_id IS NULL")
                        .bind(&d.id)
                        .bind(recipient)
                        .bind(&key)
                        .execute(&mut **tx)
                        .await
                        .map_err(db_err)?;
                }
                None => {
                    tracing::warn!(donation = %d.id, "an item donation was paid after its key went back and none is left")
                }
            }
        }
    }
    Ok(())
}

/// Undoes [`apply_effects`] for a refunded or charged-back donation.
pub(crate) async fn reverse_effects(tx: &mut Tx, d: &Donation) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM contributions WHERE donation_id = $1")
        .bind(&d.id)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    sqlx::query(
        "UPDATE donation_requests SET status = 'refunded', decided_at = $1 WHERE donation_id = $2",
    )
    .bind(now_ms())
    .bind(&d.id)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    // A key not yet shown goes back to the pool; a shown one is spent.
    sqlx::query(
        "UPDATE item_keys SET donation_id = NULL, recipient_id = NULL WHERE donation_id = $1 AND revealed_at IS NULL",
    )
    .bind(&d.id)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The goals a donation counted toward (for the overlay).
pub(crate) async fn goals_touched(db: &Db, d: &Donation) -> Result<Vec<Goal>, ApiError> {
    let rows = sqlx::query(crate::db::sql(format!(
        "{GOAL_COLUMNS} WHERE g.channel_id = $1 AND (g.id IN (SELECT target_id FROM contributions WHERE \
         target_kind = 'goal' AND donation_id = $2) OR g.id = $3)"
    )))
    .bind(&d.streamer_id)
    .bind(&d.id)
    .bind(d.purpose.get("goal_id").and_then(Value::as_str).unwrap_or(""))
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    let mut goals: Vec<Goal> = rows.iter().map(goal_row).collect::<Result<_, _>>()?;
    if goals.is_empty() && d.status == DonationStatus::Refunded {
        // After a refund the contributions are gone: the channel's active goals show the
        // totals without it.
        goals = self::goals(db, &d.streamer_id, true).await?;
    }
    Ok(goals)
}

/// The competition a donation counted toward.
pub(crate) async fn competition_touched(
    db: &Db,
    d: &Donation,
) -> Result<Option<Competition>, ApiError> {
    match d
        .purpose
        .get("competition")
        .and_then(|c| c.get("id"))
        .and_then(Value::as_str)
    {
        Some(id) => competition(db, id).await,
        None => Ok(None),
    }
}

/// A donation as the public (overlay, chat) sees it: no donor id, no split.
pub(crate) fn public_donation(d: &Donation) -> Value {
    json!({"id": d.id, "channel": d.channel, "donor_name": d.donor_name, "amount": d.amount,
        "currency": d.currency, "message": d.message, "type": d.kind, "is_anonymous": d.is_anonymous,
        "gift": d.purpose.get("gift"), "timestamp": d.timestamp})
}

/// The chat line of a donation without a message.
pub(crate) fn describe(d: &Donation) -> String {
    let amount = format!("{}.{:02} {}", d.amount / 100, d.amount % 100, d.currency);
    match d
        .purpose
        .get("gift")
        .and_then(|g| g.get("name"))
        .and_then(Value::as_str)
    {
        Some(g) => format!("🎁 {g} ({amount})"),
        None => format!("💸 {amount}"),
    }
}

// ---- history and analytics ----

/// The start of a period (`day`, `week`, `month`, `year`, `all`) in Unix ms.
pub(crate) fn period_start(period: &str, now: i64) -> Result<i64, ApiError> {
    let day = 86_400_000;
    Ok(match period {
        "day" => now - day,
        "week" => now - 7 * day,
        "month" => now - 30 * day,
        "year" => now - 365 * day,
        "all" => 0,
        _ => {
            return Err(ApiError::new(
                StreamingErrorCode::ValidationFailed,
                "period: day, week, month, year or all",
            ));
        }
    })
}

/// Totals of one kind of donation.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct TypeTotal {
    /// The type.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// Donations.
    pub(crate) count: i64,
    /// Minor units.
    pub(crate) total: i64,
}

/// One day's totals.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct DayTotal {
    /// The day's start, Unix ms (UTC).
    pub(crate) day: i64,
    /// Donations.
    pub(crate) count: i64,
    /// Minor units.
    pub(crate) total: i64,
}

/// getDonationAnalytics.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct DonationAnalytics {
    /// The period asked for.
    pub(crate) period: String,
    /// Its start, Unix ms.
    pub(crate) from: i64,
    /// ISO 4217.
    pub(crate) currency: String,
    /// Completed donations.
    pub(crate) count: i64,
    /// Their sum.
    pub(crate) total: i64,
    /// What the streamer kept of it.
    pub(crate) streamer_total: i64,
    /// Average donation.
    pub(crate) average: i64,
    /// Largest donation.
    pub(crate) largest: i64,
    /// Different donors (anonymous ones counted by account or address).
    pub(crate) unique_donors: i64,
    /// Refunded or charged back in the period.
    pub(crate) refunded_count: i64,
    /// Their sum.
    pub(crate) refunded_total: i64,
    /// Donations per hour over the period.
    pub(crate) donations_per_hour: f64,
    /// By type.
    pub(crate) by_type: Vec<TypeTotal>,
    /// By day.
    pub(crate) by_day: Vec<DayTotal>,
}

pub(crate) async fn analytics(
    db: &Db,
    channel_id: &str,
    period: &str,
    currency: &str,
) -> Result<DonationAnalytics, ApiError> {
    let now = now_ms();
    let from = period_start(period, now)?;
    let (count, total, share, largest, donors): (i64, Option<i64>, Option<i64>, Option<i64>, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(SUM(amount) AS BIGINT), CAST(SUM(streamer_share) AS BIGINT), MAX(amount), COUNT(DISTINCT donor_key) \
         FROM donations WHERE channel_id = $1 AND currency = $2 AND status = 'completed' AND created_at >= $3",
    )
    .bind(channel_id)
    .bind(currency)
    .bind(from)
    .fetch_one(db.pool())
    .await
    .map_err(db_err)?;
    let (refunded_count, refunded_total): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), CAST(SUM(amount) AS BIGINT) FROM donations WHERE channel_id = $1 AND currency = $2 \
         AND status = 'refunded' AND created_at >= $3",
    )
    .bind(channel_id)
    .bind(currency)
    .bind(from)
    .fetch_one(db.pool())
    .await
    .map_err(db_err)?;
    let by_type: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT kind, COUNT(*), CAST(SUM(amount) AS BIGINT) FROM donations WHERE channel_id = $1 AND currency = $2 \
         AND status = 'completed' AND created_at >= $3 GROUP BY kind ORDER BY kind",
    )
    .bind(channel_id)
    .bind(currency)
    .bind(from)
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    let by_day: Vec<(i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT (created_at / 86400000) * 86400000 AS day, COUNT(*), CAST(SUM(amount) AS BIGINT) FROM donations \
         WHERE channel_id = $1 AND currency = $2 AND status = 'completed' AND created_at >= $3 \
         GROUP BY (created_at / 86400000) ORDER BY day LIMIT 400",
    )
    .bind(channel_id)
    .bind(currency)
    .bind(from)
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    let first: Option<(Option<i64>,)> = sqlx::query_as(
        "SELECT MIN(created_at) FROM donations WHERE channel_id = $1 AND status = 'completed' AND created_at >= $2",
    )
    .bind(channel_id)
    .bind(from)
    .fetch_optional(db.pool())
    .await
    .map_err(db_err)?;
    let span_start = first.and_then(|f| f.0).unwrap_or(now).max(from);
    let hours = ((now - span_start) as f64 / 3_600_000.0).max(1.0);
    let total = total.unwrap_or(0);
    Ok(DonationAnalytics {
        period: period.to_owned(),
        from,
        currency: currency.to_owned(),
        count,
        total,
        streamer_total: share.unwrap_or(0),
        average: if count > 0 { total / count } else { 0 },
        largest: largest.unwrap_or(0),
        unique_donors: donors,
        refunded_count,
        refunded_total: refunded_total.unwrap_or(0),
        donations_per_hour: (count as f64 / hours * 100.0).round() / 100.0,
        by_type: by_type
            .into_iter()
            .map(|(kind, count, total)| TypeTotal {
                kind,
                count,
                total: total.unwrap_or(0),
            })
            .collect(),
        by_day: by_day
            .into_iter()
            .map(|(day, count, total)| DayTotal {
                day,
                count,
                total: total.unwrap_or(0),
            })
            .collect(),
    })
}

/// getTopDonors.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct TopDonor {
    /// Name shown.
    pub(crate) donor_name: String,
    /// Donations.
    pub(crate) count: i64,
    /// Minor units.
    pub(crate) total: i64,
}

pub(crate) async fn top_donors(
    db: &Db,
    channel_id: &str,
    period: &str,
    currency: &str,
    limit: i64,
) -> Result<Vec<TopDonor>, ApiError> {
    let from = period_start(period, now_ms())?;
    let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT MAX(donor_name), COUNT(*), CAST(SUM(amount) AS BIGINT) AS total FROM donations WHERE channel_id = $1 \
         AND currency = $2 AND status = 'completed' AND anonymous = 0 AND created_at >= $3 \
         GROUP BY donor_key ORDER BY total DESC LIMIT $4",
    )
    .bind(channel_id)
    .bind(currency)
    .bind(from)
    .bind(limit)
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    Ok(rows
        .into_iter()
        .map(|(donor_name, count, total)| TopDonor {
            donor_name,
            count,
            total: total.unwrap_or(0),
        })
        .collect())
}

/// getDonationHistory: newest first, `before` for the next page.
pub(crate) async fn history(
    db: &Db,
    channel_id: &str,
    period: &str,
    status: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Donation>, ApiError> {
    let from = period_start(period, now_ms())?;
    let rows = sqlx::query(crate::db::sql(format!(
        "{} WHERE channel_id = $1 AND created_at >= $2 AND created_at < $3 AND ($4 = '' OR status = $4) \
         ORDER BY created_at DESC LIMIT $5",
        super::DONATION_COLUMNS
    )))
    .bind(channel_id)
    .bind(from)
    .bind(before.unwrap_or(i64::MAX))
    .bind(status.unwrap_or(""))
    .bind(limit)
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    rows.iter().map(super::donation_row).collect()
}

/// Donations a signed-in donor made, newest first.
pub(crate) async fn donor_history(
    db: &Db,
    donor_id: &str,
    limit: i64,
) -> Result<Vec<Donation>, ApiError> {
    let rows = sqlx::query(crate::db::sql(format!(
        "{} WHERE donor_id = $1 ORDER BY created_at DESC LIMIT $2",
        super::DONATION_COLUMNS
    )))
    .bind(donor_id)
    .bind(limit)
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    let mut out: Vec<Donation> = rows
        .iter()
        .map(super::donation_row)
        .collect::<Result<_, _>>()?;
    for d in &mut out {
        // The donor sees their own id even on anonymous donations.
        d.donor_id = Some(donor_id.to_owned());
    }
    Ok(out)
}
