//! What the proxy tells the origin about the client, and what it keeps to itself.
//!
//! Request (after Pingora has removed the standard hop-by-hop fields and those named by
//! `Connection`):
//! - `X-Forwarded-For`: the chain received from a peer in `limits.trusted_proxies`, with the peer's
//!   address appended; from any other peer only the peer's address (a client could write
//!   anything there, and origins that read the leftmost entry would believe it).
//! - `Forwarded` (RFC 7239): same rule; the element appended is
//!   `for=<peer>;proto=<http|https>;host=<Host>`, IPv6 quoted as `for="[::1]"`.
//! - `X-Forwarded-Proto` / `X-Forwarded-Host`: kept from a trusted peer, otherwise set from this
//!   connection and the `Host` sent to the origin (lower-cased, without its port: what the cache
//!   key holds); `X-Real-IP` from an untrusted peer is removed.
//!
//! Response: hop-by-hop fields of the origin's answer (`Connection` and the fields it names,
//! `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`, `TE`, `Trailer`, `Upgrade`) are removed
//! before it is cached or sent; Pingora writes its own `Connection` and framing.

use http::header::{self, HeaderName};
use ipnet::IpNet;
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use std::net::IpAddr;

/// The client side of one request, as seen by this proxy.
pub struct Hop<'a> {
    /// Address of the peer connected to us.
    pub peer: IpAddr,
    /// The connection to us is TLS.
    pub tls: bool,
    /// `Host` (or HTTP/2 `:authority`) as received.
    pub host: Option<&'a str>,
}

/// Whether `ip` is one of `limits.trusted_proxies`.
pub fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|n| n.contains(&ip))
}

/// Every line of a list-valued header, in order, joined with ", " (the lines are not split:
/// a `Forwarded` quoted-string may hold a comma). Lines that are not visible ASCII are dropped.
fn joined(req: &RequestHeader, name: &str) -> Option<String> {
    let parts: Vec<&str> = req
        .headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.trim().trim_matches(',').trim())
        .filter(|p| !p.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// RFC 7230 `tchar`.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// A `Forwarded` parameter value: a token when it is one, else a quoted-string.
fn param_value(v: &str) -> String {
    if !v.is_empty() && v.chars().all(is_tchar) {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The `Forwarded` element this proxy appends.
pub fn forwarded_element(hop: &Hop) -> String {
    let node = match hop.peer.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        // RFC 7239 section 6: IPv6 in brackets, and therefore quoted.
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let proto = if hop.tls { "https" } else { "http" };
    let mut out = format!("for={node};proto={proto}");
    // A Host with characters that cannot appear in a quoted-string is left out.
    if let Some(h) = hop
        .host
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
    {
        out.push_str(";host=");
        out.push_str(&param_value(h));
    }
    out
}

/// Sets the forwarding headers of the request sent to the origin (see the module comment).
pub fn apply(req: &mut RequestHeader, hop: &Hop, trusted: bool) -> Result<()> {
    let peer = hop.peer.to_canonical().to_string();
    let prior_xff = if trusted {
        joined(req, "x-forwarded-for")
    } else {
        None
    };
    let prior_fwd = if trusted {
        joined(req, "forwarded")
    } else {
        None
    };
    let xff = match prior_xff {
        Some(p) => format!("{p}, {peer}"),
        None => peer,
    };
    let element = forwarded_element(hop);
    let fwd = match prior_fwd {
        Some(p) => format!("{p}, {element}"),
        None => element,
    };
    // insert_header replaces every earlier line of the same name.
    req.insert_header("X-Forwarded-For", xff)?;
    req.insert_header(header::FORWARDED, fwd)?;
    let keep = |req: &RequestHeader, name: &str| trusted && req.headers.contains_key(name);
    if !keep(req, "x-forwarded-proto") {
        req.insert_header("X-Forwarded-Proto", if hop.tls { "https" } else { "http" })?;
    }
    if !keep(req, "x-forwarded-host") {
        match hop.host.filter(|h| !h.is_empty()) {
            Some(h) => req.insert_header("X-Forwarded-Host", h)?,
            None => {
                req.remove_header("x-forwarded-host");
            }
        }
    }
    if !trusted {
        req.remove_header("x-real-ip");
    }
    Ok(())
}

/// Why a request path must not go to an origin: a `..` segment (also percent-encoded, or with
/// `\` as separator, which some origins accept) could climb out of the route's prefix at an
/// origin that normalizes paths, and a NUL truncates paths in file-backed origins.
pub fn path_problem(path: &str) -> Option<&'static str> {
    let decoded = percent_encoding::percent_decode_str(path).collect::<Vec<u8>>();
    if decoded.contains(&0) {
        return Some("NUL byte in the path");
    }
    if decoded
        .split(|b| *b == b'/' || *b == b'\\')
        .any(|seg| seg == b"..")
    {
        return Some("\"..\" segment in the path");
    }
    None
}

/// Response fields that describe the origin connection, not the resource.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

/// Fields a `Connection` header may not remove: Pingora frames the body with them, and the
/// transform reads them.
const PROTECTED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "content-type",
    "date",
];

/// Removes the hop-by-hop fields of an origin response (and those its `Connection` names).
pub fn strip_response(resp: &mut ResponseHeader) {
    let named: Vec<HeaderName> = resp
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !PROTECTED.contains(&n.as_str()))
        .collect();
    for n in named {
        resp.remove_header(&n);
    }
    // A 101 never reaches here (upgrades are not forwarded), so Upgrade is always stale.
    for h in HOP_BY_HOP {
        resp.remove_header(*h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/x", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn all(r: &RequestHeader, name: &str) -> Vec<String> {
        r.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    fn hop(peer: &str, tls: bool, host: Option<&'static str>) -> Hop<'static> {
        Hop {
            peer: peer.parse().unwrap(),
            tls,
            host,
        }
    }

    #[test]
    fn untrusted_chain_is_replaced() {
        let mut r = req(&[
            ("X-Forwarded-For", "6.6.6.6"),
            ("Forwarded", "for=6.6.6.6"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Proto", "https"),
            ("X-Real-IP", "6.6.6.6"),
        ]);
        apply(
            &mut r,
            &hop("203.0.113.7", false, Some("img.example.com")),
            false,
        )
        .unwrap();
        assert_eq!(all(&r, "x-forwarded-for"), ["203.0.113.7"]);
        assert_eq!(
            all(&r, "forwarded"),
            ["for=203.0.113.7;proto=http;host=img.example.com"]
        );
        assert_eq!(all(&r, "x-forwarded-host"), ["img.example.com"]);
        assert_eq!(all(&r, "x-forwarded-proto"), ["http"]);
        assert!(all(&r, "x-real-ip").is_empty());
    }

    #[test]
    fn trusted_chain_is_appended_to() {
        let mut r = req(&[
            ("X-Forwarded-For", "198.51.100.1, 10.0.0.2"),
            ("X-Forwarded-For", "10.0.0.3"),
            ("Forwarded", "for=198.51.100.1"),
            ("Forwarded", "for=10.0.0.2;proto=https"),
            ("X-Forwarded-Proto", "https"),
        ]);
        apply(
            &mut r,
            &hop("10.0.0.3", true, Some("img.example.com:8443")),
            true,
        )
        .unwrap();
        assert_eq!(
            all(&r, "x-forwarded-for"),
            ["198.51.100.1, 10.0.0.2, 10.0.0.3, 10.0.0.3"]
        );
        assert_eq!(
            all(&r, "forwarded"),
            ["for=198.51.100.1, for=10.0.0.2;proto=https, for=10.0.0.3;proto=https;host=\"img.example.com:8443\""]
        );
        assert_eq!(all(&r, "x-forwarded-proto"), ["https"]);
        assert_eq!(all(&r, "x-forwarded-host"), ["img.example.com:8443"]);
    }

    #[test]
    fn ipv6_is_bracketed_and_quoted() {
        let h = hop("::1", false, Some("[::1]:8080"));
        assert_eq!(
            forwarded_element(&h),
            "for=\"[::1]\";proto=http;host=\"[::1]:8080\""
        );
        // IPv4-mapped addresses are written as IPv4.
        let h = hop("::ffff:192.0.2.1", true, None);
        assert_eq!(forwarded_element(&h), "for=192.0.2.1;proto=https");
        let mut r = req(&[]);
        apply(&mut r, &hop("2001:db8::7", false, None), false).unwrap();
        assert_eq!(all(&r, "x-forwarded-for"), ["2001:db8::7"]);
        assert!(all(&r, "x-forwarded-host").is_empty());
    }

    #[test]
    fn host_quoting() {
        assert_eq!(param_value("a.b"), "a.b");
        assert_eq!(param_value("a\"b\\c"), "\"a\\\"b\\\\c\"");
        let h = hop("192.0.2.1", false, Some("bad host"));
        assert_eq!(forwarded_element(&h), "for=192.0.2.1;proto=http");
    }

    #[test]
    fn paths() {
        for ok in [
            "/", "/a/b.jpg", "/a..b/c", "/..a", "/a/.../b", "/a%20b", "/a%2Fb",
        ] {
            assert_eq!(path_problem(ok), None, "{ok}");
        }
        for bad in [
            "/..",
            "/img/../secret",
            "/img/%2e%2e/secret",
            "/img/%2E./secret",
            "/img/..%2fsecret",
            "/img/..%5csecret",
            "/img\\..\\secret",
            "/a%00.jpg",
        ] {
            assert!(path_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn trust() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(is_trusted(&nets, "10.1.1.1".parse().unwrap()));
        assert!(is_trusted(&nets, "::ffff:10.1.1.1".parse().unwrap()));
        assert!(!is_trusted(&nets, "11.1.1.1".parse().unwrap()));
    }

    #[test]
    fn response_hop_by_hop() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        for (k, v) in [
            ("Connection", "close, X-Internal, Content-Length"),
            ("X-Internal", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("Proxy-Authenticate", "Basic"),
            ("Trailer", "X-Checksum"),
            ("Upgrade", "h2c"),
            ("TE", "trailers"),
            ("Content-Length", "3"),
            ("Content-Type", "image/png"),
            ("Cache-Control", "max-age=60"),
        ] {
            r.append_header(k, v).unwrap();
        }
        strip_response(&mut r);
        let mut left: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["cache-control", "content-length", "content-type"]);
    }
}
