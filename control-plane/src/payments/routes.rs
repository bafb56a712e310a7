//! The payments area's REST operations, the provider's notifications and the sandbox's
//! checkout page.

// utoipa's generated code names parameter types with their full paths.
#![allow(unused_qualifications)]

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::catalog::{
    self, AlertSettings, Challenge, Competition, CompetitionOption, DonationAnalytics,
    DonationSettings, Gift, Goal, Highlight, Item, QueuedRequest, Reveal, TopDonor,
};
use super::ledger::Reconciliation;
use super::{
    Donation, DonationRequest, DonationStarted, DonationType, Extra, MediaRequest, Outcome,
    PaymentMethod, Payout, StreamerBalance,
};
use crate::App;
use crate::api::{Body, Caller, ClientAddr, MaybeCaller, Params, is_streamer, require};
use crate::error::{ApiError, StreamingErrorCode};
use crate::model::{User, UserRole, now_ms};
use crate::secrets::new_id;

fn invalid(why: impl Into<String>) -> ApiError {
    ApiError::new(StreamingErrorCode::ValidationFailed, why)
}

pub(crate) async fn channel_user(app: &App, name: &str) -> Result<User, ApiError> {
    app.db
        .user_by_name(name)
        .await?
        .map(|(u, _)| u)
        .ok_or_else(|| ApiError::not_found("channel"))
}

/// The channel, when `caller` may manage it (its streamer or an admin).
pub(crate) async fn owned_channel(app: &App, caller: &User, name: &str) -> Result<User, ApiError> {
    let channel = channel_user(app, name).await?;
    require(
        channel.id == caller.id || caller.role == UserRole::Admin,
        "only the channel's streamer may do this",
    )?;
    Ok(channel)
}

pub(crate) fn text_field(field: &str, s: &str, min: usize, max: usize) -> Result<String, ApiError> {
    let t = s.trim();
    let n = t.chars().count();
    if n < min || n > max || t.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{field}: {min}-{max} characters, no control characters"
        )));
    }
    Ok(t.to_owned())
}

fn money(field: &str, amount: i64) -> Result<i64, ApiError> {
    if !(1..=1_000_000_000_000).contains(&amount) {
        return Err(invalid(format!("{field}: 1-1000000000000 minor units")));
    }
    Ok(amount)
}

/// A catalog price: within the currency's donation limits.
fn price(app: &App, field: &str, amount: i64, currency: &str) -> Result<i64, ApiError> {
    let limits = app
        .payments
        .cfg
        .currencies
        .get(currency)
        .ok_or_else(|| invalid(format!("currency: {currency} is not accepted")))?;
    if amount < limits.min || amount > limits.max {
        return Err(invalid(format!(
            "{field}: {}-{} minor units",
            limits.min, limits.max
        )));
    }
    Ok(amount)
}

fn currency(c: &str) -> Result<String, ApiError> {
    let c = c.trim().to_ascii_uppercase();
    if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(invalid("currency: an ISO 4217 code like RUB"));
    }
    Ok(c)
}

// ---- donations ----

/// Donate to a channel (the seed's `sendDonation` / `processDonation`): money, a gift or a
/// catalog item, with a message checked by the chat's filters; answers where to pay.
#[utoipa::path(post, path = "/api/v1/channels/{name}/donations", tag = "donations", operation_id = "send_donation",
    request_body = DonationRequest, params(("name" = String, Path, description = "The channel")),
    responses((status = 201, body = DonationStarted), (status = 401, body = ApiError), (status = 402, description = "PAYMENT_FAILED", body = ApiError),
        (status = 403, description = "Blocked, own channel, or the register rule", body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError), (status = 422, description = "VALIDATION_FAILED, MESSAGE_BLOCKED", body = ApiError),
        (status = 429, description = "DONATION_LIMIT_EXCEEDED", body = ApiError)))]
pub(crate) async fn send_donation(
    State(app): State<App>,
    MaybeCaller(caller): MaybeCaller,
    ClientAddr(addr): ClientAddr,
    Path(name): Path<String>,
    Body(req): Body<DonationRequest>,
) -> Result<(StatusCode, Json<DonationStarted>), ApiError> {
    let started = app
        .payments
        .start(&name, caller.as_ref(), &addr, req)
        .await?;
    Ok((StatusCode::CREATED, Json(started)))
}

/// A donation named by its channel (processDonation's shape).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProcessDonation {
    /// The channel (streamer's name) to donate to.
    #[schema(min_length = 1, max_length = 64)]
    channel: String,
    /// The donation.
    donation: DonationRequest,
}

/// Donate (the seed's `DonationService.processDonation`): `send_donation` with the channel
/// in the body.
#[utoipa::path(post, path = "/api/v1/donations", tag = "donations", operation_id = "process_donation",
    request_body = ProcessDonation,
    responses((status = 201, body = DonationStarted), (status = 401, body = ApiError), (status = 402, description = "PAYMENT_FAILED", body = ApiError),
        (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError),
        (status = 422, description = "VALIDATION_FAILED, MESSAGE_BLOCKED", body = ApiError),
        (status = 429, description = "DONATION_LIMIT_EXCEEDED", body = ApiError)))]
pub(crate) async fn process_donation(
    State(app): State<App>,
    MaybeCaller(caller): MaybeCaller,
    ClientAddr(addr): ClientAddr,
    Body(body): Body<ProcessDonation>,
) -> Result<(StatusCode, Json<DonationStarted>), ApiError> {
    let started = app
        .payments
        .start(&body.channel, caller.as_ref(), &addr, body.donation)
        .await?;
    Ok((StatusCode::CREATED, Json(started)))
}

/// What a payer adds to a paid action.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Pay {
    /// Minor units (kopecks), within the currency's limits (RUB: 100-10,000,000 by default).
    #[serde(deserialize_with = "crate::api::whole")]
    #[schema(value_type = i64, minimum = 100, maximum = 10000000)]
    amount: i64,
    /// ISO 4217: RUB (or another of `control_plane.payments.currencies`).
    #[serde(default = "super::rub")]
    #[schema(pattern = "^RUB$")]
    currency: String,
    /// A message (at most 300 characters), checked with the chat's filters.
    #[serde(default)]
    #[schema(
        max_length = 300,
        pattern = "^[^\\x00-\\x09\\x0B-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x09\\x0B-\\x1F\\x7F-\\x9F]*$"
    )]
    message: Option<String>,
    /// Hide the donor's name.
    #[serde(default)]
    anonymous: bool,
    /// The name shown (required without signing in).
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 32,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    donor_name: Option<String>,
    /// `bank_card` or `sbp`.
    #[serde(default)]
    method: PaymentMethod,
    /// Where the payer returns: a path on this site or a URL under
    /// `payments.public_url` (anything else returns to the channel's page).
    #[serde(default)]
    #[schema(max_length = 512)]
    return_url: Option<String>,
}

impl Pay {
    fn into_request(self, kind: DonationType, extra: Extra) -> DonationRequest {
        DonationRequest {
            amount: Some(self.amount),
            currency: self.currency,
            message: self.message,
            anonymous: self.anonymous,
            donor_name: self.donor_name,
            method: self.method,
            kind,
            return_url: self.return_url,
            extra,
            ..DonationRequest::default()
        }
    }
}

/// Send a virtual gift (the seed's `sendVirtualGift`): a donation of the gift's price.
#[utoipa::path(post, path = "/api/v1/channels/{name}/gifts/{gift_id}", tag = "donations", operation_id = "send_virtual_gift",
    request_body = Pay, params(("name" = String, Path, description = "The channel"), ("gift_id" = String, Path, description = "The gift")),
    responses((status = 201, body = DonationStarted), (status = 401, body = ApiError), (status = 402, body = ApiError),
        (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError),
        (status = 422, body = ApiError), (status = 429, description = "DONATION_LIMIT_EXCEEDED", body = ApiError)))]
pub(crate) async fn send_virtual_gift(
    State(app): State<App>,
    MaybeCaller(caller): MaybeCaller,
    ClientAddr(addr): ClientAddr,
    Path((name, gift)): Path<(String, String)>,
    Body(pay): Body<Pay>,
) -> Result<(StatusCode, Json<DonationStarted>), ApiError> {
    let mut req = pay.into_request(DonationType::VirtualGift, Extra::default());
    req.gift_id = Some(gift);
    let started = app
        .payments
        .start(&name, caller.as_ref(), &addr, req)
        .await?;
    Ok((StatusCode::CREATED, Json(started)))
}

/// A song or game request with its payment.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestBody {
    /// What is requested.
    request: MediaRequest,
    /// The payment (at least the channel's `request_price`).
    pay: Pay,
}

async fn paid_request(
    app: &App,
    caller: Option<&User>,
    addr: &str,
    name: &str,
    kind: &str,
    body: RequestBody,
) -> Result<DonationStarted, ApiError> {
    let mut r = body.request;
    r.text = text_field("request.text", &r.text, 1, 200)?;
    if let Some(link) = &r.link
        && (link.len() > 500
            || !link.starts_with("https://")
            || link.chars().any(|c| c.is_control() || c.is_whitespace()))
    {
        return Err(invalid(
            "request.link: an https:// URL of at most 500 characters",
        ));
    }
    let channel = channel_user(app, name).await?;
    let r_text = app.chat.check_paid_text(&channel.username, &r.text).await?;
    r.text = r_text;
    let req = body.pay.into_request(
        DonationType::Money,
        Extra {
            request: Some((kind.to_owned(), r)),
            ..Extra::default()
        },
    );
    app.payments.start(name, caller, addr, req).await
}

/// Request a song (the seed's `requestSong`; Streamlabs' media share): paid, then in the
/// streamer's queue to approve, skip or refund.
#[utoipa::path(post, path = "/api/v1/channels/{name}/song-requests", tag = "donations", operation_id = "request_song",
    request_body = RequestBody, params(("name" = String, Path, description = "The channel")),
    responses((status = 201, body = DonationStarted), (status = 401, body = ApiError), (status = 402, body = ApiError),
        (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError),
        (status = 422, body = ApiError), (status = 429, description = "DONATION_LIMIT_EXCEEDED", body = ApiError)))]
pub(crate) async fn request_song(
    State(app): State<App>,
    MaybeCaller(caller): MaybeCaller,
    ClientAddr(addr): ClientAddr,
    Path(name): Path<String>,
    Body(body): Body<RequestBody>,
) -> Result<(StatusCode, Json<DonationStarted>), ApiError> {
    let s = paid_request(&app, caller.as_ref(), &addr, &name, "song", body).await?;
    Ok((StatusCode::CREATED, Json(s)))
}

/// Request a game (the seed's `requestGame`), like a song request.
#[utoipa::path(post, path = "/api/v1/channels/{name}/game-requests", tag = "donations", operation_id = "request_game",
    request_body = RequestBody, params(("name" = String, Path, description = "The channel")),
    responses((status = 201, body = DonationStarted), (status = 401, body = ApiError), (status = 402, body = ApiError),
        (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError),
        (status = 422, body = ApiError), (status = 429, description = "DONATION_LIMIT_EXCEEDED", body = ApiError)))]
pub(crate) async fn request_game(
    State(app): State<App>,
    MaybeCaller(caller): MaybeCaller,
    ClientAddr(addr): ClientAddr,
    Path(name): Path<String>,
    Body(body): Body<RequestBody>,
) -> Result<(StatusCode, Json<DonationStarted>), ApiError> {
    let s = paid_request(&app, caller.as_ref(), &addr, &name, "game", body).await?;
    Ok((StatusCode::CREATED, Json(s)))
}

/// Boost a chat message (the seed's `boostMessage`): highlighted and pinned for as many
/// minutes as the amount buys (the channel's `boost_price_per_minute`).
#[utoipa::path(post, path = "/api/v1/chat/{room}/messages/{id}/boost", tag = "donations", operation_id = "boost_message",
    request_body = Pay, params(("room" = String, Path, description = "The channel"), ("id" = String, Path, description = "Message id")),
    responses((status = 201, body = DonationStarted), (status = 401, body = ApiError), (status = 402, body = ApiError),
        (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError),
        (status = 422, body = ApiError), (status = 429, description = "DONATION_LIMIT_EXCEEDED", body = ApiError)))]
pub(crate) async fn boost_message(
    State(app): State<App>,
    MaybeCaller(caller): MaybeCaller,
    ClientAddr(addr): ClientAddr,
    Path((room, id)): Path<(String, String)>,
    Body(pay): Body<Pay>,
) -> Result<(StatusCode, Json<DonationStarted>), ApiError> {
    if !app.chat.is_visible(&room, &id).await? {
        return Err(ApiError::not_found("message"));
    }
    let req = pay.into_request(
        DonationType::Money,
        Extra {
            boost_message: Some(id),
            ..Extra::default()
        },
    );
    let s = app
        .payments
        .start(&room, caller.as_ref(), &addr, req)
        .await?;
    Ok((StatusCode::CREATED, Json(s)))
}

/// A highlighted moment with its payment.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HighlightBody {
    /// What happened (0-140 characters).
    #[serde(default)]
    #[schema(max_length = 140, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    note: String,
    /// The payment (at least the channel's `highlight_price`).
    pay: Pay,
}

/// Mark the moment (the seed's `highlightMoment`): the stream time is recorded when the
/// payment completes, for the recordings to clip.
#[utoipa::path(post, path = "/api/v1/channels/{name}/highlights", tag = "donations", operation_id = "highlight_moment",
    request_body = HighlightBody, params(("name" = String, Path, description = "The channel")),
    responses((status = 201, body = DonationStarted), (status = 401, body = ApiError), (status = 402, body = ApiError),
        (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError),
        (status = 422, body = ApiError), (status = 429, description = "DONATION_LIMIT_EXCEEDED", body = ApiError)))]
pub(crate) async fn highlight_moment(
    State(app): State<App>,
    MaybeCaller(caller): MaybeCaller,
    ClientAddr(addr): ClientAddr,
    Path(name): Path<String>,
    Body(body): Body<HighlightBody>,
) -> Result<(StatusCode, Json<DonationStarted>), ApiError> {
    let note = text_field("note", &body.note, 0, 140)?;
    let req = body.pay.into_request(
        DonationType::Money,
        Extra {
            highlight: Some(note),
            ..Extra::default()
        },
    );
    let s = app
        .payments
        .start(&name, caller.as_ref(), &addr, req)
        .await?;
    Ok((StatusCode::CREATED, Json(s)))
}

/// The channel's highlighted moments (its streamer).
#[utoipa::path(get, path = "/api/v1/channels/{name}/highlights", tag = "donations", operation_id = "get_highlights",
    security(("token" = [])), params(("name" = String, Path, description = "The channel")),
    responses((status = 200, body = [Highlight]), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn get_highlights(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<Highlight>>, ApiError> {
    let channel = owned_channel(&app, &caller, &name).await?;
    Ok(Json(catalog::highlights(&app.db, &channel.id).await?))
}

/// A donation's state (the seed's `getDonationStatus`). Its donor, its streamer and admins
/// see everything; others the public part.
#[utoipa::path(get, path = "/api/v1/donations/{id}", tag = "donations", operation_id = "get_donation_status",
    params(("id" = String, Path, description = "Donation id")),
    responses((status = 200, body = Donation), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn get_donation_status(
    State(app): State<App>,
    MaybeCaller(caller): MaybeCaller,
    Path(id): Path<String>,
) -> Result<Json<Donation>, ApiError> {
    let mut d = app
        .payments
        .donation(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("donation"))?;
    // A pending donation whose notification has not come: ask the provider now.
    if d.status == super::DonationStatus::Pending
        && let Some(p) = app.payments.provider_id(&id).await?
    {
        let _ = app.payments.sync_payment(&p).await;
        if let Some(again) = app.payments.donation(&id).await? {
            d = again;
        }
    }
    let full = caller.as_ref().is_some_and(|c| {
        c.id == d.streamer_id || c.role == UserRole::Admin || app.payments.is_donor(&d, c)
    });
    if !full {
        d.donor_id = None;
        d.streamer_share = 0;
        d.fee = 0;
        d.failure_reason = None;
        d.fraud_reasons = Vec::new();
    }
    Ok(Json(d))
}

/// History paging and periods.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// The period (default `month`).
    #[param(inline)]
    period: Option<Period>,
    /// Only this status.
    #[param(inline)]
    status: Option<super::DonationStatus>,
    /// Older than this (Unix ms), for the next page.
    before: Option<i64>,
    /// At most this many (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// The channel's donations, newest first (the seed's `getDonationHistory`; its streamer).
#[utoipa::path(get, path = "/api/v1/channels/{name}/donations", tag = "donations", operation_id = "get_donation_history",
    security(("token" = [])), params(("name" = String, Path, description = "The channel"), HistoryQuery),
    responses((status = 200, body = [Donation]), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn get_donation_history(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Params(q): Params<HistoryQuery>,
) -> Result<Json<Vec<Donation>>, ApiError> {
    let channel = owned_channel(&app, &caller, &name).await?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(invalid("limit must be 1-200"));
    }
    let status = q.status.map(|s| match s {
        super::DonationStatus::Pending => "pending",
        super::DonationStatus::Completed => "completed",
        super::DonationStatus::Failed => "failed",
        super::DonationStatus::Refunded => "refunded",
    });
    let period = q.period.unwrap_or_default().as_str();
    Ok(Json(
        catalog::history(&app.db, &channel.id, period, status, q.before, limit).await?,
    ))
}

/// The caller's own donations, newest first.
#[utoipa::path(get, path = "/api/v1/me/donations", tag = "donations", operation_id = "get_my_donations",
    security(("token" = [])), responses((status = 200, body = [Donation]), (status = 401, body = ApiError)))]
pub(crate) async fn get_my_donations(
    State(app): State<App>,
    Caller(caller): Caller,
) -> Result<Json<Vec<Donation>>, ApiError> {
    Ok(Json(
        catalog::donor_history(&app.db, &caller.id, 100).await?,
    ))
}

/// Period and currency.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PeriodQuery {
    /// The period (default `month`).
    #[param(inline)]
    period: Option<Period>,
    /// ISO 4217 (default RUB).
    #[param(pattern = "^RUB$")]
    currency: Option<String>,
}

/// A period back from now.
#[derive(Clone, Copy, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Period {
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    Week,
    /// The last 30 days.
    #[default]
    Month,
    /// The last 365 days.
    Year,
    /// Everything.
    All,
}

impl Period {
    fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Year => "year",
            Period::All => "all",
        }
    }
}

/// The channel's donation numbers for a period (the seed's `getDonationAnalytics`).
#[utoipa::path(get, path = "/api/v1/channels/{name}/donation-analytics", tag = "donations", operation_id = "get_donation_analytics",
    security(("token" = [])), params(("name" = String, Path, description = "The channel"), PeriodQuery),
    responses((status = 200, body = DonationAnalytics), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn get_donation_analytics(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Params(q): Params<PeriodQuery>,
) -> Result<Json<DonationAnalytics>, ApiError> {
    let channel = owned_channel(&app, &caller, &name).await?;
    let cur = currency(q.currency.as_deref().unwrap_or("RUB"))?;
    Ok(Json(
        catalog::analytics(
            &app.db,
            &channel.id,
            q.period.unwrap_or_default().as_str(),
            &cur,
        )
        .await?,
    ))
}

/// The channel's top donors for a period (the seed's `getTopDonors`); anonymous donations
/// are left out.
#[utoipa::path(get, path = "/api/v1/channels/{name}/top-donors", tag = "donations", operation_id = "get_top_donors",
    params(("name" = String, Path, description = "The channel"), PeriodQuery),
    responses((status = 200, body = [TopDonor]), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn get_top_donors(
    State(app): State<App>,
    Path(name): Path<String>,
    Params(q): Params<PeriodQuery>,
) -> Result<Json<Vec<TopDonor>>, ApiError> {
    let channel = channel_user(&app, &name).await?;
    let cur = currency(q.currency.as_deref().unwrap_or("RUB"))?;
    Ok(Json(
        catalog::top_donors(
            &app.db,
            &channel.id,
            q.period.unwrap_or_default().as_str(),
            &cur,
            10,
        )
        .await?,
    ))
}

/// What the donate dialog offers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DonationOptions {
    channel: String,
    /// `sandbox` or `yookassa`.
    provider: String,
    methods: Vec<String>,
    currencies: Vec<CurrencyOption>,
    max_message_chars: u32,
    gifts: Vec<Gift>,
    items: Vec<Item>,
    goal: Option<Goal>,
    competition: Option<Competition>,
    /// Whether the channel takes donations now.
    accepting: bool,
    /// Why not.
    refusal: Option<String>,
    boost_price_per_minute: i64,
    request_price: i64,
    highlight_price: i64,
}

/// Limits of one currency.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CurrencyOption {
    currency: String,
    min: i64,
    max: i64,
}

/// The donate dialog's options for a channel (the seed's `createDonationInterface`, server
/// side): provider, methods, limits, gifts, items, the active goal.
#[utoipa::path(get, path = "/api/v1/channels/{name}/donation-options", tag = "donations", operation_id = "create_donation_interface",
    params(("name" = String, Path, description = "The channel")),
    responses((status = 200, body = DonationOptions), (status = 404, body = ApiError)))]
pub(crate) async fn donation_options(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<DonationOptions>, ApiError> {
    let channel = channel_user(&app, &name).await?;
    let p = &app.payments;
    let settings = catalog::settings(&app.db, &channel.id).await?;
    let threshold = p.cfg.registry_follower_threshold;
    let refusal = if threshold > 0
        && settings.registry_number.is_none()
        && app.chat.followers(&channel.id).await? > threshold as i64
    {
        Some(format!(
            "this channel has more than {threshold} followers and takes donations only once its number in the \
             bloggers' register (Roskomnadzor) is recorded"
        ))
    } else {
        None
    };
    Ok(Json(DonationOptions {
        channel: channel.username.clone(),
        provider: p.provider.name().to_owned(),
        methods: vec!["bank_card".into(), "sbp".into()],
        currencies: p
            .cfg
            .currencies
            .iter()
            .map(|(c, l)| CurrencyOption {
                currency: c.clone(),
                min: l.min,
                max: l.max,
            })
            .collect(),
        max_message_chars: p.cfg.max_message_chars,
        gifts: catalog::gifts(&app.db, Some(&channel.id), None).await?,
        items: catalog::items(&app.db, &channel.id).await?,
        goal: catalog::goals(&app.db, &channel.id, true)
            .await?
            .into_iter()
            .next(),
        competition: catalog::running_competition(&app.db, &channel.id).await?,
        accepting: refusal.is_none(),
        refusal,
        boost_price_per_minute: settings.boost_price_per_minute,
        request_price: settings.request_price,
        highlight_price: settings.highlight_price,
    }))
}

/// Why a refund.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonBody {
    /// 1-300 characters.
    #[schema(
        min_length = 1,
        max_length = 300,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    reason: String,
}

/// Refund a completed donation in full (its streamer or an admin).
#[utoipa::path(post, path = "/api/v1/donations/{id}/refund", tag = "donations", operation_id = "refund_donation",
    security(("token" = [])), request_body = ReasonBody, params(("id" = String, Path, description = "Donation id")),
    responses((status = 200, body = Donation), (status = 401, body = ApiError), (status = 402, body = ApiError),
        (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn refund_donation(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(body): Body<ReasonBody>,
) -> Result<Json<Donation>, ApiError> {
    let reason = text_field("reason", &body.reason, 1, 300)?;
    let d = app
        .payments
        .donation(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("donation"))?;
    require(
        d.streamer_id == caller.id || caller.role == UserRole::Admin,
        "only the channel's streamer or an admin may refund",
    )?;
    app.payments.refund(&id, &reason).await?;
    Ok(Json(
        app.payments
            .donation(&id)
            .await?
            .ok_or_else(|| ApiError::not_found("donation"))?,
    ))
}

/// A chargeback the bank reported.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChargebackBody {
    /// The bank's or provider's case number (each is applied once).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    reference: String,
    /// Why (1-300 characters).
    #[schema(
        min_length = 1,
        max_length = 300,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    reason: String,
}

/// Record a chargeback (the seed's `handleChargeback`; admins, or a payment system with the
/// cluster secret): the donation's entries are reversed once and the streamer notified.
#[utoipa::path(post, path = "/api/v1/donations/{id}/chargeback", tag = "donations", operation_id = "handle_chargeback",
    security(("token" = []), ("cluster" = [])), request_body = ChargebackBody, params(("id" = String, Path, description = "Donation id")),
    responses((status = 200, body = Donation), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn handle_chargeback(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body<ChargebackBody>,
) -> Result<Json<Donation>, ApiError> {
    admin_or_cluster(&app, &headers).await?;
    let reference = text_field("reference", &body.reference, 1, 100)?;
    let reason = text_field("reason", &body.reason, 1, 300)?;
    app.payments.chargeback(&id, &reference, &reason).await?;
    Ok(Json(
        app.payments
            .donation(&id)
            .await?
            .ok_or_else(|| ApiError::not_found("donation"))?,
    ))
}

pub(crate) async fn admin_or_cluster(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(ApiError::unauthorized)?;
    if let Some(secret) = &app.cluster_secret
        && crate::secrets::constant_time_eq(secret.expose().as_bytes(), token.as_bytes())
    {
        return Ok(());
    }
    match app
        .db
        .user_by_token(&crate::secrets::hash_secret(token))
        .await?
    {
        Some(u) if u.role == UserRole::Admin => Ok(()),
        Some(_) => Err(ApiError::forbidden("only admins may do this")),
        None => Err(ApiError::unauthorized()),
    }
}

/// Reveal an item's key to its recipient, once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RevealedKey {
    donation_id: String,
    /// The key: shown this once.
    key: String,
}

/// The key bought with an item donation (its recipient only, once; the seed's game key).
#[utoipa::path(post, path = "/api/v1/donations/{id}/key", tag = "donations", operation_id = "reveal_item_key",
    security(("token" = [])), params(("id" = String, Path, description = "Donation id")),
    responses((status = 200, body = RevealedKey), (status = 401, body = ApiError), (status = 404, body = ApiError),
        (status = 409, description = "Already revealed", body = ApiError)))]
pub(crate) async fn reveal_item_key(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<RevealedKey>, ApiError> {
    match catalog::reveal_key(&app.db, &id, &caller.id).await? {
        Reveal::Key(key) => Ok(Json(RevealedKey {
            donation_id: id,
            key,
        })),
        Reveal::Already(at) => Err(ApiError::new(
            StreamingErrorCode::Conflict,
            format!("the key was revealed already (at {at}); it is shown only once"),
        )),
        Reveal::None => Err(ApiError::not_found("key")),
    }
}

// ---- balance, payouts, ledger ----

/// Currency.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CurrencyQuery {
    /// ISO 4217 (default RUB).
    #[param(pattern = "^RUB$")]
    currency: Option<String>,
}

/// The caller's balance (the seed's `getStreamerBalance`).
#[utoipa::path(get, path = "/api/v1/balance", tag = "payments", operation_id = "get_streamer_balance",
    security(("token" = [])), params(CurrencyQuery),
    responses((status = 200, body = StreamerBalance), (status = 401, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn get_streamer_balance(
    State(app): State<App>,
    Caller(caller): Caller,
    Params(q): Params<CurrencyQuery>,
) -> Result<Json<StreamerBalance>, ApiError> {
    let cur = currency(q.currency.as_deref().unwrap_or("RUB"))?;
    Ok(Json(app.payments.balance(&caller.id, &cur).await?))
}

/// A payout to request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PayoutBody {
    /// Minor units.
    #[serde(deserialize_with = "crate::api::whole")]
    #[schema(value_type = i64, minimum = 1, maximum = 1000000000000_i64)]
    amount: i64,
    /// ISO 4217 (default RUB).
    #[serde(default = "super::rub")]
    #[schema(pattern = "^RUB$")]
    currency: String,
    /// Where to.
    method: PayoutMethod,
    /// The destination for `method`: a payout token (bank card), a phone (SBP) or a
    /// wallet (YooMoney). Never logged; stored as its last four characters.
    #[schema(min_length = 4, max_length = 100, pattern = "^[0-9A-Za-z+_-]{4,100}$")]
    destination: String,
}

/// Pay out of the balance (the seed's `requestStreamerPayout` / `withdrawFunds`).
#[utoipa::path(post, path = "/api/v1/payouts", tag = "payments", operation_id = "request_streamer_payout",
    security(("token" = [])), request_body = PayoutBody,
    responses((status = 201, body = Payout), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 409, description = "WITHDRAWAL_FAILED: more than the balance, below the minimum", body = ApiError),
        (status = 422, description = "VALIDATION_FAILED", body = ApiError)))]
pub(crate) async fn request_streamer_payout(
    State(app): State<App>,
    Caller(caller): Caller,
    Body(body): Body<PayoutBody>,
) -> Result<(StatusCode, Json<Payout>), ApiError> {
    require(is_streamer(&caller), "only streamers have payouts")?;
    let amount = money("amount", body.amount)?;
    let cur = currency(&body.currency)?;
    let dest = text_field("destination", &body.destination, 4, 100)?;
    let method = match body.method {
        PayoutMethod::BankCard => "bank_card",
        PayoutMethod::Sbp => "sbp",
        PayoutMethod::YooMoney => "yoo_money",
    };
    let p = app
        .payments
        .payout(&caller, amount, &cur, method, &dest)
        .await?;
    Ok((StatusCode::CREATED, Json(p)))
}

/// Where a payout goes.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PayoutMethod {
    /// A bank card (by a payout token).
    BankCard,
    /// The Faster Payments System (by phone).
    Sbp,
    /// A YooMoney wallet.
    YooMoney,
}

/// Prove every balance equals the sum of its entries (admins; also `potok ledger reconcile`).
#[utoipa::path(get, path = "/api/v1/ledger/reconcile", tag = "payments", operation_id = "reconcile_ledger",
    security(("token" = [])),
    responses((status = 200, body = Reconciliation), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub(crate) async fn reconcile_ledger(
    State(app): State<App>,
    Caller(caller): Caller,
) -> Result<Json<Reconciliation>, ApiError> {
    require(
        caller.role == UserRole::Admin,
        "only admins may reconcile the ledger",
    )?;
    Ok(Json(super::ledger::reconcile(&app.db).await?))
}

// ---- gifts and items ----

/// Gift filter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GiftQuery {
    /// Only this category.
    #[param(max_length = 32)]
    category: Option<String>,
    /// Include this channel's own gifts.
    #[param(max_length = 64)]
    channel: Option<String>,
}

/// The gifts one can send (the seed's `getAvailableGifts`).
#[utoipa::path(get, path = "/api/v1/gifts", tag = "donations", operation_id = "get_available_gifts", params(GiftQuery),
    responses((status = 200, body = [Gift]), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn get_available_gifts(
    State(app): State<App>,
    Params(q): Params<GiftQuery>,
) -> Result<Json<Vec<Gift>>, ApiError> {
    if q.category
        .as_deref()
        .is_some_and(|c| c.chars().count() > 32)
        || q.channel.as_deref().is_some_and(|c| c.chars().count() > 64)
    {
        return Err(invalid(
            "category: at most 32 characters, channel: at most 64",
        ));
    }
    let owner = match q.channel.as_deref() {
        Some(c) => Some(channel_user(&app, c).await?.id),
        None => None,
    };
    Ok(Json(
        catalog::gifts(&app.db, owner.as_deref(), q.category.as_deref()).await?,
    ))
}

/// A custom gift.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GiftBody {
    /// 1-40 characters.
    #[schema(
        min_length = 1,
        max_length = 40,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    name: String,
    /// Minor units.
    #[serde(deserialize_with = "crate::api::whole")]
    #[schema(value_type = i64, minimum = 100, maximum = 10000000)]
    price: i64,
    /// ISO 4217 (default RUB).
    #[serde(default = "super::rub")]
    #[schema(pattern = "^RUB$")]
    currency: String,
    /// A picture: a path on this site or an https URL.
    #[serde(default)]
    #[schema(
        max_length = 300,
        pattern = "^(https://|/[^/])[^\\s\\x00-\\x1F\\x7F-\\x9F\"<]*$"
    )]
    image_url: Option<String>,
    /// An animation name (`float`, `pulse`, `spin`, `launch`, ...).
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,32}$")]
    animation: Option<String>,
}

/// Make a gift for one's channel (the seed's `createCustomGift`; streamers).
#[utoipa::path(post, path = "/api/v1/gifts", tag = "donations", operation_id = "create_custom_gift",
    security(("token" = [])), request_body = GiftBody,
    responses((status = 201, body = Gift), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn create_custom_gift(
    State(app): State<App>,
    Caller(caller): Caller,
    Body(b): Body<GiftBody>,
) -> Result<(StatusCode, Json<Gift>), ApiError> {
    require(is_streamer(&caller), "only streamers make gifts")?;
    let name = text_field("name", &b.name, 1, 40)?;
    let cur = currency(&b.currency)?;
    let price = price(&app, "price", b.price, &cur)?;
    if let Some(u) = &b.image_url
        && (u.len() > 300
            || !(u.starts_with("https://") || (u.starts_with('/') && !u.starts_with("//")))
            || u.chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '"' || c == '<'))
    {
        return Err(invalid("image_url: a path or an https:// URL"));
    }
    if let Some(a) = &b.animation
        && (a.is_empty()
            || a.len() > 32
            || !a
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'))
    {
        return Err(invalid("animation: 1-32 letters, digits, '-' or '_'"));
    }
    let gift = Gift {
        id: new_id(),
        owner_id: Some(caller.id.clone()),
        name,
        category: "custom".into(),
        price,
        currency: cur,
        image_url: b.image_url,
        animation: b.animation,
        active: true,
    };
    catalog::create_gift(&app.db, &gift).await?;
    Ok((StatusCode::CREATED, Json(gift)))
}

/// The channel's items on sale.
#[utoipa::path(get, path = "/api/v1/channels/{name}/items", tag = "donations", operation_id = "get_catalog_items",
    params(("name" = String, Path, description = "The channel")),
    responses((status = 200, body = [Item]), (status = 404, body = ApiError)))]
pub(crate) async fn get_catalog_items(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Item>>, ApiError> {
    let channel = channel_user(&app, &name).await?;
    Ok(Json(catalog::items(&app.db, &channel.id).await?))
}

/// An item to sell.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ItemBody {
    /// What it is.
    kind: ItemKind,
    /// 1-80 characters.
    #[schema(
        min_length = 1,
        max_length = 80,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    name: String,
    /// 0-500 characters.
    #[serde(default)]
    #[schema(max_length = 500, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    description: String,
    /// Minor units.
    #[serde(deserialize_with = "crate::api::whole")]
    #[schema(value_type = i64, minimum = 100, maximum = 10000000)]
    price: i64,
    /// ISO 4217 (default RUB).
    #[serde(default = "super::rub")]
    #[schema(pattern = "^RUB$")]
    currency: String,
}

/// What a catalog item is.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ItemKind {
    /// A game key.
    GameKey,
    /// An in-game item.
    InGameItem,
    /// Downloadable content.
    Dlc,
}

/// Put an item on sale (streamers); add its keys with `add_item_keys`.
#[utoipa::path(post, path = "/api/v1/items", tag = "donations", operation_id = "create_catalog_item",
    security(("token" = [])), request_body = ItemBody,
    responses((status = 201, body = Item), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn create_catalog_item(
    State(app): State<App>,
    Caller(caller): Caller,
    Body(b): Body<ItemBody>,
) -> Result<(StatusCode, Json<Item>), ApiError> {
    require(is_streamer(&caller), "only streamers sell items")?;
    let item = Item {
        id: new_id(),
        owner_id: caller.id.clone(),
        kind: match b.kind {
            ItemKind::GameKey => DonationType::GameKey,
            ItemKind::InGameItem => DonationType::InGameItem,
            ItemKind::Dlc => DonationType::Dlc,
        },
        name: text_field("name", &b.name, 1, 80)?,
        description: text_field("description", &b.description, 0, 500)?,
        price: price(&app, "price", b.price, &currency(&b.currency)?)?,
        currency: currency(&b.currency)?,
        active: true,
        available: 0,
    };
    catalog::create_item(&app.db, &item).await?;
    Ok((StatusCode::CREATED, Json(item)))
}

/// Keys for an item's pool.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeysBody {
    /// 1-500 keys of 1-200 characters.
    #[schema(value_type = Vec<crate::api::Text<1, 200>>, min_items = 1, max_items = 500)]
    keys: Vec<String>,
}

/// Keys added.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeysAdded {
    added: usize,
    available: i64,
}

/// Add keys to an item's pool (its streamer). Keys are never shown to anyone but the
/// recipient of a paid donation.
#[utoipa::path(post, path = "/api/v1/items/{id}/keys", tag = "donations", operation_id = "add_item_keys",
    security(("token" = [])), request_body = KeysBody, params(("id" = String, Path, description = "Item id")),
    responses((status = 200, body = KeysAdded), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn add_item_keys(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(b): Body<KeysBody>,
) -> Result<Json<KeysAdded>, ApiError> {
    let item = catalog::item(&app.db, &id)
        .await?
        .filter(|i| i.owner_id == caller.id)
        .ok_or_else(|| ApiError::not_found("item"))?;
    if b.keys.is_empty() || b.keys.len() > 500 {
        return Err(invalid("keys: 1-500"));
    }
    let keys = b
        .keys
        .iter()
        .map(|k| text_field("keys[]", k, 1, 200))
        .collect::<Result<Vec<_>, _>>()?;
    let added = catalog::add_keys(&app.db, &item.id, &keys).await?;
    let available = catalog::item(&app.db, &id)
        .await?
        .map_or(0, |i| i.available);
    Ok(Json(KeysAdded { added, available }))
}

// ---- goals, alerts, settings, blocks ----

/// A goal to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GoalBody {
    /// 1-80 characters.
    #[schema(
        min_length = 1,
        max_length = 80,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    title: String,
    /// 0-300 characters.
    #[serde(default)]
    #[schema(max_length = 300, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    description: String,
    /// Minor units.
    #[serde(deserialize_with = "crate::api::whole")]
    #[schema(value_type = i64, minimum = 1, maximum = 1000000000000_i64)]
    target_amount: i64,
    /// ISO 4217 (default RUB).
    #[serde(default = "super::rub")]
    #[schema(pattern = "^RUB$")]
    currency: String,
    /// Unix ms after which donations stop counting; none: open-ended.
    #[serde(default, deserialize_with = "crate::api::whole_opt")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    deadline: Option<i64>,
}

async fn new_goal(
    app: &App,
    caller: &User,
    name: &str,
    kind: &str,
    b: GoalBody,
) -> Result<Goal, ApiError> {
    let channel = owned_channel(app, caller, name).await?;
    let now = now_ms();
    if b.deadline.is_some_and(|d| d < 0) {
        return Err(invalid("deadline: Unix milliseconds"));
    }
    let goal = Goal {
        id: new_id(),
        channel_id: channel.id.clone(),
        kind: kind.to_owned(),
        title: text_field("title", &b.title, 1, 80)?,
        description: text_field("description", &b.description, 0, 300)?,
        target_amount: money("target_amount", b.target_amount)?,
        current_amount: 0,
        currency: currency(&b.currency)?,
        deadline: b.deadline,
        is_active: true,
        created_at: now,
    };
    catalog::create_goal(&app.db, &goal).await?;
    super::events::overlay_append(
        &app.db,
        &app.payments.bus,
        &channel.username,
        &format!("goal:{}:created", goal.id),
        json!({"kind": "goal", "goal": goal}),
    )
    .await?;
    Ok(goal)
}

/// Set a donation goal (the seed's `setDonationGoal`): completed donations to the channel
/// count toward its active goals.
#[utoipa::path(post, path = "/api/v1/channels/{name}/goals", tag = "donations", operation_id = "set_donation_goal",
    security(("token" = [])), request_body = GoalBody, params(("name" = String, Path, description = "The channel")),
    responses((status = 201, body = Goal), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn set_donation_goal(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Body(b): Body<GoalBody>,
) -> Result<(StatusCode, Json<Goal>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(new_goal(&app, &caller, &name, "donation", b).await?),
    ))
}

/// Create a community goal (the seed's `createCommunityGoal`): counts only donations that
/// name it (`goal_id`).
#[utoipa::path(post, path = "/api/v1/channels/{name}/community-goals", tag = "donations", operation_id = "create_community_goal",
    security(("token" = [])), request_body = GoalBody, params(("name" = String, Path, description = "The channel")),
    responses((status = 201, body = Goal), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn create_community_goal(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Body(b): Body<GoalBody>,
) -> Result<(StatusCode, Json<Goal>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(new_goal(&app, &caller, &name, "community", b).await?),
    ))
}

/// The channel's goals with their progress.
#[utoipa::path(get, path = "/api/v1/channels/{name}/goals", tag = "donations", operation_id = "get_donation_goals",
    params(("name" = String, Path, description = "The channel")),
    responses((status = 200, body = [Goal]), (status = 404, body = ApiError)))]
pub(crate) async fn get_donation_goals(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Goal>>, ApiError> {
    let channel = channel_user(&app, &name).await?;
    Ok(Json(catalog::goals(&app.db, &channel.id, false).await?))
}

/// Close a goal (its streamer).
#[utoipa::path(delete, path = "/api/v1/channels/{name}/goals/{id}", tag = "donations", operation_id = "close_donation_goal",
    security(("token" = [])), params(("name" = String, Path, description = "The channel"), ("id" = String, Path, description = "Goal id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn close_donation_goal(
    State(app): State<App>,
    Caller(caller): Caller,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let channel = owned_channel(&app, &caller, &name).await?;
    if !catalog::close_goal(&app.db, &channel.id, &id).await? {
        return Err(ApiError::not_found("goal"));
    }
    if let Some(goal) = catalog::goal(&app.db, &id).await? {
        super::events::overlay_append(
            &app.db,
            &app.payments.bus,
            &channel.username,
            &format!("goal:{id}:closed"),
            json!({"kind": "goal", "goal": goal}),
        )
        .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The channel's alert settings.
#[utoipa::path(get, path = "/api/v1/channels/{name}/donation-alerts", tag = "donations", operation_id = "get_donation_alerts",
    params(("name" = String, Path, description = "The channel")),
    responses((status = 200, body = AlertSettings), (status = 404, body = ApiError)))]
pub(crate) async fn get_donation_alerts(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<AlertSettings>, ApiError> {
    let channel = channel_user(&app, &name).await?;
    Ok(Json(catalog::settings(&app.db, &channel.id).await?.alerts))
}

/// Configure alerts (the seed's `configureDonationAlerts`): variants by amount (animation,
/// sound, duration, text) and text-to-speech with its minimum amount.
#[utoipa::path(put, path = "/api/v1/channels/{name}/donation-alerts", tag = "donations", operation_id = "configure_donation_alerts",
    security(("token" = [])), request_body = AlertSettings, params(("name" = String, Path, description = "The channel")),
    responses((status = 200, body = AlertSettings), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn configure_donation_alerts(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Body(alerts): Body<AlertSettings>,
) -> Result<Json<AlertSettings>, ApiError> {
    let channel = owned_channel(&app, &caller, &name).await?;
    if let Some(p) = alerts.problems() {
        return Err(invalid(p));
    }
    let mut s = catalog::settings(&app.db, &channel.id).await?;
    s.alerts = alerts;
    catalog::save_settings(&app.db, &channel.id, &s).await?;
    super::events::overlay_append(
        &app.db,
        &app.payments.bus,
        &channel.username,
        &format!("alerts:{}", new_id()),
        json!({"kind": "alerts", "alerts": s.alerts}),
    )
    .await?;
    Ok(Json(s.alerts))
}

/// The channel's donation settings (its streamer).
#[utoipa::path(get, path = "/api/v1/channels/{name}/donation-settings", tag = "donations", operation_id = "get_donation_settings",
    security(("token" = [])), params(("name" = String, Path, description = "The channel")),
    responses((status = 200, body = DonationSettings), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn get_donation_settings(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Json<DonationSettings>, ApiError> {
    let channel = owned_channel(&app, &caller, &name).await?;
    Ok(Json(catalog::settings(&app.db, &channel.id).await?))
}

/// Changes to the donation settings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsBody {
    /// The number in the bloggers' register (Roskomnadzor), required past 10,000 followers:
    /// 1-64 letters, digits, `-` or `/`.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9/-]{1,64}$")]
    registry_number: Option<String>,
    /// Price of a boost per minute (minor units).
    #[serde(default, deserialize_with = "crate::api::whole_opt")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000000000_i64)]
    boost_price_per_minute: Option<i64>,
    /// Least amount of a song or game request.
    #[serde(default, deserialize_with = "crate::api::whole_opt")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000000000_i64)]
    request_price: Option<i64>,
    /// Least amount of a highlighted moment.
    #[serde(default, deserialize_with = "crate::api::whole_opt")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000000000_i64)]
    highlight_price: Option<i64>,
}

/// Change the donation settings (the seed's `updateDonationOverlay`'s server part and the
/// "Legal Compliance" register number).
#[utoipa::path(patch, path = "/api/v1/channels/{name}/donation-settings", tag = "donations", operation_id = "update_donation_settings",
    security(("token" = [])), request_body = SettingsBody, params(("name" = String, Path, description = "The channel")),
    responses((status = 200, body = DonationSettings), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn update_donation_settings(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Body(b): Body<SettingsBody>,
) -> Result<Json<DonationSettings>, ApiError> {
    let channel = owned_channel(&app, &caller, &name).await?;
    let mut s = catalog::settings(&app.db, &channel.id).await?;
    if let Some(n) = b.registry_number {
        let n = n.trim().to_owned();
        if n.is_empty()
            || n.len() > 64
            || !n
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'/')
        {
            return Err(invalid("registry_number: 1-64 letters, digits, '-' or '/'"));
        }
        s.registry_number = Some(n);
    }
    if let Some(p) = b.boost_price_per_minute {
        s.boost_price_per_minute = money("boost_price_per_minute", p)?;
    }
    if let Some(p) = b.request_price {
        s.request_price = money("request_price", p)?;
    }
    if let Some(p) = b.highlight_price {
        s.highlight_price = money("highlight_price", p)?;
    }
    catalog::save_settings(&app.db, &channel.id, &s).await?;
    Ok(Json(s))
}

/// A donor to block.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlockBody {
    /// The donor's username.
    #[schema(min_length = 1, max_length = 64)]
    username: String,
    /// Why (1-300 characters).
    #[schema(
        min_length = 1,
        max_length = 300,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    reason: String,
    /// Everywhere (admins only).
    #[serde(default)]
    everywhere: bool,
}

/// Blocked.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Blocked {
    /// Keys blocked: the account, and the cards it donated with.
    keys: usize,
}

/// Block a donor (the seed's `blockSuspiciousDonor`): the account and every card it donated
/// with, on this channel (or everywhere, admins).
#[utoipa::path(post, path = "/api/v1/channels/{name}/blocked-donors", tag = "donations", operation_id = "block_suspicious_donor",
    security(("token" = [])), request_body = BlockBody, params(("name" = String, Path, description = "The channel")),
    responses((status = 200, body = Blocked), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn block_suspicious_donor(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Body(b): Body<BlockBody>,
) -> Result<Json<Blocked>, ApiError> {
    let channel = owned_channel(&app, &caller, &name).await?;
    let reason = text_field("reason", &b.reason, 1, 300)?;
    require(
        !b.everywhere || caller.role == UserRole::Admin,
        "only admins block everywhere",
    )?;
    let donor = channel_user(&app, &b.username)
        .await
        .map_err(|_| ApiError::not_found("user"))?;
    let scope = if b.everywhere {
        "*".to_owned()
    } else {
        channel.id.clone()
    };
    let keys = catalog::block_donor(&app.db, &scope, &donor.id, &reason, &caller.id).await?;
    tracing::info!(channel = %channel.username, donor = %donor.username, "donor blocked");
    Ok(Json(Blocked { keys }))
}

// ---- requests, competitions, challenges ----

/// Request filter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RequestQuery {
    /// `queued` (default), `approved`, `skipped`, `refunded` or `all`.
    #[param(inline)]
    status: Option<RequestStatus>,
}

/// The song and game request queue (its streamer).
#[utoipa::path(get, path = "/api/v1/channels/{name}/requests", tag = "donations", operation_id = "get_donation_requests",
    security(("token" = [])), params(("name" = String, Path, description = "The channel"), RequestQuery),
    responses((status = 200, body = [QueuedRequest]), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn get_donation_requests(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Params(q): Params<RequestQuery>,
) -> Result<Json<Vec<QueuedRequest>>, ApiError> {
    let channel = owned_channel(&app, &caller, &name).await?;
    let status = match q.status.unwrap_or(RequestStatus::Queued) {
        RequestStatus::All => None,
        RequestStatus::Queued => Some("queued"),
        RequestStatus::Approved => Some("approved"),
        RequestStatus::Skipped => Some("skipped"),
        RequestStatus::Refunded => Some("refunded"),
    };
    Ok(Json(catalog::requests(&app.db, &channel.id, status).await?))
}

/// Requests by state.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RequestStatus {
    /// Waiting for the streamer.
    Queued,
    /// Played.
    Approved,
    /// Passed over (the donation stays).
    Skipped,
    /// Refunded.
    Refunded,
    /// Every state.
    All,
}

/// A decision on a request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionBody {
    /// The action.
    action: RequestAction,
}

/// What to do with a request.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RequestAction {
    /// Play it.
    Approve,
    /// Pass it over (the donation stays).
    Skip,
    /// Give the money back.
    Refund,
}

/// A decision on a challenge.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChallengeActionBody {
    /// `accept` (when proposed), `complete` (when accepted) or `decline`.
    action: ChallengeAction,
}

/// What to do with a challenge.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ChallengeAction {
    /// Take it on.
    Accept,
    /// Done.
    Complete,
    /// Not doing it.
    Decline,
}

/// Approve, skip or refund a queued request (its streamer).
#[utoipa::path(post, path = "/api/v1/channels/{name}/requests/{id}", tag = "donations", operation_id = "decide_donation_request",
    security(("token" = [])), request_body = ActionBody,
    params(("name" = String, Path, description = "The channel"), ("id" = String, Path, description = "Request id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 402, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn decide_donation_request(
    State(app): State<App>,
    Caller(caller): Caller,
    Path((name, id)): Path<(String, String)>,
    Body(b): Body<ActionBody>,
) -> Result<StatusCode, ApiError> {
    let channel = owned_channel(&app, &caller, &name).await?;
    let status = match b.action {
        RequestAction::Approve => "approved",
        RequestAction::Skip => "skipped",
        RequestAction::Refund => "refunded",
    };
    let donation = catalog::decide_request(&app.db, &channel.id, &id, status)
        .await?
        .ok_or_else(|| ApiError::not_found("queued request"))?;
    if status == "refunded" {
        app.payments
            .refund(&donation, "request refunded by the streamer")
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A competition to start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompetitionBody {
    /// 1-80 characters.
    #[schema(
        min_length = 1,
        max_length = 80,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    title: String,
    /// 2-10 options of 1-40 characters.
    #[schema(value_type = Vec<crate::api::Text<1, 40>>, min_items = 2, max_items = 10)]
    options: Vec<String>,
    /// How long it runs, in seconds (60-604800).
    #[serde(deserialize_with = "crate::api::whole")]
    #[schema(value_type = i64, minimum = 60, maximum = 604800)]
    duration_secs: i64,
}

/// Start a donation competition (the seed's `startDonationCompetition`): viewers donate
/// for an option; the overlay shows live totals.
#[utoipa::path(post, path = "/api/v1/channels/{name}/competitions", tag = "donations", operation_id = "start_donation_competition",
    security(("token" = [])), request_body = CompetitionBody, params(("name" = String, Path, description = "The channel")),
    responses((status = 201, body = Competition), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn start_donation_competition(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Body(b): Body<CompetitionBody>,
) -> Result<(StatusCode, Json<Competition>), ApiError> {
    let channel = owned_channel(&app, &caller, &name).await?;
    if !(2..=10).contains(&b.options.len()) {
        return Err(invalid("options: 2-10"));
    }
    if !(60..=604_800).contains(&b.duration_secs) {
        return Err(invalid("duration_secs: 60-604800"));
    }
    if catalog::running_competition(&app.db, &channel.id)
        .await?
        .is_some()
    {
        return Err(ApiError::new(
            StreamingErrorCode::Conflict,
            "a competition is running on this channel",
        ));
    }
    let mut options = Vec::new();
    for (i, label) in b.options.iter().enumerate() {
        options.push(CompetitionOption {
            id: ((b'a' + i as u8) as char).to_string(),
            label: text_field(&format!("options[{i}]"), label, 1, 40)?,
            total: 0,
        });
    }
    let now = now_ms();
    let c = Competition {
        id: new_id(),
        channel_id: channel.id.clone(),
        title: text_field("title", &b.title, 1, 80)?,
        options,
        ends_at: now + b.duration_secs * 1000,
        created_at: now,
    };
    catalog::create_competition(&app.db, &c).await?;
    super::events::overlay_append(
        &app.db,
        &app.payments.bus,
        &channel.username,
        &format!("competition:{}:started", c.id),
        json!({"kind": "competition", "competition": c}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(c)))
}

/// The channel's running competition with its totals.
#[utoipa::path(get, path = "/api/v1/channels/{name}/competitions/current", tag = "donations", operation_id = "get_donation_competition",
    params(("name" = String, Path, description = "The channel")),
    responses((status = 200, body = Competition), (status = 404, body = ApiError)))]
pub(crate) async fn get_donation_competition(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<Competition>, ApiError> {
    let channel = channel_user(&app, &name).await?;
    catalog::running_competition(&app.db, &channel.id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("competition"))
}

/// A challenge to propose.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChallengeBody {
    /// What the streamer should do (1-140 characters).
    #[schema(
        min_length = 1,
        max_length = 140,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    title: String,
    /// The amount that makes it worth it (minor units).
    #[serde(deserialize_with = "crate::api::whole")]
    #[schema(value_type = i64, minimum = 1, maximum = 1000000000000_i64)]
    target_amount: i64,
    /// ISO 4217 (default RUB).
    #[serde(default = "super::rub")]
    #[schema(pattern = "^RUB$")]
    currency: String,
}

/// Propose a viewer challenge (the seed's `handleViewerChallenge`; signed-in viewers):
/// donations with its `challenge_id` fund it; the streamer accepts, completes or declines.
#[utoipa::path(post, path = "/api/v1/channels/{name}/challenges", tag = "donations", operation_id = "handle_viewer_challenge",
    security(("token" = [])), request_body = ChallengeBody, params(("name" = String, Path, description = "The channel")),
    responses((status = 201, body = Challenge), (status = 401, body = ApiError), (status = 404, body = ApiError),
        (status = 422, body = ApiError)))]
pub(crate) async fn handle_viewer_challenge(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Body(b): Body<ChallengeBody>,
) -> Result<(StatusCode, Json<Challenge>), ApiError> {
    let channel = channel_user(&app, &name).await?;
    let title = text_field("title", &b.title, 1, 140)?;
    let title = app.chat.check_paid_text(&channel.username, &title).await?;
    let c = Challenge {
        id: new_id(),
        channel_id: channel.id.clone(),
        proposer_id: caller.id.clone(),
        title,
        target_amount: money("target_amount", b.target_amount)?,
        current_amount: 0,
        currency: currency(&b.currency)?,
        status: "proposed".into(),
        created_at: now_ms(),
    };
    catalog::create_challenge(&app.db, &c).await?;
    Ok((StatusCode::CREATED, Json(c)))
}

/// A challenge with its progress.
#[utoipa::path(get, path = "/api/v1/channels/{name}/challenges/{id}", tag = "donations", operation_id = "get_viewer_challenge",
    params(("name" = String, Path, description = "The channel"), ("id" = String, Path, description = "Challenge id")),
    responses((status = 200, body = Challenge), (status = 404, body = ApiError)))]
pub(crate) async fn get_viewer_challenge(
    State(app): State<App>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Challenge>, ApiError> {
    let channel = channel_user(&app, &name).await?;
    catalog::challenge(&app.db, &id)
        .await?
        .filter(|c| c.channel_id == channel.id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("challenge"))
}

/// Accept, complete or decline a challenge (its streamer).
#[utoipa::path(post, path = "/api/v1/channels/{name}/challenges/{id}", tag = "donations", operation_id = "decide_viewer_challenge",
    security(("token" = [])), request_body = ChallengeActionBody,
    params(("name" = String, Path, description = "The channel"), ("id" = String, Path, description = "Challenge id")),
    responses((status = 200, body = Challenge), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn decide_viewer_challenge(
    State(app): State<App>,
    Caller(caller): Caller,
    Path((name, id)): Path<(String, String)>,
    Body(b): Body<ChallengeActionBody>,
) -> Result<Json<Challenge>, ApiError> {
    let channel = owned_channel(&app, &caller, &name).await?;
    if catalog::challenge(&app.db, &id)
        .await?
        .filter(|c| c.channel_id == channel.id)
        .is_none()
    {
        return Err(ApiError::not_found("challenge"));
    }
    let action = match b.action {
        ChallengeAction::Accept => "accept",
        ChallengeAction::Complete => "complete",
        ChallengeAction::Decline => "decline",
    };
    if !catalog::decide_challenge(&app.db, &channel.id, &id, action).await? {
        return Err(ApiError::new(
            StreamingErrorCode::Conflict,
            "the challenge cannot move that way now",
        ));
    }
    catalog::challenge(&app.db, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("challenge"))
}

// ---- provider notifications ----

/// The address a notification came from: the peer, or — only when the peer is a configured
/// trusted proxy — the address in the configured header.
fn source_addr(app: &App, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let y = &app.payments.cfg.yookassa;
    if let Some(h) = &y.trusted_proxy_header
        && y.trusted_proxies.contains(&peer)
        && let Some(v) = headers.get(h.as_str()).and_then(|v| v.to_str().ok())
        // The last address is the one the trusted proxy added.
        && let Some(ip) = v.rsplit(',').next().and_then(|s| s.trim().parse::<IpAddr>().ok())
    {
        return ip;
    }
    peer
}

/// Acknowledged.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Ack {
    /// What was done: `credited`, `failed`, `refunded`, `unchanged`, `ignored`, `mismatch`.
    result: String,
}

/// YooKassa's HTTP notifications (`payment.succeeded`, `payment.canceled`,
/// `refund.succeeded`; the seed's `handlePaymentConfirmation` / `handlePaymentFailure`).
/// Accepted only from `payments.yookassa.webhook_sources`; the object is re-fetched from the
/// API and only that answer is acted on. A 5xx answer makes YooKassa retry (for 24 h).
#[utoipa::path(post, path = "/api/v1/payments/yookassa/notifications", tag = "payments", operation_id = "handle_payment_confirmation",
    request_body = Object,
    responses((status = 200, body = Ack), (status = 400, body = ApiError), (status = 403, body = ApiError),
        (status = 413, body = ApiError), (status = 503, body = ApiError)))]
pub(crate) async fn yookassa_notification(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Ack>, ApiError> {
    let source = source_addr(&app, peer.ip(), &headers);
    if !app
        .payments
        .webhook_sources
        .iter()
        .any(|n| n.contains(source))
    {
        app.payments
            .metrics
            .webhooks
            .with_label_values(&["forbidden"])
            .inc();
        tracing::warn!(%source, "payment notification from outside the provider's addresses refused");
        return Err(ApiError::forbidden(
            "notifications are accepted only from the payment provider's addresses",
        ));
    }
    if body.len() > 64 * 1024 {
        return Err(ApiError::new(
            StreamingErrorCode::ValidationFailed,
            "notification too large",
        ));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let event = v.get("event").and_then(Value::as_str).unwrap_or_default();
    let object_id = v
        .get("object")
        .and_then(|o| o.get("id"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && id.len() <= 64)
        .ok_or_else(|| invalid("object.id is required"))?;
    let outcome = match event {
        "payment.succeeded" | "payment.canceled" | "payment.waiting_for_capture" => {
            app.payments.sync_payment(object_id).await
        }
        "refund.succeeded" => app.payments.sync_refund(object_id).await,
        _ => Ok(Outcome::Unknown),
    };
    let outcome = outcome.map_err(|e| {
        app.payments
            .metrics
            .webhooks
            .with_label_values(&["retry"])
            .inc();
        // The provider retries a 5xx: nothing was written, or all of it was.
        ApiError::new(
            StreamingErrorCode::ServiceBusy,
            format!("not processed, retry: {}", e.message),
        )
    })?;
    let result = match outcome {
        Outcome::Credited => "credited",
        Outcome::Failed => "failed",
        Outcome::Refunded => "refunded",
        Outcome::Unchanged => "unchanged",
        Outcome::Unknown => "ignored",
        Outcome::Mismatch => "mismatch",
    };
    app.payments
        .metrics
        .webhooks
        .with_label_values(&[result])
        .inc();
    Ok(Json(Ack {
        result: result.into(),
    }))
}

// ---- sandbox ----

/// The sandbox payer's choice.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SandboxChoice {
    /// Pay (`true`) or fail (`false`).
    succeed: bool,
    /// A pretend card number (its fingerprint is what fraud rules see).
    #[serde(default)]
    card: Option<String>,
}

/// Pay or fail a sandbox payment, as its checkout page does (`payments.provider =
/// "sandbox"` only); the donation is then processed as after a provider's notification.
#[utoipa::path(post, path = "/api/v1/payments/sandbox/{id}", tag = "payments", operation_id = "confirm_sandbox_payment",
    request_body = SandboxChoice, params(("id" = String, Path, description = "The sandbox payment's id")),
    responses((status = 200, body = Ack), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn confirm_sandbox_payment(
    State(app): State<App>,
    Path(id): Path<String>,
    Body(c): Body<SandboxChoice>,
) -> Result<Json<Ack>, ApiError> {
    settle_sandbox(&app, &id, c.succeed, c.card.as_deref())
        .await
        .map(|r| Json(Ack { result: r }))
}

async fn settle_sandbox(
    app: &App,
    id: &str,
    succeed: bool,
    card: Option<&str>,
) -> Result<String, ApiError> {
    let sandbox = app
        .payments
        .sandbox
        .as_ref()
        .ok_or_else(|| ApiError::not_found("sandbox payment"))?;
    let settled = sandbox
        .settle(id, succeed, card)
        .await
        .map_err(|e| ApiError::from(crate::db::RepoError::Db(e)))?;
    if !settled
        && sandbox
            .checkout(id)
            .await
            .map_err(|e| ApiError::from(crate::db::RepoError::Db(e)))?
            .is_none()
    {
        return Err(ApiError::not_found("sandbox payment"));
    }
    // What YooKassa does next: a notification, re-fetched like any.
    let outcome = app.payments.sync_payment(id).await?;
    Ok(format!("{outcome:?}").to_lowercase())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The sandbox's checkout page: the payment, "Pay" and "Fail".
pub(crate) async fn sandbox_page(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Some(sandbox) = app.payments.sandbox.as_ref() else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let Ok(Some((p, _))) = sandbox.checkout(&id).await else {
        return (
            StatusCode::NOT_FOUND,
            Html("<!doctype html><title>Not found</title><p>No such payment.</p>".to_owned()),
        )
            .into_response();
    };
    let donation = match &p.donation_id {
        Some(d) => app.payments.donation(d).await.ok().flatten(),
        None => None,
    };
    let to = donation
        .as_ref()
        .map_or_else(String::new, |d| escape(&d.channel));
    let amount = format!(
        "{}.{:02} {}",
        p.amount / 100,
        p.amount % 100,
        escape(&p.currency)
    );
    let body = if p.status == "pending" {
        format!(
            "<form method=post><input type=hidden name=action value=pay>\
             <label>Card <input name=card value=\"4111 1111 1111 1111\" autocomplete=off></label>\
             <button id=pay>Pay {amount}</button></form>\
             <form method=post><input type=hidden name=action value=fail><button id=fail>Fail</button></form>"
        )
    } else {
        format!("<p id=status>This payment is {}.</p>", escape(&p.status))
    };
    let page = format!(
        "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>Sandbox payment</title><style>body{{font:16px system-ui;max-width:28rem;margin:3rem auto}}\
         button{{font-size:1rem;padding:.5rem 1rem;margin:.5rem 0}}</style>\
         <h1>Sandbox payment</h1><p>No money moves: this is the test provider of a Potok installation.</p>\
         <p>Donation to <b>{to}</b>: <b id=amount>{amount}</b></p>{body}</html>"
    );
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(page),
    )
        .into_response()
}

/// The checkout page's form.
#[derive(Debug, Deserialize)]
pub(crate) struct SandboxForm {
    action: String,
    #[serde(default)]
    card: Option<String>,
}

/// The checkout page's buttons: settle, then back to the page the donation came from.
pub(crate) async fn sandbox_submit(
    State(app): State<App>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<SandboxForm>,
) -> Response {
    let succeed = form.action == "pay";
    let card = form.card.map(|c| {
        c.chars()
            .filter(char::is_ascii_digit)
            .take(19)
            .collect::<String>()
    });
    if let Err(e) = settle_sandbox(
        &app,
        &id,
        succeed,
        card.as_deref().filter(|c| !c.is_empty()),
    )
    .await
    {
        return e.into_response();
    }
    let back = match app.payments.sandbox.as_ref() {
        Some(s) => s.checkout(&id).await.ok().flatten().map(|(_, url)| url),
        None => None,
    };
    let back = back.unwrap_or_else(|| format!("{}/", app.payments.public_url));
    let status = if succeed { "paid" } else { "failed" };
    let sep = if back.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{back}{sep}donation={status}")).into_response()
}
