//! User-facing `limits:` configuration: the raw serde shape and its validation
//! into [`LimitSettings`], which the rest of the module consumes.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Every default of the `limits:` section, in one place.
pub mod defaults {
    pub const API_KEY_HEADER: &str = "X-Api-Key";
    pub const APPLIES_TO: &str = "all";
    pub const BACKEND_KIND: &str = "local";
    pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
    pub const TIMEOUT_MS: u64 = 20;
    pub const ON_ERROR: &str = "local";
    pub const NODES: u32 = 1;
    pub const EXPECTED_KEYS: usize = 100_000;
    pub const TIER_CLAIM: &str = "tier";
    pub const ORG_CLAIM: &str = "org";
    /// Clock skew tolerated on JWT `exp`/`nbf` (the brief allows 0-5 s).
    pub const JWT_LEEWAY_SECS: u64 = 5;
    /// Verified tokens remembered (token hash -> identity) until their `exp`.
    pub const JWT_CACHE_ENTRIES: usize = 10_000;
    /// While Redis is degraded, try it again at most this often, so a dead
    /// Redis does not add `timeout_ms` to every request.
    pub const REDIS_RETRY_INTERVAL_MS: u64 = 1_000;
    /// `backend.lease`: the most requests one Redis call may admit for a node (the
    /// request itself plus tokens kept locally for the next requests of the same client).
    pub const LEASE: u64 = 64;
    /// Largest `backend.lease` accepted.
    pub const LEASE_MAX: u64 = 10_000;
    /// The tier that applies to anonymous requests (and to credentials whose
    /// tier is not configured), when a tier of this name exists.
    pub const ANONYMOUS_TIER: &str = "free";
}

// ---------------------------------------------------------------- raw (serde)

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub policies: Option<Vec<RawPolicy>>,
    pub api_keys: Option<RawApiKeys>,
    pub jwt: Option<RawJwt>,
    pub tiers: Option<RawTiers>,
    pub trusted_proxies: Option<Vec<String>>,
    pub backend: Option<RawBackend>,
    pub expected_keys: Option<usize>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub name: Option<String>,
    pub key: Option<String>,
    pub applies_to: Option<String>,
    pub rate: Option<String>,
    pub burst: Option<u64>,
    pub concurrency: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeys {
    pub header: Option<String>,
    pub keys: Option<Vec<RawApiKey>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    pub key_sha256: Option<String>,
    pub tier: Option<String>,
    pub org: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    pub hs256_secret_file: Option<String>,
    pub rs256_public_key_file: Option<String>,
    pub tier_claim: Option<String>,
    pub org_claim: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    pub rate: Option<String>,
    pub burst: Option<u64>,
}

/// `tiers:` keeps the YAML order because it ranks tiers (low..high).
#[derive(Debug, Default, Clone)]
pub struct RawTiers(pub Vec<(String, RawTier)>);

impl<'de> Deserialize<'de> for RawTiers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTiers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of tier name -> {rate, burst}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawTiers, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, RawTier>()? {
                    out.push((k, v));
                }
                Ok(RawTiers(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub kind: Option<String>,
    pub redis_url: Option<String>,
    pub timeout_ms: Option<u64>,
    pub on_error: Option<String>,
    pub nodes: Option<u32>,
    /// `redis_url` is a seed node of a Redis Cluster.
    pub cluster: Option<bool>,
    pub lease: Option<u64>,
}

// ---------------------------------------------------------------- validated

/// A sustained rate: `count` events per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub period: Duration,
}

impl Rate {
    /// Nanoseconds between two events at the sustained rate (GCRA's `T`).
    pub fn emission_ns(&self) -> u64 {
        let ns = self.period.as_nanos() / u128::from(self.count.max(1));
        u64::try_from(ns).unwrap_or(u64::MAX).max(1)
    }

    pub fn per_sec(&self) -> f64 {
        self.count as f64 / self.period.as_secs_f64()
    }

    /// Parses `N/s`, `N/min` or `N/h`.
    pub fn parse(s: &str) -> Option<Rate> {
        let (n, unit) = s.trim().split_once('/')?;
        let count: u64 = n.trim().parse().ok()?;
        let secs = match unit.trim() {
            "s" => 1,
            "min" => 60,
            "h" => 3600,
            _ => return None,
        };
        (count >= 1).then_some(Rate {
            count,
            period: Duration::from_secs(secs),
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let unit = match self.period.as_secs() {
            60 => "min",
            3600 => "h",
            _ => "s",
        };
        write!(f, "{}/{}", self.count, unit)
    }
}

/// A GCRA limit: sustained `rate`, `burst` requests admitted at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub rate: Rate,
    pub burst: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    ClientIp,
    /// Lower-cased header name.
    Header(HeaderName),
    ApiKey,
    Org,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppliesTo {
    All,
    Transforms,
    Misses,
}

#[derive(Debug, Clone)]
pub struct PolicySettings {
    pub name: String,
    pub key: KeyKind,
    pub applies_to: AppliesTo,
    pub limit: Limit,
    pub concurrency: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct TierSettings {
    pub name: String,
    pub limit: Limit,
}

#[derive(Debug, Clone)]
pub struct ApiKeyEntry {
    pub tier: Option<String>,
    pub org: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ApiKeySettings {
    pub header: HeaderName,
    /// Lower-case hex sha256 of the key -> entry.
    pub keys: HashMap<String, ApiKeyEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKey {
    Hs256Secret(Vec<u8>),
    Rs256PublicPem(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub key: JwtKey,
    pub tier_claim: String,
    pub org_claim: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    Local,
    Open,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendKind {
    Local,
    Redis { url: String, cluster: bool },
}

#[derive(Debug, Clone)]
pub struct BackendSettings {
    pub kind: BackendKind,
    pub timeout: Duration,
    pub on_error: OnError,
    pub nodes: u32,
    /// Most tokens one Redis decision may take for a node (1 = no leasing).
    pub lease: u64,
}

impl Default for BackendSettings {
    fn default() -> Self {
        BackendSettings {
            kind: BackendKind::Local,
            timeout: Duration::from_millis(defaults::TIMEOUT_MS),
            on_error: OnError::Local,
            nodes: defaults::NODES,
            lease: defaults::LEASE,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub policies: Vec<PolicySettings>,
    pub api_keys: Option<ApiKeySettings>,
    pub jwt: Option<JwtSettings>,
    /// Ordered low..high.
    pub tiers: Vec<TierSettings>,
    pub trusted_proxies: Vec<IpNet>,
    pub backend: BackendSettings,
    pub expected_keys: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            policies: Vec::new(),
            api_keys: None,
            jwt: None,
            tiers: Vec::new(),
            trusted_proxies: Vec::new(),
            backend: BackendSettings::default(),
            expected_keys: defaults::EXPECTED_KEYS,
        }
    }
}

// ---------------------------------------------------------------- validation

fn push(errs: &mut Vec<(String, String)>, path: String, msg: impl Into<String>) {
    errs.push((path, msg.into()));
}

fn rate_field(raw: Option<&str>, path: String, errs: &mut Vec<(String, String)>) -> Option<Rate> {
    match raw {
        None => {
            push(errs, path, "missing (use N/s, N/min or N/h)");
            None
        }
        Some(s) => {
            let r = Rate::parse(s);
            if r.is_none() {
                push(
                    errs,
                    path,
                    format!("\"{s}\" is not a rate (use N/s, N/min or N/h)"),
                );
            }
            r
        }
    }
}

fn burst_field(raw: Option<u64>, path: String, errs: &mut Vec<(String, String)>) -> Option<u64> {
    match raw {
        None => {
            push(errs, path, "missing (must be >= 1)");
            None
        }
        Some(0) => {
            push(errs, path, "must be >= 1");
            None
        }
        Some(b) => Some(b),
    }
}

fn parse_key_kind(s: &str) -> Result<KeyKind, String> {
    match s {
        "client_ip" => Ok(KeyKind::ClientIp),
        "api_key" => Ok(KeyKind::ApiKey),
        "org" => Ok(KeyKind::Org),
        _ => match s.strip_prefix("header:") {
            Some(name) => HeaderName::from_bytes(name.trim().as_bytes())
                .map(KeyKind::Header)
                .map_err(|_| format!("\"{name}\" is not a valid header name")),
            None => Err(format!(
                "\"{s}\" is not a key kind (use client_ip, header:NAME, api_key or org)"
            )),
        },
    }
}

fn read_key_file(path: &str) -> Result<Vec<u8>, String> {
    crate::config::files::read_named_file(
        std::path::Path::new(path),
        crate::config::files::MAX_SECRET_BYTES,
    )
    .map_err(|e| format!("cannot read \"{path}\": {e}"))
}

/// Validates `raw` (the value of `limits:`), pushing every problem found as
/// (key path, one-line message). The returned settings are usable (invalid
/// parts are dropped) but should only be applied when `errs` stayed empty.
pub fn validate(raw: RawLimits, errs: &mut Vec<(String, String)>) -> LimitSettings {
    let mut out = LimitSettings::default();

    // tiers first: api keys refer to them
    let mut tier_names = HashSet::new();
    for (name, t) in raw.tiers.map(|t| t.0).unwrap_or_default() {
        let p = format!("limits.tiers.{name}");
        if !tier_names.insert(name.clone()) {
            push(errs, p.clone(), format!("duplicate tier \"{name}\""));
        }
        let rate = rate_field(t.rate.as_deref(), format!("{p}.rate"), errs);
        let burst = burst_field(t.burst, format!("{p}.burst"), errs);
        if let (Some(rate), Some(burst)) = (rate, burst) {
            out.tiers.push(TierSettings {
                name,
                limit: Limit { rate, burst },
            });
        }
    }

    let mut names = HashSet::new();
    for (i, p) in raw.policies.unwrap_or_default().into_iter().enumerate() {
        let base = format!("limits.policies[{i}]");
        let name = match p.name.as_deref().map(str::trim) {
            None | Some("") => {
                push(errs, format!("{base}.name"), "missing");
                None
            }
            Some(n) => {
                if !names.insert(n.to_string()) {
                    push(
                        errs,
                        format!("{base}.name"),
                        format!("duplicate policy name \"{n}\""),
                    );
                }
                Some(n.to_string())
            }
        };
        let key = match p.key.as_deref() {
            None => {
                push(
                    errs,
                    format!("{base}.key"),
                    "missing (use client_ip, header:NAME, api_key or org)",
                );
                None
            }
            Some(k) => parse_key_kind(k.trim())
                .map_err(|m| push(errs, format!("{base}.key"), m))
                .ok(),
        };
        let applies_to = match p.applies_to.as_deref().unwrap_or(defaults::APPLIES_TO) {
            "all" => Some(AppliesTo::All),
            "transforms" => Some(AppliesTo::Transforms),
            "misses" => Some(AppliesTo::Misses),
            other => {
                push(
                    errs,
                    format!("{base}.applies_to"),
                    format!("\"{other}\" is not one of all, transforms, misses"),
                );
                None
            }
        };
        let rate = rate_field(p.rate.as_deref(), format!("{base}.rate"), errs);
        let burst = burst_field(p.burst, format!("{base}.burst"), errs);
        if p.concurrency == Some(0) {
            push(errs, format!("{base}.concurrency"), "must be >= 1");
        }
        if let (Some(name), Some(key), Some(applies_to), Some(rate), Some(burst)) =
            (name, key, applies_to, rate, burst)
        {
            out.policies.push(PolicySettings {
                name,
                key,
                applies_to,
                limit: Limit { rate, burst },
                concurrency: p.concurrency.filter(|c| *c > 0),
            });
        }
    }

    if let Some(ak) = raw.api_keys {
        let header_raw = ak.header.as_deref().unwrap_or(defaults::API_KEY_HEADER);
        let header = HeaderName::from_bytes(header_raw.trim().as_bytes())
            .map_err(|_| {
                push(
                    errs,
                    "limits.api_keys.header".into(),
                    format!("\"{header_raw}\" is not a valid header name"),
                )
            })
            .ok();
        let mut keys = HashMap::new();
        for (i, k) in ak.keys.unwrap_or_default().into_iter().enumerate() {
            let base = format!("limits.api_keys.keys[{i}]");
            let hash = k
                .key_sha256
                .as_deref()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                push(
                    errs,
                    format!("{base}.key_sha256"),
                    "must be 64 hex characters (sha256 of the key)",
                );
                continue;
            }
            if let Some(t) = &k.tier {
                if !tier_names.contains(t) {
                    push(
                        errs,
                        format!("{base}.tier"),
                        format!("unknown tier \"{t}\" (not under limits.tiers)"),
                    );
                }
            }
            if keys.contains_key(&hash) {
                push(errs, format!("{base}.key_sha256"), "duplicate key");
            }
            keys.insert(
                hash,
                ApiKeyEntry {
                    tier: k.tier,
                    org: k.org.filter(|o| !o.is_empty()),
                },
            );
        }
        if let Some(header) = header {
            out.api_keys = Some(ApiKeySettings { header, keys });
        }
    }

    if let Some(j) = raw.jwt {
        let key = match (&j.hs256_secret_file, &j.rs256_public_key_file) {
            (Some(_), Some(_)) | (None, None) => {
                push(
                    errs,
                    "limits.jwt".into(),
                    "set exactly one of hs256_secret_file and rs256_public_key_file",
                );
                None
            }
            (Some(f), None) => match read_key_file(f) {
                // trailing newlines from `echo > file` are not part of the secret
                Ok(b) => {
                    let s = b.trim_ascii_end().to_vec();
                    if s.is_empty() {
                        push(
                            errs,
                            "limits.jwt.hs256_secret_file".into(),
                            "secret is empty",
                        );
                        None
                    } else {
                        Some(JwtKey::Hs256Secret(s))
                    }
                }
                Err(m) => {
                    push(errs, "limits.jwt.hs256_secret_file".into(), m);
                    None
                }
            },
            (None, Some(f)) => match read_key_file(f) {
                Ok(b) => match jsonwebtoken::DecodingKey::from_rsa_pem(&b) {
                    Ok(_) => Some(JwtKey::Rs256PublicPem(b)),
                    Err(e) => {
                        push(
                            errs,
                            "limits.jwt.rs256_public_key_file".into(),
                            format!("\"{f}\" is not an RSA public key PEM: {e}"),
                        );
                        None
                    }
                },
                Err(m) => {
                    push(errs, "limits.jwt.rs256_public_key_file".into(), m);
                    None
                }
            },
        };
        if let Some(key) = key {
            out.jwt = Some(JwtSettings {
                key,
                tier_claim: j.tier_claim.unwrap_or_else(|| defaults::TIER_CLAIM.into()),
                org_claim: j.org_claim.unwrap_or_else(|| defaults::ORG_CLAIM.into()),
            });
        }
    }

    for (i, s) in raw.trusted_proxies.unwrap_or_default().iter().enumerate() {
        let s = s.trim();
        let net = s
            .parse::<IpNet>()
            .ok()
            .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from));
        match net {
            Some(n) => out.trusted_proxies.push(n),
            None => push(
                errs,
                format!("limits.trusted_proxies[{i}]"),
                format!("\"{s}\" is not an IP address or CIDR"),
            ),
        }
    }

    let b = raw.backend.unwrap_or_default();
    let url = b.redis_url.unwrap_or_else(|| defaults::REDIS_URL.into());
    match b.kind.as_deref().unwrap_or(defaults::BACKEND_KIND) {
        "local" => {}
        "redis" => match redis::Client::open(url.as_str()) {
            Ok(_) => {
                out.backend.kind = BackendKind::Redis {
                    url,
                    cluster: b.cluster.unwrap_or(false),
                }
            }
            Err(e) => push(
                errs,
                "limits.backend.redis_url".into(),
                format!("\"{url}\" is not a Redis URL: {e}"),
            ),
        },
        other => push(
            errs,
            "limits.backend.kind".into(),
            format!("\"{other}\" is not one of local, redis"),
        ),
    }
    match b.timeout_ms.unwrap_or(defaults::TIMEOUT_MS) {
        0 => push(errs, "limits.backend.timeout_ms".into(), "must be >= 1"),
        ms => out.backend.timeout = Duration::from_millis(ms),
    }
    match b.on_error.as_deref().unwrap_or(defaults::ON_ERROR) {
        "local" => out.backend.on_error = OnError::Local,
        "open" => out.backend.on_error = OnError::Open,
        "closed" => out.backend.on_error = OnError::Closed,
        other => push(
            errs,
            "limits.backend.on_error".into(),
            format!("\"{other}\" is not one of local, open, closed"),
        ),
    }
    match b.nodes.unwrap_or(defaults::NODES) {
        0 => push(errs, "limits.backend.nodes".into(), "must be >= 1"),
        n => out.backend.nodes = n,
    }
    match b.lease.unwrap_or(defaults::LEASE) {
        n @ 1..=defaults::LEASE_MAX => out.backend.lease = n,
        n => push(
            errs,
            "limits.backend.lease".into(),
            format!("{n} is out of range 1..={}", defaults::LEASE_MAX),
        ),
    }
    match raw.expected_keys.unwrap_or(defaults::EXPECTED_KEYS) {
        0 => push(errs, "limits.expected_keys".into(), "must be >= 1"),
        n => out.expected_keys = n,
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        limits: RawLimits,
    }

    fn parse(yaml: &str) -> (LimitSettings, Vec<(String, String)>) {
        let f: File = serde_yaml::from_str(yaml).unwrap();
        let mut errs = Vec::new();
        let s = validate(f.limits, &mut errs);
        (s, errs)
    }

    #[test]
    fn rate_parsing() {
        assert_eq!(Rate::parse("50/s").unwrap().emission_ns(), 20_000_000);
        assert_eq!(
            Rate::parse(" 6/min ").unwrap().emission_ns(),
            10_000_000_000
        );
        assert_eq!(
            Rate::parse("1/h").unwrap().period,
            Duration::from_secs(3600)
        );
        for bad in ["5/day", "0/s", "-1/s", "s", "5", "x/s", "5/", "1.5/s"] {
            assert!(Rate::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(Rate::parse("6/min").unwrap().to_string(), "6/min");
        assert!((Rate::parse("30/min").unwrap().per_sec() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn full_example_is_valid() {
        let dir = std::env::temp_dir().join(format!("limcfg{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("jwt.key");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let yaml = format!(
            r#"
limits:
  policies:
    - name: per_ip
      key: client_ip
      rate: "50/s"
      burst: 100
      concurrency: 20
    - name: transforms
      key: client_ip
      applies_to: transforms
      rate: "5/s"
      burst: 10
    - {{name: by_tenant, key: "header:X-Tenant", rate: "10/min", burst: 5}}
  api_keys:
    header: X-Api-Key
    keys:
      - {{key_sha256: "{h}", tier: pro, org: acme}}
  jwt:
    hs256_secret_file: {secret}
    tier_claim: roles
    org_claim: org
  tiers:
    free: {{rate: "10/s", burst: 20}}
    pro:  {{rate: "200/s", burst: 400}}
  trusted_proxies: ["10.0.0.0/8", "192.168.1.1"]
  backend:
    kind: redis
    redis_url: "redis://127.0.0.1:6379"
    timeout_ms: 20
    on_error: local
    nodes: 2
  expected_keys: 1000
"#,
            h = "A".repeat(64),
            secret = secret.display()
        );
        let (s, errs) = parse(&yaml);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(s.policies.len(), 3);
        assert_eq!(s.policies[0].concurrency, Some(20));
        assert_eq!(s.policies[1].applies_to, AppliesTo::Transforms);
        assert_eq!(
            s.policies[2].key,
            KeyKind::Header(HeaderName::from_static("x-tenant"))
        );
        assert_eq!(
            s.tiers.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["free", "pro"]
        );
        assert!(s.api_keys.unwrap().keys.contains_key(&"a".repeat(64)));
        assert_eq!(s.jwt.unwrap().key, JwtKey::Hs256Secret(b"s3cret".to_vec()));
        assert_eq!(s.trusted_proxies.len(), 2);
        assert_eq!(s.backend.nodes, 2);
        assert!(matches!(s.backend.kind, BackendKind::Redis { .. }));
        assert_eq!(s.expected_keys, 1000);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn reports_every_error_with_paths() {
        let yaml = r#"
limits:
  policies:
    - {name: a, key: client_ip, rate: "50/s", burst: 100}
    - {name: a, key: cookie, rate: "5/day", burst: 0, applies_to: hits}
    - {key: org, rate: "1/s", burst: 1}
  api_keys:
    keys:
      - {key_sha256: "abc", tier: pro}
      - {key_sha256: "0000000000000000000000000000000000000000000000000000000000000000", tier: gold}
  jwt:
    hs256_secret_file: /nonexistent/jwt.key
  tiers:
    pro: {rate: "1/fortnight", burst: 1}
  trusted_proxies: ["10.0.0.0/33", "proxy.local"]
  backend: {kind: redis, redis_url: "http://x", timeout_ms: 0, on_error: maybe, lease: 0}
"#;
        let (_, errs) = parse(yaml);
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        for want in [
            "limits.tiers.pro.rate",
            "limits.policies[1].name",
            "limits.policies[1].key",
            "limits.policies[1].applies_to",
            "limits.policies[1].rate",
            "limits.policies[1].burst",
            "limits.policies[2].name",
            "limits.api_keys.keys[0].key_sha256",
            "limits.api_keys.keys[1].tier",
            "limits.jwt.hs256_secret_file",
            "limits.trusted_proxies[0]",
            "limits.trusted_proxies[1]",
            "limits.backend.redis_url",
            "limits.backend.timeout_ms",
            "limits.backend.on_error",
            "limits.backend.lease",
        ] {
            assert!(paths.contains(&want), "missing {want} in {errs:#?}");
        }
        let rate_msg = &errs
            .iter()
            .find(|(p, _)| p == "limits.policies[1].rate")
            .unwrap()
            .1;
        assert_eq!(rate_msg, "\"5/day\" is not a rate (use N/s, N/min or N/h)");
        assert!(errs.iter().all(|(_, m)| !m.contains('\n')));
    }

    #[test]
    fn jwt_needs_exactly_one_key_file_and_unknown_fields_rejected() {
        let (_, errs) = parse("limits:\n  jwt: {tier_claim: roles}\n");
        assert_eq!(errs[0].0, "limits.jwt");
        let e = serde_yaml::from_str::<File>("limits:\n  policy: []\n");
        assert!(e.is_err());
        let e = serde_yaml::from_str::<File>("limits:\n  tiers: {free: {rate: 1/s, bust: 2}}\n");
        assert!(e.is_err());
    }
}
