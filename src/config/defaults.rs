//! Every default of the configuration, in one place (documented in conf/reference.yaml).

use std::time::Duration;

pub const LISTEN: &str = "127.0.0.1:8080";
pub const ADMIN_LISTEN: &str = "127.0.0.1:9180";
pub const PID_FILE: &str = "/tmp/imgedge.pid";
pub const UPGRADE_SOCK: &str = "/tmp/imgedge_upgrade.sock";
/// Old processes keep serving this long after a graceful upgrade/stop begins.
pub const GRACE_PERIOD_SECONDS: u64 = 5;
pub const GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS: u64 = 10;
pub const UPSTREAM_KEEPALIVE_POOL_SIZE: usize = 256;

pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const TOTAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `upstreams.X.timeouts.first_byte`: request sent -> response header received.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(15);
/// `upstreams.X.timeouts.total`: request sent -> last byte of the response.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(120);
pub const RETRIES: usize = 1;
/// `routes[].source_cache`: transform misses take the original from the cache (one origin
/// fetch per original, however many variants).
pub const ROUTE_SOURCE_CACHE: bool = true;
/// `upstreams.X.circuit_breaker.failures`: consecutive failures that open a peer's circuit.
pub const CB_FAILURES: u32 = 5;
/// `upstreams.X.circuit_breaker.cooldown`: an open circuit waits this long before one probe.
pub const CB_COOLDOWN: Duration = Duration::from_secs(10);
/// `client.header_timeout`: a client must send its whole request header within this (nginx's
/// client_header_timeout is 60s; an edge facing slowloris wants less).
pub const CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `client.keepalive_timeout`: idle time between requests on a connection (Pingora's 60s).
pub const CLIENT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);

pub const HC_PATH: &str = "/";
pub const HC_INTERVAL: Duration = Duration::from_secs(5);
pub const HC_TIMEOUT: Duration = Duration::from_secs(1);
pub const HC_HEALTHY_THRESHOLD: usize = 2;
pub const HC_UNHEALTHY_THRESHOLD: usize = 3;

pub const CACHE_MEMORY_BYTES: u64 = 256 << 20;
/// Largest single object admitted to the memory cache.
pub const CACHE_MAX_OBJECT_BYTES: u64 = 32 << 20;
/// TTL when the origin gives no Cache-Control/Expires.
pub const CACHE_DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// TTL for 404/410 when the origin says nothing.
pub const CACHE_NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Stale-while-revalidate for responses that neither grant nor forbid it: none, so stale
/// content is served only when the origin says so (its `stale-while-revalidate`).
pub const CACHE_STALE_WHILE_REVALIDATE: Duration = Duration::ZERO;
/// `Vary` variants one URL may hold: enough for real negotiation, not for a header flood.
pub const CACHE_MAX_VARIANTS: usize = 16;
pub const CACHE_STALE_IF_ERROR: Duration = Duration::from_secs(86400);
/// Serve memory hits with sendfile() (`cache.sendfile_hits`).
pub const CACHE_SENDFILE_HITS: bool = true;
/// How long concurrent misses wait for the one request that fetches a key.
pub const CACHE_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// Smallest `cache.disk.bytes` accepted.
pub const CACHE_DISK_MIN_BYTES: u64 = 1 << 20;
/// `admin.allow_cidrs`: client networks that may use `/quota` and `/purge` on the admin listener
/// without the token. Loopback only: whoever has a shell on the host may purge.
pub const ADMIN_ALLOW_CIDRS: &[&str] = &["127.0.0.0/8", "::1/128"];
/// `admin.hostnames`: the `Host` names the admin listener answers (IP literals always). A web
/// page under any other name, rebound by DNS to the admin's address, is refused.
pub const ADMIN_HOSTNAMES: &[&str] = &["localhost"];
/// Shortest admin token accepted (it is a shared secret).
pub const ADMIN_TOKEN_MIN_LEN: usize = 16;

pub const TRANSFORM_MAX_WIDTH: u32 = 4096;
pub const TRANSFORM_MAX_HEIGHT: u32 = 4096;
pub const TRANSFORM_MAX_OUTPUT_PIXELS: u64 = 4096 * 4096;
pub const TRANSFORM_MAX_SOURCE_BYTES: u64 = 32 << 20;
/// 50 megapixels: larger sources are refused from their header, before decoding.
pub const TRANSFORM_MAX_SOURCE_PIXELS: u64 = 50_000_000;
/// `transform.max_animation_frames`: an animation with more frames is refused (422) unless
/// only its first frame is asked for; imgix refuses GIFs over 900 frames.
pub const TRANSFORM_MAX_ANIMATION_FRAMES: u32 = 1000;
/// `transform.max_animation_pixels`: frames x canvas, 50 megapixels, the size above which
/// Cloudflare stops transforming animations. Frames are made one at a time, so this bounds
/// the time (and the output's size), not the memory.
pub const TRANSFORM_MAX_ANIMATION_PIXELS: u64 = 50_000_000;
/// `transform.max_memory_bytes`: 1 GiB. The costliest job the default limits admit (a 50 MP
/// 16-bit PNG) peaks near 600 MB, so it fits, beside a few ordinary jobs
/// (a 12 MP JPEG to 1200 px WebP holds ~40 MB). A fixed size rather than a share of RAM: the
/// same config behaves the same on every host, and a container's RAM is not what /proc shows.
pub const TRANSFORM_MAX_MEMORY_BYTES: u64 = 1 << 30;
/// `transform.decoded_cache_bytes`: 256 MiB keeps the last few dozen large photos decoded at
/// the scales srcset widths need (a 4K JPEG at 1/2 scale is 6 MiB).
pub const TRANSFORM_DECODED_CACHE_BYTES: u64 = 256 << 20;
/// Smallest `transform.max_memory_bytes` accepted (a bare number is bytes, not megabytes).
pub const TRANSFORM_MIN_MEMORY_BYTES: u64 = 1 << 20;
pub const TRANSFORM_QUEUE: usize = 64;
pub const TRANSFORM_QUALITY: u8 = 80;
/// rav1e speed 10 (fastest): AVIF is still ~3x the cost of WebP at this speed.
pub const TRANSFORM_AVIF_SPEED: u8 = 10;
pub const TRANSFORM_AUTO_AVIF: bool = true;
/// `transform.signing.required`: configuring keys means unsigned transforms are refused.
pub const SIGNING_REQUIRED: bool = true;
/// `transform.signing.cover_host` / `cover_query`: off, so signatures made before they existed
/// (path + canonical transform) keep verifying.
pub const SIGNING_COVER_HOST: bool = false;
pub const SIGNING_COVER_QUERY: bool = false;
/// `tls.h2`: offer HTTP/2 on TLS listeners.
pub const TLS_H2: bool = true;
/// `http.max_url_bytes`: longer request targets get 414 (nginx's default buffer is 8 KiB).
pub const HTTP_MAX_URL_BYTES: u64 = 8 << 10;
/// `http.max_header_bytes`: larger header blocks (names + values) get 431.
pub const HTTP_MAX_HEADER_BYTES: u64 = 32 << 10;
/// `transform.svg`: SVG responses are sanitized unless the origin is trusted (`passthrough`).
pub const TRANSFORM_SVG: crate::image::svg::SvgMode = crate::image::svg::SvgMode::Sanitize;
/// `transform.timeout`: budget of one transform, queue wait included (typical: 10-300 ms).
pub const TRANSFORM_TIMEOUT: Duration = Duration::from_secs(10);
/// `transform.unknown_params`: a look-alike of a transform parameter gets a warning header.
pub const TRANSFORM_UNKNOWN_PARAMS: &str = "warn";
/// `transform.color_profile`: embedded profiles are applied, the output is sRGB.
pub const TRANSFORM_COLOR_PROFILE: &str = "srgb";
/// How long a failed transform of a source is answered up front without asking the origin.
pub const TRANSFORM_FAILURE_TTL: Duration = Duration::from_secs(30);

pub const ADMIN_PLAYGROUND: bool = true;

pub const USAGE_STREAM: &str = "imgedge:usage";
/// Approximate cap on the stream length (`XADD MAXLEN ~`): about a day at ~12 requests/s.
pub const USAGE_MAXLEN: u64 = 1_000_000;
/// Events per pipelined `XADD` batch.
pub const USAGE_BATCH_SIZE: usize = 500;
/// Events held in memory while Redis is slow or down; beyond it events are dropped (counted).
pub const USAGE_BUFFER_SIZE: usize = 100_000;
/// A partial batch is sent after this long.
pub const USAGE_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Connect and command timeout for the usage Redis.
pub const USAGE_TIMEOUT: Duration = Duration::from_secs(2);

/// Every default of the `limits:` section.
pub mod limits {
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
    /// `backend.lease`: the most requests one Redis call may admit for a node (the
    /// request itself plus tokens kept locally for the next requests of the same client).
    pub const LEASE: u64 = 64;
    /// Largest `backend.lease` accepted.
    pub const LEASE_MAX: u64 = 10_000;
}
