//! Overlay tokens: what an OBS browser source carries in its URL (`/overlay/{token}/...`)
//! to follow a streamer's overlay channel. Separate from API tokens (an overlay token reads
//! one channel's alerts and nothing else) and revocable.

// utoipa's generated code names parameter types with their full paths.
#![allow(unused_qualifications)]

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::catalog::{self, AlertSettings, Competition, Goal};
use crate::App;
use crate::api::Caller;
use crate::db::Db;
use crate::error::{ApiError, StreamingErrorCode};
use crate::model::{User, now_ms};
use crate::secrets::{hash_secret, new_id, new_secret};

fn db_err(e: sqlx::Error) -> ApiError {
    ApiError::from(crate::db::RepoError::Db(e))
}

/// An overlay token as listed (the secret only once, when created).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OverlayToken {
    id: String,
    /// The secret (only in the answer that creates it).
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// The overlay pages to add as OBS browser sources (only when created).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    urls: Vec<String>,
    created_at: i64,
}

/// The streamer whose overlays `token` reads, if it is valid.
pub(crate) async fn channel_of_token(db: &Db, token: &str) -> Result<Option<User>, ApiError> {
    if !token.starts_with("ov_") || token.len() > 100 {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT user_id FROM overlay_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash_secret(token))
    .fetch_optional(db.pool())
    .await
    .map_err(db_err)?;
    match row {
        Some(r) => Ok(db.user(&r.try_get::<String, _>(0).map_err(db_err)?).await?),
        None => Ok(None),
    }
}

/// Make an overlay token (at most 20 live per account).
#[utoipa::path(post, path = "/api/v1/overlay-tokens", tag = "donations", operation_id = "create_overlay_token",
    security(("token" = [])),
    responses((status = 201, body = OverlayToken), (status = 401, body = ApiError), (status = 409, body = ApiError)))]
pub(crate) async fn create_overlay_token(
    State(app): State<App>,
    Caller(caller): Caller,
) -> Result<(StatusCode, Json<OverlayToken>), ApiError> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM overlay_tokens WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(&caller.id)
    .fetch_one(app.db.pool())
    .await
    .map_err(db_err)?;
    if n >= 20 {
        return Err(ApiError::new(
            StreamingErrorCode::Conflict,
            "at most 20 overlay tokens; revoke one first",
        ));
    }
    let id = new_id();
    let token = new_secret("ov_");
    let now = now_ms();
    sqlx::query(
        "INSERT INTO overlay_tokens (id, user_id, token_hash, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&id)
    .bind(&caller.id)
    .bind(hash_secret(&token))
    .bind(now)
    .execute(app.db.pool())
    .await
    .map_err(db_err)?;
    let base = &app.payments.public_url;
    let urls = ["alerts", "goal", "chat", "competition"]
        .iter()
        .map(|p| format!("{base}/overlay/{token}/{p}"))
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(OverlayToken {
            id,
            token: Some(token),
            urls,
            created_at: now,
        }),
    ))
}

/// The caller's live overlay tokens (without their secrets).
#[utoipa::path(get, path = "/api/v1/overlay-tokens", tag = "donations", operation_id = "list_overlay_tokens",
    security(("token" = [])), responses((status = 200, body = [OverlayToken]), (status = 401, body = ApiError)))]
pub(crate) async fn list_overlay_tokens(
    State(app): State<App>,
    Caller(caller): Caller,
) -> Result<Json<Vec<OverlayToken>>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, created_at FROM overlay_tokens WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at",
    )
    .bind(&caller.id)
    .fetch_all(app.db.pool())
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(OverlayToken {
                id: r.try_get(0).map_err(db_err)?,
                token: None,
                urls: Vec::new(),
                created_at: r.try_get(1).map_err(db_err)?,
            })
        })
        .collect::<Result<_, _>>()
        .map(Json)
}

/// Revoke an overlay token: its pages stop at once (their sockets are refused on the next
/// connect and the state call answers 401).
#[utoipa::path(delete, path = "/api/v1/overlay-tokens/{id}", tag = "donations", operation_id = "revoke_overlay_token",
    security(("token" = [])), params(("id" = String, Path, description = "Token id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn revoke_overlay_token(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let r = sqlx::query("UPDATE overlay_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL")
        .bind(now_ms())
        .bind(&id)
        .bind(&caller.id)
        .execute(app.db.pool())
        .await
        .map_err(db_err)?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found("overlay token"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// What an overlay page shows when it loads.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OverlayState {
    /// The streamer's channel (its overlay channel is `overlay:<channel>`).
    channel: String,
    alerts: AlertSettings,
    goal: Option<Goal>,
    competition: Option<Competition>,
    /// The overlay channel's offset now: subscribe with `since` = this.
    offset: i64,
}

/// An overlay page's state (the seed's `updateDonationOverlay` read side): the alert
/// settings, the active goal, the running competition.
#[utoipa::path(get, path = "/api/v1/overlay/{token}", tag = "donations", operation_id = "get_overlay_state",
    params(("token" = String, Path, description = "An overlay token")),
    responses((status = 200, body = OverlayState), (status = 401, body = ApiError)))]
pub(crate) async fn get_overlay_state(
    State(app): State<App>,
    Path(token): Path<String>,
) -> Result<Json<OverlayState>, ApiError> {
    let channel = channel_of_token(&app.db, &token).await?.ok_or_else(|| {
        ApiError::new(
            StreamingErrorCode::Unauthorized,
            "the overlay token is unknown or revoked",
        )
    })?;
    let settings = catalog::settings(&app.db, &channel.id).await?;
    Ok(Json(OverlayState {
        alerts: settings.alerts,
        goal: catalog::goals(&app.db, &channel.id, true)
            .await?
            .into_iter()
            .next(),
        competition: catalog::running_competition(&app.db, &channel.id).await?,
        offset: super::events::overlay_last_seq(&app.db, &channel.username).await?,
        channel: channel.username,
    }))
}

/// The voice of a spoken alert.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Voice {
    /// Russian.
    Ru,
    /// English.
    En,
}

/// `?lang=` of a spoken alert.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SpeechQuery {
    /// The voice (default: Russian).
    lang: Option<Voice>,
}

/// Syntheses at once on this control plane (each is an `espeak-ng` process).
const SPEECH_AT_ONCE: usize = 2;
/// The longest a synthesis may take.
const SPEECH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The largest answer read from the engine.
const SPEECH_MAX_BYTES: usize = 8 << 20;

fn speech_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| tokio::sync::Semaphore::new(SPEECH_AT_ONCE))
}

/// `text` spoken by espeak-ng as WAV.
async fn synthesize(text: &str, voice: Voice) -> Result<Vec<u8>, ApiError> {
    use tokio::io::AsyncReadExt;
    let unavailable = |why: String| {
        tracing::warn!(%why, "speech synthesis failed");
        ApiError::new(
            StreamingErrorCode::ServiceBusy,
            "no speech from this host now; the overlay's browser speaks instead",
        )
    };
    let _slot = tokio::time::timeout(SPEECH_TIMEOUT, speech_slots().acquire())
        .await
        .map_err(|_| unavailable("every synthesis slot busy".into()))?
        .map_err(|e| unavailable(e.to_string()))?;
    let mut child = tokio::process::Command::new("espeak-ng")
        .args(["--stdout", "-s", "165", "-v"])
        .arg(match voice {
            Voice::Ru => "ru",
            Voice::En => "en",
        })
        // The text is one argument after `--`: never an option, never a shell word.
        .arg("--")
        .arg(text)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| unavailable(format!("espeak-ng: {e} (scripts/setup installs it)")))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| unavailable("no stdout".into()))?;
    let work = async {
        let mut wav = Vec::new();
        (&mut stdout)
            .take(SPEECH_MAX_BYTES as u64 + 1)
            .read_to_end(&mut wav)
            .await?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((wav, status))
    };
    let (wav, status) = tokio::time::timeout(SPEECH_TIMEOUT, work)
        .await
        .map_err(|_| unavailable("espeak-ng took too long".into()))?
        .map_err(|e| unavailable(e.to_string()))?;
    if !status.success() || wav.len() > SPEECH_MAX_BYTES || !wav.starts_with(b"RIFF") {
        return Err(unavailable(format!(
            "espeak-ng: {status}, {} bytes",
            wav.len()
        )));
    }
    Ok(wav)
}

/// A donation's alert read aloud by the server (the seed's `triggerTextToSpeech`), for
/// overlay hosts whose browser has no speech synthesis: WAV of "name: message" (or the
/// amount), only for a completed donation to the token's channel that the alert settings
/// say to read (speech on, at least the minimum amount). Never arbitrary text.
#[utoipa::path(get, path = "/api/v1/overlay/{token}/speech/{donation}", tag = "donations",
    operation_id = "trigger_text_to_speech",
    params(("token" = String, Path, description = "An overlay token"), ("donation" = String, Path, description = "Donation id"), SpeechQuery),
    responses((status = 200, description = "WAV audio", content_type = "audio/wav"), (status = 401, body = ApiError),
        (status = 404, description = "No such completed donation to read on this channel", body = ApiError),
        (status = 422, body = ApiError), (status = 503, description = "No speech engine free on this host", body = ApiError)))]
pub(crate) async fn trigger_text_to_speech(
    State(app): State<App>,
    Path((token, donation)): Path<(String, String)>,
    crate::api::Params(q): crate::api::Params<SpeechQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let channel = channel_of_token(&app.db, &token).await?.ok_or_else(|| {
        ApiError::new(
            StreamingErrorCode::Unauthorized,
            "the overlay token is unknown or revoked",
        )
    })?;
    let not_here = || ApiError::not_found("donation to read");
    let d = app
        .payments
        .donation(&donation)
        .await?
        .filter(|d| d.streamer_id == channel.id && d.status == super::DonationStatus::Completed)
        .ok_or_else(not_here)?;
    let tts = catalog::settings(&app.db, &channel.id).await?.alerts.tts;
    if !tts.enabled || d.amount < tts.min_amount {
        return Err(not_here());
    }
    let name = if d.is_anonymous {
        match q.lang {
            Some(Voice::En) => "Anonymous".to_owned(),
            _ => "Аноним".to_owned(),
        }
    } else {
        d.donor_name.clone()
    };
    let said = match d
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        Some(m) => format!("{name}: {m}"),
        None => format!("{name}: {} {}", d.amount / 100, d.currency),
    };
    let wav = synthesize(&said, q.lang.unwrap_or(Voice::Ru)).await?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "audio/wav"),
            (axum::http::header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        wav,
    )
        .into_response())
}
