//! `bench chat`: N WebSocket receivers in one chat room and one sender writing M messages per
//! second into it, against a Potok control plane and against a Node.js broadcast server on the
//! npm `ws` package (`bench/node/ws-broadcast.mjs`), each in its own process; this process is
//! the load generator.
//!
//! The sender puts its send time (Unix microseconds) in every message's text; each receiver
//! parses the event frame and takes receive time minus send time (one machine, one clock).
//! Memory is the server's resident set with N idle subscribed sockets minus before they
//! connected, over N. Potok stores and checks each message in SQLite before fanning it out;
//! the reference only relays.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use potok_config::{Config, HumanDuration, ListenAddr, Role};
use potok_service::{CancellationToken, Metrics, RoleContext};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};

/// The streamer whose room is used; it sends into its own room (owners get the moderator
/// flood limit).
const STREAMER: &str = "benchroom";
const PASSWORD: &str = "bench-password-0123";
/// Sockets connecting at once.
const CONNECT_CONCURRENCY: usize = 256;
/// Source addresses the receivers spread over (127.0.0.2 ...), so that ephemeral ports are
/// not all taken from one address.
const SOURCE_ADDRESSES: usize = 100;
/// Not counted: the first second of sending.
const WARMUP: Duration = Duration::from_secs(1);
/// After sending stops, how long deliveries of the measured messages may still arrive.
const DRAIN: Duration = Duration::from_secs(5);

/// What one run does.
#[derive(Clone, Debug)]
pub struct Options {
    /// Receiving sockets.
    pub clients: usize,
    /// Messages per second in.
    pub rate: u32,
    /// Seconds measured (after a 1 s warm-up).
    pub seconds: u64,
}

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The Potok control plane (`bench chat-server`).
    Potok,
    /// `bench/node/ws-broadcast.mjs`.
    Reference,
}

/// One run's result.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Receivers subscribed.
    pub connected: usize,
    /// Messages sent in the measured window / seconds.
    pub sent_per_sec: f64,
    /// Messages acknowledged (whole run).
    pub acked: u64,
    /// Messages refused (whole run), and the first refusal.
    pub refused: u64,
    /// The first refusal's frame.
    pub first_refusal: Option<String>,
    /// Frames received by the receivers inside the measured window / seconds.
    pub deliveries_per_sec: f64,
    /// Of the messages sent in the window: deliveries seen / (receivers x messages).
    pub delivered_fraction: f64,
    /// Send-to-receive latency of the messages sent in the window, milliseconds; messages not
    /// delivered within 5 s after sending stopped count as infinitely late.
    pub p50_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Server RSS growth per idle subscribed socket, KiB.
    pub kib_per_idle: f64,
    /// Receivers whose socket closed during the run (a slow-consumer cut, an error).
    pub closed: u64,
    /// The server's process id (for `perf record -p`).
    pub server_pid: u32,
}

// ---------------------------------------------------------------- the Potok server process

/// `bench chat-server`: a control plane on 127.0.0.1 (a free port) with SQLite in
/// `data_dir` and chat limits that let one sender write M messages per second to N sockets
/// from one address. Prints `listening ADDR`; serves until stdin closes.
pub async fn serve(data_dir: PathBuf) -> anyhow::Result<()> {
    let mut config = Config::default();
    config.node.data_dir = data_dir;
    config.control_plane.listen = ListenAddr(SocketAddr::from(([127, 0, 0, 1], 0)));
    // Every load client comes from 127.0.0.0/8: no per-address limits, room for N sockets.
    config.http.max_connections = 100_000;
    config.http.max_connections_per_address = 0;
    config.http.idle_timeout = HumanDuration::secs(600);
    let chat = &mut config.control_plane.chat;
    chat.max_connections_per_address = 100_000;
    chat.moderator_messages_per_30s = 10_000_000;
    chat.client_frames_per_second = 100_000;
    config
        .validate(&[Role::ControlPlane])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let shutdown = CancellationToken::new();
    let ctx = RoleContext {
        metrics: Metrics::new(),
        shutdown: shutdown.clone(),
        readiness_timeout: Duration::from_secs(2),
    };
    let server = potok_control_plane::bind(&config, &ctx).await?;
    let mut out = tokio::io::stdout();
    out.write_all(format!("listening {}\n", server.local_addr()).as_bytes())
        .await?;
    out.flush().await?;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
        stop.cancel();
    });
    server.run(shutdown).await;
    Ok(())
}

/// A server child process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    pid: u32,
    _data: Option<tempfile::TempDir>,
}

async fn listening(child: &mut Child) -> anyhow::Result<SocketAddr> {
    let stdout = child.stdout.take().context("server stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("the server did not start within 30 s")??
        .context("the server exited before listening")?;
    let addr = line
        .strip_prefix("listening ")
        .with_context(|| format!("unexpected first line from the server: {line}"))?;
    Ok(addr.trim().parse()?)
}

async fn start(target: Target, root: &Path) -> anyhow::Result<Server> {
    let (mut cmd, data) = match target {
        Target::Potok => {
            let data = tempfile::tempdir()?;
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.arg("chat-server").arg("--data-dir").arg(data.path());
            (cmd, Some(data))
        }
        Target::Reference => {
            let dir = root.join("bench/node");
            if !dir.join("node_modules/ws").is_dir() {
                bail!(
                    "bench/node/node_modules/ws is missing: run scripts/setup --bench (npm ci in bench/node)"
                );
            }
            let mut cmd = Command::new("node");
            cmd.arg(dir.join("ws-broadcast.mjs"));
            (cmd, None)
        }
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the {target:?} server"))?;
    let pid = child.id().context("server pid")?;
    let addr = listening(&mut child).await?;
    Ok(Server {
        child,
        addr,
        pid,
        _data: data,
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn rss_kib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .context("VmRSS")
}

// ---------------------------------------------------------------- HTTP: the streamer account

/// A POST with a JSON body over a fresh HTTP/1.1 connection; the status and the JSON answer.
async fn post(
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let body = body.to_string();
    let mut s = TcpStream::connect(addr).await?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer))
        .await
        .context("no answer within 30 s")??;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP head")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    Ok((status, serde_json::from_str(body).unwrap_or_default()))
}

/// Signs the streamer up and in; its API token.
async fn streamer_token(addr: SocketAddr) -> anyhow::Result<String> {
    let who = json!({"username": STREAMER, "password": PASSWORD});
    let mut signup = who.clone();
    signup["role"] = json!("streamer");
    let (status, body) = post(addr, "/api/v1/users", &signup).await?;
    if status != 201 {
        bail!("POST /api/v1/users: {status} {body}");
    }
    let (status, body) = post(addr, "/api/v1/sessions", &who).await?;
    match body.get("token").and_then(|t| t.as_str()) {
        Some(t) if (200..300).contains(&status) => Ok(t.to_owned()),
        _ => bail!("POST /api/v1/sessions: {status} {body}"),
    }
}

// ---------------------------------------------------------------- latency histogram

/// Log-linear buckets over microseconds (64 per power of two, ~1.6 % wide), shared by all
/// receivers.
struct Histogram {
    buckets: Vec<AtomicU64>,
}

const BUCKETS: usize = 4096;

fn bucket(us: u64) -> usize {
    if us < 128 {
        return us as usize;
    }
    let shift = 63 - us.leading_zeros() - 6;
    (shift as usize * 64 + (us >> shift) as usize).min(BUCKETS - 1)
}

/// The smallest value in bucket `b`.
fn bucket_floor(b: usize) -> u64 {
    if b < 128 {
        return b as u64;
    }
    let shift = b / 64 - 1;
    ((b % 64 + 64) as u64) << shift
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn record(&self, us: u64) {
        self.buckets[bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The `p`-th percentile in milliseconds (the middle of its bucket) over `total` samples,
    /// where those not recorded (not delivered) count as later than any recorded:
    /// infinite when the rank falls among them.
    fn percentile_ms(&self, p: f64, total: u64) -> Option<f64> {
        let total = total.max(self.count());
        if total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, n) in self.buckets.iter().enumerate() {
            seen += n.load(Ordering::Relaxed);
            if seen >= rank {
                let lo = bucket_floor(b) as f64;
                let hi = bucket_floor(b + 1) as f64;
                return Some((lo + hi) / 2.0 / 1000.0);
            }
        }
        Some(f64::INFINITY)
    }
}

// ---------------------------------------------------------------- the load generator

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Shared by the receivers.
struct Tally {
    /// The measured window, Unix microseconds (0 until sending starts).
    window_start: AtomicU64,
    window_end: AtomicU64,
    /// Frames received inside the window (by receive time).
    in_window: AtomicU64,
    /// Latency of messages sent inside the window.
    latency: Histogram,
    subscribed: AtomicU64,
    failed: AtomicU64,
    closed: AtomicU64,
    first_failure: std::sync::Mutex<Option<String>>,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    data: Option<EventData<'a>>,
}

#[derive(Deserialize)]
struct EventData<'a> {
    #[serde(default, borrow)]
    message: Option<EventMessage<'a>>,
}

#[derive(Deserialize)]
struct EventMessage<'a> {
    #[serde(borrow)]
    content: Content<'a>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(borrow)]
    text: std::borrow::Cow<'a, str>,
}

/// The send time in a message text `bench <n> <unix µs>`.
fn sent_at(text: &str) -> Option<u64> {
    let mut words = text.strip_prefix("bench ")?.split(' ');
    words.next()?;
    words.next()?.parse().ok()
}

impl Tally {
    fn on_frame(&self, text: &str) {
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(text) else {
            return;
        };
        if frame.kind != "event" {
            return;
        }
        let Some(sent) = frame
            .data
            .and_then(|d| d.message)
            .and_then(|m| sent_at(&m.content.text))
        else {
            return;
        };
        let now = now_us();
        let (start, end) = (
            self.window_start.load(Ordering::Relaxed),
            self.window_end.load(Ordering::Relaxed),
        );
        if start == 0 {
            return;
        }
        if now >= start && now < end {
            self.in_window.fetch_add(1, Ordering::Relaxed);
        }
        if sent >= start && sent < end {
            self.latency.record(now.saturating_sub(sent));
        }
    }

    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut f = self
            .first_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f.get_or_insert(why);
    }
}

fn ws_config() -> WebSocketConfig {
    // Small buffers: 10,000 sockets in this process; frames here are under 1 KB.
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_frame_size(Some(64 * 1024))
        .max_message_size(Some(64 * 1024))
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn connect(addr: SocketAddr, source: Ipv4Addr, token: Option<&str>) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut req = format!("ws://{addr}/api/v1/realtime").into_client_request()?;
    if let Some(t) = token {
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}"))?,
        );
    }
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(req, stream, Some(ws_config())).await?;
    Ok(ws)
}

/// Connects, subscribes and waits for `subscribed`.
async fn join(addr: SocketAddr, source: Ipv4Addr, channel: &str) -> anyhow::Result<Ws> {
    let mut ws = connect(addr, source, None).await?;
    ws.send(Message::text(
        json!({"type": "subscribe", "channel": channel}).to_string(),
    ))
    .await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                if t.contains("\"type\":\"subscribed\"") {
                    return Ok(ws);
                }
                if t.contains("\"type\":\"error\"") {
                    bail!("subscribe refused: {t}");
                }
            }
            Some(Ok(Message::Close(c))) => bail!("closed while subscribing: {c:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("closed while subscribing"),
        }
    }
}

async fn receiver(
    addr: SocketAddr,
    source: Ipv4Addr,
    channel: Arc<str>,
    tally: Arc<Tally>,
    gate: Arc<Semaphore>,
    stop: CancellationToken,
) {
    let joined = {
        let Ok(_permit) = gate.acquire().await else {
            return;
        };
        tokio::time::timeout(Duration::from_secs(30), join(addr, source, &channel)).await
    };
    let mut ws = match joined {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return tally.fail(format!("{e:#}")),
        Err(_) => return tally.fail("no `subscribed` within 30 s".into()),
    };
    tally.subscribed.fetch_add(1, Ordering::Relaxed);
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => break,
            m = ws.next() => m,
        };
        match msg {
            Some(Ok(Message::Text(t))) => tally.on_frame(&t),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                tally.closed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some(Ok(_)) => {}
        }
    }
    // Closed by dropping: the server is stopped after the run anyway.
    drop(ws);
}

/// One run against one server (started for the run, stopped after it).
pub async fn run(target: Target, opts: &Options, root: &Path) -> anyhow::Result<Report> {
    let server = start(target, root).await?;
    let addr = server.addr;
    let token = match target {
        Target::Potok => streamer_token(addr).await?,
        // The reference has no accounts; any bearer token may write.
        Target::Reference => "reference".to_owned(),
    };
    let channel: Arc<str> = Arc::from(format!("chat:{STREAMER}"));
    let rss_before = rss_kib(server.pid)?;

    let tally = Arc::new(Tally {
        window_start: AtomicU64::new(0),
        window_end: AtomicU64::new(0),
        in_window: AtomicU64::new(0),
        latency: Histogram::new(),
        subscribed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        first_failure: std::sync::Mutex::new(None),
    });
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut tasks = Vec::with_capacity(opts.clients);
    for i in 0..opts.clients {
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i % SOURCE_ADDRESSES) as u8);
        tasks.push(tokio::spawn(receiver(
            addr,
            source,
            Arc::clone(&channel),
            Arc::clone(&tally),
            Arc::clone(&gate),
            stop.clone(),
        )));
    }
    let joined_by =
        Instant::now() + Duration::from_secs(60) + Duration::from_millis(opts.clients as u64 * 5);
    loop {
        let done = tally.subscribed.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed);
        if done as usize >= opts.clients {
            break;
        }
        if Instant::now() > joined_by {
            bail!(
                "{target:?}: only {} of {} receivers subscribed in time",
                tally.subscribed.load(Ordering::Relaxed),
                opts.clients
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connected = tally.subscribed.load(Ordering::Relaxed) as usize;
    if connected == 0 {
        let why = tally
            .first_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        bail!("{target:?}: no receiver subscribed: {why:?}");
    }
    // Idle: every socket subscribed, nothing sent yet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = rss_kib(server.pid)?;

    // The sender.
    let ws = connect(addr, Ipv4Addr::new(127, 0, 0, 1), Some(&token)).await?;
    let (mut sink, mut stream) = ws.split();
    let acked = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let first_refusal = Arc::new(std::sync::Mutex::new(None::<String>));
    let sender_open = Arc::new(AtomicBool::new(true));
    let reader = {
        let (acked, refused, first_refusal, open) = (
            Arc::clone(&acked),
            Arc::clone(&refused),
            Arc::clone(&first_refusal),
            Arc::clone(&sender_open),
        );
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let Message::Text(t) = m else { continue };
                if t.contains("\"type\":\"ack\"") {
                    acked.fetch_add(1, Ordering::Relaxed);
                } else if t.contains("\"type\":\"error\"") {
                    refused.fetch_add(1, Ordering::Relaxed);
                    first_refusal
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .get_or_insert_with(|| t.to_string());
                }
            }
            open.store(false, Ordering::Relaxed);
        })
    };
    let period = Duration::from_secs_f64(1.0 / f64::from(opts.rate.max(1)));
    let start = now_us() + WARMUP.as_micros() as u64;
    let end = start + opts.seconds * 1_000_000;
    tally.window_start.store(start, Ordering::Relaxed);
    tally.window_end.store(end, Ordering::Relaxed);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n = 0u64;
    let mut in_window = 0u64;
    loop {
        tick.tick().await;
        let t = now_us();
        if t >= end {
            break;
        }
        if !sender_open.load(Ordering::Relaxed) {
            bail!("{target:?}: the sender's socket closed");
        }
        n += 1;
        if t >= start {
            in_window += 1;
        }
        let frame = json!({"type": "send", "channel": &*channel, "text": format!("bench {n} {t}"), "ref": n});
        sink.send(Message::text(frame.to_string())).await?;
    }
    // Let the measured messages arrive.
    let expected = in_window * connected as u64;
    let drain_by = Instant::now() + DRAIN;
    while tally.latency.count() < expected && Instant::now() < drain_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    reader.abort();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let seconds = opts.seconds as f64;
    let refusal = first_refusal
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Ok(Report {
        connected,
        sent_per_sec: in_window as f64 / seconds,
        acked: acked.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        first_refusal: refusal,
        deliveries_per_sec: tally.in_window.load(Ordering::Relaxed) as f64 / seconds,
        delivered_fraction: tally.latency.count() as f64 / expected.max(1) as f64,
        p50_ms: tally.latency.percentile_ms(50.0, expected),
        p99_ms: tally.latency.percentile_ms(99.0, expected),
        kib_per_idle: (rss_idle - rss_before) / connected as f64,
        closed: tally.closed.load(Ordering::Relaxed),
        server_pid: server.pid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_narrow() {
        for us in [0u64, 1, 127, 128, 129, 255, 256, 1000, 99_999, 1 << 30] {
            let b = bucket(us);
            assert!(bucket_floor(b) <= us, "{us}");
            assert!(bucket_floor(b + 1) > us, "{us}");
            assert!((bucket_floor(b + 1) - bucket_floor(b)) as f64 <= 1.0 + us as f64 / 64.0);
        }
        let h = Histogram::new();
        for us in 1..=1000 {
            h.record(us * 100);
        }
        let p50 = h.percentile_ms(50.0, 1000).unwrap_or(0.0);
        assert!((p50 - 50.0).abs() < 1.0, "{p50}");
        // Half never arrived: the median is among them.
        assert_eq!(h.percentile_ms(50.0, 2001), Some(f64::INFINITY));
    }

    #[test]
    fn send_time_from_text() {
        assert_eq!(
            sent_at("bench 7 1764638400123456"),
            Some(1_764_638_400_123_456)
        );
        assert_eq!(sent_at("hello"), None);
    }

    #[test]
    fn event_frame_is_parsed() {
        let t = Tally {
            window_start: AtomicU64::new(1),
            window_end: AtomicU64::new(u64::MAX),
            in_window: AtomicU64::new(0),
            latency: Histogram::new(),
            subscribed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            first_failure: std::sync::Mutex::new(None),
        };
        let sent = now_us();
        t.on_frame(
            &json!({"type": "event", "channel": "chat:x", "offset": 1, "data": {"kind": "message",
            "message": {"id": "a", "content": {"text": format!("bench 1 {sent}"), "emojis": []}}}})
            .to_string(),
        );
        t.on_frame(r#"{"type":"ack","ref":1}"#);
        assert_eq!(t.latency.count(), 1);
        assert_eq!(t.in_window.load(Ordering::Relaxed), 1);
    }
}
