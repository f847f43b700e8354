//! Limits on the size of what a client sends (request target, header block), checked first in
//! `request_filter`: oversized requests are answered before routing, caching or any upstream.

use crate::config::HttpLimits;
use pingora_http::RequestHeader;

/// Bytes a header line takes on the wire beyond its name and value (`: ` and CRLF).
const LINE_OVERHEAD: usize = 4;

/// `Some((status, reason))` when the request is over a limit: 414 for the target, 431 for the
/// headers.
pub fn check(limits: &HttpLimits, req: &RequestHeader) -> Option<(u16, String)> {
    let target = req
        .uri
        .path_and_query()
        .map_or(req.uri.path().len(), |pq| pq.as_str().len());
    if target > limits.max_url_bytes {
        return Some((
            414,
            format!(
                "URI too long: {target} bytes, at most {} (http.max_url_bytes)",
                limits.max_url_bytes
            ),
        ));
    }
    let headers: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + LINE_OVERHEAD)
        .sum();
    if headers > limits.max_header_bytes {
        return Some((
            431,
            format!(
                "request header fields too large: {headers} bytes, at most {} (http.max_header_bytes)",
                limits.max_header_bytes
            ),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HttpLimits = HttpLimits {
        max_url_bytes: 100,
        max_header_bytes: 200,
    };

    fn req(target: &str, headers: &[(&str, String)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), v.as_str()).unwrap();
        }
        r
    }

    #[test]
    fn within_limits_passes() {
        assert_eq!(
            check(&LIMITS, &req("/a.jpg?w=1", &[("host", "x".into())])),
            None
        );
    }

    #[test]
    fn long_target_is_414() {
        let long = format!("/a.jpg?x={}", "a".repeat(100));
        assert_eq!(check(&LIMITS, &req(&long, &[])).unwrap().0, 414);
    }

    #[test]
    fn large_headers_are_431_counting_every_line() {
        let h = [("x-a", "v".repeat(100)), ("x-b", "v".repeat(100))];
        assert_eq!(check(&LIMITS, &req("/", &h[..1])), None);
        assert_eq!(check(&LIMITS, &req("/", &h)).unwrap().0, 431);
    }
}
