//! Who is watching: distinct client addresses that asked for a stream's media playlist in the
//! last [`ACTIVE`]. LL-HLS players reload the playlist several times a second, so a viewer
//! who left drops out within that window. Viewers behind one address (a NAT) count once.
//! Reported to the control plane in heartbeats.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use potok_config::wire::StreamViewers;

/// A viewer is counted while it reloaded within this.
pub(crate) const ACTIVE: Duration = Duration::from_secs(10);
/// Most (stream, address) pairs tracked; beyond it new viewers are not counted until old
/// ones expire.
const MAX_ENTRIES: usize = 1_000_000;

/// Entries tracked in all, and per stream the last reload of each address.
type Seen = (usize, HashMap<String, HashMap<IpAddr, Instant>>);

#[derive(Default)]
pub(crate) struct Viewers {
    seen: Mutex<Seen>,
}

impl Viewers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `who` asked for `stream`'s playlist now.
    pub(crate) fn saw(&self, stream: &str, who: IpAddr) {
        self.saw_at(stream, who, Instant::now());
    }

    fn saw_at(&self, stream: &str, who: IpAddr, now: Instant) {
        let mut guard = self.lock();
        let (total, map) = &mut *guard;
        if let Some(by_addr) = map.get_mut(stream) {
            if let Some(t) = by_addr.get_mut(&who) {
                *t = now;
                return;
            }
            if *total < MAX_ENTRIES {
                by_addr.insert(who, now);
                *total += 1;
            }
        } else if *total < MAX_ENTRIES {
            map.insert(stream.to_owned(), HashMap::from([(who, now)]));
            *total += 1;
        }
    }

    /// Viewers per stream now (forgetting those gone quiet).
    pub(crate) fn counts(&self) -> Vec<StreamViewers> {
        self.counts_at(Instant::now())
    }

    fn counts_at(&self, now: Instant) -> Vec<StreamViewers> {
        let mut guard = self.lock();
        let (total, map) = &mut *guard;
        let mut out = Vec::new();
        map.retain(|stream, by_addr| {
            by_addr.retain(|_, t| now.saturating_duration_since(*t) < ACTIVE);
            if !by_addr.is_empty() {
                out.push(StreamViewers {
                    name: stream.clone(),
                    viewers: by_addr.len() as u64,
                });
            }
            !by_addr.is_empty()
        });
        *total = map.values().map(HashMap::len).sum();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_addresses_within_the_window() {
        let v = Viewers::default();
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b: IpAddr = "10.0.0.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        v.saw_at("alice", a, t0);
        v.saw_at("alice", a, t0 + Duration::from_secs(1));
        v.saw_at("alice", b, t0 + Duration::from_secs(2));
        v.saw_at("bob", a, t0 + Duration::from_secs(2));
        let c = v.counts_at(t0 + Duration::from_secs(3));
        assert_eq!(
            c.iter()
                .map(|s| (s.name.as_str(), s.viewers))
                .collect::<Vec<_>>(),
            [("alice", 2), ("bob", 1)]
        );
        // a reloaded at +1 s: gone at +11 s; b and bob's viewer at +12 s.
        let c = v.counts_at(t0 + Duration::from_millis(11_500));
        assert_eq!(
            c.iter()
                .map(|s| (s.name.as_str(), s.viewers))
                .collect::<Vec<_>>(),
            [("alice", 1), ("bob", 1)]
        );
        assert!(v.counts_at(t0 + Duration::from_secs(13)).is_empty());
    }
}
