//! The `limits:` section as written in YAML (serde, `deny_unknown_fields`).

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

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
