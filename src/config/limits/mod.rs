//! The `limits:` section: its validated settings, which the rate limiter (`src/limits/`)
//! runs on. The YAML shape is in `raw`, its validation in `validate`, defaults in
//! `config::defaults::limits`.

pub mod raw;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;

use super::defaults::limits as defaults;
pub(crate) use validate::validate;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
