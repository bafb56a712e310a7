//! Copies of finished segments, init segments and VOD playlists in object storage, off the
//! live path: ingest hands a write to a bounded queue and moves on; one task writes with
//! retries. A slow or failing store costs archived segments (counted), never ingest or
//! viewer latency.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, PutOptions, PutPayload};
use prometheus::{IntCounter, IntGauge};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use potok_service::Metrics;

/// Attempts per write before it is given up (and counted as a failure).
const ATTEMPTS: u32 = 4;

struct Job {
    key: String,
    data: Vec<Bytes>,
}

#[derive(Clone)]
struct ArchiveMetrics {
    queued: IntGauge,
    written: IntCounter,
    failed: IntCounter,
    dropped: IntCounter,
}

impl ArchiveMetrics {
    fn new(m: &Metrics) -> Self {
        ArchiveMetrics {
            queued: m.int_gauge(
                "potok_archive_queue_depth",
                "Archive writes waiting for the object store.",
            ),
            written: m.int_counter(
                "potok_archive_written_total",
                "Objects written to the archive.",
            ),
            failed: m.int_counter(
                "potok_archive_failures_total",
                "Archive writes given up after retries.",
            ),
            dropped: m.int_counter(
                "potok_archive_dropped_total",
                "Archive writes dropped because the queue was full.",
            ),
        }
    }
}

/// The sending side: cheap to clone, never blocks.
#[derive(Clone)]
pub(crate) struct Archiver {
    tx: mpsc::Sender<Job>,
    metrics: ArchiveMetrics,
}

impl Archiver {
    /// Starts the writer task on `store` with a queue of `queue` writes.
    pub(crate) fn start(
        store: Arc<dyn ObjectStore>,
        queue: usize,
        metrics: &Metrics,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(queue);
        let metrics = ArchiveMetrics::new(metrics);
        tokio::spawn(writer(store, rx, metrics.clone(), shutdown));
        Archiver { tx, metrics }
    }

    /// Queues `data` (concatenated) for `key`; drops it when the queue is full.
    pub(crate) fn put(&self, key: String, data: Vec<Bytes>) {
        match self.tx.try_send(Job { key, data }) {
            Ok(()) => self.metrics.queued.inc(),
            Err(mpsc::error::TrySendError::Full(job)) => {
                self.metrics.dropped.inc();
                warn!(key = %job.key, "archive queue full: object not archived");
            }
            Err(mpsc::error::TrySendError::Closed(job)) => {
                self.metrics.dropped.inc();
                debug!(key = %job.key, "archive writer stopped: object not archived");
            }
        }
    }
}

async fn writer(
    store: Arc<dyn ObjectStore>,
    mut rx: mpsc::Receiver<Job>,
    metrics: ArchiveMetrics,
    shutdown: CancellationToken,
) {
    loop {
        let job = tokio::select! {
            job = rx.recv() => job,
            () = shutdown.cancelled() => {
                // Finish what is queued, without waiting for more.
                rx.close();
                rx.recv().await
            }
        };
        let Some(job) = job else { return };
        metrics.queued.dec();
        let path = StorePath::from(job.key.as_str());
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=ATTEMPTS {
            let payload: PutPayload = job.data.iter().cloned().collect();
            match store.put_opts(&path, payload, PutOptions::default()).await {
                Ok(_) => {
                    metrics.written.inc();
                    break;
                }
                Err(e) if attempt == ATTEMPTS => {
                    metrics.failed.inc();
                    error!(key = %job.key, error = %e, "archive write failed; giving up");
                }
                Err(e) => {
                    debug!(key = %job.key, error = %e, attempt, "archive write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
}
