//! The control plane's data: users and their roles, streams and their status machine,
//! nodes. What the API returns is built from these.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    /// Watches, chats, donates.
    Viewer,
    /// Has stream keys and streams.
    Streamer,
    /// Moderates any stream (stops streams, edits their metadata).
    Moderator,
    /// Everything, including other accounts and the node list.
    Admin,
}

impl UserRole {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Viewer => "viewer",
            UserRole::Streamer => "streamer",
            UserRole::Moderator => "moderator",
            UserRole::Admin => "admin",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "viewer" => UserRole::Viewer,
            "streamer" => UserRole::Streamer,
            "moderator" => UserRole::Moderator,
            "admin" => UserRole::Admin,
            _ => return None,
        })
    }

    /// Whether this role may moderate streams (moderators and admins).
    pub fn moderates(self) -> bool {
        self >= UserRole::Moderator
    }
}

/// An account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// Id.
    pub id: String,
    /// Login and public channel name (`/live/{username}/master.m3u8`).
    pub username: String,
    /// Role.
    pub role: UserRole,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
}

/// The seed's stream status machine:
/// `starting → live → paused/ending → ended`, and `error` when the origin fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamStatus {
    /// Created (or asked for an ingest URL); no media yet.
    Starting,
    /// Media is flowing.
    Live,
    /// The publisher dropped; the origin waits for a reconnect.
    Paused,
    /// Stopping on request.
    Ending,
    /// Over.
    Ended,
    /// Its origin failed; the streamer's next ingest request moves it.
    Error,
}

impl StreamStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Starting => "starting",
            StreamStatus::Live => "live",
            StreamStatus::Paused => "paused",
            StreamStatus::Ending => "ending",
            StreamStatus::Ended => "ended",
            StreamStatus::Error => "error",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "starting" => StreamStatus::Starting,
            "live" => StreamStatus::Live,
            "paused" => StreamStatus::Paused,
            "ending" => StreamStatus::Ending,
            "ended" => StreamStatus::Ended,
            "error" => StreamStatus::Error,
            _ => return None,
        })
    }

    /// Whether the machine allows going from `self` to `to`.
    pub fn can_become(self, to: StreamStatus) -> bool {
        use StreamStatus as S;
        matches!(
            (self, to),
            (S::Starting, S::Live | S::Ending | S::Ended | S::Error)
                | (S::Live, S::Paused | S::Ending | S::Ended | S::Error)
                | (S::Paused, S::Live | S::Ending | S::Ended | S::Error)
                | (S::Ending, S::Ended | S::Error)
                | (S::Error, S::Live | S::Starting | S::Ending | S::Ended)
        )
    }

    /// Not over yet.
    pub fn is_open(self) -> bool {
        !matches!(self, StreamStatus::Ended)
    }
}

/// A stream (one broadcast of a streamer's channel).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Stream {
    /// Id.
    pub id: String,
    /// The streamer's user id.
    pub streamer_id: String,
    /// Public name in playback URLs (the streamer's username).
    pub name: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Category (game or topic).
    pub category: String,
    /// Language (ISO 639-1: `ru`, `en`).
    pub language: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Status.
    pub status: StreamStatus,
    /// The origin node holding it, while it has one.
    pub origin_node_id: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// When it first went live.
    pub started_at: Option<i64>,
    /// When it ended.
    pub ended_at: Option<i64>,
    /// When the status last changed.
    pub status_changed_at: i64,
    /// Viewers now.
    pub current_viewers: i64,
    /// Most viewers at once.
    pub peak_viewers: i64,
    /// Seconds since it went live (to its end, once ended).
    pub duration_secs: i64,
    /// Playback URL path on any edge.
    pub playback_path: String,
    /// Whether the broadcast is being recorded now (the seed's `isRecording`).
    pub is_recording: bool,
    /// The recording in progress (`/api/v1/recordings/{id}`).
    pub recording_id: Option<String>,
    /// The live stream's latest thumbnail, a path on any edge (the seed's `thumbnailUrl`);
    /// `None` once it is not live.
    pub thumbnail_path: Option<String>,
}

/// A registered origin or edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Node {
    /// Id.
    pub id: String,
    /// `origin` or `edge`.
    pub role: String,
    /// `node.name`.
    pub name: String,
    /// HTTP base URL.
    pub http_url: String,
    /// RTMP ingest URL (origins).
    pub rtmp_url: Option<String>,
    /// RTMPS ingest URL (origins with TLS).
    pub rtmps_url: Option<String>,
    /// SRT ingest URL (origins).
    pub srt_url: Option<String>,
    /// Stream limit (0: none).
    pub max_streams: i64,
    /// `alive` or `dead`.
    pub state: String,
    /// CPU in cores at the last heartbeat.
    pub cpu: f64,
    /// Streams held at the last heartbeat.
    pub live_streams: i64,
    /// Slowest ladder's real-time factor at the last heartbeat.
    pub transcode_rtf: Option<f64>,
    /// Bytes per second sent at the last heartbeat.
    pub egress_bps: i64,
    /// First registration, Unix milliseconds.
    pub registered_at: i64,
    /// Last heartbeat, Unix milliseconds.
    pub last_heartbeat_at: i64,
}

impl Node {
    /// Whether the scheduler may send one more stream here.
    pub fn has_capacity(&self) -> bool {
        self.state == "alive" && (self.max_streams == 0 || self.live_streams < self.max_streams)
    }

    /// Load used to rank origins: share of capacity used, then CPU.
    pub fn load(&self) -> (f64, f64) {
        let share = if self.max_streams > 0 {
            self.live_streams as f64 / self.max_streams as f64
        } else {
            self.live_streams as f64 / 1000.0
        };
        (share, self.cpu)
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_machine() {
        use StreamStatus as S;
        assert!(S::Starting.can_become(S::Live));
        assert!(S::Live.can_become(S::Paused));
        assert!(S::Paused.can_become(S::Live));
        assert!(S::Live.can_become(S::Ending));
        assert!(S::Ending.can_become(S::Ended));
        assert!(S::Live.can_become(S::Error));
        assert!(S::Error.can_become(S::Live));
        assert!(!S::Ended.can_become(S::Live));
        assert!(!S::Ending.can_become(S::Live));
        assert!(!S::Starting.can_become(S::Paused));
        for s in [
            S::Starting,
            S::Live,
            S::Paused,
            S::Ending,
            S::Ended,
            S::Error,
        ] {
            assert_eq!(S::parse(s.as_str()), Some(s));
        }
    }
}
