//! The subscriptions area's REST operations (operation ids: the seed's method names in
//! snake_case).

// utoipa's generated code names parameter types with their full paths.
#![allow(unused_qualifications)]

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{BadgeDesign, HistoryEntry, RenewalRun, Subscription, Tier, TierPrivileges};
use crate::App;
use crate::api::{Body, Caller, Params, require};
use crate::error::{ApiError, StreamingErrorCode};
use crate::model::{User, UserRole, now_ms};
use crate::payments::routes::{admin_or_cluster, channel_user, owned_channel, text_field};
use crate::payments::{Confirmation, PaymentMethod};

fn invalid(why: impl Into<String>) -> ApiError {
    ApiError::new(StreamingErrorCode::ValidationFailed, why)
}

fn check_badge(b: &BadgeDesign) -> Result<BadgeDesign, ApiError> {
    let label = text_field("badge.label", &b.label, 1, 16)?;
    let c = b.color.as_bytes();
    if c.len() != 7 || c[0] != b'#' || !c[1..].iter().all(u8::is_ascii_hexdigit) {
        return Err(invalid("badge.color: #RRGGBB"));
    }
    Ok(BadgeDesign {
        label,
        color: b.color.clone(),
    })
}

fn check_emotes(e: &[String]) -> Result<(), ApiError> {
    if e.len() > 50 {
        return Err(invalid("exclusive_emotes: at most 50"));
    }
    for code in e {
        if !(2..=32).contains(&code.len())
            || !code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(invalid(
                "exclusive_emotes: codes of 2-32 letters, digits or '_'",
            ));
        }
    }
    Ok(())
}

fn check_price(p: i64) -> Result<i64, ApiError> {
    if !(super::MIN_CHARGE..=10_000_000).contains(&p) {
        return Err(invalid("price: 100-10000000 minor units"));
    }
    Ok(p)
}

/// A new tier (the seed's `SubscriptionTierData`; RUB).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TierInput {
    /// 1-40 characters.
    #[schema(
        min_length = 1,
        max_length = 40,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub(crate) name: String,
    /// Monthly price in minor units (kopecks).
    #[serde(deserialize_with = "crate::api::whole")]
    #[schema(value_type = i64, minimum = 100, maximum = 10000000)]
    pub(crate) price: i64,
    /// What it gives.
    #[serde(default)]
    pub(crate) privileges: TierPrivileges,
    /// The badge.
    pub(crate) badge: BadgeDesign,
    /// Emote codes only its subscribers use (at most 50).
    #[serde(default)]
    #[schema(max_items = 50, value_type = Vec<String>)]
    pub(crate) exclusive_emotes: Vec<String>,
}

/// Changes to a tier (the seed's `updateTierPrivileges`); absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TierPatch {
    /// 1-40 characters.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 40,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub(crate) name: Option<String>,
    /// Monthly price in minor units (from each subscriber's next renewal).
    #[serde(default, deserialize_with = "crate::api::whole_opt")]
    #[schema(value_type = i64, minimum = 100, maximum = 10000000)]
    pub(crate) price: Option<i64>,
    /// What it gives.
    #[serde(default)]
    pub(crate) privileges: Option<TierPrivileges>,
    /// The badge.
    #[serde(default)]
    pub(crate) badge: Option<BadgeDesign>,
    /// Emote codes only its subscribers use.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub(crate) exclusive_emotes: Option<Vec<String>>,
    /// Whether it is sold.
    #[serde(default)]
    pub(crate) active: Option<bool>,
}

/// A channel's subscription tiers (the seed's three by default).
#[utoipa::path(get, path = "/api/v1/channels/{name}/subscription-tiers", tag = "subscriptions",
    operation_id = "get_subscription_tiers", params(("name" = String, Path, description = "The channel")),
    responses((status = 200, body = [Tier]), (status = 404, body = ApiError)))]
pub(crate) async fn get_subscription_tiers(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Tier>>, ApiError> {
    let channel = channel_user(&app, &name).await?;
    Ok(Json(app.subscriptions.tiers(&channel).await?))
}

/// Add a tier to one's channel (the seed's `createSubscriptionTier`).
#[utoipa::path(post, path = "/api/v1/channels/{name}/subscription-tiers", tag = "subscriptions",
    operation_id = "create_subscription_tier", security(("token" = [])), request_body = TierInput,
    params(("name" = String, Path, description = "The channel")),
    responses((status = 201, body = Tier), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn create_subscription_tier(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Body(mut b): Body<TierInput>,
) -> Result<(StatusCode, Json<Tier>), ApiError> {
    let channel = owned_channel(&app, &caller, &name).await?;
    b.name = text_field("name", &b.name, 1, 40)?;
    check_price(b.price)?;
    b.badge = check_badge(&b.badge)?;
    check_emotes(&b.exclusive_emotes)?;
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM subscription_tiers WHERE channel_id = $1")
            .bind(&channel.id)
            .fetch_one(app.db.pool())
            .await
            .map_err(super::repo::db_err)?;
    if n >= 10 {
        return Err(ApiError::new(
            StreamingErrorCode::Conflict,
            "at most 10 tiers per channel",
        ));
    }
    let tier = app.subscriptions.create_tier(&channel, &b).await?;
    Ok((StatusCode::CREATED, Json(tier)))
}

/// Change a tier's name, price, privileges, badge or emotes (the seed's `updateTierPrivileges`).
#[utoipa::path(patch, path = "/api/v1/subscription-tiers/{id}", tag = "subscriptions",
    operation_id = "update_tier_privileges", security(("token" = [])), request_body = TierPatch,
    params(("id" = String, Path, description = "Tier id")),
    responses((status = 200, body = Tier), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn update_tier_privileges(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(mut b): Body<TierPatch>,
) -> Result<Json<Tier>, ApiError> {
    let (_, channel_id) = app
        .subscriptions
        .tier(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("tier"))?;
    require(
        channel_id == caller.id || caller.role == UserRole::Admin,
        "only the channel's streamer may do this",
    )?;
    if let Some(n) = &b.name {
        b.name = Some(text_field("name", n, 1, 40)?);
    }
    if let Some(p) = b.price {
        check_price(p)?;
    }
    if let Some(badge) = &b.badge {
        b.badge = Some(check_badge(badge)?);
    }
    if let Some(e) = &b.exclusive_emotes {
        check_emotes(e)?;
    }
    Ok(Json(app.subscriptions.update_tier(&id, &b).await?))
}

/// What to subscribe with.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscribeBody {
    /// The tier.
    #[schema(min_length = 1, max_length = 64)]
    tier_id: String,
    /// `bank_card` (default) or `sbp`; the method is saved for the monthly renewals.
    #[serde(default)]
    method: PaymentMethod,
    /// The page the payer returns to (this site's path or `payments.public_url`).
    #[serde(default)]
    #[schema(max_length = 512)]
    return_url: Option<String>,
}

/// A subscription as its payer gets it: with where to pay.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SubscriptionStarted {
    /// The subscription (`incomplete` until paid).
    subscription: Subscription,
    /// Where the payer confirms the first payment.
    confirmation: Option<Confirmation>,
}

fn confirmation(url: Option<String>) -> Option<Confirmation> {
    url.map(|url| Confirmation {
        kind: "redirect".into(),
        url,
    })
}

/// Subscribe to a channel (the seed's `subscribeToStreamer`): the first month is paid at the
/// provider, which saves the payment method; every period after renews by itself.
#[utoipa::path(post, path = "/api/v1/channels/{name}/subscriptions", tag = "subscriptions",
    operation_id = "subscribe_to_streamer", security(("token" = [])), request_body = SubscribeBody,
    params(("name" = String, Path, description = "The channel")),
    responses((status = 201, body = SubscriptionStarted), (status = 401, body = ApiError),
        (status = 402, description = "PAYMENT_FAILED", body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, description = "Already subscribed", body = ApiError),
        (status = 422, body = ApiError)))]
pub(crate) async fn subscribe_to_streamer(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Body(b): Body<SubscribeBody>,
) -> Result<(StatusCode, Json<SubscriptionStarted>), ApiError> {
    let channel = channel_user(&app, &name).await?;
    let (subscription, url) = app
        .subscriptions
        .subscribe(
            &channel,
            &caller,
            &b.tier_id,
            b.method,
            b.return_url.as_deref(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SubscriptionStarted {
            subscription,
            confirmation: confirmation(url),
        }),
    ))
}

/// A page of subscribers.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct Page {
    /// At most this many (1-500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// A channel's subscribers (its streamer).
#[utoipa::path(get, path = "/api/v1/channels/{name}/subscribers", tag = "subscriptions",
    operation_id = "get_channel_subscribers", security(("token" = [])),
    params(("name" = String, Path, description = "The channel"), Page),
    responses((status = 200, body = [Subscription]), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn get_channel_subscribers(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Params(p): Params<Page>,
) -> Result<Json<Vec<Subscription>>, ApiError> {
    let channel = owned_channel(&app, &caller, &name).await?;
    let limit = p.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(invalid("limit: 1-500"));
    }
    Ok(Json(app.subscriptions.subscribers(&channel, limit).await?))
}

/// A subscription its subscriber, its channel's streamer or an admin may see.
async fn visible(app: &App, id: &str, caller: &User) -> Result<super::repo::SubRow, ApiError> {
    let s = app
        .subscriptions
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found("subscription"))?;
    if s.sub.user_id != caller.id && s.channel_id != caller.id && caller.role != UserRole::Admin {
        return Err(ApiError::not_found("subscription"));
    }
    Ok(s)
}

/// A subscription.
#[utoipa::path(get, path = "/api/v1/subscriptions/{id}", tag = "subscriptions",
    operation_id = "get_subscription", security(("token" = [])),
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, body = Subscription), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn get_subscription(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Subscription>, ApiError> {
    Ok(Json(visible(&app, &id, &caller).await?.sub))
}

/// Why one cancels.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelBody {
    /// 1-300 characters.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 300,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    reason: Option<String>,
}

/// Cancel a subscription (the seed's `cancelSubscription`): it stays until the end of the
/// paid period and is not renewed.
#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/cancel", tag = "subscriptions",
    operation_id = "cancel_subscription", security(("token" = [])), request_body = CancelBody,
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, body = Subscription), (status = 401, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn cancel_subscription(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(b): Body<CancelBody>,
) -> Result<Json<Subscription>, ApiError> {
    let s = app.subscriptions.own(&id, &caller).await?;
    let reason = b
        .reason
        .as_deref()
        .map(|r| text_field("reason", r, 1, 300))
        .transpose()?;
    Ok(Json(app.subscriptions.cancel(&s, reason.as_deref()).await?))
}

/// The tier to upgrade to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpgradeBody {
    /// A more expensive tier of the same channel.
    #[schema(min_length = 1, max_length = 64)]
    tier_id: String,
}

/// What an upgrade did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UpgradeResult {
    /// The subscription (its new tier once the charge is paid).
    subscription: Subscription,
    /// Charged: the price difference times the part of the period left, rounded down to
    /// the kopeck (0 below 1 ₽: free).
    prorated_amount: i64,
    /// The time the proration was computed for (Unix milliseconds).
    at: i64,
    /// The charge (a donation of type `subscription`).
    charge_id: Option<String>,
}

/// Upgrade to a more expensive tier now (the seed's `upgradeSubscription`): the difference
/// for the rest of the period is charged to the saved payment method.
#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/upgrade", tag = "subscriptions",
    operation_id = "upgrade_subscription", security(("token" = [])), request_body = UpgradeBody,
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, body = UpgradeResult), (status = 401, body = ApiError),
        (status = 402, description = "PAYMENT_FAILED", body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn upgrade_subscription(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(b): Body<UpgradeBody>,
) -> Result<Json<UpgradeResult>, ApiError> {
    let s = app.subscriptions.own(&id, &caller).await?;
    let payer = app
        .db
        .user(&s.sub.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("subscriber"))?;
    let (subscription, prorated_amount, at, charge_id) =
        app.subscriptions.upgrade(&s, &b.tier_id, &payer).await?;
    Ok(Json(UpgradeResult {
        subscription,
        prorated_amount,
        at,
        charge_id,
    }))
}

/// A gift to one viewer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GiftBody {
    /// The recipient's username.
    #[schema(min_length = 1, max_length = 64)]
    recipient: String,
    /// The tier.
    #[schema(min_length = 1, max_length = 64)]
    tier_id: String,
    /// Months (1-12, default 1).
    #[serde(default = "one", deserialize_with = "crate::api::whole")]
    #[schema(value_type = i64, minimum = 1, maximum = 12)]
    months: i64,
    /// `bank_card` (default) or `sbp`.
    #[serde(default)]
    method: PaymentMethod,
    /// The page the payer returns to.
    #[serde(default)]
    #[schema(max_length = 512)]
    return_url: Option<String>,
}

fn one() -> i64 {
    1
}

/// A gift series: `count` viewers present in the chat.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeriesBody {
    /// The tier.
    #[schema(min_length = 1, max_length = 64)]
    tier_id: String,
    /// How many (1-100).
    #[serde(deserialize_with = "crate::api::whole")]
    #[schema(value_type = i64, minimum = 1, maximum = 100)]
    count: i64,
    /// `bank_card` (default) or `sbp`.
    #[serde(default)]
    method: PaymentMethod,
    /// The page the payer returns to.
    #[serde(default)]
    #[schema(max_length = 512)]
    return_url: Option<String>,
}

/// A recipient of a gift.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Recipient {
    user_id: String,
    username: String,
}

/// A gift as its giver gets it: with where to pay.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GiftStarted {
    /// The charge (a donation of type `subscription`).
    charge_id: String,
    /// Minor units: the tier's price × months × recipients.
    amount: i64,
    /// Months each.
    months: i64,
    /// Who gets it once it is paid.
    recipients: Vec<Recipient>,
    /// Where the giver confirms.
    confirmation: Option<Confirmation>,
}

/// Give a subscription to a viewer (the seed's `giftSubscription`): the giver pays; the
/// recipient gets `months` (added to a running subscription).
#[utoipa::path(post, path = "/api/v1/channels/{name}/gift-subscriptions", tag = "subscriptions",
    operation_id = "gift_subscription", security(("token" = [])), request_body = GiftBody,
    params(("name" = String, Path, description = "The channel")),
    responses((status = 201, body = GiftStarted), (status = 401, body = ApiError),
        (status = 402, description = "PAYMENT_FAILED", body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn gift_subscription(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Body(b): Body<GiftBody>,
) -> Result<(StatusCode, Json<GiftStarted>), ApiError> {
    let channel = channel_user(&app, &name).await?;
    if !(1..=12).contains(&b.months) {
        return Err(invalid("months: 1-12"));
    }
    let recipient = channel_user(&app, &b.recipient)
        .await
        .map_err(|_| ApiError::not_found("recipient"))?;
    if recipient.id == channel.id || recipient.id == caller.id {
        return Err(ApiError::new(
            StreamingErrorCode::Forbidden,
            "a gift goes to another viewer of the channel",
        ));
    }
    let recipients = vec![recipient];
    started(
        &app,
        &channel,
        &caller,
        &b.tier_id,
        recipients,
        b.months,
        b.method,
        b.return_url,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn started(
    app: &App,
    channel: &User,
    caller: &User,
    tier: &str,
    recipients: Vec<User>,
    months: i64,
    method: PaymentMethod,
    return_url: Option<String>,
) -> Result<(StatusCode, Json<GiftStarted>), ApiError> {
    let (charge_id, amount, url) = app
        .subscriptions
        .gift(
            channel,
            caller,
            tier,
            &recipients,
            months,
            method,
            return_url.as_deref(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(GiftStarted {
            charge_id,
            amount,
            months,
            recipients: recipients
                .into_iter()
                .map(|u| Recipient {
                    user_id: u.id,
                    username: u.username,
                })
                .collect(),
            confirmation: confirmation(url),
        }),
    ))
}

/// Give one month to `count` random viewers present in the channel's chat who are not
/// subscribed (the seed's `handleGiftSubscriptionSeries`); fewer when fewer are there.
#[utoipa::path(post, path = "/api/v1/channels/{name}/gift-subscriptions/series", tag = "subscriptions",
    operation_id = "handle_gift_subscription_series", security(("token" = [])), request_body = SeriesBody,
    params(("name" = String, Path, description = "The channel")),
    responses((status = 201, body = GiftStarted), (status = 401, body = ApiError),
        (status = 402, description = "PAYMENT_FAILED", body = ApiError), (status = 404, body = ApiError),
        (status = 409, description = "Nobody eligible is in the chat", body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn handle_gift_subscription_series(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Body(b): Body<SeriesBody>,
) -> Result<(StatusCode, Json<GiftStarted>), ApiError> {
    let channel = channel_user(&app, &name).await?;
    if !(1..=100).contains(&b.count) {
        return Err(invalid("count: 1-100"));
    }
    let recipients = app
        .subscriptions
        .eligible_viewers(&channel, &caller, b.count as usize)
        .await?;
    if recipients.is_empty() {
        return Err(ApiError::new(
            StreamingErrorCode::Conflict,
            "nobody in the chat can receive a gift now",
        ));
    }
    started(
        &app,
        &channel,
        &caller,
        &b.tier_id,
        recipients,
        1,
        b.method,
        b.return_url,
    )
    .await
}

/// How long to pause.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PauseBody {
    /// Days (1-90); it resumes by itself after them.
    #[serde(deserialize_with = "crate::api::whole")]
    #[schema(value_type = i64, minimum = 1, maximum = 90)]
    days: i64,
}

/// Pause a subscription (the seed's `pauseSubscription`): no privileges and no renewal while
/// paused; the period's end moves by the time paused.
#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/pause", tag = "subscriptions",
    operation_id = "pause_subscription", security(("token" = [])), request_body = PauseBody,
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, body = Subscription), (status = 401, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn pause_subscription(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(b): Body<PauseBody>,
) -> Result<Json<Subscription>, ApiError> {
    if !(1..=90).contains(&b.days) {
        return Err(invalid("days: 1-90"));
    }
    let s = app.subscriptions.own(&id, &caller).await?;
    Ok(Json(app.subscriptions.pause(&s, b.days).await?))
}

/// Resume a paused subscription now (the seed's `resumeSubscription`).
#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/resume", tag = "subscriptions",
    operation_id = "resume_subscription", security(("token" = [])),
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, body = Subscription), (status = 401, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError)))]
pub(crate) async fn resume_subscription(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Subscription>, ApiError> {
    let s = app.subscriptions.own(&id, &caller).await?;
    if !app.subscriptions.resume_at(&s.sub.id, now_ms()).await? {
        return Err(ApiError::new(
            StreamingErrorCode::Conflict,
            "this subscription is not paused",
        ));
    }
    Ok(Json(app.subscriptions.own(&id, &caller).await?.sub))
}

/// A user's subscriptions and their history.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SubscriptionHistory {
    /// Every subscription, newest first.
    subscriptions: Vec<Subscription>,
    /// What happened, newest first.
    events: Vec<HistoryEntry>,
}

/// One's subscriptions and what happened to them (the seed's `getSubscriptionHistory`).
#[utoipa::path(get, path = "/api/v1/subscriptions", tag = "subscriptions",
    operation_id = "get_subscription_history", security(("token" = [])),
    responses((status = 200, body = SubscriptionHistory), (status = 401, body = ApiError)))]
pub(crate) async fn get_subscription_history(
    State(app): State<App>,
    Caller(caller): Caller,
) -> Result<Json<SubscriptionHistory>, ApiError> {
    let (subscriptions, events) = app.subscriptions.history_of(&caller).await?;
    Ok(Json(SubscriptionHistory {
        subscriptions,
        events,
    }))
}

/// What a notice did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NotificationResult {
    subscription_id: String,
    /// When it ends.
    ends_at: Option<i64>,
    /// The notice's key: one notice per subscription and period.
    key: String,
}

/// Tell the subscriber when the subscription ends (the seed's `notifyExpiringSubscription`;
/// the channel's streamer or an admin; also sent by itself N days before).
#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/expiring-notice", tag = "subscriptions",
    operation_id = "notify_expiring_subscription", security(("token" = [])),
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, body = NotificationResult), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub(crate) async fn notify_expiring_subscription(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<NotificationResult>, ApiError> {
    let s = visible(&app, &id, &caller).await?;
    require(
        s.channel_id == caller.id || caller.role == UserRole::Admin,
        "only the channel's streamer may do this",
    )?;
    if s.sub.period_end.is_none() {
        return Err(ApiError::new(
            StreamingErrorCode::Conflict,
            "this subscription has no paid period",
        ));
    }
    let key = app.subscriptions.notify_expiring(&s.sub).await?;
    Ok(Json(NotificationResult {
        subscription_id: s.sub.id,
        ends_at: s.sub.period_end,
        key,
    }))
}

/// A renewal discount.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscountBody {
    /// Percent off the next renewal (1-90).
    #[serde(deserialize_with = "crate::api::whole")]
    #[schema(value_type = i64, minimum = 1, maximum = 90)]
    discount_percentage: i64,
}

/// Offer a subscriber a discount on the next renewal, once (the seed's `offerRenewalDiscount`;
/// the channel's streamer).
#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/renewal-discount", tag = "subscriptions",
    operation_id = "offer_renewal_discount", security(("token" = [])), request_body = DiscountBody,
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, body = Subscription), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn offer_renewal_discount(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(b): Body<DiscountBody>,
) -> Result<Json<Subscription>, ApiError> {
    if !(1..=90).contains(&b.discount_percentage) {
        return Err(invalid("discount_percentage: 1-90"));
    }
    let s = visible(&app, &id, &caller).await?;
    require(
        s.channel_id == caller.id || caller.role == UserRole::Admin,
        "only the channel's streamer may do this",
    )?;
    Ok(Json(
        app.subscriptions
            .offer_discount(&s, b.discount_percentage)
            .await?,
    ))
}

/// When to run renewals as.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunBody {
    /// Unix milliseconds (default: now; `null` is refused).
    #[serde(default, deserialize_with = "some_whole")]
    #[schema(value_type = i64, minimum = 0, maximum = 9999999999999_i64)]
    at: Option<i64>,
}

fn some_whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    crate::api::whole(d).map(Some)
}

/// Run what is due at a time (renewals, retries, pause ends, period ends, notices) — admins
/// or the cluster's secret; the background task does the same with the clock.
#[utoipa::path(post, path = "/api/v1/subscriptions/renewals", tag = "subscriptions",
    operation_id = "run_subscription_renewals", security(("token" = []), ("cluster" = [])), request_body = RunBody,
    responses((status = 200, body = RenewalRun), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 422, body = ApiError)))]
pub(crate) async fn run_subscription_renewals(
    State(app): State<App>,
    headers: HeaderMap,
    Body(b): Body<RunBody>,
) -> Result<Json<RenewalRun>, ApiError> {
    admin_or_cluster(&app, &headers).await?;
    let at = b.at.unwrap_or_else(now_ms);
    if !(0..=9_999_999_999_999).contains(&at) {
        return Err(invalid("at: Unix milliseconds"));
    }
    // A run in the future would charge renewals early: tests only.
    if at > now_ms() + 60_000 && !app.payments.cfg.subscriptions.allow_future_runs {
        return Err(invalid(
            "at: at most a minute from now (control_plane.payments.subscriptions.allow_future_runs is for tests)",
        ));
    }
    Ok(Json(app.subscriptions.run_due(at).await?))
}
