//! The web face the control plane serves beside its API: the directory, watch pages, the
//! streamer dashboard, account pages and OBS overlay pages. Pages talk to the REST API
//! (`/api/v1`) and the real-time gateway (`/api/v1/realtime`) like any other client.
//!
//! The server side is small on purpose: it picks the language, renders a shell
//! ([`html`]) with the page's data and a strict `Content-Security-Policy` (scripts only
//! from `/assets/`, no inline script, no third-party origin but the edge's), and serves the
//! embedded assets ([`assets`]). The scripts in `web/assets/` build the pages.
//!
//! Routes: `/`, `/{channel}`, `/login`, `/signup`, `/account`, `/dashboard`,
//! `/overlay/{token}/{alerts|goal|chat|competition}`, `/lang/{ru|en}?next=PATH` (the
//! switch: a cookie and a redirect back) and `/assets/{name}`. None of them shadows
//! `/api/v1/*`, `/healthz`, `/readyz`, `/metrics` or `/pay/*`: those names are reserved and
//! are not channel names.

#![forbid(unsafe_code)]

pub mod assets;
pub mod html;
pub mod i18n;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use potok_config::Config;

use crate::html::Shell;
use crate::i18n::Lang;

/// Names that are never channels: the paths the control plane and the pages use.
const RESERVED: &[&str] = &[
    "api",
    "healthz",
    "readyz",
    "metrics",
    "pay",
    "assets",
    "overlay",
    "dashboard",
    "login",
    "signup",
    "account",
    "lang",
    "live",
    "admin",
    "settings",
    "static",
    "favicon.ico",
    "robots.txt",
];

/// What the handlers know.
struct Web {
    default_lang: Lang,
    /// The edge's base URL (no trailing slash) when configured.
    edge_url: Option<String>,
    /// Without `edge_url`: the edge's port on the host the page was loaded from.
    edge_port: u16,
    public_host: String,
}

/// The pages' routes, merged into the control plane's router (which keeps `/api/v1/*`,
/// `/healthz`, `/readyz` and `/metrics`). With `web.enabled = false` there are none.
pub fn router(config: &Config) -> Router {
    if !config.web.enabled {
        return Router::new();
    }
    let web = Arc::new(Web {
        default_lang: Lang::from_code(&config.web.default_language).unwrap_or(Lang::Ru),
        edge_url: config
            .web
            .edge_url
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_owned())
            .filter(|u| safe_origin(u).is_some()),
        edge_port: config.edge.http_listen.0.port(),
        public_host: config.node.public_host.clone(),
    });
    Router::new()
        .route("/", get(directory))
        .route("/login", get(login))
        .route("/signup", get(signup))
        .route("/account", get(account))
        .route("/dashboard", get(dashboard))
        .route("/lang/{code}", get(switch_language))
        .route("/assets/{name}", get(asset))
        .route("/overlay/{token}/{kind}", get(overlay))
        .route("/{channel}", get(watch))
        .with_state(web)
}

/// The language and the edge's base URL for one request.
struct Ctx {
    lang: Lang,
    edge: String,
}

impl Web {
    fn ctx(&self, headers: &HeaderMap) -> Ctx {
        let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let lang = i18n::choose(
            text(header::COOKIE),
            text(header::ACCEPT_LANGUAGE),
            self.default_lang,
        );
        let edge = match &self.edge_url {
            Some(u) => u.clone(),
            None => {
                let host = text(header::HOST)
                    .and_then(host_name)
                    .unwrap_or(&self.public_host);
                format!("http://{}:{}", host, self.edge_port)
            }
        };
        Ctx { lang, edge }
    }
}

/// The host name of a `Host` header (no port), when it is a plain name or address.
fn host_name(host: &str) -> Option<&str> {
    let name = if host.starts_with('[') {
        &host[..host.find(']')? + 1]
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    ok.then_some(name)
}

/// `scheme://host[:port]` of an http(s) URL made of characters safe in a CSP header.
fn safe_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split('/').next().unwrap_or("");
    let ok = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    ok.then(|| format!("{scheme}://{authority}"))
}

/// The policy every page is served with: nothing inline, scripts and styles from here,
/// media and playlists from here and the edge, the gateway on this origin.
fn csp(edge: &str) -> String {
    let edge = safe_origin(edge).unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: https: {edge}; \
         media-src 'self' blob: https: {edge}; connect-src 'self' {edge}; worker-src 'self' blob:; \
         font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
}

fn page(ctx: &Ctx, status: StatusCode, shell: Shell<'_>) -> Response {
    let body = html::render(&shell);
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp(&ctx.edge)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Overlay URLs carry their token: no page sends its URL anywhere.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept-Language, Cookie"),
    );
    resp
}

fn simple(
    web: &Web,
    headers: &HeaderMap,
    page_id: &'static str,
    title_key: &str,
    path: &str,
    script: &'static str,
) -> Response {
    let ctx = web.ctx(headers);
    let title = ctx.lang.t(title_key, &[]);
    let data = serde_json::json!({ "edge": ctx.edge });
    page(
        &ctx,
        StatusCode::OK,
        Shell {
            lang: ctx.lang,
            title,
            page: page_id,
            data,
            scripts: &[script],
            path,
            overlay: false,
        },
    )
}

async fn directory(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    simple(
        &web,
        &headers,
        "directory",
        "title.directory",
        "/",
        "directory.js",
    )
}

async fn login(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    simple(
        &web,
        &headers,
        "login",
        "title.login",
        "/login",
        "account.js",
    )
}

async fn signup(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    simple(
        &web,
        &headers,
        "signup",
        "title.signup",
        "/signup",
        "account.js",
    )
}

async fn account(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    simple(
        &web,
        &headers,
        "account",
        "title.account",
        "/account",
        "account.js",
    )
}

async fn dashboard(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let ctx = web.ctx(&headers);
    let data = serde_json::json!({ "edge": ctx.edge });
    page(
        &ctx,
        StatusCode::OK,
        Shell {
            lang: ctx.lang,
            title: ctx.lang.t("title.dashboard", &[]),
            page: "dashboard",
            data,
            scripts: &["chat.js", "alerts.js", "dashboard.js"],
            path: "/dashboard",
            overlay: false,
        },
    )
}

/// A channel name as accounts have them: 3-32 of `a-z`, `0-9`, `_`, `-`, not reserved.
fn channel_name(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && !RESERVED.contains(&name)
}

fn not_found(ctx: &Ctx, path: &str) -> Response {
    page(
        ctx,
        StatusCode::NOT_FOUND,
        Shell {
            lang: ctx.lang,
            title: ctx.lang.t("title.notfound", &[]),
            page: "notfound",
            data: serde_json::json!({}),
            scripts: &[],
            path,
            overlay: false,
        },
    )
}

async fn watch(
    State(web): State<Arc<Web>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ctx = web.ctx(&headers);
    if !channel_name(&channel) {
        return not_found(&ctx, "/");
    }
    let path = format!("/{channel}");
    let data = serde_json::json!({ "edge": ctx.edge, "channel": channel });
    page(
        &ctx,
        StatusCode::OK,
        Shell {
            lang: ctx.lang,
            title: ctx.lang.t("title.watch", &[("channel", &channel)]),
            page: "watch",
            data,
            scripts: &["hls.min.js", "chat.js", "watch.js"],
            path: &path,
            overlay: false,
        },
    )
}

const OVERLAYS: &[&str] = &["alerts", "goal", "chat", "competition"];

async fn overlay(
    State(web): State<Arc<Web>>,
    Path((token, kind)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let ctx = web.ctx(&headers);
    let token_ok = (1..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !token_ok || !OVERLAYS.contains(&kind.as_str()) {
        return not_found(&ctx, "/");
    }
    let data = serde_json::json!({ "edge": ctx.edge, "token": token, "kind": kind });
    page(
        &ctx,
        StatusCode::OK,
        Shell {
            lang: ctx.lang,
            title: ctx.lang.t("title.overlay", &[]),
            page: "overlay",
            data,
            scripts: &["chat.js", "alerts.js", "overlay.js"],
            path: "/",
            overlay: true,
        },
    )
}

#[derive(serde::Deserialize)]
struct Next {
    next: Option<String>,
}

/// Where the switch may send the browser back to: a path on this site (not `//host`, no
/// control characters), else `/`.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && p.len() <= 512
                && p.bytes().all(|b| (0x21..0x7f).contains(&b)) =>
        {
            p
        }
        _ => "/",
    }
}

async fn switch_language(Path(code): Path<String>, Query(q): Query<Next>) -> Response {
    let Some(lang) = Lang::from_code(&code) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let to = local_path(q.next.as_deref());
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(to) {
        h.insert(header::LOCATION, v);
    }
    let cookie = format!(
        "{}={}; Path=/; Max-Age=31536000; SameSite=Lax",
        i18n::COOKIE,
        lang.code()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    resp
}

#[derive(serde::Deserialize)]
struct Version {
    v: Option<String>,
}

async fn asset(Path(name): Path<String>, Query(q): Query<Version>, headers: HeaderMap) -> Response {
    let Some(a) = assets::get(&name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let hash = assets::hash(&name);
    let etag = format!("\"{hash}\"");
    let cache = if q.v.as_deref() == Some(hash) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        a.body.into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}
