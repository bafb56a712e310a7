//! The streams area's queries: streams and their status machine, filters and pages,
//! viewer counts. Owns `streams` and `edge_viewers`.

use sqlx::FromRow;

use crate::db::{Db, RepoError, Result, sql};
use crate::model::{Stream, StreamStatus, User, now_ms};
use crate::secrets::new_id;

impl Db {
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
        .execute(self.pool())
        .await?;
        self.stream(&id)
            .await?
            .ok_or(RepoError::Db(sqlx::Error::RowNotFound))
    }

    /// A stream by id.
    pub async fn stream(&self, id: &str) -> Result<Option<Stream>> {
        let row: Option<StreamRow> = sqlx::query_as(sql(format!("{STREAM_COLUMNS} WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.and_then(StreamRow::into_stream))
    }

    /// A user's newest stream that has not ended.
    pub async fn open_stream_of(&self, user_id: &str) -> Result<Option<Stream>> {
        let row: Option<StreamRow> = sqlx::query_as(sql(format!(
            "{STREAM_COLUMNS} WHERE user_id = $1 AND status <> 'ended' ORDER BY created_at DESC, id LIMIT 1"
        )))
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.and_then(StreamRow::into_stream))
    }

    /// The open stream published under public `name`.
    pub async fn open_stream_named(&self, name: &str) -> Result<Option<Stream>> {
        let row: Option<StreamRow> = sqlx::query_as(sql(format!(
            "{STREAM_COLUMNS} WHERE name = $1 AND status <> 'ended' ORDER BY created_at DESC, id LIMIT 1"
        )))
        .bind(name)
        .fetch_optional(self.pool())
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
        let (total,) = count.fetch_one(self.pool()).await?;
        let page_sql = format!(
            "{STREAM_COLUMNS}{filter} ORDER BY current_viewers DESC, created_at DESC, id LIMIT {} OFFSET {}",
            f.limit.clamp(1, 100),
            f.offset.max(0)
        );
        let mut page = sqlx::query_as::<_, StreamRow>(sql(page_sql));
        for a in &args {
            page = page.bind(a);
        }
        let rows = page.fetch_all(self.pool()).await?;
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
        .execute(self.pool())
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
        q.execute(self.pool()).await?;
        self.stream(id).await
    }

    /// Sets the origin a stream is pinned to (the scheduler's choice) without a status change.
    pub async fn pin_origin(&self, id: &str, node_id: &str) -> Result<()> {
        sqlx::query("UPDATE streams SET origin_node_id = $1 WHERE id = $2")
            .bind(node_id)
            .bind(id)
            .execute(self.pool())
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
        .execute(self.pool())
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
            .fetch_one(self.pool())
            .await?;
            sqlx::query(
                "UPDATE streams SET current_viewers = $1, peak_viewers = CASE WHEN peak_viewers < $1 THEN $1 ELSE peak_viewers END \
                 WHERE name = $2 AND status <> 'ended'",
            )
            .bind(total)
            .bind(&name)
            .execute(self.pool())
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
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(StreamRow::into_stream)
            .collect())
    }
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

const STREAM_COLUMNS: &str = "SELECT id, user_id, name, title, description, category, language, tags, status, \
     origin_node_id, created_at, started_at, ended_at, status_changed_at, current_viewers, peak_viewers, recording_id FROM streams";

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
    recording_id: Option<String>,
}

impl StreamRow {
    fn into_stream(self) -> Option<Stream> {
        let status = StreamStatus::parse(&self.status)?;
        let duration_secs = self.started_at.map_or(0, |s| {
            (self.ended_at.unwrap_or_else(now_ms) - s).max(0) / 1000
        });
        let on_air = matches!(status, StreamStatus::Live | StreamStatus::Paused);
        let recording_id = self.recording_id.filter(|_| on_air);
        Some(Stream {
            playback_path: format!("/live/{}/master.m3u8", self.name),
            thumbnail_path: on_air.then(|| format!("/thumbnails/{}.jpg", self.name)),
            is_recording: recording_id.is_some(),
            recording_id,
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
