//! Per-address limits, kept in the database so every control-plane replica enforces the
//! same ones: failed logins and refused stream keys (`control_plane.auth_failures_per_minute`)
//! and sign-ups (`control_plane.signups_per_hour`).
//!
//! An attempt is counted *before* it is judged ([`Db::rate_attempt`]): its row is written,
//! then the rows in the window are counted, so fifty parallel wrong passwords cannot all be
//! checked against a count taken before any of them failed. A login that turns out right
//! gives its row back ([`Limiter::succeeded`]); a refused attempt leaves no row, so an
//! address holds at most its limit's worth of rows.

use crate::db::{Attempt, Db, RepoError};
use crate::model::now_ms;

/// The window auth failures count in.
pub(crate) const AUTH_WINDOW_MS: i64 = 60_000;
/// The window sign-ups count in.
pub(crate) const SIGNUP_WINDOW_MS: i64 = 3_600_000;

/// Which limit an attempt counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Logins and stream-key checks: failures per minute.
    Auth,
    /// Account creation per hour.
    Signup,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Auth => "auth",
            Kind::Signup => "signup",
        }
    }

    fn window_ms(self) -> i64 {
        match self {
            Kind::Auth => AUTH_WINDOW_MS,
            Kind::Signup => SIGNUP_WINDOW_MS,
        }
    }
}

/// An attempt within its limit; hand it back with [`Limiter::succeeded`] when it must not
/// count (a right password, a known key).
#[derive(Debug)]
pub(crate) struct Permit(String);

/// The limiter.
pub(crate) struct Limiter {
    db: Db,
    auth_per_window: i64,
    signups_per_window: i64,
}

impl Limiter {
    pub(crate) fn new(db: Db, auth_per_minute: u32, signups_per_hour: u32) -> Self {
        Limiter {
            db,
            auth_per_window: i64::from(auth_per_minute.max(1)),
            signups_per_window: i64::from(signups_per_hour.max(1)),
        }
    }

    /// Counts an attempt of `addr`; `None` when the address is over its limit.
    pub(crate) async fn attempt(
        &self,
        kind: Kind,
        addr: &str,
    ) -> Result<Option<Permit>, RepoError> {
        let limit = match kind {
            Kind::Auth => self.auth_per_window,
            Kind::Signup => self.signups_per_window,
        };
        let now = now_ms();
        Ok(
            match self
                .db
                .rate_attempt(kind.name(), addr, now, now - kind.window_ms(), limit)
                .await?
            {
                Attempt::Allowed(id) => Some(Permit(id)),
                Attempt::Refused => None,
            },
        )
    }

    /// The attempt succeeded: it does not count against the address.
    pub(crate) async fn succeeded(&self, permit: Permit) -> Result<(), RepoError> {
        self.db.rate_release(&permit.0).await
    }

    /// Forgets attempts older than their window.
    pub(crate) async fn sweep(&self) -> Result<(), RepoError> {
        let now = now_ms();
        for kind in [Kind::Auth, Kind::Signup] {
            self.db
                .rate_forget_before(kind.name(), now - kind.window_ms())
                .await?;
        }
        Ok(())
    }
}
