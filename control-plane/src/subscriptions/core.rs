//! The subscriptions' rules with no database and no clock: given a subscription's state and
//! `now`, what is due ([`due`]); what an upgrade costs ([`prorate`]); what a discounted
//! renewal costs ([`discounted`]); and the badge a subscriber wears ([`badge_months`]). The
//! renewal task, the admin's "run renewals at T" call and the unit tests below all drive the
//! same functions, so tests move time by passing another `now`.

/// Milliseconds in a day.
pub(crate) const DAY_MS: i64 = 24 * 3_600_000;

/// How subscriptions renew, in milliseconds (from `payments.subscriptions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timing {
    /// One paid period.
    pub(crate) period: i64,
    /// Between a failed renewal and the next attempt.
    pub(crate) retry: i64,
    /// How long past its period's end a failing subscription stays active.
    pub(crate) grace: i64,
    /// How long before its end a subscription that will not renew is announced.
    pub(crate) notice: i64,
}

impl Timing {
    pub(crate) fn of(cfg: &potok_config::SubscriptionsConfig) -> Timing {
        let ms =
            |d: potok_config::HumanDuration| i64::try_from(d.get().as_millis()).unwrap_or(i64::MAX);
        Timing {
            period: ms(cfg.period).max(1),
            retry: ms(cfg.retry_interval).max(1),
            grace: ms(cfg.grace_period),
            notice: i64::from(cfg.expiring_notice_days) * DAY_MS,
        }
    }
}

/// A subscription's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Incomplete,
    Active,
    PastDue,
    Paused,
    Cancelled,
    Expired,
}

impl Status {
    pub(crate) fn parse(s: &str) -> Status {
        match s {
            "active" => Status::Active,
            "past_due" => Status::PastDue,
            "paused" => Status::Paused,
            "cancelled" => Status::Cancelled,
            "expired" => Status::Expired,
            _ => Status::Incomplete,
        }
    }

    /// Whether it has ended for good (a new subscription starts over).
    pub(crate) fn ended(self) -> bool {
        matches!(
            self,
            Status::Cancelled | Status::Expired | Status::Incomplete
        )
    }
}

/// What [`due`] looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) status: Status,
    pub(crate) auto_renew: bool,
    pub(crate) cancel_at_period_end: bool,
    pub(crate) period_end: i64,
    pub(crate) paused_at: Option<i64>,
    pub(crate) pause_until: Option<i64>,
    pub(crate) retry_at: Option<i64>,
    /// A charge is with the provider: nothing else is started until it settles.
    pub(crate) charging: bool,
}

/// What is due for a subscription at `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    Nothing,
    /// Charge the next period (a renewal, or its retry).
    Charge,
    /// The pause is over: resume, the period's end moved by `shift` ms.
    Resume {
        shift: i64,
    },
    /// It was cancelled and its paid period is over.
    Cancel,
    /// Not renewed (gifted, or its renewals failed through the grace period).
    Expire,
}

/// The one thing due for `s` at `now`.
pub(crate) fn due(s: &State, now: i64, t: &Timing) -> Due {
    match s.status {
        Status::Paused => match (s.paused_at, s.pause_until) {
            (Some(at), Some(until)) if now >= until => Due::Resume {
                shift: (until - at).max(0),
            },
            _ => Due::Nothing,
        },
        Status::Active if now >= s.period_end => {
            if s.charging {
                Due::Nothing
            } else if s.cancel_at_period_end {
                Due::Cancel
            } else if !s.auto_renew {
                Due::Expire
            } else {
                Due::Charge
            }
        }
        Status::PastDue => {
            if s.charging {
                Due::Nothing
            } else if now >= s.period_end.saturating_add(t.grace) {
                Due::Expire
            } else if s.cancel_at_period_end {
                Due::Cancel
            } else if s.retry_at.is_none_or(|r| now >= r) {
                Due::Charge
            } else {
                Due::Nothing
            }
        }
        _ => Due::Nothing,
    }
}

/// Whether the subscriber should hear now that the subscription ends (it will not renew)
/// at `period_end`.
pub(crate) fn expiring_soon(s: &State, now: i64, t: &Timing) -> bool {
    s.status == Status::Active
        && (s.cancel_at_period_end || !s.auto_renew)
        && now < s.period_end
        && now >= s.period_end.saturating_sub(t.notice)
}

/// The price of an upgrade: the difference between the tiers' prices for the part of the
/// period left, `diff * remaining / period`, rounded down to the kopeck (the subscriber
/// never pays a fraction of a kopeck too much). `remaining` is clamped to `0..=period`.
pub(crate) fn prorate(diff: i64, remaining: i64, period: i64) -> i64 {
    if diff <= 0 || period <= 0 {
        return 0;
    }
    let remaining = remaining.clamp(0, period);
    (i128::from(diff) * i128::from(remaining) / i128::from(period)) as i64
}

/// A price with `percent` off, rounded down to the kopeck (in the subscriber's favour).
pub(crate) fn discounted(price: i64, percent: i64) -> i64 {
    let percent = percent.clamp(0, 100);
    (i128::from(price) * i128::from(100 - percent) / 100) as i64
}

/// The badge step for `months` subscribed: 1, 3, 6, 12, 24 (Twitch's loyalty badges).
pub(crate) fn badge_months(months: i64) -> i64 {
    [24, 12, 6, 3, 1]
        .into_iter()
        .find(|&m| months >= m)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        period: 30 * DAY_MS,
        retry: DAY_MS,
        grace: 3 * DAY_MS,
        notice: 3 * DAY_MS,
    };

    fn active(end: i64) -> State {
        State {
            status: Status::Active,
            auto_renew: true,
            cancel_at_period_end: false,
            period_end: end,
            paused_at: None,
            pause_until: None,
            retry_at: None,
            charging: false,
        }
    }

    #[test]
    fn renewal_is_due_at_the_end_of_the_period_and_once_at_a_time() {
        let s = active(1000);
        assert_eq!(due(&s, 999, &T), Due::Nothing);
        assert_eq!(due(&s, 1000, &T), Due::Charge);
        let charging = State {
            charging: true,
            ..s.clone()
        };
        assert_eq!(due(&charging, 5000, &T), Due::Nothing);
        let cancelled = State {
            cancel_at_period_end: true,
            ..s.clone()
        };
        assert_eq!(due(&cancelled, 999, &T), Due::Nothing);
        assert_eq!(due(&cancelled, 1000, &T), Due::Cancel);
        let gifted = State {
            auto_renew: false,
            ..s
        };
        assert_eq!(due(&gifted, 1000, &T), Due::Expire);
    }

    #[test]
    fn a_failed_renewal_is_retried_within_the_grace_period_then_expires() {
        let s = State {
            status: Status::PastDue,
            retry_at: Some(1000 + DAY_MS),
            ..active(1000)
        };
        assert_eq!(due(&s, 1000 + DAY_MS - 1, &T), Due::Nothing);
        assert_eq!(due(&s, 1000 + DAY_MS, &T), Due::Charge);
        assert_eq!(due(&s, 1000 + 3 * DAY_MS - 1, &T), Due::Charge);
        assert_eq!(due(&s, 1000 + 3 * DAY_MS, &T), Due::Expire);
    }

    #[test]
    fn a_pause_resumes_when_it_ends_and_moves_the_period() {
        let s = State {
            status: Status::Paused,
            paused_at: Some(100),
            pause_until: Some(100 + 7 * DAY_MS),
            ..active(1000)
        };
        assert_eq!(due(&s, 50 * DAY_MS, &T), Due::Resume { shift: 7 * DAY_MS });
        assert_eq!(due(&s, 100 + 7 * DAY_MS - 1, &T), Due::Nothing);
    }

    #[test]
    fn only_ending_subscriptions_are_announced_inside_the_notice_window() {
        let end = 10 * DAY_MS;
        let renewing = active(end);
        assert!(!expiring_soon(&renewing, end - DAY_MS, &T));
        let ending = State {
            cancel_at_period_end: true,
            ..renewing
        };
        assert!(!expiring_soon(&ending, end - 3 * DAY_MS - 1, &T));
        assert!(expiring_soon(&ending, end - 3 * DAY_MS, &T));
        assert!(!expiring_soon(&ending, end, &T));
    }

    #[test]
    fn proration_is_whole_kopecks_rounded_down() {
        // VIP 499 ₽ - Supporter 199 ₽ = 300 ₽ = 30000 kopecks.
        assert_eq!(prorate(30_000, 15 * DAY_MS, 30 * DAY_MS), 15_000);
        assert_eq!(prorate(30_000, 10 * DAY_MS, 30 * DAY_MS), 10_000);
        // 80000 * 7/30 = 18666.66… → 18666.
        assert_eq!(prorate(80_000, 7 * DAY_MS, 30 * DAY_MS), 18_666);
        assert_eq!(prorate(30_000, 40 * DAY_MS, 30 * DAY_MS), 30_000);
        assert_eq!(prorate(30_000, -5, 30 * DAY_MS), 0);
        assert_eq!(prorate(-100, DAY_MS, 30 * DAY_MS), 0);
    }

    #[test]
    fn discounts_round_down_and_badges_step() {
        assert_eq!(discounted(19_900, 20), 15_920);
        assert_eq!(discounted(49_900, 15), 42_415);
        assert_eq!(discounted(99_900, 33), 66_933);
        assert_eq!(discounted(199, 50), 99);
        assert_eq!(badge_months(0), 0);
        assert_eq!(badge_months(2), 1);
        assert_eq!(badge_months(5), 3);
        assert_eq!(badge_months(13), 12);
        assert_eq!(badge_months(40), 24);
    }
}
