//! Fan-out on one replica: the sockets subscribed to each room, one bus subscription per
//! room with at least one socket, and delivery in the room's sequence order. An event that
//! arrives ahead of its predecessors (published by another replica first) makes the hub read
//! the missing ones from the database before delivering it; duplicates and late copies are
//! dropped. Delivery never waits: a socket whose queue is full is cut off as a slow consumer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::metrics::CpMetrics;
use crate::realtime::bus::{Bus, subject};
use crate::realtime::{Envelope, Logs};

/// What a socket's writer receives.
#[derive(Debug)]
pub(crate) enum Out {
    /// A room event (delivered only after the channel's `Ready`, and only past its offset).
    Event {
        channel: Arc<str>,
        seq: i64,
        /// The frame, shared by every socket of the channel (cloning it copies no bytes).
        frame: axum::extract::ws::Utf8Bytes,
    },
    /// The subscription's snapshot is sent: deliver events after `offset` from now on.
    Ready {
        channel: Arc<str>,
        offset: i64,
        frame: String,
    },
    /// The socket left a channel (kicked: banned, timed out).
    Left { channel: Arc<str>, frame: String },
    /// Any other frame (acks, errors, pongs).
    Frame(String),
}

/// Why a socket is cut off: the WebSocket close code and the reason.
pub(crate) type Kill = tokio::sync::watch::Sender<Option<(u16, &'static str)>>;

struct Sub {
    tx: mpsc::Sender<Out>,
    user_id: Option<String>,
    kill: Arc<Kill>,
}

struct Room {
    subs: HashMap<u64, Sub>,
    last: i64,
    task: Option<tokio::task::AbortHandle>,
}

/// The hub. "Rooms" here are channels: chat rooms and users' feeds alike.
pub(crate) struct Hub {
    rooms: Mutex<HashMap<String, Room>>,
    logs: Arc<Logs>,
    bus: Arc<dyn Bus>,
    metrics: CpMetrics,
    next_id: AtomicU64,
    /// This replica's id in the `presence` table.
    replica: String,
    /// Channels whose socket count changed since the last presence flush.
    changed: Mutex<std::collections::HashSet<String>>,
}

/// A replica that has not refreshed its presence rows for this long is gone.
const PRESENCE_STALE_MS: i64 = 60_000;

impl Hub {
    pub(crate) fn new(logs: Arc<Logs>, bus: Arc<dyn Bus>, metrics: CpMetrics) -> Arc<Self> {
        Arc::new(Hub {
            rooms: Mutex::new(HashMap::new()),
            logs,
            bus,
            metrics,
            next_id: AtomicU64::new(1),
            replica: crate::secrets::new_id(),
            changed: Mutex::new(std::collections::HashSet::new()),
        })
    }

    fn touched(&self, channel: &str) {
        let mut c = self
            .changed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if c.len() < 100_000 {
            c.insert(channel.to_owned());
        }
    }

    /// Writes this replica's socket counts into the `presence` table: changed channels every
    /// second, every row again every 20 s (so other replicas know it is alive), and removes
    /// rows of replicas gone silent. Runs until `shutdown`, then removes this replica's rows.
    pub(crate) async fn keep_presence(
        self: Arc<Self>,
        db: crate::db::Db,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            n += 1;
            let refresh_all = n.is_multiple_of(20);
            let channels: Vec<String> = if refresh_all {
                self.rooms().keys().cloned().collect()
            } else {
                self.changed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .drain()
                    .collect()
            };
            if let Err(e) = self.flush_presence(&db, &channels, refresh_all).await {
                tracing::debug!(error = %e, "presence not written");
            }
        }
        let _ = sqlx::query("DELETE FROM presence WHERE replica = $1")
            .bind(&self.replica)
            .execute(db.pool())
            .await;
        let _ = sqlx::query("DELETE FROM presence_users WHERE replica = $1")
            .bind(&self.replica)
            .execute(db.pool())
            .await;
    }

    async fn flush_presence(
        &self,
        db: &crate::db::Db,
        channels: &[String],
        refresh_all: bool,
    ) -> Result<(), sqlx::Error> {
        let now = crate::model::now_ms();
        for channel in channels {
            let count = self.present(channel) as i64;
            // Who is here (gift series choose among them), beside how many.
            sqlx::query("DELETE FROM presence_users WHERE replica = $1 AND channel = $2")
                .bind(&self.replica)
                .bind(channel)
                .execute(db.pool())
                .await?;
            for user in self.present_users(channel) {
                sqlx::query(
                    "INSERT INTO presence_users (replica, channel, user_id, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (replica, channel, user_id) DO UPDATE SET updated_at = $4",
                )
                .bind(&self.replica)
                .bind(channel)
                .bind(&user)
                .bind(now)
                .execute(db.pool())
                .await?;
            }
            if count == 0 {
                sqlx::query("DELETE FROM presence WHERE replica = $1 AND channel = $2")
                    .bind(&self.replica)
                    .bind(channel)
                    .execute(db.pool())
                    .await?;
            } else {
                sqlx::query(
                    "INSERT INTO presence (replica, channel, sockets, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (replica, channel) DO UPDATE SET sockets = $3, updated_at = $4",
                )
                .bind(&self.replica)
                .bind(channel)
                .bind(count)
                .bind(now)
                .execute(db.pool())
                .await?;
            }
        }
        if refresh_all {
            sqlx::query("UPDATE presence SET updated_at = $1 WHERE replica = $2")
                .bind(now)
                .bind(&self.replica)
                .execute(db.pool())
                .await?;
            sqlx::query("UPDATE presence_users SET updated_at = $1 WHERE replica = $2")
                .bind(now)
                .bind(&self.replica)
                .execute(db.pool())
                .await?;
            sqlx::query("DELETE FROM presence_users WHERE updated_at < $1")
                .bind(now - PRESENCE_STALE_MS)
                .execute(db.pool())
                .await?;
            sqlx::query("DELETE FROM presence WHERE updated_at < $1")
                .bind(now - PRESENCE_STALE_MS)
                .execute(db.pool())
                .await?;
        }
        Ok(())
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        self.rooms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where channels' events are stored.
    pub(crate) fn logs(&self) -> &Logs {
        &self.logs
    }

    /// A new socket id.
    pub(crate) fn socket_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds socket `id` to channel `room`; starts its bus subscription when it is the first.
    pub(crate) async fn join(
        self: &Arc<Self>,
        room: &str,
        id: u64,
        tx: mpsc::Sender<Out>,
        user_id: Option<String>,
        kill: Arc<Kill>,
    ) -> Result<(), crate::error::ApiError> {
        let sub = Sub { tx, user_id, kill };
        {
            let mut rooms = self.rooms();
            if let Some(r) = rooms.get_mut(room) {
                r.subs.insert(id, sub);
                drop(rooms);
                self.touched(room);
                return Ok(());
            }
        }
        // First socket here: subscribe before reading the offset, so nothing falls between.
        let messages = self.bus.subscribe(&subject(room)).await.map_err(|e| {
            crate::error::ApiError::new(
                crate::error::StreamingErrorCode::ChatConnectionFailed,
                e.to_string(),
            )
        })?;
        let last = self.logs.last_seq(room).await?;
        let mut rooms = self.rooms();
        if let Some(r) = rooms.get_mut(room) {
            // Another socket got here first; its subscription serves both.
            r.subs.insert(id, sub);
            drop(rooms);
            self.touched(room);
            return Ok(());
        }
        let hub = Arc::clone(self);
        let name = room.to_owned();
        let task = tokio::spawn(async move {
            let mut messages = messages;
            while let Some(payload) = messages.next().await {
                match serde_json::from_slice::<Envelope>(&payload) {
                    Ok(s) if s.channel == name => hub.arrived(s).await,
                    _ => tracing::debug!(room = %name, "unreadable event on the bus"),
                }
            }
        });
        let mut subs = HashMap::new();
        subs.insert(id, sub);
        rooms.insert(
            room.to_owned(),
            Room {
                subs,
                last,
                task: Some(task.abort_handle()),
            },
        );
        drop(rooms);
        self.touched(room);
        Ok(())
    }

    /// Removes socket `id` from `room`; the room's subscription ends with its last socket.
    pub(crate) fn leave(&self, room: &str, id: u64) {
        self.touched(room);
        let mut rooms = self.rooms();
        if let Some(r) = rooms.get_mut(room) {
            r.subs.remove(&id);
            if r.subs.is_empty() {
                if let Some(t) = r.task.take() {
                    t.abort();
                }
                rooms.remove(room);
            }
        }
    }

    /// Sockets in `channel` on every replica (as last written, at most a second old for
    /// this one), at least this replica's own count.
    pub(crate) async fn presence(
        &self,
        db: &crate::db::Db,
        channel: &str,
    ) -> Result<i64, crate::error::ApiError> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(sockets), 0) AS BIGINT) FROM presence \
             WHERE channel = $1 AND replica <> $2 AND updated_at > $3",
        )
        .bind(channel)
        .bind(&self.replica)
        .bind(crate::model::now_ms() - PRESENCE_STALE_MS)
        .fetch_one(db.pool())
        .await
        .map_err(|e| crate::error::ApiError::from(crate::db::RepoError::Db(e)))?;
        Ok(n + self.present(channel) as i64)
    }

    /// Sockets in `room` on this replica (presence).
    pub(crate) fn present(&self, room: &str) -> usize {
        self.rooms().get(room).map_or(0, |r| r.subs.len())
    }

    /// The signed-in users with a socket in `room` on this replica (at most 1000).
    fn present_users(&self, room: &str) -> Vec<String> {
        let mut users: Vec<String> = self.rooms().get(room).map_or_else(Vec::new, |r| {
            r.subs.values().filter_map(|s| s.user_id.clone()).collect()
        });
        users.sort_unstable();
        users.dedup();
        users.truncate(1000);
        users
    }

    async fn arrived(&self, s: Envelope) {
        let last = match self.rooms().get(&s.channel) {
            Some(r) => r.last,
            None => return,
        };
        if s.seq <= last {
            return; // delivered already (a late copy)
        }
        let mut batch = Vec::new();
        if s.seq > last + 1 {
            // Published elsewhere before this one reached us: the database has them.
            match self.logs.events(&s.channel, last, s.seq - 1).await {
                Ok(missing) => batch.extend(missing),
                Err(e) => {
                    tracing::warn!(channel = %s.channel, error = %e.message, "cannot fill a gap")
                }
            }
        }
        batch.push(s);
        for s in batch {
            self.deliver(&s);
        }
    }

    fn deliver(&self, s: &Envelope) {
        let started = std::time::Instant::now();
        let channel: Arc<str> = Arc::from(s.channel.as_str());
        let frame = axum::extract::ws::Utf8Bytes::from(
            serde_json::json!({
                "type": "event",
                "channel": &*channel,
                "offset": s.seq,
                "data": s.event,
            })
            .to_string(),
        );
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(&s.channel) else {
            return;
        };
        if s.seq <= room.last {
            return;
        }
        room.last = s.seq;
        let kicked = (s.event["kind"] == "user_sanctioned")
            .then(|| s.event["user_id"].as_str().map(str::to_owned))
            .flatten();
        let mut gone = Vec::new();
        let mut delivered = 0u64;
        for (id, sub) in &room.subs {
            match sub.tx.try_send(Out::Event {
                channel: Arc::clone(&channel),
                seq: s.seq,
                frame: frame.clone(),
            }) {
                Ok(()) => delivered += 1,
                Err(_) => {
                    let _ = sub
                        .kill
                        .send(Some((1013, "slow consumer: the socket did not keep up")));
                    self.metrics.realtime_slow.inc();
                    gone.push(*id);
                    continue;
                }
            }
            if kicked.is_some() && sub.user_id == kicked {
                let _ = sub.tx.try_send(Out::Left {
                    channel: Arc::clone(&channel),
                    frame: serde_json::json!({
                        "type": "error",
                        "channel": &*channel,
                        "code": "USER_BANNED",
                        "message": "you were banned or timed out in this chat",
                    })
                    .to_string(),
                });
                gone.push(*id);
            }
        }
        let any_gone = !gone.is_empty();
        for id in gone {
            room.subs.remove(&id);
        }
        drop(rooms);
        if any_gone {
            self.touched(&s.channel);
        }
        self.metrics.realtime_delivered.inc_by(delivered);
        self.metrics
            .realtime_fanout_seconds
            .observe(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::store::Chat;
    use crate::db::Db;
    use crate::model::UserRole;
    use crate::notifications::Notifications;
    use crate::realtime::bus::MemoryBus;
    use std::time::Duration;

    /// A socket that never reads is cut off once its queue is full; the others get every
    /// event in order, and the room never waits for the slow one.
    #[tokio::test]
    async fn a_slow_consumer_is_cut_off_and_never_delays_the_room() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(
            &format!("sqlite://{}", dir.path().join("t.db").display()),
            4,
        )
        .await
        .unwrap();
        let owner = db
            .create_user("alice", "h", UserRole::Streamer)
            .await
            .unwrap();
        let cfg = potok_config::ChatConfig {
            moderator_messages_per_30s: 1000,
            ..Default::default()
        };
        let metrics = CpMetrics::new(&potok_service::Metrics::new());
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
        let notifications = Arc::new(Notifications::new(db.clone(), Arc::clone(&bus)));
        let db_for_logs = db.clone();
        let chat = Arc::new(Chat::new(
            db,
            cfg,
            Arc::clone(&bus),
            Arc::clone(&notifications),
            metrics.clone(),
        ));
        let logs = Arc::new(Logs {
            chat: Arc::clone(&chat),
            notifications,
            db: db_for_logs,
        });
        let hub = Hub::new(logs, bus, metrics);
        chat.ensure_room("alice").await.unwrap();

        let (slow_tx, _slow_rx) = mpsc::channel(4); // never read
        let (slow_kill, slow_killed) = tokio::sync::watch::channel(None);
        hub.join("chat:alice", 1, slow_tx, None, Arc::new(slow_kill))
            .await
            .unwrap();
        let (fast_tx, mut fast_rx) = mpsc::channel(1024);
        let (fast_kill, fast_killed) = tokio::sync::watch::channel(None);
        hub.join("chat:alice", 2, fast_tx, None, Arc::new(fast_kill))
            .await
            .unwrap();
        for i in 0..50 {
            chat.send(&owner, "alice", &format!("message number {i}"))
                .await
                .unwrap();
        }
        let mut seqs = Vec::new();
        while seqs.len() < 50 {
            match tokio::time::timeout(Duration::from_secs(5), fast_rx.recv()).await {
                Ok(Some(Out::Event { seq, .. })) => seqs.push(seq),
                Ok(Some(_)) => {}
                other => panic!("fast socket stopped receiving: {other:?}"),
            }
        }
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
        assert!(
            slow_killed
                .borrow()
                .is_some_and(|(_, w)| w.starts_with("slow consumer"))
        );
        assert!(fast_killed.borrow().is_none());
        assert_eq!(
            hub.present("chat:alice"),
            1,
            "the slow socket left the room"
        );
    }
}
