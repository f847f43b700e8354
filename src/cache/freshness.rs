//! Whether a response may be stored, for how long, how old it already is, and when it may be
//! served stale: RFC 9111 (§3 storing, §4.2 freshness and age, §4.2.4 stale) and RFC 9213
//! (`CDN-Cache-Control`), computed here rather than by pingora-cache's `resp_cacheable`, which
//! ignores `Age` and `Date` and reads `Expires` against the local clock.

use super::fields::{parse_age, parse_date, valid_cdn_cache_control};
use http::header::{AGE, DATE, EXPIRES, LAST_MODIFIED, SET_COOKIE, VARY};
use pingora_cache::cache_control::{CacheControl, Cacheable, InterpretCacheControl};
use pingora_cache::{CacheMeta, NoCacheReason, RespCacheable};
use pingora_http::ResponseHeader;
use std::time::{Duration, SystemTime};

/// Heuristic freshness (§4.2.2, 10% of the time since Last-Modified) is capped at a day.
const MAX_HEURISTIC: Duration = Duration::from_secs(24 * 3600);

/// What the configuration adds to the origin's word.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Freshness of a 200/203/300/301/308 that states none (`cache.default_ttl`; 0: none).
    pub default_ttl: Duration,
    /// Freshness of a 404/410 that states none (`cache.negative_ttl`).
    pub negative_ttl: Duration,
    /// Stale-while-revalidate for responses that neither grant nor forbid it
    /// (`cache.stale_while_revalidate`; 0: only when the origin grants it).
    pub stale_while_revalidate: Duration,
    /// Stale-if-error for responses that neither grant nor forbid it (`cache.stale_if_error`).
    pub stale_if_error: Duration,
}

/// When the exchange happened, for the age calculation (§4.2.3).
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    /// When the request was sent upstream.
    pub request_time: SystemTime,
    /// When the response header arrived.
    pub response_time: SystemTime,
    /// The client's request carried `Authorization`.
    pub authorization: bool,
}

/// The cache directives that apply: `CDN-Cache-Control` when present (RFC 9213 §2.1: it
/// replaces `Cache-Control` and `Expires` for this cache), else `Cache-Control`.
struct Directives {
    cc: Option<CacheControl>,
    cdn: bool,
}

impl Directives {
    fn of(resp: &ResponseHeader) -> Directives {
        let cdn = resp.headers.get_all("cdn-cache-control");
        let valid = cdn
            .iter()
            .all(|v| v.to_str().is_ok_and(valid_cdn_cache_control));
        let cdn_cc = valid
            .then(|| CacheControl::from_resp_headers_named("cdn-cache-control", resp))
            .flatten();
        match cdn_cc {
            Some(cc) => Directives {
                cc: Some(cc),
                cdn: true,
            },
            None => Directives {
                cc: CacheControl::from_resp_headers(resp),
                cdn: false,
            },
        }
    }

    fn has(&self, f: impl Fn(&CacheControl) -> bool) -> bool {
        self.cc.as_ref().is_some_and(f)
    }
}

/// Decides whether `resp` is stored and builds its metadata: freshness lifetime and current age
/// (`epoch` of the metadata set so that pingora's `Age` counts from the origin's), the stale
/// windows, and the stored header (`Set-Cookie` never stored, `private="f"` fields removed).
pub fn cacheability(resp: &ResponseHeader, at: Exchange, policy: &Policy) -> RespCacheable {
    let d = Directives::of(resp);
    let uncacheable = RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
    if at.authorization && !d.has(|cc| cc.allow_caching_authorized_req()) {
        return uncacheable;
    }
    if d.has(|cc| cc.is_cacheable() == Cacheable::No) || vary_star(resp) {
        return uncacheable;
    }
    let shared = d.has(|cc| cc.public() || cc.s_maxage().ok().flatten().is_some());
    if resp.headers.contains_key(SET_COOKIE) && !shared {
        // A personalised response: one client's cookie must never reach the next.
        return uncacheable;
    }
    let Some(lifetime) = lifetime(resp, &d, at.response_time, policy) else {
        return uncacheable;
    };
    let age = initial_age(resp, at);
    let now = at.response_time;
    let epoch = now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
    // Stale from the start when its age already passed its lifetime (fresh_until < now).
    let fresh_until = match lifetime.checked_sub(age) {
        Some(left) if !left.is_zero() => now + left,
        _ => now.checked_sub(Duration::from_secs(1)).unwrap_or(epoch),
    };
    let (swr, sie) = stale_windows(&d, lifetime, policy);
    let mut header = resp.clone();
    header.remove_header(&SET_COOKIE);
    if let Some(cc) = &d.cc {
        cc.strip_private_headers(&mut header);
    }
    let mut meta = CacheMeta::new(fresh_until, now, swr, sie, header);
    if !age.is_zero() {
        meta.set_epoch_override(epoch);
    }
    RespCacheable::Cacheable(meta)
}

/// `Vary: *` (in any of its lines): the response can never be reused.
pub fn vary_star(resp: &ResponseHeader) -> bool {
    resp.headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|name| name.trim() == "*")
}

/// §4.2.1: `s-maxage`, `max-age`, then `Expires - Date` (ignored under CDN-Cache-Control),
/// then the heuristic. `None`: nothing allows storing it.
fn lifetime(
    resp: &ResponseHeader,
    d: &Directives,
    now: SystemTime,
    policy: &Policy,
) -> Option<Duration> {
    if let Some(ttl) = d.cc.as_ref().and_then(|cc| cc.fresh_duration()) {
        return Some(ttl);
    }
    if !d.cdn {
        if let Some(ttl) = expires_lifetime(resp, now) {
            return Some(ttl);
        }
    }
    heuristic(resp, now, policy)
}

/// `Expires - Date` (§4.2.1; Date absent or invalid: the response time). Several or invalid
/// `Expires` mean "already expired" (§5.3).
fn expires_lifetime(resp: &ResponseHeader, now: SystemTime) -> Option<Duration> {
    let mut all = resp.headers.get_all(EXPIRES).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return Some(Duration::ZERO);
    }
    let Some(expires) = first.to_str().ok().and_then(parse_date) else {
        return Some(Duration::ZERO);
    };
    let date = header_date(resp, DATE).unwrap_or(now);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// No explicit freshness: the configured TTLs, else 10% of the time since `Last-Modified`
/// (§4.2.2) for the statuses that are heuristically cacheable (RFC 9110 §15.1).
fn heuristic(resp: &ResponseHeader, now: SystemTime, policy: &Policy) -> Option<Duration> {
    let status = resp.status;
    let configured = match status.as_u16() {
        200 | 203 | 300 | 301 | 308 => Some(policy.default_ttl),
        404 | 410 => Some(policy.negative_ttl),
        _ => None,
    };
    if let Some(ttl) = configured.filter(|t| !t.is_zero()) {
        return Some(ttl);
    }
    let heuristic_status = matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    );
    if heuristic_status {
        if let Some(lm) = header_date(resp, LAST_MODIFIED) {
            let date = header_date(resp, DATE).unwrap_or(now);
            let since = date.duration_since(lm).unwrap_or(Duration::ZERO);
            let ttl = (since / 10).min(MAX_HEURISTIC);
            if !ttl.is_zero() {
                return Some(ttl);
            }
        }
    }
    // Stored, but stale at once (every use revalidates): what a configured TTL of 0 means.
    configured
}

/// §4.2.3: `corrected_initial_age = max(apparent_age, age_value + response_delay)`.
fn initial_age(resp: &ResponseHeader, at: Exchange) -> Duration {
    let age_value = resp
        .headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_age)
        .unwrap_or(Duration::ZERO);
    let apparent = header_date(resp, DATE)
        .and_then(|date| at.response_time.duration_since(date).ok())
        .unwrap_or(Duration::ZERO);
    let delay = at
        .response_time
        .duration_since(at.request_time)
        .unwrap_or(Duration::ZERO);
    apparent.max(age_value + delay)
}

/// The stale windows (§4.2.4): none under `no-cache`, `must-revalidate`, `proxy-revalidate` or
/// `s-maxage`; else the origin's `stale-while-revalidate` / `stale-if-error`, else the
/// configured ones, and the configured stale-while-revalidate only for a response that had a
/// freshness lifetime (one that is stale at once, like `max-age=0`, is revalidated each time).
fn stale_windows(d: &Directives, lifetime: Duration, policy: &Policy) -> (u32, u32) {
    if d.has(|cc| cc.no_cache()) {
        return (0, 0);
    }
    let origin_swr =
        d.cc.as_ref()
            .and_then(|cc| cc.serve_stale_while_revalidate_duration());
    let origin_sie =
        d.cc.as_ref()
            .and_then(|cc| cc.serve_stale_if_error_duration());
    let default_swr = if lifetime.is_zero() {
        Duration::ZERO
    } else {
        policy.stale_while_revalidate
    };
    let swr = origin_swr.unwrap_or(default_swr);
    let sie = origin_sie.unwrap_or(policy.stale_if_error);
    (secs_u32(swr), secs_u32(sie))
}

fn secs_u32(d: Duration) -> u32 {
    d.as_secs().min(u32::MAX as u64) as u32
}

fn header_date(resp: &ResponseHeader, name: http::header::HeaderName) -> Option<SystemTime> {
    resp.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_date)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            default_ttl: Duration::ZERO,
            negative_ttl: Duration::from_secs(10),
            stale_while_revalidate: Duration::from_secs(60),
            stale_if_error: Duration::from_secs(3600),
        }
    }

    fn resp(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn at(now: SystemTime) -> Exchange {
        Exchange {
            request_time: now,
            response_time: now,
            authorization: false,
        }
    }

    fn meta(r: &ResponseHeader, now: SystemTime) -> Option<CacheMeta> {
        match cacheability(r, at(now), &policy()) {
            RespCacheable::Cacheable(m) => Some(m),
            RespCacheable::Uncacheable(_) => None,
        }
    }

    fn http_date(t: SystemTime) -> String {
        httpdate::fmt_http_date(t)
    }

    #[test]
    fn age_counts_against_max_age() {
        let now = SystemTime::now();
        let m = meta(
            &resp(&[("cache-control", "max-age=3600"), ("age", "7200")]),
            now,
        )
        .unwrap();
        assert!(!m.is_fresh(now));
        let m = meta(
            &resp(&[("cache-control", "max-age=3600"), ("age", "600")]),
            now,
        )
        .unwrap();
        assert!(m.is_fresh(now + Duration::from_secs(2990)));
        assert!(!m.is_fresh(now + Duration::from_secs(3010)));
        // pingora's Age on a hit counts from the origin's.
        assert!(m.age() >= Duration::from_secs(600));
    }

    #[test]
    fn expires_is_read_against_date() {
        let now = SystemTime::now();
        let date = now - Duration::from_secs(10);
        let r = resp(&[
            ("date", &http_date(date)),
            ("expires", &http_date(date + Duration::from_secs(20))),
            ("age", "25"),
        ]);
        assert!(!meta(&r, now).unwrap().is_fresh(now));
        // Expires before Date: a negative lifetime, stale at once.
        let r = resp(&[
            ("date", &http_date(now + Duration::from_secs(400))),
            ("expires", &http_date(now + Duration::from_secs(300))),
        ]);
        assert!(!meta(&r, now).unwrap().is_fresh(now));
    }

    #[test]
    fn cdn_cache_control_replaces_cache_control() {
        let now = SystemTime::now();
        let r = resp(&[
            ("cdn-cache-control", "private"),
            ("cache-control", "max-age=99"),
        ]);
        assert!(meta(&r, now).is_none());
        let r = resp(&[
            ("cdn-cache-control", "max-age=99"),
            ("cache-control", "no-store"),
        ]);
        assert!(meta(&r, now).unwrap().is_fresh(now));
    }

    #[test]
    fn set_cookie_only_when_shareable_and_never_stored() {
        let now = SystemTime::now();
        let r = resp(&[("cache-control", "max-age=60"), ("set-cookie", "sid=1")]);
        assert!(meta(&r, now).is_none());
        let r = resp(&[
            ("cache-control", "public, max-age=60"),
            ("set-cookie", "sid=1"),
        ]);
        let m = meta(&r, now).unwrap();
        assert!(!m.headers().contains_key("set-cookie"));
    }

    #[test]
    fn vary_star_is_never_stored() {
        let now = SystemTime::now();
        let r = resp(&[("cache-control", "max-age=60"), ("vary", "accept, *")]);
        assert!(meta(&r, now).is_none());
    }

    #[test]
    fn no_cache_and_must_revalidate_are_never_served_stale() {
        let now = SystemTime::now();
        for cc in ["max-age=60, no-cache", "max-age=60, must-revalidate"] {
            let m = meta(&resp(&[("cache-control", cc)]), now).unwrap();
            assert_eq!(m.stale_while_revalidate_sec(), 0, "{cc}");
            assert_eq!(m.stale_if_error_sec(), 0, "{cc}");
        }
        // max-age=0: no default stale-while-revalidate, the error fallback stays.
        let m = meta(&resp(&[("cache-control", "max-age=0")]), now).unwrap();
        assert_eq!(m.stale_while_revalidate_sec(), 0);
        assert_eq!(m.stale_if_error_sec(), 3600);
        let m = meta(&resp(&[("cache-control", "max-age=60")]), now).unwrap();
        assert_eq!(m.stale_while_revalidate_sec(), 60);
        let m = meta(
            &resp(&[("cache-control", "max-age=0, stale-while-revalidate=5")]),
            now,
        );
        assert_eq!(m.unwrap().stale_while_revalidate_sec(), 5);
    }

    #[test]
    fn heuristic_from_last_modified() {
        let now = SystemTime::now();
        let lm = now - Duration::from_secs(100_000);
        let m = meta(&resp(&[("last-modified", &http_date(lm))]), now).unwrap();
        assert!(m.is_fresh(now + Duration::from_secs(9_000)));
        assert!(!m.is_fresh(now + Duration::from_secs(11_000)));
        // Nothing to go by: stored, but stale at once.
        assert!(!meta(&resp(&[]), now).unwrap().is_fresh(now));
    }
}
