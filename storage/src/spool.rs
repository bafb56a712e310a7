//! The origin's spill queue: every write for the store goes to local disk first (one file
//! per object, `{seq}.job`), and one task uploads them in order. While the store is down the
//! files wait (bounded by `storage.spool.max_bytes`; past it a write is dropped, counted and
//! logged) and the uploader retries with backoff; after an origin restart the files left are
//! found and uploaded. Playlists and manifests are "barriers": they go only after everything
//! queued before them, so a recording's manifest never names a segment not yet stored.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::Store;

/// Uploads in flight at once (segments only; barriers go alone).
const CONCURRENCY: usize = 8;
/// Writes waiting to reach the disk (the hand-off from ingest, which never blocks).
const HANDOFF: usize = 1024;
/// Longest wait between retries while the store is down.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Longest key accepted.
const MAX_KEY: usize = 1024;

/// Why the spool could not start.
#[derive(Debug, thiserror::Error)]
#[error("storage.spool.dir: cannot use {}: {source}", dir.display())]
pub struct SpoolError {
    dir: PathBuf,
    source: std::io::Error,
}

#[derive(Clone, Debug, PartialEq)]
enum Op {
    Put(Vec<Bytes>),
    DeletePrefix,
    Delete,
}

#[derive(Debug)]
struct Job {
    key: String,
    op: Op,
    barrier: bool,
}

impl Job {
    fn len(&self) -> u64 {
        let data = match &self.op {
            Op::Put(d) => d.iter().map(|b| b.len() as u64).sum(),
            Op::DeletePrefix | Op::Delete => 0,
        };
        data + self.key.len() as u64 + 4
    }

    fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.len() as usize);
        b.put_u8(match self.op {
            Op::Put(_) => b'P',
            Op::DeletePrefix => b'D',
            Op::Delete => b'd',
        });
        b.put_u8(u8::from(self.barrier));
        b.put_u16(self.key.len() as u16);
        b.put_slice(self.key.as_bytes());
        if let Op::Put(data) = &self.op {
            for d in data {
                b.put_slice(d);
            }
        }
        b.freeze()
    }

    fn decode(mut b: Bytes) -> Option<Job> {
        if b.len() < 4 {
            return None;
        }
        let op = b.get_u8();
        let barrier = b.get_u8() != 0;
        let n = usize::from(b.get_u16());
        if b.len() < n {
            return None;
        }
        let key = String::from_utf8(b.split_to(n).to_vec()).ok()?;
        let op = match op {
            b'P' => Op::Put(vec![b]),
            b'D' => Op::DeletePrefix,
            b'd' => Op::Delete,
            _ => return None,
        };
        Some(Job { key, op, barrier })
    }
}

/// One file waiting.
#[derive(Clone, Copy, Debug)]
struct Entry {
    seq: u64,
    len: u64,
    barrier: bool,
}

struct State {
    entries: VecDeque<Entry>,
    bytes: u64,
    next_seq: u64,
}

struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    wake: Notify,
    store: Store,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a few assignments: the data is consistent after a panic.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn file(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.job"))
    }

    fn gauges(&self, st: &State) {
        let m = self.store.metrics();
        m.spool_depth.set(st.entries.len() as i64);
        m.spool_bytes.set(st.bytes as i64);
    }
}

/// The sending side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Spool {
    tx: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

impl Spool {
    /// Opens the spool in `dir` (finding what an earlier run left) and starts its tasks.
    pub fn start(
        store: Store,
        dir: &Path,
        max_bytes: u64,
        shutdown: CancellationToken,
    ) -> Result<Spool, SpoolError> {
        let err = |source| SpoolError {
            dir: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut entries = Vec::new();
        for item in std::fs::read_dir(dir).map_err(err)? {
            let item = item.map_err(err)?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(item.path());
                continue;
            }
            let Some(seq) = name
                .strip_suffix(".job")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let len = item.metadata().map_err(err)?.len();
            // Whether it is a barrier is read when it is uploaded; treat every left-over
            // file as one (they go one at a time, in order).
            entries.push(Entry {
                seq,
                len,
                barrier: true,
            });
        }
        entries.sort_by_key(|e| e.seq);
        let next_seq = entries.last().map_or(1, |e| e.seq + 1);
        let bytes = entries.iter().map(|e| e.len).sum();
        if !entries.is_empty() {
            info!(
                files = entries.len(),
                bytes, "spool: uploading writes left by an earlier run"
            );
        }
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            max_bytes,
            state: Mutex::new(State {
                entries: entries.into(),
                bytes,
                next_seq,
            }),
            wake: Notify::new(),
            store,
        });
        shared.gauges(&shared.state());
        let (tx, rx) = mpsc::channel(HANDOFF);
        tokio::spawn(disk_writer(Arc::clone(&shared), rx));
        tokio::spawn(uploader(Arc::clone(&shared), shutdown));
        Ok(Spool { tx, shared })
    }

    /// The store this spool uploads to.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Queues `data` (concatenated) for `key`.
    pub fn put(&self, key: String, data: Vec<Bytes>) {
        self.send(Job {
            key,
            op: Op::Put(data),
            barrier: false,
        });
    }

    /// Queues `data` for `key`, written only after everything queued before it.
    pub fn put_after(&self, key: String, data: Vec<Bytes>) {
        self.send(Job {
            key,
            op: Op::Put(data),
            barrier: true,
        });
    }

    /// Queues the deletion of everything under `prefix`, after everything queued before it.
    pub fn delete_prefix(&self, prefix: String) {
        self.send(Job {
            key: prefix,
            op: Op::DeletePrefix,
            barrier: true,
        });
    }

    /// Queues the deletion of `key`, after everything queued before it.
    pub fn delete(&self, key: String) {
        self.send(Job {
            key,
            op: Op::Delete,
            barrier: true,
        });
    }

    /// Writes waiting (on disk or being written to it).
    pub fn pending(&self) -> usize {
        self.shared.state().entries.len() + (HANDOFF - self.tx.capacity())
    }

    fn send(&self, job: Job) {
        if job.key.len() > MAX_KEY {
            warn!(key_len = job.key.len(), "spool: key too long, not stored");
            return;
        }
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) => {
                self.dropped(&job.key, "spool hand-off full: object not stored");
            }
        }
    }

    fn dropped(&self, key: &str, why: &'static str) {
        dropped(&self.shared, key, why);
    }
}

fn dropped(shared: &Shared, key: &str, why: &'static str) {
    shared
        .store
        .metrics()
        .uploads
        .with_label_values(&["dropped"])
        .inc();
    warn!(key, "{why}");
}

/// Objects written to disk per round: their writes and fsyncs run together (the file
/// system commits many in one journal flush), then the directory is synced once.
const WRITE_BATCH: usize = 64;

/// An object admitted to the spool, being written.
struct Admitted {
    seq: u64,
    len: u64,
    barrier: bool,
    key: String,
    path: PathBuf,
    bytes: Bytes,
}

/// Writes `bytes` at `path` durably: the data reaches the disk before the name does, so a
/// host crash leaves either the whole object or none of it.
async fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let tmp = path.with_extension("tmp");
    let written = async {
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(bytes).await?;
        f.sync_data().await?;
        drop(f);
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    written
}

async fn disk_writer(shared: Arc<Shared>, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(WRITE_BATCH);
    while rx.recv_many(&mut jobs, WRITE_BATCH).await > 0 {
        let mut admitted = Vec::with_capacity(jobs.len());
        for job in jobs.drain(..) {
            let len = job.len();
            let seq = {
                let mut st = shared.state();
                if st.bytes + len > shared.max_bytes {
                    drop(st);
                    dropped(
                        &shared,
                        &job.key,
                        "spool full (storage.spool.max_bytes): object not stored",
                    );
                    continue;
                }
                st.bytes += len;
                let seq = st.next_seq;
                st.next_seq += 1;
                seq
            };
            admitted.push(Admitted {
                seq,
                len,
                barrier: job.barrier,
                path: shared.file(seq),
                bytes: job.encode(),
                key: job.key,
            });
        }
        let results = futures_util::future::join_all(
            admitted.iter().map(|a| write_durably(&a.path, &a.bytes)),
        )
        .await;
        // The names, durable before any entry is queued (a crash loses nothing queued).
        if let Some(dir) = admitted.first().and_then(|a| a.path.parent()) {
            let synced = async { tokio::fs::File::open(dir).await?.sync_all().await }.await;
            if let Err(e) = synced {
                warn!(error = %e, "spool: cannot sync its directory");
            }
        }
        {
            let mut st = shared.state();
            for (a, written) in admitted.iter().zip(&results) {
                match written {
                    Ok(()) => st.entries.push_back(Entry {
                        seq: a.seq,
                        len: a.len,
                        barrier: a.barrier,
                    }),
                    Err(e) => {
                        st.bytes -= a.len;
                        warn!(key = %a.key, error = %e, "spool: cannot write to disk: object not stored");
                        shared
                            .store
                            .metrics()
                            .uploads
                            .with_label_values(&["dropped"])
                            .inc();
                    }
                }
            }
            shared.gauges(&st);
        }
        shared.wake.notify_one();
    }
}

/// The next batch: the leading run of up to [`CONCURRENCY`] non-barriers, or one barrier.
fn batch(st: &State) -> Vec<Entry> {
    let mut out = Vec::new();
    for e in st.entries.iter().take(CONCURRENCY) {
        if e.barrier {
            if out.is_empty() {
                out.push(*e);
            }
            break;
        }
        out.push(*e);
    }
    out
}

async fn upload_one(shared: &Shared, e: Entry) -> Result<(), String> {
    let path = shared.file(e.seq);
    let raw = match tokio::fs::read(&path).await {
        Ok(raw) => raw,
        Err(err) => {
            // Gone or unreadable: nothing to upload; counted and forgotten.
            warn!(file = %path.display(), error = %err, "spool: file unreadable; skipped");
            return Ok(());
        }
    };
    let Some(job) = Job::decode(Bytes::from(raw)) else {
        warn!(file = %path.display(), "spool: corrupt file; skipped");
        return Ok(());
    };
    let result = match job.op {
        Op::Put(data) => shared.store.put(&job.key, data).await.map(|()| 0),
        Op::DeletePrefix => shared.store.delete_prefix(&job.key).await,
        Op::Delete => shared.store.delete(&job.key).await.map(|()| 1),
    };
    match result {
        Ok(_) => {
            debug!(key = %job.key, "stored");
            Ok(())
        }
        Err(err) => Err(format!("{}: {err}", job.key)),
    }
}

async fn uploader(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    loop {
        let next = batch(&shared.state());
        if next.is_empty() {
            tokio::select! {
                () = shared.wake.notified() => continue,
                () = shutdown.cancelled() => return,
            }
        }
        let results =
            futures_util::future::join_all(next.iter().map(|e| upload_one(&shared, *e))).await;
        let mut errors = Vec::new();
        {
            let mut st = shared.state();
            for (e, r) in next.iter().zip(results) {
                match r {
                    Ok(()) => {
                        st.entries.retain(|x| x.seq != e.seq);
                        st.bytes = st.bytes.saturating_sub(e.len);
                        shared
                            .store
                            .metrics()
                            .uploads
                            .with_label_values(&["ok"])
                            .inc();
                    }
                    Err(msg) => {
                        shared
                            .store
                            .metrics()
                            .uploads
                            .with_label_values(&["error"])
                            .inc();
                        errors.push(msg);
                    }
                }
            }
            shared.gauges(&st);
        }
        for e in &next {
            // Uploaded ones are gone from the index; their files go too.
            if !shared.state().entries.iter().any(|x| x.seq == e.seq) {
                let _ = tokio::fs::remove_file(shared.file(e.seq)).await;
            }
        }
        if errors.is_empty() {
            if failing {
                info!("object store reachable again: spool draining");
                failing = false;
            }
            backoff = Duration::from_millis(100);
            continue;
        }
        if !failing {
            warn!(error = %errors[0], waiting = shared.state().entries.len(), "object store write failed: writes wait in the spool");
            failing = true;
        } else {
            debug!(error = %errors[0], "object store still failing");
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_and_garbage_is_refused() {
        let j = Job {
            key: "a/1/source/5.m4s".into(),
            op: Op::Put(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]),
            barrier: true,
        };
        let back = Job::decode(j.encode()).expect("decodes");
        assert_eq!(back.key, j.key);
        assert!(back.barrier);
        assert_eq!(back.op, Op::Put(vec![Bytes::from_static(b"abcd")]));
        assert!(Job::decode(Bytes::from_static(b"P\0\xff\xffab")).is_none());
        assert!(Job::decode(Bytes::from_static(b"X\0\0\0")).is_none());
        assert!(Job::decode(Bytes::new()).is_none());
    }
}
