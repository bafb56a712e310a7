//! The recordings area's rows: channels' settings and the recording in progress of a stream.

use sqlx::Row;

use super::RecordingSettings;
use crate::db::{Db, Result};
use crate::model::now_ms;

impl Db {
    /// `channel_id`'s own settings, if it saved any.
    pub(crate) async fn recording_settings(
        &self,
        channel_id: &str,
    ) -> Result<Option<RecordingSettings>> {
        let row = sqlx::query(
            "SELECT record, renditions, max_duration_secs, retention_days FROM recording_settings WHERE channel_id = $1",
        )
        .bind(channel_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let renditions: String = r.try_get(1)?;
        Ok(Some(RecordingSettings {
            record: r.try_get::<i64, _>(0)? != 0,
            renditions: serde_json::from_str(&renditions).unwrap_or_default(),
            max_duration_secs: r.try_get(2)?,
            retention_days: r.try_get(3)?,
        }))
    }

    /// Saves `channel_id`'s settings.
    pub(crate) async fn save_recording_settings(
        &self,
        channel_id: &str,
        s: &RecordingSettings,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO recording_settings (channel_id, record, renditions, max_duration_secs, retention_days, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (channel_id) DO UPDATE SET record = $2, renditions = $3, \
             max_duration_secs = $4, retention_days = $5, updated_at = $6",
        )
        .bind(channel_id)
        .bind(i64::from(s.record))
        .bind(serde_json::to_string(&s.renditions).unwrap_or_else(|_| "[]".into()))
        .bind(s.max_duration_secs)
        .bind(s.retention_days)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Each channel with its own settings: its name and retention days.
    pub(crate) async fn retention_by_channel(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT u.username, s.retention_days FROM recording_settings s JOIN users u ON u.id = s.channel_id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// The recording in progress of stream `id`, as its origin reported it.
    pub(crate) async fn set_recording(&self, id: &str, recording: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE streams SET recording_id = $1 WHERE id = $2")
            .bind(recording)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Highlighted moments of completed donations not yet clipped, older than `before`:
    /// (highlight id, moment, stream id).
    pub(crate) async fn pending_highlights(
        &self,
        before: i64,
    ) -> Result<Vec<(String, i64, String)>> {
        let rows = sqlx::query(
            "SELECT h.id, h.at_ms, h.stream_id FROM highlights h JOIN donations d ON d.id = h.donation_id \
             WHERE d.status = 'completed' AND h.clip_state IS NULL AND h.stream_id IS NOT NULL AND h.at_ms <= $1 \
             ORDER BY h.at_ms LIMIT 20",
        )
        .bind(before)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// What became of a highlight's clip.
    pub(crate) async fn set_highlight_clip(
        &self,
        id: &str,
        state: &str,
        clip: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE highlights SET clip_state = $1, clip_id = $2 WHERE id = $3")
            .bind(state)
            .bind(clip)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
