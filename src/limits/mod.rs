//! Rate limiting for imgedge: GCRA per policy/tier, local or Redis-shared,
//! with API-key/JWT identities and IETF `RateLimit` headers.
//!
//! Decisions worth knowing:
//! - Anonymous requests (no credentials) are limited by the tier named
//!   `free`, when one exists, keyed by client IP. Credentials whose tier is
//!   not configured (API key without `tier`, JWT whose claim names no
//!   configured tier) also get `free`, keyed by their own identity.
//! - All applicable buckets must admit; they are checked then committed
//!   together (locally under the shard locks, in Redis inside one script),
//!   so a refused request consumes no policy's allowance. The one exception
//!   is the Redis path's local pre-check mirror, which only records requests
//!   Redis admitted.
//! - `concurrency` caps are per node (pingora_limits::inflight, even with the
//!   Redis backend) and are taken before the rate check; a refused request
//!   releases them at once.
//! - `key: api_key` policies apply to API-key requests only (not JWTs).

pub mod gcra;
pub mod identity;
pub mod lease;

pub mod redis;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use pingora_limits::inflight::{Guard, Inflight};

use self::gcra::{BucketKey, Clock, Gcra, LocalStore, MonotonicClock, Verdict};
use self::identity::Resolver;
pub use self::identity::{AuthError, Credential, Identity};
use self::lease::LeaseStore;
use self::redis::{bucket_key, RedisBackend, RedisBucket};
use crate::config::limits::{AppliesTo, BackendKind, KeyKind, Limit, LimitSettings, OnError};
use crate::metrics::METRICS;

/// Where in the request a check happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// On arrival: policies with `applies_to: all` (and `transforms` when the
    /// request needs a resize) plus the identity's tier.
    Request { transform: bool },
    /// On a cache miss: policies with `applies_to: misses`.
    Miss,
}

/// Holds per-key in-flight slots; keep it until the response ends.
pub struct InflightGuard {
    _guards: Vec<Guard>,
}

impl fmt::Debug for InflightGuard {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "InflightGuard({})", self._guards.len())
    }
}

#[derive(Debug)]
pub enum Decision {
    Allow {
        headers: Vec<(String, String)>,
        guard: Option<InflightGuard>,
    },
    /// Answer 429 with `headers` and a body naming `policy`.
    Deny {
        policy: String,
        retry_after_secs: u64,
        headers: Vec<(String, String)>,
    },
    /// The shared backend is down and `on_error: closed`: answer 503.
    Unavailable { reason: String },
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// Read-only view of one bucket, for admin/debug endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaReport {
    /// Policy name, or `tier:<name>`.
    pub name: String,
    pub key: String,
    /// e.g. "50/s".
    pub rate: String,
    /// Burst: the most requests admitted at once.
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
}

struct Bucket {
    name: Arc<str>,
    key_kind: Option<KeyKind>,
    applies_to: AppliesTo,
    limit: Limit,
    full: Gcra,
    divided: Gcra,
    inflight: Option<(Inflight, u64)>,
}

struct Inner {
    resolver: Resolver,
    policies: Vec<Bucket>,
    /// Tier buckets, low..high, named `tier:<name>`.
    tiers: Vec<(String, Bucket)>,
    /// Local backend, or the Redis path's pre-check at the full limit.
    local: LocalStore,
    /// `on_error: local`: each node enforces limit / nodes.
    fallback: LocalStore,
    redis: Option<RedisBackend>,
    /// Spare Redis admissions per bucket set (`backend.lease`).
    leases: LeaseStore,
    lease_max: u64,
    on_error: OnError,
}

/// The rate limiter. Cheap to clone/share.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

/// An applicable bucket for one request.
struct Applied<'a> {
    b: &'a Bucket,
    key: String,
}

const SECOND_NS: u64 = 1_000_000_000;

fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(SECOND_NS)
}

/// sf-string for the header field's policy name.
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c)
            }
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

/// `RateLimit-Policy` and `RateLimit` (IETF draft) for one bucket.
pub fn rate_limit_headers(name: &str, g: &Gcra, v: &Verdict) -> Vec<(String, String)> {
    let n = sf_string(name);
    vec![
        (
            "RateLimit-Policy".into(),
            format!("{n};q={};w={}", g.burst, ceil_secs(g.tolerance_ns).max(1)),
        ),
        (
            "RateLimit".into(),
            format!("{n};r={};t={}", v.remaining, ceil_secs(v.reset_ns)),
        ),
    ]
}

impl Limiter {
    /// Builds the limiter; no I/O (Redis connects on first use, in the
    /// background).
    pub fn new(settings: &LimitSettings) -> Limiter {
        Self::with_clock(settings, Arc::new(MonotonicClock::new()))
    }

    /// As `new`, with an injected clock for local state (tests).
    pub fn with_clock(settings: &LimitSettings, clock: Arc<dyn Clock>) -> Limiter {
        let nodes = settings.backend.nodes;
        let mk = |name: Arc<str>, key_kind, applies_to, limit: Limit, conc: Option<u64>| Bucket {
            name,
            key_kind,
            applies_to,
            limit,
            full: Gcra::new(limit),
            divided: Gcra::divided(limit, nodes),
            inflight: conc.map(|c| (Inflight::new(), c)),
        };
        let policies = settings
            .policies
            .iter()
            .map(|p| {
                mk(
                    p.name.as_str().into(),
                    Some(p.key.clone()),
                    p.applies_to,
                    p.limit,
                    p.concurrency,
                )
            })
            .collect();
        let tiers = settings
            .tiers
            .iter()
            .map(|t| {
                let b = mk(
                    format!("tier:{}", t.name).into(),
                    None,
                    AppliesTo::All,
                    t.limit,
                    None,
                );
                (t.name.clone(), b)
            })
            .collect();
        let redis = match &settings.backend.kind {
            BackendKind::Local => None,
            BackendKind::Redis { url, cluster } => {
                match RedisBackend::new(url, *cluster, settings.backend.timeout, clock.clone()) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        log::error!("limits: bad redis_url, using the local backend: {e}");
                        None
                    }
                }
            }
        };
        Limiter {
            inner: Arc::new(Inner {
                resolver: Resolver::new(settings),
                policies,
                tiers,
                local: LocalStore::new(settings.expected_keys, clock.clone()),
                fallback: LocalStore::new(settings.expected_keys, clock),
                redis,
                leases: LeaseStore::new(settings.expected_keys),
                lease_max: settings.backend.lease,
                on_error: settings.backend.on_error,
            }),
        }
    }

    pub fn is_enabled(&self) -> bool {
        !self.inner.policies.is_empty() || !self.inner.tiers.is_empty()
    }

    /// True while the Redis backend is failing and the fallback is in use.
    pub fn is_degraded(&self) -> bool {
        self.inner
            .redis
            .as_ref()
            .is_some_and(RedisBackend::is_degraded)
    }

    pub fn identify(&self, headers: &http::HeaderMap, peer: IpAddr) -> Result<Identity, AuthError> {
        self.inner.resolver.identify(headers, peer)
    }

    fn applicable(&self, id: &Identity, stage: Stage) -> Vec<Applied<'_>> {
        let mut out = Vec::new();
        for b in &self.inner.policies {
            let applies = match (stage, b.applies_to) {
                (Stage::Request { .. }, AppliesTo::All) => true,
                (Stage::Request { transform }, AppliesTo::Transforms) => transform,
                (Stage::Miss, AppliesTo::Misses) => true,
                _ => false,
            };
            if !applies {
                continue;
            }
            let key = match &b.key_kind {
                Some(KeyKind::ClientIp) => Some(id.client_ip.to_string()),
                Some(KeyKind::Header(h)) => id.header_value(h).map(str::to_string),
                Some(KeyKind::ApiKey) => match &id.credential {
                    Credential::ApiKey { id } => Some(id.clone()),
                    _ => None,
                },
                Some(KeyKind::Org) => id.org.clone(),
                None => None,
            };
            if let Some(key) = key {
                out.push(Applied { b, key });
            }
        }
        if let (Stage::Request { .. }, Some(tier)) = (stage, &id.tier) {
            if let Some((_, b)) = self.inner.tiers.iter().find(|(n, _)| n == tier) {
                out.push(Applied {
                    b,
                    key: id.tier_key(),
                });
            }
        }
        out
    }

    /// Decides one request at `stage`. Never errors: backend trouble is
    /// handled per `on_error`.
    pub async fn check(&self, id: &Identity, stage: Stage) -> Decision {
        let applied = self.applicable(id, stage);
        if applied.is_empty() {
            return Decision::Allow {
                headers: Vec::new(),
                guard: None,
            };
        }

        // concurrency first, so a refusal here consumes no rate allowance
        let mut guards = Vec::new();
        for a in &applied {
            if let Some((inflight, cap)) = &a.b.inflight {
                let (g, n) = inflight.incr(a.key.as_str(), 1);
                guards.push(g);
                if u64::try_from(n).unwrap_or(0) > *cap {
                    METRICS
                        .ratelimit_decisions
                        .with_label_values(&[&*a.b.name, "deny"])
                        .inc();
                    return Decision::Deny {
                        policy: a.b.name.to_string(),
                        retry_after_secs: 1,
                        headers: vec![("Retry-After".into(), "1".into())],
                    };
                }
            }
        }
        let guard = (!guards.is_empty()).then_some(InflightGuard { _guards: guards });

        let full: Vec<(BucketKey, Gcra)> = applied.iter().map(|a| (bkey(a), a.b.full)).collect();
        let Some(redis) = &self.inner.redis else {
            let v = self.inner.local.check_all(&full, true);
            return finish(&applied, &v, |b| b.full, guard);
        };

        // local pre-check at the full limit: if this node alone is over,
        // Redis cannot say yes
        let pre = self.inner.local.check_all(&full, false);
        if pre.iter().any(|v| !v.allowed) {
            return finish(&applied, &pre, |b| b.full, guard);
        }
        // tokens this node already took from Redis for this client: no round trip
        let lease_key = (self.inner.lease_max > 1).then(|| lease_key(&applied));
        if let Some(k) = &lease_key {
            if let Some(v) = self.inner.leases.take(k, self.inner.local.now_ns()) {
                self.inner.local.force_admit(&full);
                return finish(&applied, &v, |b| b.full, guard);
            }
        }
        let want = match lease_key {
            Some(_) => lease::want(
                applied.iter().map(|a| a.b.full.emission_ns),
                self.inner.lease_max,
            ),
            None => 1,
        };
        let rb: Vec<RedisBucket> = applied
            .iter()
            .map(|a| RedisBucket {
                key: bucket_key(&a.b.name, &a.key),
                gcra: a.b.full,
            })
            .collect();
        if let Some(d) = redis.eval(&rb, true, want).await {
            let v: Vec<Verdict> = d.buckets.iter().map(|r| r.verdict).collect();
            if v.iter().all(|v| v.allowed) {
                self.inner.local.force_admit(&full);
                if let Some(k) = lease_key {
                    let spare = d.granted.saturating_sub(1);
                    let now = self.inner.local.now_ns();
                    self.inner.leases.put(k, spare, v.clone(), now);
                }
            }
            return finish(&applied, &v, |b| b.full, guard);
        }
        match self.inner.on_error {
            OnError::Local => {
                let div: Vec<(BucketKey, Gcra)> =
                    applied.iter().map(|a| (bkey(a), a.b.divided)).collect();
                let v = self.inner.fallback.check_all(&div, true);
                finish(&applied, &v, |b| b.divided, guard)
            }
            OnError::Open => {
                for a in &applied {
                    METRICS
                        .ratelimit_decisions
                        .with_label_values(&[&*a.b.name, "allow"])
                        .inc();
                }
                Decision::Allow {
                    headers: Vec::new(),
                    guard,
                }
            }
            OnError::Closed => Decision::Unavailable {
                reason: "rate-limit backend unavailable".into(),
            },
        }
    }

    /// Read-only state of every bucket `key` maps to: an IP (client_ip
    /// policies and the anonymous tier), an API key's plain value (api_key
    /// policies, its tier, its org's policies), else an org or header value.
    /// Never consumes allowance.
    pub async fn quota(&self, key: &str) -> Vec<QuotaReport> {
        let key = key.trim();
        let mut list: Vec<(&Bucket, String)> = Vec::new();
        let pol = |want: &dyn Fn(&KeyKind) -> bool| -> Vec<&Bucket> {
            self.inner
                .policies
                .iter()
                .filter(|b| b.key_kind.as_ref().is_some_and(want))
                .collect()
        };
        let tier = |name: &str| {
            self.inner
                .tiers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, b)| b)
        };
        if let Ok(ip) = key.parse::<IpAddr>() {
            let ip = ip.to_canonical().to_string();
            for b in pol(&|k| *k == KeyKind::ClientIp) {
                list.push((b, ip.clone()));
            }
            if let Some(b) = self
                .inner
                .resolver
                .default_tier_name()
                .and_then(|t| tier(&t))
            {
                list.push((b, ip));
            }
        } else if let Some((ak, t, org)) = self.inner.resolver.lookup_api_key(key) {
            for b in pol(&|k| *k == KeyKind::ApiKey) {
                list.push((b, ak.clone()));
            }
            if let Some(b) = t.and_then(|t| tier(&t)) {
                list.push((b, ak.clone()));
            }
            if let Some(org) = org {
                for b in pol(&|k| *k == KeyKind::Org) {
                    list.push((b, org.clone()));
                }
            }
        } else {
            for b in pol(&|k| matches!(k, KeyKind::Org | KeyKind::Header(_))) {
                list.push((b, key.to_string()));
            }
        }

        let mut current: Option<Vec<Verdict>> = None;
        if let Some(redis) = &self.inner.redis {
            let rb: Vec<RedisBucket> = list
                .iter()
                .map(|(b, k)| RedisBucket {
                    key: bucket_key(&b.name, k),
                    gcra: b.full,
                })
                .collect();
            if !rb.is_empty() {
                current = redis
                    .eval(&rb, false, 1)
                    .await
                    .map(|d| d.buckets.iter().map(|r| r.current).collect());
            }
        }
        let current = current.unwrap_or_else(|| {
            let lk: Vec<(BucketKey, Gcra)> = list
                .iter()
                .map(|(b, k)| {
                    (
                        BucketKey {
                            name: b.name.clone(),
                            key: k.clone(),
                        },
                        b.full,
                    )
                })
                .collect();
            self.inner.local.peek_all(&lk)
        });
        list.iter()
            .zip(current)
            .map(|((b, k), v)| QuotaReport {
                name: b.name.to_string(),
                key: k.clone(),
                rate: b.limit.rate.to_string(),
                limit: b.full.burst,
                remaining: v.remaining,
                reset_secs: ceil_secs(v.reset_ns),
            })
            .collect()
    }
}

/// The exact set of buckets a request is checked against: a lease is only
/// spent by requests that would have asked Redis about the same buckets.
fn lease_key(applied: &[Applied]) -> String {
    let mut k = String::new();
    for a in applied {
        k.push_str(&a.b.name);
        k.push('\0');
        k.push_str(&a.key);
        k.push('\0');
    }
    k
}

fn bkey(a: &Applied) -> BucketKey {
    BucketKey {
        name: a.b.name.clone(),
        key: a.key.clone(),
    }
}

/// Turns per-bucket verdicts into a decision with headers for the most
/// restrictive bucket (fewest remaining; on deny, the longest wait).
fn finish(
    applied: &[Applied],
    v: &[Verdict],
    gcra_of: impl Fn(&Bucket) -> Gcra,
    guard: Option<InflightGuard>,
) -> Decision {
    let denied = applied
        .iter()
        .zip(v)
        .filter(|(_, v)| !v.allowed)
        .max_by_key(|(_, v)| v.retry_ns);
    if let Some((a, v)) = denied {
        METRICS
            .ratelimit_decisions
            .with_label_values(&[&*a.b.name, "deny"])
            .inc();
        let retry = ceil_secs(v.retry_ns).max(1);
        let mut headers = rate_limit_headers(&a.b.name, &gcra_of(a.b), v);
        headers.push(("Retry-After".into(), retry.to_string()));
        return Decision::Deny {
            policy: a.b.name.to_string(),
            retry_after_secs: retry,
            headers,
        };
    }
    for a in applied {
        METRICS
            .ratelimit_decisions
            .with_label_values(&[&*a.b.name, "allow"])
            .inc();
    }
    let headers = applied
        .iter()
        .zip(v)
        .min_by_key(|(_, v)| v.remaining)
        .map(|(a, v)| rate_limit_headers(&a.b.name, &gcra_of(a.b), v))
        .unwrap_or_default();
    Decision::Allow { headers, guard }
}

#[cfg(test)]
mod tests;
