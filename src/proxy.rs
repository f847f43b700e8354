//! The request's story, phase by phase. Each phase calls the module that owns its concern.
//!
//! ```text
//! request_filter ........ route the request (404 when none matches)
//! request_cache_filter .. cache on for GET on routes with `cache: true`
//! cache_key_callback .... host + path + normalized query            (cache::key)
//!    HIT/STALE ───────────────────────────────────────────────┐
//!    MISS (one request per key: cache lock)                   │
//! upstream_peer ......... pick a healthy peer, skip failed ones (upstream::Pool::select)
//! fail_to_connect ....... retry on another peer (upstream retries)
//! upstream_request_filter rewrite path (strip_prefix), Host override, X-Forwarded-For
//! upstream_response_filter note the upstream status and latency
//! response_cache_filter . Cache-Control / Expires / default TTL     (cache::Cache)
//! response_filter ....... X-Cache-Status  <───────────────────────┘
//! logging ............... metrics + one access-log line
//! ```

use crate::cache::{self, Cache};
use crate::metrics::{status_class, METRICS};
use crate::routes::{self, Router};
use crate::upstream::Pool;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::prelude::*;
use pingora::upstreams::peer::HttpPeer;
use pingora_cache::{CacheKey, NoCacheReason, RespCacheable};
use pingora_error::ErrorSource;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::FailToProxy;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Everything the proxy needs, built once from the validated config.
pub struct State {
    pub router: Router,
    pub pools: Vec<Pool>,
    pub cache: Cache,
    pub access_log: bool,
}

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
}

impl Ctx {
    fn route_label<'a>(&self, state: &'a State) -> &'a str {
        match self.route {
            Some(i) => state.router.get(i).prefix.as_str(),
            None => "none",
        }
    }
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

/// Writes a short plain-text answer (a one-line reason) and ends the request.
pub async fn respond_text(session: &mut Session, status: u16, body: &str) -> Result<()> {
    let body = Bytes::from(format!("{body}\n"));
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header("X-Cache-Status", "BYPASS")?;
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

impl ImgEdge {
    fn pool(&self, ctx: &Ctx) -> Option<&'static Pool> {
        let route = self.state.router.get(ctx.route?);
        self.state.pools.get(route.upstream)
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
        let req = session.req_header();
        let host = request_host(req);
        let path = req.uri.path();
        let Some((idx, route)) = self.state.router.find(&host, path) else {
            let msg = format!("no route for host {host:?} and path {path:?}");
            respond_text(session, 404, &msg).await?;
            return Ok(true);
        };
        ctx.route = Some(idx);
        if route.strip_prefix {
            let mut uri = routes::upstream_path(route, path);
            if let Some(q) = req.uri.query() {
                uri.push('?');
                uri.push_str(q);
            }
            ctx.upstream_uri = Some(uri);
        }
        Ok(false)
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
        let req = session.req_header();
        let key = cache::key(&request_host(req), req.uri.path(), req.uri.query(), "");
        ctx.lb_key = key.primary_key().to_vec();
        Ok(key)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let pool = self
            .pool(ctx)
            .ok_or_else(|| Error::new(ErrorType::InternalError))?;
        if ctx.lb_key.is_empty() {
            ctx.lb_key = session.req_header().uri.path().as_bytes().to_vec();
        }
        let (peer, label) = pool
            .select(&ctx.lb_key, &ctx.failed_peers)
            .map_err(|e| Error::explain(ErrorType::ConnectNoRoute, e.to_string()))?;
        METRICS
            .upstream_requests
            .with_label_values(&[pool.name.as_str(), label.as_str()])
            .inc();
        ctx.attempts += 1;
        ctx.peer = Some(label);
        ctx.upstream_start = Some(Instant::now());
        Ok(Box::new(peer))
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
        }
        if let Some(host) = self.pool(ctx).and_then(Pool::host_override) {
            upstream_request.insert_header(http::header::HOST, host)?;
        }
        if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
            let ip = client.ip().to_string();
            let xff = match upstream_request.headers.get("x-forwarded-for") {
                Some(prev) => format!("{}, {ip}", prev.to_str().unwrap_or_default()),
                None => ip,
            };
            upstream_request.insert_header("X-Forwarded-For", xff)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(pool), Some(start)) = (self.pool(ctx), ctx.upstream_start) {
            let label = ctx.peer.as_deref().unwrap_or_default();
            METRICS
                .upstream_duration
                .with_label_values(&[pool.name.as_str(), label])
                .observe(start.elapsed().as_secs_f64());
        }
        Ok(())
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        _ctx: &mut Ctx,
    ) -> Result<RespCacheable> {
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
        upstream_response.insert_header("X-Cache-Status", label)?;
        Ok(())
    }

    /// Maps a failure to a status with a one-line reason: 502 when the origin failed (connect,
    /// TLS, reset, garbage), 504 when it timed out, 4xx for a bad client request.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = error_status(e, ctx.peer.is_some());
        if code > 0 {
            let pool = self.pool(ctx).map_or("-", |p| p.name.as_str());
            let reason = match code {
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
            if let Err(we) = session.respond_error_with_body(code, body).await {
                log::debug!("cannot send error response: {we}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let cache_status = session
            .response_written()
            .and_then(|r| r.headers.get("x-cache-status"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        let elapsed = ctx.start.map_or(Duration::ZERO, |s| s.elapsed());
        let bytes = session.body_bytes_sent();
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
        if self.state.access_log {
            let req = session.req_header();
            let client = session
                .client_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into());
            let error = e.map(|e| format!(" error=\"{e}\"")).unwrap_or_default();
            log::info!(
                target: "access",
                "{client} \"{} {}\" {status} cache={cache_status} upstream={} duration_ms={:.1} bytes={bytes}{error}",
                req.method,
                req.uri,
                ctx.peer.as_deref().unwrap_or("-"),
                elapsed.as_secs_f64() * 1000.0,
            );
        }
    }
}
