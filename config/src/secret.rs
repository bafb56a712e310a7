//! Values that must never be printed: cluster secrets, signing keys, passwords inside
//! database URLs. They deserialize normally and print as `<redacted>` everywhere else
//! (`Debug`, `Display`, `Serialize`), so `potok config check` and logs cannot leak them.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a redacted value prints as.
pub const REDACTED: &str = "<redacted>";

/// A secret string. Read it with [`Secret::expose`] at the one place that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::lenient_string(d).map(Secret)
    }
}

/// A database URL (`sqlite://data/potok.db`, `postgres://user:password@host/db`). The
/// password part, when present, is a secret; the rest is printed so operators can see
/// which database a node uses.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }

    /// The full URL with its password. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL scheme (`sqlite`, `postgres`, `postgresql`), if the URL has one.
    pub fn scheme(&self) -> Option<&str> {
        self.0.split_once("://").map(|(s, _)| s)
    }

    /// The URL with any password replaced by `<redacted>`.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return self.0.clone();
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let Some((userinfo, host)) = authority.rsplit_once('@') else {
            return self.0.clone();
        };
        match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:{REDACTED}@{host}{tail}"),
            None => self.0.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DatabaseUrl;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a database URL like \"postgres://user@host/db\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DatabaseUrl, E> {
                Ok(DatabaseUrl::new(v))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn database_passwords_are_redacted() {
        let u = DatabaseUrl::new("postgres://potok:s3cret@db.local:5432/potok?sslmode=require");
        assert_eq!(
            u.redacted(),
            "postgres://potok:<redacted>@db.local:5432/potok?sslmode=require"
        );
        assert!(!format!("{u:?}{u}").contains("s3cret"));
        assert_eq!(u.scheme(), Some("postgres"));
        let plain = DatabaseUrl::new("postgres://potok@db/potok");
        assert_eq!(plain.redacted(), "postgres://potok@db/potok");
        let sqlite = DatabaseUrl::new("sqlite://data/potok.db");
        assert_eq!(sqlite.redacted(), "sqlite://data/potok.db");
        // An '@' in the path is not userinfo.
        let odd = DatabaseUrl::new("sqlite://data/a@b.db");
        assert_eq!(odd.redacted(), "sqlite://data/a@b.db");
    }
}
