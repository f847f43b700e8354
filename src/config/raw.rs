//! The YAML file as written by the operator: typed, `deny_unknown_fields`, every field optional
//! so that validation (a file per section, see `validate.rs`) can report every problem at once
//! with its key path. Defaults live in `defaults.rs`, not here; the `limits` section's shape is
//! in `limits/raw.rs`.

use super::size::Quantity;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub threads: Option<usize>,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
    pub daemon: Option<bool>,
    pub error_log: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub grace_period_seconds: Option<u64>,
    pub graceful_shutdown_timeout_seconds: Option<u64>,
    pub upstream_keepalive_pool_size: Option<usize>,
    pub work_stealing: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub playground: Option<bool>,
    pub playground_origins: Option<Vec<String>>,
    pub token: Option<String>,
    pub token_file: Option<String>,
    pub allow_cidrs: Option<Vec<String>>,
    pub hostnames: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub enabled: Option<bool>,
    pub path: Option<String>,
    pub interval: Option<Quantity>,
    pub timeout: Option<Quantity>,
    pub healthy_threshold: Option<usize>,
    pub unhealthy_threshold: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<Quantity>,
    pub total_connect: Option<Quantity>,
    pub read: Option<Quantity>,
    pub write: Option<Quantity>,
    pub idle: Option<Quantity>,
    pub first_byte: Option<Quantity>,
    pub total: Option<Quantity>,
}

/// `upstreams.X.circuit_breaker`: passive per-peer breaker fed by real requests.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCircuitBreaker {
    pub enabled: Option<bool>,
    pub failures: Option<u32>,
    pub cooldown: Option<Quantity>,
}

/// `client`: how long a client may take to send its request headers, and stay idle between
/// requests on a keep-alive connection.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub header_timeout: Option<Quantity>,
    pub keepalive_timeout: Option<Quantity>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub sni: Option<String>,
    pub verify: Option<bool>,
}

/// `tls: true`, `tls: false` or `tls: {sni: ..., verify: ...}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawTlsSetting {
    Flag(bool),
    Detailed(RawTls),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub peers: Option<Vec<String>>,
    pub dir: Option<String>,
    pub tls: Option<RawTlsSetting>,
    pub host: Option<String>,
    pub lb: Option<String>,
    pub health_check: Option<RawHealthCheck>,
    pub timeouts: Option<RawTimeouts>,
    pub retries: Option<usize>,
    pub circuit_breaker: Option<RawCircuitBreaker>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub prefix: Option<String>,
    pub host: Option<String>,
    pub upstream: Option<String>,
    pub strip_prefix: Option<bool>,
    pub cache: Option<bool>,
    pub forward_transform: Option<bool>,
    pub source_cache: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub memory_bytes: Option<Quantity>,
    pub max_object_bytes: Option<Quantity>,
    pub default_ttl: Option<Quantity>,
    pub negative_ttl: Option<Quantity>,
    pub stale_while_revalidate: Option<Quantity>,
    pub stale_if_error: Option<Quantity>,
    pub lock_timeout: Option<Quantity>,
    pub max_variants: Option<usize>,
    pub sendfile_hits: Option<bool>,
    pub disk: Option<RawDisk>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDisk {
    pub path: Option<String>,
    pub bytes: Option<Quantity>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransform {
    pub max_width: Option<u32>,
    pub max_height: Option<u32>,
    pub max_output_pixels: Option<u64>,
    pub max_source_bytes: Option<Quantity>,
    pub max_source_pixels: Option<u64>,
    pub max_animation_frames: Option<u32>,
    pub max_animation_pixels: Option<u64>,
    pub max_memory_bytes: Option<Quantity>,
    pub decoded_cache_bytes: Option<Quantity>,
    pub workers: Option<usize>,
    pub queue: Option<usize>,
    pub quality: Option<u8>,
    pub avif_speed: Option<u8>,
    pub auto_avif: Option<bool>,
    pub formats: Option<Vec<String>>,
    pub failure_ttl: Option<Quantity>,
    pub timeout: Option<Quantity>,
    pub unknown_params: Option<String>,
    /// `srgb` (default) or `keep`.
    pub color_profile: Option<String>,
    /// name -> parameter -> value (numbers or strings)
    pub presets: Option<BTreeMap<String, BTreeMap<String, serde_yaml::Value>>>,
    pub signing: Option<RawSigning>,
    /// `scheme://host[:port]` a path-form SOURCE URL may name.
    pub remote_sources: Option<Vec<String>>,
    /// `sanitize` | `passthrough`
    pub svg: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigning {
    pub keys: Option<Vec<String>>,
    pub key_files: Option<Vec<String>>,
    pub required: Option<bool>,
    pub cover_host: Option<bool>,
    pub cover_query: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    pub redis_url: Option<String>,
    pub stream: Option<String>,
    pub maxlen: Option<u64>,
    pub batch_size: Option<usize>,
    pub buffer_size: Option<usize>,
    pub flush_interval: Option<Quantity>,
    pub timeout: Option<Quantity>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub access: Option<bool>,
    pub level: Option<String>,
}

/// Top-level sections; each is deserialized on its own so one bad section does not hide the
/// problems of the others.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "server",
    "listen",
    "admin",
    "upstreams",
    "routes",
    "cache",
    "transform",
    "limits",
    "usage",
    "log",
    "tls",
    "http",
    "client",
];

#[derive(Debug, Default)]
pub struct RawConfig {
    pub server: RawServer,
    pub listen: Option<Vec<String>>,
    pub admin: RawAdmin,
    pub upstreams: BTreeMap<String, Option<RawUpstream>>,
    /// The `upstreams` section could not be read, or is missing where a misspelling of it was
    /// reported: names referring to it are not checked (follow-on errors).
    pub upstreams_unread: bool,
    pub routes: Vec<Option<RawRoute>>,
    pub cache: RawCache,
    pub transform: RawTransform,
    pub limits: super::limits::raw::RawLimits,
    /// `None` when the section is absent (usage events off).
    pub usage: Option<RawUsage>,
    pub log: RawLog,
    pub tls: Option<RawTlsListen>,
    pub http: RawHttp,
    pub client: RawClient,
}

/// Limits on what a client request may carry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub max_url_bytes: Option<Quantity>,
    pub max_header_bytes: Option<Quantity>,
}

/// HTTPS listeners of the proxy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsListen {
    pub listen: Option<OneOrList>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub h2: Option<bool>,
}

/// `listen: 127.0.0.1:8080` or `listen: [127.0.0.1:8080, ...]`: one address or a list.
#[derive(Debug, Default)]
pub struct OneOrList(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrList;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an address or a list of addresses")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<OneOrList, E> {
                Ok(OneOrList(vec![s.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<OneOrList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = a.next_element::<String>()? {
                    out.push(s);
                }
                Ok(OneOrList(out))
            }
        }
        d.deserialize_any(V)
    }
}
