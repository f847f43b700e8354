//! The end of every request: metrics, one access-log line and a usage event.

use super::ctx::Ctx;
use super::state::State;
use crate::metrics::{status_class, METRICS};
use pingora::prelude::*;
use pingora_error::ErrorSource;
use std::time::Duration;

/// What was sent: status, cache status and body bytes.
struct Sent {
    status: u16,
    cache: String,
    bytes: usize,
}

fn sent(session: &Session, ctx: &Ctx) -> Sent {
    if let Some(d) = &ctx.request.direct {
        return Sent {
            status: d.status,
            cache: d.cache.to_string(),
            bytes: d.bytes,
        };
    }
    let written = session.response_written();
    Sent {
        status: written.map_or(0, |r| r.status.as_u16()),
        cache: written
            .and_then(|r| r.headers.get("x-cache-status"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string(),
        bytes: session.body_bytes_sent(),
    }
}

/// Logs, counts and reports the finished request.
pub fn finish(state: &State, session: &Session, e: Option<&Error>, ctx: &mut Ctx) {
    let s = sent(session, ctx);
    if ctx.cache.record_fast && e.is_none() {
        if let Some(hash) = &ctx.cache.hash {
            state.cache.storage.fast_record(hash);
        }
    }
    let elapsed = ctx.timing.start.map_or(Duration::ZERO, |s| s.elapsed());
    // An original fetched for a transform miss is part of the client's request, which is the
    // one counted and reported (`imgedge_source_fetches_total` counts these).
    if ctx.request.internal {
        if state.access_log {
            access_line(session, e, ctx, &s, elapsed);
        }
        return;
    }
    count(state, e, ctx, &s, elapsed);
    if let Some(usage) = &state.usage {
        usage_event(state, usage, session, ctx, &s);
    }
    if state.access_log {
        access_line(session, e, ctx, &s, elapsed);
    }
}

fn count(state: &State, e: Option<&Error>, ctx: &Ctx, s: &Sent, elapsed: Duration) {
    let route = state.route_label(ctx.request.route);
    let m = &*METRICS;
    m.requests
        .with_label_values(&[route, status_class(s.status), s.cache.as_str()])
        .inc();
    m.request_duration
        .with_label_values(&[route])
        .observe(elapsed.as_secs_f64());
    m.response_bytes
        .with_label_values(&[route])
        .inc_by(s.bytes as u64);
    if let (Some(e), Some(pool)) = (e, state.pool(ctx.request.route)) {
        if e.esource() == &ErrorSource::Upstream && ctx.origin.peer.is_some() {
            let peer = ctx.origin.peer.as_deref().unwrap_or_default();
            m.upstream_errors
                .with_label_values(&[pool.name.as_str(), peer, "proxy"])
                .inc();
        }
    }
}

fn usage_event(
    state: &State,
    usage: &crate::usage::Publisher,
    session: &Session,
    ctx: &mut Ctx,
    s: &Sent,
) {
    let req = session.req_header();
    let ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let client = ip.map_or_else(|| "-".into(), |ip| ip.to_string());
    // Without rate-limit policies the client was not identified yet: API keys and tokens still
    // name the org to bill (an unknown credential counts as anonymous).
    let identity = match ctx.request.identity.take() {
        Some(id) => Some(id),
        None => ip.and_then(|ip| state.limiter.identify(&req.headers, ip).ok()),
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
        route: state.route_label(ctx.request.route).to_string(),
        method: req.method.as_str().to_string(),
        path: req.uri.path().to_string(),
        transform: ctx.transform.canonical().map(str::to_string),
        status: s.status,
        cache: s.cache.clone(),
        bytes: s.bytes as u64,
        transform_ms: ctx.timing.transform_ms,
    });
}

fn access_line(session: &Session, e: Option<&Error>, ctx: &Ctx, s: &Sent, elapsed: Duration) {
    let req = session.req_header();
    let client = match session.client_addr() {
        _ if ctx.request.internal => super::origin::SOURCE_PEER.to_string(),
        Some(a) => a.to_string(),
        None => "-".into(),
    };
    let error = e.map(|e| format!(" error=\"{e}\"")).unwrap_or_default();
    let transform = ctx
        .transform
        .canonical()
        .map(|c| format!(" transform={c}"))
        .unwrap_or_default();
    let warning = ctx
        .request
        .warning
        .as_ref()
        .map(|w| format!(" warning={w:?}"))
        .unwrap_or_default();
    log::info!(
        target: "access",
        "{client} \"{} {}\" {} cache={} upstream={}{transform} duration_ms={:.1} bytes={}{error}{warning}",
        req.method,
        req.uri,
        s.status,
        s.cache,
        ctx.origin.peer.as_deref().unwrap_or("-"),
        elapsed.as_secs_f64() * 1000.0,
        s.bytes,
    );
}
