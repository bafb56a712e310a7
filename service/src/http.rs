//! One HTTP listener: HTTP/1.1 and HTTP/2 (prior knowledge) on a bound TCP socket, serving an
//! `axum::Router`.
//!
//! Limits: a connection permit is taken *before* `accept`, so at most `max_connections`
//! sockets are open and the rest wait in the kernel's backlog; request heads must arrive
//! within `header_read_timeout` and fit in `max_header_bytes`. On shutdown the listener is
//! closed at once and open connections finish their in-flight requests (HTTP/1.1 keep-alive
//! is turned off, HTTP/2 gets GOAWAY); the caller bounds the wait with the drain deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use potok_config::{HttpConfig, ListenAddr, Role};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// Per-listener limits, from [`HttpConfig`].
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Most open connections.
    pub max_connections: usize,
    /// Time allowed to receive a request head.
    pub header_read_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
}

impl From<&HttpConfig> for HttpLimits {
    fn from(c: &HttpConfig) -> Self {
        HttpLimits {
            max_connections: c.max_connections,
            header_read_timeout: c.header_read_timeout.get(),
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
    pub source: std::io::Error,
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

/// Accepts connections until `shutdown`, taking one of `max` permits *before* each accept so
/// that at most `max` connections are open and the rest wait in the kernel's backlog. Each
/// connection is handed to `handle` with its permit, which it must hold until the connection
/// ends. Accept errors (EMFILE and friends) back off briefly instead of spinning.
pub async fn accept_loop<F>(
    listener: &TcpListener,
    max: usize,
    shutdown: &CancellationToken,
    mut handle: F,
) where
    F: FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit),
{
    let permits = Arc::new(Semaphore::new(max));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return, // the semaphore is never closed
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
        let _ = stream.set_nodelay(true);
        handle(stream, peer, permit);
    }
}

async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
    tls: Option<TlsAcceptor>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(30));
    let builder = Arc::new(builder);

    accept_loop(
        &listener,
        limits.max_connections,
        &shutdown,
        |stream, peer, permit| {
            // Handlers may ask for the client's address (`ConnectInfo<SocketAddr>`).
            let service = TowerToHyperService::new(
                router
                    .clone()
                    .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
            );
            let builder = Arc::clone(&builder);
            let watcher = graceful.watcher();
            let tls = tls.clone();
            tokio::spawn(
                async move {
                    match tls {
                        None => {
                            let conn = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service);
                            if let Err(e) = watcher.watch(conn).await {
                                debug!(error = %e, "connection ended with an error");
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
                            let conn = builder
                                .serve_connection_with_upgrades(TokioIo::new(tls_stream), service);
                            if let Err(e) = watcher.watch(conn).await {
                                debug!(error = %e, "connection ended with an error");
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
