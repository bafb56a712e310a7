//! The messages roles exchange with the control plane, defined once with no server code:
//! node registration and heartbeats, publish authorization, stream → origin resolution.
//! JSON over HTTP under `/api/v1/cluster/`, authenticated with `Authorization: Bearer`
//! and the cluster secret.

use serde::{Deserialize, Serialize};

/// Path prefix of the cluster endpoints.
pub const CLUSTER_PREFIX: &str = "/api/v1/cluster";

/// Which kind of node registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// Takes publishers, serves edges.
    Origin,
    /// Serves viewers.
    Edge,
}

impl NodeRole {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Origin => "origin",
            NodeRole::Edge => "edge",
        }
    }
}

/// `POST /api/v1/cluster/nodes`: a node announces itself (again after every restart).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Register {
    /// Its role.
    pub role: NodeRole,
    /// `node.name`, unique per role: a restarted node gets its old id back.
    pub name: String,
    /// Where edges pull from (origins) or viewers connect (edges): `http://host:port`.
    pub http_url: String,
    /// Publisher URLs (origins): `rtmp://host:port/live`.
    #[serde(default)]
    pub rtmp_url: Option<String>,
    /// `rtmps://host:port/live`, when RTMPS is on.
    #[serde(default)]
    pub rtmps_url: Option<String>,
    /// `srt://host:port`.
    #[serde(default)]
    pub srt_url: Option<String>,
    /// Most live streams the node takes (0: no limit).
    #[serde(default)]
    pub max_streams: u32,
    /// Public stream names the node's configuration owns (`origin.streams`, the demo
    /// stream): the control plane lets no account sign up or publish under them.
    #[serde(default)]
    pub reserved_names: Vec<String>,
}

/// The answer to [`Register`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    /// The node's id, for heartbeats.
    pub node_id: String,
    /// How often to heartbeat, in milliseconds.
    pub heartbeat_ms: u64,
}

/// A stream live on an origin, as reported in a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveStream {
    /// Public name.
    pub name: String,
    /// `true` while its publisher is connected; `false` in the reconnect grace period.
    pub publishing: bool,
    /// The id of the recording in progress, when it is being recorded.
    #[serde(default)]
    pub recording: Option<String>,
}

/// `POST /api/v1/cluster/nodes/{id}/heartbeat`: the node is alive, with its load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// CPU used by the process since the last heartbeat, in cores (1.5 = one and a half).
    pub cpu: f64,
    /// Streams the origin holds (publishing or in grace).
    #[serde(default)]
    pub streams: Vec<LiveStream>,
    /// The slowest ladder's real-time factor (1 = keeping up), when any transcodes.
    #[serde(default)]
    pub transcode_rtf: Option<f64>,
    /// Bytes per second sent since the last heartbeat.
    #[serde(default)]
    pub egress_bps: u64,
    /// Viewers per stream (edges).
    #[serde(default)]
    pub viewers: Vec<StreamViewers>,
}

/// How many viewers an edge serves a stream to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamViewers {
    /// Public stream name.
    pub name: String,
    /// Distinct viewers (client addresses) in the last seconds.
    pub viewers: u64,
}

/// `POST /api/v1/cluster/publish`: may this key publish on this origin?
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublishRequest {
    /// The asking origin.
    pub node_id: String,
    /// The stream key as the publisher sent it (never logged).
    pub key: String,
    /// `rtmp`, `rtmps` or `srt`.
    pub protocol: String,
    /// The publisher's address (rate limiting).
    #[serde(default)]
    pub client_addr: Option<String>,
}

/// The answer to an accepted [`PublishRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublishGrant {
    /// The stream's id in the control plane.
    pub stream_id: String,
    /// The public name playback URLs use.
    pub name: String,
    /// Whether the stream gets the ABR ladder (`None`: the origin's default).
    #[serde(default)]
    pub transcode: Option<bool>,
    /// The stream was live elsewhere moments ago (its origin failed): viewers continue after
    /// a discontinuity.
    #[serde(default)]
    pub continues: bool,
    /// Restream targets (none yet).
    #[serde(default)]
    pub restream: Vec<String>,
    /// Whether and how the broadcast is recorded (the channel's settings); `None`: the
    /// origin's `storage.recordings` configuration decides.
    #[serde(default)]
    pub recording: Option<GrantRecording>,
}

/// A channel's recording settings, as a publish grant carries them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecording {
    /// Record the broadcast from its start.
    pub enabled: bool,
    /// Renditions kept; empty: the origin's `storage.recordings.renditions`.
    #[serde(default)]
    pub renditions: Vec<String>,
    /// Longest recording in seconds; `None`: `storage.recordings.max_duration`.
    #[serde(default)]
    pub max_duration_secs: Option<u64>,
}

/// `GET /api/v1/cluster/streams/{name}/origin`: where an edge pulls a stream from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    /// Base URLs of the origins holding it, best first.
    pub origins: Vec<String>,
}

/// A JSON error body, as every control-plane error is sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A `StreamingErrorCode` (`STREAM_KEY_INVALID`, `RATE_LIMITED`, ...).
    pub code: String,
    /// For people.
    pub message: String,
}

/// The answer to a [`Heartbeat`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// Streams whose publisher the origin should disconnect (stopped through the API).
    #[serde(default)]
    pub stop: Vec<String>,
}

/// `GET /api/streams/{name}/health` at an origin (the control plane's `get_stream_health`):
/// what arrives from the publisher over the last seconds and how the ladder keeps up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamHealth {
    /// `true` while its publisher is connected; `false` in the reconnect grace period.
    pub publishing: bool,
    /// Ingest bitrate (audio and video) over the last 5 s, kbit/s.
    pub bitrate_kbps: u32,
    /// Video frames per second received over the last 5 s.
    pub fps: f64,
    /// Seconds between the last two keyframes (media time), once two arrived.
    pub keyframe_interval_secs: Option<f64>,
    /// Video frames dropped since the broadcast started: before the first keyframe (not
    /// decodable) and those the ladder could not keep up with.
    pub dropped_frames: u64,
    /// The source's video codec (`avc1.64001f`) and picture size, once known.
    pub video_codecs: Option<String>,
    /// Source picture width × height.
    pub resolution: Option<(u32, u32)>,
    /// The ladder's real-time factor (1 = keeping up), when it transcodes.
    pub realtime_factor: Option<f64>,
    /// The ladder's rungs, best first.
    #[serde(default)]
    pub rungs: Vec<RungHealth>,
    /// Whether a rung was shed (the ladder could not keep up with it).
    pub shedding: bool,
}

/// One rung of the ladder.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RungHealth {
    /// Rendition name (`720p`).
    pub name: String,
    /// Encoded frames per second.
    pub fps: f64,
    /// `false` once shed.
    pub active: bool,
}
