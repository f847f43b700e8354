//! The origin's response on its way to the cache and the client: hop-by-hop fields, the end
//! of the attempt (deadlines, circuit breaker), and the label every client response carries.

use super::ctx::Ctx;
use super::state::State;
use crate::metrics::METRICS;
use crate::upstream::breaker::Evidence;
use pingora::prelude::*;
use pingora_cache::{CachePhase, NoCacheReason};
use pingora_http::ResponseHeader;

/// The origin's response header: before anything is cached or transformed.
pub fn on_header(
    state: &State,
    session: &Session,
    resp: &mut ResponseHeader,
    ctx: &mut Ctx,
) -> Result<()> {
    // Before anything is cached: the stored header must not carry the origin's hop fields.
    super::forwarding::strip_response(resp);
    if ctx.transform.via_source {
        source_answered(resp);
    }
    let status = resp.status.as_u16();
    ctx.origin.header_received = true;
    let bodyless = matches!(status, 204 | 304)
        || session.req_header().method == http::Method::HEAD
        || resp
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0");
    if bodyless {
        // No body will follow: the exchange is complete.
        ctx.origin.deadlines = None;
        ctx.origin.succeeded();
    } else if let Some(d) = &ctx.origin.deadlines {
        d.header_received();
    }
    super::transform::response::on_header(state, session, resp, ctx)?;
    if status == 304 && session.cache.maybe_cache_meta().is_some() {
        // A revalidation: its fields update the stored header (`caching::cacheability`).
        ctx.cache.not_modified = Some(Box::new(resp.clone()));
    }
    let pool = super::origin::origin_pool(state, ctx);
    if let (Some(pool), Some(start)) = (pool, ctx.timing.upstream_start) {
        let label = ctx.origin.peer.as_deref().unwrap_or_default();
        METRICS
            .upstream_duration
            .with_label_values(&[pool.name.as_str(), label])
            .observe(start.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The source cache's answer: counted by how its cache answered; its client-facing fields are
/// not the variant's.
fn source_answered(resp: &mut ResponseHeader) {
    let label = resp
        .headers
        .get("x-cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_ascii_lowercase();
    METRICS.source_fetches.with_label_values(&[&label]).inc();
    for name in ["x-cache-status", "server-timing", "x-transform-ms"] {
        resp.remove_header(name);
    }
}

/// End of the origin's body: a close-delimited body cut by our total deadline looks complete,
/// so check the deadlines first (504, nothing cached); else the exchange succeeded.
pub fn on_body_end(state: &State, session: &Session, ctx: &mut Ctx) -> Result<()> {
    let Some(x) = ctx.origin.end_deadlines() else {
        ctx.origin.succeeded();
        return Ok(());
    };
    let pool = state
        .pool(ctx.request.route)
        .map_or("-", |p| p.name.as_str());
    let reason = x.reason(pool);
    let url = ctx.origin.url_key;
    ctx.origin.failed(&reason, Evidence::Response(url));
    log::warn!("{}: {reason}", session.req_header().uri);
    ctx.origin.fault = Some((504, reason.clone()));
    ctx.transform.buffering = None;
    ctx.transform.sanitizing = None;
    let mut e = Error::explain(ErrorType::ReadTimedout, reason);
    e.as_up();
    Err(e)
}

/// `X-Cache-Status` of the response to the client.
pub fn cache_label(session: &Session, ctx: &Ctx) -> &'static str {
    if !ctx.cache.enabled {
        return "BYPASS";
    }
    match session.cache.phase() {
        CachePhase::Disabled(NoCacheReason::Custom(_)) => "BYPASS",
        // Enabled, but the response may not be stored (no-store, private, too big).
        CachePhase::Disabled(_) => "MISS",
        phase => crate::cache::status_label(phase),
    }
}

/// The response header to the client (hits and misses through Pingora).
pub fn to_client(
    state: &State,
    session: &mut Session,
    resp: &mut ResponseHeader,
    ctx: &mut Ctx,
) -> Result<()> {
    let label = cache_label(session, ctx);
    if state.draining() {
        // Handing over to a new process: end keep-alive after this complete response.
        session.set_keepalive(None);
    }
    super::caching::invalidate_after(state, session.req_header(), resp, ctx);
    ctx.cache.record_fast = label == "HIT"
        && state.cache.storage.fast.is_some()
        && resp.status == http::StatusCode::OK
        && !resp.headers.contains_key(http::header::VARY);
    super::reply::client_headers(state, resp, label, ctx)
}
