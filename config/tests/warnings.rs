//! Settings that validate but are probably a mistake are reported as warnings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use potok_config::{Config, Role, Secret};

#[test]
fn an_origin_open_beyond_loopback_without_a_cluster_secret_is_warned_about() {
    let mut c = Config::default();
    let w = c.warnings(&[Role::Origin]);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].path, "origin.http_listen");
    assert!(w[0].message.contains("cluster.secret"), "{}", w[0].message);

    // `potok all` makes up a secret; loopback or a secret silence it too.
    assert!(c.warnings(&Role::ALL).is_empty());
    c.origin.http_listen = "127.0.0.1:8081".parse().unwrap();
    assert!(c.warnings(&[Role::Origin]).is_empty());
    c.origin.http_listen = "0.0.0.0:8081".parse().unwrap();
    c.cluster.secret = Some(Secret::new("sixteen-chars-or-more"));
    assert!(c.warnings(&[Role::Origin]).is_empty());
}

#[test]
fn the_idle_timeout_must_outlast_held_requests() {
    let mut c = Config::default();
    c.http.idle_timeout = "5s".parse().unwrap();
    let e = c.validate(&[Role::Origin]).unwrap_err().to_string();
    assert!(
        e.contains("http.idle_timeout") && e.contains("segment_target"),
        "{e}"
    );
    let e = c
        .validate(&[Role::Edge, Role::Origin])
        .unwrap_err()
        .to_string();
    assert!(e.contains("hold_timeout"), "{e}");
    c.http.idle_timeout = "60s".parse().unwrap();
    c.validate(&[Role::Edge, Role::Origin]).unwrap();
}

#[test]
fn an_edge_pulling_without_the_cluster_secret_is_warned_about() {
    let mut c = Config::default();
    c.edge.upstream.origins = vec!["http://origin-1:8081".into()];
    let w = c.warnings(&[Role::Edge]);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].path, "cluster.secret");
    c.cluster.secret = Some(Secret::new("sixteen-chars-or-more"));
    assert!(c.warnings(&[Role::Edge]).is_empty());
}
