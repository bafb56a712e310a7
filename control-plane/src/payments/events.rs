//! The payments area's events and overlay channels.
//!
//! Every change to money writes its domain event (`DonationProcessed`, `DonationRefunded`,
//! `ChargebackReceived`, `PayoutCompleted`, `PayoutFailed`) into `payment_events` in the
//! same transaction, numbered 1, 2, 3 ... After the commit the dispatcher hands each event
//! to its consumers — the overlay channel, the chat room, the streamer's notifications —
//! and publishes it on the bus (`events:payments`; JetStream in a cluster) for consumers
//! elsewhere. A crash between commit and dispatch only delays it: the dispatcher runs again
//! every few seconds. Consumers are idempotent by event id (each writes under a key made from
//! it), so an event handled twice takes effect once.
//!
//! Overlay channels (`overlay:<channel>`) are numbered logs like chat rooms: what an OBS
//! overlay page follows live and replays after a reconnect.

use std::sync::Arc;

use serde_json::{Value, json};
use sqlx::Row;

use super::ledger::Tx;
use crate::db::Db;
use crate::error::ApiError;
use crate::model::now_ms;
use crate::realtime::Envelope;
use crate::realtime::bus::{Bus, subject};
use crate::secrets::new_id;

fn db_err(e: sqlx::Error) -> ApiError {
    ApiError::from(crate::db::RepoError::Db(e))
}

/// The bus channel domain events are published on.
pub(crate) const EVENTS_CHANNEL: &str = "events:payments";

/// A stored domain event.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Event {
    pub(crate) id: String,
    pub(crate) seq: i64,
    pub(crate) kind: String,
    pub(crate) payload: Value,
}

/// Writes a domain event in `tx` (the transaction of the change it reports).
pub(crate) async fn record(tx: &mut Tx, kind: &str, payload: Value) -> Result<String, ApiError> {
    let seq: i64 = sqlx::query(
        "UPDATE payment_event_counter SET last_seq = last_seq + 1 WHERE name = 'events' RETURNING last_seq",
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(db_err)?
    .try_get(0)
    .map_err(db_err)?;
    let id = new_id();
    let mut payload = payload;
    if let Some(o) = payload.as_object_mut() {
        o.insert("event_id".into(), json!(id));
        o.insert("type".into(), json!(kind));
        o.insert("timestamp".into(), json!(now_ms()));
    }
    sqlx::query(
        "INSERT INTO payment_events (id, seq, kind, payload, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(seq)
    .bind(kind)
    .bind(payload.to_string())
    .bind(now_ms())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(id)
}

/// Events not yet dispatched, oldest first.
pub(crate) async fn pending(db: &Db, limit: i64) -> Result<Vec<Event>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, seq, kind, payload FROM payment_events WHERE dispatched_at IS NULL ORDER BY seq LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    rows.iter().map(event_row).collect()
}

fn event_row(r: &sqlx::any::AnyRow) -> Result<Event, ApiError> {
    Ok(Event {
        id: r.try_get(0).map_err(db_err)?,
        seq: r.try_get(1).map_err(db_err)?,
        kind: r.try_get(2).map_err(db_err)?,
        payload: serde_json::from_str(&r.try_get::<String, _>(3).map_err(db_err)?)
            .unwrap_or(Value::Null),
    })
}

/// Events after `since` up to `until` (the bus channel's log, for gap filling).
pub(crate) async fn since(db: &Db, since: i64, until: i64) -> Result<Vec<Event>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, seq, kind, payload FROM payment_events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT 1000",
    )
    .bind(since)
    .bind(until)
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    rows.iter().map(event_row).collect()
}

/// The newest event's number.
pub(crate) async fn last_seq(db: &Db) -> Result<i64, ApiError> {
    let (n,): (i64,) =
        sqlx::query_as("SELECT last_seq FROM payment_event_counter WHERE name = 'events'")
            .fetch_one(db.pool())
            .await
            .map_err(db_err)?;
    Ok(n)
}

/// Marks an event handled by every consumer.
pub(crate) async fn mark_dispatched(db: &Db, id: &str) -> Result<(), ApiError> {
    sqlx::query("UPDATE payment_events SET dispatched_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(id)
        .execute(db.pool())
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Publishes an event on the bus.
pub(crate) async fn publish(bus: &Arc<dyn Bus>, e: &Event) {
    let envelope = Envelope {
        channel: EVENTS_CHANNEL.into(),
        seq: e.seq,
        event: e.payload.clone(),
    };
    if let Err(err) = bus
        .publish(
            &subject(EVENTS_CHANNEL),
            serde_json::to_vec(&envelope).unwrap_or_default(),
        )
        .await
    {
        tracing::warn!(error = %err, "payment event not published on the bus");
    }
}

// ---- overlay channels ----

/// The gateway channel of a streamer's overlays.
pub(crate) fn overlay_channel(channel: &str) -> String {
    format!("overlay:{channel}")
}

/// Appends an event to `channel`'s overlay log once per `key`, then publishes it.
pub(crate) async fn overlay_append(
    db: &Db,
    bus: &Arc<dyn Bus>,
    channel: &str,
    key: &str,
    event: Value,
) -> Result<(), ApiError> {
    let mut tx = db.begin_write().await?;
    if sqlx::query("SELECT 1 FROM overlay_events WHERE event_key = $1")
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
        "INSERT INTO overlay_counters (channel, last_seq) VALUES ($1, 1) \
         ON CONFLICT (channel) DO UPDATE SET last_seq = overlay_counters.last_seq + 1 RETURNING last_seq",
    )
    .bind(channel)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?
    .try_get(0)
    .map_err(db_err)?;
    sqlx::query(
        "INSERT INTO overlay_events (channel, seq, event_key, payload, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(channel)
    .bind(seq)
    .bind(key)
    .bind(event.to_string())
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    let ch = overlay_channel(channel);
    let envelope = Envelope {
        channel: ch.clone(),
        seq,
        event,
    };
    if let Err(e) = bus
        .publish(
            &subject(&ch),
            serde_json::to_vec(&envelope).unwrap_or_default(),
        )
        .await
    {
        tracing::warn!(error = %e, "overlay event not published on the bus");
    }
    Ok(())
}

/// The newest offset of `channel`'s overlay log.
pub(crate) async fn overlay_last_seq(db: &Db, channel: &str) -> Result<i64, ApiError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT last_seq FROM overlay_counters WHERE channel = $1")
            .bind(channel)
            .fetch_optional(db.pool())
            .await
            .map_err(db_err)?;
    Ok(row.map_or(0, |r| r.0))
}

/// Overlay events after `since` up to `until`, oldest first (at most 1000).
pub(crate) async fn overlay_since(
    db: &Db,
    channel: &str,
    since: i64,
    until: i64,
) -> Result<Vec<Envelope>, ApiError> {
    let rows = sqlx::query(
        "SELECT seq, payload FROM overlay_events WHERE channel = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT 1000",
    )
    .bind(channel)
    .bind(since)
    .bind(until)
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    let ch = overlay_channel(channel);
    rows.iter()
        .map(|r| {
            Ok(Envelope {
                channel: ch.clone(),
                seq: r.try_get(0).map_err(db_err)?,
                event: serde_json::from_str(&r.try_get::<String, _>(1).map_err(db_err)?)
                    .unwrap_or(Value::Null),
            })
        })
        .collect()
}
