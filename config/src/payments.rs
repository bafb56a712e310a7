//! `control_plane.payments`: the payment provider, revenue shares, donation limits and fraud
//! rules. Money is integer kopecks everywhere (1 ₽ = 100).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{HumanDuration, Secret};

/// Who takes the viewers' money.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentProvider {
    /// A local checkout page that confirms or fails a payment: no money moves. The default,
    /// so `potok all` takes donations with nothing to sign up for.
    #[default]
    Sandbox,
    /// YooKassa (bank cards, SBP), `control_plane.payments.yookassa`.
    Yookassa,
}

/// Donations, gifts and their money.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentsConfig {
    /// Who takes the money.
    pub provider: PaymentProvider,
    /// Base URL viewers reach the control plane at (`https://potok.example`), for the pages a
    /// payment returns to and the sandbox's checkout page. Unset: `http://node.public_host`
    /// with the control plane's port.
    pub public_url: Option<String>,
    /// YooKassa's API, used when `provider = "yookassa"`.
    pub yookassa: YooKassaConfig,
    /// The streamer's share of each kind of income, in percent; the rest is the platform's fee.
    pub shares: RevenueShares,
    /// Limits per currency (ISO 4217 code); a currency not listed cannot be donated in.
    pub currencies: BTreeMap<String, CurrencyLimits>,
    /// Longest donation message, in characters (DonationAlerts: 300).
    pub max_message_chars: u32,
    /// A payment not confirmed within this time is cancelled.
    pub payment_timeout: HumanDuration,
    /// A channel with more followers than this takes no donations until its number in the
    /// bloggers' register (Roskomnadzor) is recorded. 0: no such rule.
    pub registry_follower_threshold: u64,
    /// Velocity rules.
    pub fraud: FraudConfig,
    /// Paid subscriptions: their period, renewal retries, grace and notices.
    pub subscriptions: SubscriptionsConfig,
}

/// `control_plane.payments.subscriptions`: how subscriptions renew.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriptionsConfig {
    /// One paid period ("a month"): 30 days, so every period has the same length and a
    /// proration is exact.
    pub period: HumanDuration,
    /// After a failed renewal, the next attempt comes this long after the previous one.
    pub retry_interval: HumanDuration,
    /// How long after its period ended a subscription whose renewal keeps failing stays
    /// active (retried every `retry_interval`) before it expires.
    pub grace_period: HumanDuration,
    /// Subscribers whose subscription ends (cancelled, gifted) are told this many days before.
    pub expiring_notice_days: u32,
    /// How often due renewals, resumptions and notices are looked for.
    pub check_interval: HumanDuration,
    /// Tests only: `run_subscription_renewals` may be given a time in the future (it would
    /// charge renewals early). Off: at most a minute ahead of the clock.
    pub allow_future_runs: bool,
}

impl Default for SubscriptionsConfig {
    fn default() -> Self {
        SubscriptionsConfig {
            period: HumanDuration::secs(30 * 24 * 3600),
            retry_interval: HumanDuration::secs(24 * 3600),
            grace_period: HumanDuration::secs(3 * 24 * 3600),
            expiring_notice_days: 3,
            check_interval: HumanDuration::secs(60),
            allow_future_runs: false,
        }
    }
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig {
            provider: PaymentProvider::Sandbox,
            public_url: None,
            yookassa: YooKassaConfig::default(),
            shares: RevenueShares::default(),
            currencies: BTreeMap::from([("RUB".to_owned(), CurrencyLimits::default())]),
            max_message_chars: 300,
            payment_timeout: HumanDuration::secs(3600),
            registry_follower_threshold: 10_000,
            fraud: FraudConfig::default(),
            subscriptions: SubscriptionsConfig::default(),
        }
    }
}

/// The streamer's share per source of income, in percent (the seed's `RevenueShareRates`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RevenueShares {
    /// Money donations (and item and interactive donations).
    pub donations: u8,
    /// Virtual gifts.
    pub virtual_gifts: u8,
    /// Subscriptions.
    pub subscriptions: u8,
    /// Sponsored content.
    pub sponsored: u8,
}

impl Default for RevenueShares {
    fn default() -> Self {
        RevenueShares {
            donations: 85,
            virtual_gifts: 80,
            subscriptions: 70,
            sponsored: 90,
        }
    }
}

/// Amount limits in one currency, in its minor unit (kopecks for RUB).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CurrencyLimits {
    /// Smallest donation.
    pub min: i64,
    /// Largest single donation.
    pub max: i64,
    /// Most one donor may give in 24 hours, to all channels together.
    pub per_donor_per_day: i64,
}

impl Default for CurrencyLimits {
    fn default() -> Self {
        CurrencyLimits {
            min: 100,                      // 1 ₽
            max: 10_000_000,               // 100,000 ₽
            per_donor_per_day: 30_000_000, // 300,000 ₽
        }
    }
}

/// Velocity rules: more attempts than these within an hour are refused with the reason.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FraudConfig {
    /// Donations one signed-in donor may start per hour.
    pub per_donor_per_hour: u32,
    /// Donations one client address may start per hour.
    pub per_address_per_hour: u32,
    /// Payments one card (the provider's card fingerprint) may make per hour.
    pub per_card_per_hour: u32,
    /// Different cards one donor may pay with per day (card testing).
    pub cards_per_donor_per_day: u32,
}

impl Default for FraudConfig {
    fn default() -> Self {
        FraudConfig {
            per_donor_per_hour: 30,
            per_address_per_hour: 60,
            per_card_per_hour: 20,
            cards_per_donor_per_day: 4,
        }
    }
}

/// YooKassa's API (`https://yookassa.ru/developers/api`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct YooKassaConfig {
    /// API base URL.
    pub api_url: String,
    /// The shop's id (HTTP Basic user).
    pub shop_id: Option<String>,
    /// The shop's secret key (HTTP Basic password). Never printed.
    pub secret_key: Option<Secret>,
    /// Addresses notifications may come from (YooKassa's published ranges): an IP or a
    /// CIDR block each. A notification from elsewhere gets 403 and changes nothing.
    pub webhook_sources: Vec<String>,
    /// A header carrying the client's address (`X-Forwarded-For`, `X-Real-IP`), honoured only
    /// on requests whose peer is one of `trusted_proxies`. Unset: the peer address is the
    /// source.
    pub trusted_proxy_header: Option<String>,
    /// Proxies whose `trusted_proxy_header` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Time one API call may take.
    pub request_timeout: HumanDuration,
}

impl Default for YooKassaConfig {
    fn default() -> Self {
        YooKassaConfig {
            api_url: "https://api.yookassa.ru/v3".into(),
            shop_id: None,
            secret_key: None,
            webhook_sources: [
                "185.71.76.0/27",
                "185.71.77.0/27",
                "77.75.153.0/25",
                "77.75.156.11",
                "77.75.156.35",
                "77.75.154.128/25",
                "2a02:5180::/32",
            ]
            .map(String::from)
            .to_vec(),
            trusted_proxy_header: None,
            trusted_proxies: Vec::new(),
            request_timeout: HumanDuration::secs(10),
        }
    }
}

/// An IP network: an address and a prefix length (`185.71.76.0/27`, `77.75.156.11`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let bad =
            || format!("expected an IP address or CIDR block like \"185.71.76.0/27\", got {s:?}");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` is inside the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl PaymentsConfig {
    /// Every problem with these settings, as (path below `control_plane.payments`, message).
    pub(crate) fn problems(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        let mut add = |path: &str, m: String| p.push((path.to_owned(), m));
        if let Some(url) = &self.public_url {
            let ok = url
                .parse::<http::Uri>()
                .ok()
                .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
                .is_some();
            if !ok {
                add(
                    "public_url",
                    format!("expected a URL like \"https://potok.example\", got {url:?}"),
                );
            }
        }
        let sub = &self.subscriptions;
        if sub.period.get() < std::time::Duration::from_secs(3600) {
            add("subscriptions.period", "must be at least 1h".into());
        }
        if sub.retry_interval.get().is_zero() || sub.check_interval.get().is_zero() {
            add(
                "subscriptions.retry_interval",
                "retry_interval and check_interval must be above zero".into(),
            );
        }
        if sub.grace_period.get() >= sub.period.get() {
            add(
                "subscriptions.grace_period",
                "must be shorter than the period".into(),
            );
        }
        if u64::from(sub.expiring_notice_days) * 86_400 >= sub.period.get().as_secs() {
            add(
                "subscriptions.expiring_notice_days",
                "must be shorter than the period".into(),
            );
        }
        let y = &self.yookassa;
        if self.provider == PaymentProvider::Yookassa {
            if y.shop_id.as_deref().is_none_or(str::is_empty) {
                add(
                    "yookassa.shop_id",
                    "is required with provider = \"yookassa\"".into(),
                );
            }
            if y.secret_key.is_none() {
                add(
                    "yookassa.secret_key",
                    "is required with provider = \"yookassa\"".into(),
                );
            }
        }
        let api = y.api_url.parse::<http::Uri>().ok();
        if !api
            .as_ref()
            .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
        {
            add(
                "yookassa.api_url",
                format!(
                    "expected a URL like \"https://api.yookassa.ru/v3\", got {:?}",
                    y.api_url
                ),
            );
        }
        for (i, s) in y.webhook_sources.iter().enumerate() {
            if let Err(e) = IpNet::parse(s) {
                add(&format!("yookassa.webhook_sources[{i}]"), e);
            }
        }
        if y.trusted_proxy_header.is_some() && y.trusted_proxies.is_empty() {
            add(
                "yookassa.trusted_proxies",
                "must list the proxies whose trusted_proxy_header is believed".into(),
            );
        }
        if let Some(h) = &y.trusted_proxy_header
            && http::HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            add(
                "yookassa.trusted_proxy_header",
                format!("not a header name: {h:?}"),
            );
        }
        for (name, share) in [
            ("shares.donations", self.shares.donations),
            ("shares.virtual_gifts", self.shares.virtual_gifts),
            ("shares.subscriptions", self.shares.subscriptions),
            ("shares.sponsored", self.shares.sponsored),
        ] {
            if share > 100 {
                add(name, format!("expected a percentage 0-100, got {share}"));
            }
        }
        if self.currencies.is_empty() {
            add("currencies", "at least one currency is required".into());
        }
        for (code, l) in &self.currencies {
            if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                add(
                    &format!("currencies.{code}"),
                    "expected an ISO 4217 code like \"RUB\"".into(),
                );
            }
            if l.min < 1 || l.max < l.min || l.per_donor_per_day < l.max {
                add(
                    &format!("currencies.{code}"),
                    format!(
                        "expected 1 <= min <= max <= per_donor_per_day, got {} / {} / {}",
                        l.min, l.max, l.per_donor_per_day
                    ),
                );
            }
            if l.per_donor_per_day > 1_000_000_000_000 {
                add(
                    &format!("currencies.{code}.per_donor_per_day"),
                    "expected at most 1000000000000".into(),
                );
            }
        }
        if !(1..=5000).contains(&self.max_message_chars) {
            add("max_message_chars", "expected 1-5000".into());
        }
        let t = self.payment_timeout.get();
        if t < std::time::Duration::from_secs(60) || t > std::time::Duration::from_secs(7 * 86400) {
            add("payment_timeout", "expected between 1m and 7days".into());
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_match_their_addresses_only() {
        let n = IpNet::parse("185.71.76.0/27").unwrap();
        assert!(n.contains("185.71.76.31".parse().unwrap()));
        assert!(!n.contains("185.71.76.32".parse().unwrap()));
        assert!(n.contains("::ffff:185.71.76.1".parse().unwrap()));
        let one = IpNet::parse("77.75.156.11").unwrap();
        assert!(one.contains("77.75.156.11".parse().unwrap()));
        assert!(!one.contains("77.75.156.12".parse().unwrap()));
        let v6 = IpNet::parse("2a02:5180::/32").unwrap();
        assert!(v6.contains("2a02:5180:1::5".parse().unwrap()));
        assert!(!v6.contains("2a02:5181::1".parse().unwrap()));
        assert!(!v6.contains("185.71.76.1".parse().unwrap()));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["", "1.2.3.4/33", "x/8", "::/129", "1.2.3.4/"] {
            assert!(IpNet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_valid_and_yookassa_needs_credentials() {
        assert!(PaymentsConfig::default().problems().is_empty());
        let y = PaymentsConfig {
            provider: PaymentProvider::Yookassa,
            ..Default::default()
        };
        let paths: Vec<_> = y.problems().into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["yookassa.shop_id", "yookassa.secret_key"]);
    }
}
