//! Whether a response may be stored, for how long, how old it already is, and when it may be
//! served stale: RFC 9111 (§3 storing, §4.2 freshness and age, §4.2.4 stale) and RFC 9213
//! (`CDN-Cache-Control`), computed here rather than by pingora-cache's `resp_cacheable`, which
//! ignores `Age` and `Date` and reads `Expires` against the local clock.

use http::header::{AGE, DATE, EXPIRES, LAST_MODIFIED, SET_COOKIE, VARY};
use pingora_cache::cache_control::{CacheControl, Cacheable, InterpretCacheControl};
use pingora_cache::{CacheMeta, NoCacheReason, RespCacheable};
use pingora_http::ResponseHeader;
use std::time::{Duration, SystemTime};

/// RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31.
const DELTA_SECONDS_OVERFLOW: u64 = 1 << 31;
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

/// RFC 9213 §2.1: `CDN-Cache-Control` is a Structured Fields dictionary; one that does not parse
/// as one, or whose delta-seconds directives are not integers, is ignored as a whole (then
/// `Cache-Control` applies).
fn valid_cdn_cache_control(value: &str) -> bool {
    const INTEGER_VALUED: [&str; 4] = [
        "max-age",
        "s-maxage",
        "stale-while-revalidate",
        "stale-if-error",
    ];
    split_members(value).into_iter().all(|member| {
        let member = member.trim_matches(|c| c == ' ' || c == '\t');
        // Parameters (`;a=1`) are allowed by the grammar and carry nothing for caching.
        let item = member.split(';').next().unwrap_or("");
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (item, None),
        };
        let key_ok = key.starts_with(|c: char| c.is_ascii_lowercase() || c == '*')
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.*".contains(c));
        key_ok
            && match value {
                None => true,
                Some(v) if INTEGER_VALUED.contains(&key) => sf_integer(v),
                Some(v) => sf_bare_item(v),
            }
    })
}

/// Members of a dictionary: split on commas outside strings.
fn split_members(value: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

fn sf_integer(v: &str) -> bool {
    let d = v.strip_prefix('-').unwrap_or(v);
    (1..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit())
}

/// An sf-integer, sf-decimal, sf-string, sf-token, sf-binary or sf-boolean.
fn sf_bare_item(v: &str) -> bool {
    let number = |v: &str| {
        let d = v.strip_prefix('-').unwrap_or(v);
        match d.split_once('.') {
            Some((i, f)) => sf_integer(i) && (1..=3).contains(&f.len()) && sf_integer(f),
            None => sf_integer(d),
        }
    };
    let string = |v: &str| {
        v.len() >= 2
            && v.starts_with('"')
            && v.ends_with('"')
            && v[1..v.len() - 1].chars().all(|c| (' '..='~').contains(&c))
    };
    let token = |v: &str| {
        v.starts_with(|c: char| c.is_ascii_alphabetic() || c == '*')
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~:/".contains(c))
    };
    let binary = |v: &str| {
        v.len() >= 2
            && v.starts_with(':')
            && v.ends_with(':')
            && v[1..v.len() - 1]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
    };
    number(v) || string(v) || token(v) || binary(v) || v == "?0" || v == "?1"
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

/// The `Age` value (§5.1): a non-negative integer, the first of a list; anything else is
/// ignored; too large a number is 2^31.
fn parse_age(value: &str) -> Option<Duration> {
    let first = value.split(',').next()?.trim();
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = first.parse::<u64>().unwrap_or(DELTA_SECONDS_OVERFLOW);
    Some(Duration::from_secs(secs.min(DELTA_SECONDS_OVERFLOW)))
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

/// An HTTP date in one of the three formats of RFC 9110 §5.6.7. Their shape is strict (a date
/// in any other shape is invalid, so an `Expires` in it means "already expired", §5.3), but
/// names are read in any case and a weekday that does not match the date is ignored.
pub fn parse_date(s: &str) -> Option<SystemTime> {
    let s = s.trim().to_ascii_lowercase();
    let (day, month, year, time) = imf_fixdate(&s)
        .or_else(|| rfc850_date(&s))
        .or_else(|| asctime_date(&s))?;
    let (h, mi, se) = time;
    if day == 0 || day > 31 || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + se);
    u64::try_from(secs)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const LONG_DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

type Parts = (u32, u32, i64, (u32, u32, u32));

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn imf_fixdate(s: &str) -> Option<Parts> {
    let [wd, d, m, y, t, "gmt"] = split_n::<6>(s, ' ')? else {
        return None;
    };
    DAYS.contains(&wd.strip_suffix(',')?).then_some(())?;
    let year = digits(y, 4)?;
    Some((digits(d, 2)?, month(m)?, i64::from(year), time(t)?))
}

/// `Sunday, 06-Nov-94 08:49:37 GMT` (a two-digit year more than 50 years ahead is in the past
/// century, §5.6.7).
fn rfc850_date(s: &str) -> Option<Parts> {
    let [wd, date, t, "gmt"] = split_n::<4>(s, ' ')? else {
        return None;
    };
    LONG_DAYS.contains(&wd.strip_suffix(',')?).then_some(())?;
    let [d, m, y] = split_n::<3>(date, '-')?;
    let this_year = 1970
        + SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()?
            .as_secs()
            / 31_556_952;
    let mut year = i64::try_from(this_year / 100 * 100).ok()? + i64::from(digits(y, 2)?);
    if year > i64::try_from(this_year).ok()? + 50 {
        year -= 100;
    }
    Some((digits(d, 2)?, month(m)?, year, time(t)?))
}

/// `Sun Nov  6 08:49:37 1994` (the day padded with a space)
fn asctime_date(s: &str) -> Option<Parts> {
    let b = s.as_bytes();
    if b.len() != 24 || [3, 7, 10, 19].iter().any(|&i| b[i] != b' ') {
        return None;
    }
    DAYS.contains(&s.get(0..3)?).then_some(())?;
    let day = match s.get(8..10)? {
        d if d.starts_with(' ') => digits(&d[1..], 1)?,
        d => digits(d, 2)?,
    };
    let year = digits(s.get(20..24)?, 4)?;
    Some((
        day,
        month(s.get(4..7)?)?,
        i64::from(year),
        time(s.get(11..19)?)?,
    ))
}

/// Exactly `N` pieces separated by single `sep`s.
fn split_n<const N: usize>(s: &str, sep: char) -> Option<[&str; N]> {
    let v: Vec<&str> = s.split(sep).collect();
    v.try_into().ok()
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

fn month(m: &str) -> Option<u32> {
    MONTHS.iter().position(|x| *x == m).map(|i| i as u32 + 1)
}

/// `HH:MM:SS`, two digits each.
fn time(t: &str) -> Option<(u32, u32, u32)> {
    let [h, m, s] = split_n::<3>(t, ':')?;
    Some((digits(h, 2)?, digits(m, 2)?, digits(s, 2)?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

    #[test]
    fn ages() {
        assert_eq!(parse_age("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_age("10, 20"), Some(Duration::from_secs(10)));
        assert_eq!(parse_age("-1"), None);
        assert_eq!(parse_age("1.5"), None);
        assert_eq!(parse_age("10s"), None);
        assert_eq!(
            parse_age("99999999999999999999999"),
            Some(Duration::from_secs(1 << 31))
        );
    }

    #[test]
    fn dates_in_every_format_and_case() {
        let want = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        for s in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "sun, 06 nov 1994 08:49:37 gmt",
            "Mon, 06 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_date(s), Some(want), "{s}");
        }
        for bad in [
            "yesterday",
            "Thu 18 Aug 2050 02:01:18 GMT",
            "Thu, 18  Aug  2050 02:01:18 GMT",
            "Thu, 18-Aug-2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 2:01:18 GMT",
            "Thu, 18 Aug 2050 02.01.18 GMT",
            "Thu, 18 Aug 50 02:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 UTC",
            "0",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        let y2050 = httpdate::parse_http_date("Thu, 18 Aug 2050 02:01:18 GMT").unwrap();
        assert_eq!(parse_date("Thursday, 18-Aug-50 02:01:18 GMT"), Some(y2050));
        assert_eq!(parse_date("Sun, 32 Nov 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn cdn_cache_control_must_be_a_structured_dictionary() {
        for (cdn, ok) in [
            ("max-age=10000", true),
            ("max-age=10000, stale-if-error=60, foo=\"bar\", baz", true),
            ("private, no-store", true),
            ("max-age=10000, &&&&&", false),
            ("max-age=\"10000\"", false),
            ("Max-Age=1", false),
        ] {
            assert_eq!(valid_cdn_cache_control(cdn), ok, "{cdn}");
        }
    }
}
