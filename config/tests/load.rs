//! Loading: defaults, the shipped example files, environment overrides and every refusal
//! naming the field to fix.

// Test helpers may panic on anything unexpected: that is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use potok_config::{ByteSize, Config, ConfigError, LogFormat, Role, load, load_str};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn all(text: &str) -> Result<Config, ConfigError> {
    load_str(text, None, env(&[]), &Role::ALL)
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// The single refused field of a load, as `path: message`.
fn refused(result: Result<Config, ConfigError>) -> Vec<String> {
    match result {
        Ok(_) => panic!("expected the configuration to be refused"),
        Err(e) => {
            assert!(!e.fields().is_empty(), "expected field errors, got: {e}");
            e.fields().iter().map(ToString::to_string).collect()
        }
    }
}

#[test]
fn empty_file_gives_the_documented_defaults() {
    let c = all("").unwrap();
    assert_eq!(c.origin.http_listen.get().port(), 8081);
    assert_eq!(c.origin.rtmp_listen.get().port(), 1935);
    assert_eq!(c.origin.srt_listen.get().port(), 9000);
    assert_eq!(c.edge.http_listen.get().port(), 8080);
    assert_eq!(c.edge.https_listen.get().port(), 8443);
    assert_eq!(c.control_plane.listen.get().port(), 8090);
    assert_eq!(c.edge.cache.max_bytes, ByteSize::mib(512));
    assert_eq!(c.shutdown.drain_timeout.get(), Duration::from_secs(10));
    assert_eq!(c.log.format, LogFormat::Text);
    assert!(c.cluster.secret.is_none());
}

#[test]
fn example_files_load_for_their_roles() {
    let cases: [(&str, &[Role]); 4] = [
        ("potok.toml", &Role::ALL),
        ("origin.toml", &[Role::Origin]),
        ("edge.toml", &[Role::Edge]),
        ("control-plane.toml", &[Role::ControlPlane]),
    ];
    for (file, roles) in cases {
        let path = example(file);
        let c = load(Some(&path), env(&[]), roles).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!c.node.name.is_empty());
    }
    let edge = load(Some(&example("edge.toml")), env(&[]), &[Role::Edge]).unwrap();
    assert_eq!(edge.edge.cache.max_bytes, ByteSize(4 << 30));
    assert!(edge.edge.upstream.origins.is_empty());
    assert!(edge.cluster.control_plane_url.is_some());
}

#[test]
fn the_all_in_one_example_spells_out_the_defaults() {
    let from_file = load(Some(&example("potok.toml")), env(&[]), &Role::ALL).unwrap();
    assert_eq!(
        from_file.to_redacted_toml(),
        all("").unwrap().to_redacted_toml()
    );
}

#[test]
fn a_bad_size_names_its_field_and_the_expected_form() {
    let errs = refused(all("[edge.cache]\nmax_bytes = \"lots\"\n"));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("edge.cache.max_bytes: expected a size like \"512MiB\""),
        "{errs:?}"
    );
}

#[test]
fn bad_shapes_name_their_fields() {
    let cases = [
        (
            "[shutdown]\ndrain_timeout = 10\n",
            "shutdown.drain_timeout: expected a duration",
        ),
        (
            "[shutdown]\ndrain_timeout = \"soon\"\n",
            "shutdown.drain_timeout: expected a duration",
        ),
        (
            "[origin]\nhttp_listen = \"localhost:80\"\n",
            "origin.http_listen: expected an address",
        ),
        (
            "[origin]\nrtmp_listen = 1935\n",
            "origin.rtmp_listen: expected an address",
        ),
        (
            "[log]\nformat = \"xml\"\n",
            "log.format: unknown variant `xml`",
        ),
        (
            "[http]\nmax_connections = \"many\"\n",
            "http.max_connections: invalid type",
        ),
        (
            "[edge.upstream]\norigins = [\"http://a:1\", 5]\n",
            "edge.upstream.origins[1]: invalid type",
        ),
    ];
    for (text, want) in cases {
        let errs = refused(all(text));
        assert!(
            errs[0].starts_with(want),
            "{text:?}: got {errs:?}, want {want}"
        );
    }
}

#[test]
fn unknown_fields_are_refused_not_ignored() {
    let errs = refused(all("[edge.cache]\nmax_byte = \"1GiB\"\n"));
    assert!(errs[0].contains("unknown field `max_byte`"), "{errs:?}");
    assert!(errs[0].contains("edge.cache"), "{errs:?}");
    let errs = refused(all("[edgee]\n"));
    assert!(errs[0].contains("unknown field `edgee`"), "{errs:?}");
}

#[test]
fn every_validation_rule_names_its_field() {
    let text = r#"
        [node]
        name = "bad name!"
        data_dir = ""
        public_host = "a/b"
        [log]
        filter = "potok=[[["
        [shutdown]
        drain_timeout = "0s"
        [http]
        max_connections = 0
        header_read_timeout = "1ms"
        max_header_bytes = "1KiB"
        readiness_timeout = "2h"
        [edge.cache]
        max_bytes = "1KiB"
        [edge.tls]
        cert_file = "cert.pem"
        [edge.upstream]
        origins = ["ftp://x", "not a url"]
        connect_timeout = "0s"
        read_timeout = "1h"
        [control_plane.database]
        url = "mysql://x/y"
        max_connections = 0
        [cluster]
        secret = "short"
        control_plane_url = "control:8090"
    "#;
    let errs = refused(all(text));
    let paths: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
    for want in [
        "node.name",
        "node.data_dir",
        "node.public_host",
        "log.filter",
        "shutdown.drain_timeout",
        "http.max_connections",
        "http.header_read_timeout",
        "http.max_header_bytes",
        "http.readiness_timeout",
        "edge.cache.max_bytes",
        "edge.tls.key_file",
        "edge.upstream.origins[0]",
        "edge.upstream.origins[1]",
        "edge.upstream.connect_timeout",
        "edge.upstream.read_timeout",
        "control_plane.database.url",
        "control_plane.database.max_connections",
        "cluster.secret",
        "cluster.control_plane_url",
    ] {
        assert!(paths.contains(&want), "no error for {want} in {errs:#?}");
    }
    assert_eq!(paths.len(), 19, "{errs:#?}");
    // The secret's value is never echoed back.
    assert!(!errs.iter().any(|e| e.contains("short")), "{errs:#?}");
}

#[test]
fn role_specific_rules_apply_only_to_the_roles_that_run() {
    // A lone edge needs origins to pull from; the all-in-one process has its own origin.
    let errs = refused(load_str("", None, env(&[]), &[Role::Edge]));
    assert!(
        errs[0].starts_with("edge.upstream.origins: at least one origin URL"),
        "{errs:?}"
    );
    all("").unwrap();
    // Edge limits do not block an origin that never uses them.
    load_str(
        "[edge.cache]\nmax_bytes = \"1KiB\"\n",
        None,
        env(&[]),
        &[Role::Origin],
    )
    .unwrap();
}

#[test]
fn listeners_of_one_process_may_not_share_a_port() {
    let errs = refused(all("[edge]\nhttp_listen = \"127.0.0.1:8081\"\n"));
    assert_eq!(
        errs,
        ["edge.http_listen: port 8081 is already used by origin.http_listen"]
    );
    // TCP and UDP may share a number, and port 0 never collides.
    all("[origin]\nsrt_listen = \"0.0.0.0:8080\"\n").unwrap();
    all(
        "[origin]\nhttp_listen = \"127.0.0.1:0\"\n[edge]\nhttp_listen = \"127.0.0.1:0\"\n\
         [control_plane]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
}

#[test]
fn environment_overrides_win_over_the_file() {
    let c = load_str(
        "[edge.cache]\nmax_bytes = \"1GiB\"\n",
        None,
        env(&[
            ("POTOK_EDGE__CACHE__MAX_BYTES", "2GiB"),
            ("POTOK_LOG__FORMAT", "json"),
            ("POTOK_HTTP__MAX_CONNECTIONS", "77"),
            ("POTOK_NODE__NAME", "1234"),
            (
                "POTOK_EDGE__UPSTREAM__ORIGINS",
                "[\"http://o1:8081\",\"http://o2:8081\"]",
            ),
            ("POTOK_CLUSTER__SECRET", "0123456789abcdef0123"),
            // Not overrides: no section separator, or another program's prefix.
            ("POTOK_LOG", "debug"),
            ("POTOK_CONFIG", "/nowhere.toml"),
            ("OTHER__EDGE__X", "1"),
        ]),
        &Role::ALL,
    )
    .unwrap();
    assert_eq!(c.edge.cache.max_bytes, ByteSize(2 << 30));
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.http.max_connections, 77);
    assert_eq!(c.node.name, "1234");
    assert_eq!(
        c.edge.upstream.origins,
        ["http://o1:8081", "http://o2:8081"]
    );
    assert_eq!(c.cluster.secret.unwrap().expose(), "0123456789abcdef0123");
}

#[test]
fn bad_overrides_name_the_variable() {
    let errs = refused(load_str(
        "",
        None,
        env(&[("POTOK_EDGE__CACHE__MAX_BYTES", "huge")]),
        &Role::ALL,
    ));
    assert!(
        errs[0].starts_with("edge.cache.max_bytes: expected a size like \"512MiB\""),
        "{errs:?}"
    );
    assert!(
        errs[0].ends_with("(set by POTOK_EDGE__CACHE__MAX_BYTES)"),
        "{errs:?}"
    );

    let errs = refused(load_str(
        "",
        None,
        env(&[("POTOK_SHUTDOWN__DRAIN_TIMEOUT", "0s")]),
        &Role::ALL,
    ));
    assert!(
        errs[0].ends_with("(set by POTOK_SHUTDOWN__DRAIN_TIMEOUT)"),
        "{errs:?}"
    );

    let errs = refused(load_str(
        "",
        None,
        env(&[("POTOK_EDGE__CACHE__MAXBYTES", "1GiB")]),
        &Role::ALL,
    ));
    assert!(errs[0].contains("unknown field `maxbytes`"), "{errs:?}");

    // A section where a value belongs.
    let errs = refused(load_str(
        "",
        None,
        env(&[("POTOK_LOG__FORMAT__X", "1")]),
        &Role::ALL,
    ));
    assert!(errs[0].starts_with("log.format: "), "{errs:?}");
    assert!(
        errs[0].ends_with("(set by POTOK_LOG__FORMAT__X)"),
        "{errs:?}"
    );
    // A value where a section belongs.
    let err = load_str(
        "[log]\nformat = \"json\"\n",
        None,
        env(&[("POTOK_LOG__FORMAT__X", "1")]),
        &Role::ALL,
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::Env { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("POTOK_LOG__FORMAT__X: `log.format` is a value"),
        "{err}"
    );

    let err = load_str("", None, env(&[("POTOK_EDGE____X", "1")]), &Role::ALL).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("POTOK_EDGE____X: not a field path"),
        "{err}"
    );
}

#[test]
fn syntax_errors_name_the_file_and_line() {
    let err = load_str(
        "[edge\nx = 1\n",
        Some(Path::new("bad.toml")),
        env(&[]),
        &Role::ALL,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("bad.toml: not valid TOML"), "{msg}");
    assert!(msg.contains("line 1"), "{msg}");
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let err = load(
        Some(Path::new("/nonexistent/potok.toml")),
        env(&[]),
        &Role::ALL,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read config file /nonexistent/potok.toml"),
        "{err}"
    );
}

#[test]
fn the_effective_config_never_shows_secrets() {
    let c = all("[cluster]\nsecret = \"0123456789abcdef-SECRET\"\n\
         [control_plane.database]\nurl = \"postgres://potok:pa55word@db:5432/potok\"\n")
    .unwrap();
    let shown = c.to_redacted_toml();
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(!shown.contains("pa55word"), "{shown}");
    assert!(shown.contains("secret = \"<redacted>\""), "{shown}");
    assert!(
        shown.contains("postgres://potok:<redacted>@db:5432/potok"),
        "{shown}"
    );
    assert!(!format!("{c:?}").contains("pa55word"));
    // What is shown is itself a loadable configuration file.
    let again: toml::Table = shown.parse().unwrap();
    assert!(again.contains_key("edge"));
}

#[test]
fn origin_rules_name_their_fields() {
    let text = r#"
        [origin]
        max_ingest_connections = 0
        ingest_timeout = "0s"
        [origin.hls]
        part_target = "10ms"
        segment_target = "500ms"
        window_segments = 3
        max_window_bytes = "1KiB"
        max_held_requests = 0
        [origin.archive]
        queue = 0
        [[origin.streams]]
        name = "ok-name"
        key = "short"
        [[origin.streams]]
        name = "bad name/"
        key = "a-good-long-key"
        [[origin.streams]]
        name = "ok-name"
        key = "a-good-long-key"
        [[origin.streams]]
        name = "same-as-key"
        key = "same-as-key"
    "#;
    let errs = refused(load_str(text, None, env(&[]), &[Role::Origin]));
    let paths: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
    for want in [
        "origin.max_ingest_connections",
        "origin.ingest_timeout",
        "origin.hls.part_target",
        "origin.hls.segment_target",
        "origin.hls.window_segments",
        "origin.hls.max_window_bytes",
        "origin.hls.max_held_requests",
        "origin.archive.queue",
        "origin.streams[0].key",
        "origin.streams[1].name",
        "origin.streams[2].name",
        "origin.streams[2].key",
        "origin.streams[3].key",
    ] {
        assert!(paths.contains(&want), "no error for {want} in {errs:#?}");
    }
    // Keys are never echoed back.
    assert!(
        !errs
            .iter()
            .any(|e| e.contains("a-good-long-key") || e.contains("short\"")),
        "{errs:#?}"
    );
    // A segment target under twice the part target is refused even when both are in range.
    let errs = refused(load_str(
        "[origin.hls]\npart_target = \"1s\"\nsegment_target = \"1500ms\"\n",
        None,
        env(&[]),
        &[Role::Origin],
    ));
    assert_eq!(
        errs,
        ["origin.hls.segment_target: must be at least twice origin.hls.part_target (1s)"]
    );
}

#[test]
fn stream_keys_can_come_from_the_environment_and_are_redacted() {
    let c = load_str(
        "",
        None,
        env(&[(
            "POTOK_ORIGIN__STREAMS",
            "[{name=\"alice\",key=\"alice-secret-key-1\"}]",
        )]),
        &[Role::Origin],
    )
    .unwrap();
    assert_eq!(c.origin.streams[0].name, "alice");
    assert_eq!(c.origin.streams[0].key.expose(), "alice-secret-key-1");
    let shown = c.to_redacted_toml();
    assert!(!shown.contains("alice-secret-key-1"), "{shown}");
    assert!(shown.contains("name = \"alice\""), "{shown}");
}

#[test]
fn ladder_rules_name_their_rung() {
    let text = r#"
        [origin.transcode]
        encoder = "x264"
        preset = ""
        max_lag = "10ms"
        [[origin.transcode.rungs]]
        name = "source"
        height = 8
        bitrate_kbps = 10
        max_bitrate_kbps = 5
        [[origin.transcode.rungs]]
        name = "low"
        height = 360
        max_fps = 500.0
        bitrate_kbps = 800
        max_bitrate_kbps = 900
        profile = "extreme"
        [[origin.transcode.rungs]]
        name = "low"
        height = 240
        bitrate_kbps = 400
        max_bitrate_kbps = 400
    "#;
    let errs = refused(all(text));
    let paths: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "origin.transcode.encoder",
            "origin.transcode.preset",
            "origin.transcode.max_lag",
            "origin.transcode.rungs[0].name",
            "origin.transcode.rungs[0].height",
            "origin.transcode.rungs[0].bitrate_kbps",
            "origin.transcode.rungs[0].max_bitrate_kbps",
            "origin.transcode.rungs[1].max_fps",
            "origin.transcode.rungs[1].profile",
            "origin.transcode.rungs[2].name",
        ],
        "{errs:#?}"
    );
    // The default ladder is 720p, 480p and 360p.
    let c = all("").unwrap();
    let rungs: Vec<(&str, u32)> = c
        .origin
        .transcode
        .rungs
        .iter()
        .map(|r| (r.name.as_str(), r.height))
        .collect();
    assert_eq!(rungs, [("720p", 720), ("480p", 480), ("360p", 360)]);
}
