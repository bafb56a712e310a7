//! The real-time area: the bus between replicas ([`bus`]) and the WebSocket gateway
//! ([`gateway`]) that browsers and overlays keep open, with the per-replica fan-out hub
//! ([`hub`]). Channels are chat rooms (`chat:<room>`) and users' notification feeds
//! (`user:<id>`, `user:me` on the socket); donation alerts and overlays will add theirs. The
//! protocol is documented in `docs/realtime.md`.

pub(crate) mod bus;
pub(crate) mod gateway;
pub(crate) mod hub;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::chat::store::Chat;
use crate::error::ApiError;
use crate::notifications::Notifications;

/// An event with its place in its channel's order, as the bus carries it and sockets get it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// `chat:<room>` or `user:<id>`.
    pub(crate) channel: String,
    /// Its offset in the channel (1, 2, 3 ... without gaps).
    pub(crate) seq: i64,
    /// What happened (`{"kind": ...}`).
    pub(crate) event: serde_json::Value,
}

/// Where each channel's numbered events are stored: what the hub fills gaps from and
/// reconnecting sockets replay.
pub(crate) struct Logs {
    pub(crate) chat: Arc<Chat>,
    pub(crate) notifications: Arc<Notifications>,
    /// Overlay channels and payment events live in the payments area's tables.
    pub(crate) db: crate::db::Db,
}

impl Logs {
    /// The channel's newest offset.
    pub(crate) async fn last_seq(&self, channel: &str) -> Result<i64, ApiError> {
        match channel.split_once(':') {
            Some(("chat", room)) => self.chat.last_seq(room).await,
            Some(("user", id)) => self.notifications.last_seq(id).await,
            Some(("overlay", channel)) => {
                crate::payments::events::overlay_last_seq(&self.db, channel).await
            }
            Some(("events", "payments")) => crate::payments::events::last_seq(&self.db).await,
            _ => Err(ApiError::not_found("channel")),
        }
    }

    /// Events after `since` up to `until`, oldest first (bounded).
    pub(crate) async fn events(
        &self,
        channel: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<Envelope>, ApiError> {
        match channel.split_once(':') {
            Some(("chat", room)) => Ok(self
                .chat
                .events(room, since, until)
                .await?
                .into_iter()
                .map(|s| Envelope {
                    channel: channel.to_owned(),
                    seq: s.seq,
                    event: serde_json::to_value(&s.event).unwrap_or_default(),
                })
                .collect()),
            Some(("user", id)) => Ok(self
                .notifications
                .since(id, since, until)
                .await?
                .iter()
                .map(|n| crate::notifications::envelope(id, n))
                .collect()),
            Some(("overlay", name)) => {
                crate::payments::events::overlay_since(&self.db, name, since, until).await
            }
            Some(("events", "payments")) => {
                Ok(crate::payments::events::since(&self.db, since, until)
                    .await?
                    .into_iter()
                    .map(|e| Envelope {
                        channel: channel.to_owned(),
                        seq: e.seq,
                        event: e.payload,
                    })
                    .collect())
            }
            _ => Err(ApiError::not_found("channel")),
        }
    }
}
