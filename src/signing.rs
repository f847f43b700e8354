//! Signed transform URLs: `sig=` is HMAC-SHA256 over the request path and the canonical
//! transform (aliases resolved, presets expanded, fixed parameter order), URL-safe base64
//! without padding. Reordering or re-spelling parameters keeps a signature valid; changing any
//! value breaks it. Several keys are accepted at once (rotation); the first one signs.
//! Also the constant-time comparison of secrets (the admin token). Knows nothing of the proxy:
//! it checks strings.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Shortest key accepted (bytes): HMAC-SHA256 keys shorter than this are guessable.
pub const MIN_KEY_BYTES: usize = 16;

#[derive(Debug, Clone)]
pub struct SigningSettings {
    pub keys: Vec<Vec<u8>>,
    /// A transform request without `sig=` is refused.
    pub required: bool,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("this URL must be signed: add sig= (see `imgedge sign`)")]
    Missing,
    #[error("sig= is not URL-safe base64 of an HMAC-SHA256")]
    Malformed,
    #[error("sig= does not match the path and transform")]
    Mismatch,
}

/// The signed message: path, a newline, the canonical transform.
fn message(path: &str, canonical: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(path.len() + canonical.len() + 1);
    m.extend_from_slice(path.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(canonical.as_bytes());
    m
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

    /// The `sig=` value for a path and canonical transform, with the first key.
    pub fn sign(&self, path: &str, canonical: &str) -> Option<String> {
        let key = self.settings.keys.first()?;
        let mut m = mac(key);
        m.update(&message(path, canonical));
        Some(URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
    }

    /// Checks `sig` against every key, each comparison in constant time.
    pub fn verify(
        &self,
        path: &str,
        canonical: &str,
        sig: Option<&str>,
    ) -> Result<(), SignatureError> {
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
        let msg = message(path, canonical);
        let mut ok = false;
        for key in &self.settings.keys {
            let mut m = mac(key);
            m.update(&msg);
            // verify_slice compares in constant time; every key is tried (no early exit).
            ok |= m.verify_slice(&raw).is_ok();
        }
        if ok {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
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

    fn signer(keys: &[&str], required: bool) -> Signer {
        Signer::new(SigningSettings {
            keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
            required,
        })
    }

    #[test]
    fn round_trip_and_tamper() {
        let s = signer(&["0123456789abcdef-key-one"], true);
        let sig = s.sign("/a.jpg", "w=400").unwrap();
        assert!(!sig.contains('=') && !sig.contains('+') && !sig.contains('/'));
        assert_eq!(s.verify("/a.jpg", "w=400", Some(&sig)), Ok(()));
        assert_eq!(
            s.verify("/a.jpg", "w=401", Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            s.verify("/b.jpg", "w=400", Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            s.verify("/a.jpg", "w=400", None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            s.verify("/a.jpg", "w=400", Some("not base64!")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            s.verify("/a.jpg", "w=400", Some("AAAA")),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn any_configured_key_verifies() {
        let old = signer(&["old-key-0123456789"], true);
        let both = signer(&["new-key-0123456789", "old-key-0123456789"], true);
        let sig = old.sign("/p", "w=1").unwrap();
        assert_eq!(both.verify("/p", "w=1", Some(&sig)), Ok(()));
        assert_ne!(both.sign("/p", "w=1").unwrap(), sig, "the first key signs");
    }

    #[test]
    fn optional_signing_still_rejects_bad_signatures() {
        let s = signer(&["0123456789abcdef"], false);
        assert_eq!(s.verify("/p", "w=1", None), Ok(()));
        assert!(s.verify("/p", "w=1", Some("AAAA")).is_err());
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
