//! Who may publish: a stream key is exchanged for the stream's public name. The control
//! plane will answer this later; until then the keys come from `origin.streams`.

use std::collections::HashMap;

use potok_config::StreamKeyConfig;

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The key is not known. The key itself is never part of the error.
    #[error("stream key not accepted")]
    UnknownKey,
    /// The RTMP application is not `live`.
    #[error("application {0:?} does not exist (use rtmp://HOST/live)")]
    UnknownApp(String),
}

/// Decides whether `key` may publish and under which public stream name.
pub trait PublishAuth: Send + Sync + 'static {
    /// The public name of the stream that `key` publishes, or why not.
    fn authorize(&self, app: &str, key: &str) -> Result<String, AuthError>;
}

/// Keys listed in the configuration.
pub struct StaticKeys {
    by_key: HashMap<String, String>,
}

impl StaticKeys {
    /// From `origin.streams`.
    pub fn new(streams: &[StreamKeyConfig]) -> Self {
        StaticKeys {
            by_key: streams
                .iter()
                .map(|s| (s.key.expose().to_owned(), s.name.clone()))
                .collect(),
        }
    }

    /// Whether no key is configured (every publish would be refused).
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

impl PublishAuth for StaticKeys {
    fn authorize(&self, app: &str, key: &str) -> Result<String, AuthError> {
        if app.trim_end_matches('/') != "live" {
            return Err(AuthError::UnknownApp(app.to_owned()));
        }
        self.by_key.get(key).cloned().ok_or(AuthError::UnknownKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use potok_config::Secret;

    #[test]
    fn keys_map_to_public_names() {
        let keys = StaticKeys::new(&[StreamKeyConfig {
            name: "alice".into(),
            key: Secret::new("k-1234567"),
            srt_passphrase: None,
            transcode: None,
        }]);
        assert_eq!(keys.authorize("live", "k-1234567").unwrap(), "alice");
        assert_eq!(keys.authorize("live/", "k-1234567").unwrap(), "alice");
        assert_eq!(keys.authorize("live", "alice"), Err(AuthError::UnknownKey));
        assert!(matches!(
            keys.authorize("other", "k-1234567"),
            Err(AuthError::UnknownApp(_))
        ));
        assert!(!AuthError::UnknownKey.to_string().contains("k-1234567"));
    }
}
