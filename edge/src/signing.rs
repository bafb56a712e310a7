//! Signed playback URLs: `?token=EXPIRES.SIGNATURE` where SIGNATURE is the hex
//! HMAC-SHA256 of `STREAM:EXPIRES` under the edge's key. The token is checked on every
//! request for a private stream, is never part of a cache key, and is carried into the URIs
//! of the playlists the edge serves (players do not copy query strings to relative URIs).

use hmac::{Hmac, KeyInit, Mac};
use potok_config::SigningConfig;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a token was refused (all answered with 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The stream is private and the request has no token.
    #[error("this stream needs a signed URL")]
    Missing,
    /// Not of the form `EXPIRES.SIGNATURE`, or the signature does not match.
    #[error("bad token")]
    Bad,
    /// Valid but past its expiry.
    #[error("expired token")]
    Expired,
}

/// Token checks for the streams that need them.
#[derive(Clone)]
pub struct Signer {
    key: Option<Vec<u8>>,
    private: Vec<String>,
}

impl Signer {
    /// From `edge.signing`.
    pub fn new(cfg: &SigningConfig) -> Self {
        Signer {
            key: cfg.key.as_ref().map(|k| k.expose().as_bytes().to_vec()),
            private: cfg.private_streams.clone(),
        }
    }

    /// Whether `stream` needs a token.
    pub fn is_private(&self, stream: &str) -> bool {
        self.key.is_some() && self.private.iter().any(|p| p == "*" || p == stream)
    }

    fn mac(&self, stream: &str, expires: u64) -> Option<HmacSha256> {
        let mut mac = HmacSha256::new_from_slice(self.key.as_deref()?).ok()?;
        mac.update(stream.as_bytes());
        mac.update(b":");
        mac.update(expires.to_string().as_bytes());
        Some(mac)
    }

    /// A token for `stream` valid until `expires` (Unix seconds); `None` without a key.
    pub fn sign(&self, stream: &str, expires: u64) -> Option<String> {
        let sig = self.mac(stream, expires)?.finalize().into_bytes();
        Some(format!("{expires}.{}", hex(&sig)))
    }

    /// Checks `token` for `stream` at `now` (Unix seconds).
    pub fn verify(&self, stream: &str, token: Option<&str>, now: u64) -> Result<(), TokenError> {
        if !self.is_private(stream) {
            return Ok(());
        }
        let token = token.ok_or(TokenError::Missing)?;
        let (expires, sig) = token.split_once('.').ok_or(TokenError::Bad)?;
        if expires.len() > 20 || sig.len() != 64 {
            return Err(TokenError::Bad);
        }
        // One spelling per token: the expiry in plain decimal (no sign, no leading zeros)
        // and the signature in lowercase hex, exactly as `sign` writes them. Other
        // spellings of the same token would be different URLs (cache keys, logs, share
        // links) that all play, and a way around any exact-match revocation list.
        let expires_text = expires;
        let expires: u64 = expires.parse().map_err(|_| TokenError::Bad)?;
        if expires.to_string() != expires_text
            || !sig.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(TokenError::Bad);
        }
        let sig = unhex(sig).ok_or(TokenError::Bad)?;
        let mac = self.mac(stream, expires).ok_or(TokenError::Bad)?;
        // Constant-time comparison.
        mac.verify_slice(&sig).map_err(|_| TokenError::Bad)?;
        if expires < now {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Appends `token=...` to every URI of a playlist: URI lines and `URI="..."` attributes.
pub fn carry_token(playlist: &str, token: &str) -> String {
    let add = |uri: &str| {
        let sep = if uri.contains('?') { '&' } else { '?' };
        format!("{uri}{sep}token={token}")
    };
    let mut out = String::with_capacity(playlist.len() + 64 * 16);
    for line in playlist.lines() {
        if line.is_empty() {
        } else if !line.starts_with('#') {
            out.push_str(&add(line));
        } else if let Some(start) = line.find("URI=\"") {
            let value_start = start + 5;
            match line[value_start..].find('"') {
                Some(len) => {
                    out.push_str(&line[..value_start]);
                    out.push_str(&add(&line[value_start..value_start + len]));
                    out.push_str(&line[value_start + len..]);
                }
                None => out.push_str(line),
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use potok_config::Secret;

    fn signer() -> Signer {
        Signer::new(&SigningConfig {
            key: Some(Secret::new("0123456789abcdef0123456789abcdef")),
            private_streams: vec!["vip".into()],
        })
    }

    #[test]
    fn good_expired_tampered_and_wrong_stream_tokens() {
        let s = signer();
        let token = s.sign("vip", 1000).unwrap();
        assert_eq!(s.verify("vip", Some(&token), 999), Ok(()));
        assert_eq!(
            s.verify("vip", Some(&token), 1001),
            Err(TokenError::Expired)
        );
        assert_eq!(s.verify("vip", None, 0), Err(TokenError::Missing));
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            s.verify("vip", Some(std::str::from_utf8(&tampered).unwrap()), 0),
            Err(TokenError::Bad)
        );
        // A later expiry with the old signature.
        let sig = token.split_once('.').unwrap().1;
        assert_eq!(
            s.verify("vip", Some(&format!("2000.{sig}")), 0),
            Err(TokenError::Bad)
        );
        // Signed for another stream.
        let other = Signer::new(&SigningConfig {
            key: Some(Secret::new("0123456789abcdef0123456789abcdef")),
            private_streams: vec!["*".into()],
        });
        let for_free = other.sign("free", 1000).unwrap();
        assert_eq!(
            other.verify("vip", Some(&for_free), 0),
            Err(TokenError::Bad)
        );
        for junk in ["", ".", "x.y", "1.zz", "99999999999999999999999.00"] {
            assert_eq!(
                s.verify("vip", Some(junk), 0),
                Err(TokenError::Bad),
                "{junk}"
            );
        }
        // Public streams need nothing.
        assert_eq!(s.verify("free", None, 0), Ok(()));
    }

    #[test]
    fn only_the_canonical_spelling_of_a_token_is_accepted() {
        let s = signer();
        let token = s.sign("vip", 1000).unwrap();
        assert_eq!(s.verify("vip", Some(&token), 0), Ok(()));
        let (expires, sig) = token.split_once('.').unwrap();
        for other in [
            format!("{expires}.{}", sig.to_uppercase()),
            format!("0{expires}.{sig}"),
            format!("000000{expires}.{sig}"),
            format!("+{expires}.{sig}"),
        ] {
            assert_eq!(
                s.verify("vip", Some(&other), 0),
                Err(TokenError::Bad),
                "{other}"
            );
        }
        if let Some(upper) = sig.find(|c: char| c.is_ascii_lowercase()) {
            let mut mixed = sig.to_owned();
            mixed.replace_range(upper..=upper, &sig[upper..=upper].to_uppercase());
            let t = format!("{expires}.{mixed}");
            assert_eq!(s.verify("vip", Some(&t), 0), Err(TokenError::Bad), "{t}");
        }
        // Expiry 0 is spelled "0".
        let zero = s.sign("vip", 0).unwrap();
        assert!(zero.starts_with("0."));
        assert_eq!(s.verify("vip", Some(&zero), 0), Ok(()));
    }

    #[test]
    fn playlists_carry_the_token() {
        let p = "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-PART:DURATION=0.2,URI=\"5.0.m4s\",INDEPENDENT=YES\n#EXTINF:2.0,\n5.m4s\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"5.1.m4s\"\nsource/index.m3u8?x=1\n";
        let out = carry_token(p, "9.ab");
        assert!(out.contains("URI=\"init.mp4?token=9.ab\""), "{out}");
        assert!(
            out.contains("URI=\"5.0.m4s?token=9.ab\",INDEPENDENT=YES"),
            "{out}"
        );
        assert!(out.contains("\n5.m4s?token=9.ab\n"), "{out}");
        assert!(out.contains("URI=\"5.1.m4s?token=9.ab\""), "{out}");
        assert!(out.contains("source/index.m3u8?x=1&token=9.ab"), "{out}");
    }
}
