//! The database: the pool, write transactions, migrations, errors and the per-address rate
//! events every area shares, over SQLite (embedded) or PostgreSQL (clustered) through sqlx's
//! `Any` driver. Each area's queries live with the area, as `impl Db` blocks in its own
//! `repo.rs` (accounts, streams, cluster) or store (chat, notifications). The SQL is the common subset both
//! understand (`$N` parameters, BIGINT Unix-millisecond times, TEXT ids), so one code path
//! serves both, and the same repository tests run against both.

use std::str::FromStr;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

pub use crate::accounts::repo::{KeyInfo, TokenInfo};
pub use crate::streams::repo::{StreamFilter, StreamMeta};

use crate::model::User;
use crate::secrets::new_id;

/// Why a repository call failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A unique name is taken.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub(crate) type Result<T> = std::result::Result<T, RepoError>;

pub(crate) fn unique(e: sqlx::Error, what: &'static str) -> RepoError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => RepoError::Conflict(what),
        _ => RepoError::Db(e),
    }
}

/// Marks a query built at run time as safe: every dynamic part is a constant of this
/// module or a generated `$N` placeholder; user values only ever travel as bound parameters.
pub(crate) fn sql(s: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(s)
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The database.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    sqlite: bool,
}

/// What [`Db::create_account`] did.
#[derive(Debug)]
pub enum NewAccount {
    /// The account exists now (with `admin` when it was the installation's first).
    Created(User),
    /// It asked for a role only an admin may give, and was not the first account: nothing
    /// was created.
    NeedsAdmin,
}

/// How many rows a rate-limit attempt found, as [`Db::rate_attempt`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Within the limit: the attempt's row (give it to [`Db::rate_release`] when it turns
    /// out not to count, such as a right password).
    Allowed(String),
    /// Over the limit: refused, and its row is gone again.
    Refused,
}

impl Db {
    /// Connects to `url` (`sqlite://PATH` — created when missing — or `postgres://...`) and
    /// applies the migrations.
    pub async fn open(url: &str, max_connections: u32) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let url = if url.starts_with("sqlite:") && !url.contains('?') {
            format!("{url}?mode=rwc")
        } else {
            url.to_owned()
        };
        let sqlite = url.starts_with("sqlite:");
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // A writer waits this long for another writer instead of failing
                        // with `database is locked` (sqlx's default too; said here so it
                        // stays true).
                        sqlx::Executor::execute(&mut *conn, "PRAGMA busy_timeout = 5000").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        if sqlite {
            // Readers never wait for the writer; writers wait for each other a while.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| RepoError::Db(sqlx::Error::Migrate(Box::new(e))))?;
        Ok(Db { pool, sqlite })
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and then writes cannot
    /// wait for another writer (its snapshot would be stale) and fails with `database is
    /// locked` instead; an immediate one waits up to the busy timeout like any single write.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(if self.sqlite {
            self.pool.begin_with("BEGIN IMMEDIATE").await?
        } else {
            self.pool.begin().await?
        })
    }

    /// The pool, for the areas' own repositories (each area owns its tables).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether this is the embedded SQLite database (PostgreSQL otherwise).
    pub(crate) fn is_sqlite(&self) -> bool {
        self.sqlite
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- rate limits ----

    /// Counts an attempt of `kind` by `addr` before it is judged: its row is written first,
    /// then the rows since `since_ms` are counted, so parallel attempts see each other and at
    /// most `limit` of them are ever allowed in a window. Over the limit the row is deleted
    /// again (a refused attempt leaves nothing, so the rows per address stay bounded).
    pub async fn rate_attempt(
        &self,
        kind: &str,
        addr: &str,
        at_ms: i64,
        since_ms: i64,
        limit: i64,
    ) -> Result<Attempt> {
        let id = new_id();
        sqlx::query("INSERT INTO rate_events (id, kind, addr, at) VALUES ($1, $2, $3, $4)")
            .bind(&id)
            .bind(kind)
            .bind(addr)
            .bind(at_ms)
            .execute(&self.pool)
            .await?;
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM rate_events WHERE kind = $1 AND addr = $2 AND at > $3",
        )
        .bind(kind)
        .bind(addr)
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?;
        if n > limit {
            self.rate_release(&id).await?;
            return Ok(Attempt::Refused);
        }
        Ok(Attempt::Allowed(id))
    }

    /// Removes an attempt's row: it did not count after all.
    pub async fn rate_release(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM rate_events WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Attempts of `kind` by `addr` counted since `since_ms`.
    pub async fn rate_count(&self, kind: &str, addr: &str, since_ms: i64) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM rate_events WHERE kind = $1 AND addr = $2 AND at > $3",
        )
        .bind(kind)
        .bind(addr)
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// Deletes attempts of `kind` recorded before `before_ms`.
    pub async fn rate_forget_before(&self, kind: &str, before_ms: i64) -> Result<()> {
        sqlx::query("DELETE FROM rate_events WHERE kind = $1 AND at < $2")
            .bind(kind)
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
