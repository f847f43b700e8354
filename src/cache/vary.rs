//! `Vary` (RFC 9111 §4.1): the secondary key of a stored response, made of the request's values
//! of the fields the response varies on, and a bound on how many variants one URL may hold.
//! `Accept` and `Accept-Encoding` are normalised (case, spaces, order, parameters) so that
//! browsers writing the same preferences differently share one variant.

use http::header::VARY;
use http::HeaderMap;
use parking_lot::Mutex;
use pingora_cache::key::HashBinary;
use pingora_cache::VarianceBuilder;
use pingora_http::RequestHeader;
use std::num::NonZeroUsize;

/// Most URLs whose variants are counted at once (least recently stored dropped first: its count
/// starts again).
const TRACKED_URLS: usize = 65_536;

/// The field names a response varies on, lower-cased, sorted, without duplicates.
pub fn fields(resp: &HeaderMap) -> Vec<String> {
    let mut names: Vec<String> = resp
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Whether a `Vary` value lists `name` (case-insensitive, as a whole member).
pub fn lists(vary: &str, name: &str) -> bool {
    vary.split(',').any(|n| n.trim().eq_ignore_ascii_case(name))
}

/// The variance of a request against a stored response's `Vary` (`None`: no variance). `skip`
/// names fields already in the primary key (the negotiated format makes `Accept` one).
pub fn variance(resp: &HeaderMap, req: &RequestHeader, skip: &[&str]) -> Option<HashBinary> {
    let mut b = VarianceBuilder::new();
    for name in fields(resp) {
        if skip.contains(&name.as_str()) {
            continue;
        }
        let value = request_value(req, &name);
        b.add_owned_name_value(name, value);
    }
    b.finalize()
}

/// The request's value of one field, normalised; a marker byte when absent, so that "absent"
/// and "empty" differ.
fn request_value(req: &RequestHeader, name: &str) -> Vec<u8> {
    let mut lines = req
        .headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .peekable();
    if lines.peek().is_none() {
        return vec![0];
    }
    let joined = lines.collect::<Vec<_>>().join(",");
    let normalised = match name {
        "accept" | "accept-encoding" | "accept-language" => preference_list(&joined),
        _ => collapse_spaces(&joined),
    };
    let mut out = Vec::with_capacity(normalised.len() + 1);
    out.push(1);
    out.extend_from_slice(normalised.as_bytes());
    out
}

/// A preference list (`Accept`-like) as a set: lower-cased members with their parameters,
/// those with `q=0` dropped, sorted. Order and spacing carry no meaning here.
fn preference_list(value: &str) -> String {
    let mut members: Vec<String> = value
        .split(',')
        .filter_map(|m| {
            let mut parts = m.split(';').map(|p| p.trim().to_ascii_lowercase());
            let name = parts.next().filter(|n| !n.is_empty())?;
            let params: Vec<String> = parts.filter(|p| !p.is_empty()).collect();
            let refused = params.iter().any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            let mut member = name;
            for p in params.iter().filter(|p| !p.starts_with("q=")) {
                member.push(';');
                member.push_str(p);
            }
            (!refused).then_some(member)
        })
        .collect();
    members.sort();
    members.dedup();
    members.join(",")
}

fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Counts the variants stored per URL and refuses new ones past `max` (so a header with endless
/// values cannot fill the cache with copies of one response).
pub struct VariantBound {
    max: usize,
    seen: Mutex<lru::LruCache<HashBinary, Vec<HashBinary>>>,
}

impl VariantBound {
    pub fn new(max: usize) -> VariantBound {
        let cap = NonZeroUsize::new(TRACKED_URLS).unwrap_or(NonZeroUsize::MIN);
        VariantBound {
            max,
            seen: Mutex::new(lru::LruCache::new(cap)),
        }
    }

    /// Whether the variant `variance` of the URL `primary` may be stored (and count it).
    pub fn admit(&self, primary: HashBinary, variance: HashBinary) -> bool {
        let mut seen = self.seen.lock();
        let known = seen.get_or_insert_mut(primary, Vec::new);
        if known.contains(&variance) {
            return true;
        }
        if known.len() >= self.max {
            return false;
        }
        known.push(variance);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn vary(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(VARY, v.parse().unwrap());
        h
    }

    #[test]
    fn same_preferences_written_differently_share_a_variant() {
        let v = vary("Accept-Encoding");
        let a = variance(&v, &req(&[("accept-encoding", "gzip, br")]), &[]);
        let b = variance(&v, &req(&[("accept-encoding", "BR,gzip;q=1")]), &[]);
        let c = variance(&v, &req(&[("accept-encoding", "gzip")]), &[]);
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn absent_and_empty_differ_and_fields_are_a_set() {
        let v = vary("Foo, Bar");
        let absent = variance(&v, &req(&[]), &[]);
        let empty = variance(&v, &req(&[("foo", "")]), &[]);
        assert_ne!(absent, empty);
        let ab = variance(&vary("foo, bar"), &req(&[("foo", "1"), ("bar", "2")]), &[]);
        let ba = variance(&vary("BAR,Foo"), &req(&[("bar", "2"), ("foo", "1")]), &[]);
        assert_eq!(ab, ba);
        assert!(variance(&vary("Accept"), &req(&[]), &["accept"]).is_none());
    }

    #[test]
    fn variants_are_bounded_per_url() {
        let b = VariantBound::new(2);
        let (url, other) = ([1u8; 16], [2u8; 16]);
        assert!(b.admit(url, [10; 16]));
        assert!(b.admit(url, [11; 16]));
        assert!(b.admit(url, [10; 16]), "a known variant is always admitted");
        assert!(!b.admit(url, [12; 16]));
        assert!(b.admit(other, [12; 16]));
    }
}
