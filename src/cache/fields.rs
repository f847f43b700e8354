//! The field values the caching rules read, parsed as their RFCs define them: HTTP dates
//! (RFC 9110 §5.6.7), `Age` (RFC 9111 §5.1) and the Structured Fields shape of
//! `CDN-Cache-Control` (RFC 9213, RFC 8941). Pure functions, no Pingora types.

use std::time::{Duration, SystemTime};

/// RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31.
const DELTA_SECONDS_OVERFLOW: u64 = 1 << 31;

/// RFC 9213 §2.1: `CDN-Cache-Control` is a Structured Fields dictionary; one that does not parse
/// as one, or whose delta-seconds directives are not integers, is ignored as a whole (then
/// `Cache-Control` applies).
pub fn valid_cdn_cache_control(value: &str) -> bool {
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

/// The `Age` value (§5.1): a non-negative integer, the first of a list; anything else is
/// ignored; too large a number is 2^31.
pub fn parse_age(value: &str) -> Option<Duration> {
    let first = value.split(',').next()?.trim();
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = first.parse::<u64>().unwrap_or(DELTA_SECONDS_OVERFLOW);
    Some(Duration::from_secs(secs.min(DELTA_SECONDS_OVERFLOW)))
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
