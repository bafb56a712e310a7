//! `potok all --demo`: a streamer account made through the REST API like any client would
//! (sign up, log in, a stream key, an overlay token, a donation goal), ffmpeg publishing a
//! test pattern to it, and the pages a newcomer opens printed. The account's password is
//! kept in `node.data_dir/demo-account.json` (mode 0600) so the next run logs in again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use potok_config::Secret;
use potok_service::cluster::{CallError, ControlPlane};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The demo streamer's name (its channel, at `/{CHANNEL}`).
pub const CHANNEL: &str = "demo";

/// How long one API call of the seeding may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// What the demo made.
#[derive(Debug)]
pub struct Demo {
    /// The streamer's username.
    pub username: String,
    /// Its password (to log in on the dashboard).
    pub password: Secret,
    /// Its stream key.
    pub key: Secret,
    /// The overlay pages (OBS browser sources) of the account.
    pub overlays: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    username: String,
    password: String,
}

fn saved_path(data_dir: &Path) -> PathBuf {
    data_dir.join("demo-account.json")
}

fn save(path: &Path, saved: &Saved) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(&serde_json::to_vec(saved)?)?;
    Ok(())
}

/// Makes (or, on later runs, logs into) the demo streamer through the API at `cp`.
pub async fn seed(cp: SocketAddr, data_dir: &Path) -> anyhow::Result<Demo> {
    let base = format!("http://{cp}");
    let anonymous = ControlPlane::node(&base, Secret::new(""), CALL_TIMEOUT);
    let path = saved_path(data_dir);
    let saved = match std::fs::read(&path) {
        Ok(raw) => serde_json::from_slice::<Saved>(&raw)
            .with_context(|| format!("{}: not a demo account file", path.display()))?,
        Err(_) => {
            let saved = Saved {
                username: CHANNEL.to_owned(),
                password: crate::random_key()?,
            };
            let made: Result<Value, CallError> = anonymous
                .post(
                    "/api/v1/users",
                    &json!({"username": saved.username, "password": saved.password, "role": "streamer"}),
                )
                .await;
            match made {
                Ok(_) => {}
                Err(e) if e.code() == Some("CONFLICT") => bail!(
                    "the account {CHANNEL:?} exists but {} is gone; use another node.data_dir",
                    path.display()
                ),
                Err(e) => return Err(e).context("creating the demo account"),
            }
            save(&path, &saved)?;
            info!(username = CHANNEL, "demo account created");
            saved
        }
    };
    let session: Value = anonymous
        .post(
            "/api/v1/sessions",
            &json!({"username": saved.username, "password": saved.password}),
        )
        .await
        .context("logging in as the demo account")?;
    let token = session["token"]
        .as_str()
        .context("no token in the login answer")?;
    let me = ControlPlane::node(&base, Secret::new(token), CALL_TIMEOUT);
    // A fresh key per run; the previous runs' keys are revoked.
    let keys: Vec<Value> = me.get("/api/v1/stream-keys").await?;
    for k in keys.iter().filter(|k| k["revoked_at"].is_null()) {
        if let Some(id) = k["id"].as_str() {
            let gone: Result<Value, CallError> =
                me.delete(&format!("/api/v1/stream-keys/{id}")).await;
            // 204 has no JSON body: the client reports it as an unexpected answer.
            if let Err(CallError::Refused { status, .. }) = gone {
                warn!(status, "could not revoke an earlier demo key");
            }
        }
    }
    let key: Value = me.post("/api/v1/stream-keys", &json!({})).await?;
    let key = key["key"].as_str().context("no key in the answer")?;
    let overlay: Value = me.post("/api/v1/overlay-tokens", &json!({})).await?;
    let overlays = overlay["urls"]
        .as_array()
        .map(|u| {
            u.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    // A goal for the overlay's bar (10 000 ₽), once.
    let goals = format!("/api/v1/channels/{CHANNEL}/goals");
    let existing: Vec<Value> = me.get(&goals).await.unwrap_or_default();
    if existing.is_empty() {
        let goal: Result<Value, CallError> = me
            .post(
                &goals,
                &json!({"title": "Новая видеокарта", "target_amount": 1_000_000, "currency": "RUB"}),
            )
            .await;
        if let Err(e) = goal {
            warn!(error = %e, "demo donation goal not set");
        }
    }
    Ok(Demo {
        username: saved.username,
        password: Secret::new(saved.password),
        key: Secret::new(key),
        overlays,
    })
}

/// ffmpeg publishing a 720p30 test pattern with the wall clock and a tone to `rtmp` with
/// `key`, started again if it stops, until `shutdown`.
pub async fn publish(rtmp: SocketAddr, key: Secret, shutdown: CancellationToken) {
    let url = format!("rtmp://{rtmp}/live/{}", key.expose());
    loop {
        let child = tokio::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-nostats", "-loglevel", "error", "-re"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1280x720:rate=30,drawtext=text='%{localtime\\:%H\\\\\\:%M\\\\\\:%S}':fontsize=96:fontcolor=white:box=1:boxcolor=black@0.6:x=40:y=40",
            ])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency"])
            .args(["-g", "60", "-pix_fmt", "yuv420p", "-b:v", "2500k"])
            .args(["-c:a", "aac", "-b:a", "128k", "-f", "flv", &url])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot start ffmpeg for the demo stream (scripts/setup installs it)");
                return;
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => {
                let _ = child.kill().await;
                return;
            }
            status = child.wait() => {
                warn!(?status, "demo publisher stopped; starting it again in 2 s");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// The lines a newcomer needs: the pages to open and the account to log in with.
pub fn banner(demo: &Demo, cp: SocketAddr, host: &str) -> String {
    let web = format!("http://{host}:{}", cp.port());
    let mut out = format!(
        "\nDemo running: ffmpeg publishes a test pattern to the channel {CHANNEL:?}.\n  \
         open the watch page:  {web}/{CHANNEL}   (chat, donate in the sandbox; sign up at {web}/signup)\n  \
         streamer dashboard:   {web}/dashboard   (log in as {:?}, password {})\n",
        demo.username,
        demo.password.expose()
    );
    for url in &demo.overlays {
        out.push_str(&format!("  overlay (OBS source): {url}\n"));
    }
    out
}
