//! The chat area's REST operations (`/api/v1/chat/{room}/...`, `/api/v1/channels/...`).
//! The WebSocket gateway offers the same sending and reading in real time.

// utoipa's generated code names parameter types with their full paths.
#![allow(unused_qualifications)]

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::store::ModlogEntry;
use super::{ChatMessage, ChatSettings, HeldMessage, MessageReaction, Report, Sent};
use crate::App;
use crate::api::{Body, Caller, Params};
use crate::error::{ApiError, StreamingErrorCode};
use crate::model::{User, now_ms};

async fn user_named(app: &App, name: &str) -> Result<User, ApiError> {
    app.db
        .user_by_name(name)
        .await?
        .map(|(u, _)| u)
        .ok_or_else(|| ApiError::not_found("user"))
}

/// History paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Messages, newest last (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// A room's recent messages.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct History {
    messages: Vec<ChatMessage>,
    /// The room's offset now: subscribe with `since` = this to get what follows.
    offset: i64,
}

/// The room's last messages (anyone).
#[utoipa::path(get, path = "/api/v1/chat/{room}/messages", tag = "chat", operation_id = "get_chat_history",
    params(("room" = String, Path, description = "The channel's name"), HistoryQuery),
    responses((status = 200, body = History), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn history(
    State(app): State<App>,
    Path(room): Path<String>,
    Params(q): Params<HistoryQuery>,
) -> Result<Json<History>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(
            StreamingErrorCode::ValidationFailed,
            "limit must be 1-500",
        ));
    }
    let (messages, offset) = app.chat.history(&room, limit).await?;
    Ok(Json(History { messages, offset }))
}

/// A message to send or the new text of one.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct MessageText {
    /// 1-500 characters (`control_plane.chat.max_message_chars`), no control characters but
    /// line feeds.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = "^[^\\x00-\\x09\\x0B-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x09\\x0B-\\x1F\\x7F-\\x9F]*$"
    )]
    text: String,
}

/// Send a message (the seed's `sendChatMessage`); every filter and room mode applies.
#[utoipa::path(post, path = "/api/v1/chat/{room}/messages", tag = "chat", operation_id = "send_chat_message",
    security(("token" = [])), request_body = MessageText,
    params(("room" = String, Path, description = "The channel's name")),
    responses(
        (status = 201, description = "Posted", body = ChatMessage),
        (status = 202, description = "Held by AutoMod for a moderator", body = HeldMessage),
        (status = 401, body = ApiError),
        (status = 403, description = "USER_BANNED", body = ApiError),
        (status = 404, body = ApiError),
        (status = 422, description = "MESSAGE_BLOCKED or VALIDATION_FAILED", body = ApiError),
        (status = 429, description = "RATE_LIMITED: flood control or slow mode", body = ApiError),
    ))]
pub(crate) async fn send(
    State(app): State<App>,
    Caller(user): Caller,
    Path(room): Path<String>,
    Body(req): Body<MessageText>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    Ok(match app.chat.send(&user, &room, &req.text).await? {
        Sent::Posted(m) => (StatusCode::CREATED, Json(m)).into_response(),
        Sent::Held(h) => (StatusCode::ACCEPTED, Json(h)).into_response(),
    })
}

/// Change one's own message within `chat.edit_window` (the seed's `editMessage`).
#[utoipa::path(patch, path = "/api/v1/chat/{room}/messages/{id}", tag = "chat", operation_id = "edit_message",
    security(("token" = [])), request_body = MessageText,
    params(("room" = String, Path, description = "The channel's name"), ("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, body = ChatMessage),
        (status = 401, body = ApiError),
        (status = 403, body = ApiError),
        (status = 404, body = ApiError),
        (status = 409, description = "Too old to edit", body = ApiError),
        (status = 422, body = ApiError),
    ))]
pub(crate) async fn edit(
    State(app): State<App>,
    Caller(user): Caller,
    Path((room, id)): Path<(String, String)>,
    Body(req): Body<MessageText>,
) -> Result<Json<ChatMessage>, ApiError> {
    Ok(Json(app.chat.edit(&user, &room, &id, &req.text).await?))
}

/// Why a message goes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReasonQuery {
    /// Shown to the room and kept in the moderation log.
    #[param(max_length = 500)]
    reason: Option<String>,
}

/// Delete a message: its author, or the room's moderators (the seed's `deleteMessage`).
#[utoipa::path(delete, path = "/api/v1/chat/{room}/messages/{id}", tag = "chat", operation_id = "delete_message",
    security(("token" = [])),
    params(("room" = String, Path, description = "The channel's name"), ("id" = String, Path, description = "Message id"), ReasonQuery),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn delete(
    State(app): State<App>,
    Caller(user): Caller,
    Path((room, id)): Path<(String, String)>,
    Params(q): Params<ReasonQuery>,
) -> Result<StatusCode, ApiError> {
    app.chat.delete(&user, &room, &id, q.reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A moderator's action on a message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ModerationAction {
    /// Remove the message.
    Delete,
    /// Remove it and time its author out for `seconds`.
    Timeout,
    /// Remove it and ban its author.
    Ban,
}

/// What to do with a message.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct Moderation {
    action: ModerationAction,
    /// For a timeout: 1 s to 14 days.
    #[schema(minimum = 1, maximum = 1209600)]
    #[serde(default, deserialize_with = "crate::api::whole_opt")]
    seconds: Option<i64>,
    #[schema(max_length = 500)]
    reason: Option<String>,
}

/// Moderate a message (the seed's `moderateMessage`): delete it, or also time out or ban
/// its author.
#[utoipa::path(post, path = "/api/v1/chat/{room}/messages/{id}/moderate", tag = "chat", operation_id = "moderate_message",
    security(("token" = [])), request_body = Moderation,
    params(("room" = String, Path, description = "The channel's name"), ("id" = String, Path, description = "Message id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn moderate(
    State(app): State<App>,
    Caller(user): Caller,
    Path((room, id)): Path<(String, String)>,
    Body(req): Body<Moderation>,
) -> Result<StatusCode, ApiError> {
    let author = app
        .chat
        .message(&room, &id)
        .await?
        .filter(|m| !m.is_moderated)
        .map(|m| m.user_id);
    let reason = req.reason.unwrap_or_default();
    match req.action {
        ModerationAction::Delete => {
            app.chat.delete(&user, &room, &id, Some(reason)).await?;
        }
        ModerationAction::Timeout | ModerationAction::Ban => {
            let author = author.ok_or_else(|| ApiError::not_found("message"))?;
            let target = app
                .db
                .user(&author)
                .await?
                .ok_or_else(|| ApiError::not_found("user"))?;
            let until = match req.action {
                ModerationAction::Timeout => {
                    Some(now_ms() + check_seconds(req.seconds.unwrap_or(600))? * 1000)
                }
                _ => None,
            };
            // The sanction hides the message with the author's others.
            app.chat
                .sanction(&user, &room, &target, until, &reason)
                .await?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

fn check_seconds(s: i64) -> Result<i64, ApiError> {
    if (1..=14 * 24 * 3600).contains(&s) {
        Ok(s)
    } else {
        Err(ApiError::new(
            StreamingErrorCode::ValidationFailed,
            "seconds must be 1-1209600",
        ))
    }
}

/// A timeout.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct TimeoutRequest {
    username: String,
    /// 1 s to 14 days.
    #[schema(minimum = 1, maximum = 1209600)]
    #[serde(deserialize_with = "crate::api::whole")]
    seconds: i64,
    #[serde(default)]
    #[schema(max_length = 500)]
    reason: String,
}

/// Time a user out (the seed's `muteUser`): they cannot write or join for `seconds`; their
/// recent messages are hidden and their sockets leave the room.
#[utoipa::path(post, path = "/api/v1/chat/{room}/timeouts", tag = "chat", operation_id = "mute_user",
    security(("token" = [])), request_body = TimeoutRequest,
    params(("room" = String, Path, description = "The channel's name")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn timeout(
    State(app): State<App>,
    Caller(user): Caller,
    Path(room): Path<String>,
    Body(req): Body<TimeoutRequest>,
) -> Result<StatusCode, ApiError> {
    let seconds = check_seconds(req.seconds)?;
    let target = user_named(&app, &req.username).await?;
    app.chat
        .sanction(
            &user,
            &room,
            &target,
            Some(now_ms() + seconds * 1000),
            &req.reason,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A ban.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct BanRequest {
    username: String,
    #[serde(default)]
    #[schema(max_length = 500)]
    reason: String,
}

/// Ban a user from the room (the seed's `banUser`): their recent messages are hidden, their
/// sockets leave the room and may not rejoin.
#[utoipa::path(post, path = "/api/v1/chat/{room}/bans", tag = "chat", operation_id = "ban_user",
    security(("token" = [])), request_body = BanRequest,
    params(("room" = String, Path, description = "The channel's name")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn ban(
    State(app): State<App>,
    Caller(user): Caller,
    Path(room): Path<String>,
    Body(req): Body<BanRequest>,
) -> Result<StatusCode, ApiError> {
    let target = user_named(&app, &req.username).await?;
    app.chat
        .sanction(&user, &room, &target, None, &req.reason)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lift a ban or timeout.
#[utoipa::path(delete, path = "/api/v1/chat/{room}/bans/{username}", tag = "chat", operation_id = "unban_user",
    security(("token" = [])),
    params(("room" = String, Path, description = "The channel's name"), ("username" = String, Path, description = "Who")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn unban(
    State(app): State<App>,
    Caller(user): Caller,
    Path((room, username)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let target = user_named(&app, &username).await?;
    app.chat.pardon(&user, &room, &target).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A role in a room.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RoomRole {
    /// Deletes messages, times out and bans, changes settings.
    Moderator,
    /// Not slowed down, may post links.
    Vip,
}

/// The role to give.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RoleRequest {
    role: RoomRole,
}

/// Make a user a moderator or VIP of the room (the seed's `addModerator`; the channel's
/// owner).
#[utoipa::path(put, path = "/api/v1/chat/{room}/roles/{username}", tag = "chat", operation_id = "add_moderator",
    security(("token" = [])), request_body = RoleRequest,
    params(("room" = String, Path, description = "The channel's name"), ("username" = String, Path, description = "Who")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn add_role(
    State(app): State<App>,
    Caller(user): Caller,
    Path((room, username)): Path<(String, String)>,
    Body(req): Body<RoleRequest>,
) -> Result<StatusCode, ApiError> {
    let target = user_named(&app, &username).await?;
    let role = match req.role {
        RoomRole::Moderator => "moderator",
        RoomRole::Vip => "vip",
    };
    app.chat.set_role(&user, &room, &target, Some(role)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Take a user's moderator or VIP role away.
#[utoipa::path(delete, path = "/api/v1/chat/{room}/roles/{username}", tag = "chat", operation_id = "remove_moderator",
    security(("token" = [])),
    params(("room" = String, Path, description = "The channel's name"), ("username" = String, Path, description = "Who")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn remove_role(
    State(app): State<App>,
    Caller(user): Caller,
    Path((room, username)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let target = user_named(&app, &username).await?;
    app.chat.set_role(&user, &room, &target, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The room's settings (anyone: a client shows the modes).
#[utoipa::path(get, path = "/api/v1/chat/{room}/settings", tag = "chat", operation_id = "get_chat_settings",
    params(("room" = String, Path, description = "The channel's name")),
    responses((status = 200, body = ChatSettings), (status = 404, body = ApiError)))]
pub(crate) async fn settings(
    State(app): State<App>,
    Path(room): Path<String>,
) -> Result<Json<ChatSettings>, ApiError> {
    Ok(Json(app.chat.settings(&room).await?))
}

/// Replace the room's settings (its moderators; the seed's `createChatRoom` settings).
#[utoipa::path(put, path = "/api/v1/chat/{room}/settings", tag = "chat", operation_id = "update_chat_settings",
    security(("token" = [])), request_body = ChatSettings,
    params(("room" = String, Path, description = "The channel's name")),
    responses((status = 200, body = ChatSettings), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn update_settings(
    State(app): State<App>,
    Caller(user): Caller,
    Path(room): Path<String>,
    Body(new): Body<ChatSettings>,
) -> Result<Json<ChatSettings>, ApiError> {
    let mut c = crate::error::Check::default();
    if !(0..=86_400).contains(&new.slow_secs) {
        c.add("slow_secs", "must be 0-86400");
    }
    if new
        .followers_only_minutes
        .is_some_and(|m| !(0..=525_600).contains(&m))
    {
        c.add("followers_only_minutes", "must be 0-525600");
    }
    if new.emotes.len() > 200
        || new.emotes.iter().any(|e| {
            !(1..=32).contains(&e.len())
                || !e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
    {
        c.add("emotes", "at most 200 codes of 1-32 letters, digits or '_'");
    }
    if !(0..=4).contains(&new.automod_level) {
        c.add("automod_level", "must be 0-4");
    }
    if !(0..=31_536_000).contains(&new.min_account_age_secs) {
        c.add("min_account_age_secs", "must be 0-31536000");
    }
    if new.link_allow_list.len() > 100
        || new.link_allow_list.iter().any(|d| d.chars().count() > 253)
    {
        c.add("link_allow_list", "at most 100 domains");
    }
    if new.blocked_terms.len() > 500 || new.blocked_terms.iter().any(|t| t.chars().count() > 100) {
        c.add("blocked_terms", "at most 500 terms of up to 100 characters");
    }
    c.done()?;
    app.chat.update_settings(&user, &room, new.clone()).await?;
    Ok(Json(new))
}

/// Remove every message of the room (its moderators).
#[utoipa::path(post, path = "/api/v1/chat/{room}/clear", tag = "chat", operation_id = "clear_chat",
    security(("token" = [])),
    params(("room" = String, Path, description = "The channel's name")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn clear(
    State(app): State<App>,
    Caller(user): Caller,
    Path(room): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.chat.clear(&user, &room).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The room's moderation log (its moderators).
#[utoipa::path(get, path = "/api/v1/chat/{room}/modlog", tag = "chat", operation_id = "get_moderation_log",
    security(("token" = [])),
    params(("room" = String, Path, description = "The channel's name")),
    responses((status = 200, body = [ModlogEntry]), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn modlog(
    State(app): State<App>,
    Caller(user): Caller,
    Path(room): Path<String>,
) -> Result<Json<Vec<ModlogEntry>>, ApiError> {
    if app.chat.standing(&room, &user).await? < super::store::Standing::Moderator {
        return Err(ApiError::forbidden(
            "only the room's moderators read its log",
        ));
    }
    Ok(Json(app.chat.modlog(&room, 200).await?))
}

/// A channel as followers see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Channel {
    /// The channel's name.
    name: String,
    /// Followers.
    followers: i64,
    /// Whether the caller follows it (absent without a caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    following: Option<bool>,
    /// The caller's standing in the channel's chat room: `owner`, `moderator` (of the room,
    /// or a platform moderator or admin), `vip`, `subscriber` (of the channel now) or `regular`
    /// (absent without a caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(owner|moderator|vip|subscriber|regular)$")]
    role: Option<String>,
}

fn standing_name(s: super::store::Standing) -> &'static str {
    use super::store::Standing as S;
    match s {
        S::Owner => "owner",
        S::Moderator => "moderator",
        S::Vip => "vip",
        S::Subscriber => "subscriber",
        S::Regular => "regular",
    }
}

/// A channel: its followers and, for a signed-in caller, whether they follow it and who
/// they are in its chat room.
#[utoipa::path(get, path = "/api/v1/channels/{name}", tag = "chat", operation_id = "get_channel",
    params(("name" = String, Path, description = "The channel's name")),
    responses((status = 200, body = Channel), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn channel(
    State(app): State<App>,
    crate::api::MaybeCaller(caller): crate::api::MaybeCaller,
    Path(name): Path<String>,
) -> Result<Json<Channel>, ApiError> {
    let owner = user_named(&app, &name).await?;
    let (following, role) = match &caller {
        Some(user) => (
            Some(app.chat.follows(&user.id, &owner.id).await?),
            Some(standing_name(app.chat.standing(&owner.username, user).await?).to_owned()),
        ),
        None => (None, None),
    };
    Ok(Json(Channel {
        followers: app.chat.followers(&owner.id).await?,
        name: owner.username,
        following,
        role,
    }))
}

/// Follow a channel.
#[utoipa::path(put, path = "/api/v1/channels/{name}/follow", tag = "chat", operation_id = "follow_channel",
    security(("token" = [])),
    params(("name" = String, Path, description = "The channel's name")),
    responses((status = 200, body = Channel), (status = 401, body = ApiError), (status = 404, body = ApiError), (status = 409, description = "Your own channel", body = ApiError)))]
pub(crate) async fn follow(
    State(app): State<App>,
    Caller(user): Caller,
    Path(name): Path<String>,
) -> Result<Json<Channel>, ApiError> {
    let owner = user_named(&app, &name).await?;
    if owner.id == user.id {
        return Err(ApiError::new(
            StreamingErrorCode::Conflict,
            "you cannot follow yourself",
        ));
    }
    let followers = app.chat.follow(&user, &owner, true).await?;
    Ok(Json(Channel {
        name: owner.username,
        followers,
        following: Some(true),
        role: None,
    }))
}

/// Stop following a channel.
#[utoipa::path(delete, path = "/api/v1/channels/{name}/follow", tag = "chat", operation_id = "unfollow_channel",
    security(("token" = [])),
    params(("name" = String, Path, description = "The channel's name")),
    responses((status = 200, body = Channel), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn unfollow(
    State(app): State<App>,
    Caller(user): Caller,
    Path(name): Path<String>,
) -> Result<Json<Channel>, ApiError> {
    let owner = user_named(&app, &name).await?;
    let followers = app.chat.follow(&user, &owner, false).await?;
    Ok(Json(Channel {
        name: owner.username,
        followers,
        following: Some(false),
        role: None,
    }))
}

/// Messages AutoMod holds, oldest first (the room's moderators).
#[utoipa::path(get, path = "/api/v1/chat/{room}/held", tag = "chat", operation_id = "get_held_messages",
    security(("token" = [])),
    params(("room" = String, Path, description = "The channel's name")),
    responses((status = 200, body = [HeldMessage]), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn held(
    State(app): State<App>,
    Caller(user): Caller,
    Path(room): Path<String>,
) -> Result<Json<Vec<HeldMessage>>, ApiError> {
    Ok(Json(app.chat.held(&user, &room).await?))
}

/// A moderator's decision on a held message.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct Decision {
    /// `true`: post it to the room now; `false`: drop it.
    allow: bool,
}

/// Allow or deny a held message (the room's moderators).
#[utoipa::path(post, path = "/api/v1/chat/{room}/held/{id}", tag = "chat", operation_id = "decide_held_message",
    security(("token" = [])), request_body = Decision,
    params(("room" = String, Path, description = "The channel's name"), ("id" = String, Path, description = "Held message id")),
    responses((status = 200, description = "Allowed: the posted message", body = ChatMessage), (status = 204, description = "Denied"),
        (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn decide_held(
    State(app): State<App>,
    Caller(user): Caller,
    Path((room, id)): Path<(String, String)>,
    Body(d): Body<Decision>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    Ok(
        match app.chat.decide_held(&user, &room, &id, d.allow).await? {
            Some(m) => Json(m).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        },
    )
}

/// Why a message is reported.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ReportRequest {
    #[serde(default)]
    #[schema(max_length = 500)]
    reason: String,
}

/// Report a message to the room's moderators (signed-in users; once per message).
#[utoipa::path(post, path = "/api/v1/chat/{room}/messages/{id}/report", tag = "chat", operation_id = "report_message",
    security(("token" = [])), request_body = ReportRequest,
    params(("room" = String, Path, description = "The channel's name"), ("id" = String, Path, description = "Message id")),
    responses((status = 201, body = Report), (status = 401, body = ApiError), (status = 404, body = ApiError),
        (status = 409, description = "Reported already", body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn report(
    State(app): State<App>,
    Caller(user): Caller,
    Path((room, id)): Path<(String, String)>,
    Body(r): Body<ReportRequest>,
) -> Result<(StatusCode, Json<Report>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(app.chat.report(&user, &room, &id, &r.reason).await?),
    ))
}

/// Open reports (the room's moderators).
#[utoipa::path(get, path = "/api/v1/chat/{room}/reports", tag = "chat", operation_id = "get_reports",
    security(("token" = [])),
    params(("room" = String, Path, description = "The channel's name")),
    responses((status = 200, body = [Report]), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn reports(
    State(app): State<App>,
    Caller(user): Caller,
    Path(room): Path<String>,
) -> Result<Json<Vec<Report>>, ApiError> {
    Ok(Json(app.chat.reports(&user, &room).await?))
}

/// Close a report (the room's moderators).
#[utoipa::path(delete, path = "/api/v1/chat/{room}/reports/{id}", tag = "chat", operation_id = "resolve_report",
    security(("token" = [])),
    params(("room" = String, Path, description = "The channel's name"), ("id" = String, Path, description = "Report id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn resolve_report(
    State(app): State<App>,
    Caller(user): Caller,
    Path((room, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    app.chat.resolve_report(&user, &room, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// React to a message with an emoji or a `:code:` (signed-in users).
#[utoipa::path(put, path = "/api/v1/chat/{room}/messages/{id}/reactions/{emoji}", tag = "chat", operation_id = "add_reaction",
    security(("token" = [])),
    params(("room" = String, Path, description = "The channel's name"), ("id" = String, Path, description = "Message id"),
        ("emoji" = String, Path, description = "An emoji or a :code:, URL-encoded",
            pattern = "^(:[A-Za-z0-9_]{1,30}:|[\\u2190-\\u23FF\\u25A0-\\u27BF\\u2B00-\\u2BFF\\U0001F1E6-\\U0001F1FF\\U0001F300-\\U0001FAFF\\uFE0F\\u200D]{1,16})$")),
    responses((status = 200, body = [MessageReaction]), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn add_reaction(
    State(app): State<App>,
    Caller(user): Caller,
    Path((room, id, emoji)): Path<(String, String, String)>,
) -> Result<Json<Vec<MessageReaction>>, ApiError> {
    Ok(Json(app.chat.react(&user, &room, &id, &emoji, true).await?))
}

/// Take one's reaction back.
#[utoipa::path(delete, path = "/api/v1/chat/{room}/messages/{id}/reactions/{emoji}", tag = "chat", operation_id = "remove_reaction",
    security(("token" = [])),
    params(("room" = String, Path, description = "The channel's name"), ("id" = String, Path, description = "Message id"),
        ("emoji" = String, Path, description = "An emoji or a :code:, URL-encoded",
            pattern = "^(:[A-Za-z0-9_]{1,30}:|[\\u2190-\\u23FF\\u25A0-\\u27BF\\u2B00-\\u2BFF\\U0001F1E6-\\U0001F1FF\\U0001F300-\\U0001FAFF\\uFE0F\\u200D]{1,16})$")),
    responses((status = 200, body = [MessageReaction]), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn remove_reaction(
    State(app): State<App>,
    Caller(user): Caller,
    Path((room, id, emoji)): Path<(String, String, String)>,
) -> Result<Json<Vec<MessageReaction>>, ApiError> {
    Ok(Json(
        app.chat.react(&user, &room, &id, &emoji, false).await?,
    ))
}

/// How many are in a room.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Presence {
    /// Open sockets subscribed to the room, on every control-plane replica (refreshed every
    /// second; a replica silent for a minute no longer counts).
    present: i64,
}

/// Who is in a room now (the seed's join/leave presence counts).
#[utoipa::path(get, path = "/api/v1/chat/{room}/presence", tag = "chat", operation_id = "get_chat_presence",
    params(("room" = String, Path, description = "The channel's name")),
    responses((status = 200, body = Presence), (status = 404, body = ApiError)))]
pub(crate) async fn presence(
    State(app): State<App>,
    Path(room): Path<String>,
) -> Result<Json<Presence>, ApiError> {
    app.chat.ensure_room(&room).await?;
    Ok(Json(Presence {
        present: app.hub.presence(&app.db, &super::channel_of(&room)).await?,
    }))
}
