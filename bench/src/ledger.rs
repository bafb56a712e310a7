//! `bench ledger`: donations per second end to end through the provider-notification path
//! on PostgreSQL — a YooKassa-shaped API in this (load) process, the control plane in its
//! own process — next to `pgbench --builtin=simple-update` against the same server in the
//! same run.
//!
//! Each measured request is a `payment.succeeded` notification for a payment that has
//! succeeded: the control plane re-fetches the payment from the API, then completes the
//! donation, posts the ledger entries and writes its event in one transaction, and answers.
//! Latency is from sending the notification to its answer (the commit comes before it).
//! Every notification is sent twice (a provider's retry) and the run checks that exactly
//! one of each pair credited and that the ledger reconciles.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use potok_config::{Config, HumanDuration, ListenAddr, Role, Secret};
use potok_service::{CancellationToken, Metrics, RoleContext};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// What to run.
pub struct Options {
    /// Donations (each notified twice) per run.
    pub donations: usize,
    /// Notifications in flight at once.
    pub concurrency: usize,
    /// The PostgreSQL server to use (an empty database is made in it per run).
    pub admin_url: String,
    /// Seconds of pgbench per run.
    pub pgbench_seconds: u64,
}

/// One run's numbers.
pub struct Report {
    /// Credited donations per second.
    pub donations_per_s: f64,
    /// Notification → answer latencies, ms (both of each pair).
    pub latencies_ms: Vec<f64>,
    /// pgbench simple-update transactions per second.
    pub pgbench_tps: Option<f64>,
}

// ---------------------------------------------------------------- the server process

/// `bench ledger-server`: a control plane on 127.0.0.1 (a free port) on `database_url`,
/// YooKassa at `yookassa`, notifications accepted from loopback, limits off for one donor.
/// Prints `listening ADDR`; serves until stdin closes.
pub async fn serve(
    database_url: String,
    yookassa: String,
    data_dir: PathBuf,
) -> anyhow::Result<()> {
    let mut config = Config::default();
    config.node.data_dir = data_dir;
    config.control_plane.listen = ListenAddr(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.control_plane.database.url = Some(potok_config::DatabaseUrl::new(database_url));
    config.control_plane.database.max_connections = 32;
    config.http.max_connections_per_address = 0;
    config.http.idle_timeout = HumanDuration::secs(600);
    config.control_plane.signups_per_hour = 1_000_000;
    let p = &mut config.control_plane.payments;
    p.provider = potok_config::PaymentProvider::Yookassa;
    p.yookassa.api_url = yookassa;
    p.yookassa.shop_id = Some("bench".into());
    p.yookassa.secret_key = Some(Secret::new("bench-secret-key"));
    p.yookassa.webhook_sources = vec!["127.0.0.1".into()];
    p.fraud.per_donor_per_hour = u32::MAX;
    p.fraud.per_address_per_hour = u32::MAX;
    p.fraud.per_card_per_hour = u32::MAX;
    p.fraud.cards_per_donor_per_day = u32::MAX;
    if let Some(rub) = p.currencies.get_mut("RUB") {
        rub.per_donor_per_day = 1_000_000_000_000;
    }
    config
        .validate(&[Role::ControlPlane])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let shutdown = CancellationToken::new();
    let ctx = RoleContext {
        metrics: Metrics::new(),
        shutdown: shutdown.clone(),
        readiness_timeout: Duration::from_secs(2),
    };
    let server = potok_control_plane::bind(&config, &ctx).await?;
    let mut out = tokio::io::stdout();
    out.write_all(format!("listening {}\n", server.local_addr()).as_bytes())
        .await?;
    out.flush().await?;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
        stop.cancel();
    });
    server.run(shutdown).await;
    Ok(())
}

// ---------------------------------------------------------------- a YooKassa-shaped API

#[derive(Clone, Default)]
struct Provider {
    payments: Arc<Mutex<HashMap<String, Value>>>,
    next: Arc<Mutex<u64>>,
}

async fn create_payment(State(p): State<Provider>, Json(body): Json<Value>) -> Json<Value> {
    let id = {
        let mut n = p.next.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        format!("2d{:010x}-000f-5000-9000-bench", *n)
    };
    let payment = json!({"id": id, "status": "pending", "paid": false, "amount": body["amount"],
        "confirmation": {"type": "redirect", "confirmation_url": format!("https://yoomoney.example/{id}")},
        "metadata": body["metadata"], "test": true, "payment_method": {"type": "bank_card", "id": id, "saved": false}});
    p.payments
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, payment.clone());
    Json(payment)
}

async fn get_payment(
    State(p): State<Provider>,
    UrlPath(id): UrlPath<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match p
        .payments
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
    {
        Some(v) => Json(v.clone()).into_response(),
        None => (
            axum::http::StatusCode::NOT_FOUND,
            Json(json!({"type": "error", "code": "not_found"})),
        )
            .into_response(),
    }
}

impl Provider {
    fn succeed_all(&self) {
        let mut map = self.payments.lock().unwrap_or_else(|e| e.into_inner());
        for (i, p) in map.values_mut().enumerate() {
            p["status"] = json!("succeeded");
            p["paid"] = json!(true);
            p["payment_method"]["card"] = json!({"first6": "555555", "last4": format!("{:04}", i % 10_000),
                "expiry_month": "07", "expiry_year": "2030"});
        }
    }
}

// ---------------------------------------------------------------- the load

pub(crate) type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

pub(crate) async fn call(
    client: &Client,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
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
    let res =
        tokio::time::timeout(Duration::from_secs(30), client.request(req.body(body)?)).await??;
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

pub(crate) async fn account(
    client: &Client,
    addr: SocketAddr,
    name: &str,
    role: &str,
    admin: Option<&str>,
) -> anyhow::Result<String> {
    let creds = json!({"username": name, "password": "a long password", "role": role});
    let (s, v) = call(client, addr, "POST", "/api/v1/users", admin, Some(&creds)).await?;
    if s != 201 {
        bail!("sign-up {name}: {s} {v}");
    }
    let (s, v) = call(
        client,
        addr,
        "POST",
        "/api/v1/sessions",
        None,
        Some(&json!({"username": name, "password": "a long password"})),
    )
    .await?;
    if s != 201 {
        bail!("login {name}: {s} {v}");
    }
    Ok(v["token"].as_str().context("token")?.to_owned())
}

async fn fresh_database(admin: &str) -> anyhow::Result<(String, String)> {
    let name = format!("potok_bench_ledger_{}", std::process::id());
    let base = admin.rsplit_once('/').context("database URL")?.0.to_owned();
    psql(admin, &format!("DROP DATABASE IF EXISTS {name}")).await?;
    psql(admin, &format!("CREATE DATABASE {name}")).await?;
    Ok((format!("{base}/{name}"), name))
}

async fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .await
        .context("psql (postgresql-client) not found")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// pgbench's simple-update against a fresh database on the same server.
async fn pgbench(admin: &str, seconds: u64, clients: usize) -> anyhow::Result<f64> {
    let name = format!("potok_bench_pgbench_{}", std::process::id());
    let base = admin.rsplit_once('/').context("database URL")?.0.to_owned();
    psql(admin, &format!("DROP DATABASE IF EXISTS {name}")).await?;
    psql(admin, &format!("CREATE DATABASE {name}")).await?;
    let url = format!("{base}/{name}");
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "10"])
        .arg(&url)
        .output()
        .await
        .context("pgbench not found")?;
    if !init.status.success() {
        bail!("pgbench -i: {}", String::from_utf8_lossy(&init.stderr));
    }
    let run = Command::new("pgbench")
        .args([
            "--builtin=simple-update",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
        ])
        .arg(&url)
        .output()
        .await?;
    let _ = psql(admin, &format!("DROP DATABASE IF EXISTS {name}")).await;
    let text = String::from_utf8_lossy(&run.stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .with_context(|| format!("no tps in pgbench's output: {text}"))
}

/// One run: accounts and pending donations (not measured), then the notifications.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let provider = Provider::default();
    let app = axum::Router::new()
        .route("/v3/payments", post(create_payment))
        .route("/v3/payments/{id}", get(get_payment))
        .with_state(provider.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let yk = listener.local_addr()?;
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await;
    });
    let (url, db_name) = fresh_database(&opts.admin_url).await?;
    let data = tempfile::tempdir()?;
    let mut child: Child = Command::new(std::env::current_exe()?)
        .arg("ledger-server")
        .arg("--database-url")
        .arg(&url)
        .arg("--yookassa")
        .arg(format!("http://{yk}/v3"))
        .arg("--data-dir")
        .arg(data.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("server stdout")?;
    let line = tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .context("the server did not start within 30 s")??
    .context("the server exited")?;
    let addr: SocketAddr = line
        .strip_prefix("listening ")
        .context("server line")?
        .trim()
        .parse()?;

    let client: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(opts.concurrency * 2)
            .build_http();
    let admin = account(&client, addr, "root", "viewer", None).await?;
    let _streamer = account(&client, addr, "alice", "streamer", Some(&admin)).await?;
    let donor = account(&client, addr, "bob", "viewer", None).await?;
    // Pending donations, created concurrently (not measured).
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.concurrency));
    let mut creating = Vec::new();
    for i in 0..opts.donations {
        let (client, donor, sem) = (client.clone(), donor.clone(), Arc::clone(&sem));
        creating.push(tokio::spawn(async move {
            let _permit = sem.acquire().await?;
            let body = json!({"amount": 10_000 + (i as i64 % 1000)});
            let (s, v) = call(
                &client,
                addr,
                "POST",
                "/api/v1/channels/alice/donations",
                Some(&donor),
                Some(&body),
            )
            .await?;
            if s != 201 {
                bail!("donation: {s} {v}");
            }
            let url = v["confirmation"]["url"].as_str().context("confirmation")?;
            let share = v["donation"]["streamer_share"].as_i64().context("share")?;
            Ok::<_, anyhow::Error>((url.rsplit('/').next().unwrap_or_default().to_owned(), share))
        }));
    }
    let mut payments = Vec::new();
    let mut expected = 0;
    for c in creating {
        let (id, share) = c.await??;
        expected += share;
        payments.push(id);
    }
    provider.succeed_all();
    let objects: Vec<Value> = {
        let map = provider.payments.lock().unwrap_or_else(|e| e.into_inner());
        payments
            .iter()
            .filter_map(|id| map.get(id).cloned())
            .collect()
    };

    // The measured part: every notification twice, `concurrency` in flight.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for object in objects {
        let (client, sem) = (client.clone(), Arc::clone(&sem));
        tasks.push(tokio::spawn(async move {
            let body =
                json!({"type": "notification", "event": "payment.succeeded", "object": object});
            let mut out = Vec::new();
            for _ in 0..2 {
                let _permit = sem.acquire().await?;
                let t = Instant::now();
                let (s, v) = call(
                    &client,
                    addr,
                    "POST",
                    "/api/v1/payments/yookassa/notifications",
                    None,
                    Some(&body),
                )
                .await?;
                out.push((
                    s,
                    v["result"].as_str().unwrap_or_default().to_owned(),
                    t.elapsed().as_secs_f64() * 1000.0,
                ));
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut latencies = Vec::new();
    let mut credited = 0;
    for t in tasks {
        let pair = t.await??;
        for (s, result, ms) in &pair {
            if *s != 200 {
                bail!("a notification got {s}");
            }
            latencies.push(*ms);
            if result == "credited" {
                credited += 1;
            }
        }
        if pair.iter().filter(|p| p.1 == "credited").count() != 1 {
            bail!(
                "a payment was credited {} times",
                pair.iter().filter(|p| p.1 == "credited").count()
            );
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Exactly once, provably.
    let (_, bal) = call(
        &client,
        addr,
        "GET",
        "/api/v1/balance",
        Some(&_streamer),
        None,
    )
    .await?;
    if bal["balance"].as_i64() != Some(expected) {
        bail!("balance {} != expected {expected}", bal["balance"]);
    }
    let (_, rec) = call(
        &client,
        addr,
        "GET",
        "/api/v1/ledger/reconcile",
        Some(&admin),
        None,
    )
    .await?;
    if rec["mismatched_accounts"]
        .as_array()
        .is_none_or(|a| !a.is_empty())
        || rec["total"] != 0
    {
        bail!("the ledger does not reconcile: {rec}");
    }
    if let Some(stdin) = child.stdin.take() {
        drop(stdin);
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    stop.cancel();
    let _ = psql(
        &opts.admin_url,
        &format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"),
    )
    .await;
    let pgbench_tps = if opts.pgbench_seconds > 0 {
        Some(pgbench(&opts.admin_url, opts.pgbench_seconds, opts.concurrency).await?)
    } else {
        None
    };
    Ok(Report {
        donations_per_s: f64::from(credited) / elapsed,
        latencies_ms: latencies,
        pgbench_tps,
    })
}
