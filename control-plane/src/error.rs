//! Errors as the API sends them: `{"code": "<StreamingErrorCode>", "message": ...}` with the
//! matching HTTP status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The product's error codes (the seed's `StreamingErrorCode`, plus the general ones an HTTP
/// API needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamingErrorCode {
    /// The request body or query is invalid (`details` names the fields).
    ValidationFailed,
    /// No credentials, or they are not valid.
    Unauthorized,
    /// Valid credentials without the needed role.
    Forbidden,
    /// No such object (or not yours).
    NotFound,
    /// The name is taken, or the object is in a state that forbids the change.
    Conflict,
    /// Too many attempts from this address; retry later.
    RateLimited,
    /// The stream key is unknown or revoked.
    StreamKeyInvalid,
    /// The stream is already being published elsewhere.
    StreamAlreadyLive,
    /// No origin can take a stream now.
    NoOriginAvailable,
    /// The origin has reached `origin.max_streams`.
    NodeAtCapacity,
    /// The connection to the streaming servers failed (seed code).
    StreamConnectionFailed,
    /// A platform is unavailable (seed code).
    PlatformUnavailable,
    /// The server is too busy for this request now (password checks queued); retry soon.
    ServiceBusy,
    /// A chat message was refused by a filter or a room mode (seed code); the message says
    /// which.
    MessageBlocked,
    /// The user is banned or timed out in this room (seed code).
    UserBanned,
    /// The real-time connection was refused or dropped (seed code): origin, limits, a slow
    /// reader.
    ChatConnectionFailed,
    /// The payment could not be made or the provider refused it (seed code).
    PaymentFailed,
    /// A donation limit or velocity rule refused the donation (seed code); the message
    /// says which.
    DonationLimitExceeded,
    /// A payout could not be made (seed code): balance, minimum, the provider.
    WithdrawalFailed,
    /// Something broke on our side.
    Internal,
}

impl StreamingErrorCode {
    /// The HTTP status it is sent with.
    pub fn status(self) -> StatusCode {
        use StreamingErrorCode as C;
        match self {
            C::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            C::Unauthorized => StatusCode::UNAUTHORIZED,
            C::Forbidden | C::StreamKeyInvalid | C::UserBanned => StatusCode::FORBIDDEN,
            C::MessageBlocked => StatusCode::UNPROCESSABLE_ENTITY,
            C::DonationLimitExceeded => StatusCode::TOO_MANY_REQUESTS,
            C::WithdrawalFailed => StatusCode::CONFLICT,
            C::PaymentFailed => StatusCode::PAYMENT_REQUIRED,
            C::ChatConnectionFailed => StatusCode::BAD_REQUEST,
            C::NotFound => StatusCode::NOT_FOUND,
            C::Conflict | C::StreamAlreadyLive => StatusCode::CONFLICT,
            C::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            C::NoOriginAvailable | C::NodeAtCapacity | C::PlatformUnavailable | C::ServiceBusy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            C::StreamConnectionFailed => StatusCode::BAD_GATEWAY,
            C::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The wire name (`STREAM_KEY_INVALID`).
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// What went wrong, for programs.
    pub code: StreamingErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// Per-field problems of a `VALIDATION_FAILED`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
    /// The stream concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
}

/// One invalid field.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The field (`title`, `tags[2]`).
    pub field: String,
    /// Why.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: StreamingErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: Vec::new(),
            stream_id: None,
        }
    }

    /// A validation error listing `details`.
    pub fn invalid(details: Vec<FieldError>) -> Self {
        ApiError {
            details,
            ..ApiError::new(
                StreamingErrorCode::ValidationFailed,
                "the request has invalid fields",
            )
        }
    }

    pub(crate) fn not_found(what: &str) -> Self {
        ApiError::new(StreamingErrorCode::NotFound, format!("{what} not found"))
    }

    pub(crate) fn unauthorized() -> Self {
        ApiError::new(
            StreamingErrorCode::Unauthorized,
            "send Authorization: Bearer <API token>",
        )
    }

    pub(crate) fn forbidden(why: &str) -> Self {
        ApiError::new(StreamingErrorCode::Forbidden, why)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code.status(), Json(self)).into_response()
    }
}

impl From<crate::hashing::HashError> for ApiError {
    fn from(e: crate::hashing::HashError) -> Self {
        match e {
            crate::hashing::HashError::Busy => {
                ApiError::new(StreamingErrorCode::ServiceBusy, e.to_string())
            }
            crate::hashing::HashError::Failed(_) => {
                ApiError::new(StreamingErrorCode::Internal, e.to_string())
            }
        }
    }
}

impl From<crate::db::RepoError> for ApiError {
    fn from(e: crate::db::RepoError) -> Self {
        match e {
            crate::db::RepoError::Conflict(what) => ApiError::new(
                StreamingErrorCode::Conflict,
                format!("{what} already exists"),
            ),
            crate::db::RepoError::Db(e) => {
                tracing::error!(error = %e, "database error");
                ApiError::new(StreamingErrorCode::Internal, "database error")
            }
        }
    }
}

/// Collects field errors while validating a request.
#[derive(Default)]
pub(crate) struct Check(Vec<FieldError>);

impl Check {
    pub(crate) fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    pub(crate) fn done(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(self.0))
        }
    }
}
