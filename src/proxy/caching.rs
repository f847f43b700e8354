//! The proxy's use of the cache's rules (RFC 9111): whether an origin response is stored (its
//! 304 merged into the stored header first, its `Vary` variants bounded), the variance of a
//! request, hits that an unsafe method invalidated, and the invalidation itself.

use super::ctx::Ctx;
use super::state::State;
use crate::cache::freshness::Exchange;
use crate::cache::vary;
use pingora::prelude::*;
use pingora_cache::key::HashBinary;
use pingora_cache::{CacheMeta, ForcedFreshness, NoCacheReason, RespCacheable};
use pingora_http::{RequestHeader, ResponseHeader};
use std::borrow::Cow;
use std::time::SystemTime;

/// Fields a 304 never changes in the stored response (RFC 9111 §3.2: the body's framing), and
/// the cache's own.
const KEPT_ON_304: &[&str] = &[
    "content-length",
    "content-encoding",
    "content-range",
    "transfer-encoding",
    // pingora keeps the variance of a stored response over a 304: so does its Vary.
    "vary",
];
/// Also kept for a transformed entry: they describe the variant, not the origin's source.
const KEPT_ON_304_TRANSFORMED: &[&str] = &[
    "content-type",
    "content-disposition",
    "accept-ranges",
    "etag",
    "last-modified",
];

/// Whether the origin's response is stored, and for how long (`cache::freshness`).
pub fn cacheability(
    state: &State,
    session: &Session,
    resp: &ResponseHeader,
    ctx: &mut Ctx,
) -> RespCacheable {
    if ctx.transform.refusal.is_some() {
        return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
    }
    let resp = match ctx.cache.not_modified.take() {
        Some(nm) => Cow::Owned(merge_304(resp, &nm, ctx.transform.planned.is_some())),
        None => Cow::Borrowed(resp),
    };
    let req = session.req_header();
    let now = SystemTime::now();
    let sent = ctx.timing.upstream_start.map_or(now, |s| now - s.elapsed());
    let at = Exchange {
        request_time: sent,
        response_time: now,
        authorization: req.headers.contains_key(http::header::AUTHORIZATION),
    };
    let decision = state.cache.cacheability(&resp, at);
    if let RespCacheable::Cacheable(meta) = &decision {
        if !variant_admitted(state, meta, req, ctx) {
            log::debug!("{}: too many Vary variants, not stored", req.uri);
            return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
        }
    }
    decision
}

/// The stored header updated with the fields of the origin's 304 (RFC 9111 §4.3.4).
fn merge_304(stored: &ResponseHeader, nm: &ResponseHeader, transformed: bool) -> ResponseHeader {
    let mut merged = stored.clone();
    let kept = |name: &str| {
        KEPT_ON_304.contains(&name)
            || name.starts_with("x-imgedge-")
            || transformed && KEPT_ON_304_TRANSFORMED.contains(&name)
    };
    for name in nm.headers.keys() {
        if kept(name.as_str()) {
            continue;
        }
        merged.remove_header(name);
        for value in nm.headers.get_all(name) {
            // Names and values come from a parsed header: appending them cannot fail.
            let _ = merged.append_header(name.clone(), value.clone());
        }
    }
    merged
}

/// The request's variance against a stored response's `Vary`. The negotiated output format is
/// in the primary key already, so `Accept` is left out of a negotiated transform's variance.
/// Likewise the width bucket that `width=auto` chose from the client hints.
pub fn variance(meta: &CacheMeta, ctx: &Ctx, req: &RequestHeader) -> Option<HashBinary> {
    let mut skip: Vec<String> = Vec::new();
    if ctx.transform.negotiated() {
        skip.push("accept".to_string());
    }
    if let Some(used) = ctx.transform.hints_used() {
        skip.extend(used.names().map(str::to_ascii_lowercase));
    }
    let skip: Vec<&str> = skip.iter().map(String::as_str).collect();
    vary::variance(meta.headers(), req, &skip)
}

fn variant_admitted(state: &State, meta: &CacheMeta, req: &RequestHeader, ctx: &Ctx) -> bool {
    let (Some(primary), Some(v)) = (ctx.cache.hash, variance(meta, ctx, req)) else {
        return true;
    };
    state.cache.variants.admit(primary, v)
}

/// A hit stored before an unsafe method invalidated its URL is revalidated.
pub fn hit_freshness(state: &State, meta: &CacheMeta, ctx: &Ctx) -> Option<ForcedFreshness> {
    let (host, path) = (&ctx.request.host, &ctx.request.path);
    state
        .cache
        .invalidations
        .is_invalidated(host, path, meta.updated())
        .then_some(ForcedFreshness::ForceExpired)
}

/// RFC 9111 §4.4: a successful response to an unsafe method invalidates the URL, and the URLs
/// of its `Location` and `Content-Location` on the same host.
pub fn invalidate_after(state: &State, req: &RequestHeader, resp: &ResponseHeader, ctx: &Ctx) {
    if req.method.is_safe() || !(200..400).contains(&resp.status.as_u16()) {
        return;
    }
    let inv = &state.cache.invalidations;
    let now = SystemTime::now();
    let host = &ctx.request.host;
    inv.invalidate(host, &ctx.request.path, now);
    for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
        let target = resp
            .headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<http::Uri>().ok());
        let Some(uri) = target else { continue };
        let same_host = uri
            .authority()
            .is_none_or(|a| crate::cache::normalize_host(a.as_str()) == *host);
        if same_host && uri.path().starts_with('/') {
            inv.invalidate(host, &crate::cache::normalize_path(uri.path()), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(status: u16, fields: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in fields {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn a_304_replaces_fields_but_not_the_framing() {
        let stored = header(
            200,
            &[
                ("content-type", "image/webp"),
                ("content-length", "10"),
                ("x-test", "old"),
                ("cache-control", "max-age=1"),
                ("etag", "W/\"ours\""),
            ],
        );
        let nm = header(
            304,
            &[
                ("x-test", "new"),
                ("cache-control", "max-age=60"),
                ("content-length", "0"),
                ("content-type", "image/jpeg"),
                ("etag", "\"origin\""),
                ("x-imgedge-source-etag", "nope"),
            ],
        );
        let plain = merge_304(&stored, &nm, false);
        assert_eq!(plain.headers["x-test"], "new");
        assert_eq!(plain.headers["cache-control"], "max-age=60");
        assert_eq!(plain.headers["content-length"], "10");
        assert_eq!(plain.headers["content-type"], "image/jpeg");
        assert!(!plain.headers.contains_key("x-imgedge-source-etag"));
        // A transformed entry keeps what describes the variant.
        let variant = merge_304(&stored, &nm, true);
        assert_eq!(variant.headers["content-type"], "image/webp");
        assert_eq!(variant.headers["etag"], "W/\"ours\"");
        assert_eq!(variant.headers["x-test"], "new");
    }
}
