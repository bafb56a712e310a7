//! The notifications area: a numbered feed per user (new followers, mentions now; donations,
//! payouts and subscriptions publish here as they land), delivered live on the gateway's
//! `user:me` channel with resume from an offset, listed and marked read over REST, and copied
//! into an outbox that an external delivery service consumes at least once
//! (`/api/v1/cluster/notifications/outbox`, cluster secret). Owns the `notification*` tables.

// utoipa's generated code names parameter types with their full paths.
#![allow(unused_qualifications)]

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use crate::App;
use crate::api::{Body, Caller, Params};
use crate::cluster::ClusterNode;
use crate::db::Db;
use crate::error::{ApiError, StreamingErrorCode};
use crate::model::now_ms;
use crate::realtime::Envelope;
use crate::realtime::bus::{Bus, subject};
use crate::secrets::new_id;

/// One notification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct Notification {
    /// Its place in the user's feed (1, 2, 3 ...).
    pub(crate) seq: i64,
    /// What happened: `new_follower`, `mention`, ...
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// The details, by type.
    pub(crate) data: Value,
    /// Unix milliseconds.
    pub(crate) created_at: i64,
    /// Whether the user has marked it read.
    pub(crate) read: bool,
}

/// The gateway channel of a user's feed.
pub(crate) fn channel_of(user_id: &str) -> String {
    format!("user:{user_id}")
}

fn db_err(e: sqlx::Error) -> ApiError {
    ApiError::from(crate::db::RepoError::Db(e))
}

/// The notifications area.
pub(crate) struct Notifications {
    db: Db,
    bus: Arc<dyn Bus>,
}

impl Notifications {
    pub(crate) fn new(db: Db, bus: Arc<dyn Bus>) -> Self {
        Notifications { db, bus }
    }

    /// Adds a notification to `user_id`'s feed and the outbox, then sends it live.
    pub(crate) async fn notify(
        &self,
        user_id: &str,
        kind: &str,
        data: Value,
    ) -> Result<(), ApiError> {
        self.notify_keyed(user_id, kind, data, None).await
    }

    /// [`Self::notify`] once per `event_key`: a second call with the same key adds nothing
    /// (notifications that events cause, which may be handled more than once).
    pub(crate) async fn notify_once(
        &self,
        user_id: &str,
        kind: &str,
        data: Value,
        event_key: &str,
    ) -> Result<(), ApiError> {
        self.notify_keyed(user_id, kind, data, Some(event_key))
            .await
    }

    async fn notify_keyed(
        &self,
        user_id: &str,
        kind: &str,
        data: Value,
        event_key: Option<&str>,
    ) -> Result<(), ApiError> {
        let now = now_ms();
        let payload = data.to_string();
        let mut tx = self.db.begin_write().await?;
        if let Some(key) = event_key
            && sqlx::query("SELECT 1 FROM notifications WHERE event_key = $1")
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?
                .is_some()
        {
            tx.rollback().await.map_err(db_err)?;
            return Ok(());
        }
        let seq: i64 = sqlx::query(
            "INSERT INTO notification_counters (user_id, last_seq) VALUES ($1, 1) \
             ON CONFLICT (user_id) DO UPDATE SET last_seq = notification_counters.last_seq + 1 \
             RETURNING last_seq",
        )
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?
        .try_get(0)
        .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO notifications (user_id, seq, kind, payload, created_at, event_key) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user_id)
        .bind(seq)
        .bind(kind)
        .bind(&payload)
        .bind(now)
        .bind(event_key)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO notification_outbox (id, user_id, seq, kind, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new_id())
        .bind(user_id)
        .bind(seq)
        .bind(kind)
        .bind(&payload)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        let n = Notification {
            seq,
            kind: kind.to_owned(),
            data,
            created_at: now,
            read: false,
        };
        let envelope = envelope(user_id, &n);
        let channel = channel_of(user_id);
        if let Err(e) = self
            .bus
            .publish(
                &subject(&channel),
                serde_json::to_vec(&envelope).unwrap_or_default(),
            )
            .await
        {
            tracing::warn!(error = %e, "notification not published on the bus");
        }
        Ok(())
    }

    /// The newest offset of `user_id`'s feed.
    pub(crate) async fn last_seq(&self, user_id: &str) -> Result<i64, ApiError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT last_seq FROM notification_counters WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(self.db.pool())
                .await
                .map_err(db_err)?;
        Ok(row.map_or(0, |(n,)| n))
    }

    async fn rows(
        &self,
        q: &'static str,
        user_id: &str,
        a: i64,
        b: i64,
    ) -> Result<Vec<Notification>, ApiError> {
        let rows: Vec<(i64, String, String, i64, Option<i64>)> = sqlx::query_as(q)
            .bind(user_id)
            .bind(a)
            .bind(b)
            .fetch_all(self.db.pool())
            .await
            .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|(seq, kind, payload, created_at, read_at)| Notification {
                seq,
                kind,
                data: serde_json::from_str(&payload).unwrap_or(Value::Null),
                created_at,
                read: read_at.is_some(),
            })
            .collect())
    }

    /// Notifications after `since` up to `until`, oldest first (at most 1000).
    pub(crate) async fn since(
        &self,
        user_id: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<Notification>, ApiError> {
        self.rows(
            "SELECT seq, kind, payload, created_at, read_at FROM notifications \
             WHERE user_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT 1000",
            user_id,
            since,
            until,
        )
        .await
    }

    /// The newest `limit`, oldest first, and how many are unread.
    pub(crate) async fn recent(
        &self,
        user_id: &str,
        limit: i64,
    ) -> Result<(Vec<Notification>, i64), ApiError> {
        let mut items = self
            .rows(
                "SELECT seq, kind, payload, created_at, read_at FROM notifications \
                 WHERE user_id = $1 AND seq > $2 ORDER BY seq DESC LIMIT $3",
                user_id,
                0,
                limit.clamp(1, 200),
            )
            .await?;
        items.reverse();
        let (unread,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(self.db.pool())
        .await
        .map_err(db_err)?;
        Ok((items, unread))
    }
}

/// The bus and gateway form of a notification.
pub(crate) fn envelope(user_id: &str, n: &Notification) -> Envelope {
    Envelope {
        channel: channel_of(user_id),
        seq: n.seq,
        event: serde_json::json!({"kind": "notification", "notification": n}),
    }
}

/// Paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// How many, newest last (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// A user's feed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Feed {
    items: Vec<Notification>,
    /// Unread in all.
    unread: i64,
    /// The feed's offset now (subscribe to `user:me` with `since` = this).
    offset: i64,
}

/// The caller's notifications.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications", operation_id = "get_notifications",
    security(("token" = [])), params(ListQuery),
    responses((status = 200, body = Feed), (status = 401, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn list(
    State(app): State<App>,
    Caller(user): Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<Feed>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::new(
            StreamingErrorCode::ValidationFailed,
            "limit must be 1-200",
        ));
    }
    let (items, unread) = app.notifications.recent(&user.id, limit).await?;
    Ok(Json(Feed {
        items,
        unread,
        offset: app.notifications.last_seq(&user.id).await?,
    }))
}

/// Up to which notification the caller has read.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ReadUpTo {
    /// Every notification with this offset or lower is read.
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "crate::api::whole")]
    up_to: i64,
}

/// Mark the caller's notifications read up to an offset.
#[utoipa::path(post, path = "/api/v1/notifications/read", tag = "notifications", operation_id = "mark_notifications_read",
    security(("token" = [])), request_body = ReadUpTo,
    responses((status = 204), (status = 401, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn mark_read(
    State(app): State<App>,
    Caller(user): Caller,
    Body(r): Body<ReadUpTo>,
) -> Result<StatusCode, ApiError> {
    if r.up_to < 0 {
        return Err(ApiError::new(
            StreamingErrorCode::ValidationFailed,
            "up_to must be 0 or more",
        ));
    }
    sqlx::query("UPDATE notifications SET read_at = $1 WHERE user_id = $2 AND seq <= $3 AND read_at IS NULL")
        .bind(now_ms())
        .bind(&user.id)
        .bind(r.up_to)
        .execute(app.db.pool())
        .await
        .map_err(db_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// An outbox entry for an external delivery service.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct OutboxEntry {
    /// Acknowledge with this id once delivered.
    id: String,
    user_id: String,
    seq: i64,
    #[serde(rename = "type")]
    kind: String,
    data: Value,
    created_at: i64,
}

/// The oldest undelivered notifications (a delivery service, with the cluster secret);
/// each stays until acknowledged, so delivery is at least once.
#[utoipa::path(get, path = "/api/v1/cluster/notifications/outbox", tag = "notifications", operation_id = "get_notification_outbox",
    security(("cluster" = [])), params(ListQuery),
    responses((status = 200, body = [OutboxEntry]), (status = 401, body = ApiError)))]
pub(crate) async fn outbox(
    State(app): State<App>,
    _: ClusterNode,
    Params(q): Params<ListQuery>,
) -> Result<Json<Vec<OutboxEntry>>, ApiError> {
    let rows: Vec<(String, String, i64, String, String, i64)> = sqlx::query_as(
        "SELECT id, user_id, seq, kind, payload, created_at FROM notification_outbox ORDER BY created_at, id LIMIT $1",
    )
    .bind(q.limit.unwrap_or(100).clamp(1, 200))
    .fetch_all(app.db.pool())
    .await
    .map_err(db_err)?;
    Ok(Json(
        rows.into_iter()
            .map(
                |(id, user_id, seq, kind, payload, created_at)| OutboxEntry {
                    id,
                    user_id,
                    seq,
                    kind,
                    data: serde_json::from_str(&payload).unwrap_or(Value::Null),
                    created_at,
                },
            )
            .collect(),
    ))
}

/// Acknowledge a delivered outbox entry (it is removed).
#[utoipa::path(delete, path = "/api/v1/cluster/notifications/outbox/{id}", tag = "notifications", operation_id = "ack_notification",
    security(("cluster" = [])), params(("id" = String, Path, description = "Outbox entry id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn ack(
    State(app): State<App>,
    _: ClusterNode,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let r = sqlx::query("DELETE FROM notification_outbox WHERE id = $1")
        .bind(&id)
        .execute(app.db.pool())
        .await
        .map_err(db_err)?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found("outbox entry"));
    }
    Ok(StatusCode::NO_CONTENT)
}
