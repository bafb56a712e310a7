//! What every area's REST handlers share: the caller from its API token, JSON bodies and
//! query strings that fail in the API's error format, the client's address, whole-number
//! fields, bounded strings for the OpenAPI document. The handlers live with their areas
//! (`accounts/routes.rs`, `streams/routes.rs`, `chat/routes.rs`, ...); the OpenAPI document
//! (`/api/v1/openapi.json`) is generated from their annotations.

// utoipa's generated code names parameter types with their full paths.
#![allow(unused_qualifications)]

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::App;
use crate::error::{ApiError, StreamingErrorCode};
use crate::model::{User, UserRole};
use crate::secrets::hash_secret;

/// The session cookie the web pages sign in with (HttpOnly).
pub(crate) const SESSION_COOKIE: &str = "potok_session";
/// The cookie a page copies into `X-CSRF-Token` on every state-changing call.
pub(crate) const CSRF_COOKIE: &str = "potok_csrf";
/// The header that must repeat the CSRF cookie.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// The value of cookie `name` in the request.
pub(crate) fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    cookie_in(&parts.headers, name)
}

/// [`cookie`] from headers.
pub(crate) fn cookie_in<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The API token of a request: `Authorization: Bearer`, or the session cookie. A call that
/// changes something with the cookie must repeat the CSRF cookie in `X-CSRF-Token` (a page
/// of another site can make the browser send the cookie, but cannot read it to copy it).
pub(crate) fn credentials(parts: &Parts) -> Result<Option<&str>, ApiError> {
    if let Some(t) = bearer(parts) {
        return Ok(Some(t));
    }
    let Some(session) = cookie(parts, SESSION_COOKIE) else {
        return Ok(None);
    };
    let safe = matches!(
        parts.method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    if !safe {
        let header = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let expected = cookie(parts, CSRF_COOKIE).unwrap_or("");
        if expected.is_empty()
            || !crate::secrets::constant_time_eq(header.as_bytes(), expected.as_bytes())
        {
            return Err(ApiError::forbidden(
                "a signed-in page must send X-CSRF-Token with the value of the potok_csrf cookie",
            ));
        }
    }
    Ok(Some(session))
}

/// The caller, from `Authorization: Bearer <API token>` or the session cookie.
pub(crate) struct Caller(pub(crate) User);

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let token = credentials(parts)?.ok_or_else(ApiError::unauthorized)?;
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
pub(crate) struct MaybeCaller(pub(crate) Option<User>);

impl FromRequestParts<App> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        if credentials(parts)?.is_none() {
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

pub(crate) fn require(ok: bool, why: &str) -> Result<(), ApiError> {
    if ok {
        Ok(())
    } else {
        Err(ApiError::forbidden(why))
    }
}

pub(crate) fn is_streamer(u: &User) -> bool {
    matches!(u.role, UserRole::Streamer | UserRole::Admin)
}

pub(crate) fn rate_limited() -> ApiError {
    ApiError::new(
        StreamingErrorCode::RateLimited,
        "too many failed attempts from this address; retry in a minute",
    )
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

/// A line of text as the OpenAPI document describes list items: `MIN`-`MAX` characters, not
/// blank, no control characters (what the payments area's text checks accept).
pub(crate) struct Text<const MIN: usize, const MAX: usize>;

impl<const MIN: usize, const MAX: usize> utoipa::PartialSchema for Text<MIN, MAX> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(MIN))
            .max_length(Some(MAX))
            .pattern(Some(
                "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$",
            ))
            .into()
    }
}

impl<const MIN: usize, const MAX: usize> ToSchema for Text<MIN, MAX> {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Owned(format!("Text{MIN}to{MAX}"))
    }
}

/// A stream tag.
pub(crate) type Tag = Bounded<1, 32>;

/// Unknown paths under `/api/v1` answer in the API's error format.
pub(crate) async fn not_found() -> Response {
    ApiError::not_found("endpoint").into_response()
}
