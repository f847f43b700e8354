//! The request's story, phase by phase. Each phase is a few lines that call the module owning
//! its concern.
//!
//! ```text
//! request_filter ........ oversized target/headers 414/431, PURGE, bad path 400, no route
//!                         404, bad transform 400, bad signature 403          (admit::screen)
//!                         client identity 401, rate limits 429           (admit::rate_limit)
//!                         fresh memory hit of a large 200 on plain HTTP/1.1: sent with
//!                         sendfile() and the request ends                      (sendfile_hit)
//! request_cache_filter .. cache on for GET on routes with `cache: true`
//! cache_key_callback .... host + path + query + canonical transform     (admit::cache_key)
//!    HIT/STALE ──────────────────────────────────────────────────────────────────┐
//!    MISS (one request per key: cache lock)                                      │
//! proxy_upstream_filter . limits on misses 429                         (admit)   │
//!                         a source that just failed: its error; a pool slot      │
//!                         for the transform, 503 when full (transform::response) │
//! upstream_peer ......... healthy peer, not failed, circuit not open;  (origin)  │
//!                         a listed remote SOURCE's own host            (origin)  │
//! fail_to_connect ....... report to the breaker; retry on another peer (origin)  │
//! connected_to_upstream . arm the first-byte / total deadlines         (origin)  │
//! error_while_proxy ..... timeout, reset, garbage: report; retry while           │
//!                         no response header came                      (origin)  │
//! upstream_request_filter path, validators, Host, forwarding headers   (origin)  │
//! upstream_response_filter hop-by-hop fields; the variant's headers or           │
//!                         a 422                     (response, transform::response)
//! upstream_response_body_filter deadlines at the end; buffer the source,         │
//!                         transform it on the pool: its output is what is cached │
//! response_cache_filter . Cache-Control / Expires / default TTL  (cache::Cache)  │
//! response_filter ....... X-Cache-Status, RateLimit headers, CORS,          <────┘
//!                         Server-Timing on transformed hits        (response, reply)
//! fail_to_proxy ......... 502/504/4xx/the transform's status, one-line reason (reply)
//! logging ............... metrics, one access-log line, a usage event       (logging)
//! ```

mod admit;
mod caching;
mod ctx;
pub mod forwarding;
pub mod http_limits;
mod logging;
mod origin;
mod purge;
mod reply;
mod response;
pub mod routes;
pub mod sendfile;
mod sendfile_hit;
mod state;
pub mod transform;

pub use ctx::Ctx;
pub use reply::{respond_text, respond_with};
pub use state::State;

use crate::limits::Stage;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::prelude::*;
use pingora::upstreams::peer::HttpPeer;
use pingora_cache::key::HashBinary;
use pingora_cache::{CacheKey, CacheMeta, ForcedFreshness, HitHandler, RespCacheable};
use pingora_error::ErrorSource;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::FailToProxy;
use std::time::{Duration, Instant};

pub struct ImgEdge {
    pub state: &'static State,
}

#[async_trait]
impl ProxyHttp for ImgEdge {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        let mut ctx = Ctx::default();
        ctx.timing.start = Some(Instant::now());
        ctx
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if admit::screen(self.state, session, ctx).await? {
            return Ok(true);
        }
        let stage = admit::request_stage(ctx);
        if admit::rate_limit(self.state, session, ctx, stage).await? {
            return Ok(true);
        }
        sendfile_hit::serve(self.state, session, ctx).await
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let Some(idx) = ctx.request.route else {
            return Ok(());
        };
        let cacheable_method = session.req_header().method == http::Method::GET;
        if self.state.router.get(idx).cache && cacheable_method {
            self.state.cache.enable(&mut session.cache);
            ctx.cache.enabled = true;
        }
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut Ctx) -> Result<CacheKey> {
        match ctx.cache.key.take() {
            Some(key) => Ok(key),
            None => Ok(admit::cache_key(session.req_header(), ctx)),
        }
    }

    async fn proxy_upstream_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if admit::rate_limit(self.state, session, ctx, Stage::Miss).await? {
            return Ok(false);
        }
        transform::response::reserve(self.state, session, ctx).await
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        if let Some(remote) = ctx.transform.remote.clone() {
            return origin::remote_peer(&remote, ctx).await;
        }
        origin::choose_peer(self.state, session, ctx)
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
        origin::arm_deadlines(self.state, fd, ctx);
        Ok(())
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        origin::failed_while_proxying(self.state, peer, session, e, ctx, client_reused)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        e: Box<Error>,
    ) -> Box<Error> {
        origin::failed_to_connect(self.state, peer, ctx, e)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        origin::prepare_request(self.state, session, upstream_request, ctx)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        response::on_header(self.state, session, upstream_response, ctx)
    }

    fn upstream_response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if end_of_stream {
            if let Err(e) = response::on_body_end(self.state, session, ctx) {
                *body = None;
                return Err(e);
            }
        }
        transform::response::on_body(self.state, session, body, end_of_stream, ctx)?;
        Ok(None)
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<RespCacheable> {
        Ok(caching::cacheability(self.state, session, resp, ctx))
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        ctx: &mut Ctx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        caching::variance(meta, ctx, req)
    }

    async fn cache_hit_filter(
        &self,
        _session: &mut Session,
        meta: &CacheMeta,
        _hit_handler: &mut HitHandler,
        _is_fresh: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<ForcedFreshness>> {
        Ok(caching::hit_freshness(self.state, meta, ctx))
    }

    fn should_serve_stale(
        &self,
        _session: &mut Session,
        ctx: &mut Ctx,
        error: Option<&Error>,
    ) -> bool {
        // A variant is never made from a stale original: the source cache's fetch waits for the
        // revalidation, or fails, and then the variant's own stale entry may be served.
        if ctx.request.internal {
            return false;
        }
        match error {
            // stale-while-revalidate: the entry's own window decides (`cache::freshness`: the
            // origin's directive, or the configured one where nothing forbids it).
            None => true,
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
        response::to_client(self.state, session, upstream_response, ctx)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        FailToProxy {
            error_code: reply::error_answer(self.state, session, e, ctx).await,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        logging::finish(self.state, session, e, ctx);
    }
}
