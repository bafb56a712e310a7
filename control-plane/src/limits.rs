//! Failed-attempt limits per client address (logins, stream keys): after
//! `control_plane.auth_failures_per_minute` failures within a minute, every attempt from the
//! address is refused until the oldest failure is a minute old. Brute-forcing a stream key
//! then runs at that many guesses per minute. In memory, per control-plane replica.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most; beyond it the quietest are forgotten first.
const MAX_ADDRESSES: usize = 100_000;

/// The limiter.
pub(crate) struct Limiter {
    per_window: usize,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limiter {
    pub(crate) fn new(per_minute: u32) -> Self {
        Limiter {
            per_window: per_minute.max(1) as usize,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Instant>>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `addr` may try now.
    pub(crate) fn allowed(&self, addr: &str) -> bool {
        let now = Instant::now();
        let mut map = self.map();
        let Some(q) = map.get_mut(addr) else {
            return true;
        };
        while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            q.pop_front();
        }
        if q.is_empty() {
            map.remove(addr);
            return true;
        }
        q.len() < self.per_window
    }

    /// Records a failure of `addr`.
    pub(crate) fn fail(&self, addr: &str) {
        let now = Instant::now();
        let mut map = self.map();
        if map.len() >= MAX_ADDRESSES && !map.contains_key(addr) {
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
            if map.len() >= MAX_ADDRESSES {
                return; // under a flood of distinct addresses: stop tracking new ones
            }
        }
        let q = map.entry(addr.to_owned()).or_default();
        q.push_back(now);
        while q.len() > self.per_window {
            q.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_after_the_allowed_failures_per_address() {
        let l = Limiter::new(3);
        for _ in 0..3 {
            assert!(l.allowed("1.2.3.4"));
            l.fail("1.2.3.4");
        }
        assert!(!l.allowed("1.2.3.4"));
        assert!(l.allowed("5.6.7.8"), "other addresses are not affected");
    }
}
