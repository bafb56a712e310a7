//! Typed configuration shared by every Potok role.
//!
//! Data enters as an optional TOML file plus `POTOK_SECTION__FIELD=value` environment
//! overrides ([`load`]); it leaves as a validated [`Config`] that the binary hands to each role,
//! or as a [`ConfigError`] whose every line names the field's path (`edge.cache.max_bytes`)
//! and why it was refused. Secrets ([`Secret`], [`DatabaseUrl`] passwords) print as
//! `<redacted>`, so the effective configuration can always be shown.
//!
//! Every struct is `#[serde(default)]` (a missing field takes its documented default) and
//! `#[serde(deny_unknown_fields)]` (a typo is an error, not a silently ignored setting).

#![forbid(unsafe_code)]

mod load;
mod payments;
mod secret;
mod storage;
mod units;
mod validate;
pub mod wire;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

pub use load::{ConfigError, ENV_PREFIX, FieldError, load, load_str};
pub use payments::{
    CurrencyLimits, FraudConfig, IpNet, PaymentProvider, PaymentsConfig, RevenueShares,
    SubscriptionsConfig, YooKassaConfig,
};
pub use secret::{DatabaseUrl, REDACTED, Secret};
pub use storage::{
    RecordingsConfig, S3Config, SpoolConfig, StorageBackend, StorageConfig, StreamRecording,
};
pub use units::{ByteSize, HumanDuration, ListenAddr};

/// A role a Potok process can run. `potok all` runs all three.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Ingest, packaging and the origin HTTP API that edges pull from.
    Origin,
    /// The viewer-facing caching HTTP server.
    Edge,
    /// REST API, scheduling, accounts and the streamer economy.
    ControlPlane,
}

impl Role {
    /// Every role, in start-up order (dependencies first).
    pub const ALL: [Role; 3] = [Role::ControlPlane, Role::Origin, Role::Edge];

    /// The role's name as used in metrics labels, logs and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Origin => "origin",
            Role::Edge => "edge",
            Role::ControlPlane => "control-plane",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The whole configuration of one Potok process.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's identity and where it keeps state.
    pub node: NodeConfig,
    /// Logging.
    pub log: LogConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Limits shared by every HTTP listener of every role.
    pub http: HttpConfig,
    /// The origin role: ingest and packaging.
    pub origin: OriginConfig,
    /// The edge role: viewer-facing cache.
    pub edge: EdgeConfig,
    /// The control-plane role.
    pub control_plane: ControlPlaneConfig,
    /// How nodes of a cluster find and trust each other.
    pub cluster: ClusterConfig,
    /// Who may read `/metrics`.
    pub metrics: MetricsConfig,
    /// The web pages the control plane serves.
    pub web: WebConfig,
    /// The object store (local directory or S3) origins and edges share, recordings.
    pub storage: StorageConfig,
}

/// The web pages (directory, watch pages, dashboard, overlays) the control plane serves.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Whether the control plane serves the pages at all (the API is served either way).
    pub enabled: bool,
    /// Base URL viewers' players fetch playlists from (`https://edge.potok.example`), when the
    /// edge is on another host. Unset: `http://node.public_host` with `edge.listen`'s port.
    pub edge_url: Option<String>,
    /// Language for visitors whose `Accept-Language` names neither Russian nor English:
    /// `ru` or `en`.
    #[serde(deserialize_with = "lenient_string")]
    pub default_language: String,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            edge_url: None,
            default_language: "ru".into(),
        }
    }
}

/// Access to `/metrics`, which names every stream (private ones too) and counts logins.
/// On the roles' ports `/metrics` answers requests bearing `token`, or, without a token,
/// only loopback clients; `listen` adds a listener of its own for a scraper on another host.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// A listener for `/metrics` (and `/healthz`) alone, e.g. on a private interface.
    /// Without `token`, everyone who reaches it may read the metrics. Unset: none.
    pub listen: Option<ListenAddr>,
    /// A bearer token (`Authorization: Bearer TOKEN`, at least 16 characters) that every
    /// `/metrics` request must carry, on every port. Unset: the roles' ports answer
    /// loopback clients only and `listen` answers everyone.
    pub token: Option<Secret>,
}

/// This node's identity and state directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name in logs, metrics and the control plane's node registry
    /// (letters, digits, `.`, `_`, `-`; at most 63 characters).
    #[serde(deserialize_with = "lenient_string")]
    pub name: String,
    /// Directory for the embedded database, local object storage and recordings. Created
    /// at start when missing; relative paths are relative to the working directory.
    pub data_dir: PathBuf,
    /// Host name or IP that streamers and viewers use to reach this node; used in the URLs
    /// the node prints and hands out (ingest URLs, playback URLs).
    #[serde(deserialize_with = "lenient_string")]
    pub public_host: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "potok".into(),
            data_dir: PathBuf::from("data"),
            public_host: "localhost".into(),
        }
    }
}

/// Log output.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Default filter in `tracing` directive syntax (`info`, `potok_origin=debug,info`).
    /// The `POTOK_LOG` or `RUST_LOG` environment variable, when set, takes precedence.
    #[serde(deserialize_with = "lenient_string")]
    pub filter: String,
    /// `text` for people, `json` (one object per line) for log collectors.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Graceful shutdown.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// After SIGINT/SIGTERM, how long in-flight requests and sessions get to finish before
    /// the process exits anyway. A second signal exits at once.
    pub drain_timeout: HumanDuration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_timeout: HumanDuration::secs(10),
        }
    }
}

/// Limits applied to every HTTP listener (origin API, edge, control plane).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Most connections one listener keeps open; further clients wait in the kernel's
    /// accept queue until one closes.
    pub max_connections: usize,
    /// Time a client has to send a request's complete headers (slowloris guard). A new
    /// connection (plain, after TLS, or HTTP/2 prior knowledge) must also send its first
    /// byte within this time, or it is closed.
    pub header_read_timeout: HumanDuration,
    /// A connection on which no byte moves in either direction for this long is closed
    /// (idle keep-alive, idle HTTP/2 without streams, stalled peers). Keep it above the
    /// longest held request (3 × `origin.hls.segment_target`).
    pub idle_timeout: HumanDuration,
    /// Most connections one client address keeps open on one listener (IPv6: per /64);
    /// further connections from it are closed at once. 0: no per-address limit. Viewers
    /// behind one NAT share an address, so keep this well above a household's players.
    pub max_connections_per_address: usize,
    /// Largest request head (request line + headers) accepted.
    pub max_header_bytes: ByteSize,
    /// How long `/readyz` waits for each dependency check before calling it failed.
    pub readiness_timeout: HumanDuration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 10_000,
            header_read_timeout: HumanDuration::secs(10),
            idle_timeout: HumanDuration::secs(60),
            max_connections_per_address: 1024,
            max_header_bytes: ByteSize::kib(64),
            readiness_timeout: HumanDuration::secs(2),
        }
    }
}

/// The origin role.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OriginConfig {
    /// Origin HTTP API (playlists and media for edges, health and metrics).
    pub http_listen: ListenAddr,
    /// RTMP ingest (TCP). Not bound yet: RTMP ingest arrives with the media core.
    pub rtmp_listen: ListenAddr,
    /// RTMPS ingest (RTMP over TLS, TCP); bound when `origin.tls` has a certificate.
    pub rtmps_listen: ListenAddr,
    /// SRT ingest (UDP, MPEG-TS inside; `streamid=live/KEY` or `#!::r=live/KEY,m=publish`).
    pub srt_listen: ListenAddr,
    /// SRT settings.
    pub srt: SrtConfig,
    /// Certificate for RTMPS.
    pub tls: TlsConfig,
    /// Most simultaneous RTMP connections (publishers and connection attempts).
    pub max_ingest_connections: usize,
    /// Most simultaneous RTMP connections from one client address (IPv6: per /64); more are
    /// closed at once. 0: no per-address limit. Raise it for a restreaming service or a
    /// proxy that publishes many streams from one address.
    pub max_ingest_connections_per_address: usize,
    /// Time a publisher has, from the TCP accept, to finish the TLS and RTMP handshakes,
    /// `connect` and have its `publish` accepted (one deadline for the whole phase, not per
    /// read), and the longest silence tolerated from a publishing connection.
    pub ingest_timeout: HumanDuration,
    /// Largest RTMP message (and chunk size) a publishing connection may send, after its
    /// publish was accepted. Before that, only 64 KiB is allowed, enough for the commands.
    pub max_rtmp_message_bytes: ByteSize,
    /// LL-HLS packaging.
    pub hls: HlsConfig,
    /// Streams and their keys, accepted besides the keys streamers create through the
    /// control plane's API (`potok all` generates a demo key when the list is empty).
    /// Without a control plane (`cluster.control_plane_url` unset, not `potok all`) these
    /// are the only keys.
    pub streams: Vec<StreamKeyConfig>,
    /// Copies of finished segments in object storage (VOD after the stream ends).
    pub archive: ArchiveConfig,
    /// Most streams published at once on this origin (0: no limit); beyond it publishes are
    /// refused and the scheduler stops sending streamers here.
    pub max_streams: u32,
    /// The ABR ladder: lower renditions transcoded in-process next to the source.
    pub transcode: TranscodeConfig,
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig {
            http_listen: any_ipv4(8081),
            rtmp_listen: any_ipv4(1935),
            rtmps_listen: any_ipv4(1936),
            srt_listen: any_ipv4(9000),
            srt: SrtConfig::default(),
            tls: TlsConfig::default(),
            max_ingest_connections: 1000,
            max_ingest_connections_per_address: 32,
            ingest_timeout: HumanDuration::secs(10),
            max_rtmp_message_bytes: ByteSize::mib(8),
            hls: HlsConfig::default(),
            streams: Vec::new(),
            archive: ArchiveConfig::default(),
            max_streams: 0,
            transcode: TranscodeConfig::default(),
        }
    }
}

/// SRT ingest.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SrtConfig {
    /// Receive latency (the time SRT may spend recovering lost packets).
    pub latency: HumanDuration,
    /// AES passphrase (10-79 characters) every caller must use, unless its stream has its
    /// own (`origin.streams[].srt_passphrase`); unset: unencrypted.
    pub passphrase: Option<Secret>,
    /// Highest input bitrate accepted from one SRT caller, in kbit/s averaged over 5 s; a
    /// caller above it is disconnected (protects the origin from runaway or hostile input).
    pub max_bitrate_kbps: u64,
}

impl Default for SrtConfig {
    fn default() -> Self {
        SrtConfig {
            latency: HumanDuration::millis(120),
            passphrase: None,
            max_bitrate_kbps: 60_000,
        }
    }
}

/// Low-Latency HLS packaging at the origin.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsConfig {
    /// Longest part (`EXT-X-PART-INF:PART-TARGET`). Parts are whole frames, so a multiple
    /// of the frame interval (200ms = 6 frames at 30 fps) gives parts of equal length.
    pub part_target: HumanDuration,
    /// Segments end at the first keyframe at or after this; `EXT-X-TARGETDURATION` is this
    /// rounded up to whole seconds. Set the encoder's keyframe interval to the same value.
    pub segment_target: HumanDuration,
    /// Complete segments kept in memory and listed (at least 6).
    pub window_segments: usize,
    /// Most bytes of media kept in memory per rendition; the oldest segments go first.
    pub max_window_bytes: ByteSize,
    /// Most playlist and part requests held waiting (blocking reload, preload hints) per
    /// stream; more get 503.
    pub max_held_requests: usize,
    /// A publisher that drops and reconnects within this time continues the same stream
    /// (after an `EXT-X-DISCONTINUITY`); after it, the stream ends with `EXT-X-ENDLIST`.
    pub reconnect_grace: HumanDuration,
    /// How long an ended stream's playlists and media stay available.
    pub ended_retention: HumanDuration,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            part_target: HumanDuration::millis(200),
            segment_target: HumanDuration::secs(2),
            window_segments: 10,
            max_window_bytes: ByteSize::mib(256),
            max_held_requests: 10_000,
            reconnect_grace: HumanDuration::secs(10),
            ended_retention: HumanDuration::secs(60),
        }
    }
}

/// A stream that may be published: its public name and its secret key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamKeyConfig {
    /// Public name in playback URLs (`/live/{name}/master.m3u8`): letters, digits, `-`, `_`.
    pub name: String,
    /// The stream key a publisher sends (`rtmp://host/live/{key}`); at least 8 characters,
    /// never shown in logs or URLs.
    pub key: Secret,
    /// This stream's SRT passphrase, instead of `origin.srt.passphrase`.
    #[serde(default)]
    pub srt_passphrase: Option<Secret>,
    /// Whether this stream gets the ABR ladder; unset: `origin.transcode.enabled`.
    #[serde(default)]
    pub transcode: Option<bool>,
}

/// Encoder names `origin.transcode.encoder` accepts besides `auto` (the transcoder's
/// catalogue of encoders it can package; a test keeps the two equal).
pub const ENCODERS: &[&str] = &[
    "h264_nvenc",
    "h264_qsv",
    "h264_vaapi",
    "libx264",
    "hevc_nvenc",
    "hevc_qsv",
    "hevc_vaapi",
    "libx265",
];

/// The ABR ladder at the origin: the source is passed through untouched as the `source`
/// rendition and each rung below its resolution is decoded once, scaled and encoded.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscodeConfig {
    /// Whether streams get a ladder (per stream: `origin.streams[].transcode`).
    pub enabled: bool,
    /// `auto` (hardware H.264 encoders when one opens — NVENC, QSV, VAAPI — else libx264)
    /// or an encoder name; `potok encoders` lists what this machine can use.
    pub encoder: String,
    /// Software encoder preset (x264/x265: `ultrafast` ... `veryslow`).
    pub preset: String,
    /// x264/x265 tune; `zerolatency` keeps the encoder from holding frames back. Empty: none.
    pub tune: String,
    /// Encoder threads per rung (0: the encoder decides).
    pub threads: u32,
    /// When the ladder's output falls this far behind its input, the most expensive rung is
    /// shed (the source rendition never waits for the ladder).
    pub max_lag: HumanDuration,
    /// The rungs; those not below the source's height are skipped (no upscaling).
    pub rungs: Vec<RungConfig>,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        let rung = |name: &str, height, kbps, profile: &str| RungConfig {
            name: name.into(),
            height,
            max_fps: 0.0,
            bitrate_kbps: kbps,
            max_bitrate_kbps: kbps * 11 / 10,
            profile: profile.into(),
        };
        TranscodeConfig {
            enabled: true,
            encoder: "auto".into(),
            preset: "veryfast".into(),
            tune: "zerolatency".into(),
            threads: 0,
            max_lag: HumanDuration::secs(2),
            rungs: vec![
                rung("720p", 720, 3000, "high"),
                rung("480p", 480, 1400, "main"),
                rung("360p", 360, 800, "main"),
            ],
        }
    }
}

/// One rung of the ladder.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RungConfig {
    /// Rendition name in URLs (`/live/{stream}/{name}/index.m3u8`): letters, digits, `-`,
    /// `_`; not `source`.
    pub name: String,
    /// Picture height in pixels; the width follows the source's aspect ratio.
    pub height: u32,
    /// Highest frame rate; 0: the source's.
    #[serde(default)]
    pub max_fps: f64,
    /// Average bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// Peak bitrate in kbit/s (the encoder's VBV maximum).
    pub max_bitrate_kbps: u32,
    /// H.264 profile: `baseline`, `main` or `high` (empty: the encoder's default).
    #[serde(default)]
    pub profile: String,
}

/// Object-storage copies of finished segments.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Whether finished segments, init segments and VOD playlists are written.
    pub enabled: bool,
    /// Directory of the local-filesystem object store. Unset: `archive` inside
    /// `node.data_dir`.
    pub path: Option<PathBuf>,
    /// Writes waiting for the store; when full, new segments are not archived (counted in
    /// `potok_archive_dropped_total`) rather than slowing ingest.
    pub queue: usize,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            enabled: true,
            path: None,
            queue: 256,
        }
    }
}

/// The edge role.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Plain HTTP for viewers (and health and metrics).
    pub http_listen: ListenAddr,
    /// HTTPS (HTTP/1.1 + HTTP/2, TCP) and HTTP/3 (UDP) for viewers. Not bound yet: TLS and
    /// HTTP/3 arrive with the edge cache.
    pub https_listen: ListenAddr,
    /// TLS certificate for the HTTPS and HTTP/3 listeners.
    pub tls: TlsConfig,
    /// The media cache.
    pub cache: CacheConfig,
    /// The origins this edge pulls from.
    pub upstream: UpstreamConfig,
    /// Signed playback URLs for private and subscriber-only streams.
    pub signing: SigningConfig,
    /// Local object store the origins archive to (the same directory or a mirror of it): a
    /// segment an origin no longer holds is read from here before a 404. Unset on a lone
    /// edge means no fallback; `potok all` uses the origin's archive.
    pub archive_path: Option<PathBuf>,
    /// Most requests waiting for the same upstream answers at once (coalesced misses,
    /// blocking playlists, preload-hinted parts); more get 503.
    pub max_waiters: usize,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            http_listen: any_ipv4(8080),
            https_listen: any_ipv4(8443),
            tls: TlsConfig::default(),
            cache: CacheConfig::default(),
            upstream: UpstreamConfig::default(),
            signing: SigningConfig::default(),
            archive_path: None,
            max_waiters: 100_000,
        }
    }
}

/// A certificate and its private key, as PEM files. Set both or neither.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the leaf certificate.
    pub key_file: Option<PathBuf>,
    /// Without files: generate a self-signed development certificate for `localhost` and
    /// `node.public_host` at start (clients need to skip verification or trust the PEM it
    /// writes to `node.data_dir`). `potok all` turns this on. Off and no files: no TLS
    /// listener (edge: HTTPS and HTTP/3; origin: RTMPS).
    pub self_signed: bool,
}

/// The edge's in-memory media cache.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Most bytes of playlists, init segments, parts and segments held in memory.
    pub max_bytes: ByteSize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: ByteSize::mib(512),
        }
    }
}

/// Where an edge pulls media from.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URLs of origin HTTP APIs (`http://origin-1:8081`). Empty in `potok all` means
    /// the origin in the same process; required when the edge runs alone.
    pub origins: Vec<String>,
    /// Time allowed to open a TCP connection to an origin.
    pub connect_timeout: HumanDuration,
    /// Time allowed for an origin to answer a request once connected.
    pub read_timeout: HumanDuration,
    /// Time allowed for an origin to answer a request it holds on purpose (a blocking
    /// playlist reload, a preload-hinted part); the origin gives up after three target
    /// durations, so this should be longer.
    pub hold_timeout: HumanDuration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            origins: Vec::new(),
            connect_timeout: HumanDuration::secs(2),
            read_timeout: HumanDuration::secs(5),
            hold_timeout: HumanDuration::secs(10),
        }
    }
}

/// HMAC-SHA256 playback tokens: `?token=EXPIRES.SIGNATURE`, scoped to one stream.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningConfig {
    /// The shared HMAC key (at least 32 characters). Unset: no stream needs a token.
    pub key: Option<Secret>,
    /// Streams whose playback needs a token; `["*"]` for every stream.
    pub private_streams: Vec<String>,
}

/// The control-plane role.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// REST API, health and metrics.
    pub listen: ListenAddr,
    /// The database.
    pub database: DatabaseConfig,
    /// How often origins and edges heartbeat (told to them when they register).
    pub heartbeat_interval: HumanDuration,
    /// A node silent for this long is dead: its streams go to `error` and the scheduler
    /// stops picking it.
    pub node_timeout: HumanDuration,
    /// Failed logins and refused stream keys allowed per client address per minute; beyond
    /// it every attempt from that address is refused (429) until the minute has passed.
    /// Attempts are counted before they are judged, so parallel requests cannot pass it.
    pub auth_failures_per_minute: u32,
    /// Accounts created per client address per hour; beyond it sign-ups from that address
    /// get 429 until the hour has passed.
    pub signups_per_hour: u32,
    /// Password hashes (argon2id, 19 MiB each) computed at once; 0 means one per core.
    /// Logins and sign-ups beyond it wait in a queue.
    pub password_hash_concurrency: u32,
    /// Logins and sign-ups that may wait for a hashing slot; past it they are refused at
    /// once with 503 `SERVICE_BUSY` (memory stays bounded by the concurrency, whatever the
    /// load).
    pub password_hash_queue: u32,
    /// Chat and the real-time (WebSocket) gateway.
    pub chat: ChatConfig,
    /// Donations: the payment provider, shares, limits and fraud rules.
    pub payments: PaymentsConfig,
}

/// Chat rooms and the WebSocket gateway (`/api/v1/realtime`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// NATS server for cross-replica fan-out (`nats://127.0.0.1:4222`); JetStream must be on.
    /// Unset: the in-process bus (one control plane, as in `potok all`).
    pub nats_url: Option<String>,
    /// Longest message, in characters.
    pub max_message_chars: u32,
    /// Messages a user may send per 30 s in one room (Twitch: 20).
    pub user_messages_per_30s: u32,
    /// Messages a moderator, VIP or the channel's owner may send per 30 s (Twitch: 100).
    pub moderator_messages_per_30s: u32,
    /// The same text from the same user within this window is refused as a duplicate.
    pub duplicate_window: HumanDuration,
    /// Messages sent to a client when it joins a room.
    pub history_on_join: u32,
    /// How long messages stay stored.
    pub retention: HumanDuration,
    /// A user may edit a message this long after sending it.
    pub edit_window: HumanDuration,
    /// WebSocket connections per client address.
    pub max_connections_per_address: u32,
    /// Largest frame a client may send, in bytes.
    pub max_frame_bytes: u32,
    /// Frames a client may send per second (burst: twice that); a flood closes the socket.
    pub client_frames_per_second: u32,
    /// Frames queued for one client; a client that falls this far behind is disconnected
    /// ("slow consumer") so it never stalls a room.
    pub send_queue: u32,
    /// Browser origins (`https://potok.example`) allowed to open the socket; empty: only
    /// pages from the same host as the API.
    pub allowed_origins: Vec<String>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            nats_url: None,
            max_message_chars: 500,
            user_messages_per_30s: 20,
            moderator_messages_per_30s: 100,
            duplicate_window: HumanDuration::secs(30),
            history_on_join: 50,
            retention: HumanDuration::secs(30 * 24 * 3600),
            edit_window: HumanDuration::secs(120),
            max_connections_per_address: 20,
            max_frame_bytes: 4096,
            client_frames_per_second: 10,
            send_queue: 256,
            allowed_origins: Vec::new(),
        }
    }
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        ControlPlaneConfig {
            listen: any_ipv4(8090),
            database: DatabaseConfig::default(),
            heartbeat_interval: HumanDuration::secs(2),
            node_timeout: HumanDuration::secs(6),
            auth_failures_per_minute: 10,
            signups_per_hour: 20,
            password_hash_concurrency: 0,
            password_hash_queue: 64,
            chat: ChatConfig::default(),
            payments: PaymentsConfig::default(),
        }
    }
}

/// The control plane's database.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (embedded) or `postgres://user:password@host:port/db` (clustered).
    /// Unset means SQLite at `potok.db` inside `node.data_dir`.
    pub url: Option<DatabaseUrl>,
    /// Most pooled connections to the database.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: 16,
        }
    }
}

/// Trust between the nodes of a cluster.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Shared secret origins and edges present when they register with the control plane
    /// (at least 16 characters). Never printed.
    pub secret: Option<Secret>,
    /// Base URL of the control plane (`http://control:8090`) for origins and edges that run
    /// apart from it. When set, origins register, heartbeat and ask it to authorize every
    /// publish (instead of `origin.streams`), and edges ask it which origin holds a stream
    /// (instead of `edge.upstream.origins`). Unset in `potok all`.
    pub control_plane_url: Option<String>,
}

impl Config {
    /// The effective configuration as TOML, with every secret shown as `<redacted>`.
    pub fn to_redacted_toml(&self) -> String {
        // Serialization of these plain structs cannot fail: every map key is a string and
        // every value a TOML-representable type.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// A wildcard IPv4 listen address on `port`: the built-in defaults.
fn any_ipv4(port: u16) -> ListenAddr {
    ListenAddr(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
}

/// Deserializes a string, also accepting a bare number or boolean so that an environment
/// override like `POTOK_NODE__NAME=1234` works for a text field.
pub(crate) fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V)
}
