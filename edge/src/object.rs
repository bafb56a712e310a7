//! What a viewer's request asks for: the path checked and split, the object class, and the
//! cache key — the path plus the normalized LL-HLS directives for playlists, the bare path for
//! media (so a signed URL's token never splits the cache).

use axum::http::StatusCode;

/// The kinds of objects an edge serves, with their caching rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// `master.m3u8`.
    Master,
    /// A media playlist.
    Playlist,
    /// `init.mp4`, `init-N.mp4`.
    Init,
    /// `{msn}.m4s`.
    Segment,
    /// `{msn}.{part}.m4s`.
    Part,
}

impl Class {
    /// Label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Master => "master",
            Class::Playlist => "playlist",
            Class::Init => "init",
            Class::Segment => "segment",
            Class::Part => "part",
        }
    }

    /// Media objects never change once they exist.
    pub fn immutable(self) -> bool {
        matches!(self, Class::Init | Class::Segment | Class::Part)
    }
}

/// A checked request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// Public stream name.
    pub stream: String,
    /// Rendition, for everything but the master playlist.
    pub rendition: Option<String>,
    /// File name.
    pub file: String,
    /// Kind.
    pub class: Class,
    /// Segment number of a segment or part.
    pub msn: Option<u64>,
    /// Cache key.
    pub key: String,
    /// Path and query to ask the origin for.
    pub upstream: String,
    /// Whether the origin may hold the request (blocking reload, a part not yet complete).
    pub held: bool,
    /// The `token` query parameter, if any.
    pub token: Option<String>,
}

/// Longest path accepted.
pub const MAX_PATH: usize = 512;

fn segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Parses `path` (still percent-encoded, as received) and `query`.
pub fn parse(path: &str, query: Option<&str>) -> Result<Object, (StatusCode, &'static str)> {
    if path.len() > MAX_PATH || query.is_some_and(|q| q.len() > 1024) {
        return Err((StatusCode::URI_TOO_LONG, "URI too long"));
    }
    // No encoded characters are ever needed: refusing them refuses encoded traversal too.
    if path.contains('%') || path.contains('\\') {
        return Err((StatusCode::BAD_REQUEST, "invalid path"));
    }
    let rest = path
        .strip_prefix("/live/")
        .ok_or((StatusCode::NOT_FOUND, "not found"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    if !parts.iter().all(|p| segment_ok(p)) {
        return Err((StatusCode::BAD_REQUEST, "invalid path"));
    }
    let (stream, rendition, file) = match parts.as_slice() {
        [s, f] => (*s, None, *f),
        [s, r, f] => (*s, Some(*r), *f),
        _ => return Err((StatusCode::NOT_FOUND, "not found")),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    let (class, msn) = match (rendition, file) {
        (None, "master.m3u8") => (Class::Master, None),
        (Some(_), "index.m3u8" | "dvr.m3u8") => (Class::Playlist, None),
        (Some(_), f)
            if f == "init.mp4"
                || (f.starts_with("init-")
                    && f.ends_with(".mp4")
                    && digits(&f[5..f.len() - 4])) =>
        {
            (Class::Init, None)
        }
        (Some(_), f) if f.ends_with(".m4s") => {
            let stem = &f[..f.len() - 4];
            match stem.split_once('.') {
                None if digits(stem) => (Class::Segment, stem.parse().ok()),
                Some((m, p)) if digits(m) && digits(p) => (Class::Part, m.parse().ok()),
                _ => return Err((StatusCode::NOT_FOUND, "not found")),
            }
        }
        _ => return Err((StatusCode::NOT_FOUND, "not found")),
    };

    let mut hls_msn = None;
    let mut hls_part = None;
    let mut skip = None;
    let mut token = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let number = |v: &str| {
            v.parse::<u64>().map_err(|_| {
                (
                    StatusCode::BAD_REQUEST,
                    "LL-HLS directives must be non-negative integers",
                )
            })
        };
        match k {
            "_HLS_msn" if class == Class::Playlist => hls_msn = Some(number(v)?),
            "_HLS_part" if class == Class::Playlist => hls_part = Some(number(v)?),
            "_HLS_skip" if class == Class::Playlist && matches!(v, "YES" | "v2") => {
                skip = Some(v.to_owned())
            }
            "token" => token = Some(v.to_owned()),
            _ => {} // neither forwarded nor part of the key
        }
    }
    let mut directives = Vec::new();
    if let Some(m) = hls_msn {
        directives.push(format!("_HLS_msn={m}"));
    }
    if let Some(p) = hls_part {
        directives.push(format!("_HLS_part={p}"));
    }
    if let Some(s) = &skip {
        directives.push(format!("_HLS_skip={s}"));
    }
    let upstream = if directives.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", directives.join("&"))
    };
    Ok(Object {
        stream: stream.to_owned(),
        rendition: rendition.map(str::to_owned),
        file: file.to_owned(),
        class,
        msn,
        key: upstream.clone(),
        held: hls_msn.is_some() || class == Class::Part,
        upstream,
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_keys() {
        let o = parse(
            "/live/s/source/index.m3u8",
            Some("_HLS_part=2&token=abc&_HLS_msn=07&x=1"),
        )
        .unwrap();
        assert_eq!(o.class, Class::Playlist);
        assert_eq!(o.key, "/live/s/source/index.m3u8?_HLS_msn=7&_HLS_part=2");
        assert_eq!(o.upstream, o.key);
        assert_eq!(o.token.as_deref(), Some("abc"));
        assert!(o.held);
        let p = parse("/live/s/source/5.3.m4s", Some("token=abc&_HLS_msn=1")).unwrap();
        assert_eq!(
            (p.class, p.msn, p.key.as_str()),
            (Class::Part, Some(5), "/live/s/source/5.3.m4s")
        );
        assert_eq!(
            parse("/live/s/source/5.m4s", None).unwrap().class,
            Class::Segment
        );
        assert_eq!(
            parse("/live/s/source/init-2.mp4", None).unwrap().class,
            Class::Init
        );
        assert_eq!(
            parse("/live/s/master.m3u8", None).unwrap().class,
            Class::Master
        );
        assert!(!parse("/live/s/source/index.m3u8", None).unwrap().held);
    }

    #[test]
    fn traversal_and_junk_are_refused() {
        for bad in [
            "/live/../etc/passwd",
            "/live/s/../../x.m4s",
            "/live/s/%2e%2e/x.m4s",
            "/live/s/source/..%2Fx.m4s",
            "/live/s//5.m4s",
            "/live/s/source/5.m4s/extra",
            "/live/s\\x/source/5.m4s",
        ] {
            assert!(parse(bad, None).is_err(), "{bad}");
        }
        for missing in [
            "/",
            "/live/s",
            "/live/s/source/x.m4s",
            "/live/s/source/1.2.3.m4s",
            "/live/s/source/init-x.mp4",
            "/other/s/master.m3u8",
        ] {
            assert_eq!(
                parse(missing, None).unwrap_err().0,
                StatusCode::NOT_FOUND,
                "{missing}"
            );
        }
        assert_eq!(
            parse(&format!("/live/{}", "a".repeat(600)), None)
                .unwrap_err()
                .0,
            StatusCode::URI_TOO_LONG
        );
        assert_eq!(
            parse("/live/s/source/index.m3u8", Some("_HLS_msn=-1"))
                .unwrap_err()
                .0,
            StatusCode::BAD_REQUEST
        );
    }
}
