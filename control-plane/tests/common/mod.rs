//! Test databases: a fresh SQLite file, or a fresh PostgreSQL database created on the
//! machine's server (`POTOK_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/test`)
//! and dropped afterwards; and a control plane over real HTTP ([`start`], [`Cp`]).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use potok_control_plane::db::Db;
use sqlx::Connection;

pub const POSTGRES_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn postgres_admin_url() -> String {
    std::env::var("POTOK_TEST_POSTGRES").unwrap_or_else(|_| POSTGRES_DEFAULT.to_owned())
}

/// A database that disappears with it.
pub struct TestDb {
    pub db: Db,
    pub url: String,
    drop_pg: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("potok.db").display());
        let db = Db::open(&url, 4).await.unwrap();
        TestDb {
            db,
            url,
            drop_pg: None,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> TestDb {
        let url = fresh_postgres().await;
        let db = Db::open(&url, 4).await.unwrap();
        let name = url.rsplit('/').next().unwrap().to_owned();
        TestDb {
            db,
            url,
            drop_pg: Some(name),
            _dir: None,
        }
    }

    pub async fn cleanup(self) {
        self.db.close().await;
        if let Some(name) = self.drop_pg {
            drop_postgres(&name).await;
        }
    }
}

/// Creates an empty PostgreSQL database and returns its URL.
pub async fn fresh_postgres() -> String {
    let admin = postgres_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin}: {e} (scripts/services starts it)"));
    let name = format!(
        "potok_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

pub async fn drop_postgres(name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}

// ---- the control plane over real HTTP, shared by the API, chat and schemathesis tests ----

/// The cluster secret of the test control planes.
pub const SECRET: &str = "test-cluster-secret-0123";

/// A control plane serving on 127.0.0.1:0, stopped when dropped.
pub struct Cp {
    pub addr: std::net::SocketAddr,
    pub shutdown: tokio_util::sync::CancellationToken,
    pub metrics: potok_service::Metrics,
    _dir: tempfile::TempDir,
}

impl Drop for Cp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a control plane on SQLite in a temporary directory (or what `tune` says).
pub async fn start(tune: impl FnOnce(&mut potok_config::Config)) -> Cp {
    use potok_config::{Config, Role, Secret};
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.node.data_dir = dir.path().to_path_buf();
    config.control_plane.listen = "127.0.0.1:0".parse().unwrap();
    config.cluster.secret = Some(Secret::new(SECRET));
    // Subscription tests move time forward with run_subscription_renewals.
    config
        .control_plane
        .payments
        .subscriptions
        .allow_future_runs = true;
    tune(&mut config);
    config.validate(&[Role::ControlPlane]).unwrap();
    let ctx = potok_service::RoleContext {
        metrics: potok_service::Metrics::new(),
        shutdown: tokio_util::sync::CancellationToken::new(),
        readiness_timeout: std::time::Duration::from_secs(2),
    };
    let server = potok_control_plane::bind(&config, &ctx).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.run(ctx.shutdown.clone()));
    Cp {
        addr,
        shutdown: ctx.shutdown,
        metrics: ctx.metrics,
        _dir: dir,
    }
}

impl Cp {
    /// `method path` with an optional bearer token and JSON body: (status, JSON or the text).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        use bytes::Bytes;
        use http_body_util::{BodyExt, Full};
        let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            client.request(req.body(body).unwrap()),
        )
        .await
        .unwrap()
        .unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&bytes).into())
            })
        };
        (status, v)
    }

    /// Signs `name` up with `role` (as `admin` when given) and logs in: (the user, a token).
    pub async fn account(
        &self,
        name: &str,
        role: &str,
        admin: Option<&str>,
    ) -> (serde_json::Value, String) {
        let password = "a long password";
        let (s, user) = self
            .call(
                "POST",
                "/api/v1/users",
                admin,
                Some(serde_json::json!({"username": name, "password": password, "role": role})),
            )
            .await;
        assert_eq!(s, 201, "{user}");
        let (s, session) = self
            .call(
                "POST",
                "/api/v1/sessions",
                None,
                Some(serde_json::json!({"username": name, "password": password})),
            )
            .await;
        assert_eq!(s, 201, "{session}");
        (user, session["token"].as_str().unwrap().to_owned())
    }
}

/// The error code of an API error body.
pub fn code(v: &serde_json::Value) -> &str {
    v["code"].as_str().unwrap_or_default()
}

/// Polls `ok` every 50 ms until it holds; fails after `limit`.
pub async fn wait_for(limit: std::time::Duration, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !ok().await {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
