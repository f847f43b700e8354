//! Who is asking: client IP (X-Forwarded-For only from trusted proxies), API
//! key or JWT credentials, and the tier/org they map to.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::config::limits::{ApiKeySettings, JwtKey, KeyKind, LimitSettings};

/// Clock skew tolerated on JWT `exp`/`nbf` (the brief allows 0-5 s).
const JWT_LEEWAY_SECS: u64 = 5;
/// Verified tokens remembered (token hash -> identity) until their `exp`.
const JWT_CACHE_ENTRIES: usize = 10_000;
/// The tier that applies to anonymous requests (and to credentials whose
/// tier is not configured), when a tier of this name exists.
const ANONYMOUS_TIER: &str = "free";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("unknown API key")]
    UnknownApiKey,
    #[error("invalid token: {0}")]
    InvalidToken(String),
}

impl AuthError {
    /// HTTP status the proxy should answer with.
    pub fn status(&self) -> u16 {
        401
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Anonymous,
    /// `id` = "ak:" + first 16 hex chars of the key's sha256 (never the key).
    ApiKey {
        id: String,
    },
    /// `subject` = "jwt:" + `sub` claim (or a token hash prefix without one).
    Jwt {
        subject: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub client_ip: IpAddr,
    pub credential: Credential,
    pub org: Option<String>,
    /// Effective tier, if one is configured for this request.
    pub tier: Option<String>,
    /// Values of headers that `header:NAME` policies key on (non-empty only).
    pub header_values: Vec<(HeaderName, String)>,
}

impl Identity {
    /// The key tier buckets use: the credential's identity, else the IP.
    pub fn tier_key(&self) -> String {
        match &self.credential {
            Credential::Anonymous => self.client_ip.to_string(),
            Credential::ApiKey { id } => id.clone(),
            Credential::Jwt { subject } => subject.clone(),
        }
    }

    pub fn header_value(&self, name: &HeaderName) -> Option<&str> {
        self.header_values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Client-chosen key text (header values) is kept as is when short, else
/// replaced by a hash prefix, so per-key state stays small.
pub fn compact_key(v: &str) -> String {
    if v.len() <= 64 {
        v.to_string()
    } else {
        format!("#{}", hex::encode(&Sha256::digest(v.as_bytes())[..16]))
    }
}

/// "ak:" + hash prefix: identifies an API key in buckets and logs.
pub fn api_key_id(hash_hex: &str) -> String {
    format!("ak:{}", hash_hex.get(..16).unwrap_or(hash_hex))
}

#[derive(Clone)]
struct JwtInfo {
    subject: String,
    org: Option<String>,
    tier: Option<String>,
    exp: u64,
}

struct Jwt {
    key: DecodingKey,
    validation: Validation,
    tier_claim: String,
    org_claim: String,
    /// sha256(token) -> verified claims, until `exp`; bounded.
    cache: Mutex<HashMap<[u8; 32], JwtInfo>>,
}

pub struct Resolver {
    trusted: Vec<IpNet>,
    api_keys: Option<ApiKeySettings>,
    jwt: Option<Jwt>,
    /// Tier names low..high.
    tiers: Vec<String>,
    headers: Vec<HeaderName>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
}

impl Resolver {
    pub fn new(s: &LimitSettings) -> Resolver {
        let jwt = s.jwt.as_ref().and_then(|j| {
            let (key, alg) = match &j.key {
                JwtKey::Hs256Secret(b) => (DecodingKey::from_secret(b), Algorithm::HS256),
                JwtKey::Rs256PublicPem(p) => match DecodingKey::from_rsa_pem(p) {
                    Ok(k) => (k, Algorithm::RS256),
                    Err(e) => {
                        // validate() already parsed it; cannot happen with its output
                        log::error!("limits: JWT public key unusable, JWT disabled: {e}");
                        return None;
                    }
                },
            };
            let mut validation = Validation::new(alg);
            validation.leeway = JWT_LEEWAY_SECS;
            validation.validate_exp = true;
            validation.validate_nbf = true;
            // no audience is configured, so do not reject tokens that carry one
            validation.validate_aud = false;
            Some(Jwt {
                key,
                validation,
                tier_claim: j.tier_claim.clone(),
                org_claim: j.org_claim.clone(),
                cache: Mutex::new(HashMap::new()),
            })
        });
        let mut headers = Vec::new();
        for p in &s.policies {
            if let KeyKind::Header(h) = &p.key {
                if !headers.contains(h) {
                    headers.push(h.clone());
                }
            }
        }
        Resolver {
            trusted: s.trusted_proxies.clone(),
            api_keys: s.api_keys.clone(),
            jwt,
            tiers: s.tiers.iter().map(|t| t.name.clone()).collect(),
            headers,
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// Peer IP, unless the peer is a trusted proxy: then the rightmost
    /// X-Forwarded-For entry that is not itself a trusted proxy (entries left
    /// of it could be forged by the client).
    pub fn client_ip(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut entries: Vec<&str> = Vec::new();
        for v in headers.get_all("x-forwarded-for") {
            if let Ok(s) = v.to_str() {
                entries.extend(s.split(','));
            }
        }
        let mut client = peer;
        for e in entries.iter().rev() {
            match parse_forwarded_ip(e) {
                Some(ip) if self.is_trusted(ip) => client = ip,
                Some(ip) => return ip,
                // garbage written by a hop: stop at the last address we trust
                None => break,
            }
        }
        client
    }

    /// The default tier for requests without a configured one.
    fn default_tier(&self) -> Option<String> {
        self.tiers
            .iter()
            .find(|t| t.as_str() == ANONYMOUS_TIER)
            .cloned()
    }

    pub fn identify(&self, headers: &HeaderMap, peer: IpAddr) -> Result<Identity, AuthError> {
        let client_ip = self.client_ip(headers, peer);
        let header_values = self
            .headers
            .iter()
            .filter_map(|h| {
                let v = headers.get(h)?.to_str().ok()?.trim();
                (!v.is_empty()).then(|| (h.clone(), compact_key(v)))
            })
            .collect();
        let mut id = Identity {
            client_ip,
            credential: Credential::Anonymous,
            org: None,
            tier: self.default_tier(),
            header_values,
        };

        // an API key takes precedence over a bearer token when both are sent
        if let Some(ak) = &self.api_keys {
            if let Some(v) = headers.get(&ak.header) {
                let hash = sha256_hex(v.as_bytes());
                let entry = ak.keys.get(&hash).ok_or(AuthError::UnknownApiKey)?;
                id.credential = Credential::ApiKey {
                    id: api_key_id(&hash),
                };
                id.org = entry.org.clone();
                if entry.tier.is_some() {
                    id.tier = entry.tier.clone();
                }
                return Ok(id);
            }
        }
        if let Some(jwt) = &self.jwt {
            if let Some(token) = bearer_token(headers) {
                let info = self.verify_jwt(jwt, token)?;
                id.credential = Credential::Jwt {
                    subject: info.subject,
                };
                id.org = info.org;
                if info.tier.is_some() {
                    id.tier = info.tier;
                }
            }
        }
        Ok(id)
    }

    fn verify_jwt(&self, jwt: &Jwt, token: &str) -> Result<JwtInfo, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = unix_now();
        if let Some(info) = jwt.cache.lock().get(&digest) {
            if info.exp > now {
                return Ok(info.clone());
            }
        }
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &jwt.key,
            &jwt.validation,
        )
        .map_err(|e| AuthError::InvalidToken(jwt_reason(&e)))?;
        let claims = data.claims;
        let exp = claims.get("exp").and_then(|v| v.as_u64()).unwrap_or(0);
        let subject = match claims.get("sub").and_then(|v| v.as_str()) {
            Some(s) if !s.is_empty() => format!("jwt:{s}"),
            _ => format!("jwt:#{}", hex::encode(&digest[..8])),
        };
        let org = claims
            .get(&jwt.org_claim)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let tier = self.highest_tier(claims.get(&jwt.tier_claim));
        let info = JwtInfo {
            subject,
            org,
            tier,
            exp,
        };
        let mut cache = jwt.cache.lock();
        if cache.len() >= JWT_CACHE_ENTRIES {
            cache.retain(|_, i| i.exp > now);
            if cache.len() >= JWT_CACHE_ENTRIES {
                // full of live tokens: start over rather than grow
                cache.clear();
            }
        }
        cache.insert(digest, info.clone());
        Ok(info)
    }

    /// The highest configured tier (order of `tiers` = low..high) among a
    /// claim that is a string or an array of strings.
    fn highest_tier(&self, claim: Option<&serde_json::Value>) -> Option<String> {
        let values: Vec<&str> = match claim {
            Some(serde_json::Value::String(s)) => vec![s.as_str()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => Vec::new(),
        };
        self.tiers
            .iter()
            .rposition(|t| values.contains(&t.as_str()))
            .map(|i| self.tiers[i].clone())
    }

    /// Maps an API key's plain value to its bucket identity, tier and org.
    pub fn lookup_api_key(&self, plain: &str) -> Option<(String, Option<String>, Option<String>)> {
        let ak = self.api_keys.as_ref()?;
        let hash = sha256_hex(plain.as_bytes());
        let e = ak.keys.get(&hash)?;
        let tier = e.tier.clone().or_else(|| self.default_tier());
        Some((api_key_id(&hash), tier, e.org.clone()))
    }

    pub fn default_tier_name(&self) -> Option<String> {
        self.default_tier()
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    // other schemes (Basic...) may be meant for the upstream: not ours
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn jwt_reason(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "token expired".into(),
        K::ImmatureSignature => "token not yet valid (nbf)".into(),
        K::InvalidSignature => "bad signature".into(),
        K::InvalidAlgorithm => "unexpected algorithm".into(),
        K::MissingRequiredClaim(c) => format!("missing claim {c}"),
        K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => "malformed token".into(),
        _ => e.to_string().replace('\n', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::check::Errors;
    use crate::config::limits::raw::RawLimits;
    use crate::config::limits::{validate, ApiKeyEntry, JwtSettings, Limit, Rate, TierSettings};
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn settings() -> LimitSettings {
        let mut s = validate(RawLimits::default(), &mut Errors::default());
        s.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
        let lim = Limit {
            rate: Rate::parse("1/s").unwrap(),
            burst: 1,
        };
        for t in ["free", "pro", "enterprise"] {
            s.tiers.push(TierSettings {
                name: t.into(),
                limit: lim,
            });
        }
        let mut keys = HashMap::new();
        keys.insert(
            sha256_hex(b"secret-key-1"),
            ApiKeyEntry {
                tier: Some("pro".into()),
                org: Some("acme".into()),
            },
        );
        s.api_keys = Some(ApiKeySettings {
            header: HeaderName::from_static("x-api-key"),
            keys,
        });
        s.jwt = Some(JwtSettings {
            key: JwtKey::Hs256Secret(b"jwtsecret".to_vec()),
            tier_claim: "roles".into(),
            org_claim: "org".into(),
        });
        s
    }

    fn hm(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn token(claims: serde_json::Value, secret: &[u8]) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn xff_only_from_trusted_peers() {
        let r = Resolver::new(&settings());
        let h = hm(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4")]);
        let untrusted: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(r.client_ip(&h, untrusted), untrusted);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(r.client_ip(&h, proxy), "1.2.3.4".parse::<IpAddr>().unwrap());
        // trusted hops are skipped, spoofed leftmost entries ignored
        let h = hm(&[
            ("x-forwarded-for", "6.6.6.6, 1.2.3.4"),
            ("x-forwarded-for", "10.9.9.9"),
        ]);
        assert_eq!(r.client_ip(&h, proxy), "1.2.3.4".parse::<IpAddr>().unwrap());
        // no header: the peer itself
        assert_eq!(r.client_ip(&HeaderMap::new(), proxy), proxy);
        // long header values are stored hashed
        assert_eq!(compact_key("short"), "short");
        assert_eq!(compact_key(&"x".repeat(100)).len(), 33);
        // IPv4-mapped peer counts as the IPv4 proxy
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let h = hm(&[("x-forwarded-for", "1.2.3.4:5555")]);
        assert_eq!(
            r.client_ip(&h, mapped),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn api_keys_and_anonymous() {
        let r = Resolver::new(&settings());
        let peer: IpAddr = "198.51.100.1".parse().unwrap();
        let id = r
            .identify(&hm(&[("x-api-key", "secret-key-1")]), peer)
            .unwrap();
        assert_eq!(id.tier.as_deref(), Some("pro"));
        assert_eq!(id.org.as_deref(), Some("acme"));
        assert!(
            matches!(&id.credential, Credential::ApiKey { id } if id.starts_with("ak:") && id.len() == 19)
        );
        assert_eq!(
            r.identify(&hm(&[("x-api-key", "nope")]), peer),
            Err(AuthError::UnknownApiKey)
        );
        assert_eq!(AuthError::UnknownApiKey.to_string(), "unknown API key");
        let anon = r.identify(&HeaderMap::new(), peer).unwrap();
        assert_eq!(anon.credential, Credential::Anonymous);
        assert_eq!(anon.tier.as_deref(), Some("free"));
        assert_eq!(anon.tier_key(), "198.51.100.1");
        // Basic auth is not ours
        let id = r
            .identify(&hm(&[("authorization", "Basic dXNlcjpwYXNz")]), peer)
            .unwrap();
        assert_eq!(id.credential, Credential::Anonymous);
    }

    #[test]
    fn jwt_hs256() {
        let r = Resolver::new(&settings());
        let peer: IpAddr = "198.51.100.1".parse().unwrap();
        let now = unix_now();
        let auth = |t: &str| hm(&[("authorization", &format!("Bearer {t}"))]);

        let good = token(
            serde_json::json!({"sub": "u1", "exp": now + 600, "roles": ["pro", "enterprise", "x"], "org": "acme"}),
            b"jwtsecret",
        );
        let id = r.identify(&auth(&good), peer).unwrap();
        assert_eq!(id.tier.as_deref(), Some("enterprise"));
        assert_eq!(id.org.as_deref(), Some("acme"));
        assert_eq!(
            id.credential,
            Credential::Jwt {
                subject: "jwt:u1".into()
            }
        );
        // cached: same answer again
        assert_eq!(r.identify(&auth(&good), peer).unwrap(), id);

        let single = token(
            serde_json::json!({"sub": "u2", "exp": now + 600, "roles": "pro"}),
            b"jwtsecret",
        );
        assert_eq!(
            r.identify(&auth(&single), peer).unwrap().tier.as_deref(),
            Some("pro")
        );
        let unknown_role = token(
            serde_json::json!({"sub": "u3", "exp": now + 600, "roles": ["admin"]}),
            b"jwtsecret",
        );
        assert_eq!(
            r.identify(&auth(&unknown_role), peer)
                .unwrap()
                .tier
                .as_deref(),
            Some("free")
        );

        let expired = token(
            serde_json::json!({"sub": "u", "exp": now - 60}),
            b"jwtsecret",
        );
        assert_eq!(
            r.identify(&auth(&expired), peer),
            Err(AuthError::InvalidToken("token expired".into()))
        );
        let forged = token(serde_json::json!({"sub": "u", "exp": now + 600}), b"other");
        assert_eq!(
            r.identify(&auth(&forged), peer),
            Err(AuthError::InvalidToken("bad signature".into()))
        );
        let early = token(
            serde_json::json!({"sub": "u", "exp": now + 600, "nbf": now + 300}),
            b"jwtsecret",
        );
        assert_eq!(
            r.identify(&auth(&early), peer),
            Err(AuthError::InvalidToken("token not yet valid (nbf)".into()))
        );
        let no_exp = token(serde_json::json!({"sub": "u"}), b"jwtsecret");
        assert!(r.identify(&auth(&no_exp), peer).is_err());
        assert_eq!(
            r.identify(&auth("not.a.jwt"), peer),
            Err(AuthError::InvalidToken("malformed token".into()))
        );
        // an unsigned token is never accepted
        let none = format!("{}.{}.", hex::encode("x"), hex::encode("y"));
        assert!(r.identify(&auth(&none), peer).is_err());
    }
}
