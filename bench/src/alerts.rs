//! `bench alerts`: from a donation's payment confirmation sent to the control plane (the
//! sandbox provider's confirmation, the embedded default's webhook) to its alert on screen in
//! the alerts overlay (headless Chromium, the animation frame after the box was added). The
//! reference, in the same run: the same event arriving on a plain WebSocket client of the
//! overlay channel, which is what the page's share is measured against. Donations go one at a
//! time, the next once the overlay's alert has left (alerts queue without overlap, and a
//! queued alert's wait is not delivery latency).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use potok_config::{Config, ListenAddr, Role};
use potok_service::{CancellationToken, Metrics, RoleContext};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;

use crate::ledger::{Client, account, call};

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Donations per run.
    pub donations: usize,
    /// The repository root (for tests/browser/alerts.mjs).
    pub root: PathBuf,
}

/// Latencies in ms from the confirmation request being sent, one per donation.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// To the alert on screen in the overlay page.
    pub shown_ms: Vec<f64>,
    /// To the event on a plain WebSocket client (the reference).
    pub socket_ms: Vec<f64>,
    /// How long the confirmation call itself took.
    pub confirm_ms: Vec<f64>,
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

const CHANNEL: &str = "alice";

/// One run: a control plane in this process on SQLite, Chromium on its alerts overlay.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let data = tempfile::tempdir()?;
    let mut config = Config::default();
    config.node.data_dir = data.path().to_path_buf();
    config.control_plane.listen = ListenAddr(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.http.max_connections_per_address = 0;
    config
        .validate(&[Role::ControlPlane])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ctx = RoleContext {
        metrics: Metrics::new(),
        shutdown: shutdown.clone(),
        readiness_timeout: Duration::from_secs(2),
    };
    let cp = potok_control_plane::bind(&config, &ctx).await?;
    let addr = cp.local_addr();
    tokio::spawn(cp.run(shutdown.clone()));

    let client: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let streamer = account(&client, addr, CHANNEL, "streamer", None).await?;
    // The shortest alert, no speech: the next donation can follow soon.
    let alerts = json!({"variants": [{"min_amount": 0, "animation": "fade", "sound": "",
        "duration_ms": 1000, "text_template": "{donor} — {amount}"}],
        "tts": {"enabled": false, "min_amount": 0}});
    let path = format!("/api/v1/channels/{CHANNEL}/donation-alerts");
    let (s, v) = call(&client, addr, "PUT", &path, Some(&streamer), Some(&alerts)).await?;
    if s != 200 {
        bail!("configure_donation_alerts: {s} {v}");
    }
    let (s, v) = call(
        &client,
        addr,
        "POST",
        "/api/v1/overlay-tokens",
        Some(&streamer),
        None,
    )
    .await?;
    if s != 201 {
        bail!("create_overlay_token: {s} {v}");
    }
    let overlay = v["token"].as_str().context("overlay token")?.to_owned();

    // The reference: a WebSocket client of the overlay channel.
    let socket_at: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/realtime")).await?;
    ws.send(Message::text(
        json!({"type": "auth", "overlay_token": overlay}).to_string(),
    ))
    .await?;
    ws.send(Message::text(
        json!({"type": "subscribe", "channel": format!("overlay:{CHANNEL}")}).to_string(),
    ))
    .await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("\"type\":\"subscribed\"") => break,
            Some(Ok(Message::Text(t))) if t.contains("\"type\":\"error\"") => {
                bail!("overlay subscription refused: {t}")
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the gateway closed the overlay socket"),
        }
    }
    let seen = Arc::clone(&socket_at);
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            let Message::Text(t) = m else { continue };
            let at = unix_ms();
            let Ok(v) = serde_json::from_str::<Value>(&t) else {
                continue;
            };
            if v["type"] == "event"
                && v["data"]["kind"] == "donation"
                && let Some(id) = v["data"]["donation"]["id"].as_str()
                && let Ok(mut m) = seen.lock()
            {
                m.insert(id.to_owned(), at);
            }
        }
    });

    // The overlay page.
    let mut node = Command::new("node")
        .arg(opts.root.join("tests/browser/alerts.mjs"))
        .arg(format!("http://{addr}/overlay/{overlay}/alerts"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("node not found: run scripts/setup")?;
    let mut lines = BufReader::new(node.stdout.take().context("node stdout")?).lines();
    let mut next_event = async move || -> anyhow::Result<Value> {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("the overlay page said nothing for 30 s")??
            .context("the overlay page ended")?;
        let v: Value =
            serde_json::from_str(&line).with_context(|| format!("alerts.mjs: {line}"))?;
        if v["event"] == "error" {
            bail!("the overlay page failed: {v}");
        }
        Ok(v)
    };
    while next_event().await?["event"] != "ready" {}

    let mut report = Report::default();
    for i in 0..opts.donations {
        let body = json!({"amount": 10_000, "currency": "RUB", "donor_name": format!("bench{i}")});
        let path = format!("/api/v1/channels/{CHANNEL}/donations");
        let (s, started) = call(&client, addr, "POST", &path, None, Some(&body)).await?;
        if s != 201 {
            bail!("send_donation: {s} {started}");
        }
        let id = started["donation"]["id"]
            .as_str()
            .context("donation id")?
            .to_owned();
        let pay = started["confirmation"]["url"]
            .as_str()
            .and_then(|u| u.rsplit('/').next())
            .context("sandbox confirmation url")?
            .to_owned();
        let before = unix_ms();
        let (s, v) = call(
            &client,
            addr,
            "POST",
            &format!("/api/v1/payments/sandbox/{pay}"),
            None,
            Some(&json!({"succeed": true})),
        )
        .await?;
        let accepted = unix_ms();
        if s != 200 {
            bail!("confirm_sandbox_payment: {s} {v}");
        }
        report.confirm_ms.push(accepted - before);
        // Shown, then gone (the next alert must not queue behind this one).
        let mut shown = None;
        loop {
            let e = next_event().await?;
            if e["id"] != id.as_str() {
                continue;
            }
            if e["event"] == "shown" {
                shown = e["at"].as_f64();
            }
            if e["event"] == "gone" {
                break;
            }
        }
        report
            .shown_ms
            .push(shown.context("gone without being shown")? - before);
        if let Some(at) = socket_at.lock().ok().and_then(|m| m.get(&id).copied()) {
            report.socket_ms.push(at - before);
        }
    }
    reader.abort();
    drop(node.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(10), node.wait()).await;
    Ok(report)
}
