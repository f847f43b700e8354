//! Signed transform URLs: `sig=` is HMAC-SHA256 over the request path and the canonical
//! transform (aliases resolved, presets expanded, fixed parameter order), URL-safe base64
//! without padding. Reordering or re-spelling parameters keeps a signature valid; changing any
//! value breaks it. Optionally the signature also covers the host name (`cover_host`) and the
//! whole query as sent (`cover_query`); an `exp=` (unix seconds) in the URL is always covered
//! and refused once past. Several keys are accepted at once (rotation); the first one signs.
//! Also the constant-time comparison of secrets (the admin token). Knows nothing of the proxy:
//! it checks strings.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Shortest key accepted (bytes): HMAC-SHA256 keys shorter than this are guessable.
pub const MIN_KEY_BYTES: usize = 16;
/// The query parameter holding the signature.
pub const SIG_PARAM: &str = "sig";
/// The query parameter holding the expiry (unix seconds).
pub const EXP_PARAM: &str = "exp";
/// Most digits of an `exp=` (u64 seconds).
const MAX_EXP_DIGITS: usize = 20;

#[derive(Debug, Clone)]
pub struct SigningSettings {
    pub keys: Vec<Vec<u8>>,
    /// A transform request without `sig=` is refused.
    pub required: bool,
    /// The signature also covers the host name (without port; `cover_host`).
    pub cover_host: bool,
    /// The signature also covers every query parameter but `sig=`, as sent (`cover_query`).
    pub cover_query: bool,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("this URL must be signed: add sig= (see `imgedge sign`)")]
    Missing,
    #[error("sig= is not URL-safe base64 of an HMAC-SHA256")]
    Malformed,
    #[error("sig= does not match the path and transform")]
    Mismatch,
    #[error("exp= is not a time in unix seconds")]
    BadExpiry,
    #[error("this signed URL expired at exp={exp} ({ago} s ago)")]
    Expired { exp: u64, ago: u64 },
}

/// What a request's signature is made over: the client's host, path and raw query, and the
/// canonical transform of that query.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub host: &'a str,
    pub path: &'a str,
    /// The query as sent (without `?`); `sig=` in it is ignored.
    pub query: &'a str,
    pub canonical: &'a str,
}

/// The query's pairs in the order sent, empty ones and `sig=` left out: what `cover_query`
/// covers, and what `imgedge sign` prints before its `sig=`.
pub fn unsigned_pairs(query: &str) -> impl Iterator<Item = &str> {
    query
        .split('&')
        .filter(|p| !p.is_empty() && p.split_once('=').map_or(*p, |(k, _)| k) != SIG_PARAM)
}

/// The raw values of `exp=` in a query (one, when well formed).
fn expiries(query: &str) -> impl Iterator<Item = &str> {
    unsigned_pairs(query).filter_map(|p| match p.split_once('=') {
        Some((EXP_PARAM, v)) => Some(v),
        None if p == EXP_PARAM => Some(""),
        _ => None,
    })
}

/// The query without its `exp=` pairs (they are the signer's, not the origin's).
pub fn without_expiry(query: Option<String>) -> Option<String> {
    let q = query?;
    if expiries(&q).next().is_none() {
        return Some(q);
    }
    let kept: Vec<&str> = q
        .split('&')
        .filter(|p| !p.is_empty() && p.split_once('=').map_or(*p, |(k, _)| k) != EXP_PARAM)
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// The URL's expiry: `Ok(None)` without `exp=`; more than one, or not digits, is malformed.
fn expiry(query: &str) -> Result<Option<(&str, u64)>, SignatureError> {
    let mut all = expiries(query);
    let Some(raw) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some()
        || raw.is_empty()
        || raw.len() > MAX_EXP_DIGITS
        || !raw.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(SignatureError::BadExpiry);
    }
    let secs = raw.parse().map_err(|_| SignatureError::BadExpiry)?;
    Ok(Some((raw, secs)))
}

/// The host name a signature covers: lower case, without port or trailing dot.
fn host_name(host: &str) -> String {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(a, _)| a),
        None => host.split_once(':').map_or(host, |(h, _)| h),
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

pub struct Signer {
    settings: SigningSettings,
}

impl Signer {
    pub fn new(settings: SigningSettings) -> Signer {
        Signer { settings }
    }

    /// The signed message: path, a newline, the canonical transform (the format of the first
    /// signed URLs, unchanged), then one line per covered extra: `host=`, `query=`, `exp=`.
    /// Neither a path nor a query holds a raw newline, so the lines cannot be confused.
    fn message(&self, s: &Signed, exp: Option<&str>) -> Vec<u8> {
        let mut m = format!("{}\n{}", s.path, s.canonical);
        if self.settings.cover_host {
            m.push_str("\nhost=");
            m.push_str(&host_name(s.host));
        }
        if self.settings.cover_query {
            m.push_str("\nquery=");
            for (i, p) in unsigned_pairs(s.query).enumerate() {
                if i > 0 {
                    m.push('&');
                }
                m.push_str(p);
            }
        }
        if let Some(exp) = exp {
            m.push_str("\nexp=");
            m.push_str(exp);
        }
        m.into_bytes()
    }

    /// The `sig=` value for a request, with the first key (`exp=`, when in the query, is
    /// covered).
    pub fn sign(&self, s: &Signed) -> Result<String, SignatureError> {
        let exp = expiry(s.query)?.map(|(raw, _)| raw);
        let Some(key) = self.settings.keys.first() else {
            return Err(SignatureError::Missing);
        };
        let mut m = mac(key);
        m.update(&self.message(s, exp));
        Ok(URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
    }

    /// Checks `sig` against every key, each comparison in constant time, then the expiry
    /// against `now` (unix seconds): a forged `exp=` is a mismatch, a genuine past one expired.
    pub fn verify(&self, s: &Signed, sig: Option<&str>, now: u64) -> Result<(), SignatureError> {
        let Some(sig) = sig else {
            return if self.settings.required {
                Err(SignatureError::Missing)
            } else {
                Ok(())
            };
        };
        let raw = URL_SAFE_NO_PAD
            .decode(sig.trim_end_matches('='))
            .map_err(|_| SignatureError::Malformed)?;
        if raw.len() != 32 {
            return Err(SignatureError::Malformed);
        }
        let exp = expiry(s.query)?;
        let msg = self.message(s, exp.map(|(raw, _)| raw));
        let mut ok = false;
        for key in &self.settings.keys {
            let mut m = mac(key);
            m.update(&msg);
            // verify_slice compares in constant time; every key is tried (no early exit).
            ok |= m.verify_slice(&raw).is_ok();
        }
        if !ok {
            return Err(SignatureError::Mismatch);
        }
        match exp {
            Some((_, exp)) if exp < now => Err(SignatureError::Expired {
                exp,
                ago: now - exp,
            }),
            _ => Ok(()),
        }
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Compares secrets in time independent of where they differ.
pub fn token_matches(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer_with(keys: &[&str], required: bool, host: bool, query: bool) -> Signer {
        Signer::new(SigningSettings {
            keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
            required,
            cover_host: host,
            cover_query: query,
        })
    }

    fn signer(keys: &[&str], required: bool) -> Signer {
        signer_with(keys, required, false, false)
    }

    fn req<'a>(path: &'a str, canonical: &'a str) -> Signed<'a> {
        Signed {
            host: "img.example",
            path,
            query: "",
            canonical,
        }
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn round_trip_and_tamper() {
        let s = signer(&["0123456789abcdef-key-one"], true);
        let sig = s.sign(&req("/a.jpg", "w=400")).unwrap();
        assert!(!sig.contains('=') && !sig.contains('+') && !sig.contains('/'));
        let check = |p, c, sig| s.verify(&req(p, c), sig, NOW);
        assert_eq!(check("/a.jpg", "w=400", Some(&sig)), Ok(()));
        assert_eq!(
            check("/a.jpg", "w=401", Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check("/b.jpg", "w=400", Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(check("/a.jpg", "w=400", None), Err(SignatureError::Missing));
        assert_eq!(
            check("/a.jpg", "w=400", Some("not base64!")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            check("/a.jpg", "w=400", Some("AAAA")),
            Err(SignatureError::Malformed)
        );
    }

    /// Signatures made before host, query and expiry coverage existed keep verifying: the
    /// message without them is unchanged.
    #[test]
    fn the_message_of_plain_signatures_is_unchanged() {
        let s = signer(&["0123456789abcdef-key-one"], true);
        let mut m = mac(b"0123456789abcdef-key-one");
        m.update(b"/a.jpg\nw=400");
        let old = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
        let mut r = req("/a.jpg", "w=400");
        r.query = "w=400&other=1";
        assert_eq!(s.sign(&r).unwrap(), old);
        assert_eq!(s.verify(&r, Some(&old), NOW), Ok(()));
    }

    #[test]
    fn any_configured_key_verifies() {
        let old = signer(&["old-key-0123456789"], true);
        let both = signer(&["new-key-0123456789", "old-key-0123456789"], true);
        let sig = old.sign(&req("/p", "w=1")).unwrap();
        assert_eq!(both.verify(&req("/p", "w=1"), Some(&sig), NOW), Ok(()));
        assert_ne!(
            both.sign(&req("/p", "w=1")).unwrap(),
            sig,
            "the first key signs"
        );
    }

    #[test]
    fn optional_signing_still_rejects_bad_signatures() {
        let s = signer(&["0123456789abcdef"], false);
        assert_eq!(s.verify(&req("/p", "w=1"), None, NOW), Ok(()));
        assert!(s.verify(&req("/p", "w=1"), Some("AAAA"), NOW).is_err());
    }

    #[test]
    fn expiry_is_covered_and_checked() {
        let s = signer(&["0123456789abcdef"], true);
        let mut r = req("/p", "w=1");
        r.query = "w=1&exp=1800000060";
        let sig = s.sign(&r).unwrap();
        assert_eq!(s.verify(&r, Some(&sig), NOW), Ok(()));
        assert_eq!(
            s.verify(&r, Some(&sig), NOW + 61),
            Err(SignatureError::Expired {
                exp: 1_800_000_060,
                ago: 1
            })
        );
        // Another expiry, a removed one, two of them, or not a number: refused.
        for q in ["w=1&exp=1800000061", "w=1"] {
            r.query = q;
            assert_eq!(s.verify(&r, Some(&sig), NOW), Err(SignatureError::Mismatch));
        }
        for q in ["w=1&exp=1800000060&exp=1800000060", "w=1&exp=soon", "exp="] {
            r.query = q;
            assert_eq!(
                s.verify(&r, Some(&sig), NOW),
                Err(SignatureError::BadExpiry)
            );
        }
    }

    #[test]
    fn host_and_query_coverage() {
        let s = signer_with(&["0123456789abcdef"], true, true, true);
        let r = Signed {
            host: "Img.Example:8443",
            path: "/p",
            query: "w=1&v=2&sig=x",
            canonical: "w=1",
        };
        let sig = s.sign(&r).unwrap();
        assert_eq!(s.verify(&r, Some(&sig), NOW), Ok(()));
        let same_host = Signed {
            host: "img.example.",
            ..r
        };
        assert_eq!(s.verify(&same_host, Some(&sig), NOW), Ok(()));
        for other in [
            Signed {
                host: "other.example",
                ..r
            },
            Signed {
                query: "w=1&v=2&x=1",
                ..r
            },
            Signed {
                query: "v=2&w=1",
                ..r
            },
        ] {
            assert_eq!(
                s.verify(&other, Some(&sig), NOW),
                Err(SignatureError::Mismatch),
                "{other:?}"
            );
        }
    }

    #[test]
    fn expiry_leaves_the_forwarded_query() {
        assert_eq!(
            without_expiry(Some("a=1&exp=5&b=2".into())).as_deref(),
            Some("a=1&b=2")
        );
        assert_eq!(without_expiry(Some("exp=5".into())), None);
        assert_eq!(without_expiry(Some("a=1".into())).as_deref(), Some("a=1"));
        assert_eq!(without_expiry(None), None);
    }

    #[test]
    fn tokens() {
        assert!(token_matches(
            "s3cret-s3cret-s3cret",
            "s3cret-s3cret-s3cret"
        ));
        assert!(!token_matches(
            "s3cret-s3cret-s3cret",
            "s3cret-s3cret-s3creT"
        ));
        assert!(!token_matches("s3cret-s3cret-s3cret", "s3cret"));
        assert!(!token_matches("s3cret-s3cret-s3cret", ""));
    }
}
