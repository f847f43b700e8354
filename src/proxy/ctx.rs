//! One request's state, grouped by who owns it: the request as admitted, its cache entry, the
//! origin attempts, the transform and the timing.

use crate::image::format::{OutputFormat, SourceFormat};
use crate::image::pool::Permit;
use crate::limits::{Identity, InflightGuard};
use crate::proxy::transform::Planned;
use crate::upstream::breaker::{Evidence, Ticket};
use crate::upstream::deadline::{Deadlines, Expired};
use bytes::Bytes;
use pingora_cache::key::HashBinary;
use pingora_cache::CacheKey;
use pingora_http::ResponseHeader;
use std::net::SocketAddr;
use std::time::Instant;

#[derive(Default)]
pub struct Ctx {
    pub request: RequestCtx,
    pub cache: CacheCtx,
    pub origin: OriginCtx,
    pub transform: TransformCtx,
    pub timing: Timing,
}

/// The request as `request_filter` admitted it.
#[derive(Default)]
pub struct RequestCtx {
    /// The host as keyed and forwarded (lower-cased, default port dropped).
    pub host: String,
    /// The path in its one normal form (key, origin, purge, invalidation).
    pub path: String,
    /// Index of the matched route.
    pub route: Option<usize>,
    /// `Access-Control-Allow-Origin` value, when the request's Origin is allowed.
    pub cors: Option<String>,
    /// Who the client is, for the rate limits.
    pub identity: Option<Identity>,
    /// Held until the response ends (per-key concurrency caps).
    pub inflight: Option<InflightGuard>,
    /// RateLimit-Policy / RateLimit headers for the response.
    pub limit_headers: Vec<(String, String)>,
    /// Path and query sent upstream when it differs from the client's.
    pub upstream_uri: Option<String>,
    /// Came in on the private source socket: this process fetching an original for a
    /// transform miss (no rate limits, no usage event, not counted as a client request).
    pub internal: bool,
    /// Parameters that look like transform parameters but are not (`Imgedge-Warning`, the
    /// access log's `warning=`), under `transform.unknown_params: warn`.
    pub warning: Option<String>,
    /// The response went out on the socket directly (a sendfile hit): what logging reports.
    pub direct: Option<Direct>,
}

/// A response written without Pingora's writer (which then knows nothing of it).
pub struct Direct {
    pub status: u16,
    pub cache: &'static str,
    pub bytes: usize,
}

/// The request's cache entry.
#[derive(Default)]
pub struct CacheCtx {
    /// Caching is on for this request (route with `cache: true`, GET).
    pub enabled: bool,
    /// Bytes the consistent-hash balancer hashes on (the cache key's primary).
    pub lb_key: Vec<u8>,
    /// This request's cache key hash (for the sendfile copy of a hit).
    pub hash: Option<HashBinary>,
    /// The cache key computed for the sendfile lookup, handed to Pingora's cache lookup so it
    /// is not computed twice (the request header does not change in between).
    pub key: Option<CacheKey>,
    /// A normal memory hit qualifying for a sendfile copy was served: make it after.
    pub record_fast: bool,
    /// The origin's 304 to a revalidation: its fields update the stored header.
    pub not_modified: Option<Box<ResponseHeader>>,
}

/// The origin attempts of a miss: which peers were tried, and the state of the current one.
#[derive(Default)]
pub struct OriginCtx {
    pub attempts: usize,
    /// Peers that failed this request (not tried again by it).
    pub failed_peers: Vec<SocketAddr>,
    /// Retries on reused connections that failed before a response (bounded).
    pub stale_retries: usize,
    /// Hash of what the origin is asked for: the breaker counts one URL's failures once.
    pub url_key: u64,
    /// Label of the peer of the current attempt.
    pub peer: Option<String>,
    /// The circuit breaker's admission of the current attempt (report the outcome on it).
    pub ticket: Option<Ticket>,
    /// First-byte / total deadlines of the current attempt.
    pub deadlines: Option<Deadlines>,
    /// The origin's response header arrived in the current attempt.
    pub header_received: bool,
    /// Status and one-line reason of an origin fault (a timeout).
    pub fault: Option<(u16, String)>,
}

impl OriginCtx {
    /// A new attempt: what the previous one left is resolved or dropped (abandoned).
    pub fn begin_attempt(&mut self) {
        self.ticket = None;
        self.deadlines = None;
        self.header_received = false;
        self.fault = None;
    }

    /// Disarms the deadlines of the attempt; which one expired, if any.
    pub fn end_deadlines(&mut self) -> Option<Expired> {
        self.deadlines.take().and_then(|mut d| {
            d.disarm();
            d.expired()
        })
    }

    /// The exchange with the peer completed: tell its circuit breaker.
    pub fn succeeded(&mut self) {
        if let Some(t) = self.ticket.take() {
            t.success();
        }
    }

    /// The peer failed this attempt: tell its circuit breaker why.
    pub fn failed(&mut self, why: &str, evidence: Evidence) {
        if let Some(t) = self.ticket.take() {
            t.failure(why, evidence);
        }
    }
}

/// The transform the URL asks for, and its progress on a miss.
#[derive(Default)]
pub struct TransformCtx {
    pub planned: Option<Box<Planned>>,
    /// The transform is sent upstream (a shield makes it) instead of being made here.
    pub forwarded: bool,
    /// The original is fetched through this node's own cache (`routes[].source_cache`).
    pub via_source: bool,
    /// Identifies the origin resource (for remembering failed sources).
    pub source_key: String,
    /// A slot of the transform pool, reserved before going to the origin.
    pub permit: Option<Permit>,
    /// Set while an origin body is being buffered for a transform.
    pub buffering: Option<Buffering>,
    /// Set while an SVG body is being buffered to be sanitized (`transform.svg`).
    pub sanitizing: Option<Vec<u8>>,
    /// The 422 body replacing an origin body refused from its header.
    pub refusal: Option<Bytes>,
    /// Why the transform of this response failed (the error answer's body).
    pub failure: Option<String>,
    /// `onerror=redirect`: the original's URL, answered with a 302 instead of a transform error.
    pub redirect: Option<String>,
    /// A path-form SOURCE URL on a host of `transform.remote_sources`: fetched from it alone.
    pub remote: Option<crate::config::RemoteSource>,
}

impl TransformCtx {
    /// `format=auto`: the answer depends on `Accept`.
    pub fn negotiated(&self) -> bool {
        self.planned.as_ref().is_some_and(|p| p.vary_accept)
    }

    /// `width=auto`: the fields of the client hints it was chosen by.
    pub fn hints_used(&self) -> Option<crate::image::hints::HintsUsed> {
        self.planned.as_ref().and_then(|p| p.spec.auto_width)
    }

    /// The canonical transform, for logs and usage events.
    pub fn canonical(&self) -> Option<&str> {
        self.planned.as_ref().map(|p| p.canonical.as_str())
    }
}

/// An origin body being collected for the transform.
pub struct Buffering {
    pub out: OutputFormat,
    /// The source format the origin's Content-Type named.
    pub declared: SourceFormat,
    pub source: Vec<u8>,
}

#[derive(Default)]
pub struct Timing {
    pub start: Option<Instant>,
    /// When the current origin attempt's peer was chosen.
    pub upstream_start: Option<Instant>,
    /// Time the transform of this response took (misses that transformed).
    pub transform_ms: Option<f64>,
}
