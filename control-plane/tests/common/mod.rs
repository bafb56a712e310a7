//! Test databases: a fresh SQLite file, or a fresh PostgreSQL database created on the
//! machine's server (`POTOK_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/test`)
//! and dropped afterwards.

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
