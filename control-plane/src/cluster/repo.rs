//! The cluster area's queries: the node registry. Owns `nodes`.

use sqlx::FromRow;

use crate::db::{Db, RepoError, Result, sql, unique};
use crate::model::{Node, now_ms};
use crate::secrets::new_id;

impl Db {
    // ---- nodes ----

    /// Registers a node, or refreshes the registration of the same role and name (its id
    /// stays). The node is alive from now.
    pub async fn register_node(&self, r: &potok_config::wire::Register) -> Result<Node> {
        let now = now_ms();
        let existing: Option<(String,)> =
            sqlx::query_as("SELECT id FROM nodes WHERE role = $1 AND name = $2")
                .bind(r.role.as_str())
                .bind(&r.name)
                .fetch_optional(self.pool())
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
                .execute(self.pool())
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
                .execute(self.pool())
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
        .execute(self.pool())
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
                .fetch_optional(self.pool())
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
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                sqlx::query_as(sql(format!("{NODE_COLUMNS} ORDER BY role, name")))
                    .fetch_all(self.pool())
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
        .fetch_all(self.pool())
        .await?;
        for r in &rows {
            sqlx::query("UPDATE nodes SET state = 'dead' WHERE id = $1 AND last_heartbeat_at < $2")
                .bind(&r.id)
                .bind(cutoff_ms)
                .execute(self.pool())
                .await?;
        }
        Ok(rows.into_iter().map(NodeRow::into_node).collect())
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
