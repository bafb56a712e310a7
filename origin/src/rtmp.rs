//! The RTMP ingest listener: handshake, `connect` to the `live` application, `publish` with
//! a stream key, then audio/video messages into a [`PublishSession`].
//!
//! Built on `rml_rtmp`'s sans-IO handshake and server session; this module only moves bytes
//! and decides. Limits: a connection permit is taken before `accept`, and one address may
//! hold at most `origin.max_ingest_connections_per_address`; the TLS and RTMP handshakes,
//! `connect` and an accepted `publish` must all happen within one `origin.ingest_timeout`
//! from the accept (a client trickling a byte at a time cannot stretch it), and afterwards
//! every read and write must progress within it. Before a publish is accepted, messages and
//! chunk sizes are limited to 64 KiB, afterwards to `origin.max_rtmp_message_bytes`
//! ([`guard`]), so an unauthenticated connection cannot make the origin buffer megabytes.
//! Malformed input closes the connection, logged (rate-limited) with the peer, never the key.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
    StreamMetadata as RtmpMetadata,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use potok_service::http::accept_loop;

use crate::auth::{AuthError, Grant, PublishAuth, Request};
use crate::metrics::OriginMetrics;
use crate::streams::{PublishError, PublishSession, StreamMetadata, Streams};

pub(crate) struct Ingest {
    pub(crate) streams: Arc<Streams>,
    pub(crate) auth: Arc<dyn PublishAuth>,
    pub(crate) metrics: OriginMetrics,
    pub(crate) timeout: Duration,
    /// Largest message after a publish is accepted.
    pub(crate) max_message: u32,
    pub(crate) max_connections: usize,
    /// Open connections per client address.
    pub(crate) per_address: potok_service::http::PerAddress,
    /// SRT passphrases of streams that have their own.
    pub(crate) srt_passphrases: std::collections::HashMap<String, potok_config::Secret>,
    /// Highest SRT input rate, bits per second over 5 s.
    pub(crate) srt_max_bps: u64,
    /// Most streams published at once (0: no limit).
    pub(crate) max_streams: u32,
    /// Datagrams on the SRT port that were not SRT packets.
    pub(crate) srt_malformed: prometheus::IntCounter,
}

impl Ingest {
    /// Decides a publish from any protocol: a full origin (`origin.max_streams`) refuses
    /// before the key is even looked at; otherwise the authorizer answers.
    pub(crate) async fn authorize(&self, req: Request<'_>) -> Result<Grant, AuthError> {
        if self.max_streams > 0 && self.streams.publishing() >= self.max_streams as usize {
            return Err(AuthError::AtCapacity);
        }
        self.auth.authorize(req).await
    }
}

/// What a refused publish tells the publisher.
pub(crate) fn refusal(e: &AuthError) -> &'static str {
    match e {
        AuthError::UnknownKey => "stream key not accepted",
        AuthError::UnknownApp(_) => "unknown application: use rtmp://HOST/live",
        AuthError::RateLimited => "too many refused attempts; retry later",
        AuthError::AtCapacity => "this server is full; ask for another ingest URL",
        AuthError::AlreadyLive => "this stream is already being published",
        AuthError::Unavailable(_) => "cannot authorize now; retry shortly",
        AuthError::Reserved => "this stream name belongs to the server's configuration",
    }
}

pub(crate) async fn serve(
    listener: TcpListener,
    ingest: Arc<Ingest>,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let scheme = if tls.is_some() { "rtmps" } else { "rtmp" };
    accept_loop(
        &listener,
        ingest.max_connections,
        0,
        &ingest.per_address,
        &shutdown,
        |socket, peer, permit| {
            let ingest = Arc::clone(&ingest);
            let shutdown = shutdown.clone();
            let tls = tls.clone();
            tokio::spawn(
                async move {
                    ingest.metrics.ingest_connections.inc();
                    let client = Some(peer.ip());
                    // One deadline for everything before publishing, from the accept.
                    let deadline = Instant::now() + ingest.timeout;
                    let result = match tls {
                        None => {
                            connection(socket, &ingest, shutdown, client, "rtmp", deadline).await
                        }
                        Some(acceptor) => {
                            match tokio::time::timeout_at(deadline, acceptor.accept(socket)).await {
                                Ok(Ok(tls_stream)) => {
                                    connection(
                                        tls_stream, &ingest, shutdown, client, "rtmps", deadline,
                                    )
                                    .await
                                }
                                Ok(Err(e)) => Err(RtmpError::Io(e)),
                                Err(_) => Err(RtmpError::Deadline(ingest.timeout)),
                            }
                        }
                    };
                    match result {
                        Ok(()) => debug!("connection closed"),
                        Err(e) => closed_with_error(&e),
                    }
                    ingest.metrics.ingest_connections.dec();
                    drop(permit);
                }
                .instrument(info_span!("rtmp", %peer, scheme)),
            );
        },
    )
    .await;
    info!(scheme, "RTMP listener stopped");
}

/// Logs a connection that ended with an error. Any client can open and drop connections at
/// will, so at most 20 such lines per 10 s are written; each says how many were left out
/// since the previous one.
fn closed_with_error(e: &RtmpError) {
    static LINES: std::sync::LazyLock<potok_service::telemetry::LogLimiter> =
        std::sync::LazyLock::new(|| {
            potok_service::telemetry::LogLimiter::new(Duration::from_secs(10), 20)
        });
    match e {
        // The peer went away or was too slow: routine on a public port.
        RtmpError::Io(_) | RtmpError::Timeout(_) | RtmpError::Deadline(_) => {
            debug!(error = %e, "connection closed");
        }
        _ => {
            if let Some(suppressed) = LINES.check(std::time::Instant::now()) {
                warn!(error = %e, suppressed, "connection closed");
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RtmpError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("no data for {0:?}")]
    Timeout(Duration),
    #[error("did not start publishing within {0:?} of connecting")]
    Deadline(Duration),
    #[error("refused chunk stream: {0}")]
    Limit(#[from] guard::GuardError),
    #[error("handshake: {0:?}")]
    Handshake(rml_rtmp::handshake::HandshakeError),
    #[error("RTMP session: {0}")]
    Session(String),
    #[error("publish refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Media(String),
}

/// Until a publish is accepted, everything must happen before the connection's `deadline`;
/// afterwards each read or write gets `origin.ingest_timeout` of its own.
fn phase_deadline(publishing: bool, deadline: Instant, timeout: Duration) -> Instant {
    if publishing {
        Instant::now() + timeout
    } else {
        deadline
    }
}

/// Runs `f` until `at`, then gives up with the error for the connection's phase.
async fn until<T>(
    at: Instant,
    publishing: bool,
    timeout: Duration,
    f: impl Future<Output = Result<T, RtmpError>>,
) -> Result<T, RtmpError> {
    match tokio::time::timeout_at(at, f).await {
        Ok(r) => r,
        Err(_) if publishing => Err(RtmpError::Timeout(timeout)),
        Err(_) => Err(RtmpError::Deadline(timeout)),
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: S,
    ingest: &Ingest,
    shutdown: CancellationToken,
    client: Option<std::net::IpAddr>,
    protocol: &'static str,
    deadline: Instant,
) -> Result<(), RtmpError> {
    let mut buf = vec![0u8; 64 * 1024];
    let timeout = ingest.timeout;

    // Handshake, within the connection's deadline.
    let mut handshake = Handshake::new(PeerType::Server);
    let leftover = until(deadline, false, timeout, async {
        loop {
            let n = socket.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            match handshake
                .process_bytes(&buf[..n])
                .map_err(RtmpError::Handshake)?
            {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    socket.write_all(&response_bytes).await?
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    socket.write_all(&response_bytes).await?;
                    return Ok(Some(remaining_bytes));
                }
            }
        }
    })
    .await?;
    let Some(leftover) = leftover else {
        return Ok(());
    };

    let (mut session, initial) = ServerSession::new(ServerSessionConfig::new())
        .map_err(|e| RtmpError::Session(e.to_string()))?;
    let mut guard = guard::ChunkGuard::new();
    let mut conn = Conn {
        ingest,
        publish: None,
        close: None,
        client,
        protocol,
    };
    until(
        deadline,
        false,
        timeout,
        conn.handle(&mut session, &mut socket, initial),
    )
    .await?;
    if !leftover.is_empty() {
        guard.feed(&leftover)?;
        let results = session
            .handle_input(&leftover)
            .map_err(|e| RtmpError::Session(e.to_string()))?;
        until(
            deadline,
            false,
            timeout,
            conn.handle(&mut session, &mut socket, results),
        )
        .await?;
    }

    while conn.close.is_none() {
        let publishing = conn.publish.is_some();
        if publishing {
            guard.set_limit(ingest.max_message);
        }
        let kick = conn.publish.as_ref().map(PublishSession::kicked);
        let kicked = async {
            match &kick {
                Some(k) => k.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let at = phase_deadline(publishing, deadline, timeout);
        let n = tokio::select! {
            () = shutdown.cancelled() => break,
            () = kicked => {
                info!("publisher disconnected: the stream was stopped");
                break;
            }
            n = until(at, publishing, timeout, async { Ok(socket.read(&mut buf).await?) }) => n?,
        };
        if n == 0 {
            break;
        }
        guard.feed(&buf[..n])?;
        let results = session
            .handle_input(&buf[..n])
            .map_err(|e| RtmpError::Session(e.to_string()))?;
        let at = phase_deadline(publishing, deadline, timeout);
        until(
            at,
            publishing,
            timeout,
            conn.handle(&mut session, &mut socket, results),
        )
        .await?;
    }
    let _ = tokio::time::timeout(timeout, socket.flush()).await;
    match conn.close {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

struct Conn<'a> {
    ingest: &'a Ingest,
    publish: Option<PublishSession>,
    close: Option<RtmpError>,
    client: Option<std::net::IpAddr>,
    protocol: &'static str,
}

impl Conn<'_> {
    async fn handle<S: AsyncWrite + Unpin>(
        &mut self,
        session: &mut ServerSession,
        socket: &mut S,
        results: Vec<ServerSessionResult>,
    ) -> Result<(), RtmpError> {
        let mut queue = std::collections::VecDeque::from(results);
        while let Some(result) = queue.pop_front() {
            match result {
                ServerSessionResult::OutboundResponse(packet) => {
                    socket.write_all(&packet.bytes).await?
                }
                ServerSessionResult::RaisedEvent(event) => {
                    let more = self
                        .event(session, event)
                        .await
                        .map_err(|e| RtmpError::Session(e.to_string()))?;
                    // Responses to this event go out before anything that followed it.
                    for r in more.into_iter().rev() {
                        queue.push_front(r);
                    }
                }
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
            if self.close.is_some() {
                // Send what is queued (the refusal), then stop reading.
                while let Some(ServerSessionResult::OutboundResponse(p)) = queue.pop_front() {
                    socket.write_all(&p.bytes).await?;
                }
                break;
            }
        }
        Ok(())
    }

    async fn event(
        &mut self,
        session: &mut ServerSession,
        event: ServerSessionEvent,
    ) -> Result<Vec<ServerSessionResult>, rml_rtmp::sessions::ServerSessionError> {
        match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                if app_name.trim_end_matches('/') == "live" {
                    session.accept_request(request_id)
                } else {
                    self.close = Some(RtmpError::Refused(format!(
                        "application {app_name:?} does not exist"
                    )));
                    session.reject_request(
                        request_id,
                        "NetConnection.Connect.Rejected",
                        "unknown application: use rtmp://HOST/live",
                    )
                }
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                app_name,
                stream_key,
                ..
            } => {
                if self.publish.is_some() {
                    return session.reject_request(
                        request_id,
                        "NetStream.Publish.BadName",
                        "this connection is already publishing",
                    );
                }
                // OBS and others may append a query string to the key.
                let key = stream_key.split('?').next().unwrap_or_default();
                let authorized = self
                    .ingest
                    .authorize(Request {
                        app: &app_name,
                        key,
                        protocol: self.protocol,
                        client: self.client,
                    })
                    .await;
                let grant = match authorized {
                    Ok(grant) => grant,
                    Err(e) => {
                        self.ingest.metrics.refused_publishes.inc();
                        let description = refusal(&e);
                        self.close = Some(RtmpError::Refused(e.to_string()));
                        return session.reject_request(
                            request_id,
                            "NetStream.Publish.BadName",
                            description,
                        );
                    }
                };
                match self.ingest.streams.start_publish(&grant, self.protocol) {
                    Ok(publish) => {
                        info!(stream = %publish.name(), "publishing");
                        self.publish = Some(publish);
                        session.accept_request(request_id)
                    }
                    Err(PublishError::AlreadyLive(n)) => {
                        self.ingest.metrics.refused_publishes.inc();
                        self.close = Some(RtmpError::Refused(format!(
                            "stream {n:?} is already being published"
                        )));
                        session.reject_request(
                            request_id,
                            "NetStream.Publish.BadName",
                            "this stream is already being published",
                        )
                    }
                }
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                if let Some(p) = self.publish.as_mut() {
                    p.metadata(convert_metadata(&metadata));
                }
                Ok(Vec::new())
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                self.media(|p| p.video(timestamp.value, data));
                Ok(Vec::new())
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                self.media(|p| p.audio(timestamp.value, data));
                Ok(Vec::new())
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                self.publish = None;
                Ok(Vec::new())
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => session.reject_request(
                request_id,
                "NetStream.Play.Failed",
                "RTMP playback is not offered: play the HLS stream",
            ),
            _ => Ok(Vec::new()),
        }
    }

    fn media(
        &mut self,
        f: impl FnOnce(&mut PublishSession) -> Result<(), crate::streams::IngestError>,
    ) {
        if let Some(p) = self.publish.as_mut()
            && let Err(e) = f(p)
        {
            self.close = Some(RtmpError::Media(e.to_string()));
        }
    }
}

fn convert_metadata(m: &RtmpMetadata) -> StreamMetadata {
    StreamMetadata {
        width: m.video_width,
        height: m.video_height,
        frame_rate: m
            .video_frame_rate
            .map(f64::from)
            .filter(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0),
        video_kbps: m.video_bitrate_kbps,
        audio_kbps: m.audio_bitrate_kbps,
        encoder: m.encoder.clone(),
    }
}

/// A sans-IO watcher of the RTMP chunk stream that sees every byte before `rml_rtmp` does
/// and refuses, before anything is buffered, a message longer than the connection may send
/// or a chunk size above it. `rml_rtmp` reserves a message's whole declared length (up to
/// 16 MiB) as soon as its first chunk arrives and accepts any chunk size, so without this a
/// client that never authenticates could make the origin hold ~26 MB per connection.
///
/// It follows the chunk headers exactly as `rml_rtmp` 0.8 parses them (including its single
/// partial-message buffer shared by all chunk streams) and tracks `SetChunkSize` messages,
/// so both stay at the same byte. Before a publish is accepted the limit is
/// [`guard::PRE_AUTH_MAX`]; afterwards `origin.max_rtmp_message_bytes`.
pub(crate) mod guard {
    use std::collections::HashMap;

    /// Largest message and chunk size before a publish is accepted: `connect`,
    /// `createStream` and `publish` of real encoders are a few hundred bytes.
    pub(crate) const PRE_AUTH_MAX: u32 = 64 * 1024;

    /// Most chunk streams one connection may use (encoders use a handful).
    const MAX_CHUNK_STREAMS: usize = 64;

    /// Why the stream was refused.
    #[derive(Debug, thiserror::Error, PartialEq, Eq)]
    pub(crate) enum GuardError {
        #[error("message of {len} bytes exceeds the limit of {max}")]
        MessageTooLong { len: u32, max: u32 },
        #[error("chunk size {size} outside 1..={max}")]
        ChunkSize { size: u32, max: u32 },
        #[error("chunk continues stream {0} that has no previous header")]
        NoPreviousHeader(u32),
        #[error("chunk header declares a message shorter than the part already received")]
        Inconsistent,
        #[error("more than {MAX_CHUNK_STREAMS} chunk streams")]
        TooManyChunkStreams,
    }

    #[derive(Clone, Copy, Default)]
    struct Header {
        len: u32,
        type_id: u8,
        ts_field: u32,
    }

    /// See the module documentation.
    pub(crate) struct ChunkGuard {
        max: u32,
        chunk_size: u32,
        headers: HashMap<u32, Header>,
        /// Bytes of the message in progress (rml_rtmp keeps one, whatever the chunk stream).
        have: u32,
        /// Header bytes collected so far (at most 3 + 11 + 4).
        head: Vec<u8>,
        /// Payload bytes left in the current chunk, once its header is complete.
        left: Option<u32>,
        /// The current chunk's stream and header.
        current: (u32, Header),
        /// First bytes of a `SetChunkSize` message in progress.
        set_chunk: Vec<u8>,
    }

    impl ChunkGuard {
        pub(crate) fn new() -> Self {
            ChunkGuard {
                max: PRE_AUTH_MAX,
                chunk_size: 128,
                headers: HashMap::new(),
                have: 0,
                head: Vec::with_capacity(18),
                left: None,
                current: (0, Header::default()),
                set_chunk: Vec::with_capacity(4),
            }
        }

        /// Allows messages (and chunk sizes) up to `max` from now on.
        pub(crate) fn set_limit(&mut self, max: u32) {
            self.max = max;
        }

        /// Checks `bytes`, the next bytes of the chunk stream.
        pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), GuardError> {
            while !bytes.is_empty() {
                match self.left {
                    None => {
                        let b = bytes[0];
                        bytes = &bytes[1..];
                        self.head.push(b);
                        self.try_header()?;
                    }
                    Some(left) => {
                        let n = (left as usize).min(bytes.len());
                        let (_, h) = self.current;
                        if h.type_id == 1 && self.set_chunk.len() < 4 {
                            let want = 4 - self.set_chunk.len();
                            self.set_chunk.extend_from_slice(&bytes[..n.min(want)]);
                        }
                        bytes = &bytes[n..];
                        // n <= left <= u32::MAX
                        let left = left - n as u32;
                        self.left = Some(left);
                        if left == 0 {
                            self.end_chunk()?;
                        }
                    }
                }
            }
            Ok(())
        }

        /// Parses the collected header once it is complete.
        fn try_header(&mut self) -> Result<(), GuardError> {
            let h = &self.head;
            let fmt = h[0] >> 6;
            let basic = match h[0] & 0x3f {
                0 => 2,
                1 => 3,
                _ => 1,
            };
            let msg = [11, 7, 3, 0][usize::from(fmt)];
            if h.len() < basic + msg {
                return Ok(());
            }
            let csid = match basic {
                2 => u32::from(h[1]) + 64,
                3 => u32::from(h[2]) * 256 + u32::from(h[1]) + 64,
                _ => u32::from(h[0] & 0x3f),
            };
            let u24 = |i: usize| u32::from_be_bytes([0, h[i], h[i + 1], h[i + 2]]);
            let mut header = if fmt == 0 {
                Header::default()
            } else {
                *self
                    .headers
                    .get(&csid)
                    .ok_or(GuardError::NoPreviousHeader(csid))?
            };
            if fmt <= 2 {
                header.ts_field = u24(basic);
            }
            if fmt <= 1 {
                header.len = u24(basic + 3);
                header.type_id = h[basic + 6];
            }
            let extended = if header.ts_field >= 0xFF_FFFF { 4 } else { 0 };
            if h.len() < basic + msg + extended {
                return Ok(());
            }
            if header.len > self.max {
                return Err(GuardError::MessageTooLong {
                    len: header.len,
                    max: self.max,
                });
            }
            if header.len < self.have {
                return Err(GuardError::Inconsistent);
            }
            if !self.headers.contains_key(&csid) && self.headers.len() >= MAX_CHUNK_STREAMS {
                return Err(GuardError::TooManyChunkStreams);
            }
            self.head.clear();
            self.current = (csid, header);
            let left = (header.len - self.have).min(self.chunk_size);
            self.left = Some(left);
            if left == 0 {
                self.end_chunk()?;
            }
            Ok(())
        }

        fn end_chunk(&mut self) -> Result<(), GuardError> {
            let (csid, header) = self.current;
            let chunk = (header.len - self.have).min(self.chunk_size);
            self.have += chunk;
            self.headers.insert(csid, header);
            self.left = None;
            if self.have == header.len {
                self.have = 0;
                if header.type_id == 1 {
                    let mut b = [0u8; 4];
                    b[..self.set_chunk.len()].copy_from_slice(&self.set_chunk);
                    self.set_chunk.clear();
                    let size = u32::from_be_bytes(b);
                    if size == 0 || size > self.max {
                        return Err(GuardError::ChunkSize {
                            size,
                            max: self.max,
                        });
                    }
                    self.chunk_size = size;
                }
            }
            Ok(())
        }
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used)]

        use bytes::Bytes;
        use rml_rtmp::chunk_io::ChunkSerializer;
        use rml_rtmp::messages::MessagePayload;
        use rml_rtmp::time::RtmpTimestamp;

        use super::*;

        fn message(type_id: u8, csid_stream: u32, ts: u32, data: Vec<u8>) -> MessagePayload {
            MessagePayload {
                timestamp: RtmpTimestamp::new(ts),
                message_stream_id: csid_stream,
                type_id,
                data: Bytes::from(data),
            }
        }

        proptest::proptest! {
            /// Any bytes, cut anywhere: the guard answers or refuses, never panics, and what
            /// it keeps stays bounded (header bytes, SetChunkSize bytes, chunk streams).
            #[test]
            fn arbitrary_bytes_never_panic_and_state_stays_bounded(
                pieces in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0..40)
            ) {
                let mut g = ChunkGuard::new();
                for piece in &pieces {
                    if g.feed(piece).is_err() {
                        break;
                    }
                    proptest::prop_assert!(g.head.len() <= 18);
                    proptest::prop_assert!(g.set_chunk.len() <= 4);
                    proptest::prop_assert!(g.headers.len() <= MAX_CHUNK_STREAMS);
                    proptest::prop_assert!(g.have <= g.max);
                }
            }
        }

        #[test]
        fn follows_a_real_chunk_stream_through_chunk_size_changes_and_split_messages() {
            let mut ser = ChunkSerializer::new();
            let mut wire = Vec::new();
            let mut push = |ser: &mut ChunkSerializer, m: &MessagePayload| {
                wire.extend(ser.serialize(m, false, false).unwrap().bytes);
            };
            // 1000 bytes at the initial chunk size of 128, then a SetChunkSize to 4096, then
            // messages of every size, one with an extended timestamp.
            push(&mut ser, &message(20, 0, 0, vec![7; 1000]));
            let set = message(1, 0, 0, 4096u32.to_be_bytes().to_vec());
            push(&mut ser, &set);
            ser.set_max_chunk_size(4096, RtmpTimestamp::new(0)).unwrap();
            for (i, len) in [0usize, 1, 4095, 4096, 4097, 60_000]
                .into_iter()
                .enumerate()
            {
                push(&mut ser, &message(9, 1, 40 * i as u32, vec![1; len]));
            }
            push(&mut ser, &message(9, 1, 0x0100_0000, vec![2; 9000]));
            let mut g = ChunkGuard::new();
            // Byte by byte and all at once give the same answer.
            for b in &wire {
                g.feed(std::slice::from_ref(b)).unwrap();
            }
            let mut g = ChunkGuard::new();
            g.feed(&wire).unwrap();
            assert_eq!(g.chunk_size, 4096);
            assert_eq!(g.have, 0);
            assert!(g.left.is_none() && g.head.is_empty());
        }

        #[test]
        fn a_long_message_is_refused_at_its_header_until_the_limit_is_raised() {
            let mut ser = ChunkSerializer::new();
            let big = message(9, 1, 0, vec![0; 200_000]);
            let wire = ser.serialize(&big, false, false).unwrap().bytes;
            let mut g = ChunkGuard::new();
            // Refused on the 12-byte header, before any payload is taken.
            assert_eq!(
                g.feed(&wire[..12]),
                Err(GuardError::MessageTooLong {
                    len: 200_000,
                    max: PRE_AUTH_MAX
                })
            );
            let mut g = ChunkGuard::new();
            g.set_limit(8 << 20);
            g.feed(&wire).unwrap();
        }

        #[test]
        fn a_huge_chunk_size_before_publishing_is_refused() {
            let mut ser = ChunkSerializer::new();
            let set = message(1, 0, 0, (16u32 << 20).to_be_bytes().to_vec());
            let wire = ser.serialize(&set, false, false).unwrap().bytes;
            assert!(matches!(
                ChunkGuard::new().feed(&wire),
                Err(GuardError::ChunkSize { .. })
            ));
        }

        #[test]
        fn inconsistent_headers_are_refused_instead_of_confusing_rml_rtmp() {
            // fmt 0 on csid 3, 300-byte message: one 128-byte chunk arrives...
            let mut wire = vec![0x03, 0, 0, 0, 0, 0x01, 0x2c, 9, 1, 0, 0, 0];
            wire.extend([0u8; 128]);
            // ...then csid 4 starts a 10-byte message while 128 bytes are pending.
            wire.extend([0x04, 0, 0, 0, 0, 0, 10, 9, 1, 0, 0, 0]);
            assert_eq!(ChunkGuard::new().feed(&wire), Err(GuardError::Inconsistent));
            // A continuation on a chunk stream never opened.
            assert_eq!(
                ChunkGuard::new().feed(&[0xC5]),
                Err(GuardError::NoPreviousHeader(5))
            );
        }
    }
}
