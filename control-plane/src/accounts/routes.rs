//! The accounts area's REST operations: sign-up (with the first-admin rule and per-address
//! limits), password sessions, API tokens, stream keys.

// utoipa's generated code names parameter types with their full paths.
#![allow(unused_qualifications)]

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::App;
use crate::api::{
    Body, CSRF_COOKIE, Caller, ClientAddr, MaybeCaller, SESSION_COOKIE, is_streamer, rate_limited,
    require,
};
use crate::db::{KeyInfo, NewAccount, RepoError, TokenInfo};
use crate::error::{ApiError, Check, StreamingErrorCode};
use crate::limits::Kind;
use crate::model::{User, UserRole, now_ms};
use crate::secrets::{hash_password, hash_secret, new_secret, verify_password};

/// Session tokens from a password login last this long.
const SESSION_MS: i64 = 30 * 24 * 3600 * 1000;

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
    /// Also sign this browser in: sets the `potok_session` cookie (HttpOnly, SameSite=Lax,
    /// Secure behind HTTPS) and the `potok_csrf` cookie whose value every state-changing
    /// call must repeat in `X-CSRF-Token`.
    #[serde(default)]
    cookie: bool,
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
) -> Result<Response, ApiError> {
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
    if !req.cookie {
        return Ok((StatusCode::CREATED, Json(NewToken { token, info })).into_response());
    }
    let secure = if app.payments.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let age = SESSION_MS / 1000;
    let session =
        format!("{SESSION_COOKIE}={token}; Path=/; Max-Age={age}; HttpOnly; SameSite=Lax{secure}");
    let csrf = format!(
        "{CSRF_COOKIE}={}; Path=/; Max-Age={age}; SameSite=Strict{secure}",
        new_secret("csrf_")
    );
    let mut res = (StatusCode::CREATED, Json(NewToken { token, info })).into_response();
    for c in [session, csrf] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(res)
}

/// Log out: revokes the session (the cookie's or the bearer token's) and clears the cookies.
#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "accounts", operation_id = "logout",
    security(("token" = [])),
    responses((status = 204, description = "Logged out"), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub(crate) async fn logout(
    State(app): State<App>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let token = crate::api::credentials(&parts)?.ok_or_else(ApiError::unauthorized)?;
    if !app.db.revoke_token_value(&hash_secret(token)).await? {
        return Err(ApiError::unauthorized());
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        if let Ok(v) = HeaderValue::from_str(&format!("{name}=; Path=/; Max-Age=0")) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(res)
}

/// A real hash of a random password, verified against when the username is unknown.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&new_secret("x")).unwrap_or_default())
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
