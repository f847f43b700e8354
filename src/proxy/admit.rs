//! What `request_filter` decides before anything is looked up: size limits, PURGE, the path
//! check, the route, the transform plan and its signature, the origin URI, the rate limits;
//! and the cache key that follows from them.

use super::ctx::Ctx;
use super::reply::{cors_origin, respond_text, respond_with};
use super::routes;
use super::state::State;
use super::transform::path_form;
use crate::config::UnknownParams;
use crate::image::hints::ClientHints;
use crate::limits::{Decision, Stage};
use pingora::prelude::*;
use pingora_cache::key::CacheHashKey;
use pingora_cache::CacheKey;
use pingora_http::RequestHeader;

/// A request refused up front: status, the one-line answer, and whether it is worth a log
/// line.
struct Refusal {
    status: u16,
    message: String,
    log: Option<String>,
}

impl Refusal {
    fn new(status: u16, message: String) -> Refusal {
        Refusal {
            status,
            message,
            log: None,
        }
    }
}

/// The Host the client sent (or the authority of an absolute-form target), as received.
fn raw_host(req: &RequestHeader) -> &str {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
        .trim()
}

/// The request's host as the cache key holds it and the origin is told it: lower-cased, without
/// its port. The key must hold exactly what the origin is told (a response made for
/// `host:31337` must never be served to `host`); dropping the port keeps one entry per host
/// across listeners (HTTP and HTTPS ports, a fleet's shields).
pub fn request_host(req: &RequestHeader) -> String {
    crate::cache::normalize_host(raw_host(req))
}

/// Everything `request_filter` checks before the rate limits. `Ok(true)`: an answer was sent
/// (a refusal, or a PURGE) and the request ends here.
pub async fn screen(state: &'static State, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
    // Only the private source socket is a Unix one (its clients have no address of their own).
    ctx.request.internal = session.server_addr().is_some_and(|a| a.as_unix().is_some());
    if let Some((status, reason)) = super::http_limits::check(&state.http, session.req_header()) {
        let client = session.client_addr();
        log::info!("refused a request from {client:?}: {reason}");
        respond_text(session, None, status, &reason).await?;
        return Ok(true);
    }
    if session.req_header().method.as_str() == "PURGE" {
        let host = request_host(session.req_header());
        super::purge::serve_proxy_purge(session, state, &host).await?;
        return Ok(true);
    }
    ctx.request.cors = cors_origin(&state.cors_origins, session.req_header());
    match decide(state, session.req_header(), ctx) {
        Ok(()) => Ok(false),
        Err(r) => {
            if let Some(why) = &r.log {
                let (uri, client) = (&session.req_header().uri, session.client_addr());
                log::info!("refused {uri} from {client:?}: {why}");
            }
            respond_text(session, ctx.request.cors.as_deref(), r.status, &r.message).await?;
            Ok(true)
        }
    }
}

/// The path check, the route, the transform plan, its signature and the origin URI.
fn decide(state: &State, req: &RequestHeader, ctx: &mut Ctx) -> Result<(), Refusal> {
    if let Some(problem) = super::forwarding::path_problem(req.uri.path()) {
        let mut r = Refusal::new(400, format!("bad request: {problem}"));
        r.log = Some(problem.to_string());
        return Err(r);
    }
    let host = request_host(req);
    // The path form `/cdn-cgi/image/OPTIONS/SOURCE` is the query form of SOURCE with the
    // options as its first parameters: the same key, signature and cache entry.
    let form = path_form::split(req.uri.path()).map_err(|(s, m)| Refusal::new(s, m))?;
    let full_query: Option<String> = match &form {
        Some(f) => Some(f.full_query(req.uri.query())),
        None => req.uri.query().map(str::to_string),
    };
    let raw_path = form.as_ref().map_or(req.uri.path(), |f| f.source.as_str());
    let path = crate::cache::normalize_path(raw_path);
    let path = path.as_ref();
    let remote = match form.as_ref().and_then(|f| f.remote.as_ref()) {
        Some(r) => Some(remote_source(state, r)?),
        None => None,
    };
    // A remote SOURCE is routed by the request's own path (its cache, its limits).
    let route_path = if remote.is_some() {
        req.uri.path()
    } else {
        path
    };
    let Some((idx, route)) = state.router.find(&host, route_path) else {
        let msg = format!("no route for host {host:?} and path {path:?}");
        return Err(Refusal::new(404, msg));
    };
    ctx.request.route = Some(idx);
    lookalikes(state.unknown_params, req.uri.query(), ctx)?;
    let accept = req
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let hints = client_hints(req);
    let planned = match state
        .transformer
        .plan_hinted(full_query.as_deref(), accept, &hints)
    {
        Ok(p) => p.map(Box::new),
        Err(e) => {
            let msg = format!("invalid transform parameter: {e}");
            return Err(Refusal::new(400, msg));
        }
    };
    // A remote SOURCE's signature covers its origin too (`https://host/path`).
    let signed_path = match &remote {
        Some(r) => format!("{}{path}", r.origin()),
        None => path.to_string(),
    };
    if let Some(p) = &planned {
        if let Err(e) =
            state
                .transformer
                .verify_signature(&host, &signed_path, full_query.as_deref(), p)
        {
            // Logged without the client address (as it always was).
            log::info!("refused {}: {e}", req.uri);
            return Err(Refusal::new(403, format!("forbidden: {e}")));
        }
    }
    let query = match &planned {
        Some(p) => p.forward_query.as_deref(),
        None => req.uri.query(),
    };
    if form.is_some() && planned.is_none() {
        return Err(Refusal::new(
            400,
            "invalid transform: no option".to_string(),
        ));
    }
    if let Some(r) = remote {
        let query = query.map(str::to_string);
        admit_remote(ctx, r, path, query.as_deref(), planned, host);
        return Ok(());
    }
    ctx.transform.via_source = planned.is_some()
        && req.method == http::Method::GET
        && route.cache
        && route.source_cache
        && !route.forward_transform
        && state.source_socket.is_some();
    if ctx.transform.via_source {
        // The original, as a plain request for it would name it: same host, path and query,
        // routed and cached here again (its own key, its own freshness).
        let mut uri = path.to_string();
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            uri.push('?');
            uri.push_str(q);
        }
        ctx.request.upstream_uri = Some(uri);
    } else if route.strip_prefix || planned.is_some() || path != req.uri.path() {
        // The origin is asked for exactly what the key names: the normal form of the path.
        let mut uri = routes::upstream_path(route, path);
        let mut params: Vec<String> = query.map(str::to_string).into_iter().collect();
        if let (Some(p), true) = (&planned, route.forward_transform) {
            // The shield gets the canonical transform, the format already negotiated.
            params.push(p.spec.to_query(p.negotiated.format()));
            ctx.transform.forwarded = true;
        }
        if !params.is_empty() {
            uri.push('?');
            uri.push_str(&params.join("&"));
        }
        ctx.request.upstream_uri = Some(uri);
    }
    if planned.is_some() {
        ctx.transform.source_key = format!("{host}\n{path}\n{}", query.unwrap_or(""));
    }
    if planned.as_ref().is_some_and(|p| p.spec.onerror_redirect) {
        ctx.transform.redirect = super::transform::onerror::location(path, query);
    }
    ctx.transform.planned = planned;
    ctx.request.path = path.to_string();
    ctx.request.host = host;
    Ok(())
}

/// A SOURCE URL's host must be listed in `transform.remote_sources` (403 otherwise, before any
/// connection or name lookup).
fn remote_source(
    state: &State,
    (tls, host, port): &(bool, String, u16),
) -> Result<crate::config::RemoteSource, Refusal> {
    let listed = state
        .remote_sources
        .iter()
        .find(|r| r.tls == *tls && &r.host == host && r.port == *port);
    match listed {
        Some(r) => Ok(r.clone()),
        None => {
            let scheme = if *tls { "https" } else { "http" };
            let msg = format!(
                "forbidden: remote SOURCE {scheme}://{host}:{port} is not in transform.remote_sources"
            );
            let mut r = Refusal::new(403, msg);
            r.log = Some("remote SOURCE not listed".to_string());
            Err(r)
        }
    }
}

/// A listed remote SOURCE: asked of that host alone for exactly its path and the forwarded
/// query; keyed (cache, failures) by its origin and path.
fn admit_remote(
    ctx: &mut Ctx,
    remote: crate::config::RemoteSource,
    path: &str,
    query: Option<&str>,
    planned: Option<Box<super::transform::Planned>>,
    host: String,
) {
    let mut uri = path.to_string();
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        uri.push('?');
        uri.push_str(q);
    }
    ctx.request.upstream_uri = Some(uri);
    let keyed = format!("{}{path}", remote.origin());
    if planned.is_some() {
        ctx.transform.source_key = format!("{host}\n{keyed}\n{}", query.unwrap_or(""));
    }
    // onerror=redirect has no effect on another host's image (as Cloudflare's).
    ctx.transform.remote = Some(remote);
    ctx.transform.planned = planned;
    ctx.request.path = keyed;
    ctx.request.host = host;
}

/// Query parameters that look like transform parameters but are not (`widht=400`): a
/// warning on the response (kept per request, never stored with a cached entry), or a 400
/// before any origin request, as `transform.unknown_params` says.
fn lookalikes(mode: UnknownParams, query: Option<&str>, ctx: &mut Ctx) -> Result<(), Refusal> {
    if mode == UnknownParams::Forward {
        return Ok(());
    }
    let warnings = crate::image::lookalike::warnings(query);
    if warnings.is_empty() {
        return Ok(());
    }
    let warning = warnings.join("; ");
    if mode == UnknownParams::Reject {
        return Err(Refusal::new(400, format!("bad request: {warning}")));
    }
    ctx.request.warning = Some(warning);
    Ok(())
}

/// Identifies the client (once) and checks the limits of this stage. `Ok(true)`: a 401, 429
/// or 503 was sent and the request ends here.
pub async fn rate_limit(
    state: &State,
    session: &mut Session,
    ctx: &mut Ctx,
    stage: Stage,
) -> Result<bool> {
    let limiter = &state.limiter;
    // The client's request was limited already; its original fetch is not a second request.
    if !limiter.is_enabled() || ctx.request.internal {
        return Ok(false);
    }
    let cors = ctx.request.cors.clone();
    let cors = cors.as_deref();
    if ctx.request.identity.is_none() {
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        match limiter.identify(&session.req_header().headers, peer) {
            Ok(id) => ctx.request.identity = Some(id),
            Err(e) => {
                let msg = format!("unauthorized: {e}");
                respond_text(session, cors, e.status(), &msg).await?;
                return Ok(true);
            }
        }
    }
    let Some(id) = ctx.request.identity.as_ref() else {
        return Ok(false);
    };
    match limiter.check(id, stage).await {
        Decision::Allow { headers, guard } => {
            if !headers.is_empty() {
                ctx.request.limit_headers = headers;
            }
            if guard.is_some() {
                ctx.request.inflight = guard;
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
            respond_with(session, cors, 429, &body, &headers).await?;
            Ok(true)
        }
        Decision::Unavailable { reason } => {
            let headers = [("Retry-After".to_string(), "1".to_string())];
            let body = format!("service unavailable: {reason}");
            respond_with(session, cors, 503, &body, &headers).await?;
            Ok(true)
        }
    }
}

/// The cache key of a request (and the bytes the balancer hashes on): the host and path as
/// admitted (`decide`), the query, the canonical transform.
pub fn cache_key(req: &RequestHeader, ctx: &mut Ctx) -> CacheKey {
    let (host, path, query) = (&ctx.request.host, &ctx.request.path, req.uri.query());
    let key = match &ctx.transform.planned {
        None => {
            let key = crate::cache::key(host, path, query, "");
            ctx.cache.lb_key = key.primary_key().to_vec();
            key
        }
        Some(p) => {
            // Balance on what is produced, so a negotiated and a fixed request for the same
            // bytes go to the same shield (whose cache key is the fixed one).
            let forward = p.forward_query.as_deref();
            let produced = crate::cache::key(host, path, forward, p.produced());
            ctx.cache.lb_key = produced.primary_key().to_vec();
            crate::cache::key(host, path, forward, &p.canonical)
        }
    };
    ctx.cache.hash = Some(key.combined_bin());
    key
}

/// Stage of the limits checked in `request_filter`.
pub fn request_stage(ctx: &Ctx) -> Stage {
    Stage::Request {
        transform: ctx.transform.planned.is_some(),
    }
}

/// The request's client hint fields, for `width=auto` (the last line of a repeated field, as
/// the hints' specification says).
fn client_hints(req: &RequestHeader) -> ClientHints {
    let get = |name: &str| {
        req.headers
            .get_all(name)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    ClientHints {
        sec_ch_width: get("sec-ch-width"),
        width: get("width"),
        sec_ch_viewport_width: get("sec-ch-viewport-width"),
        viewport_width: get("viewport-width"),
        sec_ch_dpr: get("sec-ch-dpr"),
        dpr: get("dpr"),
    }
}
