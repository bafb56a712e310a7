//! Limits and cross-field rules that types alone cannot express. Every problem is reported,
//! not only the first, each under the path of the field to change.

use std::time::Duration;

use crate::{ByteSize, Config, ConfigError, FieldError, ListenAddr, Role};

impl Config {
    /// Checks limits and cross-field rules for a process that runs `roles`.
    pub fn validate(&self, roles: &[Role]) -> Result<(), ConfigError> {
        let mut v = Problems::default();
        let runs = |r: Role| roles.contains(&r);

        let name = &self.node.name;
        if name.is_empty()
            || name.len() > 63
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            v.add(
                "node.name",
                format!("expected 1-63 letters, digits, '.', '_' or '-', got {name:?}"),
            );
        }
        if self.node.data_dir.as_os_str().is_empty() {
            v.add("node.data_dir", "must not be empty");
        }
        let host = &self.node.public_host;
        if host.is_empty() || host.contains(['/', ' ', '?', '#', '@']) {
            v.add(
                "node.public_host",
                format!("expected a host name or IP, got {host:?}"),
            );
        }

        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.filter) {
            v.add(
                "log.filter",
                format!(
                    "not a valid filter ({e}), expected e.g. \"info\" or \"potok_edge=debug,info\""
                ),
            );
        }

        v.duration(
            "shutdown.drain_timeout",
            self.shutdown.drain_timeout.get(),
            Duration::from_millis(1),
            Duration::from_secs(3600),
        );

        if !(1..=1_000_000).contains(&self.http.max_connections) {
            v.add(
                "http.max_connections",
                format!("expected 1 to 1000000, got {}", self.http.max_connections),
            );
        }
        v.duration(
            "http.header_read_timeout",
            self.http.header_read_timeout.get(),
            Duration::from_millis(100),
            Duration::from_secs(600),
        );
        v.duration(
            "http.idle_timeout",
            self.http.idle_timeout.get(),
            Duration::from_secs(1),
            Duration::from_secs(3600),
        );
        v.size(
            "http.max_header_bytes",
            self.http.max_header_bytes,
            ByteSize::kib(4),
            ByteSize::mib(1),
        );
        v.duration(
            "http.readiness_timeout",
            self.http.readiness_timeout.get(),
            Duration::from_millis(10),
            Duration::from_secs(60),
        );

        if runs(Role::Origin) {
            let o = &self.origin;
            match (&o.tls.cert_file, &o.tls.key_file) {
                (Some(_), None) => v.add(
                    "origin.tls.key_file",
                    "must be set when origin.tls.cert_file is",
                ),
                (None, Some(_)) => v.add(
                    "origin.tls.cert_file",
                    "must be set when origin.tls.key_file is",
                ),
                _ => {}
            }
            v.duration(
                "origin.srt.latency",
                o.srt.latency.get(),
                Duration::from_millis(20),
                Duration::from_secs(10),
            );
            if let Some(p) = &o.srt.passphrase
                && !(10..=79).contains(&p.expose().len())
            {
                v.add("origin.srt.passphrase", "must be 10 to 79 characters");
            }
            if o.srt.max_bitrate_kbps < 100 {
                v.add("origin.srt.max_bitrate_kbps", "must be at least 100");
            }
            for (i, s) in o.streams.iter().enumerate() {
                if let Some(p) = &s.srt_passphrase
                    && !(10..=79).contains(&p.expose().len())
                {
                    v.add(
                        &format!("origin.streams[{i}].srt_passphrase"),
                        "must be 10 to 79 characters",
                    );
                }
            }
            if o.max_ingest_connections == 0 {
                v.add("origin.max_ingest_connections", "must be at least 1");
            }
            v.size(
                "origin.max_rtmp_message_bytes",
                o.max_rtmp_message_bytes,
                ByteSize::kib(64),
                ByteSize::mib(16),
            );
            v.duration(
                "origin.ingest_timeout",
                o.ingest_timeout.get(),
                Duration::from_secs(1),
                Duration::from_secs(600),
            );
            let t = &o.transcode;
            if t.encoder != "auto" && !crate::ENCODERS.contains(&t.encoder.as_str()) {
                v.add(
                    "origin.transcode.encoder",
                    format!("must be \"auto\" or one of {}", crate::ENCODERS.join(", ")),
                );
            }
            if t.preset.is_empty() {
                v.add("origin.transcode.preset", "must not be empty");
            }
            if t.threads > 64 {
                v.add("origin.transcode.threads", "must be at most 64");
            }
            v.duration(
                "origin.transcode.max_lag",
                t.max_lag.get(),
                Duration::from_millis(500),
                Duration::from_secs(60),
            );
            let mut rung_names = std::collections::HashSet::new();
            for (i, r) in t.rungs.iter().enumerate() {
                let f = |field: &str| format!("origin.transcode.rungs[{i}].{field}");
                if r.name.is_empty()
                    || r.name.len() > 32
                    || !r
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    v.add(&f("name"), "must be 1-32 letters, digits, '-' or '_'");
                } else if r.name == "source" {
                    v.add(&f("name"), "\"source\" is the untouched input's rendition");
                } else if !rung_names.insert(r.name.as_str()) {
                    v.add(&f("name"), "is used by another rung");
                }
                if !(16..=4320).contains(&r.height) {
                    v.add(&f("height"), "must be 16 to 4320");
                }
                if !(r.max_fps == 0.0 || (1.0..=240.0).contains(&r.max_fps)) {
                    v.add(&f("max_fps"), "must be 0 (the source's) or 1 to 240");
                }
                if !(50..=100_000).contains(&r.bitrate_kbps) {
                    v.add(&f("bitrate_kbps"), "must be 50 to 100000");
                }
                if r.max_bitrate_kbps < r.bitrate_kbps {
                    v.add(&f("max_bitrate_kbps"), "must be at least bitrate_kbps");
                }
                if !["", "baseline", "main", "high"].contains(&r.profile.as_str()) {
                    v.add(&f("profile"), "must be baseline, main or high");
                }
            }
            let h = &o.hls;
            v.duration(
                "origin.hls.part_target",
                h.part_target.get(),
                Duration::from_millis(50),
                Duration::from_secs(5),
            );
            v.duration(
                "origin.hls.segment_target",
                h.segment_target.get(),
                Duration::from_secs(1),
                Duration::from_secs(30),
            );
            if h.segment_target.get() < 2 * h.part_target.get() {
                v.add(
                    "origin.hls.segment_target",
                    format!(
                        "must be at least twice origin.hls.part_target ({})",
                        h.part_target
                    ),
                );
            }
            if !(6..=1000).contains(&h.window_segments) {
                v.add(
                    "origin.hls.window_segments",
                    format!("expected 6 to 1000, got {}", h.window_segments),
                );
            }
            v.size(
                "origin.hls.max_window_bytes",
                h.max_window_bytes,
                ByteSize::mib(1),
                ByteSize(u64::MAX),
            );
            if h.max_held_requests == 0 {
                v.add("origin.hls.max_held_requests", "must be at least 1");
            }
            v.duration(
                "origin.hls.reconnect_grace",
                h.reconnect_grace.get(),
                Duration::ZERO,
                Duration::from_secs(3600),
            );
            v.duration(
                "origin.hls.ended_retention",
                h.ended_retention.get(),
                Duration::ZERO,
                Duration::from_secs(86_400),
            );
            let mut names = std::collections::HashSet::new();
            let mut keys = std::collections::HashSet::new();
            for (i, s) in o.streams.iter().enumerate() {
                if s.name.is_empty()
                    || s.name.len() > 64
                    || !s
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    v.add(
                        &format!("origin.streams[{i}].name"),
                        format!(
                            "expected 1-64 letters, digits, '-' or '_', got {:?}",
                            s.name
                        ),
                    );
                } else if !names.insert(s.name.as_str()) {
                    v.add(
                        &format!("origin.streams[{i}].name"),
                        format!("{:?} is listed twice", s.name),
                    );
                }
                let key = s.key.expose();
                if key.len() < 8
                    || key.len() > 256
                    || !key
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'?')
                {
                    v.add(
                        &format!("origin.streams[{i}].key"),
                        "expected 8-256 printable characters without '/' or '?'",
                    );
                } else if key == s.name {
                    v.add(
                        &format!("origin.streams[{i}].key"),
                        "must differ from the public name",
                    );
                } else if !keys.insert(key) {
                    v.add(
                        &format!("origin.streams[{i}].key"),
                        "the same key is listed for another stream",
                    );
                }
            }
            // A held request moves no byte until it is answered (at most three target
            // durations): the idle watchdog must not cut it first.
            if self.http.idle_timeout.get() <= 3 * h.segment_target.get() {
                v.add(
                    "http.idle_timeout",
                    format!(
                        "must be longer than 3 × origin.hls.segment_target ({}), the longest \
                         an origin holds a request",
                        crate::HumanDuration(3 * h.segment_target.get())
                    ),
                );
            }
            if o.archive.queue == 0 {
                v.add("origin.archive.queue", "must be at least 1");
            }
        }
        self.validate_storage(&mut v, runs(Role::Origin), runs(Role::Edge));

        if runs(Role::Edge) {
            v.size(
                "edge.cache.max_bytes",
                self.edge.cache.max_bytes,
                ByteSize::mib(1),
                ByteSize(u64::MAX),
            );
            match (&self.edge.tls.cert_file, &self.edge.tls.key_file) {
                (Some(_), None) => v.add(
                    "edge.tls.key_file",
                    "must be set when edge.tls.cert_file is",
                ),
                (None, Some(_)) => v.add(
                    "edge.tls.cert_file",
                    "must be set when edge.tls.key_file is",
                ),
                _ => {}
            }
            let up = &self.edge.upstream;
            if up.origins.is_empty()
                && !runs(Role::Origin)
                && self.cluster.control_plane_url.is_none()
            {
                v.add("edge.upstream.origins", "at least one origin URL is required when the edge runs without an origin in the same process or a cluster.control_plane_url to ask");
            }
            for (i, url) in up.origins.iter().enumerate() {
                if let Err(why) = check_http_url(url) {
                    v.add(&format!("edge.upstream.origins[{i}]"), why);
                }
            }
            v.duration(
                "edge.upstream.connect_timeout",
                up.connect_timeout.get(),
                Duration::from_millis(1),
                Duration::from_secs(60),
            );
            v.duration(
                "edge.upstream.read_timeout",
                up.read_timeout.get(),
                Duration::from_millis(1),
                Duration::from_secs(600),
            );
            v.duration(
                "edge.upstream.hold_timeout",
                up.hold_timeout.get(),
                Duration::from_millis(1),
                Duration::from_secs(600),
            );
            if self.http.idle_timeout.get() <= up.hold_timeout.get() {
                v.add(
                    "http.idle_timeout",
                    format!(
                        "must be longer than edge.upstream.hold_timeout ({}), the longest a \
                         viewer's request waits on an origin",
                        up.hold_timeout
                    ),
                );
            }
            if self.edge.max_waiters == 0 {
                v.add("edge.max_waiters", "must be at least 1");
            }
            if let Some(key) = &self.edge.signing.key
                && key.expose().len() < 32
            {
                v.add("edge.signing.key", "must be at least 32 characters");
            }
            if !self.edge.signing.private_streams.is_empty() && self.edge.signing.key.is_none() {
                v.add("edge.signing.private_streams", "needs edge.signing.key");
            }
        }

        if runs(Role::ControlPlane) {
            if let Some(url) = &self.control_plane.database.url {
                match url.scheme() {
                    Some("sqlite" | "postgres" | "postgresql") => {}
                    _ => v.add(
                        "control_plane.database.url",
                        format!("expected sqlite://PATH or postgres://USER@HOST/DB, got {url}"),
                    ),
                }
            }
            let cp = &self.control_plane;
            v.duration(
                "control_plane.heartbeat_interval",
                cp.heartbeat_interval.get(),
                Duration::from_millis(200),
                Duration::from_secs(60),
            );
            if cp.node_timeout.get() < cp.heartbeat_interval.get() * 2 {
                v.add(
                    "control_plane.node_timeout",
                    "must be at least twice control_plane.heartbeat_interval",
                );
            }
            if cp.auth_failures_per_minute == 0 {
                v.add(
                    "control_plane.auth_failures_per_minute",
                    "must be at least 1",
                );
            }
            if cp.signups_per_hour == 0 {
                v.add("control_plane.signups_per_hour", "must be at least 1");
            }
            if cp.password_hash_concurrency > 256 {
                v.add("control_plane.password_hash_concurrency", "must be 0-256");
            }
            if self.control_plane.database.max_connections == 0 {
                v.add(
                    "control_plane.database.max_connections",
                    "must be at least 1",
                );
            }
            for (path, message) in cp.payments.problems() {
                v.add(&format!("control_plane.payments.{path}"), message);
            }
        }

        if let Some(url) = &self.web.edge_url
            && !url.parse::<http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            })
        {
            v.add(
                "web.edge_url",
                format!("expected a URL like \"https://edge.potok.example\", got {url:?}"),
            );
        }
        if !matches!(self.web.default_language.as_str(), "ru" | "en") {
            v.add(
                "web.default_language",
                format!(
                    "expected \"ru\" or \"en\", got {:?}",
                    self.web.default_language
                ),
            );
        }
        if let Some(secret) = &self.cluster.secret
            && secret.expose().chars().count() < 16
        {
            v.add("cluster.secret", "must be at least 16 characters");
        }
        if let Some(token) = &self.metrics.token
            && (token.expose().chars().count() < 16
                || !token.expose().bytes().all(|b| b.is_ascii_graphic()))
        {
            v.add(
                "metrics.token",
                "must be at least 16 printable characters without spaces",
            );
        }
        if let Some(url) = &self.cluster.control_plane_url
            && let Err(why) = check_http_url(url)
        {
            v.add("cluster.control_plane_url", why);
        }
        if self.cluster.control_plane_url.is_some()
            && self.cluster.secret.is_none()
            && (runs(Role::Origin) || runs(Role::Edge))
        {
            v.add(
                "cluster.secret",
                "is needed to talk to cluster.control_plane_url",
            );
        }

        // Two listeners of this process on one port would fail at bind time with a less
        // helpful message; say which fields collide instead.
        let mut listeners: Vec<(&str, ListenAddr, bool)> = Vec::new();
        if runs(Role::Origin) {
            listeners.push(("origin.http_listen", self.origin.http_listen, true));
            listeners.push(("origin.rtmp_listen", self.origin.rtmp_listen, true));
            if self.origin.tls.cert_file.is_some() || self.origin.tls.self_signed {
                listeners.push(("origin.rtmps_listen", self.origin.rtmps_listen, true));
            }
            listeners.push(("origin.srt_listen", self.origin.srt_listen, false));
        }
        if runs(Role::Edge) {
            listeners.push(("edge.http_listen", self.edge.http_listen, true));
            listeners.push(("edge.https_listen", self.edge.https_listen, true));
        }
        if runs(Role::ControlPlane) {
            listeners.push(("control_plane.listen", self.control_plane.listen, true));
        }
        if let Some(addr) = self.metrics.listen {
            listeners.push(("metrics.listen", addr, true));
        }
        for (i, (a_name, a, a_tcp)) in listeners.iter().enumerate() {
            for (b_name, b, b_tcp) in &listeners[i + 1..] {
                if a_tcp == b_tcp && a.conflicts_with(*b) {
                    v.add(
                        b_name,
                        format!("port {} is already used by {a_name}", b.get().port()),
                    );
                }
            }
        }

        v.finish()
    }
}

impl Config {
    /// Settings that are allowed but probably not what the operator wants, for a process
    /// that runs `roles`: shown by `potok config check` and logged at start.
    pub fn warnings(&self, roles: &[Role]) -> Vec<FieldError> {
        let mut w = Problems::default();
        // `potok all` makes up a cluster secret when it runs its own control plane.
        let secret_made_up = roles.contains(&Role::ControlPlane)
            && roles.contains(&Role::Origin)
            && self.cluster.control_plane_url.is_none();
        if roles.contains(&Role::Origin)
            && self.cluster.secret.is_none()
            && !secret_made_up
            && !self.origin.http_listen.get().ip().is_loopback()
        {
            w.add(
                "origin.http_listen",
                format!(
                    "{} is reachable beyond this machine and cluster.secret is unset: anyone who \
                     reaches it can read every stream, private ones included, around the edges' \
                     token checks; set cluster.secret (edges send it) or listen on 127.0.0.1",
                    self.origin.http_listen
                ),
            );
        }
        if roles.contains(&Role::Edge)
            && !roles.contains(&Role::Origin)
            && !self.edge.upstream.origins.is_empty()
            && self.cluster.secret.is_none()
        {
            w.add(
                "cluster.secret",
                "is unset: the edge pulls without credentials, so origins that have a \
                 cluster.secret (as they should when reachable beyond loopback) answer 401",
            );
        }
        if roles.contains(&Role::Origin) || roles.contains(&Role::Edge) {
            self.storage_warnings(&mut w);
        }
        w.0
    }

    fn storage_warnings(&self, w: &mut Problems) {
        use crate::storage::{endpoint_host, host_in_russia, region_in_russia};
        let s3 = &self.storage.s3;
        if self.storage.backend != crate::StorageBackend::S3 {
            return;
        }
        let host = endpoint_host(&s3.endpoint);
        if !host_in_russia(host) {
            w.add(
                "storage.s3.endpoint",
                format!(
                    "{host:?} is not a storage service known to be in Russia: recordings may \
                     leave the country (data localization); use e.g. storage.yandexcloud.net, \
                     hb.ru-msk.vkcloud-storage.ru or s3.ru-1.storage.selcdn.ru"
                ),
            );
        }
        if !region_in_russia(&s3.region) {
            w.add(
                "storage.s3.region",
                format!(
                    "{:?} is not a Russian region (expected e.g. ru-central1, ru-msk, ru-1): \
                     recordings may leave the country (data localization)",
                    s3.region
                ),
            );
        }
    }

    fn validate_storage(&self, v: &mut Problems, origin: bool, edge: bool) {
        let st = &self.storage;
        if !(origin || edge) {
            return;
        }
        if st.backend == crate::StorageBackend::S3 {
            let s3 = &st.s3;
            if !(s3.endpoint.starts_with("https://") || s3.endpoint.starts_with("http://"))
                || crate::storage::endpoint_host(&s3.endpoint).is_empty()
            {
                v.add(
                    "storage.s3.endpoint",
                    format!(
                        "expected an https:// URL such as https://storage.yandexcloud.net, got {:?}",
                        s3.endpoint
                    ),
                );
            }
            if s3.region.is_empty() {
                v.add("storage.s3.region", "must be set (e.g. ru-central1)");
            }
            let bucket_ok = (3..=63).contains(&s3.bucket.len())
                && s3
                    .bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
            if !bucket_ok {
                v.add(
                    "storage.s3.bucket",
                    format!(
                        "expected 3-63 lowercase letters, digits, '-' or '.', got {:?}",
                        s3.bucket
                    ),
                );
            }
            if s3.access_key_id.is_none() {
                v.add(
                    "storage.s3.access_key_id",
                    "must be set with backend = \"s3\"",
                );
            }
            if s3.secret_access_key.is_none() {
                v.add(
                    "storage.s3.secret_access_key",
                    "must be set with backend = \"s3\"",
                );
            }
            if s3.multipart_part_size.bytes() < 5 * 1024 * 1024 {
                v.add(
                    "storage.s3.multipart_part_size",
                    "must be at least 5MiB (an S3 limit)",
                );
            }
            if s3.multipart_threshold.bytes() < s3.multipart_part_size.bytes() {
                v.add(
                    "storage.s3.multipart_threshold",
                    "must be at least storage.s3.multipart_part_size",
                );
            }
            v.duration(
                "storage.s3.timeout",
                s3.timeout.get(),
                Duration::from_millis(100),
                Duration::from_secs(3600),
            );
            if st.path.is_some() {
                v.add(
                    "storage.path",
                    "is for backend = \"local\"; remove it with backend = \"s3\"",
                );
            }
            if origin && self.origin.archive.path.is_some() {
                v.add(
                    "origin.archive.path",
                    "the archive now goes to storage (backend = \"s3\"); remove origin.archive.path",
                );
            }
            if edge && self.edge.archive_path.is_some() {
                v.add(
                    "edge.archive_path",
                    "the edge now reads storage (backend = \"s3\"); remove edge.archive_path",
                );
            }
        } else if let (Some(a), Some(b)) = (&st.path, &self.origin.archive.path)
            && origin
            && a != b
        {
            v.add(
                "origin.archive.path",
                "differs from storage.path: set only storage.path (origin.archive.path is its old name)",
            );
        }
        if origin && st.spool.max_bytes.bytes() < 1024 * 1024 {
            v.add("storage.spool.max_bytes", "must be at least 1MiB");
        }
        let r = &st.recordings;
        if origin {
            v.duration(
                "storage.recordings.max_duration",
                r.max_duration.get(),
                Duration::from_secs(1),
                Duration::from_secs(7 * 24 * 3600),
            );
            v.duration(
                "storage.recordings.sweep_interval",
                r.sweep_interval.get(),
                Duration::from_secs(1),
                Duration::from_secs(7 * 24 * 3600),
            );
            if r.dvr_window.get() > Duration::from_secs(24 * 3600) {
                v.add("storage.recordings.dvr_window", "must be at most 24h");
            }
            if !r.thumbnail_interval.get().is_zero()
                && r.thumbnail_interval.get() < Duration::from_secs(1)
            {
                v.add(
                    "storage.recordings.thumbnail_interval",
                    "must be 0 (off) or at least 1s",
                );
            }
            for (i, s) in r.streams.iter().enumerate() {
                if !crate::storage::name_ok(&s.name) {
                    v.add(
                        &format!("storage.recordings.streams[{i}].name"),
                        format!("expected letters, digits, '-' or '_', got {:?}", s.name),
                    );
                }
            }
            for (i, name) in r.renditions.iter().enumerate() {
                if !crate::storage::name_ok(name) {
                    v.add(
                        &format!("storage.recordings.renditions[{i}]"),
                        format!("expected letters, digits, '-' or '_', got {name:?}"),
                    );
                }
            }
        }
    }
}

/// Checks that `url` is an absolute `http://` URL with a host (nodes talk plain HTTP inside
/// a cluster; TLS is for viewers and streamers).
fn check_http_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("expected a URL like \"http://origin-1:8081\", got {url:?}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(a)) if !a.host().is_empty() => Ok(()),
        _ => Err(format!(
            "expected a URL like \"http://origin-1:8081\", got {url:?}"
        )),
    }
}

#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn duration(&mut self, path: &str, d: Duration, min: Duration, max: Duration) {
        if d < min || d > max {
            self.add(
                path,
                format!(
                    "expected between {} and {}, got {}",
                    crate::HumanDuration(min),
                    crate::HumanDuration(max),
                    crate::HumanDuration(d)
                ),
            );
        }
    }

    fn size(&mut self, path: &str, s: ByteSize, min: ByteSize, max: ByteSize) {
        if s < min {
            self.add(path, format!("expected at least {min}, got {s}"));
        } else if s > max {
            self.add(path, format!("expected at most {max}, got {s}"));
        }
    }

    fn finish(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.0))
        }
    }
}
