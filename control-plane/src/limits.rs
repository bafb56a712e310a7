//! Failed-attempt limits per client address (logins, stream keys): after
//! `control_plane.auth_failures_per_minute` failures within a minute, every attempt from the
//! address is refused until its oldest failure is a minute old. Brute-forcing a stream key
//! then runs at that many guesses per minute, whichever control-plane replica is asked: the
//! failures live in the database. An address that is refused adds no rows (it is turned away
//! before its attempt is judged), so an address holds at most the limit's worth of rows.

use crate::db::{Db, RepoError};
use crate::model::now_ms;

/// The window failures count in.
pub(crate) const WINDOW_MS: i64 = 60_000;

/// The limiter.
pub(crate) struct Limiter {
    db: Db,
    per_window: i64,
}

impl Limiter {
    pub(crate) fn new(db: Db, per_minute: u32) -> Self {
        Limiter {
            db,
            per_window: i64::from(per_minute.max(1)),
        }
    }

    /// Whether `addr` may try now.
    pub(crate) async fn allowed(&self, addr: &str) -> Result<bool, RepoError> {
        Ok(self.db.failures_since(addr, now_ms() - WINDOW_MS).await? < self.per_window)
    }

    /// Records a failure of `addr`.
    pub(crate) async fn fail(&self, addr: &str) -> Result<(), RepoError> {
        self.db.record_failure(addr, now_ms()).await
    }

    /// Forgets failures older than the window.
    pub(crate) async fn sweep(&self) -> Result<(), RepoError> {
        self.db.forget_failures_before(now_ms() - WINDOW_MS).await
    }
}
