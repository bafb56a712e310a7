//! `[storage]`: the object store every role shares (origins write recordings, DVR segments and
//! thumbnails; edges read them), the origin's local spill queue, and recording settings.
//!
//! The local filesystem is the embedded default; S3-compatible stores (Yandex Object Storage,
//! VK Cloud, Selectel) are configured under `[storage.s3]`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{ByteSize, HumanDuration, Secret};

/// Which object store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// A directory on this machine (`storage.path`).
    #[default]
    Local,
    /// An S3-compatible service (`storage.s3`).
    S3,
}

/// The shared object store.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `local` (a directory) or `s3`.
    pub backend: StorageBackend,
    /// Directory of the local store. Unset: `origin.archive.path` if set, else `archive` in
    /// `node.data_dir` (an edge without either has no store unless `edge.archive_path` is set).
    pub path: Option<PathBuf>,
    /// The S3-compatible service, for `backend = "s3"`.
    pub s3: S3Config,
    /// The origin's on-disk queue of writes waiting for the store.
    pub spool: SpoolConfig,
    /// Recordings, DVR, thumbnails and retention.
    pub recordings: RecordingsConfig,
}

/// An S3-compatible object store.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Service URL, e.g. `https://storage.yandexcloud.net`; `http://` only for a test server.
    pub endpoint: String,
    /// Region, e.g. `ru-central1`.
    pub region: String,
    /// Bucket (created beforehand).
    pub bucket: String,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted
    /// (`bucket.endpoint/key`).
    pub path_style: bool,
    /// Access key id.
    pub access_key_id: Option<Secret>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
    /// Objects at least this large are uploaded in parts (multipart upload).
    pub multipart_threshold: ByteSize,
    /// Size of each part of a multipart upload (S3 needs at least 5 MiB but for the last).
    pub multipart_part_size: ByteSize,
    /// Time one request to the store may take.
    pub timeout: HumanDuration,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            region: String::new(),
            bucket: String::new(),
            path_style: true,
            access_key_id: None,
            secret_access_key: None,
            multipart_threshold: ByteSize::mib(16),
            multipart_part_size: ByteSize::mib(8),
            timeout: HumanDuration::secs(30),
        }
    }
}

/// Writes waiting for the object store, on local disk so that a store outage or an origin
/// restart loses nothing (up to the bound).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// Directory. Unset: `spool` in `node.data_dir`.
    pub dir: Option<PathBuf>,
    /// Most bytes waiting; past it new writes are dropped (counted in
    /// `potok_storage_spool_dropped_total` and logged).
    pub max_bytes: ByteSize,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: None,
            max_bytes: ByteSize::mib(4096),
        }
    }
}

/// Recordings and what is derived from the live streams.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingsConfig {
    /// Whether every broadcast is recorded unless stopped (per stream:
    /// `storage.recordings.streams`; per broadcast: the origin API's start/stop).
    pub enabled: bool,
    /// Renditions kept in a recording; empty: all.
    pub renditions: Vec<String>,
    /// Longest recording; later segments are left out of it.
    pub max_duration: HumanDuration,
    /// Days a recording or clip is kept after it ends (per stream:
    /// `storage.recordings.streams`); 0: forever.
    pub retention_days: u32,
    /// Per-stream settings over the ones above.
    pub streams: Vec<StreamRecording>,
    /// How often an origin deletes expired recordings.
    pub sweep_interval: HumanDuration,
    /// How far back a live viewer can seek (`dvr.m3u8`); 0: no DVR playlist.
    pub dvr_window: HumanDuration,
    /// How often a live stream's thumbnail is refreshed; 0: no thumbnails.
    pub thumbnail_interval: HumanDuration,
}

impl Default for RecordingsConfig {
    fn default() -> Self {
        RecordingsConfig {
            enabled: true,
            renditions: Vec::new(),
            max_duration: HumanDuration::secs(12 * 3600),
            retention_days: 30,
            streams: Vec::new(),
            sweep_interval: HumanDuration::secs(3600),
            dvr_window: HumanDuration::secs(2 * 3600),
            thumbnail_interval: HumanDuration::secs(10),
        }
    }
}

/// One stream's recording settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRecording {
    /// The stream's public name.
    pub name: String,
    /// Whether its broadcasts are recorded; unset: `storage.recordings.enabled`.
    #[serde(default)]
    pub record: Option<bool>,
    /// Days its recordings are kept (0: forever); unset: `storage.recordings.retention_days`.
    #[serde(default)]
    pub retention_days: Option<u32>,
}

impl RecordingsConfig {
    /// Whether broadcasts of `stream` are recorded by default.
    pub fn records(&self, stream: &str) -> bool {
        self.streams
            .iter()
            .find(|s| s.name == stream)
            .and_then(|s| s.record)
            .unwrap_or(self.enabled)
    }

    /// Days recordings of `stream` are kept (0: forever).
    pub fn retention_days_of(&self, stream: &str) -> u32 {
        self.streams
            .iter()
            .find(|s| s.name == stream)
            .and_then(|s| s.retention_days)
            .unwrap_or(self.retention_days)
    }
}

/// Host suffixes of object stores operated in Russia that `potok config check` knows.
const RUSSIAN_HOSTS: &[&str] = &[
    "storage.yandexcloud.net",
    "vkcloud-storage.ru",
    "mcs.mail.ru",
    "selcdn.ru",
    "selstorage.ru",
    "cloud.ru",
    "sbercloud.ru",
    "timeweb.cloud",
    "twcstorage.ru",
    "ya.ru",
];

/// Regions names that are in Russia (by prefix).
const RUSSIAN_REGIONS: &[&str] = &["ru-", "ru", "msk", "spb"];

/// A stream or rendition name: 1-64 letters, digits, `-`, `_`.
pub(crate) fn name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

/// The host of an endpoint URL (without scheme, port, path).
pub(crate) fn endpoint_host(endpoint: &str) -> &str {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    }
}

/// Whether `host` is a known Russian store, a `.ru`/`.рф` name, or a local test address.
pub(crate) fn host_in_russia(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let local = host == "localhost"
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| match ip {
            std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
            std::net::IpAddr::V6(v6) => v6.is_loopback(),
        });
    local
        || host.ends_with(".ru")
        || host.ends_with(".xn--p1ai")
        || RUSSIAN_HOSTS
            .iter()
            .any(|h| host == *h || host.ends_with(&format!(".{h}")))
}

/// Whether `region` names a Russian region.
pub(crate) fn region_in_russia(region: &str) -> bool {
    let r = region.to_ascii_lowercase();
    RUSSIAN_REGIONS.iter().any(|p| {
        if p.ends_with('-') {
            r.starts_with(p)
        } else {
            r == *p
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn russian_endpoints_and_regions() {
        for e in [
            "https://storage.yandexcloud.net",
            "https://hb.ru-msk.vkcloud-storage.ru",
            "https://s3.ru-1.storage.selcdn.ru/",
            "http://127.0.0.1:9000",
        ] {
            assert!(host_in_russia(endpoint_host(e)), "{e}");
        }
        for e in [
            "https://s3.amazonaws.com",
            "https://s3.eu-central-1.amazonaws.com:443/x",
        ] {
            assert!(!host_in_russia(endpoint_host(e)), "{e}");
        }
        for r in ["ru-central1", "ru-msk", "ru-1", "RU-7"] {
            assert!(region_in_russia(r), "{r}");
        }
        for r in ["us-east-1", "eu-central-1", "russia-fake"] {
            assert!(!region_in_russia(r), "{r}");
        }
    }

    #[test]
    fn config_check_warns_about_storage_outside_russia_naming_the_field() {
        let mut c = crate::Config::default();
        c.storage.backend = StorageBackend::S3;
        c.storage.s3.endpoint = "https://s3.eu-central-1.amazonaws.com".into();
        c.storage.s3.region = "eu-central-1".into();
        c.storage.s3.bucket = "potok".into();
        c.storage.s3.access_key_id = Some(Secret::new("k"));
        c.storage.s3.secret_access_key = Some(Secret::new("s"));
        let roles = [crate::Role::Origin];
        assert!(c.validate(&roles).is_ok());
        let fields: Vec<String> = c.warnings(&roles).into_iter().map(|w| w.path).collect();
        assert!(
            fields.contains(&"storage.s3.endpoint".to_owned()),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"storage.s3.region".to_owned()),
            "{fields:?}"
        );
        c.storage.s3.endpoint = "https://storage.yandexcloud.net".into();
        c.storage.s3.region = "ru-central1".into();
        let fields: Vec<String> = c.warnings(&roles).into_iter().map(|w| w.path).collect();
        assert!(
            !fields.iter().any(|f| f.starts_with("storage.")),
            "{fields:?}"
        );
        // The old local paths are refused with S3, naming them.
        c.origin.archive.path = Some("/tmp/a".into());
        let err = c.validate(&roles).unwrap_err().to_string();
        assert!(err.contains("origin.archive.path"), "{err}");
    }
}
