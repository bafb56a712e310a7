//! The WebSocket gateway, `GET /api/v1/realtime`: JSON text frames in both directions
//! (`docs/realtime.md`). A socket is signed in with `Authorization: Bearer <token>` or a
//! first `auth` frame (browsers cannot set headers); anonymous sockets read only.
//!
//! Bounds: sockets per address, frame size, frames per second (a flood closes the socket),
//! a bounded send queue per socket (a reader that falls behind is cut off as a slow
//! consumer, never slowing the room), the browser's `Origin` checked against the API's own
//! host or `chat.allowed_origins`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::hub::{Hub, Kill, Out};
use crate::App;
use crate::chat::Sent;
use crate::chat::store::MAX_REPLAY;
use crate::error::{ApiError, StreamingErrorCode};
use crate::model::User;
use crate::secrets::hash_secret;

fn refused(why: &str) -> Response {
    ApiError::new(StreamingErrorCode::ChatConnectionFailed, why).into_response()
}

/// Whether a browser page at `origin` may open the socket.
fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    if !allowed.is_empty() {
        return allowed.iter().any(|a| a.trim_end_matches('/') == origin);
    }
    let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
    host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host))
}

/// The gateway's upgrade handler.
#[utoipa::path(get, path = "/api/v1/realtime", tag = "realtime",
    responses(
        (status = 101, description = "WebSocket: see docs/realtime.md"),
        (status = 400, description = "CHAT_CONNECTION_FAILED: not a WebSocket request, a foreign Origin, too many sockets from this address", body = ApiError),
        (status = 401, description = "The token is not valid", body = ApiError),
    ))]
pub(crate) async fn realtime(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return refused("this endpoint speaks WebSocket only");
    };
    let cfg = app.chat.config().clone();
    if let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) {
        let host = headers.get("host").and_then(|v| v.to_str().ok());
        if !origin_allowed(origin, host, &cfg.allowed_origins) {
            return refused("this page's origin may not open the chat socket");
        }
    }
    // A program sends its token; a page of this site its session cookie (the Origin check
    // above keeps other sites' pages out).
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| crate::api::cookie_in(&headers, crate::api::SESSION_COOKIE));
    let user = match token {
        Some(token) => match app.db.user_by_token(&hash_secret(token.trim())).await {
            Ok(Some(u)) => Some(u),
            Ok(None) => return ApiError::unauthorized().into_response(),
            Err(e) => return ApiError::from(e).into_response(),
        },
        None => None,
    };
    let Some(slot) = app.sockets.try_take(peer.ip()) else {
        return refused("too many sockets from this address");
    };
    let max = cfg.max_frame_bytes as usize;
    // Small buffers: an idle socket keeps its read buffer (tungstenite fills it to capacity)
    // and its write buffer; frames are at most `max_frame_bytes` and writes are batched per
    // flush, so 4 KiB each is enough.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            app.metrics.realtime_connections.inc();
            Socket::run(app.clone(), socket, user).await;
            app.metrics.realtime_connections.dec();
        })
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Frame {
    Auth {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        overlay_token: Option<String>,
    },
    Subscribe {
        channel: String,
        #[serde(default)]
        since: Option<i64>,
    },
    Unsubscribe {
        channel: String,
    },
    Send {
        channel: String,
        text: String,
        #[serde(default, rename = "ref")]
        reference: Option<Value>,
    },
    Ping {
        #[serde(default, rename = "ref")]
        reference: Option<Value>,
    },
}

fn error_frame(reference: Option<&Value>, code: &str, message: &str) -> String {
    json!({"type": "error", "ref": reference, "code": code, "message": message}).to_string()
}

/// A room name from a channel name (`chat:<room>`).
fn room_of(channel: &str) -> Option<&str> {
    let room = channel.strip_prefix("chat:")?;
    ((1..=32).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'))
    .then_some(room)
}

struct Socket {
    app: App,
    hub: Arc<Hub>,
    id: u64,
    user: Option<User>,
    /// The channel an overlay token lets this socket follow (`overlay:<name>`).
    overlay: Option<String>,
    tx: mpsc::Sender<Out>,
    kill: Arc<Kill>,
    rooms: Vec<String>,
}

/// Per-channel delivery state in the writer.
struct Delivery {
    offset: Option<i64>,
    waiting: Vec<(i64, Utf8Bytes)>,
}

impl Socket {
    async fn run(app: App, socket: WebSocket, user: Option<User>) {
        let cfg = app.chat.config().clone();
        let (sink, mut stream) = socket.split();
        let (tx, rx) = mpsc::channel::<Out>(cfg.send_queue.max(8) as usize);
        let (kill, mut killed) = watch::channel::<Option<(u16, &'static str)>>(None);
        let kill = Arc::new(kill);
        let writer = tokio::spawn(write_loop(
            sink,
            rx,
            killed.clone(),
            cfg.send_queue as usize,
        ));
        let mut me = Socket {
            hub: Arc::clone(&app.hub),
            id: app.hub.socket_id(),
            app,
            user,
            overlay: None,
            tx,
            kill: Arc::clone(&kill),
            rooms: Vec::new(),
        };
        let rate = f64::from(cfg.client_frames_per_second.max(1));
        let mut tokens = rate * 2.0;
        let mut refilled = Instant::now();
        let idle = Duration::from_secs(90);
        let _ = me.tx.try_send(Out::Frame(
            json!({"type": "hello", "user": me.user.as_ref().map(|u| &u.username)}).to_string(),
        ));
        let reason: Option<(u16, &'static str)> = loop {
            let msg = tokio::select! {
                _ = killed.changed() => break None,
                m = tokio::time::timeout(idle, stream.next()) => m,
            };
            let msg = match msg {
                Err(_) => break Some((1001, "idle: no frame for 90 s")),
                Ok(None) => break None,
                Ok(Some(Err(_))) => break Some((1009, "frame too large or not WebSocket")),
                Ok(Some(Ok(m))) => m,
            };
            let text = match msg {
                Message::Text(t) => t,
                Message::Binary(_) => break Some((1003, "binary frames are not accepted")),
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Close(_) => break None,
            };
            let now = Instant::now();
            tokens = (tokens + now.duration_since(refilled).as_secs_f64() * rate).min(rate * 2.0);
            refilled = now;
            if tokens < 1.0 {
                me.app
                    .metrics
                    .realtime_refused
                    .with_label_values(&["flood"])
                    .inc();
                break Some((1008, "flood: too many frames"));
            }
            tokens -= 1.0;
            let frame = match serde_json::from_str::<Frame>(&text) {
                Ok(f) => f,
                Err(e) => {
                    me.app
                        .metrics
                        .realtime_refused
                        .with_label_values(&["bad_frame"])
                        .inc();
                    let _ = me.tx.try_send(Out::Frame(error_frame(
                        None,
                        "VALIDATION_FAILED",
                        &format!("not a frame of this protocol: {e}"),
                    )));
                    continue;
                }
            };
            me.handle(frame).await;
        };
        for room in std::mem::take(&mut me.rooms) {
            me.hub.leave(&room, me.id);
        }
        if let Some((code, why)) = reason {
            let _ = me
                .tx
                .try_send(Out::Frame(error_frame(None, "CHAT_CONNECTION_FAILED", why)));
            let _ = kill.send(Some((code, why)));
            tracing::debug!(code, why, "socket closed");
        }
        drop(me);
        let _ = writer.await;
    }

    async fn handle(&mut self, frame: Frame) {
        match frame {
            Frame::Auth {
                overlay_token: Some(t),
                ..
            } => {
                let reply = match crate::payments::overlay::channel_of_token(&self.app.db, t.trim())
                    .await
                {
                    Ok(Some(u)) => {
                        let f = json!({"type": "hello", "user": null, "overlay": u.username})
                            .to_string();
                        self.overlay = Some(u.username);
                        f
                    }
                    Ok(None) => error_frame(
                        None,
                        "UNAUTHORIZED",
                        "the overlay token is unknown or revoked",
                    ),
                    Err(_) => error_frame(None, "INTERNAL", "the database failed"),
                };
                let _ = self.tx.try_send(Out::Frame(reply));
            }
            Frame::Auth { token, .. } => {
                let token = token.unwrap_or_default();
                let reply = match self.app.db.user_by_token(&hash_secret(token.trim())).await {
                    Ok(Some(u)) => {
                        let f = json!({"type": "hello", "user": u.username}).to_string();
                        self.user = Some(u);
                        f
                    }
                    Ok(None) => error_frame(
                        None,
                        "UNAUTHORIZED",
                        "the token is unknown, expired or revoked",
                    ),
                    Err(_) => error_frame(None, "INTERNAL", "the database failed"),
                };
                let _ = self.tx.try_send(Out::Frame(reply));
            }
            Frame::Ping { reference } => {
                let _ = self.tx.try_send(Out::Frame(
                    json!({"type": "pong", "ref": reference}).to_string(),
                ));
            }
            Frame::Subscribe { channel, since } => {
                if let Err(e) = self.subscribe(&channel, since).await {
                    let _ = self.tx.try_send(Out::Frame(
                        json!({"type": "error", "channel": channel, "code": e.code, "message": e.message})
                            .to_string(),
                    ));
                }
            }
            Frame::Unsubscribe { channel } => {
                let key = match (&self.user, channel.as_str()) {
                    (Some(u), "user:me") => crate::notifications::channel_of(&u.id),
                    _ => channel.clone(),
                };
                if let Some(i) = self.rooms.iter().position(|r| *r == key) {
                    self.rooms.swap_remove(i);
                    self.hub.leave(&key, self.id);
                }
                let _ = self.tx.try_send(Out::Frame(
                    json!({"type": "unsubscribed", "channel": channel}).to_string(),
                ));
            }
            Frame::Send {
                channel,
                text,
                reference,
            } => {
                let reply = match (&self.user, room_of(&channel)) {
                    (None, _) => error_frame(
                        reference.as_ref(),
                        "UNAUTHORIZED",
                        "sign in (an auth frame) to write",
                    ),
                    (_, None) => error_frame(reference.as_ref(), "VALIDATION_FAILED", "no such channel"),
                    (Some(user), Some(room)) => match self.app.chat.send(user, room, &text).await {
                        Ok(Sent::Posted(m)) => json!({"type": "ack", "ref": reference, "offset": m.seq, "id": m.id})
                            .to_string(),
                        Ok(Sent::Held(h)) => json!({"type": "ack", "ref": reference, "held": true, "id": h.id,
                            "reason": h.reason})
                            .to_string(),
                        Err(e) => json!({"type": "error", "ref": reference, "channel": channel, "code": e.code, "message": e.message})
                            .to_string(),
                    },
                };
                let _ = self.tx.try_send(Out::Frame(reply));
            }
        }
    }

    async fn subscribe(&mut self, requested: &str, since: Option<i64>) -> Result<(), ApiError> {
        // `user:me` is the signed-in user's own feed; nobody subscribes to another's.
        let (channel, room) = if requested == "user:me" {
            let Some(u) = &self.user else {
                return Err(ApiError::new(
                    StreamingErrorCode::Unauthorized,
                    "sign in (an auth frame) for your notifications",
                ));
            };
            (crate::notifications::channel_of(&u.id), None)
        } else if let Some(name) = requested.strip_prefix("overlay:") {
            let allowed = self.overlay.as_deref() == Some(name)
                || self
                    .user
                    .as_ref()
                    .is_some_and(|u| u.username == name || u.role == crate::model::UserRole::Admin);
            if !allowed {
                return Err(ApiError::new(
                    StreamingErrorCode::Unauthorized,
                    "an overlay channel needs its overlay token (an auth frame) or its streamer",
                ));
            }
            (requested.to_owned(), None)
        } else {
            let room = room_of(requested).ok_or_else(|| {
                ApiError::new(
                    StreamingErrorCode::ValidationFailed,
                    "channels are chat:<room>, overlay:<channel> and user:me",
                )
            })?;
            (requested.to_owned(), Some(room.to_owned()))
        };
        let again = self.rooms.contains(&channel);
        if !again && self.rooms.len() >= 32 {
            return Err(ApiError::new(
                StreamingErrorCode::ValidationFailed,
                "at most 32 channels per socket",
            ));
        }
        let chat = &self.app.chat;
        if let Some(room) = &room {
            chat.ensure_room(room).await?;
            if let Some(u) = &self.user
                && chat.sanctioned(room, &u.id).await?.is_some()
            {
                return Err(ApiError::new(
                    StreamingErrorCode::UserBanned,
                    "you are banned or timed out in this chat",
                ));
            }
        }
        self.hub
            .join(
                &channel,
                self.id,
                self.tx.clone(),
                self.user.as_ref().map(|u| u.id.clone()),
                Arc::clone(&self.kill),
            )
            .await?;
        if !again {
            self.rooms.push(channel.clone());
        }
        // The snapshot up to the offset now; live events past it follow in order.
        let logs = self.hub.logs();
        let present = self.hub.presence(&self.app.db, &channel).await?;
        let (offset, frame) = match since {
            Some(since) => {
                let last = logs.last_seq(&channel).await?;
                let events = logs.events(&channel, since.max(0), last).await?;
                let recovered = since >= 0
                    && since <= last
                    && last - since <= MAX_REPLAY
                    && events.first().is_none_or(|e| e.seq == since + 1)
                    && events.len() as i64 == last - since;
                let offset = last.max(events.last().map_or(0, |e| e.seq));
                let missed: Vec<Value> = events
                    .iter()
                    .map(|e| json!({"offset": e.seq, "data": e.event}))
                    .collect();
                (
                    offset,
                    json!({"type": "subscribed", "channel": channel, "offset": offset,
                    "recovered": recovered, "missed": missed, "present": present}),
                )
            }
            None => match &room {
                Some(room) => {
                    let (history, last) = chat
                        .history(room, i64::from(chat.config().history_on_join))
                        .await?;
                    (
                        last,
                        json!({"type": "subscribed", "channel": channel, "offset": last,
                        "history": history, "present": present}),
                    )
                }
                None if channel.starts_with("overlay:") => {
                    let last = logs.last_seq(&channel).await?;
                    (
                        last,
                        json!({"type": "subscribed", "channel": channel, "offset": last, "present": present}),
                    )
                }
                None => {
                    let id = channel.trim_start_matches("user:");
                    let (items, unread) = self.app.notifications.recent(id, 50).await?;
                    let last = logs.last_seq(&channel).await?;
                    (
                        last,
                        json!({"type": "subscribed", "channel": channel, "offset": last,
                        "history": items, "unread": unread}),
                    )
                }
            },
        };
        // A user's feed is named by its real channel (`user:<id>`) in every frame.
        if self
            .tx
            .try_send(Out::Ready {
                channel: Arc::from(channel.as_str()),
                offset,
                frame: frame.to_string(),
            })
            .is_err()
        {
            let _ = self
                .kill
                .send(Some((1013, "slow consumer: the socket did not keep up")));
        }
        Ok(())
    }
}

/// Per-channel delivery state in the writer, found by a linear search (a socket has at most
/// 32 channels).
type Channels = Vec<(Arc<str>, Delivery)>;

fn delivery<'a>(channels: &'a mut Channels, channel: &Arc<str>) -> &'a mut Delivery {
    let i = match channels
        .iter()
        .position(|(c, _)| Arc::ptr_eq(c, channel) || **c == **channel)
    {
        Some(i) => i,
        None => {
            channels.push((
                Arc::clone(channel),
                Delivery {
                    offset: None,
                    waiting: Vec::new(),
                },
            ));
            channels.len() - 1
        }
    };
    &mut channels[i].1
}

/// Most queued frames written before one flush (one `send` system call for a backlog instead
/// of one per frame).
const BATCH: usize = 64;

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Out>,
    mut killed: watch::Receiver<Option<(u16, &'static str)>>,
    max_waiting: usize,
) {
    let mut channels: Channels = Vec::new();
    let mut ping = tokio::time::interval(Duration::from_secs(30));
    ping.tick().await;
    loop {
        let out = tokio::select! {
            biased;
            _ = killed.changed() => {
                let (code, why) = (*killed.borrow()).unwrap_or((1000, "closed"));
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    // Whatever was queued before the close (an error frame with the reason).
                    while let Ok(Out::Frame(f)) = rx.try_recv() {
                        if sink.send(Message::Text(Utf8Bytes::from(f))).await.is_err() { return; }
                    }
                    let _ = sink.send(Message::Close(Some(CloseFrame {
                        code,
                        reason: Utf8Bytes::from(why),
                    }))).await;
                }).await;
                return;
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() { return; }
                continue;
            }
            o = rx.recv() => match o { Some(o) => o, None => {
                let _ = sink.close().await;
                return;
            } },
        };
        // This item and whatever else is queued already, then one flush.
        if feed(&mut sink, &mut channels, out, max_waiting)
            .await
            .is_err()
        {
            return;
        }
        for _ in 1..BATCH {
            match rx.try_recv() {
                Ok(out) => {
                    if feed(&mut sink, &mut channels, out, max_waiting)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

/// Hands one item to the socket's buffer (written at the next flush, or when the buffer is
/// full). `Err` ends the socket.
async fn feed(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    channels: &mut Channels,
    out: Out,
    max_waiting: usize,
) -> Result<(), ()> {
    let text = |f: Utf8Bytes| Message::Text(f);
    let r = match out {
        Out::Frame(f) => sink.feed(text(Utf8Bytes::from(f))).await,
        Out::Left { channel, frame } => {
            channels.retain(|(c, _)| **c != *channel);
            sink.feed(text(Utf8Bytes::from(frame))).await
        }
        Out::Ready {
            channel,
            offset,
            frame,
        } => {
            let d = delivery(channels, &channel);
            d.offset = Some(offset);
            let waiting = std::mem::take(&mut d.waiting);
            let mut r = sink.feed(text(Utf8Bytes::from(frame))).await;
            let mut last = offset;
            for (seq, f) in waiting {
                if r.is_ok() && seq > last {
                    r = sink.feed(text(f)).await;
                    last = seq;
                }
            }
            delivery(channels, &channel).offset = Some(last);
            r
        }
        Out::Event {
            channel,
            seq,
            frame,
        } => {
            let d = delivery(channels, &channel);
            match d.offset {
                None => {
                    if d.waiting.len() >= max_waiting {
                        return Err(()); // slow before it even started
                    }
                    d.waiting.push((seq, frame));
                    Ok(())
                }
                Some(o) if seq <= o => Ok(()),
                Some(_) => {
                    d.offset = Some(seq);
                    sink.feed(text(frame)).await
                }
            }
        }
    };
    r.map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert!(origin_allowed(
            "http://127.0.0.1:8090",
            Some("127.0.0.1:8090"),
            &[]
        ));
        assert!(!origin_allowed(
            "https://evil.example",
            Some("127.0.0.1:8090"),
            &[]
        ));
        let allowed = vec!["https://potok.example".to_owned()];
        assert!(origin_allowed(
            "https://potok.example",
            Some("api:8090"),
            &allowed
        ));
        assert!(!origin_allowed(
            "https://evil.example",
            Some("api:8090"),
            &allowed
        ));
        assert_eq!(room_of("chat:alice"), Some("alice"));
        assert_eq!(room_of("chat:Alice"), None);
        assert_eq!(room_of("user:alice"), None);
        assert_eq!(room_of("chat:"), None);
    }
}
