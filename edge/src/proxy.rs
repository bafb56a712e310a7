//! The viewer-facing request path: check the request, verify its token, answer from the
//! cache or fetch once from an origin while every concurrent asker of the same key waits on
//! that one fetch, then build the response (ETag/If-None-Match, Range, a playlist's URIs
//! carrying the viewer's token).
//!
//! Caching rules: init segments, segments and parts are immutable (kept until evicted by
//! size, an hour at most); a playlist answer to a blocking request is kept under its full
//! LL-HLS key for 6 s (it stays a true answer to the same question); a plain playlist for at
//! most half a PART-TARGET; errors are not cached, except a media 404 for one second.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use moka::future::Cache;
use tokio::sync::Semaphore;

use crate::fallback::Fallback;
use crate::metrics::EdgeMetrics;
use crate::object::{self, Class, Object};
use crate::signing::{Signer, carry_token};
use crate::upstream::{Fetched, Upstream, UpstreamError};
use crate::viewers::Viewers;

/// One cached answer.
pub(crate) struct Entry {
    status: u16,
    content_type: Option<HeaderValue>,
    cache_control: Option<HeaderValue>,
    etag: Option<HeaderValue>,
    body: Bytes,
    ttl: Duration,
}

impl Entry {
    fn weight(&self, key: &str) -> u32 {
        u32::try_from(self.body.len() + key.len() + 256).unwrap_or(u32::MAX)
    }
}

struct PerEntryTtl;

impl moka::Expiry<String, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Entry>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Why a fetch produced no cacheable answer; shared by every waiter of that fetch.
#[derive(Debug)]
enum FetchError {
    Status(u16, Bytes, Option<HeaderValue>),
    Upstream(UpstreamError),
}

/// The edge's state, shared by every request.
#[derive(Clone)]
pub(crate) struct Edge {
    cache: Cache<String, Arc<Entry>>,
    upstream: Upstream,
    signer: Signer,
    fallback: Option<Fallback>,
    waiters: Arc<Semaphore>,
    metrics: EdgeMetrics,
    alt_svc: Option<HeaderValue>,
    viewers: Arc<Viewers>,
}

impl Edge {
    #[allow(clippy::too_many_arguments)] // one call site, every part named there
    pub(crate) fn new(
        max_bytes: u64,
        upstream: Upstream,
        signer: Signer,
        fallback: Option<Fallback>,
        max_waiters: usize,
        metrics: EdgeMetrics,
        alt_svc: Option<HeaderValue>,
        viewers: Arc<Viewers>,
    ) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &String, v: &Arc<Entry>| v.weight(k))
            .expire_after(PerEntryTtl)
            .build();
        Edge {
            cache,
            upstream,
            signer,
            fallback,
            waiters: Arc::new(Semaphore::new(max_waiters)),
            metrics,
            alt_svc,
            viewers,
        }
    }
}

fn proto(v: Version) -> &'static str {
    match v {
        Version::HTTP_2 => "h2",
        Version::HTTP_3 => "h3",
        _ => "h1",
    }
}

fn plain(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!("{msg}\n"),
    )
        .into_response()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Every `/live/...` request.
pub(crate) async fn handle(State(edge): State<Edge>, req: Request) -> Response {
    let proto = proto(req.version());
    let obj = match object::parse(req.uri().path(), req.uri().query()) {
        Ok(o) => o,
        Err((status, msg)) => {
            edge.count(proto, "invalid", status.as_u16(), "none");
            return plain(status, msg);
        }
    };
    if let Err(e) = edge
        .signer
        .verify(&obj.stream, obj.token.as_deref(), now_secs())
    {
        edge.count(proto, obj.class.as_str(), 403, "none");
        return plain(StatusCode::FORBIDDEN, &e.to_string());
    }
    let (entry, result) = match edge.lookup(&obj).await {
        Ok(found) => found,
        Err((status, resp)) => {
            edge.count(proto, obj.class.as_str(), status, "error");
            return resp;
        }
    };
    let mut resp = edge.respond(&obj, &entry, req.headers());
    if let Some(alt) = &edge.alt_svc {
        resp.headers_mut().insert(header::ALT_SVC, alt.clone());
    }
    edge.count(proto, obj.class.as_str(), resp.status().as_u16(), result);
    if obj.class == Class::Playlist
        && resp.status().is_success()
        && let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>()
    {
        edge.viewers.saw(&obj.stream, peer.ip());
    }
    if let Some(len) = http_body::Body::size_hint(resp.body()).exact() {
        edge.metrics.bytes_out.inc_by(len);
    }
    resp
}

impl Edge {
    fn count(&self, proto: &str, class: &str, status: u16, cache: &str) {
        self.metrics
            .requests
            .with_label_values(&[proto, class, &status.to_string(), cache])
            .inc();
    }

    /// The cached answer for `obj`, fetching it (once, however many ask) when missing.
    async fn lookup(&self, obj: &Object) -> Result<(Arc<Entry>, &'static str), (u16, Response)> {
        if let Some(e) = self.cache.get(&obj.key).await {
            return Ok((e, "hit"));
        }
        let Ok(_permit) = Arc::clone(&self.waiters).try_acquire_owned() else {
            return Err((
                503,
                plain(StatusCode::SERVICE_UNAVAILABLE, "too many waiting requests"),
            ));
        };
        let _held = obj.held.then(|| HeldGuard::new(&self.metrics));
        let ran = Arc::new(AtomicBool::new(false));
        let init = {
            let (edge, obj, ran) = (self.clone(), obj.clone(), Arc::clone(&ran));
            async move {
                ran.store(true, Ordering::Relaxed);
                edge.fetch(&obj).await.map(Arc::new)
            }
        };
        let limit = self.upstream.timeout(obj.held) + Duration::from_secs(2);
        let got = tokio::time::timeout(limit, self.cache.try_get_with(obj.key.clone(), init)).await;
        self.metrics
            .cache_bytes
            .set(i64::try_from(self.cache.weighted_size()).unwrap_or(i64::MAX));
        self.metrics
            .cache_items
            .set(i64::try_from(self.cache.entry_count()).unwrap_or(i64::MAX));
        match got {
            Err(_) => Err((
                504,
                plain(StatusCode::GATEWAY_TIMEOUT, "origin did not answer in time"),
            )),
            Ok(Ok(entry)) => {
                if ran.load(Ordering::Relaxed) {
                    Ok((entry, "miss"))
                } else {
                    self.metrics.coalesced.inc();
                    Ok((entry, "coalesced"))
                }
            }
            Ok(Err(e)) => Err(match &*e {
                FetchError::Status(s, body, ct) => {
                    let mut r = Response::new(Body::from(body.clone()));
                    *r.status_mut() = StatusCode::from_u16(*s).unwrap_or(StatusCode::BAD_GATEWAY);
                    r.headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    if let Some(ct) = ct {
                        r.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
                    }
                    (*s, r)
                }
                FetchError::Upstream(UpstreamError::Timeout) => (
                    504,
                    plain(StatusCode::GATEWAY_TIMEOUT, "origin did not answer in time"),
                ),
                FetchError::Upstream(e) => (502, plain(StatusCode::BAD_GATEWAY, &e.to_string())),
            }),
        }
    }

    async fn fetch(&self, obj: &Object) -> Result<Entry, FetchError> {
        let class = obj.class.as_str();
        let (f, took) = match self
            .upstream
            .fetch(&obj.stream, &obj.upstream, obj.held)
            .await
        {
            Ok(x) => x,
            Err(e) => {
                self.metrics
                    .upstream
                    .with_label_values(&[class, "error"])
                    .inc();
                return Err(FetchError::Upstream(e));
            }
        };
        self.metrics
            .upstream
            .with_label_values(&[class, &f.status.to_string()])
            .inc();
        self.metrics.upstream_seconds.observe(took.as_secs_f64());
        match f.status {
            200 => {
                let ttl = ttl_for(obj, &f.body);
                Ok(entry_from(obj, f, ttl))
            }
            404 if obj.class.immutable() => {
                if let Some(fb) = &self.fallback
                    && let Some(body) = fb.find(obj).await
                {
                    self.metrics.fallback_hits.inc();
                    let f = Fetched {
                        status: 200,
                        headers: HeaderMap::new(),
                        body,
                    };
                    return Ok(entry_from(obj, f, Duration::from_secs(3600)));
                }
                Ok(Entry {
                    status: 404,
                    content_type: Some(HeaderValue::from_static("text/plain; charset=utf-8")),
                    cache_control: Some(HeaderValue::from_static("no-store")),
                    etag: None,
                    body: Bytes::from_static(b"not found\n"),
                    ttl: Duration::from_secs(1),
                })
            }
            s => Err(FetchError::Status(
                s,
                f.body,
                f.headers.get(header::CONTENT_TYPE).cloned(),
            )),
        }
    }

    fn respond(&self, obj: &Object, entry: &Entry, req: &HeaderMap) -> Response {
        let status = StatusCode::from_u16(entry.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut headers = HeaderMap::new();
        if let Some(v) = &entry.content_type {
            headers.insert(header::CONTENT_TYPE, v.clone());
        }
        if let Some(v) = &entry.cache_control {
            headers.insert(header::CACHE_CONTROL, v.clone());
        }
        if status != StatusCode::OK {
            return (status, headers, entry.body.clone()).into_response();
        }
        if let Some(etag) = &entry.etag {
            headers.insert(header::ETAG, etag.clone());
            if req
                .get(header::IF_NONE_MATCH)
                .is_some_and(|v| etag_matches(v, etag))
            {
                return (StatusCode::NOT_MODIFIED, headers).into_response();
            }
        }
        let mut body = entry.body.clone();
        if matches!(obj.class, Class::Master | Class::Playlist)
            && self.signer.is_private(&obj.stream)
            && let Some(token) = &obj.token
        {
            body = Bytes::from(carry_token(&String::from_utf8_lossy(&body), token));
        }
        if obj.class.immutable() {
            headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            if let Some(range) = req.get(header::RANGE).and_then(|v| v.to_str().ok()) {
                let len = body.len() as u64;
                match byte_range(range, len) {
                    Some(Ok((start, end))) => {
                        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
                        {
                            headers.insert(header::CONTENT_RANGE, v);
                        }
                        let part = body.slice(start as usize..=end as usize);
                        return (StatusCode::PARTIAL_CONTENT, headers, part).into_response();
                    }
                    Some(Err(())) => {
                        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                            headers.insert(header::CONTENT_RANGE, v);
                        }
                        return (StatusCode::RANGE_NOT_SATISFIABLE, headers).into_response();
                    }
                    None => {} // not a single byte range: the whole object
                }
            }
        }
        (status, headers, body).into_response()
    }
}

struct HeldGuard(EdgeMetrics);

impl HeldGuard {
    fn new(m: &EdgeMetrics) -> Self {
        m.held.inc();
        HeldGuard(m.clone())
    }
}

impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.0.held.dec();
    }
}

fn ttl_for(obj: &Object, body: &[u8]) -> Duration {
    match obj.class {
        Class::Init | Class::Segment | Class::Part => Duration::from_secs(3600),
        Class::Master => Duration::from_secs(2),
        Class::Playlist if obj.held => Duration::from_secs(6),
        Class::Playlist => part_target(body).map_or(Duration::from_secs(1), |pt| pt / 2),
    }
}

/// PART-TARGET of a media playlist, if it declares one.
fn part_target(body: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().find(|l| l.starts_with("#EXT-X-PART-INF:"))?;
    let v = line.split("PART-TARGET=").nth(1)?.split(',').next()?;
    Duration::try_from_secs_f64(v.trim().parse().ok()?).ok()
}

fn entry_from(obj: &Object, f: Fetched, ttl: Duration) -> Entry {
    let default_type = match obj.class {
        Class::Master | Class::Playlist => "application/vnd.apple.mpegurl",
        Class::Init => "video/mp4",
        Class::Segment | Class::Part => "video/iso.segment",
    };
    let content_type = f
        .headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static(default_type));
    let cache_control = if obj.class.immutable() {
        HeaderValue::from_static("public, max-age=31536000, immutable")
    } else {
        f.headers
            .get(header::CACHE_CONTROL)
            .cloned()
            .unwrap_or(HeaderValue::from_static("no-cache"))
    };
    let etag = obj.class.immutable().then(|| etag(&f.body)).flatten();
    Entry {
        status: 200,
        content_type: Some(content_type),
        cache_control: Some(cache_control),
        etag,
        body: f.body,
        ttl,
    }
}

/// A strong validator: length and FNV-1a hash of the bytes.
fn etag(body: &[u8]) -> Option<HeaderValue> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    HeaderValue::from_str(&format!("\"{:x}-{h:016x}\"", body.len())).ok()
}

fn etag_matches(header: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(h) = header.to_str() else { return false };
    h.trim() == "*"
        || h.split(',')
            .any(|t| t.trim().trim_start_matches("W/") == etag.to_str().unwrap_or_default())
}

/// A single `bytes=` range: `Some(Ok((first, last)))`, `Some(Err(()))` when unsatisfiable,
/// `None` when not a single byte range (then the whole object is sent).
fn byte_range(header: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end: u64 = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().ok()?.min(len.saturating_sub(1))
        };
        if start >= len || start > end {
            return Some(Err(()));
        }
        (start, end)
    };
    Some(Ok(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(byte_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(byte_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(byte_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(byte_range("bytes=50-500", 100), Some(Ok((50, 99))));
        assert_eq!(byte_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(byte_range("bytes=9-3", 100), Some(Err(())));
        assert_eq!(byte_range("bytes=0-1,5-6", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
        assert_eq!(byte_range("bytes=x-1", 100), None);
    }

    #[test]
    fn part_target_and_ttls() {
        assert_eq!(
            part_target(b"#EXTM3U\n#EXT-X-PART-INF:PART-TARGET=0.20000\n"),
            Some(Duration::from_millis(200))
        );
        assert_eq!(part_target(b"#EXTM3U\n"), None);
        let plain = object::parse("/live/s/r/index.m3u8", None).unwrap();
        assert_eq!(
            ttl_for(&plain, b"#EXT-X-PART-INF:PART-TARGET=0.2\n"),
            Duration::from_millis(100)
        );
        let blocking = object::parse("/live/s/r/index.m3u8", Some("_HLS_msn=3")).unwrap();
        assert_eq!(ttl_for(&blocking, b""), Duration::from_secs(6));
    }

    #[test]
    fn etags() {
        let e = etag(b"hello").unwrap();
        assert!(
            etag_matches(
                &HeaderValue::from_static("\"x\", W/\"5-a430d84680aabd0b\""),
                &e
            ),
            "{e:?}"
        );
        assert!(etag_matches(&HeaderValue::from_static("*"), &e));
        assert!(!etag_matches(&HeaderValue::from_static("\"nope\""), &e));
    }
}
