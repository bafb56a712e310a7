//! The pages' routes as the control plane serves them: language choice and the switch,
//! escaping, the Content-Security-Policy, embedded assets and their caching, and the
//! paths the pages must never take.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use potok_config::Config;
use tower::ServiceExt;

struct Got {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn get(config: &Config, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = Request::builder().uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = potok_web::router(config)
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn config() -> Config {
    let mut c = Config::default();
    c.web.edge_url = Some("https://edge.example:8443/".into());
    c
}

#[tokio::test]
async fn pages_follow_accept_language_and_the_switch_cookie() {
    let c = config();
    let ru = get(&c, "/", &[("accept-language", "ru-RU,ru;q=0.9,en;q=0.8")]).await;
    assert_eq!(ru.status, StatusCode::OK);
    assert!(ru.body.starts_with("<!doctype html>\n<html lang=\"ru\">"));
    assert!(ru.body.contains("Сейчас в эфире"));
    let en = get(&c, "/", &[("accept-language", "en-US,en;q=0.9")]).await;
    assert!(en.body.contains("<html lang=\"en\">") && en.body.contains("Live now"));
    // Neither: the configured default (Russian unless set).
    let de = get(&c, "/", &[("accept-language", "de")]).await;
    assert!(de.body.contains("<html lang=\"ru\">"));
    let mut c_en = config();
    c_en.web.default_language = "en".into();
    assert!(
        get(&c_en, "/", &[("accept-language", "de")])
            .await
            .body
            .contains("<html lang=\"en\">")
    );
    // The cookie the switch sets wins over the browser.
    let cookie = get(
        &c,
        "/login",
        &[("accept-language", "ru"), ("cookie", "potok_lang=en")],
    )
    .await;
    assert!(cookie.body.contains("<html lang=\"en\">") && cookie.body.contains("Log in"));
    assert_eq!(cookie.headers[header::VARY], "Accept-Language, Cookie");
}

#[tokio::test]
async fn the_switch_sets_a_cookie_and_only_goes_back_to_this_site() {
    let c = config();
    let r = get(&c, "/lang/en?next=/alice", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers[header::LOCATION], "/alice");
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.starts_with("potok_lang=en;") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    for evil in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/%0d%0aSet-Cookie:x=y",
    ] {
        let r = get(&c, &format!("/lang/ru?next={evil}"), &[]).await;
        let to = r.headers[header::LOCATION].to_str().unwrap();
        assert!(to == "/" || to.starts_with("/%0d"), "{evil} -> {to}");
        assert!(!r.headers.contains_key("x"));
    }
    assert_eq!(get(&c, "/lang/de", &[]).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_page_has_a_strict_policy_and_no_inline_script() {
    let c = config();
    for path in [
        "/",
        "/alice",
        "/login",
        "/signup",
        "/account",
        "/dashboard",
        "/overlay/ot_abc/alerts",
        "/overlay/ot_abc/goal",
        "/overlay/ot_abc/chat",
        "/overlay/ot_abc/competition",
    ] {
        let r = get(&c, path, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert!(
            csp.contains("connect-src 'self' https://edge.example:8443;"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("base-uri 'none'"));
        assert_eq!(r.headers[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        // Every script element either loads a file from /assets/ or is the JSON data block.
        for tag in r.body.split("<script").skip(1) {
            let open = &tag[..tag.find('>').unwrap()];
            assert!(
                open.starts_with(" src=\"/assets/")
                    || open == " type=\"application/json\" id=\"boot\"",
                "{path}: <script{open}>"
            );
        }
    }
}

#[tokio::test]
async fn channel_names_are_escaped_and_reserved_paths_are_not_channels() {
    let c = config();
    let r = get(&c, "/alice_01", &[("accept-language", "en")]).await;
    assert!(r.body.contains("<title>alice_01 on Potok</title>"));
    assert!(r.body.contains(r#""channel":"alice_01""#));
    assert!(r.body.contains("https://edge.example:8443"));
    for bad in [
        "/%3Cscript%3E",
        "/Alice",
        "/ab",
        "/api",
        "/pay",
        "/metrics",
        "/healthz",
        "/readyz",
        "/live",
    ] {
        let r = get(&c, bad, &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}");
        assert!(!r.body.contains("<script>"), "{bad}");
    }
    for bad in ["/overlay/ot_abc/other", "/overlay/a%3Cb/alerts"] {
        assert_eq!(
            get(&c, bad, &[]).await.status,
            StatusCode::NOT_FOUND,
            "{bad}"
        );
    }
    // The API's paths are the control plane's: nothing here answers them.
    for api in ["/api/v1/me", "/api/v1/realtime", "/pay/sandbox/1"] {
        assert_eq!(
            get(&c, api, &[]).await.status,
            StatusCode::NOT_FOUND,
            "{api}"
        );
    }
}

#[tokio::test]
async fn assets_are_embedded_with_immutable_caching_by_hash_and_etags() {
    let c = config();
    let page = get(&c, "/alice", &[]).await;
    let start = page.body.find("/assets/hls.min.js?v=").unwrap();
    let url = &page.body[start..start + page.body[start..].find('"').unwrap()];
    let hash = url.rsplit('=').next().unwrap();
    assert_eq!(hash.len(), 16);
    let r = get(&c, url, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        r.headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert!(r.body.len() > 100_000, "hls.js is vendored whole");
    let etag = r.headers[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{hash}\""));
    // Without the current hash: revalidate, and a matching ETag gets a 304.
    let stale = get(&c, "/assets/hls.min.js?v=0000", &[]).await;
    assert_eq!(stale.headers[header::CACHE_CONTROL], "no-cache");
    let same = get(&c, "/assets/hls.min.js", &[("if-none-match", &etag)]).await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    assert!(same.body.is_empty());
    let license = get(&c, "/assets/hls.js.LICENSE", &[]).await;
    assert!(
        license.body.contains("Apache License") || license.body.contains("Copyright"),
        "{}",
        license.body
    );
    for bad in [
        "/assets/../Cargo.toml",
        "/assets/%2e%2e%2fCargo.toml",
        "/assets/nope.js",
    ] {
        assert_eq!(
            get(&c, bad, &[]).await.status,
            StatusCode::NOT_FOUND,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn disabled_web_serves_nothing() {
    let mut c = config();
    c.web.enabled = false;
    assert_eq!(get(&c, "/", &[]).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_an_edge_url_the_edge_is_on_the_pages_host() {
    let mut c = Config::default();
    c.edge.http_listen = "0.0.0.0:8080".parse().unwrap();
    let r = get(&c, "/alice", &[("host", "192.0.2.7:8090")]).await;
    assert!(
        r.body.contains(r#""edge":"http://192.0.2.7:8080""#),
        "{}",
        r.body
    );
    // A Host header that is not a name falls back to node.public_host.
    let r = get(&c, "/alice", &[("host", "a b\"c")]).await;
    assert!(r.body.contains(r#""edge":"http://localhost:8080""#));
}
