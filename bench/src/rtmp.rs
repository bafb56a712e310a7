//! An RTMP publisher for benchmarks: reads FLV from a source (ffmpeg's stdout) and publishes
//! every tag to several servers, recording when each video frame was written to each socket.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use potok_media::flv::{FlvReader, TagKind};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Mutex, watch};

/// When each video frame (by RTMP timestamp, ms) left for one server.
pub type SendTimes = Arc<std::sync::Mutex<HashMap<u32, Instant>>>;

struct Conn {
    session: ClientSession,
    write: OwnedWriteHalf,
}

impl Conn {
    async fn send(
        &mut self,
        results: Vec<ClientSessionResult>,
    ) -> anyhow::Result<Vec<ClientSessionEvent>> {
        let mut events = Vec::new();
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => self.write.write_all(&p.bytes).await?,
                ClientSessionResult::RaisedEvent(e) => events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(events)
    }
}

/// One server being published to.
pub struct Target {
    conn: Arc<Mutex<Conn>>,
    publishing: watch::Receiver<bool>,
    /// Video frame send times.
    pub sent: SendTimes,
}

impl Target {
    /// Connects, shakes hands, connects to `app` and asks to publish `key`.
    pub async fn connect(
        addr: std::net::SocketAddr,
        app: &str,
        key: &str,
    ) -> anyhow::Result<Target> {
        let mut socket = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        socket.set_nodelay(true)?;
        let mut hs = Handshake::new(PeerType::Client);
        socket
            .write_all(
                &hs.generate_outbound_p0_and_p1()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?,
            )
            .await?;
        let mut buf = vec![0u8; 64 * 1024];
        let leftover = loop {
            let n = socket.read(&mut buf).await?;
            if n == 0 {
                bail!("{addr} closed during the handshake");
            }
            match hs
                .process_bytes(&buf[..n])
                .map_err(|e| anyhow::anyhow!("{e:?}"))?
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
        let (read, write) = socket.into_split();
        let (session, initial) =
            ClientSession::new(ClientSessionConfig::new()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let conn = Arc::new(Mutex::new(Conn { session, write }));
        {
            let mut c = conn.lock().await;
            c.send(initial).await?;
            let connect = c
                .session
                .request_connection(app.to_owned())
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            c.send(vec![connect]).await?;
        }
        let (ready_tx, publishing) = watch::channel(false);
        tokio::spawn(reader(
            read,
            Arc::clone(&conn),
            key.to_owned(),
            leftover,
            ready_tx,
        ));
        Ok(Target {
            conn,
            publishing,
            sent: Arc::default(),
        })
    }

    /// Waits until the server accepted the publish.
    pub async fn ready(&mut self) -> anyhow::Result<()> {
        self.publishing
            .wait_for(|p| *p)
            .await
            .context("publish was not accepted")?;
        Ok(())
    }

    /// Publishes one FLV tag body (video, audio; script tags are skipped) at `ts` ms.
    pub async fn tag(&self, kind: TagKind, ts: u32, body: Bytes) -> anyhow::Result<()> {
        let frame_header = [
            body.first().copied().unwrap_or(0),
            body.get(1).copied().unwrap_or(0),
        ];
        let mut c = self.conn.lock().await;
        let t = RtmpTimestamp::new(ts);
        let r = match kind {
            TagKind::Video => c.session.publish_video_data(body, t, false),
            TagKind::Audio => c.session.publish_audio_data(body, t, false),
            TagKind::Script => return Ok(()),
        }
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        c.send(vec![r]).await?;
        drop(c);
        // Coded frames only: the sequence header is a video tag too (AVC packet type 0).
        let coded_frame = body_is_frame(kind, &frame_header);
        if coded_frame {
            self.sent
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .insert(ts, Instant::now());
        }
        Ok(())
    }
}

/// Whether a tag is an AVC coded frame (not a sequence header or end of sequence).
fn body_is_frame(kind: TagKind, header: &[u8; 2]) -> bool {
    kind == TagKind::Video && header[0] & 0x0f == 7 && header[1] == 1
}

async fn reader(
    mut read: tokio::net::tcp::OwnedReadHalf,
    conn: Arc<Mutex<Conn>>,
    key: String,
    leftover: Vec<u8>,
    ready: watch::Sender<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending = leftover;
    loop {
        if !pending.is_empty() {
            let mut c = conn.lock().await;
            let Ok(results) = c.session.handle_input(&pending) else {
                return;
            };
            let Ok(events) = c.send(results).await else {
                return;
            };
            for e in events {
                match e {
                    ClientSessionEvent::ConnectionRequestAccepted => {
                        let Ok(r) = c
                            .session
                            .request_publishing(key.clone(), PublishRequestType::Live)
                        else {
                            return;
                        };
                        if c.send(vec![r]).await.is_err() {
                            return;
                        }
                    }
                    ClientSessionEvent::PublishRequestAccepted => {
                        let _ = ready.send(true);
                    }
                    _ => {}
                }
            }
            pending.clear();
        }
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

/// Forwards every FLV tag from `source` to every target until the source ends.
pub async fn pump(mut source: impl AsyncRead + Unpin, targets: &[Target]) -> anyhow::Result<()> {
    let mut reader = FlvReader::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = source.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        reader.push(&buf[..n]);
        while let Some(tag) = reader.next_tag()? {
            for t in targets {
                t.tag(tag.kind, tag.timestamp_ms, tag.body.clone()).await?;
            }
        }
    }
}
