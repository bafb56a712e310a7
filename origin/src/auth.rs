//! Who may publish: a stream key is exchanged for the stream's public name. With a control
//! plane (a cluster, and `potok all`) it answers ([`ControlPlaneAuth`]: streamers' keys live
//! there, hashed, with per-address limits); keys listed in `origin.streams` ([`StaticKeys`])
//! are accepted too, first ([`Chain`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use potok_config::StreamKeyConfig;
use potok_config::wire::{PublishGrant, PublishRequest};
use potok_service::cluster::{CallError, ControlPlane};

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The key is not known. The key itself is never part of the error.
    #[error("stream key not accepted")]
    UnknownKey,
    /// The RTMP application is not `live`.
    #[error("application {0:?} does not exist (use rtmp://HOST/live)")]
    UnknownApp(String),
    /// Too many refused keys from this address.
    #[error("too many refused attempts from this address")]
    RateLimited,
    /// This origin is full.
    #[error("this origin is at capacity")]
    AtCapacity,
    /// The stream is being published elsewhere.
    #[error("the stream is already being published")]
    AlreadyLive,
    /// The control plane could not be asked.
    #[error("cannot authorize now: {0}")]
    Unavailable(String),
    /// The name the key maps to belongs to a configured stream (`origin.streams`): only the
    /// configured key publishes under it.
    #[error("the stream name is reserved by the configuration")]
    Reserved,
}

/// What a publisher asks.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// RTMP application (`live`).
    pub app: &'a str,
    /// The stream key.
    pub key: &'a str,
    /// `rtmp`, `rtmps` or `srt`.
    pub protocol: &'static str,
    /// The publisher's address.
    pub client: Option<IpAddr>,
}

/// What an accepted publish gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The public stream name.
    pub name: String,
    /// Transcode this stream (`None`: the origin's default).
    pub transcode: Option<bool>,
    /// The stream moved here from a failed origin: continue after a discontinuity.
    pub continues: bool,
    /// The channel's recording settings (`None`: `storage.recordings` decides).
    pub recording: Option<potok_config::wire::GrantRecording>,
}

/// A boxed future of an authorization.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<Grant, AuthError>> + Send + 'a>>;

/// Decides whether a key may publish and under which public stream name.
pub trait PublishAuth: Send + Sync + 'static {
    /// The grant for `req`, or why not.
    fn authorize<'a>(&'a self, req: Request<'a>) -> AuthFuture<'a>;
}

fn check_app(app: &str) -> Result<(), AuthError> {
    if app.trim_end_matches('/') == "live" {
        Ok(())
    } else {
        Err(AuthError::UnknownApp(app.to_owned()))
    }
}

/// Keys listed in the configuration.
pub struct StaticKeys {
    by_key: HashMap<String, (String, Option<bool>)>,
}

impl StaticKeys {
    /// From `origin.streams`.
    pub fn new(streams: &[StreamKeyConfig]) -> Self {
        StaticKeys {
            by_key: streams
                .iter()
                .map(|s| (s.key.expose().to_owned(), (s.name.clone(), s.transcode)))
                .collect(),
        }
    }

    /// Whether no key is configured (every publish would be refused).
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    fn lookup(&self, req: Request<'_>) -> Result<Grant, AuthError> {
        check_app(req.app)?;
        let (name, transcode) = self.by_key.get(req.key).ok_or(AuthError::UnknownKey)?;
        Ok(Grant {
            name: name.clone(),
            transcode: *transcode,
            continues: false,
            recording: None,
        })
    }
}

impl PublishAuth for StaticKeys {
    fn authorize<'a>(&'a self, req: Request<'a>) -> AuthFuture<'a> {
        let r = self.lookup(req);
        Box::pin(async move { r })
    }
}

/// Asks the control plane (`POST /api/v1/cluster/publish`).
pub struct ControlPlaneAuth {
    cp: ControlPlane,
    node_id: Arc<RwLock<Option<String>>>,
    reserved: std::collections::HashSet<String>,
}

impl ControlPlaneAuth {
    /// Authorizes through `cp` as the node whose id lands in `node_id` once registered.
    /// Grants for a name in `reserved` (the configured streams) are refused: a name is owned
    /// by exactly one account or configuration entry, whatever the control plane says.
    pub fn new(
        cp: ControlPlane,
        node_id: Arc<RwLock<Option<String>>>,
        reserved: impl IntoIterator<Item = String>,
    ) -> Self {
        ControlPlaneAuth {
            cp,
            node_id,
            reserved: reserved.into_iter().collect(),
        }
    }
}

impl PublishAuth for ControlPlaneAuth {
    fn authorize<'a>(&'a self, req: Request<'a>) -> AuthFuture<'a> {
        Box::pin(async move {
            check_app(req.app)?;
            let node_id = self
                .node_id
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .ok_or_else(|| {
                    AuthError::Unavailable("not registered with the control plane yet".into())
                })?;
            let body = PublishRequest {
                node_id,
                key: req.key.to_owned(),
                protocol: req.protocol.to_owned(),
                client_addr: req.client.map(|a| a.to_string()),
            };
            match self.cp.post::<_, PublishGrant>("/publish", &body).await {
                Ok(g) if self.reserved.contains(&g.name) => Err(AuthError::Reserved),
                Ok(g) => Ok(Grant {
                    name: g.name,
                    transcode: g.transcode,
                    continues: g.continues,
                    recording: g.recording,
                }),
                Err(e) => Err(match e.code() {
                    Some("STREAM_KEY_INVALID") => AuthError::UnknownKey,
                    Some("RATE_LIMITED") => AuthError::RateLimited,
                    Some("NODE_AT_CAPACITY") => AuthError::AtCapacity,
                    Some("STREAM_ALREADY_LIVE") => AuthError::AlreadyLive,
                    Some("CONFLICT") => AuthError::Reserved,
                    _ => AuthError::Unavailable(match e {
                        CallError::Refused { body, .. } => body.message,
                        CallError::Unreachable(why) => why,
                    }),
                }),
            }
        })
    }
}

/// Tries each authorizer in turn: the first grant wins; otherwise the most telling refusal
/// (anything but "unknown key") of the last one that gave one.
pub struct Chain(pub Vec<Arc<dyn PublishAuth>>);

impl PublishAuth for Chain {
    fn authorize<'a>(&'a self, req: Request<'a>) -> AuthFuture<'a> {
        Box::pin(async move {
            let mut refusal = AuthError::UnknownKey;
            for auth in &self.0 {
                match auth.authorize(req).await {
                    Ok(grant) => return Ok(grant),
                    Err(AuthError::UnknownKey) => {}
                    Err(e) => refusal = e,
                }
            }
            Err(refusal)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use potok_config::Secret;

    fn req<'a>(app: &'a str, key: &'a str) -> Request<'a> {
        Request {
            app,
            key,
            protocol: "rtmp",
            client: None,
        }
    }

    #[tokio::test]
    async fn a_chain_takes_the_first_grant() {
        let a: Arc<dyn PublishAuth> = Arc::new(StaticKeys::new(&[StreamKeyConfig {
            name: "a".into(),
            key: Secret::new("key-of-a-123"),
            srt_passphrase: None,
            transcode: None,
        }]));
        let b: Arc<dyn PublishAuth> = Arc::new(StaticKeys::new(&[StreamKeyConfig {
            name: "b".into(),
            key: Secret::new("key-of-b-123"),
            srt_passphrase: None,
            transcode: None,
        }]));
        let chain = Chain(vec![a, b]);
        assert_eq!(
            chain
                .authorize(req("live", "key-of-b-123"))
                .await
                .unwrap()
                .name,
            "b"
        );
        assert_eq!(
            chain
                .authorize(req("live", "key-of-a-123"))
                .await
                .unwrap()
                .name,
            "a"
        );
        assert_eq!(
            chain.authorize(req("live", "nope")).await,
            Err(AuthError::UnknownKey)
        );
        assert!(matches!(
            chain.authorize(req("app", "key-of-a-123")).await,
            Err(AuthError::UnknownApp(_))
        ));
    }

    #[test]
    fn keys_map_to_public_names() {
        let keys = StaticKeys::new(&[StreamKeyConfig {
            name: "alice".into(),
            key: Secret::new("k-1234567"),
            srt_passphrase: None,
            transcode: Some(false),
        }]);
        let g = keys.lookup(req("live", "k-1234567")).unwrap();
        assert_eq!((g.name.as_str(), g.transcode), ("alice", Some(false)));
        assert_eq!(
            keys.lookup(req("live/", "k-1234567")).unwrap().name,
            "alice"
        );
        assert_eq!(
            keys.lookup(req("live", "alice")),
            Err(AuthError::UnknownKey)
        );
        assert!(matches!(
            keys.lookup(req("other", "k-1234567")),
            Err(AuthError::UnknownApp(_))
        ));
        assert!(!AuthError::UnknownKey.to_string().contains("k-1234567"));
    }
}
