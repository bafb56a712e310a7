//! Password hashing with a bound: argon2id takes 19 MiB and tens of milliseconds per hash,
//! so a burst of logins must not run a hash per request. At most `concurrency` hashes run
//! at once (one per core by default) on blocking threads; up to `queue` more requests wait
//! for a slot, and the rest are refused at once (`SERVICE_BUSY`, 503) — the process's memory
//! for hashing stays at `concurrency × 19 MiB` whatever the load.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

/// Why a hash was not computed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HashError {
    /// Every slot is busy and the queue is full.
    #[error("too many password checks at once; retry in a moment")]
    Busy,
    /// The blocking task failed.
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// The bounded hasher.
pub(crate) struct Hasher {
    slots: Arc<Semaphore>,
    concurrency: usize,
    waiting: AtomicUsize,
    queue: usize,
}

impl Hasher {
    /// `concurrency` 0 means one per core.
    pub(crate) fn new(concurrency: u32, queue: u32) -> Self {
        let concurrency = match concurrency {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n as usize,
        };
        Hasher {
            slots: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            waiting: AtomicUsize::new(0),
            queue: queue as usize,
        }
    }

    /// Runs `work` (a hash or a verification) on a blocking thread once a slot is free.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, HashError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // Everything in flight (running or queued) is bounded by concurrency + queue.
        let in_flight = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _leave = Leave(&self.waiting);
        if in_flight >= self.concurrency + self.queue {
            return Err(HashError::Busy);
        }
        let permit = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|e| HashError::Failed(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))
    }
}

struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_concurrency_run_and_the_queue_is_bounded() {
        let hasher = Arc::new(Hasher::new(2, 3));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (hasher, running, peak, gate) = (
                Arc::clone(&hasher),
                Arc::clone(&running),
                Arc::clone(&peak),
                Arc::clone(&gate),
            );
            tasks.push(tokio::spawn(async move {
                hasher
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        // Each job waits for the test to let one through.
                        let _ = gate.lock().map(|g| g.recv_timeout(Duration::from_secs(10)));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
            }));
        }
        // 20 asked, 2 run and 3 wait (held at the gate): the other 15 are refused at once.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while tasks.iter().filter(|t| t.is_finished()).count() < 15
            || running.load(Ordering::SeqCst) < 2
        {
            assert!(
                std::time::Instant::now() < deadline,
                "refusals did not come"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for _ in 0..5 {
            release.send(()).unwrap();
        }
        let mut busy = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => {}
                Err(HashError::Busy) => busy += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(busy, 15, "20 requests, 2 slots + 3 queued");
        assert!(peak.load(Ordering::SeqCst) <= 2, "peak {peak:?}");
    }
}
