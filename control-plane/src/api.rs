//! The public REST API, `/api/v1`: accounts and sessions, API tokens, stream keys, streams,
//! the ingest endpoint (scheduling) and the node list. JSON in and out; every error is an
//! [`ApiError`]. The OpenAPI document (`/api/v1/openapi.json`) is generated from the
//! annotations on these handlers.

// utoipa's generated code names parameter types with their full paths.
#![allow(unused_qualifications)]

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::db::{KeyInfo, NewAccount, RepoError, StreamFilter, StreamMeta, TokenInfo};
use crate::error::{ApiError, Check, StreamingErrorCode};
use crate::limits::Kind;
use crate::model::{Node, Stream, StreamStatus, User, UserRole, now_ms};
use crate::secrets::{hash_password, hash_secret, new_secret, verify_password};
use crate::{App, scheduler};

/// Session tokens from a password login last this long.
const SESSION_MS: i64 = 30 * 24 * 3600 * 1000;

/// The caller, from `Authorization: Bearer <API token>`.
pub(crate) struct Caller(pub(crate) User);

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        match app.db.user_by_token(&hash_secret(token)).await? {
            Some(user) => Ok(Caller(user)),
            None => Err(ApiError::new(
                StreamingErrorCode::Unauthorized,
                "the API token is unknown, expired or revoked",
            )),
        }
    }
}

/// The caller when credentials were sent, `None` otherwise (bad credentials still fail).
pub(crate) struct MaybeCaller(Option<User>);

impl FromRequestParts<App> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        if bearer(parts).is_none() {
            return Ok(MaybeCaller(None));
        }
        Caller::from_request_parts(parts, app)
            .await
            .map(|c| MaybeCaller(Some(c.0)))
    }
}

pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// JSON bodies that fail to parse become `VALIDATION_FAILED` errors in our format.
pub(crate) struct Body<T>(pub(crate) T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(ApiError::new(
                StreamingErrorCode::ValidationFailed,
                e.body_text(),
            )),
        }
    }
}

/// Query strings that fail to parse become `VALIDATION_FAILED` errors in our format (axum's
/// own rejection is a text/plain 400).
pub(crate) struct Params<T>(pub(crate) T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Params(v)),
            Err(e) => Err(ApiError::new(
                StreamingErrorCode::ValidationFailed,
                e.body_text(),
            )),
        }
    }
}

/// Deserializes a JSON integer, also when written as a whole float (`56.0`): JSON Schema
/// and many clients treat them as the same number.
pub(crate) fn whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    number_to_i64(&n).ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number")))
}

/// [`whole`] for optional fields.
pub(crate) fn whole_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => number_to_i64(&n)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number"))),
    }
}

fn number_to_i64(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// The client's IP address (from the connection; `unknown` when not served over TCP).
pub(crate) struct ClientAddr(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(|| "unknown".to_owned(), |ConnectInfo(a)| a.ip().to_string()),
        ))
    }
}

fn require(ok: bool, why: &str) -> Result<(), ApiError> {
    if ok {
        Ok(())
    } else {
        Err(ApiError::forbidden(why))
    }
}

fn is_streamer(u: &User) -> bool {
    matches!(u.role, UserRole::Streamer | UserRole::Admin)
}

// ---------------------------------------------------------------- accounts

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NewUser {
    /// 3-32 characters `a-z`, `0-9`, `_`, `-`; also the channel's public name.
    #[schema(min_length = 3, max_length = 32, pattern = "^[a-z0-9_-]{3,32}$")]
    username: String,
    /// 10-256 characters.
    #[schema(min_length = 10, max_length = 256)]
    password: String,
    /// `viewer` (default) or `streamer`; `moderator` and `admin` only when an admin asks.
    #[serde(default)]
    role: Option<UserRole>,
}

fn check_username(c: &mut Check, name: &str) {
    if !(3..=32).contains(&name.len())
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        c.add("username", "must be 3-32 characters: a-z, 0-9, '_', '-'");
    }
}

/// Create an account. The first account of a new installation becomes its admin. Sign-ups
/// are limited per client address (`control_plane.signups_per_hour`); names that
/// configuration owns (`origin.streams`, the demo stream) cannot be taken.
#[utoipa::path(post, path = "/api/v1/users", tag = "accounts", request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = User),
        (status = 401, description = "Credentials were sent and are not valid", body = ApiError),
        (status = 403, description = "Only an admin may create moderators and admins", body = ApiError),
        (status = 409, description = "Username taken or reserved", body = ApiError),
        (status = 422, description = "Invalid fields", body = ApiError),
        (status = 429, description = "Too many sign-ups from this address", body = ApiError),
        (status = 503, description = "SERVICE_BUSY: too many password checks at once", body = ApiError),
    ))]
pub(crate) async fn create_user(
    State(app): State<App>,
    MaybeCaller(caller): MaybeCaller,
    ClientAddr(ip): ClientAddr,
    Body(req): Body<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let mut c = Check::default();
    check_username(&mut c, &req.username);
    if !(10..=256).contains(&req.password.chars().count()) {
        c.add("password", "must be 10-256 characters");
    }
    c.done()?;
    let role = req.role.unwrap_or(UserRole::Viewer);
    let by_admin = caller.as_ref().is_some_and(|u| u.role == UserRole::Admin);
    let needs_admin = || ApiError::forbidden("only an admin may create moderators and admins");
    if role.moderates() && !by_admin && app.db.has_first_admin().await? {
        return Err(needs_admin());
    }
    if app.db.is_reserved(&req.username).await? {
        return Err(username_taken());
    }
    // Admins creating accounts are not limited; everyone else counts per address, before
    // the (expensive) hash.
    if !by_admin && app.limiter.attempt(Kind::Signup, &ip).await?.is_none() {
        return Err(ApiError::new(
            StreamingErrorCode::RateLimited,
            "too many accounts created from this address; retry later",
        ));
    }
    let password = req.password;
    let hash = app
        .hasher
        .run(move || hash_password(&password))
        .await?
        .map_err(|e| ApiError::new(StreamingErrorCode::Internal, e))?;
    match app
        .db
        .create_account(&req.username, &hash, role, by_admin)
        .await
    {
        Ok(NewAccount::Created(user)) => Ok((StatusCode::CREATED, Json(user))),
        Ok(NewAccount::NeedsAdmin) => Err(needs_admin()),
        Err(RepoError::Conflict(_)) => Err(username_taken()),
        Err(e) => Err(e.into()),
    }
}

fn username_taken() -> ApiError {
    ApiError::new(
        StreamingErrorCode::Conflict,
        "this username is taken or reserved",
    )
}

/// Credentials for a session.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct Login {
    #[schema(max_length = 256)]
    username: String,
    #[schema(max_length = 256)]
    password: String,
}

/// A new API token: its value is shown only in this answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct NewToken {
    /// The token: send it as `Authorization: Bearer <token>`. Not retrievable later.
    token: String,
    /// What is listed about it.
    info: TokenInfo,
}

/// Log in with a password; answers a session token (30 days). Failed attempts are limited
/// per client address (`control_plane.auth_failures_per_minute`).
#[utoipa::path(post, path = "/api/v1/sessions", tag = "accounts", request_body = Login,
    responses(
        (status = 201, description = "Logged in", body = NewToken),
        (status = 401, description = "Wrong username or password", body = ApiError),
        (status = 422, description = "The body is not a login", body = ApiError),
        (status = 429, description = "Too many failures from this address", body = ApiError),
        (status = 503, description = "SERVICE_BUSY: too many password checks at once", body = ApiError),
    ))]
pub(crate) async fn login(
    State(app): State<App>,
    ClientAddr(ip): ClientAddr,
    Body(req): Body<Login>,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    // Counted as a failure until the password proves right.
    let Some(attempt) = app.limiter.attempt(Kind::Auth, &ip).await? else {
        app.metrics
            .logins
            .with_label_values(&["rate_limited"])
            .inc();
        return Err(rate_limited());
    };
    let found = app.db.user_by_name(&req.username).await?;
    let password = req.password;
    // Verify against a dummy hash for unknown users too, so timing does not reveal them.
    let stored = found.as_ref().map(|(_, h)| h.clone());
    let ok = match app
        .hasher
        .run(move || match &stored {
            Some(h) => verify_password(&password, h),
            None => verify_password(&password, dummy_hash()),
        })
        .await
    {
        Ok(ok) => ok,
        Err(e) => {
            // Not judged: the attempt does not count.
            app.limiter.succeeded(attempt).await?;
            app.metrics.logins.with_label_values(&["busy"]).inc();
            return Err(e.into());
        }
    };
    let Some((user, _)) = found.filter(|_| ok) else {
        app.metrics.logins.with_label_values(&["failed"]).inc();
        return Err(ApiError::new(
            StreamingErrorCode::Unauthorized,
            "wrong username or password",
        ));
    };
    app.limiter.succeeded(attempt).await?;
    app.metrics.logins.with_label_values(&["ok"]).inc();
    let token = new_secret("pt_");
    let info = app
        .db
        .create_token(
            &user.id,
            "session",
            &hash_secret(&token),
            Some(now_ms() + SESSION_MS),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(NewToken { token, info })))
}

/// A real hash of a random password, verified against when the username is unknown.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&new_secret("x")).unwrap_or_default())
}

pub(crate) fn rate_limited() -> ApiError {
    ApiError::new(
        StreamingErrorCode::RateLimited,
        "too many failed attempts from this address; retry in a minute",
    )
}

/// The caller's account.
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts", security(("token" = [])),
    responses(
        (status = 200, body = User),
        (status = 401, body = ApiError),
    ))]
pub(crate) async fn me(Caller(user): Caller) -> Json<User> {
    Json(user)
}

/// A token's name.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct TokenRequest {
    /// 1-64 characters, to recognise it in the list.
    #[schema(min_length = 1, max_length = 64, pattern = "[^\\s\\x85]")]
    name: String,
}

/// Create an API token (shown once).
#[utoipa::path(post, path = "/api/v1/tokens", tag = "accounts", security(("token" = [])),
    request_body = TokenRequest,
    responses(
        (status = 201, body = NewToken),
        (status = 401, body = ApiError),
        (status = 422, body = ApiError),
    ))]
pub(crate) async fn create_token(
    State(app): State<App>,
    Caller(user): Caller,
    Body(req): Body<TokenRequest>,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    let mut c = Check::default();
    if req.name.trim().is_empty() || req.name.chars().count() > 64 {
        c.add("name", "must be 1-64 characters");
    }
    c.done()?;
    let token = new_secret("pt_");
    let info = app
        .db
        .create_token(&user.id, req.name.trim(), &hash_secret(&token), None)
        .await?;
    Ok((StatusCode::CREATED, Json(NewToken { token, info })))
}

/// The caller's live API tokens (names and dates only).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "accounts", security(("token" = [])),
    responses((status = 200, body = [TokenInfo]), (status = 401, body = ApiError)))]
pub(crate) async fn list_tokens(
    State(app): State<App>,
    Caller(user): Caller,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    Ok(Json(app.db.tokens(&user.id).await?))
}

/// Revoke one of the caller's API tokens.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "accounts", security(("token" = [])),
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn revoke_token(
    State(app): State<App>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if app.db.revoke_token(&user.id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("token"))
    }
}

// ---------------------------------------------------------------- stream keys

/// A new stream key: its value is shown only in this answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct NewKey {
    /// The key for OBS or ffmpeg (`rtmp://HOST/live/<key>`). Not retrievable later.
    key: String,
    /// What is listed about it.
    info: KeyInfo,
}

async fn issue_key(app: &App, user: &User) -> Result<NewKey, ApiError> {
    let key = new_secret("sk_");
    let prefix: String = key.chars().take(8).collect();
    let info = app
        .db
        .create_key(&user.id, &hash_secret(&key), &prefix)
        .await?;
    Ok(NewKey { key, info })
}

/// Create a stream key (streamers).
#[utoipa::path(post, path = "/api/v1/stream-keys", tag = "stream keys", security(("token" = [])),
    responses((status = 201, body = NewKey), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub(crate) async fn create_key(
    State(app): State<App>,
    Caller(user): Caller,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    require(is_streamer(&user), "only streamers have stream keys")?;
    Ok((StatusCode::CREATED, Json(issue_key(&app, &user).await?)))
}

/// The caller's stream keys (prefixes only).
#[utoipa::path(get, path = "/api/v1/stream-keys", tag = "stream keys", security(("token" = [])),
    responses((status = 200, body = [KeyInfo]), (status = 401, body = ApiError)))]
pub(crate) async fn list_keys(
    State(app): State<App>,
    Caller(user): Caller,
) -> Result<Json<Vec<KeyInfo>>, ApiError> {
    Ok(Json(app.db.keys(&user.id).await?))
}

/// Replace a stream key with a new one (the old one stops working at once).
#[utoipa::path(post, path = "/api/v1/stream-keys/{id}/rotate", tag = "stream keys", security(("token" = [])),
    params(("id" = String, Path, description = "Key id")),
    responses((status = 201, body = NewKey), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn rotate_key(
    State(app): State<App>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    if !app.db.revoke_key(&user.id, &id).await? {
        return Err(ApiError::not_found("stream key"));
    }
    Ok((StatusCode::CREATED, Json(issue_key(&app, &user).await?)))
}

/// Revoke a stream key.
#[utoipa::path(delete, path = "/api/v1/stream-keys/{id}", tag = "stream keys", security(("token" = [])),
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn revoke_key(
    State(app): State<App>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if app.db.revoke_key(&user.id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("stream key"))
    }
}

// ---------------------------------------------------------------- streams

/// A stream's metadata, to create one.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NewStream {
    /// 1-140 characters.
    #[schema(min_length = 1, max_length = 140, pattern = "[^\\s\\x85]")]
    title: String,
    /// Up to 2000 characters.
    #[serde(default)]
    #[schema(max_length = 2000)]
    description: String,
    /// 1-64 characters (`dota2`, `just-chatting`).
    #[schema(min_length = 1, max_length = 64, pattern = "[^\\s\\x85]")]
    category: String,
    /// ISO 639-1 (`ru`, `en`).
    #[schema(min_length = 2, max_length = 2, pattern = "^[a-z]{2}$")]
    language: String,
    /// Up to 10 tags of 1-32 characters.
    #[serde(default)]
    #[schema(max_items = 10, value_type = Vec<Tag>)]
    tags: Vec<String>,
}

/// Changes to a stream's metadata; absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct StreamPatch {
    /// 1-140 characters.
    #[schema(min_length = 1, max_length = 140, pattern = "[^\\s\\x85]")]
    title: Option<String>,
    /// Up to 2000 characters.
    #[schema(max_length = 2000)]
    description: Option<String>,
    /// 1-64 characters.
    #[schema(min_length = 1, max_length = 64, pattern = "[^\\s\\x85]")]
    category: Option<String>,
    /// ISO 639-1.
    #[schema(min_length = 2, max_length = 2, pattern = "^[a-z]{2}$")]
    language: Option<String>,
    /// Up to 10 tags of 1-32 characters.
    #[schema(max_items = 10, value_type = Option<Vec<Tag>>)]
    tags: Option<Vec<String>>,
}

/// A bounded string as the OpenAPI document describes list items (bodies carry plain
/// strings): `Bounded<MIN, MAX>`, not blank.
pub(crate) struct Bounded<const MIN: usize, const MAX: usize>;

impl<const MIN: usize, const MAX: usize> utoipa::PartialSchema for Bounded<MIN, MAX> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(MIN))
            .max_length(Some(MAX))
            .pattern(Some("[^\\s\\x85]"))
            .into()
    }
}

impl<const MIN: usize, const MAX: usize> ToSchema for Bounded<MIN, MAX> {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Owned(format!("String{MIN}to{MAX}"))
    }
}

/// A stream tag.
pub(crate) type Tag = Bounded<1, 32>;

fn check_meta(c: &mut Check, m: &StreamMeta) {
    if m.title.trim().is_empty() || m.title.chars().count() > 140 {
        c.add("title", "must be 1-140 characters");
    }
    if m.description.chars().count() > 2000 {
        c.add("description", "must be at most 2000 characters");
    }
    if m.category.trim().is_empty() || m.category.chars().count() > 64 {
        c.add("category", "must be 1-64 characters");
    }
    if m.language.len() != 2 || !m.language.bytes().all(|b| b.is_ascii_lowercase()) {
        c.add(
            "language",
            "must be a two-letter ISO 639-1 code like \"ru\"",
        );
    }
    if m.tags.len() > 10 {
        c.add("tags", "at most 10 tags");
    }
    for (i, t) in m.tags.iter().enumerate() {
        if t.trim().is_empty() || t.chars().count() > 32 {
            c.add(&format!("tags[{i}]"), "must be 1-32 characters");
        }
    }
}

/// Start a stream: it waits in `starting` for media (streamers; one open stream each).
#[utoipa::path(post, path = "/api/v1/streams", tag = "streams", security(("token" = [])),
    request_body = NewStream,
    responses(
        (status = 201, body = Stream),
        (status = 401, body = ApiError),
        (status = 403, body = ApiError),
        (status = 409, description = "The streamer already has an open stream", body = ApiError),
        (status = 422, body = ApiError),
    ))]
pub(crate) async fn create_stream(
    State(app): State<App>,
    Caller(user): Caller,
    Body(req): Body<NewStream>,
) -> Result<(StatusCode, Json<Stream>), ApiError> {
    require(is_streamer(&user), "only streamers have streams")?;
    let meta = StreamMeta {
        title: req.title.trim().to_owned(),
        description: req.description,
        category: req.category.trim().to_owned(),
        language: req.language,
        tags: req.tags.into_iter().map(|t| t.trim().to_owned()).collect(),
    };
    let mut c = Check::default();
    check_meta(&mut c, &meta);
    c.done()?;
    if let Some(open) = app.db.open_stream_of(&user.id).await? {
        return Err(ApiError {
            stream_id: Some(open.id),
            ..ApiError::new(
                StreamingErrorCode::Conflict,
                "you already have an open stream; stop it first",
            )
        });
    }
    let stream = app.db.create_stream(&user, &meta).await?;
    // The channel's chat room comes with its first stream (the seed's createChatRoom).
    app.chat.ensure_room(&user.username).await?;
    Ok((StatusCode::CREATED, Json(stream)))
}

/// List filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only this category.
    category: Option<String>,
    /// Only this language.
    language: Option<String>,
    /// Only streams with this tag.
    tag: Option<String>,
    /// Only this streamer's (user id).
    streamer: Option<String>,
    /// Only live streams.
    live: Option<bool>,
    /// Ended streams too.
    include_ended: Option<bool>,
    /// Page size, 1-100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// Streams to skip.
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// A page of streams.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct StreamPage {
    items: Vec<Stream>,
    /// Streams matching the filters in all.
    total: i64,
    limit: i64,
    offset: i64,
}

async fn list(app: &App, q: ListQuery, live: bool) -> Result<Json<StreamPage>, ApiError> {
    let mut c = Check::default();
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        c.add("limit", "must be 1-100");
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        c.add("offset", "must not be negative");
    }
    c.done()?;
    let f = StreamFilter {
        category: q.category,
        language: q.language,
        tag: q.tag,
        streamer_id: q.streamer,
        live_only: live || q.live.unwrap_or(false),
        include_ended: q.include_ended.unwrap_or(false),
        limit,
        offset,
    };
    let (items, total) = app.db.list_streams(&f).await?;
    Ok(Json(StreamPage {
        items,
        total,
        limit,
        offset,
    }))
}

/// Streams, most watched first, with filters and pages.
#[utoipa::path(get, path = "/api/v1/streams", tag = "streams", params(ListQuery),
    responses((status = 200, body = StreamPage), (status = 422, body = ApiError)))]
pub(crate) async fn list_streams(
    State(app): State<App>,
    Params(q): Params<ListQuery>,
) -> Result<Json<StreamPage>, ApiError> {
    list(&app, q, false).await
}

/// Live streams (the seed's `getActiveStreams`), with the same filters.
#[utoipa::path(get, path = "/api/v1/streams/active", tag = "streams", operation_id = "get_active_streams", params(ListQuery),
    responses((status = 200, body = StreamPage), (status = 422, body = ApiError)))]
pub(crate) async fn active_streams(
    State(app): State<App>,
    Params(q): Params<ListQuery>,
) -> Result<Json<StreamPage>, ApiError> {
    list(&app, q, true).await
}

/// One stream.
#[utoipa::path(get, path = "/api/v1/streams/{id}", tag = "streams",
    params(("id" = String, Path, description = "Stream id")),
    responses((status = 200, body = Stream), (status = 404, body = ApiError)))]
pub(crate) async fn get_stream(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Stream>, ApiError> {
    app.db
        .stream(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("stream"))
}

async fn owned_stream(app: &App, user: &User, id: &str) -> Result<Stream, ApiError> {
    let stream = app
        .db
        .stream(id)
        .await?
        .ok_or_else(|| ApiError::not_found("stream"))?;
    if stream.streamer_id != user.id && !user.role.moderates() {
        return Err(ApiError::forbidden(
            "only the stream's streamer or a moderator may change it",
        ));
    }
    Ok(stream)
}

/// Change a stream's title, description, category, language or tags (its streamer, a
/// moderator or an admin).
#[utoipa::path(patch, path = "/api/v1/streams/{id}", tag = "streams", security(("token" = [])),
    params(("id" = String, Path, description = "Stream id")), request_body = StreamPatch,
    responses(
        (status = 200, body = Stream),
        (status = 401, body = ApiError),
        (status = 403, body = ApiError),
        (status = 404, body = ApiError),
        (status = 422, body = ApiError),
    ))]
pub(crate) async fn update_stream(
    State(app): State<App>,
    Caller(user): Caller,
    Path(id): Path<String>,
    Body(p): Body<StreamPatch>,
) -> Result<Json<Stream>, ApiError> {
    let s = owned_stream(&app, &user, &id).await?;
    let meta = StreamMeta {
        title: p.title.map_or(s.title, |t| t.trim().to_owned()),
        description: p.description.unwrap_or(s.description),
        category: p.category.map_or(s.category, |t| t.trim().to_owned()),
        language: p.language.unwrap_or(s.language),
        tags: p.tags.map_or(s.tags, |t| {
            t.into_iter().map(|t| t.trim().to_owned()).collect()
        }),
    };
    let mut c = Check::default();
    check_meta(&mut c, &meta);
    c.done()?;
    app.db
        .update_stream(&id, &meta)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("stream"))
}

/// Stop a stream: `ending` while its origin still holds it (the origin drops the publisher
/// at its next heartbeat), then `ended`.
#[utoipa::path(post, path = "/api/v1/streams/{id}/stop", tag = "streams", security(("token" = [])),
    params(("id" = String, Path, description = "Stream id")),
    responses(
        (status = 200, body = Stream),
        (status = 401, body = ApiError),
        (status = 403, body = ApiError),
        (status = 404, body = ApiError),
        (status = 409, description = "Already ended", body = ApiError),
    ))]
pub(crate) async fn stop_stream(
    State(app): State<App>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<Stream>, ApiError> {
    let s = owned_stream(&app, &user, &id).await?;
    let on_origin = matches!(s.status, StreamStatus::Live | StreamStatus::Paused);
    let to = match s.status {
        StreamStatus::Ended => {
            return Err(ApiError::new(
                StreamingErrorCode::Conflict,
                "the stream has ended",
            ));
        }
        _ if on_origin => StreamStatus::Ending,
        _ => StreamStatus::Ended,
    };
    app.db
        .transition(&id, to, None)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("stream"))
}

/// Where to push: the origin the scheduler picked.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Ingest {
    /// The stream the push will feed (created in `starting` when none is open).
    stream_id: String,
    /// The origin's node name.
    origin: String,
    /// `rtmp://HOST:PORT/live` — append `/<stream key>`.
    rtmp_url: Option<String>,
    /// `rtmps://HOST:PORT/live`, when the origin has TLS.
    rtmps_url: Option<String>,
    /// `srt://HOST:PORT?streamid=live/<stream key>`.
    srt_url: Option<String>,
    /// Where viewers watch, on any edge.
    playback_path: String,
}

/// Ingest URLs on the least loaded origin with room, or on the same origin again while it
/// is alive (reconnects). Streamers only.
#[utoipa::path(get, path = "/api/v1/ingest", tag = "streams", security(("token" = [])),
    responses(
        (status = 200, body = Ingest),
        (status = 401, body = ApiError),
        (status = 403, body = ApiError),
        (status = 503, description = "No origin can take the stream", body = ApiError),
    ))]
pub(crate) async fn ingest(
    State(app): State<App>,
    Caller(user): Caller,
) -> Result<Json<Ingest>, ApiError> {
    require(is_streamer(&user), "only streamers push streams")?;
    let stream = current_stream(&app, &user).await?;
    let node = scheduler::pick_origin(&app, &stream).await?;
    Ok(Json(Ingest {
        stream_id: stream.id,
        origin: node.name,
        rtmp_url: node.rtmp_url,
        rtmps_url: node.rtmps_url,
        srt_url: node
            .srt_url
            .map(|u| format!("{u}?streamid=live/<stream key>")),
        playback_path: stream.playback_path,
    }))
}

/// The streamer's stream a push feeds: the open one, or a new one in `starting` (a stream
/// being stopped ends now and a new one begins).
pub(crate) async fn current_stream(app: &App, user: &User) -> Result<Stream, ApiError> {
    match app.db.open_stream_of(&user.id).await? {
        Some(s) if s.status != StreamStatus::Ending => Ok(s),
        Some(s) => {
            app.db.transition(&s.id, StreamStatus::Ended, None).await?;
            Ok(app.db.create_stream(user, &default_meta(user)).await?)
        }
        None => Ok(app.db.create_stream(user, &default_meta(user)).await?),
    }
}

fn default_meta(user: &User) -> StreamMeta {
    StreamMeta {
        title: format!("{} live", user.username),
        description: String::new(),
        category: "uncategorized".into(),
        language: "ru".into(),
        tags: Vec::new(),
    }
}

/// Registered origins and edges with their last load (admins).
#[utoipa::path(get, path = "/api/v1/nodes", tag = "cluster", security(("token" = [])),
    responses((status = 200, body = [Node]), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub(crate) async fn list_nodes(
    State(app): State<App>,
    Caller(user): Caller,
) -> Result<Json<Vec<Node>>, ApiError> {
    require(user.role == UserRole::Admin, "admins only")?;
    Ok(Json(app.db.nodes(None).await?))
}

/// Unknown paths under `/api/v1` answer in the API's error format.
pub(crate) async fn not_found() -> Response {
    ApiError::not_found("endpoint").into_response()
}
