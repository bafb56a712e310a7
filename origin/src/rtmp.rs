//! The RTMP ingest listener: handshake, `connect` to the `live` application, `publish` with
//! a stream key, then audio/video messages into a [`PublishSession`].
//!
//! Built on `rml_rtmp`'s sans-IO handshake and server session; this module only moves bytes
//! and decides. Limits: a connection permit is taken before `accept`; the handshake and the
//! publish request must come within `origin.ingest_timeout`, and so must every read after
//! that; malformed input closes the connection with a log line naming the peer, never the key.

use std::sync::Arc;
use std::time::Duration;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
    StreamMetadata as RtmpMetadata,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
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
    pub(crate) max_connections: usize,
    /// Open connections per client address.
    pub(crate) per_address: potok_service::http::PerAddress,
    /// SRT passphrases of streams that have their own.
    pub(crate) srt_passphrases: std::collections::HashMap<String, potok_config::Secret>,
    /// Highest SRT input rate, bits per second over 5 s.
    pub(crate) srt_max_bps: u64,
    /// Most streams published at once (0: no limit).
    pub(crate) max_streams: u32,
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
                    let result = match tls {
                        None => connection(socket, &ingest, shutdown, client, "rtmp").await,
                        Some(acceptor) => {
                            match tokio::time::timeout(ingest.timeout, acceptor.accept(socket))
                                .await
                            {
                                Ok(Ok(tls_stream)) => {
                                    connection(tls_stream, &ingest, shutdown, client, "rtmps").await
                                }
                                Ok(Err(e)) => Err(RtmpError::Io(e)),
                                Err(_) => Err(RtmpError::Timeout(ingest.timeout)),
                            }
                        }
                    };
                    match result {
                        Ok(()) => debug!("connection closed"),
                        Err(e) => warn!(error = %e, "connection closed"),
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

#[derive(Debug, thiserror::Error)]
enum RtmpError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("no data for {0:?}")]
    Timeout(Duration),
    #[error("handshake: {0:?}")]
    Handshake(rml_rtmp::handshake::HandshakeError),
    #[error("RTMP session: {0}")]
    Session(String),
    #[error("publish refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Media(String),
}

async fn read_some<S: AsyncRead + Unpin>(
    socket: &mut S,
    buf: &mut [u8],
    timeout: Duration,
) -> Result<usize, RtmpError> {
    match tokio::time::timeout(timeout, socket.read(buf)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(RtmpError::Timeout(timeout)),
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: S,
    ingest: &Ingest,
    shutdown: CancellationToken,
    client: Option<std::net::IpAddr>,
    protocol: &'static str,
) -> Result<(), RtmpError> {
    let mut buf = vec![0u8; 64 * 1024];

    // Handshake.
    let mut handshake = Handshake::new(PeerType::Server);
    let leftover = loop {
        let n = read_some(&mut socket, &mut buf, ingest.timeout).await?;
        if n == 0 {
            return Ok(());
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
                break remaining_bytes;
            }
        }
    };

    let (mut session, initial) = ServerSession::new(ServerSessionConfig::new())
        .map_err(|e| RtmpError::Session(e.to_string()))?;
    let mut conn = Conn {
        ingest,
        publish: None,
        close: None,
        client,
        protocol,
    };
    conn.handle(&mut session, &mut socket, initial).await?;
    if !leftover.is_empty() {
        let results = session
            .handle_input(&leftover)
            .map_err(|e| RtmpError::Session(e.to_string()))?;
        conn.handle(&mut session, &mut socket, results).await?;
    }

    while conn.close.is_none() {
        let kick = conn.publish.as_ref().map(PublishSession::kicked);
        let kicked = async {
            match &kick {
                Some(k) => k.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let n = tokio::select! {
            () = shutdown.cancelled() => break,
            () = kicked => {
                info!("publisher disconnected: the stream was stopped");
                break;
            }
            n = read_some(&mut socket, &mut buf, ingest.timeout) => n?,
        };
        if n == 0 {
            break;
        }
        let results = session
            .handle_input(&buf[..n])
            .map_err(|e| RtmpError::Session(e.to_string()))?;
        conn.handle(&mut session, &mut socket, results).await?;
    }
    let _ = socket.flush().await;
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
