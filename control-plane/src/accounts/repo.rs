//! The accounts area's queries: users (and the installation's first admin), API tokens,
//! stream keys, names reserved by configuration. Owns `users`, `api_tokens`, `stream_keys`,
//! `first_admin` and `reserved_names`.

use sqlx::FromRow;

use crate::db::{Db, NewAccount, RepoError, Result, unique};
use crate::model::{User, UserRole, now_ms};
use crate::secrets::new_id;

impl Db {
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
        .execute(self.pool())
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
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }

    /// Number of users.
    pub async fn count_users(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(self.pool())
            .await?;
        Ok(n)
    }

    /// A user and its password hash, by username.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<(User, String)>> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, username, role, created_at, password_hash FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(self.pool())
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
        .fetch_optional(self.pool())
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
        .execute(self.pool())
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
        .fetch_optional(self.pool())
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
        .fetch_all(self.pool())
        .await?)
    }

    /// Revokes the live token with this hash (a logout).
    pub async fn revoke_token_value(&self, token_hash: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(token_hash)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Revokes one of a user's tokens; whether it existed.
    pub async fn revoke_token(&self, user_id: &str, id: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .bind(user_id)
        .execute(self.pool())
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
        .execute(self.pool())
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
        .fetch_all(self.pool())
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
        .execute(self.pool())
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
        .fetch_optional(self.pool())
        .await?;
        Ok(row.and_then(UserRow::into_user))
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
            .execute(self.pool())
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
                .fetch_optional(self.pool())
                .await?;
        Ok(row.is_some())
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
