//! The request's story, phase by phase. Each phase calls the module that owns its concern.
//!
//! ```text
//! request_filter ........ oversized target/headers: 414/431           (http_limits)
//!                         PURGE (admin token) is answered here          (purge)
//!                         `..` or NUL in the path: 400                  (forwarding)
//!                         route the request (404 when none matches); parse the transform
//!                         query, 400 with a reason when invalid           (transform::plan)
//!                         signed URLs: 403 on a missing or bad sig=   (signing::Signer)
//!                         identify the client (401 on a bad key/token) and apply the rate
//!                         limits: 429 + Retry-After                       (limits::Limiter)
//!                         a fresh memory hit of a large 200 on plain HTTP/1.1, asked for
//!                         without conditions or ranges: sent here with sendfile() from its
//!                         memfd copy and the request ends  (cache::fastpath, sendfile)
//! request_cache_filter .. cache on for GET on routes with `cache: true`
//! cache_key_callback .... host + path + normalized query + canonical transform  (cache::key)
//!    HIT/STALE ────────────────────────────────────────────────────────┐
//!    MISS (one request per key: cache lock)                            │
//! proxy_upstream_filter . limits on misses (429); a source that just   │
//!                         failed: answer its error;                    │
//!                         reserve a transform slot, 503 when full      │
//! upstream_peer ......... pick a healthy peer, skip failed ones and open circuits
//!                         (upstream::Pool::select; 503 when every circuit is open)
//! fail_to_connect ....... report to the circuit breaker; retry on another peer
//! connected_to_upstream . arm the first-byte / total deadlines     (upstream::deadline)
//! error_while_proxy ..... timeout, reset, garbage: report to the breaker; retry on another
//!                         peer while no response header came; 502/504 with a reason
//! upstream_request_filter path (strip_prefix, transform params removed), Host,
//!                         X-Forwarded-For / Forwarded / X-Forwarded-*    (forwarding)
//! upstream_response_filter hop-by-hop fields removed                    (forwarding)
//!                         transform or pass through? fix the headers  (transform::inspect)
//! upstream_response_body_filter buffer the source; at end of stream transform it on the
//!                         pool; what it leaves in the body is what is cached (transform::run)
//! response_cache_filter . Cache-Control / Expires / default TTL         (cache::Cache)
//! response_filter ....... X-Cache-Status, RateLimit headers, CORS for  <─┘
//!                         the try-it page, Server-Timing on transformed hits
//! logging ............... metrics + one access-log line + a usage event    (usage::Publisher)
//! ```

use crate::cache::{self, Cache};
use crate::http_limits;
use crate::image::format::{OutputFormat, SourceFormat};
use crate::image::pool::Permit;
use crate::limits::{Decision, Identity, InflightGuard, Limiter, Stage};
use crate::metrics::{status_class, METRICS};
use crate::routes::{self, Router};
use crate::transform::{Planned, Transformer, Verdict};
use crate::upstream::breaker::Ticket;
use crate::upstream::deadline::Deadlines;
use crate::upstream::{Pool, SelectError};
use async_trait::async_trait;
use bytes::Bytes;
use pingora::prelude::*;
use pingora::upstreams::peer::HttpPeer;
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::{CacheKey, NoCacheReason, RespCacheable};
use pingora_error::ErrorSource;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::FailToProxy;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

/// How long a sendfile hit waits for a client that accepts no bytes, when the server sets no
/// downstream write timeout.
const DIRECT_WRITE_STALL: Duration = Duration::from_secs(60);

/// Everything the proxy needs, built once from the validated config.
pub struct State {
    /// Request size limits (`http`).
    pub http: crate::config::HttpLimits,
    pub router: Router,
    pub pools: Vec<Pool>,
    pub cache: Cache,
    pub transformer: Transformer,
    pub limiter: Limiter,
    pub access_log: bool,
    /// Usage events (`usage:` section), when configured.
    pub usage: Option<crate::usage::Publisher>,
    /// Browser origins answered with CORS headers (the try-it page's); empty: none.
    pub cors_origins: Vec<String>,
    /// `admin.token`: allows `PURGE` on the proxy listeners.
    pub purge_token: Option<String>,
    /// `limits.trusted_proxies`: peers whose forwarding headers are kept and appended to.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Response headers the try-it page reads across origins.
const CORS_EXPOSE: &str =
    "X-Cache-Status, Content-Type, Content-Length, Server-Timing, X-Transform-Ms";

pub struct ImgEdge {
    pub state: &'static State,
}

#[derive(Default)]
pub struct Ctx {
    start: Option<Instant>,
    route: Option<usize>,
    /// Path and query sent upstream when it differs from the client's.
    upstream_uri: Option<String>,
    cache_enabled: bool,
    /// Bytes the consistent-hash balancer hashes on (the cache key's primary).
    lb_key: Vec<u8>,
    attempts: usize,
    failed_peers: Vec<SocketAddr>,
    peer: Option<String>,
    upstream_start: Option<Instant>,
    /// The transform the URL asks for.
    planned: Option<Box<Planned>>,
    /// The transform is sent upstream (a shield makes it) instead of being made here.
    forward_transform: bool,
    /// Identifies the origin resource (for remembering failed sources).
    source_key: String,
    permit: Option<Permit>,
    /// Set while an origin body is being buffered for a transform.
    transforming: Option<Transforming>,
    /// The 422 body replacing an origin body refused from its header.
    refusal: Option<Bytes>,
    /// Why the transform of this response failed (the error answer's body).
    failure: Option<String>,
    /// Who the client is, for the rate limits.
    identity: Option<Identity>,
    /// Held until the response ends (per-key concurrency caps).
    _inflight: Option<InflightGuard>,
    /// RateLimit-Policy / RateLimit headers for the response.
    limit_headers: Vec<(String, String)>,
    /// Time the transform of this response took (misses that transformed).
    transform_ms: Option<f64>,
    /// `Access-Control-Allow-Origin` value, when the request's Origin is allowed.
    cors: Option<String>,
    /// The circuit breaker's admission of the current attempt (report the outcome on it).
    ticket: Option<Ticket>,
    /// First-byte / total deadlines of the current attempt.
    deadlines: Option<Deadlines>,
    /// The origin's response header arrived in the current attempt.
    header_received: bool,
    /// Status and one-line reason of an origin fault (timeout, open circuits).
    fault: Option<(u16, String)>,
    /// This request's cache key hash (for the sendfile copy of a hit).
    cache_hash: Option<HashBinary>,
    /// The cache key computed for the sendfile lookup, handed to Pingora's cache lookup so it
    /// is not computed twice (the request header does not change in between).
    cache_key: Option<CacheKey>,
    /// A normal memory hit qualifying for a sendfile copy was served: make it after.
    record_fast: bool,
    /// The response went out on the socket directly (a sendfile hit): what logging reports.
    direct: Option<Direct>,
}

/// A response written without Pingora's writer (which then knows nothing of it).
struct Direct {
    status: u16,
    cache: &'static str,
    bytes: usize,
}

struct Transforming {
    out: OutputFormat,
    /// The source format the origin's Content-Type named.
    declared: SourceFormat,
    source: Vec<u8>,
}

impl Ctx {
    fn route_label<'a>(&self, state: &'a State) -> &'a str {
        match self.route {
            Some(i) => state.router.get(i).prefix.as_str(),
            None => "none",
        }
    }
}

/// The cache key of a request (and the bytes the balancer hashes on).
fn cache_key(req: &RequestHeader, ctx: &mut Ctx) -> CacheKey {
    let host = request_host(req);
    let (path, query) = (req.uri.path(), req.uri.query());
    let key = match &ctx.planned {
        None => {
            let key = cache::key(&host, path, query, "");
            ctx.lb_key = key.primary_key().to_vec();
            key
        }
        Some(p) => {
            // Balance on what is produced, so a negotiated and a fixed request for the same
            // bytes go to the same shield (whose cache key is the fixed one).
            let produced = cache::key(&host, path, p.forward_query.as_deref(), p.produced());
            ctx.lb_key = produced.primary_key().to_vec();
            cache::key(&host, path, p.forward_query.as_deref(), &p.canonical)
        }
    };
    ctx.cache_hash = Some(key.combined_bin());
    key
}

/// A request whose answer from a fresh entry is the whole stored 200: no conditions, no
/// ranges, no cache directives, no body, no upgrade (those take the normal path).
fn plain_request(req: &RequestHeader) -> bool {
    use http::header::*;
    let h = &req.headers;
    let special = [
        RANGE,
        IF_RANGE,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_MATCH,
        IF_UNMODIFIED_SINCE,
        CACHE_CONTROL,
        PRAGMA,
        EXPECT,
        UPGRADE,
        TRANSFER_ENCODING,
    ];
    if special.iter().any(|name| h.contains_key(name)) {
        return false;
    }
    h.get(CONTENT_LENGTH).is_none_or(|v| v.as_bytes() == b"0")
}

/// The HTTP/1.1 status line and header block of `resp`, as Pingora's writer serializes it.
fn h1_head(resp: &ResponseHeader) -> Vec<u8> {
    let mut buf = bytes::BytesMut::with_capacity(1024);
    buf.extend_from_slice(b"HTTP/1.1 ");
    buf.extend_from_slice(resp.status.as_str().as_bytes());
    buf.extend_from_slice(b" ");
    if let Some(reason) = resp.get_reason_phrase() {
        buf.extend_from_slice(reason.as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    resp.header_to_h1_wire(&mut buf);
    buf.extend_from_slice(b"\r\n");
    buf.to_vec()
}

fn request_host(req: &RequestHeader) -> String {
    let raw = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    routes::host_only(raw)
}

/// The allowed-origin value for a request's `Origin` (`*` when every origin is allowed).
fn cors_origin(allowed: &[String], req: &RequestHeader) -> Option<String> {
    if allowed.is_empty() {
        return None;
    }
    let origin = req.headers.get(http::header::ORIGIN)?.to_str().ok()?;
    if allowed.iter().any(|a| a == "*") {
        return Some("*".into());
    }
    allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(origin))
        .then(|| origin.to_string())
}

/// CORS headers so a page on an allowed origin can read the response and its headers.
fn add_cors(resp: &mut ResponseHeader, origin: &str) -> Result<()> {
    resp.insert_header("Access-Control-Allow-Origin", origin)?;
    resp.insert_header("Access-Control-Expose-Headers", CORS_EXPOSE)?;
    resp.insert_header("Timing-Allow-Origin", origin)?;
    if origin != "*" {
        let vary = match resp
            .headers
            .get(http::header::VARY)
            .and_then(|v| v.to_str().ok())
        {
            Some(v) if v.to_ascii_lowercase().contains("origin") => v.to_string(),
            Some(v) => format!("{v}, Origin"),
            None => "Origin".to_string(),
        };
        resp.insert_header(http::header::VARY, vary)?;
    }
    Ok(())
}

/// Writes a short plain-text answer (a one-line reason) and ends the request.
pub async fn respond_text(
    session: &mut Session,
    cors: Option<&str>,
    status: u16,
    body: &str,
) -> Result<()> {
    respond_with(session, cors, status, body, &[]).await
}

/// Like [`respond_text`], with extra headers.
pub async fn respond_with(
    session: &mut Session,
    cors: Option<&str>,
    status: u16,
    body: &str,
    headers: &[(String, String)],
) -> Result<()> {
    let body = Bytes::from(format!("{body}\n"));
    let mut resp = ResponseHeader::build(status, Some(7 + headers.len()))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header("X-Cache-Status", "BYPASS")?;
    for (k, v) in headers {
        resp.insert_header(k.clone(), v.as_str())?;
    }
    if let Some(origin) = cors {
        add_cors(&mut resp, origin)?;
    }
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// Status for a failed request; 0 when the client is gone and nothing can be sent.
fn error_status(e: &Error, upstream_chosen: bool) -> u16 {
    use ErrorType::*;
    match e.etype() {
        HTTPStatus(code) => *code,
        ConnectTimedout | ReadTimedout | WriteTimedout => 504,
        _ => match e.esource() {
            ErrorSource::Downstream => match e.etype() {
                WriteError | ReadError | ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Upstream => 502,
            // TLS and connect failures may come without a source: blame the origin when one
            // was being contacted.
            _ if upstream_chosen => 502,
            _ => 500,
        },
    }
}

/// 503 with `Retry-After` when the transform pool and its queue are full.
async fn respond_busy(session: &mut Session, cors: Option<&str>) -> Result<()> {
    let body = Bytes::from_static(b"busy: the transform queue is full, retry shortly\n");
    let mut resp = ResponseHeader::build(503, Some(8))?;
    if let Some(origin) = cors {
        add_cors(&mut resp, origin)?;
    }
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(http::header::RETRY_AFTER, "1")?;
    resp.insert_header("X-Cache-Status", "BYPASS")?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// The headers of a response whose body will be replaced by the transform: the new type, no
/// length (sent chunked; the stored entry knows its length), no ranges, no encoding, an ETag of
/// its own (the origin's named the original bytes; it is kept aside for revalidation), and
/// `Vary: Accept` when the format was negotiated.
fn set_transformed_headers(
    resp: &mut ResponseHeader,
    out: OutputFormat,
    planned: &Planned,
) -> Result<()> {
    resp.insert_header(http::header::CONTENT_TYPE, out.content_type())?;
    let text = |h| resp.headers.get(h).and_then(|v| v.to_str().ok());
    let origin_etag = text(http::header::ETAG).map(str::to_string);
    let source = origin_etag
        .clone()
        .or_else(|| text(http::header::LAST_MODIFIED).map(str::to_string));
    if let Some(source) = source {
        let variant = format!("{}/{}", planned.canonical, out.as_str());
        resp.insert_header(http::header::ETAG, cache::variant_etag(&source, &variant))?;
    } else {
        // No validator: the storage tags the finished body instead.
        resp.remove_header(&http::header::ETAG);
    }
    if let Some(tag) = origin_etag {
        resp.insert_header(cache::SOURCE_ETAG, tag)?;
    }
    if planned.vary_accept {
        add_vary_accept(resp)?;
    }
    Ok(())
}

fn add_vary_accept(resp: &mut ResponseHeader) -> Result<()> {
    let vary = match resp
        .headers
        .get(http::header::VARY)
        .and_then(|v| v.to_str().ok())
    {
        Some(v) if !v.to_ascii_lowercase().contains("accept") => format!("{v}, Accept"),
        Some(v) => v.to_string(),
        None => "Accept".to_string(),
    };
    resp.insert_header(http::header::VARY, vary)
}

fn remove_source_headers(resp: &mut ResponseHeader) {
    for h in [
        http::header::CONTENT_LENGTH,
        http::header::ACCEPT_RANGES,
        http::header::CONTENT_ENCODING,
        http::header::CONTENT_DISPOSITION,
    ] {
        resp.remove_header(&h);
    }
}

impl ImgEdge {
    /// The headers every response to a client gets (hits through Pingora and sendfile hits
    /// alike): cache status, rate-limit state, transform timing of cached transforms, CORS.
    fn client_headers(&self, resp: &mut ResponseHeader, label: &str, ctx: &mut Ctx) -> Result<()> {
        cache::strip_private_headers(resp);
        resp.insert_header("X-Cache-Status", label)?;
        for (k, v) in ctx.limit_headers.drain(..) {
            resp.insert_header(k, v)?;
        }
        // A transformed entry served from the cache: how long making it took (a miss sends its
        // header before the transform runs, so it cannot carry this).
        if ctx.planned.is_some() && ctx.cache_enabled && label != "MISS" && label != "BYPASS" {
            if let Some(ms) = self.state.transformer.recorded_duration(&ctx.lb_key) {
                resp.insert_header("Server-Timing", format!("transform;dur={ms:.1}"))?;
                resp.insert_header("X-Transform-Ms", format!("{ms:.1}"))?;
            }
        }
        if let Some(origin) = &ctx.cors {
            add_cors(resp, origin)?;
        }
        Ok(())
    }

    /// Sends a fresh memory hit with sendfile() (`cache.sendfile_hits`, see `cache::fastpath`
    /// and `sendfile`) when the answer is exactly the stored 200 with the headers a hit through
    /// Pingora gets. `Ok(false)`: not such a request or no current copy; the normal path serves
    /// it. An error mid-response closes the connection.
    async fn sendfile_hit(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let storage = self.state.cache.storage;
        if storage.fast.is_none() || ctx.planned.as_ref().is_some_and(|p| p.vary_accept) {
            return Ok(false);
        }
        match ctx.route {
            Some(i) if self.state.router.get(i).cache => {}
            _ => return Ok(false),
        }
        let req = session.req_header();
        if req.method != http::Method::GET
            || req.version != http::Version::HTTP_11
            || !plain_request(req)
        {
            return Ok(false);
        }
        let down = session.as_downstream();
        // HTTP/1 only (no stream for H2 or subrequests), and never under TLS.
        let Some(stream) = down.stream() else {
            return Ok(false);
        };
        if stream.get_ssl_digest().is_some()
            || down.digest().is_some_and(|d| d.ssl_digest.is_some())
        {
            return Ok(false);
        }
        let sock = stream.id();
        // Handing over to a new process (graceful reload): this response ends the connection.
        let draining = crate::server::draining();
        let keepalive = !draining
            && down.get_keepalive().is_some()
            && down.get_keepalive_reuses_remaining() != Some(0);
        let stall = down.get_write_timeout().unwrap_or(DIRECT_WRITE_STALL);
        let key = cache_key(session.req_header(), ctx);
        let hash = key.combined_bin();
        let Some(copy) = storage.fast_hit(&hash) else {
            ctx.cache_key = Some(key);
            return Ok(false);
        };
        ctx.cache_enabled = true;
        ctx.cache_hash = Some(hash);
        // What Pingora's hit path and HTTP/1 writer do: Age, version, Accept-Ranges (a 200
        // with a length may be asked in ranges), then ours, then Date and Connection.
        let mut resp = copy.header.clone();
        let age = SystemTime::now()
            .duration_since(copy.epoch)
            .unwrap_or_default()
            .as_secs();
        resp.insert_header(http::header::AGE, age)?;
        resp.set_version(http::Version::HTTP_11);
        resp.insert_header(http::header::ACCEPT_RANGES, "bytes")?;
        self.client_headers(&mut resp, "HIT", ctx)?;
        resp.insert_header(
            http::header::DATE,
            pingora_core::protocols::http::date::get_cached_date(),
        )?;
        if draining {
            session.set_keepalive(None);
        }
        let connection = if keepalive { "keep-alive" } else { "close" };
        resp.insert_header(http::header::CONNECTION, connection)?;
        let head = h1_head(&resp);
        let sent =
            crate::sendfile::send_response(sock, &head, copy.body.raw_fd(), copy.body.len(), stall)
                .await;
        // Fairness: this path makes no runtime I/O calls, so a keep-alive client whose next
        // request is already in would be served again and again before the task yields (a
        // normal hit yields on its writes); let the other connections of this thread run.
        tokio::task::yield_now().await;
        let (bytes, result) = match sent {
            Ok(n) => (n, Ok(true)),
            Err(f) => {
                let msg = format!("sendfile hit: {}", f.error);
                (
                    f.body_sent,
                    Err(Error::explain(ErrorType::WriteError, msg).into_down()),
                )
            }
        };
        ctx.direct = Some(Direct {
            status: 200,
            cache: "HIT",
            bytes,
        });
        result
    }

    fn pool(&self, ctx: &Ctx) -> Option<&'static Pool> {
        let route = self.state.router.get(ctx.route?);
        self.state.pools.get(route.upstream)
    }

    /// Identifies the client (once) and checks the limits of this stage. `Ok(true)`: a 401,
    /// 429 or 503 was sent and the request ends here.
    async fn apply_limits(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        stage: Stage,
    ) -> Result<bool> {
        let limiter = &self.state.limiter;
        if !limiter.is_enabled() {
            return Ok(false);
        }
        if ctx.identity.is_none() {
            let peer = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip())
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
            match limiter.identify(&session.req_header().headers, peer) {
                Ok(id) => ctx.identity = Some(id),
                Err(e) => {
                    let msg = format!("unauthorized: {e}");
                    respond_text(session, ctx.cors.as_deref(), e.status(), &msg).await?;
                    return Ok(true);
                }
            }
        }
        let Some(id) = ctx.identity.as_ref() else {
            return Ok(false);
        };
        match limiter.check(id, stage).await {
            Decision::Allow { headers, guard } => {
                if !headers.is_empty() {
                    ctx.limit_headers = headers;
                }
                if guard.is_some() {
                    ctx._inflight = guard;
                }
                Ok(false)
            }
            Decision::Deny {
                policy,
                retry_after_secs,
                headers,
            } => {
                let body = format!(
                    "too many requests: rate limit {policy:?} exceeded, retry in {retry_after_secs}s"
                );
                respond_with(session, ctx.cors.as_deref(), 429, &body, &headers).await?;
                Ok(true)
            }
            Decision::Unavailable { reason } => {
                let headers = [("Retry-After".to_string(), "1".to_string())];
                respond_with(
                    session,
                    ctx.cors.as_deref(),
                    503,
                    &format!("service unavailable: {reason}"),
                    &headers,
                )
                .await?;
                Ok(true)
            }
        }
    }
}

#[async_trait]
impl ProxyHttp for ImgEdge {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            start: Some(Instant::now()),
            ..Default::default()
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if let Some((status, reason)) = http_limits::check(&self.state.http, session.req_header()) {
            log::info!(
                "refused a request from {:?}: {reason}",
                session.client_addr()
            );
            respond_text(session, None, status, &reason).await?;
            return Ok(true);
        }
        if session.req_header().method.as_str() == "PURGE" {
            let host = request_host(session.req_header());
            crate::purge::serve_proxy_purge(session, self.state, &host).await?;
            return Ok(true);
        }
        let req = session.req_header();
        ctx.cors = cors_origin(&self.state.cors_origins, req);
        if let Some(problem) = crate::forwarding::path_problem(req.uri.path()) {
            log::info!(
                "refused {} from {:?}: {problem}",
                req.uri,
                session.client_addr()
            );
            let msg = format!("bad request: {problem}");
            respond_text(session, ctx.cors.as_deref(), 400, &msg).await?;
            return Ok(true);
        }
        let req = session.req_header();
        let host = request_host(req);
        let path = req.uri.path();
        let Some((idx, route)) = self.state.router.find(&host, path) else {
            let msg = format!("no route for host {host:?} and path {path:?}");
            respond_text(session, ctx.cors.as_deref(), 404, &msg).await?;
            return Ok(true);
        };
        ctx.route = Some(idx);
        let accept = req
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        let planned = match self.state.transformer.plan(req.uri.query(), accept) {
            Ok(p) => p.map(Box::new),
            Err(e) => {
                let msg = format!("invalid transform parameter: {e}");
                respond_text(session, ctx.cors.as_deref(), 400, &msg).await?;
                return Ok(true);
            }
        };
        if let Some(p) = &planned {
            if let Err(e) = self.state.transformer.verify_signature(path, p) {
                log::info!("refused {}: {e}", req.uri);
                respond_text(
                    session,
                    ctx.cors.as_deref(),
                    403,
                    &format!("forbidden: {e}"),
                )
                .await?;
                return Ok(true);
            }
        }
        let query = match &planned {
            Some(p) => p.forward_query.as_deref(),
            None => req.uri.query(),
        };
        if route.strip_prefix || planned.is_some() {
            let mut uri = routes::upstream_path(route, path);
            let mut params: Vec<String> = query.map(str::to_string).into_iter().collect();
            if let (Some(p), true) = (&planned, route.forward_transform) {
                // The shield gets the canonical transform, the format already negotiated.
                params.push(p.spec.to_query(p.negotiated.format()));
                ctx.forward_transform = true;
            }
            if !params.is_empty() {
                uri.push('?');
                uri.push_str(&params.join("&"));
            }
            ctx.upstream_uri = Some(uri);
        }
        if planned.is_some() {
            ctx.source_key = format!("{host}\n{path}\n{}", query.unwrap_or(""));
        }
        ctx.planned = planned;
        let stage = Stage::Request {
            transform: ctx.planned.is_some(),
        };
        if self.apply_limits(session, ctx, stage).await? {
            return Ok(true);
        }
        self.sendfile_hit(session, ctx).await
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let Some(idx) = ctx.route else { return Ok(()) };
        let cacheable_method = session.req_header().method == http::Method::GET;
        if self.state.router.get(idx).cache && cacheable_method {
            self.state.cache.enable(&mut session.cache);
            ctx.cache_enabled = true;
        }
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut Ctx) -> Result<CacheKey> {
        match ctx.cache_key.take() {
            Some(key) => Ok(key),
            None => Ok(cache_key(session.req_header(), ctx)),
        }
    }

    async fn proxy_upstream_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if self.apply_limits(session, ctx, Stage::Miss).await? {
            return Ok(false);
        }
        if ctx.planned.is_none()
            || ctx.forward_transform
            || session.req_header().method == http::Method::HEAD
        {
            return Ok(true);
        }
        let t = &self.state.transformer;
        if let Some((status, reason)) = t.recent_failure(&ctx.source_key) {
            METRICS
                .transforms_refused
                .with_label_values(&["remembered"])
                .inc();
            respond_text(session, ctx.cors.as_deref(), status, &reason).await?;
            return Ok(false);
        }
        match t.reserve() {
            Some(permit) => {
                ctx.permit = Some(permit);
                Ok(true)
            }
            None => {
                METRICS
                    .transforms_refused
                    .with_label_values(&["queue_full"])
                    .inc();
                respond_busy(session, ctx.cors.as_deref()).await?;
                Ok(false)
            }
        }
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let pool = self
            .pool(ctx)
            .ok_or_else(|| Error::new(ErrorType::InternalError))?;
        if ctx.lb_key.is_empty() {
            ctx.lb_key = session.req_header().uri.path().as_bytes().to_vec();
        }
        // A new attempt: what the previous one left is resolved or dropped (abandoned).
        ctx.ticket = None;
        ctx.deadlines = None;
        ctx.header_received = false;
        ctx.fault = None;
        let selected = match pool.select(&ctx.lb_key, &ctx.failed_peers) {
            Ok(s) => s,
            Err(e @ SelectError::AllOpen(_)) => {
                let reason = format!("service unavailable: {e}");
                log::warn!(
                    "{} {}: {reason}",
                    session.req_header().method,
                    session.req_header().uri
                );
                ctx.fault = Some((503, reason.clone()));
                return Error::e_explain(ErrorType::HTTPStatus(503), reason);
            }
            Err(e) => return Error::e_explain(ErrorType::ConnectNoRoute, e.to_string()),
        };
        let label = selected.label;
        METRICS
            .upstream_requests
            .with_label_values(&[pool.name.as_str(), label.as_str()])
            .inc();
        if selected.ticket.as_ref().is_some_and(Ticket::is_probe) {
            log::info!(
                "circuit breaker: upstream {} peer {label}: probing with {}",
                pool.name,
                session.req_header().uri
            );
        }
        ctx.ticket = selected.ticket;
        ctx.attempts += 1;
        ctx.peer = Some(label);
        ctx.upstream_start = Some(Instant::now());
        Ok(Box::new(selected.peer))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some((first_byte, total)) = self.pool(ctx).and_then(Pool::response_deadlines) {
            ctx.deadlines = Some(Deadlines::arm(fd, first_byte, total));
        }
        Ok(())
    }

    /// An origin failure after connecting: a timeout (our deadlines), a reset, a short body,
    /// garbage. Reported to the circuit breaker; retried on another peer while nothing of the
    /// response has been received (idempotent requests only).
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let expired = ctx.deadlines.take().and_then(|mut d| {
            d.disarm();
            d.expired()
        });
        let Some(pool) = self.pool(ctx) else { return e };
        let label = ctx.peer.clone().unwrap_or_default();
        let mut e = match expired {
            Some(x) => {
                let reason = x.reason(&pool.name);
                METRICS
                    .upstream_errors
                    .with_label_values(&[pool.name.as_str(), label.as_str(), x.kind()])
                    .inc();
                ctx.fault = Some((504, reason.clone()));
                let mut t = Error::explain(ErrorType::ReadTimedout, reason);
                t.as_up();
                t
            }
            None => e.more_context(format!("Peer: {peer}")),
        };
        let idempotent = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated();
        let before_header = !ctx.header_received;
        if expired.is_some() || e.esource() == &ErrorSource::Upstream {
            // A reused keep-alive connection that fails before any response is most often the
            // origin having closed it while idle: retry on a fresh one, blame no one.
            let stale_connection = client_reused && before_header && expired.is_none();
            match ctx.ticket.take() {
                Some(_) if stale_connection => {}
                Some(t) => t.failure(&e.to_string()),
                None => {}
            }
            if !stale_connection {
                if let Some(addr) = peer._address.as_inet() {
                    ctx.failed_peers.push(*addr);
                }
            }
            let retry =
                idempotent && before_header && (stale_connection || ctx.attempts <= pool.retries());
            if retry {
                log::info!(
                    "{} {}: upstream {} peer {label} failed ({e}); retrying on another peer",
                    session.req_header().method,
                    session.req_header().uri,
                    pool.name
                );
            }
            e.set_retry(retry);
        } else {
            // The client side failed: nothing is known about the peer.
            ctx.ticket = None;
            e.set_retry(false);
        }
        e
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let Some(pool) = self.pool(ctx) else { return e };
        let label = ctx.peer.clone().unwrap_or_default();
        METRICS
            .upstream_errors
            .with_label_values(&[pool.name.as_str(), label.as_str(), "connect"])
            .inc();
        if let Some(t) = ctx.ticket.take() {
            t.failure(&format!("connect: {e}"));
        }
        if let Some(addr) = peer._address.as_inet() {
            ctx.failed_peers.push(*addr);
        }
        if ctx.attempts <= pool.retries() {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(uri) = &ctx.upstream_uri {
            let uri = uri
                .parse()
                .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "bad upstream path"))?;
            upstream_request.set_uri(uri);
        } else if !upstream_request.raw_path().starts_with(b"/") {
            // An absolute-form target (`GET http://host/x`) goes to the origin in origin-form:
            // an origin that is itself a proxy must not be handed a destination by the client.
            let origin_form = upstream_request
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .parse()
                .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "bad upstream path"))?;
            upstream_request.set_uri(origin_form);
        }
        if let Some(stale) = session.cache.maybe_cache_meta() {
            cache::revalidation_validators(stale.headers(), upstream_request);
        }
        if let Some(host) = self.pool(ctx).and_then(Pool::host_override) {
            upstream_request.insert_header(http::header::HOST, host)?;
        }
        if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
            let peer = client.ip();
            let received = session.req_header();
            let host = received
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| received.uri.authority().map(|a| a.as_str()));
            let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
            let hop = crate::forwarding::Hop { peer, tls, host };
            let trusted = crate::forwarding::is_trusted(&self.state.trusted_proxies, peer);
            crate::forwarding::apply(upstream_request, &hop, trusted)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Before anything is cached: the stored header must not carry the origin's hop fields.
        crate::forwarding::strip_response(upstream_response);
        let status = upstream_response.status.as_u16();
        ctx.header_received = true;
        let bodyless = matches!(status, 204 | 304)
            || session.req_header().method == http::Method::HEAD
            || upstream_response
                .headers
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() == b"0");
        if bodyless {
            // No body will follow: the exchange is complete.
            ctx.deadlines = None;
            if let Some(t) = ctx.ticket.take() {
                t.success();
            }
        } else if let Some(d) = &ctx.deadlines {
            d.header_received();
        }
        if status == 304 && ctx.planned.is_some() && !ctx.forward_transform {
            // Revalidated: the origin's tag names the source; the stored entry keeps its own.
            upstream_response.remove_header(&http::header::ETAG);
        }
        let negotiated = ctx.planned.as_ref().is_some_and(|p| p.vary_accept);
        if ctx.forward_transform && negotiated && (200..300).contains(&status) {
            add_vary_accept(upstream_response)?;
        }
        if let (Some(planned), Some(_)) = (&ctx.planned, &ctx.permit) {
            let h = &upstream_response.headers;
            let text = |name: http::header::HeaderName| h.get(name).and_then(|v| v.to_str().ok());
            let verdict = self.state.transformer.inspect(
                planned,
                upstream_response.status.as_u16(),
                text(http::header::CONTENT_TYPE),
                text(http::header::CONTENT_ENCODING),
                text(http::header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
            );
            match verdict {
                Verdict::PassThrough => {}
                Verdict::Transform { out, declared } => {
                    // Room for the whole declared body up front (inspect checked the limit).
                    let declared_len = text(http::header::CONTENT_LENGTH)
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    remove_source_headers(upstream_response);
                    set_transformed_headers(upstream_response, out, planned)?;
                    ctx.transforming = Some(Transforming {
                        out,
                        declared,
                        source: Vec::with_capacity(declared_len),
                    });
                }
                Verdict::Refuse(reason) => {
                    log::warn!(
                        "transform refused for {}: {reason}",
                        session.req_header().uri
                    );
                    METRICS
                        .transforms_refused
                        .with_label_values(&["too_big"])
                        .inc();
                    self.state
                        .transformer
                        .remember_failure(&ctx.source_key, 422, &reason);
                    let body = Bytes::from(format!("{reason}\n"));
                    *upstream_response = ResponseHeader::build(422, Some(4))?;
                    upstream_response
                        .insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
                    upstream_response
                        .insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
                    upstream_response.insert_header(http::header::CACHE_CONTROL, "no-store")?;
                    ctx.refusal = Some(body);
                }
            }
        }
        if let (Some(pool), Some(start)) = (self.pool(ctx), ctx.upstream_start) {
            let label = ctx.peer.as_deref().unwrap_or_default();
            METRICS
                .upstream_duration
                .with_label_values(&[pool.name.as_str(), label])
                .observe(start.elapsed().as_secs_f64());
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if end_of_stream {
            // A close-delimited body cut by our total deadline looks complete: check first.
            let expired = ctx.deadlines.take().and_then(|mut d| {
                d.disarm();
                d.expired()
            });
            if let Some(x) = expired {
                let pool = self.pool(ctx).map_or("-", |p| p.name.as_str());
                let reason = x.reason(pool);
                if let Some(t) = ctx.ticket.take() {
                    t.failure(&reason);
                }
                log::warn!("{}: {reason}", session.req_header().uri);
                ctx.fault = Some((504, reason.clone()));
                ctx.transforming = None;
                *body = None;
                let mut e = Error::explain(ErrorType::ReadTimedout, reason);
                e.as_up();
                return Err(e);
            }
            if let Some(t) = ctx.ticket.take() {
                t.success();
            }
        }
        if ctx.refusal.is_some() {
            *body = None;
            if end_of_stream {
                *body = ctx.refusal.take();
            }
            return Ok(None);
        }
        let Some(t) = ctx.transforming.as_mut() else {
            return Ok(None);
        };
        if let Some(chunk) = body.take() {
            t.source.extend_from_slice(&chunk);
        }
        let max = self.state.transformer.max_source_bytes();
        let over = t.source.len() as u64 > max;
        if !end_of_stream && !over {
            return Ok(None);
        }
        let Some(t) = ctx.transforming.take() else {
            return Ok(None);
        };
        let planned = ctx.planned.as_ref().map(|p| &p.spec);
        let (Some(spec), Some(permit)) = (planned, ctx.permit.take()) else {
            return Error::e_explain(ErrorType::InternalError, "transform state lost");
        };
        let source_len = t.source.len();
        let started = Instant::now();
        // Over the limit: the pipeline refuses it at once (TooLarge) without decoding.
        let result = self
            .state
            .transformer
            .run(permit, t.source, spec, t.out, t.declared);
        let format = t.out.as_str();
        match result {
            Ok(out) => {
                let m = &*METRICS;
                let took = started.elapsed();
                m.transform_duration
                    .with_label_values(&[format])
                    .observe(took.as_secs_f64());
                let ms = took.as_secs_f64() * 1000.0;
                ctx.transform_ms = Some(ms);
                // The header of this miss is already gone: hits of the entry report it.
                if ctx.cache_enabled {
                    self.state.transformer.record_duration(&ctx.lb_key, ms);
                }
                m.transform_source_bytes.inc_by(source_len as u64);
                m.transform_output_bytes
                    .with_label_values(&[format])
                    .inc_by(out.bytes.len() as u64);
                *body = Some(Bytes::from(out.bytes));
                Ok(None)
            }
            Err(failure) => {
                // The status line may be gone: abort so nothing is cached and the client sees
                // a failed response; repeats are answered up front (proxy_upstream_filter).
                let reason = failure.to_string();
                log::warn!(
                    "transform failed for {} ({source_len} source bytes): {reason}",
                    session.req_header().uri
                );
                METRICS
                    .transforms_refused
                    .with_label_values(&[failure.reason()])
                    .inc();
                self.state
                    .transformer
                    .remember_failure(&ctx.source_key, failure.status(), &reason);
                ctx.failure = Some(reason.clone());
                Error::e_explain(ErrorType::HTTPStatus(failure.status()), reason)
            }
        }
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<RespCacheable> {
        if ctx.refusal.is_some() {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::OriginNotCache));
        }
        let authorization = session
            .req_header()
            .headers
            .contains_key(http::header::AUTHORIZATION);
        Ok(self.state.cache.cacheability(resp, authorization))
    }

    fn should_serve_stale(
        &self,
        _session: &mut Session,
        _ctx: &mut Ctx,
        error: Option<&Error>,
    ) -> bool {
        match error {
            // stale-while-revalidate: serve the stale entry while one request refreshes it.
            None => self.state.cache.serve_stale_while_revalidate(),
            // stale-if-error: the origin is unreachable or failing.
            Some(e) => {
                e.esource() == &ErrorSource::Upstream
                    || matches!(e.etype(), ErrorType::HTTPStatus(s) if *s >= 500)
                    || matches!(
                        e.etype(),
                        ErrorType::ConnectNoRoute
                            | ErrorType::ConnectRefused
                            | ErrorType::ConnectTimedout
                    )
            }
        }
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let label = if !ctx.cache_enabled {
            "BYPASS"
        } else {
            match session.cache.phase() {
                pingora_cache::CachePhase::Disabled(NoCacheReason::Custom(_)) => "BYPASS",
                // Enabled, but the response may not be stored (no-store, private, too big).
                pingora_cache::CachePhase::Disabled(_) => "MISS",
                phase => cache::status_label(phase),
            }
        };
        if crate::server::draining() {
            // Handing over to a new process: end keep-alive after this complete response.
            session.set_keepalive(None);
        }
        ctx.record_fast = label == "HIT"
            && self.state.cache.storage.fast.is_some()
            && upstream_response.status == http::StatusCode::OK
            && !upstream_response.headers.contains_key(http::header::VARY);
        self.client_headers(upstream_response, label, ctx)
    }

    /// Maps a failure to a status with a one-line reason: 502 when the origin failed (connect,
    /// TLS, reset, garbage), 504 when it timed out, 4xx for a bad client request.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        ctx.deadlines = None;
        let fault = ctx.fault.take();
        let code = match &fault {
            Some((status, _)) if ctx.failure.is_none() => *status,
            _ => error_status(e, ctx.peer.is_some()),
        };
        if code > 0 {
            let pool = self.pool(ctx).map_or("-", |p| p.name.as_str());
            let reason = match code {
                // A failed transform carries its one-line reason.
                _ if ctx.failure.is_some() => ctx.failure.take().unwrap_or_default(),
                // An origin timeout or open circuits: said precisely.
                _ if fault.is_some() => fault.map(|(_, r)| r).unwrap_or_default(),
                502 => format!(
                    "bad gateway: upstream {pool} failed ({})",
                    e.etype().as_str()
                ),
                503 => format!("service unavailable: {}", e.etype().as_str()),
                504 => format!("gateway timeout: upstream {pool} did not answer in time"),
                c if c < 500 => format!("bad request ({})", e.etype().as_str()),
                _ => format!("internal error ({})", e.etype().as_str()),
            };
            let body = Bytes::from(format!("{reason}\n"));
            let mut resp = pingora_core::protocols::http::ServerSession::generate_error(code);
            let prepared = resp
                .set_content_length(body.len())
                .and_then(|_| match &ctx.cors {
                    Some(origin) => add_cors(&mut resp, origin),
                    None => Ok(()),
                });
            let sent = match prepared {
                Ok(()) => session.write_error_response(resp, body).await,
                Err(e) => Err(e),
            };
            if let Err(we) = sent {
                log::debug!("cannot send error response: {we}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let (status, cache_status, bytes) = match &ctx.direct {
            Some(d) => (d.status, d.cache.to_string(), d.bytes),
            None => (
                session
                    .response_written()
                    .map(|r| r.status.as_u16())
                    .unwrap_or(0),
                session
                    .response_written()
                    .and_then(|r| r.headers.get("x-cache-status"))
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string(),
                session.body_bytes_sent(),
            ),
        };
        if ctx.record_fast && e.is_none() {
            if let Some(hash) = &ctx.cache_hash {
                self.state.cache.storage.fast_record(hash);
            }
        }
        let elapsed = ctx.start.map_or(Duration::ZERO, |s| s.elapsed());
        let route = ctx.route_label(self.state);
        let m = &*METRICS;
        m.requests
            .with_label_values(&[route, status_class(status), cache_status.as_str()])
            .inc();
        m.request_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
        m.response_bytes
            .with_label_values(&[route])
            .inc_by(bytes as u64);
        if let (Some(e), Some(pool)) = (e, self.pool(ctx)) {
            if e.esource() == &ErrorSource::Upstream && ctx.peer.is_some() {
                let peer = ctx.peer.as_deref().unwrap_or_default();
                m.upstream_errors
                    .with_label_values(&[pool.name.as_str(), peer, "proxy"])
                    .inc();
            }
        }
        if let Some(usage) = &self.state.usage {
            let req = session.req_header();
            let ip = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            let client = ip.map_or_else(|| "-".into(), |ip| ip.to_string());
            // Without rate-limit policies the client was not identified yet: API keys and
            // tokens still name the org to bill (an unknown credential counts as anonymous).
            let identity = match ctx.identity.take() {
                Some(id) => Some(id),
                None => ip.and_then(|ip| self.state.limiter.identify(&req.headers, ip).ok()),
            };
            let (org, key, client) = match identity {
                // client_ip honours X-Forwarded-For from trusted proxies.
                Some(id) => (id.org.clone(), id.tier_key(), id.client_ip.to_string()),
                None => (None, client.clone(), client),
            };
            usage.emit(crate::usage::Event {
                time_ms: crate::usage::now_ms(),
                org,
                key,
                client,
                route: route.to_string(),
                method: req.method.as_str().to_string(),
                path: req.uri.path().to_string(),
                transform: ctx.planned.as_ref().map(|p| p.canonical.clone()),
                status,
                cache: cache_status.clone(),
                bytes: bytes as u64,
                transform_ms: ctx.transform_ms,
            });
        }
        if self.state.access_log {
            let req = session.req_header();
            let client = session
                .client_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into());
            let error = e.map(|e| format!(" error=\"{e}\"")).unwrap_or_default();
            let transform = ctx
                .planned
                .as_ref()
                .map(|p| format!(" transform={}", p.canonical))
                .unwrap_or_default();
            log::info!(
                target: "access",
                "{client} \"{} {}\" {status} cache={cache_status} upstream={}{transform} duration_ms={:.1} bytes={bytes}{error}",
                req.method,
                req.uri,
                ctx.peer.as_deref().unwrap_or("-"),
                elapsed.as_secs_f64() * 1000.0,
            );
        }
    }
}
