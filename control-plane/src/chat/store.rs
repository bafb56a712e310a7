//! The chat area's service and repository: every operation runs in one write transaction
//! that takes the room's next sequence number first (which serializes writers per room on
//! both databases), checks what must be checked inside it, writes the change and its event,
//! and publishes the event on the bus after the commit.

use std::sync::Arc;

use potok_config::ChatConfig;
use sqlx::Row;

use super::filter;
use super::{
    ChatEvent, ChatMessage, ChatSettings, HeldMessage, MessageContent, MessageReaction, Report,
    Sent, Sequenced, UserMention,
};
use crate::db::{Db, sql};
use crate::error::{ApiError, StreamingErrorCode};
use crate::model::{User, UserRole, now_ms};
use crate::realtime::bus::{Bus, subject};
use crate::secrets::new_id;

/// Unique-chat mode's window: the same text once per room in this time.
const UNIQUE_WINDOW_MS: i64 = 600_000;
/// A ban hides the user's messages of this last stretch.
const BAN_HIDES_MS: i64 = 3_600_000;
/// Most events a resume replays; beyond it the client starts from the history.
pub(crate) const MAX_REPLAY: i64 = 1000;

/// Who a user is in a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Standing {
    /// Anyone signed in.
    Regular,
    /// A paying (or gifted) subscriber of the channel now: passes subscriber-only mode.
    Subscriber,
    /// A VIP of the channel: not slowed, not filtered for links.
    Vip,
    /// A moderator of the channel (or a platform moderator/admin).
    Moderator,
    /// The channel's streamer.
    Owner,
}

/// The chat area.
pub(crate) struct Chat {
    db: Db,
    cfg: ChatConfig,
    bus: Arc<dyn Bus>,
    notifications: Arc<crate::notifications::Notifications>,
    metrics: crate::metrics::CpMetrics,
}

fn refuse(code: StreamingErrorCode, why: impl Into<String>) -> ApiError {
    ApiError::new(code, why)
}

fn db_err(e: sqlx::Error) -> ApiError {
    ApiError::from(crate::db::RepoError::Db(e))
}

fn json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

impl Chat {
    pub(crate) fn new(
        db: Db,
        cfg: ChatConfig,
        bus: Arc<dyn Bus>,
        notifications: Arc<crate::notifications::Notifications>,
        metrics: crate::metrics::CpMetrics,
    ) -> Self {
        Chat {
            db,
            cfg,
            bus,
            notifications,
            metrics,
        }
    }

    pub(crate) fn config(&self) -> &ChatConfig {
        &self.cfg
    }

    /// The seed's `createChatRoom`: the channel's room, made when missing. Only streamers
    /// (and admins) have channels.
    pub(crate) async fn ensure_room(&self, room: &str) -> Result<(), ApiError> {
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT room FROM chat_rooms WHERE room = $1")
                .bind(room)
                .fetch_optional(self.db.pool())
                .await
                .map_err(db_err)?;
        if exists.is_some() {
            return Ok(());
        }
        let Some((owner, _)) = self.db.user_by_name(room).await? else {
            return Err(ApiError::not_found("chat room"));
        };
        if !matches!(owner.role, UserRole::Streamer | UserRole::Admin) {
            return Err(ApiError::not_found("chat room"));
        }
        sqlx::query(
            "INSERT INTO chat_rooms (room, owner_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (room) DO NOTHING",
        )
        .bind(room)
        .bind(&owner.id)
        .bind(now_ms())
        .execute(self.db.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Begins a write on `room`: takes its next sequence number (and with it the room's
    /// write lock). `NotFound` when the room does not exist.
    async fn begin(&self, room: &str) -> Result<(Tx, i64), ApiError> {
        for first in [true, false] {
            let mut tx = self.db.begin_write().await?;
            let row = sqlx::query(
                "UPDATE chat_rooms SET last_seq = last_seq + 1 WHERE room = $1 RETURNING last_seq",
            )
            .bind(room)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            match row {
                Some(r) => return Ok((tx, r.try_get(0).map_err(db_err)?)),
                // The room's first write: make it (or learn it cannot exist) and try again.
                None if first => {
                    tx.rollback().await.map_err(db_err)?;
                    self.ensure_room(room).await?;
                }
                None => break,
            }
        }
        Err(ApiError::not_found("chat room"))
    }

    /// Writes the event, commits and publishes it.
    async fn finish(
        &self,
        mut tx: Tx,
        room: &str,
        seq: i64,
        event: ChatEvent,
    ) -> Result<Sequenced, ApiError> {
        let s = Sequenced {
            room: room.to_owned(),
            seq,
            event,
        };
        sqlx::query(
            "INSERT INTO chat_events (room, seq, payload, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(room)
        .bind(seq)
        .bind(to_json(&s))
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        // The event is stored: a failed publish only delays it for other replicas (their
        // hubs fill gaps from the database at the next event).
        let channel = super::channel_of(room);
        let envelope = crate::realtime::Envelope {
            channel: channel.clone(),
            seq,
            event: serde_json::to_value(&s.event).unwrap_or_default(),
        };
        if let Err(e) = self
            .bus
            .publish(&subject(&channel), to_json(&envelope).into_bytes())
            .await
        {
            tracing::warn!(%room, error = %e, "chat event not published on the bus");
        }
        Ok(s)
    }

    async fn settings_in(
        &self,
        tx: &mut Tx,
        room: &str,
    ) -> Result<(String, ChatSettings), ApiError> {
        let r = sqlx::query(
            "SELECT owner_id, slow_secs, followers_only_minutes, subscribers_only, emote_only, unique_chat, \
             min_account_age_secs, links_allowed, link_allow_list, blocked_terms, pinned_message_id, automod_level, emotes \
             FROM chat_rooms WHERE room = $1",
        )
        .bind(room)
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err)?;
        let g = |i: usize| -> Result<i64, ApiError> { r.try_get::<i64, _>(i).map_err(db_err) };
        let settings = ChatSettings {
            slow_secs: g(1)?,
            followers_only_minutes: r.try_get::<Option<i64>, _>(2).map_err(db_err)?,
            subscribers_only: g(3)? != 0,
            emote_only: g(4)? != 0,
            unique_chat: g(5)? != 0,
            min_account_age_secs: g(6)?,
            links_allowed: g(7)? != 0,
            link_allow_list: json_list(&r.try_get::<String, _>(8).map_err(db_err)?),
            blocked_terms: json_list(&r.try_get::<String, _>(9).map_err(db_err)?),
            pinned_message_id: r.try_get::<Option<String>, _>(10).map_err(db_err)?,
            automod_level: g(11)?,
            emotes: json_list(&r.try_get::<String, _>(12).map_err(db_err)?),
        };
        Ok((r.try_get::<String, _>(0).map_err(db_err)?, settings))
    }

    /// A read-only transaction (no write lock) for the `*_in` look-ups.
    async fn begin_read(&self) -> Result<Tx, ApiError> {
        self.db.pool().begin().await.map_err(db_err)
    }

    /// A room's settings.
    pub(crate) async fn settings(&self, room: &str) -> Result<ChatSettings, ApiError> {
        self.ensure_room(room).await?;
        let mut tx = self.begin_read().await?;
        let (_, s) = self.settings_in(&mut tx, room).await?;
        tx.rollback().await.map_err(db_err)?;
        Ok(s)
    }

    async fn standing_in(
        &self,
        tx: &mut Tx,
        room: &str,
        owner_id: &str,
        user: &User,
    ) -> Result<Standing, ApiError> {
        if user.id == owner_id {
            return Ok(Standing::Owner);
        }
        if user.role.moderates() {
            return Ok(Standing::Moderator);
        }
        let role: Option<(String,)> =
            sqlx::query_as("SELECT role FROM chat_roles WHERE room = $1 AND user_id = $2")
                .bind(room)
                .bind(&user.id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db_err)?;
        Ok(match role.as_ref().map(|(r,)| r.as_str()) {
            Some("moderator") => Standing::Moderator,
            Some("vip") => Standing::Vip,
            _ => {
                if crate::subscriptions::repo::entitled_in(tx, owner_id, &user.id, now_ms())
                    .await?
                    .is_some()
                {
                    Standing::Subscriber
                } else {
                    Standing::Regular
                }
            }
        })
    }

    /// Who `user` is in `room`.
    pub(crate) async fn standing(&self, room: &str, user: &User) -> Result<Standing, ApiError> {
        self.ensure_room(room).await?;
        let mut tx = self.begin_read().await?;
        let (owner, _) = self.settings_in(&mut tx, room).await?;
        let s = self.standing_in(&mut tx, room, &owner, user).await?;
        tx.rollback().await.map_err(db_err)?;
        Ok(s)
    }

    async fn sanction_in(
        &self,
        tx: &mut Tx,
        room: &str,
        user_id: &str,
    ) -> Result<Option<Option<i64>>, ApiError> {
        let row: Option<(Option<i64>,)> =
            sqlx::query_as("SELECT until_ms FROM chat_sanctions WHERE room = $1 AND user_id = $2")
                .bind(room)
                .bind(user_id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db_err)?;
        Ok(match row {
            Some((None,)) => Some(None),
            Some((Some(until),)) if until > now_ms() => Some(Some(until)),
            _ => None,
        })
    }

    /// Whether `user_id` is banned or timed out in `room` now: `Some(until)` (`None` until
    /// for a ban).
    pub(crate) async fn sanctioned(
        &self,
        room: &str,
        user_id: &str,
    ) -> Result<Option<Option<i64>>, ApiError> {
        let mut tx = self.begin_read().await?;
        let s = self.sanction_in(&mut tx, room, user_id).await?;
        tx.rollback().await.map_err(db_err)?;
        Ok(s)
    }

    /// A message's text, trimmed: 1 to `max_message_chars` characters, no control
    /// characters but line feeds.
    fn check_text<'t>(&self, text: &'t str) -> Result<&'t str, ApiError> {
        let text = text.trim();
        let chars = text.chars().count();
        if chars == 0 || chars > self.cfg.max_message_chars as usize {
            return Err(ApiError::new(
                StreamingErrorCode::ValidationFailed,
                format!("a message is 1-{} characters", self.cfg.max_message_chars),
            ));
        }
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(ApiError::new(
                StreamingErrorCode::ValidationFailed,
                "a message may not contain control characters",
            ));
        }
        Ok(text)
    }

    /// The seed's `sendMessage` / `sendChatMessage`: every check, then the message.
    pub(crate) async fn send(&self, user: &User, room: &str, text: &str) -> Result<Sent, ApiError> {
        let result = self.send_checked(user, room, text).await;
        let label = match &result {
            Ok(Sent::Posted(_)) => "accepted".to_owned(),
            Ok(Sent::Held(_)) => "held".to_owned(),
            Err(e) => e.code.as_str().to_lowercase(),
        };
        self.metrics
            .chat_messages
            .with_label_values(&[label.as_str()])
            .inc();
        result
    }

    async fn send_checked(&self, user: &User, room: &str, text: &str) -> Result<Sent, ApiError> {
        let text = self.check_text(text)?;
        let (mut tx, seq) = self.begin(room).await?;
        let (owner, settings) = self.settings_in(&mut tx, room).await?;
        if let Some(until) = self.sanction_in(&mut tx, room, &user.id).await? {
            return Err(match until {
                None => refuse(
                    StreamingErrorCode::UserBanned,
                    "you are banned in this chat",
                ),
                Some(t) => refuse(
                    StreamingErrorCode::UserBanned,
                    format!(
                        "you are timed out in this chat for {} s more",
                        (t - now_ms() + 999) / 1000
                    ),
                ),
            });
        }
        let standing = self.standing_in(&mut tx, room, &owner, user).await?;
        let now = now_ms();
        let privileged = standing >= Standing::Moderator;
        // Flood control: messages in the last 30 s, slow mode, duplicates.
        let recent: Vec<(i64, String)> = sqlx::query_as(
            "SELECT created_at, text FROM chat_messages WHERE room = $1 AND user_id = $2 AND created_at > $3 \
             ORDER BY created_at DESC",
        )
        .bind(room)
        .bind(&user.id)
        .bind(now - 30_000.max(self.cfg.duplicate_window.get().as_millis() as i64))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let per_30s = if standing >= Standing::Vip {
            self.cfg.moderator_messages_per_30s
        } else {
            self.cfg.user_messages_per_30s
        };
        if recent.iter().filter(|(t, _)| *t > now - 30_000).count() >= per_30s as usize {
            return Err(refuse(
                StreamingErrorCode::RateLimited,
                format!("at most {per_30s} messages per 30 s"),
            ));
        }
        if !privileged
            && standing < Standing::Vip
            && settings.slow_secs > 0
            && let Some((last, _)) = recent.first()
            && now - last < settings.slow_secs * 1000
        {
            return Err(refuse(
                StreamingErrorCode::RateLimited,
                format!(
                    "slow mode: one message per {} s (wait {} s)",
                    settings.slow_secs,
                    (settings.slow_secs * 1000 - (now - last) + 999) / 1000
                ),
            ));
        }
        let fp = filter::fingerprint(text);
        let dup_since = now - self.cfg.duplicate_window.get().as_millis() as i64;
        if recent
            .iter()
            .any(|(t, old)| *t > dup_since && filter::fingerprint(old) == fp)
        {
            return Err(refuse(
                StreamingErrorCode::MessageBlocked,
                "duplicate: you just said that",
            ));
        }
        if !privileged {
            self.modes(&mut tx, room, &owner, user, &settings, text, &fp, standing)
                .await?;
            no_blocked_terms(text, &settings)?;
        }
        let links = filter::links(text);
        if standing < Standing::Vip
            && !settings.links_allowed
            && let Some(bad) = links
                .iter()
                .find(|d| !filter::domain_allowed(d, &settings.link_allow_list))
        {
            return Err(refuse(
                StreamingErrorCode::MessageBlocked,
                format!("links are not allowed in this chat ({bad})"),
            ));
        }
        if standing < Standing::Vip && settings.automod_level > 0 {
            let (score, why) = filter::suspicion(text);
            if i64::from(score) >= 5 - settings.automod_level.clamp(1, 4) {
                // Held messages take no place in the room's order.
                tx.rollback().await.map_err(db_err)?;
                let held = HeldMessage {
                    id: new_id(),
                    user_id: user.id.clone(),
                    username: user.username.clone(),
                    text: text.to_owned(),
                    reason: why.to_owned(),
                    score: i64::from(score),
                    created_at: now,
                };
                sqlx::query(
                    "INSERT INTO chat_held (id, room, user_id, username, text, reason, score, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&held.id)
                .bind(room)
                .bind(&held.user_id)
                .bind(&held.username)
                .bind(&held.text)
                .bind(&held.reason)
                .bind(held.score)
                .bind(held.created_at)
                .execute(self.db.pool())
                .await
                .map_err(db_err)?;
                return Ok(Sent::Held(held));
            }
        }
        let badge = crate::subscriptions::repo::entitled_in(&mut tx, &owner, &user.id, now).await?;
        let mut message = self.compose(user, room, seq, text, now).await?;
        // Exclusive emotes are for their tier's subscribers (the room's staff use any).
        if !privileged
            && let Some((emote, tier)) = crate::subscriptions::repo::emote_refused(
                &mut tx,
                &owner,
                &user.id,
                &message.content.emojis,
                now,
            )
            .await?
        {
            return Err(refuse(
                StreamingErrorCode::MessageBlocked,
                format!("the emote :{emote}: is for {tier} subscribers"),
            ));
        }
        message.content.badge = badge.map(Box::new);
        self.post(tx, message).await.map(Sent::Posted)
    }

    /// Stores a composed message and its event, commits, publishes, tells the mentioned.
    async fn post(&self, mut tx: Tx, message: ChatMessage) -> Result<ChatMessage, ApiError> {
        self.insert_message(&mut tx, &message).await?;
        let (room, seq) = (message.room_id.clone(), message.seq);
        self.finish(
            tx,
            &room,
            seq,
            ChatEvent::Message {
                message: message.clone(),
            },
        )
        .await?;
        self.notify_mentions(&message).await;
        Ok(message)
    }

    /// Tells the users a message mentions (not its author).
    async fn notify_mentions(&self, m: &ChatMessage) {
        for who in m.content.mentions.iter().filter(|u| u.user_id != m.user_id) {
            let excerpt: String = m.content.text.chars().take(140).collect();
            let data = serde_json::json!({"room": m.room_id, "message_id": m.id,
                "by": m.username, "text": excerpt});
            if let Err(e) = self
                .notifications
                .notify(&who.user_id, "mention", data)
                .await
            {
                tracing::warn!(error = %e.message, "mention notification failed");
            }
        }
    }

    /// A message as stored: mentions resolved, links and emotes listed.
    async fn compose(
        &self,
        user: &User,
        room: &str,
        seq: i64,
        text: &str,
        now: i64,
    ) -> Result<ChatMessage, ApiError> {
        let links = filter::links(text);
        let mut mentions = Vec::new();
        for name in filter::mentions(text).into_iter().take(20) {
            if let Some((u, _)) = self.db.user_by_name(&name).await? {
                mentions.push(UserMention {
                    user_id: u.id,
                    username: u.username,
                });
            }
        }
        let emojis: Vec<String> = text
            .split_whitespace()
            .filter_map(|t| t.strip_prefix(':').and_then(|t| t.strip_suffix(':')))
            .filter(|t| !t.is_empty() && t.len() <= 32)
            .map(str::to_owned)
            .collect();
        let message = ChatMessage {
            id: new_id(),
            room_id: room.to_owned(),
            seq,
            user_id: user.id.clone(),
            username: user.username.clone(),
            content: MessageContent {
                text: text.to_owned(),
                emojis,
                mentions,
                links,
                badge: None,
            },
            timestamp: now,
            platform: "potok".into(),
            is_moderated: false,
            moderation_reason: None,
            reactions: Vec::new(),
            is_highlighted: false,
            is_donation_message: false,
            donation_amount: None,
            edited_at: None,
        };
        Ok(message)
    }

    async fn insert_message(&self, tx: &mut Tx, message: &ChatMessage) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO chat_messages (id, room, seq, user_id, username, text, content, platform, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&message.id)
        .bind(&message.room_id)
        .bind(message.seq)
        .bind(&message.user_id)
        .bind(&message.username)
        .bind(&message.content.text)
        .bind(to_json(&message.content))
        .bind(&message.platform)
        .bind(message.timestamp)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Messages AutoMod holds in `room`, oldest first (its moderators).
    pub(crate) async fn held(
        &self,
        actor: &User,
        room: &str,
    ) -> Result<Vec<HeldMessage>, ApiError> {
        if self.standing(room, actor).await? < Standing::Moderator {
            return Err(ApiError::forbidden(
                "only the room's moderators see held messages",
            ));
        }
        let rows: Vec<(String, String, String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT id, user_id, username, text, reason, score, created_at FROM chat_held WHERE room = $1 \
             ORDER BY created_at, id LIMIT 500",
        )
        .bind(room)
        .fetch_all(self.db.pool())
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(
                |(id, user_id, username, text, reason, score, created_at)| HeldMessage {
                    id,
                    user_id,
                    username,
                    text,
                    reason,
                    score,
                    created_at,
                },
            )
            .collect())
    }

    /// A moderator allows (posts it now, as its author) or denies (drops it) a held message.
    pub(crate) async fn decide_held(
        &self,
        actor: &User,
        room: &str,
        id: &str,
        allow: bool,
    ) -> Result<Option<ChatMessage>, ApiError> {
        let (mut tx, seq) = self.begin(room).await?;
        self.require_moderator(&mut tx, room, actor).await?;
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT user_id, username, text FROM chat_held WHERE id = $1 AND room = $2",
        )
        .bind(id)
        .bind(room)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some((user_id, username, text)) = row else {
            return Err(ApiError::not_found("held message"));
        };
        sqlx::query("DELETE FROM chat_held WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let action = if allow { "allow_held" } else { "deny_held" };
        log_in(&mut tx, room, &actor.id, action, Some(id), None).await?;
        if !allow {
            // Nothing reaches the room: give the sequence number back.
            sqlx::query("UPDATE chat_rooms SET last_seq = last_seq - 1 WHERE room = $1")
                .bind(room)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            return Ok(None);
        }
        let author = User {
            id: user_id,
            username,
            role: UserRole::Viewer,
            created_at: 0,
        };
        let message = self.compose(&author, room, seq, &text, now_ms()).await?;
        self.post(tx, message).await.map(Some)
    }

    /// A user reports a message to the room's moderators (once per message).
    pub(crate) async fn report(
        &self,
        user: &User,
        room: &str,
        message_id: &str,
        reason: &str,
    ) -> Result<Report, ApiError> {
        self.ensure_room(room).await?;
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT id FROM chat_messages WHERE id = $1 AND room = $2")
                .bind(message_id)
                .bind(room)
                .fetch_optional(self.db.pool())
                .await
                .map_err(db_err)?;
        if exists.is_none() {
            return Err(ApiError::not_found("message"));
        }
        let report = Report {
            id: new_id(),
            message_id: message_id.to_owned(),
            reporter_id: user.id.clone(),
            reason: reason.chars().take(500).collect(),
            created_at: now_ms(),
        };
        sqlx::query(
            "INSERT INTO chat_reports (id, room, message_id, reporter_id, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&report.id)
        .bind(room)
        .bind(&report.message_id)
        .bind(&report.reporter_id)
        .bind(&report.reason)
        .bind(report.created_at)
        .execute(self.db.pool())
        .await
        .map_err(|e| ApiError::from(crate::db::unique(e, "report")))?;
        Ok(report)
    }

    /// Open reports of a room, oldest first (its moderators).
    pub(crate) async fn reports(&self, actor: &User, room: &str) -> Result<Vec<Report>, ApiError> {
        if self.standing(room, actor).await? < Standing::Moderator {
            return Err(ApiError::forbidden(
                "only the room's moderators see reports",
            ));
        }
        sqlx::query_as(
            "SELECT id, message_id, reporter_id, reason, created_at FROM chat_reports \
             WHERE room = $1 AND resolved_at IS NULL ORDER BY created_at, id LIMIT 500",
        )
        .bind(room)
        .fetch_all(self.db.pool())
        .await
        .map_err(db_err)
    }

    /// Closes a report (its room's moderators), logged.
    pub(crate) async fn resolve_report(
        &self,
        actor: &User,
        room: &str,
        id: &str,
    ) -> Result<(), ApiError> {
        self.ensure_room(room).await?;
        let mut tx = self.db.begin_write().await?;
        self.require_moderator(&mut tx, room, actor).await?;
        let r = sqlx::query(
            "UPDATE chat_reports SET resolved_at = $1, resolved_by = $2 WHERE id = $3 AND room = $4 AND resolved_at IS NULL",
        )
        .bind(now_ms())
        .bind(&actor.id)
        .bind(id)
        .bind(room)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if r.rows_affected() == 0 {
            return Err(ApiError::not_found("open report"));
        }
        log_in(&mut tx, room, &actor.id, "resolve_report", Some(id), None).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    /// Adds (`on`) or removes a user's reaction to a message; answers its reactions.
    pub(crate) async fn react(
        &self,
        user: &User,
        room: &str,
        message_id: &str,
        emoji: &str,
        on: bool,
    ) -> Result<Vec<MessageReaction>, ApiError> {
        let emoji = emoji.trim();
        let ok = (1..=32).contains(&emoji.chars().count())
            && !emoji.chars().any(|c| c.is_whitespace() || c.is_control())
            && (emoji.starts_with(':') && emoji.ends_with(':') && emoji.len() > 2
                || !emoji.chars().any(char::is_alphanumeric));
        if !ok {
            return Err(ApiError::new(
                StreamingErrorCode::ValidationFailed,
                "a reaction is an emoji or a :code:",
            ));
        }
        let (mut tx, seq) = self.begin(room).await?;
        if self.sanction_in(&mut tx, room, &user.id).await?.is_some() {
            return Err(refuse(
                StreamingErrorCode::UserBanned,
                "you are banned in this chat",
            ));
        }
        let Some(m) = self.message_in(&mut tx, message_id).await? else {
            return Err(ApiError::not_found("message"));
        };
        if m.room_id != room || m.is_moderated {
            return Err(ApiError::not_found("message"));
        }
        if on {
            let (n,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM chat_reactions WHERE message_id = $1")
                    .bind(message_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err)?;
            if n >= 1000 {
                return Err(refuse(
                    StreamingErrorCode::Conflict,
                    "this message has enough reactions",
                ));
            }
            sqlx::query(
                "INSERT INTO chat_reactions (message_id, user_id, emoji, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (message_id, user_id, emoji) DO NOTHING",
            )
            .bind(message_id)
            .bind(&user.id)
            .bind(emoji)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        } else {
            sqlx::query(
                "DELETE FROM chat_reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3",
            )
            .bind(message_id)
            .bind(&user.id)
            .bind(emoji)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        let reactions = reactions_in(&mut *tx, &[message_id.to_owned()])
            .await?
            .remove(message_id)
            .unwrap_or_default();
        self.finish(
            tx,
            room,
            seq,
            ChatEvent::Reactions {
                message_id: message_id.to_owned(),
                reactions: reactions.clone(),
            },
        )
        .await?;
        Ok(reactions)
    }

    /// Room modes for users without privileges.
    #[allow(clippy::too_many_arguments)]
    async fn modes(
        &self,
        tx: &mut Tx,
        room: &str,
        owner_id: &str,
        user: &User,
        settings: &ChatSettings,
        text: &str,
        fp: &str,
        standing: Standing,
    ) -> Result<(), ApiError> {
        let now = now_ms();
        if settings.subscribers_only && standing < Standing::Subscriber {
            return Err(refuse(
                StreamingErrorCode::MessageBlocked,
                "subscribers-only chat",
            ));
        }
        if settings.min_account_age_secs > 0
            && now - user.created_at < settings.min_account_age_secs * 1000
        {
            return Err(refuse(
                StreamingErrorCode::MessageBlocked,
                format!(
                    "accounts younger than {} s may not write here",
                    settings.min_account_age_secs
                ),
            ));
        }
        if let Some(minutes) = settings.followers_only_minutes {
            let since: Option<(i64,)> = sqlx::query_as(
                "SELECT created_at FROM follows WHERE follower_id = $1 AND channel_id = $2",
            )
            .bind(&user.id)
            .bind(owner_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
            if since.is_none_or(|(t,)| now - t < minutes * 60_000) {
                return Err(refuse(
                    StreamingErrorCode::MessageBlocked,
                    format!("followers-only chat: follow the channel for {minutes} min first"),
                ));
            }
        }
        if settings.emote_only && !filter::emote_only(text, &settings.emotes) {
            return Err(refuse(
                StreamingErrorCode::MessageBlocked,
                "emote-only chat",
            ));
        }
        if settings.unique_chat {
            let texts: Vec<(String,)> = sqlx::query_as(
                "SELECT text FROM chat_messages WHERE room = $1 AND created_at > $2 AND deleted_at IS NULL \
                 ORDER BY created_at DESC LIMIT 500",
            )
            .bind(room)
            .bind(now - UNIQUE_WINDOW_MS)
            .fetch_all(&mut **tx)
            .await
            .map_err(db_err)?;
            if texts.iter().any(|(t,)| filter::fingerprint(t) == fp) {
                return Err(refuse(
                    StreamingErrorCode::MessageBlocked,
                    "unique chat: this was said in the last 10 minutes",
                ));
            }
        }
        Ok(())
    }

    async fn message_in(&self, tx: &mut Tx, id: &str) -> Result<Option<ChatMessage>, ApiError> {
        let row = sqlx::query(sql(format!("{MESSAGE_COLUMNS} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
        row.map(|r| message_from(&r)).transpose()
    }

    /// A message of `room` by id (removed ones too: see `is_moderated`).
    pub(crate) async fn message(
        &self,
        room: &str,
        id: &str,
    ) -> Result<Option<ChatMessage>, ApiError> {
        let mut tx = self.begin_read().await?;
        let m = self.message_in(&mut tx, id).await?;
        tx.rollback().await.map_err(db_err)?;
        Ok(m.filter(|m| m.room_id == room))
    }

    /// The seed's `deleteMessage` (its author or the room's moderators).
    pub(crate) async fn delete(
        &self,
        actor: &User,
        room: &str,
        id: &str,
        reason: Option<String>,
    ) -> Result<Sequenced, ApiError> {
        let (mut tx, seq) = self.begin(room).await?;
        let Some(m) = self.message_in(&mut tx, id).await? else {
            return Err(ApiError::not_found("message"));
        };
        if m.room_id != room || m.is_moderated {
            return Err(ApiError::not_found("message"));
        }
        let (owner, _) = self.settings_in(&mut tx, room).await?;
        let standing = self.standing_in(&mut tx, room, &owner, actor).await?;
        let own = m.user_id == actor.id;
        if !own && standing < Standing::Moderator {
            return Err(ApiError::forbidden(
                "only the author or the room's moderators may delete a message",
            ));
        }
        let reason = reason.map(|r| r.chars().take(500).collect::<String>());
        sqlx::query(
            "UPDATE chat_messages SET deleted_at = $1, moderation_reason = $2 WHERE id = $3",
        )
        .bind(now_ms())
        .bind(&reason)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if !own {
            log_in(
                &mut tx,
                room,
                &actor.id,
                "delete_message",
                Some(id),
                reason.as_deref(),
            )
            .await?;
        }
        self.finish(
            tx,
            room,
            seq,
            ChatEvent::Deleted {
                message_id: id.to_owned(),
                reason,
            },
        )
        .await
    }

    /// The seed's `editMessage`: the author, within `chat.edit_window`, through every
    /// filter again.
    pub(crate) async fn edit(
        &self,
        user: &User,
        room: &str,
        id: &str,
        text: &str,
    ) -> Result<ChatMessage, ApiError> {
        let text = self.check_text(text)?;
        let (mut tx, seq) = self.begin(room).await?;
        let Some(mut m) = self.message_in(&mut tx, id).await? else {
            return Err(ApiError::not_found("message"));
        };
        if m.room_id != room || m.is_moderated {
            return Err(ApiError::not_found("message"));
        }
        if m.user_id != user.id {
            return Err(ApiError::forbidden("only its author edits a message"));
        }
        let now = now_ms();
        if now - m.timestamp > self.cfg.edit_window.get().as_millis() as i64 {
            return Err(refuse(
                StreamingErrorCode::Conflict,
                "the message is too old to edit",
            ));
        }
        let (owner, settings) = self.settings_in(&mut tx, room).await?;
        let standing = self.standing_in(&mut tx, room, &owner, user).await?;
        if standing < Standing::Moderator {
            no_blocked_terms(text, &settings)?;
        }
        m.content.text = text.to_owned();
        m.content.links = filter::links(text);
        m.edited_at = Some(now);
        sqlx::query(
            "UPDATE chat_messages SET text = $1, content = $2, edited_at = $3 WHERE id = $4",
        )
        .bind(text)
        .bind(to_json(&m.content))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        self.finish(tx, room, seq, ChatEvent::Edited { message: m.clone() })
            .await?;
        Ok(m)
    }

    async fn require_moderator(
        &self,
        tx: &mut Tx,
        room: &str,
        actor: &User,
    ) -> Result<(String, Standing), ApiError> {
        let (owner, _) = self.settings_in(tx, room).await?;
        let standing = self.standing_in(tx, room, &owner, actor).await?;
        if standing < Standing::Moderator {
            return Err(ApiError::forbidden(
                "only the room's moderators may do this",
            ));
        }
        Ok((owner, standing))
    }

    /// The seed's `muteUser` (a timeout: `until` set) and `banUser` (`until` None): the
    /// user's recent messages are hidden, their sockets leave the room.
    pub(crate) async fn sanction(
        &self,
        actor: &User,
        room: &str,
        target: &User,
        until: Option<i64>,
        reason: &str,
    ) -> Result<Sequenced, ApiError> {
        let (mut tx, seq) = self.begin(room).await?;
        let (owner, standing) = self.require_moderator(&mut tx, room, actor).await?;
        let target_standing = self.standing_in(&mut tx, room, &owner, target).await?;
        if target_standing >= standing || target.id == actor.id {
            return Err(ApiError::forbidden(
                "the owner and moderators can only be sanctioned by someone above them",
            ));
        }
        let now = now_ms();
        let reason: String = reason.chars().take(500).collect();
        sqlx::query("DELETE FROM chat_sanctions WHERE room = $1 AND user_id = $2")
            .bind(room)
            .bind(&target.id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO chat_sanctions (room, user_id, until_ms, reason, by_user, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(room)
        .bind(&target.id)
        .bind(until)
        .bind(&reason)
        .bind(&actor.id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let hidden: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM chat_messages WHERE room = $1 AND user_id = $2 AND created_at > $3 AND deleted_at IS NULL",
        )
        .bind(room)
        .bind(&target.id)
        .bind(now - BAN_HIDES_MS)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "UPDATE chat_messages SET deleted_at = $1, moderation_reason = $2 WHERE room = $3 AND user_id = $4 AND created_at > $5 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(&reason)
        .bind(room)
        .bind(&target.id)
        .bind(now - BAN_HIDES_MS)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let action = if until.is_some() { "timeout" } else { "ban" };
        log_in(
            &mut tx,
            room,
            &actor.id,
            action,
            Some(&target.id),
            Some(&reason),
        )
        .await?;
        self.finish(
            tx,
            room,
            seq,
            ChatEvent::UserSanctioned {
                user_id: target.id.clone(),
                until,
                hidden: hidden.into_iter().map(|(id,)| id).collect(),
            },
        )
        .await
    }

    /// Lifts a ban or timeout.
    pub(crate) async fn pardon(
        &self,
        actor: &User,
        room: &str,
        target: &User,
    ) -> Result<Sequenced, ApiError> {
        let (mut tx, seq) = self.begin(room).await?;
        self.require_moderator(&mut tx, room, actor).await?;
        let r = sqlx::query("DELETE FROM chat_sanctions WHERE room = $1 AND user_id = $2")
            .bind(room)
            .bind(&target.id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if r.rows_affected() == 0 {
            return Err(ApiError::not_found("ban or timeout"));
        }
        log_in(&mut tx, room, &actor.id, "unban", Some(&target.id), None).await?;
        self.finish(
            tx,
            room,
            seq,
            ChatEvent::UserPardoned {
                user_id: target.id.clone(),
            },
        )
        .await
    }

    /// The seed's `addModerator` (role `moderator`), VIPs (`vip`), or removal (`None`):
    /// the channel's owner (or a platform moderator).
    pub(crate) async fn set_role(
        &self,
        actor: &User,
        room: &str,
        target: &User,
        role: Option<&str>,
    ) -> Result<(), ApiError> {
        self.ensure_room(room).await?;
        let mut tx = self.db.begin_write().await?;
        let (owner, _) = self.settings_in(&mut tx, room).await?;
        let standing = self.standing_in(&mut tx, room, &owner, actor).await?;
        if standing != Standing::Owner && !actor.role.moderates() {
            return Err(ApiError::forbidden(
                "only the channel's owner names moderators and VIPs",
            ));
        }
        sqlx::query("DELETE FROM chat_roles WHERE room = $1 AND user_id = $2")
            .bind(room)
            .bind(&target.id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if let Some(role) = role {
            sqlx::query(
                "INSERT INTO chat_roles (room, user_id, role, added_by, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(room)
            .bind(&target.id)
            .bind(role)
            .bind(&actor.id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        let action = match role {
            Some(r) => format!("add_{r}"),
            None => "remove_role".to_owned(),
        };
        log_in(&mut tx, room, &actor.id, &action, Some(&target.id), None).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    /// Changes the room's settings (its moderators).
    pub(crate) async fn update_settings(
        &self,
        actor: &User,
        room: &str,
        new: ChatSettings,
    ) -> Result<Sequenced, ApiError> {
        let (mut tx, seq) = self.begin(room).await?;
        self.require_moderator(&mut tx, room, actor).await?;
        sqlx::query(
            "UPDATE chat_rooms SET slow_secs = $1, followers_only_minutes = $2, subscribers_only = $3, emote_only = $4, \
             unique_chat = $5, min_account_age_secs = $6, links_allowed = $7, link_allow_list = $8, blocked_terms = $9, \
             pinned_message_id = $10, automod_level = $11, emotes = $12 WHERE room = $13",
        )
        .bind(new.slow_secs)
        .bind(new.followers_only_minutes)
        .bind(i64::from(new.subscribers_only))
        .bind(i64::from(new.emote_only))
        .bind(i64::from(new.unique_chat))
        .bind(new.min_account_age_secs)
        .bind(i64::from(new.links_allowed))
        .bind(to_json(&new.link_allow_list))
        .bind(to_json(&new.blocked_terms))
        .bind(&new.pinned_message_id)
        .bind(new.automod_level)
        .bind(to_json(&new.emotes))
        .bind(room)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        log_in(
            &mut tx,
            room,
            &actor.id,
            "settings",
            None,
            Some(&to_json(&new)),
        )
        .await?;
        self.finish(tx, room, seq, ChatEvent::Settings { settings: new })
            .await
    }

    /// Removes every message of the room (its moderators).
    pub(crate) async fn clear(&self, actor: &User, room: &str) -> Result<Sequenced, ApiError> {
        let (mut tx, seq) = self.begin(room).await?;
        self.require_moderator(&mut tx, room, actor).await?;
        sqlx::query("UPDATE chat_messages SET deleted_at = $1, moderation_reason = 'cleared' WHERE room = $2 AND deleted_at IS NULL")
            .bind(now_ms())
            .bind(room)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        log_in(&mut tx, room, &actor.id, "clear", None, None).await?;
        self.finish(tx, room, seq, ChatEvent::Cleared).await
    }

    /// The last `limit` visible messages, oldest first, and the room's offset now.
    pub(crate) async fn history(
        &self,
        room: &str,
        limit: i64,
    ) -> Result<(Vec<ChatMessage>, i64), ApiError> {
        self.ensure_room(room).await?;
        let rows = sqlx::query(sql(format!(
            "{MESSAGE_COLUMNS} WHERE room = $1 AND deleted_at IS NULL ORDER BY seq DESC LIMIT $2"
        )))
        .bind(room)
        .bind(limit.clamp(0, 500))
        .fetch_all(self.db.pool())
        .await
        .map_err(db_err)?;
        let mut out = rows
            .iter()
            .map(message_from)
            .collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        let ids: Vec<String> = out.iter().map(|m| m.id.clone()).collect();
        let mut reactions = reactions_in(self.db.pool(), &ids).await?;
        for m in &mut out {
            m.reactions = reactions.remove(&m.id).unwrap_or_default();
        }
        Ok((out, self.last_seq(room).await?))
    }

    /// The room's newest sequence number.
    pub(crate) async fn last_seq(&self, room: &str) -> Result<i64, ApiError> {
        let (n,): (i64,) = sqlx::query_as("SELECT last_seq FROM chat_rooms WHERE room = $1")
            .bind(room)
            .fetch_optional(self.db.pool())
            .await
            .map_err(db_err)?
            .ok_or_else(|| ApiError::not_found("chat room"))?;
        Ok(n)
    }

    /// Events after `since` up to `until` (inclusive), oldest first, at most [`MAX_REPLAY`].
    pub(crate) async fn events(
        &self,
        room: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<Sequenced>, ApiError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT payload FROM chat_events WHERE room = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
        )
        .bind(room)
        .bind(since)
        .bind(until)
        .bind(MAX_REPLAY)
        .fetch_all(self.db.pool())
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(p,)| serde_json::from_str(&p).ok())
            .collect())
    }

    /// The moderation log, newest first.
    pub(crate) async fn modlog(
        &self,
        room: &str,
        limit: i64,
    ) -> Result<Vec<ModlogEntry>, ApiError> {
        sqlx::query_as(
            "SELECT id, actor_id, action, target, reason, created_at FROM chat_modlog WHERE room = $1 \
             ORDER BY created_at DESC, id LIMIT $2",
        )
        .bind(room)
        .bind(limit.clamp(1, 500))
        .fetch_all(self.db.pool())
        .await
        .map_err(db_err)
    }

    /// Follows (`true`) or unfollows a channel; answers its followers now.
    pub(crate) async fn follow(
        &self,
        user: &User,
        channel: &User,
        on: bool,
    ) -> Result<i64, ApiError> {
        if on {
            let r = sqlx::query(
                "INSERT INTO follows (follower_id, channel_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (follower_id, channel_id) DO NOTHING",
            )
            .bind(&user.id)
            .bind(&channel.id)
            .bind(now_ms())
            .execute(self.db.pool())
            .await
            .map_err(db_err)?;
            if r.rows_affected() == 1 {
                let data = serde_json::json!({"follower": user.username, "follower_id": user.id});
                self.notifications
                    .notify(&channel.id, "new_follower", data)
                    .await?;
            }
        } else {
            sqlx::query("DELETE FROM follows WHERE follower_id = $1 AND channel_id = $2")
                .bind(&user.id)
                .bind(&channel.id)
                .execute(self.db.pool())
                .await
                .map_err(db_err)?;
        }
        self.followers(&channel.id).await
    }

    /// Whether `user_id` follows `channel_id`.
    pub(crate) async fn follows(&self, user_id: &str, channel_id: &str) -> Result<bool, ApiError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM follows WHERE follower_id = $1 AND channel_id = $2")
                .bind(user_id)
                .bind(channel_id)
                .fetch_optional(self.db.pool())
                .await
                .map_err(db_err)?;
        Ok(row.is_some())
    }

    /// How many follow a channel.
    pub(crate) async fn followers(&self, channel_id: &str) -> Result<i64, ApiError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM follows WHERE channel_id = $1")
            .bind(channel_id)
            .fetch_one(self.db.pool())
            .await
            .map_err(db_err)?;
        Ok(n)
    }

    /// Deletes messages and events older than `chat.retention`.
    pub(crate) async fn sweep(&self) -> Result<(), ApiError> {
        let before = now_ms() - self.cfg.retention.get().as_millis() as i64;
        for table in ["chat_messages", "chat_events"] {
            sqlx::query(sql(format!("DELETE FROM {table} WHERE created_at < $1")))
                .bind(before)
                .execute(self.db.pool())
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }
}

/// Refuses a text with a built-in or the room's blocked term.
fn no_blocked_terms(text: &str, settings: &ChatSettings) -> Result<(), ApiError> {
    let room_terms = settings.blocked_terms.iter().map(String::as_str);
    match filter::blocked_term(
        text,
        filter::DEFAULT_BLOCKED.iter().copied().chain(room_terms),
    ) {
        Some(_) => Err(refuse(
            StreamingErrorCode::MessageBlocked,
            "the message contains a blocked term",
        )),
        None => Ok(()),
    }
}

/// A moderation log line.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub(crate) struct ModlogEntry {
    /// Id.
    pub id: String,
    /// Who acted.
    pub actor_id: String,
    /// What: delete_message, timeout, ban, unban, add_moderator, add_vip, remove_role,
    /// settings, clear.
    pub action: String,
    /// On whom or what (a user or message id).
    pub target: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

async fn log_in(
    tx: &mut Tx,
    room: &str,
    actor: &str,
    action: &str,
    target: Option<&str>,
    reason: Option<&str>,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO chat_modlog (id, room, actor_id, action, target, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id())
    .bind(room)
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(reason)
    .bind(now_ms())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The reactions of `ids`, by message.
async fn reactions_in<'e, E>(
    exec: E,
    ids: &[String],
) -> Result<std::collections::HashMap<String, Vec<MessageReaction>>, ApiError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let mut out: std::collections::HashMap<String, Vec<MessageReaction>> = Default::default();
    if ids.is_empty() {
        return Ok(out);
    }
    let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let q = format!(
        "SELECT message_id, emoji, user_id FROM chat_reactions WHERE message_id IN ({}) \
         ORDER BY message_id, emoji, created_at, user_id",
        marks.join(", ")
    );
    let mut query = sqlx::query_as::<_, (String, String, String)>(sql(q));
    for id in ids {
        query = query.bind(id);
    }
    for (message_id, emoji, user_id) in query.fetch_all(exec).await.map_err(db_err)? {
        let list = out.entry(message_id).or_default();
        match list.iter_mut().find(|r| r.emoji == emoji) {
            Some(r) => {
                r.count += 1;
                if r.users.len() < 100 {
                    r.users.push(user_id);
                }
            }
            None => list.push(MessageReaction {
                emoji,
                count: 1,
                users: vec![user_id],
            }),
        }
    }
    Ok(out)
}

const MESSAGE_COLUMNS: &str = "SELECT id, room, seq, user_id, username, text, content, platform, highlighted, \
     donation_amount, created_at, edited_at, deleted_at, moderation_reason FROM chat_messages";

fn message_from(r: &sqlx::any::AnyRow) -> Result<ChatMessage, ApiError> {
    let s = |i: usize| r.try_get::<String, _>(i).map_err(db_err);
    let mut content: MessageContent = serde_json::from_str(&s(6)?).unwrap_or_default();
    content.text = s(5)?;
    let deleted: Option<i64> = r.try_get(12).map_err(db_err)?;
    let donation: Option<i64> = r.try_get(9).map_err(db_err)?;
    Ok(ChatMessage {
        id: s(0)?,
        room_id: s(1)?,
        seq: r.try_get(2).map_err(db_err)?,
        user_id: s(3)?,
        username: s(4)?,
        content,
        platform: s(7)?,
        is_highlighted: r.try_get::<i64, _>(8).map_err(db_err)? != 0,
        is_donation_message: donation.is_some(),
        donation_amount: donation,
        timestamp: r.try_get(10).map_err(db_err)?,
        edited_at: r.try_get(11).map_err(db_err)?,
        is_moderated: deleted.is_some(),
        moderation_reason: r.try_get(13).map_err(db_err)?,
        reactions: Vec::new(),
    })
}

// ---- paid messages (the payments area) ----

impl Chat {
    /// The room's word filter and text rules applied to a donation's message
    /// (moderateDonationMessage): the normalized text, or `MESSAGE_BLOCKED` with the reason.
    pub(crate) async fn check_paid_text(&self, room: &str, text: &str) -> Result<String, ApiError> {
        let text = self.check_text(text)?;
        let settings = match self.settings(room).await {
            Ok(s) => s,
            Err(e) if e.code == StreamingErrorCode::NotFound => ChatSettings::default(),
            Err(e) => return Err(e),
        };
        no_blocked_terms(text, &settings)?;
        Ok(text.to_owned())
    }

    /// Posts a donation into the room as a highlighted message with id `id`, once: a second
    /// call with the same id changes nothing (publishDonationToChat).
    pub(crate) async fn post_donation(
        &self,
        room: &str,
        id: &str,
        donor: &User,
        text: &str,
        amount: i64,
    ) -> Result<(), ApiError> {
        let (mut tx, seq) = self.begin(room).await?;
        let exists = sqlx::query("SELECT 1 FROM chat_messages WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if exists.is_some() {
            tx.rollback().await.map_err(db_err)?;
            return Ok(());
        }
        let mut message = self.compose(donor, room, seq, text, now_ms()).await?;
        message.id = id.to_owned();
        message.is_highlighted = true;
        message.is_donation_message = true;
        message.donation_amount = Some(amount);
        self.insert_message(&mut tx, &message).await?;
        sqlx::query("UPDATE chat_messages SET highlighted = 1, donation_amount = $1 WHERE id = $2")
            .bind(amount)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        self.finish(tx, room, seq, ChatEvent::Message { message })
            .await?;
        Ok(())
    }

    /// Whether `message_id` is a visible message of `room`.
    pub(crate) async fn is_visible(&self, room: &str, message_id: &str) -> Result<bool, ApiError> {
        let row = sqlx::query(
            "SELECT 1 FROM chat_messages WHERE id = $1 AND room = $2 AND deleted_at IS NULL",
        )
        .bind(message_id)
        .bind(room)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_err)?;
        Ok(row.is_some())
    }

    /// A paid boost (boostMessage): the message is highlighted and pinned until `until`
    /// (Unix ms); a later boost of another message takes the pin.
    pub(crate) async fn boost(
        &self,
        room: &str,
        message_id: &str,
        until: i64,
    ) -> Result<(), ApiError> {
        let (mut tx, seq) = self.begin(room).await?;
        sqlx::query("UPDATE chat_messages SET highlighted = 1 WHERE id = $1 AND room = $2")
            .bind(message_id)
            .bind(room)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "UPDATE chat_rooms SET pinned_message_id = $1, pinned_until = $2 WHERE room = $3",
        )
        .bind(message_id)
        .bind(until)
        .bind(room)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let (_, settings) = self.settings_in(&mut tx, room).await?;
        self.finish(tx, room, seq, ChatEvent::Settings { settings })
            .await?;
        if let Some(message) = self.message(room, message_id).await? {
            let (tx, seq) = self.begin(room).await?;
            self.finish(tx, room, seq, ChatEvent::Edited { message })
                .await?;
        }
        Ok(())
    }

    /// Unpins boosted messages whose time is up.
    pub(crate) async fn expire_boosts(&self) -> Result<(), ApiError> {
        let rooms: Vec<(String,)> = sqlx::query_as(
            "SELECT room FROM chat_rooms WHERE pinned_until IS NOT NULL AND pinned_until < $1",
        )
        .bind(now_ms())
        .fetch_all(self.db.pool())
        .await
        .map_err(db_err)?;
        for (room,) in rooms {
            let (mut tx, seq) = self.begin(&room).await?;
            let r = sqlx::query(
                "UPDATE chat_rooms SET pinned_message_id = NULL, pinned_until = NULL \
                 WHERE room = $1 AND pinned_until IS NOT NULL AND pinned_until < $2",
            )
            .bind(&room)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if r.rows_affected() == 0 {
                tx.rollback().await.map_err(db_err)?;
                continue;
            }
            let (_, settings) = self.settings_in(&mut tx, &room).await?;
            self.finish(tx, &room, seq, ChatEvent::Settings { settings })
                .await?;
        }
        Ok(())
    }
}
