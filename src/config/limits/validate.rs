//! Validation of the `limits:` section into [`LimitSettings`], every problem at its key path.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;

use super::raw::RawLimits;
use super::{
    defaults, ApiKeyEntry, ApiKeySettings, AppliesTo, BackendKind, JwtKey, JwtSettings, KeyKind,
    Limit, LimitSettings, OnError, PolicySettings, Rate, TierSettings,
};
use crate::config::check::Errors;
use crate::config::files;

fn rate_field(raw: Option<&str>, path: String, errs: &mut Errors) -> Option<Rate> {
    match raw {
        None => {
            errs.add(path, "missing (use N/s, N/min or N/h)");
            None
        }
        Some(s) => {
            let r = Rate::parse(s);
            if r.is_none() {
                errs.add(
                    path,
                    format!("\"{s}\" is not a rate (use N/s, N/min or N/h)"),
                );
            }
            r
        }
    }
}

fn burst_field(raw: Option<u64>, path: String, errs: &mut Errors) -> Option<u64> {
    match raw {
        None => {
            errs.add(path, "missing (must be >= 1)");
            None
        }
        Some(0) => {
            errs.add(path, "must be >= 1");
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
    files::read_named_file(std::path::Path::new(path), files::MAX_SECRET_BYTES)
        .map_err(|e| format!("cannot read \"{path}\": {e}"))
}

/// Validates `raw` (the value of `limits:`), adding every problem found at its key path. The
/// returned settings are usable (invalid parts are dropped) but should only be applied when
/// `errs` stayed empty.
pub(crate) fn validate(raw: RawLimits, errs: &mut Errors) -> LimitSettings {
    let mut out = LimitSettings::default();

    // tiers first: api keys refer to them
    let mut tier_names = HashSet::new();
    for (name, t) in raw.tiers.map(|t| t.0).unwrap_or_default() {
        let p = format!("limits.tiers.{name}");
        if !tier_names.insert(name.clone()) {
            errs.add(p.clone(), format!("duplicate tier \"{name}\""));
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
                errs.add(format!("{base}.name"), "missing");
                None
            }
            Some(n) => {
                if !names.insert(n.to_string()) {
                    errs.add(
                        format!("{base}.name"),
                        format!("duplicate policy name \"{n}\""),
                    );
                }
                Some(n.to_string())
            }
        };
        let key = match p.key.as_deref() {
            None => {
                errs.add(
                    format!("{base}.key"),
                    "missing (use client_ip, header:NAME, api_key or org)",
                );
                None
            }
            Some(k) => parse_key_kind(k.trim())
                .map_err(|m| errs.add(format!("{base}.key"), m))
                .ok(),
        };
        let applies_to = match p.applies_to.as_deref().unwrap_or(defaults::APPLIES_TO) {
            "all" => Some(AppliesTo::All),
            "transforms" => Some(AppliesTo::Transforms),
            "misses" => Some(AppliesTo::Misses),
            other => {
                errs.add(
                    format!("{base}.applies_to"),
                    format!("\"{other}\" is not one of all, transforms, misses"),
                );
                None
            }
        };
        let rate = rate_field(p.rate.as_deref(), format!("{base}.rate"), errs);
        let burst = burst_field(p.burst, format!("{base}.burst"), errs);
        if p.concurrency == Some(0) {
            errs.add(format!("{base}.concurrency"), "must be >= 1");
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
                errs.add(
                    "limits.api_keys.header",
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
                errs.add(
                    format!("{base}.key_sha256"),
                    "must be 64 hex characters (sha256 of the key)",
                );
                continue;
            }
            if let Some(t) = &k.tier {
                if !tier_names.contains(t) {
                    errs.add(
                        format!("{base}.tier"),
                        format!("unknown tier \"{t}\" (not under limits.tiers)"),
                    );
                }
            }
            if keys.contains_key(&hash) {
                errs.add(format!("{base}.key_sha256"), "duplicate key");
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
                errs.add(
                    "limits.jwt",
                    "set exactly one of hs256_secret_file and rs256_public_key_file",
                );
                None
            }
            (Some(f), None) => match read_key_file(f) {
                // trailing newlines from `echo > file` are not part of the secret
                Ok(b) => {
                    let s = b.trim_ascii_end().to_vec();
                    if s.is_empty() {
                        errs.add("limits.jwt.hs256_secret_file", "secret is empty");
                        None
                    } else {
                        Some(JwtKey::Hs256Secret(s))
                    }
                }
                Err(m) => {
                    errs.add("limits.jwt.hs256_secret_file", m);
                    None
                }
            },
            (None, Some(f)) => match read_key_file(f) {
                Ok(b) => match jsonwebtoken::DecodingKey::from_rsa_pem(&b) {
                    Ok(_) => Some(JwtKey::Rs256PublicPem(b)),
                    Err(e) => {
                        errs.add(
                            "limits.jwt.rs256_public_key_file",
                            format!("\"{f}\" is not an RSA public key PEM: {e}"),
                        );
                        None
                    }
                },
                Err(m) => {
                    errs.add("limits.jwt.rs256_public_key_file", m);
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
            None => errs.add(
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
            Err(e) => errs.add(
                "limits.backend.redis_url",
                format!("\"{url}\" is not a Redis URL: {e}"),
            ),
        },
        other => errs.add(
            "limits.backend.kind",
            format!("\"{other}\" is not one of local, redis"),
        ),
    }
    match b.timeout_ms.unwrap_or(defaults::TIMEOUT_MS) {
        0 => errs.add("limits.backend.timeout_ms", "must be >= 1"),
        ms => out.backend.timeout = Duration::from_millis(ms),
    }
    match b.on_error.as_deref().unwrap_or(defaults::ON_ERROR) {
        "local" => out.backend.on_error = OnError::Local,
        "open" => out.backend.on_error = OnError::Open,
        "closed" => out.backend.on_error = OnError::Closed,
        other => errs.add(
            "limits.backend.on_error",
            format!("\"{other}\" is not one of local, open, closed"),
        ),
    }
    match b.nodes.unwrap_or(defaults::NODES) {
        0 => errs.add("limits.backend.nodes", "must be >= 1"),
        n => out.backend.nodes = n,
    }
    match b.lease.unwrap_or(defaults::LEASE) {
        n @ 1..=defaults::LEASE_MAX => out.backend.lease = n,
        n => errs.add(
            "limits.backend.lease",
            format!("{n} is out of range 1..={}", defaults::LEASE_MAX),
        ),
    }
    match raw.expected_keys.unwrap_or(defaults::EXPECTED_KEYS) {
        0 => errs.add("limits.expected_keys", "must be >= 1"),
        n => out.expected_keys = n,
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct File {
        limits: RawLimits,
    }

    fn parse(yaml: &str) -> (LimitSettings, Vec<(String, String)>) {
        let f: File = serde_yaml::from_str(yaml).unwrap();
        let mut errs = Errors::default();
        let s = validate(f.limits, &mut errs);
        let errs = errs.0.into_iter().map(|e| (e.path, e.message)).collect();
        (s, errs)
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
