//! The origin side of a miss: choosing a peer (balancer, circuit breakers, retries), arming the
//! response deadlines, classifying failures, and the request sent upstream.

use super::ctx::Ctx;
use super::state::State;
use crate::config::RemoteSource;
use crate::metrics::METRICS;
use crate::upstream::breaker::{Evidence, Ticket};
use crate::upstream::deadline::Deadlines;
use crate::upstream::Pool;
use pingora::prelude::*;
use pingora::upstreams::peer::HttpPeer;
use pingora_error::ErrorSource;
use pingora_http::RequestHeader;
use std::hash::{Hash, Hasher};
use std::time::Instant;

/// Retries per request on a reused keep-alive connection that failed before any response
/// (most often the origin closed it while idle, just as the request went out). Bounded: an
/// origin that drops every connection asking for one URL would otherwise get that request
/// again on each idle connection of the pool.
const STALE_RETRIES: usize = 2;

/// Identifies what the origin is asked for (Host and target), so the circuit breaker can tell
/// one URL failing again from the peer failing. The same in every request of the process.
fn url_key(state: &State, session: &Session, ctx: &Ctx) -> u64 {
    let req = session.req_header();
    let host = state
        .pool(ctx.request.route)
        .and_then(Pool::host_override)
        .map(str::as_bytes)
        .or_else(|| req.headers.get(http::header::HOST).map(|h| h.as_bytes()));
    let target = match &ctx.request.upstream_uri {
        Some(u) => u.as_str(),
        None => req.uri.path_and_query().map_or("/", |p| p.as_str()),
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (host, target).hash(&mut h);
    h.finish()
}

/// Picks a healthy peer, skipping the ones that failed this request and open circuits (unless
/// every circuit is open: then peers are tried anyway).
pub fn choose_peer(state: &State, session: &Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
    if ctx.transform.via_source {
        return source_peer(state, ctx);
    }
    let pool = state
        .pool(ctx.request.route)
        .ok_or_else(|| Error::new(ErrorType::InternalError))?;
    if ctx.cache.lb_key.is_empty() {
        ctx.cache.lb_key = session.req_header().uri.path().as_bytes().to_vec();
    }
    if ctx.origin.attempts == 0 {
        ctx.origin.url_key = url_key(state, session, ctx);
    }
    ctx.origin.begin_attempt();
    let req = session.req_header();
    let selected = pool
        .select(&ctx.cache.lb_key, &ctx.origin.failed_peers)
        .or_else(|e| Error::e_explain(ErrorType::ConnectNoRoute, e.to_string()))?;
    let label = selected.label;
    METRICS
        .upstream_requests
        .with_label_values(&[pool.name.as_str(), label.as_str()])
        .inc();
    if selected.ticket.as_ref().is_some_and(Ticket::is_probe) {
        let (name, uri) = (&pool.name, &req.uri);
        log::info!("circuit breaker: upstream {name} peer {label}: probing with {uri}");
    }
    ctx.origin.ticket = selected.ticket;
    ctx.origin.attempts += 1;
    ctx.origin.peer = Some(label);
    ctx.timing.upstream_start = Some(Instant::now());
    Ok(Box::new(selected.peer))
}

/// This process's own proxy, which answers for the original from its cache or the origin (its
/// own peer choice, deadlines, retries and breakers apply there, not here).
fn source_peer(state: &State, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
    let peer = state
        .source_socket
        .as_deref()
        .and_then(crate::upstream::self_peer)
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no source-cache socket"))?;
    ctx.origin.attempts += 1;
    ctx.origin.peer = Some(SOURCE_PEER.to_string());
    ctx.timing.upstream_start = Some(Instant::now());
    Ok(Box::new(peer))
}

/// The route's origin pool when this request goes to it (not when the source cache fetches
/// the original: that fetch is the one the pool's breakers, retries and metrics see).
pub fn origin_pool<'a>(state: &'a State, ctx: &Ctx) -> Option<&'a Pool> {
    state
        .pool(ctx.request.route)
        .filter(|_| !ctx.transform.via_source && ctx.transform.remote.is_none())
}

/// The peer of a listed remote SOURCE: its host resolved here, TLS with SNI (and certificate
/// checks) for `https`. Only the listed host is ever asked; a redirect it answers goes back to
/// the client untouched (Pingora follows none), so no other address is reached through it.
pub async fn remote_peer(remote: &RemoteSource, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
    let lookup = tokio::net::lookup_host((remote.host.as_str(), remote.port)).await;
    let addr = lookup.ok().and_then(|mut a| a.next()).ok_or_else(|| {
        let why = format!("remote SOURCE host {} does not resolve", remote.host);
        Error::explain(ErrorType::ConnectNoRoute, why)
    })?;
    let mut peer = HttpPeer::new(addr, remote.tls, remote.host.clone());
    peer.options.connection_timeout = Some(REMOTE_CONNECT_TIMEOUT);
    ctx.origin.begin_attempt();
    ctx.origin.attempts += 1;
    ctx.origin.peer = Some(remote.origin());
    ctx.timing.upstream_start = Some(Instant::now());
    Ok(Box::new(peer))
}

/// Connect budget of a remote SOURCE host (it has no pool settings of its own).
const REMOTE_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The peer label of the source cache in logs.
pub const SOURCE_PEER: &str = "source-cache";

/// Connected: arm the first-byte / total deadlines of the pool.
pub fn arm_deadlines(state: &State, fd: std::os::unix::io::RawFd, ctx: &mut Ctx) {
    if ctx.transform.via_source {
        return;
    }
    let deadlines = state
        .pool(ctx.request.route)
        .and_then(Pool::response_deadlines);
    if let Some((first_byte, total)) = deadlines {
        ctx.origin.deadlines = Some(Deadlines::arm(fd, first_byte, total));
    }
}

/// An origin failure after connecting: a timeout (our deadlines), a reset, a short body,
/// garbage. Reported to the circuit breaker; retried on another peer while nothing of the
/// response has been received (idempotent requests only).
pub fn failed_while_proxying(
    state: &State,
    peer: &HttpPeer,
    session: &Session,
    e: Box<Error>,
    ctx: &mut Ctx,
    client_reused: bool,
) -> Box<Error> {
    let expired = ctx.origin.end_deadlines();
    let Some(pool) = origin_pool(state, ctx) else {
        // The source cache retried (or answered) already.
        return e;
    };
    let label = ctx.origin.peer.clone().unwrap_or_default();
    let mut e = match expired {
        Some(x) => {
            let reason = x.reason(&pool.name);
            METRICS
                .upstream_errors
                .with_label_values(&[pool.name.as_str(), label.as_str(), x.kind()])
                .inc();
            ctx.origin.fault = Some((504, reason.clone()));
            let mut t = Error::explain(ErrorType::ReadTimedout, reason);
            t.as_up();
            t
        }
        None => e.more_context(format!("Peer: {peer}")),
    };
    if expired.is_none() && e.esource() != &ErrorSource::Upstream {
        // The client side failed: nothing is known about the peer.
        ctx.origin.ticket = None;
        e.set_retry(false);
        return e;
    }
    let req = session.req_header();
    let idempotent = req.method.is_idempotent() && !session.as_ref().retry_buffer_truncated();
    let before_header = !ctx.origin.header_received;
    // A reused keep-alive connection that fails before any response is most often the origin
    // having closed it while idle: retry on another connection, blame no one (a few times).
    let stale_connection = client_reused
        && before_header
        && expired.is_none()
        && ctx.origin.stale_retries < STALE_RETRIES;
    match ctx.origin.ticket.take() {
        Some(_) if stale_connection => {}
        Some(t) => t.failure(&e.to_string(), Evidence::Response(ctx.origin.url_key)),
        None => {}
    }
    if stale_connection {
        ctx.origin.stale_retries += 1;
    } else if let Some(addr) = peer._address.as_inet() {
        ctx.origin.failed_peers.push(*addr);
    }
    let retry = idempotent && before_header && (stale_connection || retry_left(pool, ctx));
    if retry {
        let (method, uri, name) = (&req.method, &req.uri, &pool.name);
        let next = if stale_connection {
            "a reused connection: retrying on another one"
        } else {
            "retrying on another peer"
        };
        log::info!("{method} {uri}: upstream {name} peer {label} failed ({e}); {next}");
    }
    e.set_retry(retry);
    e
}

/// A retry is allowed and has a peer to go to: with none left, the last failure is the answer
/// (a timeout stays a 504 with its reason).
fn retry_left(pool: &Pool, ctx: &Ctx) -> bool {
    ctx.origin.failed_peers.len() <= pool.retries() && pool.has_untried(&ctx.origin.failed_peers)
}

/// A connection to the peer failed: report it, retry on another peer while retries are left.
pub fn failed_to_connect(
    state: &State,
    peer: &HttpPeer,
    ctx: &mut Ctx,
    mut e: Box<Error>,
) -> Box<Error> {
    let Some(pool) = origin_pool(state, ctx) else {
        return e;
    };
    let label = ctx.origin.peer.clone().unwrap_or_default();
    METRICS
        .upstream_errors
        .with_label_values(&[pool.name.as_str(), label.as_str(), "connect"])
        .inc();
    ctx.origin
        .failed(&format!("connect: {e}"), Evidence::Unreachable);
    if let Some(addr) = peer._address.as_inet() {
        ctx.origin.failed_peers.push(*addr);
    }
    if retry_left(pool, ctx) {
        e.set_retry(true);
    }
    e
}

/// The request sent upstream: its path (prefix stripped, transform parameters removed), the
/// stored entry's validators on a revalidation, the pool's Host, and the forwarding headers.
pub fn prepare_request(
    state: &State,
    session: &Session,
    upstream_request: &mut RequestHeader,
    ctx: &Ctx,
) -> Result<()> {
    let bad_path = || Error::explain(ErrorType::InvalidHTTPHeader, "bad upstream path");
    if let Some(uri) = &ctx.request.upstream_uri {
        upstream_request.set_uri(uri.parse().map_err(|_| bad_path())?);
    } else if !upstream_request.raw_path().starts_with(b"/") {
        // An absolute-form target (`GET http://host/x`) goes to the origin in origin-form: an
        // origin that is itself a proxy must not be handed a destination by the client.
        let origin_form = upstream_request
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|_| bad_path())?;
        upstream_request.set_uri(origin_form);
    }
    if let Some(stale) = session.cache.maybe_cache_meta() {
        crate::cache::revalidation_validators(stale.headers(), upstream_request);
    }
    // The origin is told the host exactly as the cache key holds it (lower-cased, no port): a
    // response made for one spelling (`host:31337`) is never served for another.
    let host = Some(ctx.request.host.as_str()).filter(|h| !h.is_empty());
    // The source cache routes the original by the client's host, as a plain request would.
    let pool = origin_pool(state, ctx);
    // A remote SOURCE's host is told its own name.
    let remote_host = ctx.transform.remote.as_ref().map(|r| {
        let origin = r.origin();
        origin
            .split_once("://")
            .map_or(String::new(), |(_, a)| a.to_string())
    });
    match remote_host.or_else(|| pool.and_then(Pool::host_override).map(str::to_string)) {
        Some(o) => upstream_request.insert_header(http::header::HOST, o)?,
        None => {
            if let Some(h) = host {
                upstream_request.insert_header(http::header::HOST, h)?;
            }
        }
    }
    if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
        let peer = client.ip();
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let hop = super::forwarding::Hop { peer, tls, host };
        let trusted = super::forwarding::is_trusted(&state.trusted_proxies, peer);
        super::forwarding::apply(upstream_request, &hop, trusted)?;
    }
    Ok(())
}
