//! Human units in configuration: sizes (`"512MiB"`), durations (`"200ms"`) and listen
//! addresses (`"0.0.0.0:8080"`). Each parses from the form an operator writes and prints back
//! in the same form, so `potok config check` shows what was meant, not raw integers.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes, written as `"512MiB"`, `"64KiB"`, `"1.5GiB"`, `"10MB"` or a bare integer.
///
/// Binary units (`KiB`, `MiB`, `GiB`, `TiB`, and nginx's `K`, `M`, `G`) are powers of 1024;
/// decimal units (`KB`, `MB`, `GB`, `TB`) are powers of 1000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// One kibibyte.
    pub const KIB: u64 = 1024;
    /// One mebibyte.
    pub const MIB: u64 = 1024 * 1024;
    /// One gibibyte.
    pub const GIB: u64 = 1024 * 1024 * 1024;

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Builds a size from mebibytes.
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * Self::MIB)
    }

    /// Builds a size from kibibytes.
    pub const fn kib(n: u64) -> Self {
        ByteSize(n * Self::KIB)
    }
}

const SIZE_HINT: &str = "expected a size like \"512MiB\"";

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim();
        if num.is_empty() || num.matches('.').count() > 1 {
            return Err(format!("{SIZE_HINT}, got {s:?}"));
        }
        let mult: u64 = match unit {
            "" | "B" | "b" => 1,
            "K" | "k" | "KiB" => 1 << 10,
            "M" | "m" | "MiB" => 1 << 20,
            "G" | "g" | "GiB" => 1 << 30,
            "T" | "t" | "TiB" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            _ => return Err(format!("{SIZE_HINT}, got {s:?} (unknown unit {unit:?})")),
        };
        let bytes = if num.contains('.') {
            let v: f64 = num.parse().map_err(|_| format!("{SIZE_HINT}, got {s:?}"))?;
            let b = v * mult as f64;
            if !b.is_finite() || b > u64::MAX as f64 {
                return Err(format!("size {s:?} is too large"));
            }
            b as u64
        } else {
            let v: u64 = num
                .parse()
                .map_err(|_| format!("size {s:?} is too large"))?;
            v.checked_mul(mult)
                .ok_or_else(|| format!("size {s:?} is too large"))?
        };
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (size, name) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{name}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like \"512MiB\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("{SIZE_HINT}, got {v}")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
                Err(E::custom(format!("{SIZE_HINT}, got {v}")))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ByteSize, E> {
                Err(E::custom(format!("{SIZE_HINT}, got {v}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration, written as `"10s"`, `"200ms"`, `"1m 30s"` or `"2h"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Builds a duration from whole seconds.
    pub const fn secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }

    /// Builds a duration from milliseconds.
    pub const fn millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }
}

const DURATION_HINT: &str = "expected a duration like \"10s\" or \"200ms\"";

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| format!("{DURATION_HINT}, got {s:?} ({e})"))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like \"10s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "{DURATION_HINT}, got the bare number {v} (add a unit)"
                )))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "{DURATION_HINT}, got the bare number {v} (add a unit)"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "{DURATION_HINT}, got the bare number {v} (add a unit)"
                )))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<HumanDuration, E> {
                Err(E::custom(format!("{DURATION_HINT}, got {v}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A TCP or UDP address to listen on: an IP literal and a port (`"0.0.0.0:8080"`,
/// `"[::]:8080"`, `"127.0.0.1:0"` for a port the OS picks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenAddr(pub SocketAddr);

impl ListenAddr {
    /// The socket address.
    pub fn get(self) -> SocketAddr {
        self.0
    }

    /// Whether two listeners would fight over the same port: same non-zero port, and IPs
    /// of the same family that are equal or of which one is the wildcard address.
    pub fn conflicts_with(self, other: ListenAddr) -> bool {
        let (a, b) = (self.0, other.0);
        a.port() != 0
            && a.port() == b.port()
            && a.is_ipv4() == b.is_ipv4()
            && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.trim().parse().map(ListenAddr).map_err(|_| {
            format!("expected an address like \"0.0.0.0:8080\" or \"[::]:8080\", got {s:?}")
        })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ListenAddr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address like \"0.0.0.0:8080\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ListenAddr, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ListenAddr, E> {
                Err(E::custom(format!(
                    "expected an address like \"0.0.0.0:{v}\", got the bare number {v}"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!("512MiB".parse::<ByteSize>().unwrap(), ByteSize(512 << 20));
        assert_eq!("64 KiB".parse::<ByteSize>().unwrap(), ByteSize(64 << 10));
        assert_eq!("1.5GiB".parse::<ByteSize>().unwrap(), ByteSize(3 << 29));
        assert_eq!("10MB".parse::<ByteSize>().unwrap(), ByteSize(10_000_000));
        assert_eq!("4k".parse::<ByteSize>().unwrap(), ByteSize(4096));
        assert_eq!("123".parse::<ByteSize>().unwrap(), ByteSize(123));
    }

    #[test]
    fn sizes_reject_garbage_with_a_hint() {
        for bad in [
            "lots",
            "",
            "MiB",
            "12XB",
            "1.2.3MiB",
            "-5MiB",
            "99999999999TiB",
        ] {
            let err = bad.parse::<ByteSize>().unwrap_err();
            assert!(err.contains("size"), "{bad}: {err}");
        }
    }

    #[test]
    fn sizes_print_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(512 << 20).to_string(), "512MiB");
        assert_eq!(ByteSize(1536).to_string(), "1536B");
        assert_eq!(ByteSize(3 << 30).to_string(), "3GiB");
        assert_eq!(ByteSize(0).to_string(), "0B");
        let round: ByteSize = ByteSize(1536).to_string().parse().unwrap();
        assert_eq!(round, ByteSize(1536));
    }

    #[test]
    fn durations_round_trip() {
        let d: HumanDuration = "1m 30s".parse().unwrap();
        assert_eq!(d.get(), Duration::from_secs(90));
        assert_eq!(d.to_string().parse::<HumanDuration>().unwrap(), d);
        assert_eq!(HumanDuration::millis(200).to_string(), "200ms");
        assert!(
            "soon"
                .parse::<HumanDuration>()
                .unwrap_err()
                .contains("\"10s\"")
        );
    }

    #[test]
    fn listen_conflicts_cover_wildcards_and_ignore_port_zero() {
        let a: ListenAddr = "0.0.0.0:8080".parse().unwrap();
        let b: ListenAddr = "127.0.0.1:8080".parse().unwrap();
        let c: ListenAddr = "127.0.0.2:8080".parse().unwrap();
        let z: ListenAddr = "127.0.0.1:0".parse().unwrap();
        let v6: ListenAddr = "[::]:8080".parse().unwrap();
        assert!(a.conflicts_with(b));
        assert!(!b.conflicts_with(c));
        assert!(!z.conflicts_with(z));
        assert!(!a.conflicts_with(v6));
        assert!("localhost:80".parse::<ListenAddr>().is_err());
    }
}
