//! One HTTP listener: HTTP/1.1 and HTTP/2 (prior knowledge) on a bound TCP socket, serving an
//! `axum::Router`.
//!
//! Limits: a connection permit is taken *before* `accept`, so at most `max_connections`
//! sockets are open and the rest wait in the kernel's backlog; one client address may hold at
//! most `max_connections_per_address` of them (IPv6: per /64); request heads must arrive
//! within `header_read_timeout` and fit in `max_header_bytes`. Every connection must send its
//! first byte within `header_read_timeout` (hyper's own head timer only starts once the
//! protocol is known, and the HTTP/1-or-2 detection waits for bytes forever) and is closed
//! when no byte moves either way for `idle_timeout` (idle keep-alive, HTTP/2 without streams,
//! stalled peers): both are enforced by a watchdog around the connection's IO.
//!
//! So that `/healthz` and `/readyz` still answer when the cap is reached, a small reserve of
//! [`OPS_RESERVE`] connections beyond it serves only those two paths (503 for anything else),
//! without keep-alive and with a short deadline.
//!
//! On shutdown the listener is closed at once and open connections finish their in-flight
//! requests (HTTP/1.1 keep-alive is turned off, HTTP/2 gets GOAWAY); the caller bounds the
//! wait with the drain deadline.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use potok_config::{HttpConfig, ListenAddr, Role};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// Per-listener limits, from [`HttpConfig`].
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Most open connections.
    pub max_connections: usize,
    /// Time allowed to receive a request head, and a new connection's first byte.
    pub header_read_timeout: Duration,
    /// A connection with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// Most open connections per client address (0: no limit).
    pub max_connections_per_address: usize,
    /// Largest request head.
    pub max_header_bytes: usize,
}

impl From<&HttpConfig> for HttpLimits {
    fn from(c: &HttpConfig) -> Self {
        HttpLimits {
            max_connections: c.max_connections,
            header_read_timeout: c.header_read_timeout.get(),
            idle_timeout: c.idle_timeout.get(),
            max_connections_per_address: c.max_connections_per_address,
            max_header_bytes: usize::try_from(c.max_header_bytes.bytes()).unwrap_or(usize::MAX),
        }
    }
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("{role}: cannot listen on {addr} ({field}): {source}")]
pub struct BindError {
    /// The role whose listener failed.
    pub role: Role,
    /// The configuration field that holds the address.
    pub field: &'static str,
    /// The address.
    pub addr: SocketAddr,
    /// The OS error.
    pub source: io::Error,
}

/// A role's bound HTTP listener and the router it serves. Binding and serving are separate
/// steps so that every role of a process is bound (and every port known) before any serves.
pub struct RoleServer {
    role: Role,
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tasks: Vec<Task>,
    addrs: Vec<(&'static str, SocketAddr)>,
}

/// A role's other long-running work (another listener, a background writer), started with
/// the shutdown token when the role starts serving.
type Task = Box<dyn FnOnce(CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

impl RoleServer {
    /// Binds `addr` (named `field` in the configuration) for `role`.
    pub async fn bind(
        role: Role,
        field: &'static str,
        addr: ListenAddr,
        router: Router,
        limits: HttpLimits,
    ) -> Result<Self, BindError> {
        let listener = TcpListener::bind(addr.get())
            .await
            .map_err(|source| BindError {
                role,
                field,
                addr: addr.get(),
                source,
            })?;
        Ok(RoleServer {
            role,
            listener,
            router,
            limits,
            tasks: Vec::new(),
            addrs: Vec::new(),
        })
    }

    /// Adds work that runs beside the HTTP listener until shutdown, such as another
    /// protocol's listener bound at `addr` (reported by [`RoleServer::addr_of`] as `name`).
    pub fn with_task<F, Fut>(
        mut self,
        name: &'static str,
        addr: Option<SocketAddr>,
        task: F,
    ) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if let Some(addr) = addr {
            self.addrs.push((name, addr));
        }
        self.tasks
            .push(Box::new(move |shutdown| Box::pin(task(shutdown))));
        self
    }

    /// Also serves this role's router over TLS (HTTP/1.1 and HTTP/2 by ALPN) on `listener`,
    /// reported by [`RoleServer::addr_of`] as `name`.
    pub fn with_tls(
        self,
        name: &'static str,
        listener: TcpListener,
        acceptor: TlsAcceptor,
    ) -> Self {
        let router = self.router.clone();
        let limits = self.limits;
        let role = self.role;
        let addr = listener.local_addr().ok();
        self.with_task(name, addr, move |shutdown| {
            let span = info_span!("https", role = role.as_str(), addr = ?addr);
            serve(listener, router, limits, shutdown, Some(acceptor)).instrument(span)
        })
    }

    /// The router this role serves (for another transport, such as HTTP/3).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The bound address of the extra listener called `name` (e.g. `"rtmp"`).
    pub fn addr_of(&self, name: &str) -> Option<SocketAddr> {
        self.addrs.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }

    /// Every extra listener's name and bound address.
    pub fn extra_addrs(&self) -> &[(&'static str, SocketAddr)] {
        &self.addrs
    }

    /// The role this listener serves.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The bound address (with the real port when the configuration asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        // A bound TcpListener always has a local address; the fallback is never reached.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` is cancelled, then stops accepting and waits for open
    /// connections to finish their requests. Bound the wait from outside.
    pub async fn run(self, shutdown: CancellationToken) {
        let RoleServer {
            role,
            listener,
            router,
            limits,
            tasks,
            addrs: _,
        } = self;
        let mut running = tokio::task::JoinSet::new();
        for task in tasks {
            running.spawn(task(shutdown.clone()));
        }
        let span = match listener.local_addr() {
            Ok(addr) => info_span!("http", role = role.as_str(), %addr),
            Err(_) => info_span!("http", role = role.as_str()),
        };
        serve(listener, router, limits, shutdown, None)
            .instrument(span)
            .await;
        while running.join_next().await.is_some() {}
    }
}

/// Connections beyond `max_connections` that a listener still accepts to answer `/healthz`
/// and `/readyz` (and nothing else) when its cap is reached, so that health checks keep
/// working while clients hold every regular slot.
pub const OPS_RESERVE: usize = 16;

/// How long a connection in the ops reserve may stay open.
const RESERVE_DEADLINE: Duration = Duration::from_secs(2);

/// Counts open connections per client address (IPv6 addresses per /64, IPv4-mapped IPv6 as
/// IPv4), so that one client cannot take every slot of a listener. Entries are removed when
/// their last connection closes, so the map never holds more entries than open connections.
#[derive(Clone, Debug)]
pub struct PerAddress {
    max: usize,
    open: OpenCounts,
}

type OpenCounts = Arc<Mutex<HashMap<IpAddr, usize>>>;

impl PerAddress {
    /// A limiter allowing `max` open connections per address (0: no limit).
    pub fn new(max: usize) -> Self {
        PerAddress {
            max,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Counts one more connection from `ip`, or `None` when that address is at its limit.
    pub fn try_take(&self, ip: IpAddr) -> Option<AddressPermit> {
        if self.max == 0 {
            return Some(AddressPermit { slot: None });
        }
        let key = address_key(ip);
        // A poisoned lock only means another connection's task panicked while counting;
        // the counts themselves are still consistent.
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressPermit {
            slot: Some((Arc::clone(&self.open), key)),
        })
    }

    /// Open connections counted for `ip`'s address.
    pub fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&address_key(ip)).copied().unwrap_or(0)
    }
}

/// The address a connection is counted under.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// One connection counted by [`PerAddress`]; dropping it uncounts the connection.
#[derive(Debug)]
pub struct AddressPermit {
    slot: Option<(OpenCounts, IpAddr)>,
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        if let Some((open, key)) = self.slot.take() {
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = open.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(&key);
                }
            }
        }
    }
}

/// What an accepted connection holds until it ends: its slot under the listener's cap and
/// under its address's limit.
#[derive(Debug)]
pub struct ConnPermit {
    _slot: OwnedSemaphorePermit,
    _address: AddressPermit,
    /// The connection took a slot of the ops reserve (the regular cap was full).
    pub reserve: bool,
}

/// Accepts connections until `shutdown`, taking one of `max` permits *before* each accept so
/// that at most `max` connections are open and the rest wait in the kernel's backlog. With
/// `reserve` > 0, up to that many more are accepted while the cap is full (the permit says
/// so). A connection from an address that already holds `per_address`'s limit is closed at
/// once. Each connection is handed to `handle` with its permit, which it must hold until the
/// connection ends. Accept errors (EMFILE and friends) back off briefly instead of spinning.
pub async fn accept_loop<F>(
    listener: &TcpListener,
    max: usize,
    reserve: usize,
    per_address: &PerAddress,
    shutdown: &CancellationToken,
    mut handle: F,
) where
    F: FnMut(TcpStream, SocketAddr, ConnPermit),
{
    let permits = Arc::new(Semaphore::new(max));
    let reserved = Arc::new(Semaphore::new(reserve));
    let mut refused: u64 = 0;
    loop {
        let (permit, in_reserve) = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => (p, false),
                Err(_) => return, // the semaphore is never closed
            },
            p = Arc::clone(&reserved).acquire_owned(), if reserve > 0 => match p {
                Ok(p) => (p, true),
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    }
                }
            },
        };
        // A regular slot may have freed while this reserve slot waited for the client.
        let (permit, in_reserve) = if in_reserve {
            match Arc::clone(&permits).try_acquire_owned() {
                Ok(regular) => (regular, false),
                Err(_) => (permit, true),
            }
        } else {
            (permit, false)
        };
        let Some(address) = per_address.try_take(peer.ip()) else {
            // Refusals are counted, and logged only now and then: a client at its limit
            // could otherwise write a log line per connection attempt.
            refused += 1;
            if refused.is_power_of_two() {
                info!(%peer, refused, "connection refused: too many open from this address");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        handle(
            stream,
            peer,
            ConnPermit {
                _slot: permit,
                _address: address,
                reserve: in_reserve,
            },
        );
    }
}

/// When a connection last moved a byte, shared between its IO wrapper and its watchdog.
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    /// Milliseconds after `base` of the last read or write that moved bytes.
    last: AtomicU64,
    /// Whether the peer has sent anything yet.
    got_bytes: AtomicBool,
    /// Woken by the first byte, so a watchdog waiting for it switches to the idle deadline.
    first: tokio::sync::Notify,
}

impl Activity {
    /// A connection that starts now.
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            base: Instant::now(),
            last: AtomicU64::new(0),
            got_bytes: AtomicBool::new(false),
            first: tokio::sync::Notify::new(),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Completes when the peer sent nothing within `first_byte` of the start, or when no
    /// byte moved either way for `idle`.
    pub async fn expired(&self, first_byte: Duration, idle: Duration) {
        // Until the first byte: its deadline, or the byte (a stored notification is not lost).
        if !self.got_bytes.load(Ordering::Acquire) {
            tokio::select! {
                () = tokio::time::sleep_until(self.base + first_byte) => {
                    if !self.got_bytes.load(Ordering::Acquire) {
                        return;
                    }
                }
                () = self.first.notified() => {}
            }
        }
        // Then: the idle deadline only ever moves later, so sleep to it and look again.
        loop {
            let deadline =
                self.base + Duration::from_millis(self.last.load(Ordering::Relaxed)) + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// An IO object that records its [`Activity`].
#[derive(Debug)]
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    /// Wraps `inner`, recording into `activity`.
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
            if !self.activity.got_bytes.swap(true, Ordering::AcqRel) {
                self.activity.first.notify_one();
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn builder(limits: HttpLimits, keep_alive: bool) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(keep_alive)
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    // No server PINGs: the client's answers would count as activity and keep an idle
    // HTTP/2 connection open forever; the idle watchdog finds dead peers instead.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(None);
    builder
}

/// Answers 503 to everything but the health endpoints (connections of the ops reserve).
async fn ops_only(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match req.uri().path() {
        "/healthz" | "/readyz" => next.run(req).await,
        _ => {
            use axum::response::IntoResponse as _;
            (
                http::StatusCode::SERVICE_UNAVAILABLE,
                [(http::header::CONNECTION, "close")],
                axum::Json(serde_json::json!({
                    "code": "OVERLOADED",
                    "message": "too many open connections; retry shortly",
                })),
            )
                .into_response()
        }
    }
}

/// Serves `router` on `listener` with `limits` until `shutdown`, then drains: for listeners
/// that belong to no role (`metrics.listen`).
pub async fn serve_plain(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    serve(listener, router, limits, shutdown, None).await;
}

async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
    tls: Option<TlsAcceptor>,
) {
    let graceful = GracefulShutdown::new();
    let regular = Arc::new(builder(limits, true));
    let reserve = Arc::new(builder(limits, false));
    let reserve_router = router.clone().layer(axum::middleware::from_fn(ops_only));
    let per_address = PerAddress::new(limits.max_connections_per_address);

    accept_loop(
        &listener,
        limits.max_connections,
        OPS_RESERVE,
        &per_address,
        &shutdown,
        |stream, peer, permit| {
            let (router, builder, first_byte, idle) = if permit.reserve {
                let short = limits.header_read_timeout.min(RESERVE_DEADLINE);
                (&reserve_router, &reserve, short, RESERVE_DEADLINE)
            } else {
                (
                    &router,
                    &regular,
                    limits.header_read_timeout,
                    limits.idle_timeout,
                )
            };
            // Handlers may ask for the client's address (`ConnectInfo<SocketAddr>`).
            let service = TowerToHyperService::new(
                router
                    .clone()
                    .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
            );
            let builder = Arc::clone(builder);
            let watcher = graceful.watcher();
            let tls = tls.clone();
            tokio::spawn(
                async move {
                    match tls {
                        None => {
                            let activity = Activity::new();
                            let io = Watched::new(stream, Arc::clone(&activity));
                            let conn = watcher.watch(
                                builder.serve_connection_with_upgrades(TokioIo::new(io), service),
                            );
                            tokio::select! {
                                r = conn => if let Err(e) = r {
                                    debug!(error = %e, "connection ended with an error");
                                },
                                () = activity.expired(first_byte, idle) => debug!("closed: idle"),
                            }
                        }
                        Some(acceptor) => {
                            // The handshake gets the same time as a request head (slowloris guard).
                            let tls_stream = match tokio::time::timeout(
                                limits.header_read_timeout,
                                acceptor.accept(stream),
                            )
                            .await
                            {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => return debug!(error = %e, "TLS handshake failed"),
                                Err(_) => return debug!("TLS handshake timed out"),
                            };
                            // The first-byte deadline starts again after the handshake.
                            let activity = Activity::new();
                            let io = Watched::new(tls_stream, Arc::clone(&activity));
                            let conn = watcher.watch(
                                builder.serve_connection_with_upgrades(TokioIo::new(io), service),
                            );
                            tokio::select! {
                                r = conn => if let Err(e) = r {
                                    debug!(error = %e, "connection ended with an error");
                                },
                                () = activity.expired(first_byte, idle) => debug!("closed: idle"),
                            }
                        }
                    }
                    drop(permit);
                }
                .instrument(info_span!("conn", %peer)),
            );
        },
    )
    .await;
    drop(listener);
    info!("stopped accepting; draining open connections");
    graceful.shutdown().await;
    info!("drained");
}
