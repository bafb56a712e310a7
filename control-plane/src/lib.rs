//! The control-plane role: the cluster's brain and the streamer economy.
//!
//! Data enters as REST calls from streamers, viewers and operators ([`api`], `/api/v1`), and
//! as registrations, heartbeats, publish authorizations and stream resolutions from origins
//! and edges ([`cluster`], `/api/v1/cluster`, cluster secret); it leaves as JSON answers and
//! as rows in the database ([`db`]: SQLite embedded, PostgreSQL clustered, one repository
//! over both). [`scheduler`] picks origins for streamers and sweeps dead nodes. The OpenAPI
//! document is served at `/api/v1/openapi.json`; `/readyz` checks the database.

#![forbid(unsafe_code)]

mod accounts;
pub mod api;
pub mod chat;
pub mod cluster;
pub mod db;
pub mod error;
mod hashing;
mod limits;
mod metrics;
pub mod model;
mod notifications;
pub mod payments;
mod realtime;
mod recordings;
mod scheduler;
mod secrets;
mod streams;
pub mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, post};
use potok_config::{Config, Role, Secret};
use potok_service::http::BindError;
use potok_service::ops::role_router;
use potok_service::{HttpLimits, ReadinessCheck, RoleContext, RoleServer};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::db::Db;

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listener could not bind.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The database could not be opened or migrated.
    #[error("control_plane.database.url: {0}")]
    Database(String),
    /// The bus (NATS) could not be reached.
    #[error("control_plane.chat.nats_url: {0}")]
    Bus(String),
    /// The payment provider could not be set up.
    #[error("control_plane.payments: {0}")]
    Payments(String),
    /// The recordings' object store could not be opened.
    #[error("storage: {0}")]
    Storage(String),
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) db: Db,
    pub(crate) cluster_secret: Option<Secret>,
    pub(crate) heartbeat: Duration,
    pub(crate) node_timeout: Duration,
    pub(crate) limiter: Arc<limits::Limiter>,
    pub(crate) hasher: Arc<hashing::Hasher>,
    pub(crate) chat: Arc<chat::store::Chat>,
    pub(crate) notifications: Arc<notifications::Notifications>,
    pub(crate) payments: Arc<payments::Payments>,
    pub(crate) recordings: Arc<recordings::Recordings>,
    pub(crate) subscriptions: Arc<subscriptions::Subscriptions>,
    pub(crate) hub: Arc<realtime::hub::Hub>,
    /// WebSocket connections per client address (`chat.max_connections_per_address`).
    pub(crate) sockets: potok_service::http::PerAddress,
    pub(crate) metrics: metrics::CpMetrics,
}

/// The database URL: the configured one, or SQLite at `potok.db` in the data directory.
pub fn database_url(config: &Config) -> String {
    match &config.control_plane.database.url {
        Some(url) => url.expose().to_owned(),
        None => format!(
            "sqlite://{}",
            config.node.data_dir.join("potok.db").display()
        ),
    }
}

/// Opens the database, applies migrations and binds the API on `control_plane.listen`.
pub async fn bind(config: &Config, ctx: &RoleContext) -> Result<RoleServer, StartError> {
    let cp = &config.control_plane;
    let db = Db::open(&database_url(config), cp.database.max_connections)
        .await
        .map_err(|e| StartError::Database(e.to_string()))?;
    let metrics = metrics::CpMetrics::new(&ctx.metrics);
    let bus: Arc<dyn realtime::bus::Bus> = match &cp.chat.nats_url {
        Some(url) => Arc::new(
            realtime::bus::NatsBus::connect(url, 1000, Duration::from_secs(24 * 3600))
                .await
                .map_err(|e| StartError::Bus(e.to_string()))?,
        ),
        None => Arc::new(realtime::bus::MemoryBus::default()),
    };
    let notifications = Arc::new(notifications::Notifications::new(
        db.clone(),
        Arc::clone(&bus),
    ));
    let chat = Arc::new(chat::store::Chat::new(
        db.clone(),
        cp.chat.clone(),
        Arc::clone(&bus),
        Arc::clone(&notifications),
        metrics.clone(),
    ));
    let public_url = match &cp.payments.public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => format!(
            "http://{}:{}",
            config.node.public_host,
            cp.listen.get().port()
        ),
    };
    let payments = Arc::new(
        payments::Payments::new(
            db.clone(),
            cp.payments.clone(),
            public_url,
            Arc::clone(&chat),
            Arc::clone(&notifications),
            Arc::clone(&bus),
            metrics.clone(),
        )
        .await
        .map_err(StartError::Payments)?,
    );
    let subscriptions = Arc::new(subscriptions::Subscriptions::new(
        db.clone(),
        Arc::clone(&payments),
    ));
    let recordings = Arc::new(
        recordings::Recordings::new(
            config,
            potok_storage::StorageMetrics::new(&ctx.metrics, "control_plane"),
        )
        .map_err(StartError::Storage)?,
    );
    let logs = Arc::new(realtime::Logs {
        chat: Arc::clone(&chat),
        notifications: Arc::clone(&notifications),
        db: db.clone(),
    });
    let app = App {
        hub: realtime::hub::Hub::new(logs, bus, metrics.clone()),
        chat,
        notifications,
        payments: Arc::clone(&payments),
        recordings: Arc::clone(&recordings),
        subscriptions: Arc::clone(&subscriptions),
        sockets: potok_service::http::PerAddress::new(cp.chat.max_connections_per_address as usize),
        db: db.clone(),
        cluster_secret: config.cluster.secret.clone(),
        heartbeat: cp.heartbeat_interval.get(),
        node_timeout: cp.node_timeout.get(),
        limiter: Arc::new(limits::Limiter::new(
            db.clone(),
            cp.auth_failures_per_minute,
            cp.signups_per_hour,
        )),
        hasher: Arc::new(hashing::Hasher::new(
            cp.password_hash_concurrency,
            cp.password_hash_queue,
        )),
        metrics,
    };
    let checks = vec![ReadinessCheck::new("database", move || {
        let db = db.clone();
        async move { db.ping().await.map_err(|e| e.to_string()) }
    })];
    let router = role_router(
        Role::ControlPlane,
        routes(app.clone()).merge(potok_web::router(config)),
        checks,
        ctx,
    );
    let server = RoleServer::bind(
        Role::ControlPlane,
        "control_plane.listen",
        cp.listen,
        router,
        HttpLimits::from(&config.http),
    )
    .await?;
    let retention = app.chat.clone();
    let retention_db = app.db.clone();
    let (clips, clips_db) = (Arc::clone(&recordings), app.db.clone());
    let (presence_hub, presence_db) = (Arc::clone(&app.hub), app.db.clone());
    Ok(server
        .with_task("node-sweeper", None, move |shutdown| {
            scheduler::sweep(app, shutdown)
        })
        .with_task("payments", None, move |shutdown| payments.run(shutdown))
        .with_task("subscription-renewals", None, move |shutdown| {
            subscriptions.run(shutdown)
        })
        .with_task("recordings-retention", None, move |shutdown| async move {
            recordings.run_retention(retention_db, shutdown).await;
        })
        .with_task("highlight-clips", None, move |shutdown| async move {
            clips.run_clips(clips_db, shutdown).await;
        })
        .with_task("presence", None, move |shutdown| {
            presence_hub.keep_presence(presence_db, shutdown)
        })
        .with_task("chat-retention", None, move |shutdown| async move {
            let mut every = tokio::time::interval(Duration::from_secs(600));
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = every.tick() => {
                        if let Err(e) = retention.sweep().await {
                            tracing::warn!(error = %e.message, "chat retention sweep failed");
                        }
                    }
                }
            }
        }))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Potok control plane", description = "Accounts, stream keys, streams, scheduling and the cluster's node registry. Errors are `{\"code\": StreamingErrorCode, \"message\": ...}`."),
    paths(
        accounts::routes::create_user, accounts::routes::login, accounts::routes::logout, accounts::routes::me, accounts::routes::create_token, accounts::routes::list_tokens, accounts::routes::revoke_token,
        accounts::routes::create_key, accounts::routes::list_keys, accounts::routes::rotate_key, accounts::routes::revoke_key,
        streams::routes::create_stream, streams::routes::list_streams, streams::routes::active_streams, streams::routes::get_stream, streams::routes::update_stream,
        streams::routes::stop_stream, streams::routes::ingest, cluster::list_nodes,
        cluster::register, cluster::heartbeat, cluster::publish, cluster::resolve, cluster::origins,
        chat::routes::history, chat::routes::send, chat::routes::edit, chat::routes::delete,
        chat::routes::moderate, chat::routes::timeout, chat::routes::ban, chat::routes::unban,
        chat::routes::add_role, chat::routes::remove_role, chat::routes::settings,
        chat::routes::update_settings, chat::routes::clear, chat::routes::modlog,
        chat::routes::channel, chat::routes::follow, chat::routes::unfollow,
        chat::routes::presence, chat::routes::held, chat::routes::decide_held, chat::routes::report, chat::routes::reports,
        chat::routes::resolve_report, chat::routes::add_reaction, chat::routes::remove_reaction,
        realtime::gateway::realtime,
        notifications::list, notifications::mark_read, notifications::outbox, notifications::ack,
        payments::routes::send_donation, payments::routes::process_donation, payments::routes::send_virtual_gift, payments::routes::request_song,
        payments::routes::request_game, payments::routes::boost_message, payments::routes::highlight_moment,
        payments::routes::get_highlights, payments::routes::get_donation_status, payments::routes::get_donation_history,
        payments::routes::get_my_donations, payments::routes::get_donation_analytics, payments::routes::get_top_donors,
        payments::routes::donation_options, payments::routes::refund_donation, payments::routes::handle_chargeback,
        payments::routes::reveal_item_key, payments::routes::get_streamer_balance, payments::routes::request_streamer_payout,
        payments::routes::reconcile_ledger, payments::routes::get_available_gifts, payments::routes::create_custom_gift,
        payments::routes::get_catalog_items, payments::routes::create_catalog_item, payments::routes::add_item_keys,
        payments::routes::set_donation_goal, payments::routes::create_community_goal, payments::routes::get_donation_goals,
        payments::routes::close_donation_goal, payments::routes::get_donation_alerts, payments::routes::configure_donation_alerts,
        payments::routes::get_donation_settings, payments::routes::update_donation_settings, payments::routes::block_suspicious_donor,
        payments::routes::get_donation_requests, payments::routes::decide_donation_request, payments::routes::start_donation_competition,
        payments::routes::get_donation_competition, payments::routes::handle_viewer_challenge, payments::routes::get_viewer_challenge,
        payments::routes::decide_viewer_challenge, payments::routes::yookassa_notification, payments::routes::confirm_sandbox_payment,
        payments::overlay::create_overlay_token, payments::overlay::list_overlay_tokens, payments::overlay::revoke_overlay_token,
        payments::overlay::get_overlay_state, payments::overlay::trigger_text_to_speech,
        recordings::routes::get_recording_settings, recordings::routes::update_recording_settings,
        recordings::routes::start_recording, recordings::routes::stop_recording,
        recordings::routes::get_stream_health,
        recordings::routes::get_recordings, recordings::routes::get_recording, recordings::routes::delete_recording,
        subscriptions::routes::get_subscription_tiers, subscriptions::routes::create_subscription_tier,
        subscriptions::routes::update_tier_privileges, subscriptions::routes::subscribe_to_streamer,
        subscriptions::routes::get_channel_subscribers, subscriptions::routes::get_subscription,
        subscriptions::routes::cancel_subscription, subscriptions::routes::upgrade_subscription,
        subscriptions::routes::gift_subscription, subscriptions::routes::handle_gift_subscription_series,
        subscriptions::routes::pause_subscription, subscriptions::routes::resume_subscription,
        subscriptions::routes::get_subscription_history, subscriptions::routes::notify_expiring_subscription,
        subscriptions::routes::offer_renewal_discount, subscriptions::routes::run_subscription_renewals,
    ),
    components(schemas(error::ApiError, error::StreamingErrorCode, error::FieldError, chat::ChatEvent, payments::Donation)),
    modifiers(&Security),
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, what) in [
            (
                "token",
                "An API token (POST /api/v1/sessions or /api/v1/tokens)",
            ),
            ("cluster", "The cluster secret (origins and edges)"),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(what))
                        .build(),
                ),
            );
        }
    }
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(openapi())
}

fn routes(app: App) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/users", post(accounts::routes::create_user))
        .route("/api/v1/sessions", post(accounts::routes::login))
        .route("/api/v1/sessions/current", delete(accounts::routes::logout))
        .route("/api/v1/me", get(accounts::routes::me))
        .route(
            "/api/v1/tokens",
            get(accounts::routes::list_tokens).post(accounts::routes::create_token),
        )
        .route(
            "/api/v1/tokens/{id}",
            delete(accounts::routes::revoke_token),
        )
        .route(
            "/api/v1/stream-keys",
            get(accounts::routes::list_keys).post(accounts::routes::create_key),
        )
        .route(
            "/api/v1/stream-keys/{id}",
            delete(accounts::routes::revoke_key),
        )
        .route(
            "/api/v1/stream-keys/{id}/rotate",
            post(accounts::routes::rotate_key),
        )
        .route(
            "/api/v1/streams",
            get(streams::routes::list_streams).post(streams::routes::create_stream),
        )
        .route(
            "/api/v1/streams/active",
            get(streams::routes::active_streams),
        )
        .route(
            "/api/v1/streams/{id}",
            get(streams::routes::get_stream).patch(streams::routes::update_stream),
        )
        .route(
            "/api/v1/streams/{id}/stop",
            post(streams::routes::stop_stream),
        )
        .route(
            "/api/v1/streams/{id}/recording",
            post(recordings::routes::start_recording).delete(recordings::routes::stop_recording),
        )
        .route(
            "/api/v1/streams/{id}/health",
            get(recordings::routes::get_stream_health),
        )
        .route(
            "/api/v1/recordings",
            get(recordings::routes::get_recordings),
        )
        .route(
            "/api/v1/recordings/{id}",
            get(recordings::routes::get_recording).delete(recordings::routes::delete_recording),
        )
        .route(
            "/api/v1/channels/{name}/recording-settings",
            get(recordings::routes::get_recording_settings)
                .put(recordings::routes::update_recording_settings),
        )
        .route("/api/v1/ingest", get(streams::routes::ingest))
        .route("/api/v1/nodes", get(cluster::list_nodes))
        .route("/api/v1/cluster/nodes", post(cluster::register))
        .route(
            "/api/v1/cluster/nodes/{id}/heartbeat",
            post(cluster::heartbeat),
        )
        .route("/api/v1/cluster/publish", post(cluster::publish))
        .route(
            "/api/v1/cluster/streams/{name}/origin",
            get(cluster::resolve),
        )
        .route("/api/v1/cluster/origins", get(cluster::origins))
        .route(
            "/api/v1/chat/{room}/messages",
            get(chat::routes::history).post(chat::routes::send),
        )
        .route(
            "/api/v1/chat/{room}/messages/{id}",
            axum::routing::patch(chat::routes::edit).delete(chat::routes::delete),
        )
        .route(
            "/api/v1/chat/{room}/messages/{id}/moderate",
            post(chat::routes::moderate),
        )
        .route("/api/v1/chat/{room}/timeouts", post(chat::routes::timeout))
        .route("/api/v1/chat/{room}/bans", post(chat::routes::ban))
        .route(
            "/api/v1/chat/{room}/bans/{username}",
            delete(chat::routes::unban),
        )
        .route(
            "/api/v1/chat/{room}/roles/{username}",
            axum::routing::put(chat::routes::add_role).delete(chat::routes::remove_role),
        )
        .route(
            "/api/v1/chat/{room}/settings",
            get(chat::routes::settings).put(chat::routes::update_settings),
        )
        .route("/api/v1/chat/{room}/clear", post(chat::routes::clear))
        .route("/api/v1/chat/{room}/modlog", get(chat::routes::modlog))
        .route("/api/v1/chat/{room}/held", get(chat::routes::held))
        .route("/api/v1/chat/{room}/presence", get(chat::routes::presence))
        .route(
            "/api/v1/chat/{room}/held/{id}",
            post(chat::routes::decide_held),
        )
        .route(
            "/api/v1/chat/{room}/messages/{id}/report",
            post(chat::routes::report),
        )
        .route("/api/v1/chat/{room}/reports", get(chat::routes::reports))
        .route(
            "/api/v1/chat/{room}/reports/{id}",
            delete(chat::routes::resolve_report),
        )
        .route(
            "/api/v1/chat/{room}/messages/{id}/reactions/{emoji}",
            axum::routing::put(chat::routes::add_reaction).delete(chat::routes::remove_reaction),
        )
        .route("/api/v1/channels/{name}", get(chat::routes::channel))
        .route(
            "/api/v1/channels/{name}/follow",
            axum::routing::put(chat::routes::follow).delete(chat::routes::unfollow),
        )
        .route("/api/v1/realtime", get(realtime::gateway::realtime))
        .route("/api/v1/notifications", get(notifications::list))
        .route("/api/v1/notifications/read", post(notifications::mark_read))
        .route(
            "/api/v1/cluster/notifications/outbox",
            get(notifications::outbox),
        )
        .route(
            "/api/v1/cluster/notifications/outbox/{id}",
            delete(notifications::ack),
        )
        .route(
            "/api/v1/channels/{name}/donations",
            get(payments::routes::get_donation_history).post(payments::routes::send_donation),
        )
        .route(
            "/api/v1/channels/{name}/gifts/{gift_id}",
            post(payments::routes::send_virtual_gift),
        )
        .route(
            "/api/v1/channels/{name}/song-requests",
            post(payments::routes::request_song),
        )
        .route(
            "/api/v1/channels/{name}/game-requests",
            post(payments::routes::request_game),
        )
        .route(
            "/api/v1/chat/{room}/messages/{id}/boost",
            post(payments::routes::boost_message),
        )
        .route(
            "/api/v1/channels/{name}/highlights",
            get(payments::routes::get_highlights).post(payments::routes::highlight_moment),
        )
        .route(
            "/api/v1/donations",
            post(payments::routes::process_donation),
        )
        .route(
            "/api/v1/donations/{id}",
            get(payments::routes::get_donation_status),
        )
        .route(
            "/api/v1/donations/{id}/refund",
            post(payments::routes::refund_donation),
        )
        .route(
            "/api/v1/donations/{id}/chargeback",
            post(payments::routes::handle_chargeback),
        )
        .route(
            "/api/v1/donations/{id}/key",
            post(payments::routes::reveal_item_key),
        )
        .route(
            "/api/v1/me/donations",
            get(payments::routes::get_my_donations),
        )
        .route(
            "/api/v1/channels/{name}/donation-analytics",
            get(payments::routes::get_donation_analytics),
        )
        .route(
            "/api/v1/channels/{name}/top-donors",
            get(payments::routes::get_top_donors),
        )
        .route(
            "/api/v1/channels/{name}/donation-options",
            get(payments::routes::donation_options),
        )
        .route(
            "/api/v1/balance",
            get(payments::routes::get_streamer_balance),
        )
        .route(
            "/api/v1/payouts",
            post(payments::routes::request_streamer_payout),
        )
        .route(
            "/api/v1/ledger/reconcile",
            get(payments::routes::reconcile_ledger),
        )
        .route(
            "/api/v1/gifts",
            get(payments::routes::get_available_gifts).post(payments::routes::create_custom_gift),
        )
        .route(
            "/api/v1/channels/{name}/items",
            get(payments::routes::get_catalog_items),
        )
        .route("/api/v1/items", post(payments::routes::create_catalog_item))
        .route(
            "/api/v1/items/{id}/keys",
            post(payments::routes::add_item_keys),
        )
        .route(
            "/api/v1/channels/{name}/goals",
            get(payments::routes::get_donation_goals).post(payments::routes::set_donation_goal),
        )
        .route(
            "/api/v1/channels/{name}/goals/{id}",
            delete(payments::routes::close_donation_goal),
        )
        .route(
            "/api/v1/channels/{name}/community-goals",
            post(payments::routes::create_community_goal),
        )
        .route(
            "/api/v1/channels/{name}/donation-alerts",
            get(payments::routes::get_donation_alerts)
                .put(payments::routes::configure_donation_alerts),
        )
        .route(
            "/api/v1/channels/{name}/donation-settings",
            get(payments::routes::get_donation_settings)
                .patch(payments::routes::update_donation_settings),
        )
        .route(
            "/api/v1/channels/{name}/blocked-donors",
            post(payments::routes::block_suspicious_donor),
        )
        .route(
            "/api/v1/channels/{name}/requests",
            get(payments::routes::get_donation_requests),
        )
        .route(
            "/api/v1/channels/{name}/requests/{id}",
            post(payments::routes::decide_donation_request),
        )
        .route(
            "/api/v1/channels/{name}/competitions",
            post(payments::routes::start_donation_competition),
        )
        .route(
            "/api/v1/channels/{name}/competitions/current",
            get(payments::routes::get_donation_competition),
        )
        .route(
            "/api/v1/channels/{name}/challenges",
            post(payments::routes::handle_viewer_challenge),
        )
        .route(
            "/api/v1/channels/{name}/challenges/{id}",
            get(payments::routes::get_viewer_challenge)
                .post(payments::routes::decide_viewer_challenge),
        )
        .route(
            "/api/v1/payments/yookassa/notifications",
            post(payments::routes::yookassa_notification),
        )
        .route(
            "/api/v1/payments/sandbox/{id}",
            post(payments::routes::confirm_sandbox_payment),
        )
        .route(
            "/api/v1/overlay-tokens",
            get(payments::overlay::list_overlay_tokens)
                .post(payments::overlay::create_overlay_token),
        )
        .route(
            "/api/v1/overlay-tokens/{id}",
            delete(payments::overlay::revoke_overlay_token),
        )
        .route(
            "/api/v1/overlay/{token}",
            get(payments::overlay::get_overlay_state),
        )
        .route(
            "/api/v1/overlay/{token}/speech/{donation}",
            get(payments::overlay::trigger_text_to_speech),
        )
        .route(
            "/pay/sandbox/{id}",
            get(payments::routes::sandbox_page).post(payments::routes::sandbox_submit),
        )
        .route(
            "/api/v1/channels/{name}/subscription-tiers",
            get(subscriptions::routes::get_subscription_tiers)
                .post(subscriptions::routes::create_subscription_tier),
        )
        .route(
            "/api/v1/subscription-tiers/{id}",
            axum::routing::patch(subscriptions::routes::update_tier_privileges),
        )
        .route(
            "/api/v1/channels/{name}/subscriptions",
            post(subscriptions::routes::subscribe_to_streamer),
        )
        .route(
            "/api/v1/channels/{name}/subscribers",
            get(subscriptions::routes::get_channel_subscribers),
        )
        .route(
            "/api/v1/channels/{name}/gift-subscriptions",
            post(subscriptions::routes::gift_subscription),
        )
        .route(
            "/api/v1/channels/{name}/gift-subscriptions/series",
            post(subscriptions::routes::handle_gift_subscription_series),
        )
        .route(
            "/api/v1/subscriptions",
            get(subscriptions::routes::get_subscription_history),
        )
        .route(
            "/api/v1/subscriptions/renewals",
            post(subscriptions::routes::run_subscription_renewals),
        )
        .route(
            "/api/v1/subscriptions/{id}",
            get(subscriptions::routes::get_subscription),
        )
        .route(
            "/api/v1/subscriptions/{id}/cancel",
            post(subscriptions::routes::cancel_subscription),
        )
        .route(
            "/api/v1/subscriptions/{id}/upgrade",
            post(subscriptions::routes::upgrade_subscription),
        )
        .route(
            "/api/v1/subscriptions/{id}/pause",
            post(subscriptions::routes::pause_subscription),
        )
        .route(
            "/api/v1/subscriptions/{id}/resume",
            post(subscriptions::routes::resume_subscription),
        )
        .route(
            "/api/v1/subscriptions/{id}/expiring-notice",
            post(subscriptions::routes::notify_expiring_subscription),
        )
        .route(
            "/api/v1/subscriptions/{id}/renewal-discount",
            post(subscriptions::routes::offer_renewal_discount),
        )
        .route("/api/v1/{*rest}", axum::routing::any(api::not_found))
        .with_state(app)
}
