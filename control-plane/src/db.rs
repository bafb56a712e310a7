//! The repository: every query the control plane makes, over SQLite (embedded) or
//! PostgreSQL (clustered) through sqlx's `Any` driver. The SQL is the common subset both
//! understand (`$N` parameters, BIGINT Unix-millisecond times, TEXT ids), so one code path
//! serves both, and the same repository tests run against both.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, FromRow};

use crate::model::{Node, Stream, StreamStatus, User, UserRole, now_ms};
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

type Result<T> = std::result::Result<T, RepoError>;

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

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- users ----

    /// Creates a user; `Conflict` when the username is taken.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: UserRole,
    ) -> Result<User> {
        let user = User {
            id: new_id(),
            username: username.to_owned(),
            role,
            created_at: now_ms(),
        };
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(user.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| unique(e, "username"))?;
        Ok(user)
    }

    /// Creates an account the way sign-up does, in one transaction: the first account of
    /// the installation claims the single `first_admin` row and becomes `admin`, whatever it
    /// asked for; concurrent first sign-ups cannot both claim it. A `role` that moderates is
    /// kept only when `may_moderate` (an admin asked) — otherwise such a request creates
    /// nothing unless it is the first account.
    pub async fn create_account(
        &self,
        username: &str,
        password_hash: &str,
        role: UserRole,
        may_moderate: bool,
    ) -> Result<NewAccount> {
        let mut user = User {
            id: new_id(),
            username: username.to_owned(),
            role,
            created_at: now_ms(),
        };
        let mut tx = self.begin_write().await?;
        let reserved: Option<(String,)> =
            sqlx::query_as("SELECT name FROM reserved_names WHERE name = $1")
                .bind(username)
                .fetch_optional(&mut *tx)
                .await?;
        if reserved.is_some() {
            return Err(RepoError::Conflict("username"));
        }
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(password_hash)
        .bind(UserRole::Viewer.as_str())
        .bind(user.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| unique(e, "username"))?;
        let first = sqlx::query(
            "INSERT INTO first_admin (slot, user_id) VALUES (1, $1) ON CONFLICT (slot) DO NOTHING",
        )
        .bind(&user.id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if first {
            user.role = UserRole::Admin;
        } else if role.moderates() && !may_moderate {
            tx.rollback().await?;
            return Ok(NewAccount::NeedsAdmin);
        }
        sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(user.role.as_str())
            .bind(&user.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(NewAccount::Created(user))
    }

    /// Whether the installation's first account (its admin) exists.
    pub async fn has_first_admin(&self) -> Result<bool> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT slot FROM first_admin WHERE slot = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Number of users.
    pub async fn count_users(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// A user and its password hash, by username.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<(User, String)>> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, username, role, created_at, password_hash FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|r| {
            let hash = r.password_hash.clone();
            r.into_user().map(|u| (u, hash))
        }))
    }

    /// A user by id.
    pub async fn user(&self, id: &str) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, username, role, created_at, password_hash FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(UserRow::into_user))
    }

    // ---- API tokens ----

    /// Stores a token's hash.
    pub async fn create_token(
        &self,
        user_id: &str,
        name: &str,
        token_hash: &str,
        expires_at: Option<i64>,
    ) -> Result<TokenInfo> {
        let info = TokenInfo {
            id: new_id(),
            name: name.to_owned(),
            created_at: now_ms(),
            expires_at,
        };
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&info.id)
        .bind(user_id)
        .bind(name)
        .bind(token_hash)
        .bind(info.created_at)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(info)
    }

    /// The user holding a live (unrevoked, unexpired) token with this hash.
    pub async fn user_by_token(&self, token_hash: &str) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT u.id, u.username, u.role, u.created_at, u.password_hash FROM api_tokens t \
             JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2)",
        )
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(UserRow::into_user))
    }

    /// A user's live tokens (never their values).
    pub async fn tokens(&self, user_id: &str) -> Result<Vec<TokenInfo>> {
        Ok(sqlx::query_as(
            "SELECT id, name, created_at, expires_at FROM api_tokens \
             WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes one of a user's tokens; whether it existed.
    pub async fn revoke_token(&self, user_id: &str, id: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    // ---- stream keys ----

    /// Stores a stream key's hash.
    pub async fn create_key(&self, user_id: &str, key_hash: &str, prefix: &str) -> Result<KeyInfo> {
        let info = KeyInfo {
            id: new_id(),
            prefix: prefix.to_owned(),
            created_at: now_ms(),
        };
        sqlx::query(
            "INSERT INTO stream_keys (id, user_id, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&info.id)
        .bind(user_id)
        .bind(key_hash)
        .bind(prefix)
        .bind(info.created_at)
        .execute(&self.pool)
        .await?;
        Ok(info)
    }

    /// A user's live keys (prefixes only).
    pub async fn keys(&self, user_id: &str) -> Result<Vec<KeyInfo>> {
        Ok(sqlx::query_as(
            "SELECT id, prefix, created_at FROM stream_keys \
             WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes one of a user's keys; whether it existed.
    pub async fn revoke_key(&self, user_id: &str, id: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE stream_keys SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The owner of a live key with this hash.
    pub async fn user_by_key(&self, key_hash: &str) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT u.id, u.username, u.role, u.created_at, u.password_hash FROM stream_keys k \
             JOIN users u ON u.id = k.user_id WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(UserRow::into_user))
    }

    // ---- streams ----

    /// Creates a stream in `starting`.
    pub async fn create_stream(&self, user: &User, meta: &StreamMeta) -> Result<Stream> {
        let id = new_id();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO streams (id, user_id, name, title, description, category, language, tags, status, created_at, status_changed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        )
        .bind(&id)
        .bind(&user.id)
        .bind(&user.username)
        .bind(&meta.title)
        .bind(&meta.description)
        .bind(&meta.category)
        .bind(&meta.language)
        .bind(tags_json(&meta.tags))
        .bind(StreamStatus::Starting.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.stream(&id)
            .await?
            .ok_or(RepoError::Db(sqlx::Error::RowNotFound))
    }

    /// A stream by id.
    pub async fn stream(&self, id: &str) -> Result<Option<Stream>> {
        let row: Option<StreamRow> = sqlx::query_as(sql(format!("{STREAM_COLUMNS} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(StreamRow::into_stream))
    }

    /// A user's newest stream that has not ended.
    pub async fn open_stream_of(&self, user_id: &str) -> Result<Option<Stream>> {
        let row: Option<StreamRow> = sqlx::query_as(sql(format!(
            "{STREAM_COLUMNS} WHERE user_id = $1 AND status <> 'ended' ORDER BY created_at DESC, id LIMIT 1"
        )))
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(StreamRow::into_stream))
    }

    /// The open stream published under public `name`.
    pub async fn open_stream_named(&self, name: &str) -> Result<Option<Stream>> {
        let row: Option<StreamRow> = sqlx::query_as(sql(format!(
            "{STREAM_COLUMNS} WHERE name = $1 AND status <> 'ended' ORDER BY created_at DESC, id LIMIT 1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(StreamRow::into_stream))
    }

    /// A page of streams matching `f`, newest first, and how many match in all.
    pub async fn list_streams(&self, f: &StreamFilter) -> Result<(Vec<Stream>, i64)> {
        let mut clauses = Vec::new();
        let mut args: Vec<String> = Vec::new();
        let param = |v: String, args: &mut Vec<String>| {
            args.push(v);
            format!("${}", args.len())
        };
        if let Some(c) = &f.category {
            clauses.push(format!("category = {}", param(c.clone(), &mut args)));
        }
        if let Some(l) = &f.language {
            clauses.push(format!("language = {}", param(l.clone(), &mut args)));
        }
        if let Some(t) = &f.tag {
            // Tags are stored as a JSON array of strings; match one whole element.
            let quoted = serde_json::to_string(t).unwrap_or_default();
            clauses.push(
                format!(
                    "tags LIKE {}",
                    param(format!("%{}%", like_escape(&quoted)), &mut args)
                ) + " ESCAPE '\\'",
            );
        }
        if let Some(s) = &f.streamer_id {
            clauses.push(format!("user_id = {}", param(s.clone(), &mut args)));
        }
        if f.live_only {
            clauses.push("status = 'live'".to_owned());
        } else if !f.include_ended {
            clauses.push("status <> 'ended'".to_owned());
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        let count_sql = format!("SELECT COUNT(*) FROM streams{filter}");
        let mut count = sqlx::query_as::<_, (i64,)>(sql(count_sql));
        for a in &args {
            count = count.bind(a);
        }
        let (total,) = count.fetch_one(&self.pool).await?;
        let page_sql = format!(
            "{STREAM_COLUMNS}{filter} ORDER BY current_viewers DESC, created_at DESC, id LIMIT {} OFFSET {}",
            f.limit.clamp(1, 100),
            f.offset.max(0)
        );
        let mut page = sqlx::query_as::<_, StreamRow>(sql(page_sql));
        for a in &args {
            page = page.bind(a);
        }
        let rows = page.fetch_all(&self.pool).await?;
        Ok((
            rows.into_iter()
                .filter_map(StreamRow::into_stream)
                .collect(),
            total,
        ))
    }

    /// Updates a stream's metadata.
    pub async fn update_stream(&self, id: &str, meta: &StreamMeta) -> Result<Option<Stream>> {
        sqlx::query(
            "UPDATE streams SET title = $1, description = $2, category = $3, language = $4, tags = $5 WHERE id = $6",
        )
        .bind(&meta.title)
        .bind(&meta.description)
        .bind(&meta.category)
        .bind(&meta.language)
        .bind(tags_json(&meta.tags))
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.stream(id).await
    }

    /// Moves a stream to `to` if the status machine allows it from its current status
    /// (checked in the UPDATE itself, so concurrent changes cannot skip a state); sets the
    /// origin when `origin` is given (`Some(None)` clears it). Returns the stream after.
    pub async fn transition(
        &self,
        id: &str,
        to: StreamStatus,
        origin: Option<Option<&str>>,
    ) -> Result<Option<Stream>> {
        let from: Vec<&str> = [
            StreamStatus::Starting,
            StreamStatus::Live,
            StreamStatus::Paused,
            StreamStatus::Ending,
            StreamStatus::Ended,
            StreamStatus::Error,
        ]
        .into_iter()
        .filter(|s| s.can_become(to))
        .map(StreamStatus::as_str)
        .collect();
        if from.is_empty() {
            return self.stream(id).await;
        }
        let now = now_ms();
        let list = from
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let started = if to == StreamStatus::Live {
            ", started_at = COALESCE(started_at, $2)"
        } else {
            ""
        };
        let ended = if to == StreamStatus::Ended {
            ", ended_at = $2, current_viewers = 0"
        } else {
            ""
        };
        let origin_set = match origin {
            Some(_) => ", origin_node_id = $4",
            None => "",
        };
        let update = format!(
            "UPDATE streams SET status = $1, status_changed_at = $2{started}{ended}{origin_set} WHERE id = $3 AND status IN ({list})"
        );
        let mut q = sqlx::query(sql(update))
            .bind(to.as_str())
            .bind(now)
            .bind(id);
        if let Some(o) = origin {
            q = q.bind(o.map(str::to_owned));
        }
        q.execute(&self.pool).await?;
        self.stream(id).await
    }

    /// Sets the origin a stream is pinned to (the scheduler's choice) without a status change.
    pub async fn pin_origin(&self, id: &str, node_id: &str) -> Result<()> {
        sqlx::query("UPDATE streams SET origin_node_id = $1 WHERE id = $2")
            .bind(node_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records viewers now (and the peak).
    pub async fn set_viewers(&self, id: &str, viewers: i64) -> Result<()> {
        sqlx::query(
            "UPDATE streams SET current_viewers = $1, peak_viewers = CASE WHEN peak_viewers < $1 THEN $1 ELSE peak_viewers END WHERE id = $2",
        )
        .bind(viewers)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces what edge `node_id` reports about viewers (at most 10,000 streams) and
    /// updates the current and peak viewers of every stream concerned: the sum over the
    /// reports of alive edges.
    pub async fn report_viewers(
        &self,
        node_id: &str,
        viewers: &[potok_config::wire::StreamViewers],
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let before: Vec<(String,)> =
            sqlx::query_as("SELECT stream_name FROM edge_viewers WHERE node_id = $1")
                .bind(node_id)
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query("DELETE FROM edge_viewers WHERE node_id = $1")
            .bind(node_id)
            .execute(&mut *tx)
            .await?;
        for v in viewers.iter().take(10_000) {
            sqlx::query(
                "INSERT INTO edge_viewers (node_id, stream_name, viewers, updated_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(node_id)
            .bind(&v.name)
            .bind(i64::try_from(v.viewers).unwrap_or(i64::MAX))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let mut names: Vec<String> = before.into_iter().map(|(n,)| n).collect();
        names.extend(viewers.iter().take(10_000).map(|v| v.name.clone()));
        names.sort();
        names.dedup();
        for name in names {
            let (total,): (i64,) = sqlx::query_as(
                "SELECT CAST(COALESCE(SUM(v.viewers), 0) AS BIGINT) FROM edge_viewers v \
                 JOIN nodes n ON n.id = v.node_id WHERE v.stream_name = $1 AND n.state = 'alive'",
            )
            .bind(&name)
            .fetch_one(&self.pool)
            .await?;
            sqlx::query(
                "UPDATE streams SET current_viewers = $1, peak_viewers = CASE WHEN peak_viewers < $1 THEN $1 ELSE peak_viewers END \
                 WHERE name = $2 AND status <> 'ended'",
            )
            .bind(total)
            .bind(&name)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Open streams held by `node_id` in one of `statuses`.
    pub async fn streams_on_node(
        &self,
        node_id: &str,
        statuses: &[StreamStatus],
    ) -> Result<Vec<Stream>> {
        let list = statuses
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows: Vec<StreamRow> = sqlx::query_as(sql(format!(
            "{STREAM_COLUMNS} WHERE origin_node_id = $1 AND status IN ({list})"
        )))
        .bind(node_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(StreamRow::into_stream)
            .collect())
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

    // ---- reserved names ----

    /// Reserves public stream names for configuration (`node_name`'s `origin.streams`);
    /// names already reserved keep their first owner. Returns the names that are also an
    /// account's username (that account cannot publish under it).
    pub async fn reserve_names(&self, node_name: &str, names: &[String]) -> Result<Vec<String>> {
        let now = now_ms();
        let mut clashes = Vec::new();
        for name in names.iter().take(1000) {
            sqlx::query(
                "INSERT INTO reserved_names (name, node_name, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(node_name)
            .bind(now)
            .execute(&self.pool)
            .await?;
            if self.user_by_name(name).await?.is_some() {
                clashes.push(name.clone());
            }
        }
        Ok(clashes)
    }

    /// Whether configuration owns public name `name`.
    pub async fn is_reserved(&self, name: &str) -> Result<bool> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT name FROM reserved_names WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }

    // ---- nodes ----

    /// Registers a node, or refreshes the registration of the same role and name (its id
    /// stays). The node is alive from now.
    pub async fn register_node(&self, r: &potok_config::wire::Register) -> Result<Node> {
        let now = now_ms();
        let existing: Option<(String,)> =
            sqlx::query_as("SELECT id FROM nodes WHERE role = $1 AND name = $2")
                .bind(r.role.as_str())
                .bind(&r.name)
                .fetch_optional(&self.pool)
                .await?;
        let id = match existing {
            Some((id,)) => {
                sqlx::query(
                    "UPDATE nodes SET http_url = $1, rtmp_url = $2, rtmps_url = $3, srt_url = $4, max_streams = $5, \
                     state = 'alive', last_heartbeat_at = $6, live_streams = 0 WHERE id = $7",
                )
                .bind(&r.http_url)
                .bind(&r.rtmp_url)
                .bind(&r.rtmps_url)
                .bind(&r.srt_url)
                .bind(i64::from(r.max_streams))
                .bind(now)
                .bind(&id)
                .execute(&self.pool)
                .await?;
                id
            }
            None => {
                let id = new_id();
                sqlx::query(
                    "INSERT INTO nodes (id, role, name, http_url, rtmp_url, rtmps_url, srt_url, max_streams, state, registered_at, last_heartbeat_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'alive', $9, $9)",
                )
                .bind(&id)
                .bind(r.role.as_str())
                .bind(&r.name)
                .bind(&r.http_url)
                .bind(&r.rtmp_url)
                .bind(&r.rtmps_url)
                .bind(&r.srt_url)
                .bind(i64::from(r.max_streams))
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(|e| unique(e, "node"))?;
                id
            }
        };
        self.node(&id)
            .await?
            .ok_or(RepoError::Db(sqlx::Error::RowNotFound))
    }

    /// Records a heartbeat; `None` for an unknown node (it must register again).
    pub async fn heartbeat(
        &self,
        id: &str,
        hb: &potok_config::wire::Heartbeat,
    ) -> Result<Option<Node>> {
        let r = sqlx::query(
            "UPDATE nodes SET state = 'alive', last_heartbeat_at = $1, cpu = $2, live_streams = $3, transcode_rtf = $4, egress_bps = $5 WHERE id = $6",
        )
        .bind(now_ms())
        .bind(hb.cpu)
        .bind(hb.streams.len() as i64)
        .bind(hb.transcode_rtf)
        .bind(i64::try_from(hb.egress_bps).unwrap_or(i64::MAX))
        .bind(id)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        self.node(id).await
    }

    /// A node by id.
    pub async fn node(&self, id: &str) -> Result<Option<Node>> {
        Ok(
            sqlx::query_as::<_, NodeRow>(sql(format!("{NODE_COLUMNS} WHERE id = $1")))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .map(NodeRow::into_node),
        )
    }

    /// Every node, or those of `role`.
    pub async fn nodes(&self, role: Option<&str>) -> Result<Vec<Node>> {
        let rows: Vec<NodeRow> = match role {
            Some(r) => {
                sqlx::query_as(sql(format!("{NODE_COLUMNS} WHERE role = $1 ORDER BY name")))
                    .bind(r)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query_as(sql(format!("{NODE_COLUMNS} ORDER BY role, name")))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows.into_iter().map(NodeRow::into_node).collect())
    }

    /// Marks nodes silent since before `cutoff_ms` dead; returns them.
    pub async fn mark_dead(&self, cutoff_ms: i64) -> Result<Vec<Node>> {
        let rows: Vec<NodeRow> = sqlx::query_as(sql(format!(
            "{NODE_COLUMNS} WHERE state = 'alive' AND last_heartbeat_at < $1"
        )))
        .bind(cutoff_ms)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            sqlx::query("UPDATE nodes SET state = 'dead' WHERE id = $1 AND last_heartbeat_at < $2")
                .bind(&r.id)
                .bind(cutoff_ms)
                .execute(&self.pool)
                .await?;
        }
        Ok(rows.into_iter().map(NodeRow::into_node).collect())
    }
}

/// A token as listed (never its value).
#[derive(
    Clone, Debug, PartialEq, Eq, FromRow, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct TokenInfo {
    /// Id (for revoking).
    pub id: String,
    /// The name given at creation.
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds, when it expires.
    pub expires_at: Option<i64>,
}

/// A stream key as listed: only its first characters.
#[derive(
    Clone, Debug, PartialEq, Eq, FromRow, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct KeyInfo {
    /// Id (for rotating and revoking).
    pub id: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A stream's editable metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamMeta {
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Category.
    pub category: String,
    /// Language.
    pub language: String,
    /// Tags.
    pub tags: Vec<String>,
}

/// Which streams a list returns.
#[derive(Clone, Debug, Default)]
pub struct StreamFilter {
    /// Only this category.
    pub category: Option<String>,
    /// Only this language.
    pub language: Option<String>,
    /// Only streams with this tag.
    pub tag: Option<String>,
    /// Only this streamer's.
    pub streamer_id: Option<String>,
    /// Only live streams.
    pub live_only: bool,
    /// Ended streams too (otherwise only open ones).
    pub include_ended: bool,
    /// Page size (1-100).
    pub limit: i64,
    /// Rows skipped.
    pub offset: i64,
}

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".to_owned())
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[derive(FromRow)]
struct UserRow {
    id: String,
    username: String,
    role: String,
    created_at: i64,
    password_hash: String,
}

impl UserRow {
    fn into_user(self) -> Option<User> {
        Some(User {
            id: self.id,
            username: self.username,
            role: UserRole::parse(&self.role)?,
            created_at: self.created_at,
        })
    }
}

const STREAM_COLUMNS: &str = "SELECT id, user_id, name, title, description, category, language, tags, status, \
     origin_node_id, created_at, started_at, ended_at, status_changed_at, current_viewers, peak_viewers FROM streams";

#[derive(FromRow)]
struct StreamRow {
    id: String,
    user_id: String,
    name: String,
    title: String,
    description: String,
    category: String,
    language: String,
    tags: String,
    status: String,
    origin_node_id: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    status_changed_at: i64,
    current_viewers: i64,
    peak_viewers: i64,
}

impl StreamRow {
    fn into_stream(self) -> Option<Stream> {
        let status = StreamStatus::parse(&self.status)?;
        let duration_secs = self.started_at.map_or(0, |s| {
            (self.ended_at.unwrap_or_else(now_ms) - s).max(0) / 1000
        });
        Some(Stream {
            playback_path: format!("/live/{}/master.m3u8", self.name),
            id: self.id,
            streamer_id: self.user_id,
            name: self.name,
            title: self.title,
            description: self.description,
            category: self.category,
            language: self.language,
            tags: serde_json::from_str(&self.tags).unwrap_or_default(),
            status,
            origin_node_id: self.origin_node_id,
            created_at: self.created_at,
            started_at: self.started_at,
            ended_at: self.ended_at,
            status_changed_at: self.status_changed_at,
            current_viewers: self.current_viewers,
            peak_viewers: self.peak_viewers,
            duration_secs,
        })
    }
}

const NODE_COLUMNS: &str = "SELECT id, role, name, http_url, rtmp_url, rtmps_url, srt_url, max_streams, state, cpu, \
     live_streams, transcode_rtf, egress_bps, registered_at, last_heartbeat_at FROM nodes";

#[derive(FromRow)]
struct NodeRow {
    id: String,
    role: String,
    name: String,
    http_url: String,
    rtmp_url: Option<String>,
    rtmps_url: Option<String>,
    srt_url: Option<String>,
    max_streams: i64,
    state: String,
    cpu: f64,
    live_streams: i64,
    transcode_rtf: Option<f64>,
    egress_bps: i64,
    registered_at: i64,
    last_heartbeat_at: i64,
}

impl NodeRow {
    fn into_node(self) -> Node {
        Node {
            id: self.id,
            role: self.role,
            name: self.name,
            http_url: self.http_url,
            rtmp_url: self.rtmp_url,
            rtmps_url: self.rtmps_url,
            srt_url: self.srt_url,
            max_streams: self.max_streams,
            state: self.state,
            cpu: self.cpu,
            live_streams: self.live_streams,
            transcode_rtf: self.transcode_rtf,
            egress_bps: self.egress_bps,
            registered_at: self.registered_at,
            last_heartbeat_at: self.last_heartbeat_at,
        }
    }
}
