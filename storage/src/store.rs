//! The object store built from `[storage]`, with multipart uploads for large objects and
//! latency metrics on every request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{
    ClientOptions, GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutOptions, PutPayload,
    RetryConfig, WriteMultipart,
};
use potok_config::{StorageBackend, StorageConfig};

use crate::StorageMetrics;

/// Why the store could not be built or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The configuration names an unusable store.
    #[error("{field}: {reason}")]
    Config {
        /// The field to change.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The store answered with an error or could not be reached (a retry may succeed).
    #[error("object store: {0}")]
    Request(#[from] object_store::Error),
}

impl StoreError {
    /// Whether the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::Request(object_store::Error::NotFound { .. })
        )
    }
}

/// The object store, cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    multipart_threshold: u64,
    part_size: usize,
    metrics: StorageMetrics,
    describe: Arc<str>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

impl Store {
    /// The store `cfg` names. `local_default` is the directory of a local store when
    /// `storage.path` is unset; `None` there (an edge with no archive configured): no store.
    pub fn open(
        cfg: &StorageConfig,
        local_default: Option<PathBuf>,
        metrics: StorageMetrics,
    ) -> Result<Option<Store>, StoreError> {
        match cfg.backend {
            StorageBackend::Local => {
                let Some(dir) = cfg.path.clone().or(local_default) else {
                    return Ok(None);
                };
                Store::local(&dir, metrics).map(Some)
            }
            StorageBackend::S3 => {
                let s3 = &cfg.s3;
                let secret = |field, v: &Option<potok_config::Secret>| {
                    v.as_ref()
                        .map(|s| s.expose().to_owned())
                        .ok_or(StoreError::Config {
                            field,
                            reason: "must be set with backend = \"s3\"".into(),
                        })
                };
                let store = AmazonS3Builder::new()
                    .with_endpoint(s3.endpoint.trim_end_matches('/'))
                    .with_region(&s3.region)
                    .with_bucket_name(&s3.bucket)
                    .with_access_key_id(secret("storage.s3.access_key_id", &s3.access_key_id)?)
                    .with_secret_access_key(secret(
                        "storage.s3.secret_access_key",
                        &s3.secret_access_key,
                    )?)
                    .with_virtual_hosted_style_request(!s3.path_style)
                    .with_client_options(
                        ClientOptions::new()
                            .with_allow_http(s3.endpoint.starts_with("http://"))
                            .with_timeout(s3.timeout.get())
                            .with_connect_timeout(Duration::from_secs(5)),
                    )
                    // The spool retries for as long as the store is down; a request
                    // itself fails fast so that the spool can tell.
                    .with_retry(RetryConfig {
                        max_retries: 2,
                        retry_timeout: Duration::from_secs(10),
                        ..RetryConfig::default()
                    })
                    .build()
                    .map_err(|e| StoreError::Config {
                        field: "storage.s3",
                        reason: e.to_string(),
                    })?;
                Ok(Some(Store {
                    describe: format!("s3 {} bucket {}", s3.endpoint, s3.bucket).into(),
                    inner: Arc::new(store),
                    multipart_threshold: s3.multipart_threshold.bytes(),
                    part_size: usize::try_from(s3.multipart_part_size.bytes())
                        .unwrap_or(8 << 20)
                        .max(5 << 20),
                    metrics,
                }))
            }
        }
    }

    /// A local-filesystem store in `dir` (created if missing).
    pub fn local(dir: &Path, metrics: StorageMetrics) -> Result<Store, StoreError> {
        let config = |reason: String| StoreError::Config {
            field: "storage.path",
            reason: format!("cannot use {}: {reason}", dir.display()),
        };
        std::fs::create_dir_all(dir).map_err(|e| config(e.to_string()))?;
        let fs = LocalFileSystem::new_with_prefix(dir).map_err(|e| config(e.to_string()))?;
        Ok(Store {
            describe: format!("local {}", dir.display()).into(),
            inner: Arc::new(fs),
            multipart_threshold: u64::MAX,
            part_size: 8 << 20,
            metrics,
        })
    }

    /// The underlying store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// The metrics this store reports to.
    pub fn metrics(&self) -> &StorageMetrics {
        &self.metrics
    }

    fn timed(&self, op: &str, started: Instant) {
        self.metrics
            .latency
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Writes `data` (concatenated) at `key`, in parts when it is at least the multipart
    /// threshold.
    pub async fn put(&self, key: &str, data: Vec<Bytes>) -> Result<(), StoreError> {
        let path = StorePath::from(key);
        let len: u64 = data.iter().map(|b| b.len() as u64).sum();
        let started = Instant::now();
        let result = if len >= self.multipart_threshold {
            let upload = self.inner.put_multipart(&path).await;
            match upload {
                Ok(upload) => {
                    let mut w = WriteMultipart::new_with_chunk_size(upload, self.part_size);
                    for b in data {
                        w.put(b);
                    }
                    w.finish().await.map(|_| ())
                }
                Err(e) => Err(e),
            }
        } else {
            let payload: PutPayload = data.into_iter().collect();
            self.inner
                .put_opts(&path, payload, PutOptions::default())
                .await
                .map(|_| ())
        };
        self.timed(
            if len >= self.multipart_threshold {
                "put_multipart"
            } else {
                "put"
            },
            started,
        );
        Ok(result?)
    }

    /// The bytes at `key`; `Ok(None)` when there is no such object.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let started = Instant::now();
        let result = async {
            let got = self
                .inner
                .get_opts(&StorePath::from(key), GetOptions::default())
                .await?;
            got.bytes().await
        }
        .await;
        self.timed("get", started);
        match result {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The object's metadata; `Ok(None)` when there is no such object.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let started = Instant::now();
        let result = self.inner.head(&StorePath::from(key)).await;
        self.timed("head", started);
        match result {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes `key` (absent already is fine).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.delete(&StorePath::from(key)).await;
        self.timed("delete", started);
        match result {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object under `prefix` (recursively).
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let started = Instant::now();
        let prefix = StorePath::from(prefix);
        let result: Result<Vec<ObjectMeta>, _> = self.inner.list(Some(&prefix)).try_collect().await;
        self.timed("list", started);
        Ok(result?)
    }

    /// Deletes every object under `prefix`; returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        let objects = self.list(prefix).await?;
        let n = objects.len();
        for o in objects {
            self.delete(o.location.as_ref()).await?;
        }
        Ok(n)
    }
}
