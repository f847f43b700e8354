//! Configuration: the YAML file (`raw`), its defaults (`defaults`) and the validated model the
//! rest of imgedge sees (this file, and `limits/` for the rate limits). `validate` loads a file;
//! each section is checked in the file named after it, with the errors and shared checks of
//! `check`. Knows nothing of the proxy: imports only image and signing types.

mod admin;
mod cache;
pub(crate) mod check;
pub mod defaults;
pub mod files;
pub mod limits;
mod listeners;
pub mod raw;
mod routes;
mod sections;
pub mod size;
mod transform;
mod upstreams;
mod usage;
mod validate;

use std::path::PathBuf;
use std::time::Duration;

pub use check::{ConfigError, ConfigErrors};
pub use validate::{load_file, parse_str};

/// The shipped default configuration (`conf/imgedge.yaml`), used when no `-c` is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../conf/imgedge.yaml");

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSettings,
    pub listen: Vec<String>,
    pub admin: AdminSettings,
    pub upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
    pub cache: CacheSettings,
    pub transform: TransformSettings,
    /// Rate limits (`limits`).
    pub limits: limits::LimitSettings,
    /// `None`: no usage events.
    pub usage: Option<UsageSettings>,
    pub log: LogSettings,
    /// HTTPS listeners (`tls`), when configured.
    pub tls: Option<TlsListeners>,
    pub http: HttpLimits,
    /// Client-side timeouts (`client`).
    pub client: ClientTimeouts,
}

/// How long a client may take (`client`).
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    /// From the connection's accept (first request) or the first byte of a later request to
    /// the end of its header block; then 408 and close.
    pub header: Duration,
    /// Idle time allowed between two requests on one connection; then it is closed.
    pub keepalive: Duration,
}

/// Largest request line target and header block a client may send (`http`).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_url_bytes: usize,
    pub max_header_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct TlsListeners {
    pub listen: Vec<String>,
    /// PEM certificate chain, leaf first; checked to load with the key at validation.
    pub cert_file: String,
    pub key_file: String,
    /// Offer HTTP/2 by ALPN (HTTP/1.1 stays available).
    pub h2: bool,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub threads: usize,
    pub pid_file: String,
    pub upgrade_sock: String,
    pub daemon: bool,
    pub error_log: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub grace_period_seconds: u64,
    pub graceful_shutdown_timeout_seconds: u64,
    pub upstream_keepalive_pool_size: usize,
    pub work_stealing: bool,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: String,
    /// Secret that allows `PURGE` on the proxy listeners (`admin.token` or `admin.token_file`).
    pub token: Option<String>,
    /// Client networks allowed to use `/quota` and `/purge` on the admin listener without the
    /// token (`admin.allow_cidrs`); everyone else needs `Authorization: Bearer <token>`.
    pub allow_cidrs: Vec<ipnet::IpNet>,
    /// The try-it page at `/` of the admin listener.
    pub playground: bool,
    /// Browser origins the proxy answers CORS for (the page fetches through the proxy); the
    /// admin listener accepts requests from them too.
    pub playground_origins: Vec<String>,
    /// `Host` names the admin listener answers (`admin.hostnames`; IP literals always), lower
    /// case; `"*"`: any.
    pub hostnames: Vec<String>,
}

/// Usage events published to a Redis Stream (`usage:` section).
#[derive(Debug, Clone)]
pub struct UsageSettings {
    pub redis_url: String,
    pub stream: String,
    pub maxlen: u64,
    pub batch_size: usize,
    pub buffer_size: usize,
    pub flush_interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub kind: UpstreamKind,
}

#[derive(Debug, Clone)]
pub enum UpstreamKind {
    Peers(Box<PeerPool>),
    Dir(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbAlgorithm {
    RoundRobin,
    /// Ketama consistent hashing on the cache key.
    Consistent,
}

#[derive(Debug, Clone)]
pub struct PeerPool {
    /// `host:port` as configured; resolved at start-up.
    pub peers: Vec<String>,
    pub tls: Option<TlsSettings>,
    /// `Host` header sent to the origin; `None` keeps the client's.
    pub host: Option<String>,
    pub lb: LbAlgorithm,
    pub health_check: Option<HealthCheck>,
    pub timeouts: Timeouts,
    /// Extra attempts on another peer when connecting fails or the origin fails before its
    /// response header.
    pub retries: usize,
    /// `None`: the breaker is off (`circuit_breaker.enabled: false`).
    pub circuit_breaker: Option<CircuitBreaker>,
}

/// Per-peer circuit breaker (`upstreams.X.circuit_breaker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreaker {
    /// Consecutive failures that open the circuit.
    pub failures: u32,
    /// How long an open circuit skips the peer before one probe request is let through.
    pub cooldown: Duration,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub sni: String,
    pub verify: bool,
}

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: usize,
    pub unhealthy_threshold: usize,
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub total_connect: Duration,
    pub read: Duration,
    pub write: Duration,
    pub idle: Duration,
    /// From the request sent to the response header received.
    pub first_byte: Duration,
    /// From the request sent to the last byte of the response.
    pub total: Duration,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub prefix: String,
    pub host: Option<String>,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    pub strip_prefix: bool,
    pub cache: bool,
    /// Send the canonical transform upstream (an imgedge shield) instead of transforming here.
    pub forward_transform: bool,
    /// Transform misses read the original through this node's own cache (one origin fetch and
    /// one stored original per source, whatever the number of variants).
    pub source_cache: bool,
}

#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub memory_bytes: u64,
    pub max_object_bytes: u64,
    pub default_ttl: Duration,
    pub negative_ttl: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    pub lock_timeout: Duration,
    /// `Vary` variants one URL may hold.
    pub max_variants: usize,
    /// Serve qualifying memory hits with `sendfile()` from a memfd copy (`cache::fastpath`).
    pub sendfile_hits: bool,
    /// The disk tier; `None`: memory only.
    pub disk: Option<DiskSettings>,
}

#[derive(Debug, Clone)]
pub struct DiskSettings {
    pub path: PathBuf,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct TransformSettings {
    /// URL and source limits, default quality, AVIF speed, allowed output formats.
    pub limits: crate::image::spec::Limits,
    pub presets: crate::image::params::Presets,
    pub workers: usize,
    pub queue: usize,
    /// Bytes transforms in flight may hold together (each reserves its estimated peak).
    pub max_memory_bytes: u64,
    /// Decoded sources kept for other variants of the same original (0: none).
    pub decoded_cache_bytes: u64,
    /// Whether `format=auto` may pick AVIF (slow to encode).
    pub auto_avif: bool,
    pub failure_ttl: Duration,
    /// Budget of one transform (queue wait included); beyond it the request fails (503).
    pub timeout: Duration,
    /// Signed URLs (`transform.signing`), when configured.
    pub signing: Option<crate::signing::SigningSettings>,
    /// What a query parameter that looks like a transform parameter gets.
    pub unknown_params: UnknownParams,
    /// `transform.remote_sources`: the only hosts a path-form SOURCE URL may be fetched from.
    pub remote_sources: Vec<RemoteSource>,
    /// What is done to SVG responses (`transform.svg`).
    pub svg: crate::image::svg::SvgMode,
}

/// One entry of `transform.remote_sources`: a scheme, host and port (the path and query of a
/// SOURCE URL are its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSource {
    pub tls: bool,
    /// Lower-cased; an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
}

impl RemoteSource {
    /// `https://host[:port]`, the port written only when it is not the scheme's.
    pub fn origin(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let host = match self.host.contains(':') {
            true => format!("[{}]", self.host),
            false => self.host.clone(),
        };
        match (self.tls, self.port) {
            (true, 443) | (false, 80) => format!("{scheme}://{host}"),
            _ => format!("{scheme}://{host}:{}", self.port),
        }
    }
}

/// `transform.unknown_params`: what happens to a query parameter that is not a transform
/// parameter but looks like one (`widht`, `Width`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownParams {
    /// Forwarded to the origin like any other parameter, silently.
    Forward,
    /// Forwarded, and the response carries `Imgedge-Warning` (the access log `warning=`).
    Warn,
    /// 400 with the reason, before any origin request.
    Reject,
}

impl UnknownParams {
    pub fn parse(s: &str) -> Option<UnknownParams> {
        Some(match s {
            "forward" => UnknownParams::Forward,
            "warn" => UnknownParams::Warn,
            "reject" => UnknownParams::Reject,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub access: bool,
    pub level: String,
}
