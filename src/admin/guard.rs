//! What every admin request must pass before its endpoint is looked at: a `Host` among the
//! admin's names, and no foreign `Origin`; and for `POST /purge`, a JSON body type. Together
//! they keep web pages out: a page on another site may make a browser send simple requests
//! (`text/plain` or form POSTs, no preflight) to the admin listener, and a page whose DNS name
//! is rebound to 127.0.0.1 becomes same-origin with it, but its requests carry its own name
//! in `Host`.
//!
//! IP-literal hosts are always accepted: rebinding needs a name (a browser reaching an address
//! by IP sends that IP as `Host`, and the page is then the admin's own or cross-origin), and
//! probes by IP (Prometheus, Kubernetes) keep working. A request without `Host` (HTTP/1.0
//! tools) is accepted too: browsers always send one.

use super::json_error;
use http::{Response, StatusCode};
use pingora_http::RequestHeader;

/// Who may talk to the admin listener at all.
pub struct Guard {
    /// `admin.hostnames`, lower case, without trailing dots; `"*"` turns the check off.
    hostnames: Vec<String>,
    /// Origins of the try-it page (`admin.playground_origins` with the admin's own).
    origins: Vec<String>,
}

/// Why a request was refused before its endpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// `Host` is not one of `admin.hostnames` (nor an IP literal): 403.
    Host(String),
    /// A browser request from another site's page: 403.
    Origin(String),
    /// `POST /purge` without `Content-Type: application/json`: 415.
    MediaType(String),
}

impl Guard {
    pub fn new(config: &crate::config::AdminSettings) -> Guard {
        Guard {
            hostnames: config.hostnames.clone(),
            origins: config
                .playground_origins
                .iter()
                .filter(|o| *o != "*")
                .map(|o| o.to_ascii_lowercase())
                .collect(),
        }
    }

    /// The checks every admin request passes: `Host`, then `Origin`.
    pub fn check(&self, req: &RequestHeader) -> Result<(), Refused> {
        let mut hosts = req.headers.get_all(http::header::HOST).iter();
        let host = match (hosts.next(), hosts.next()) {
            (Some(h), None) => Some(
                h.to_str()
                    .map_err(|_| Refused::Host(String::from_utf8_lossy(h.as_bytes()).into()))?,
            ),
            (None, _) => req.uri.authority().map(|a| a.as_str()),
            (Some(_), Some(_)) => return Err(Refused::Host("several Host fields".into())),
        };
        if let Some(host) = host {
            if !self.host_allowed(host) {
                return Err(Refused::Host(host.to_string()));
            }
        }
        if let Some(origin) = req.headers.get(http::header::ORIGIN) {
            let origin = String::from_utf8_lossy(origin.as_bytes());
            if !self.origin_allowed(&origin, host) {
                return Err(Refused::Origin(origin.into_owned()));
            }
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            // `[v6]` or `[v6]:port`: an IP literal when it parses.
            Some(rest) => {
                return rest.split_once(']').is_some_and(|(a, tail)| {
                    a.parse::<std::net::Ipv6Addr>().is_ok()
                        && (tail.is_empty() || tail.strip_prefix(':').is_some_and(is_port))
                })
            }
            None => match host.split_once(':') {
                Some((name, port)) if is_port(port) => name,
                Some(_) => return false,
                None => host,
            },
        };
        if name.parse::<std::net::Ipv4Addr>().is_ok() {
            return true;
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.hostnames.iter().any(|h| h == "*" || *h == name)
    }

    /// Absent, the page's own (same scheme-less authority as `Host`), or a try-it page origin.
    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if self.origins.contains(&origin) {
            return true;
        }
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
    }

    /// `POST /purge` takes `application/json` only: a browser sends that type cross-origin
    /// only after a CORS preflight, which the admin listener never grants.
    pub fn check_json(req: &RequestHeader) -> Result<(), Refused> {
        let given = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let essence = given.as_deref().map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        match essence.as_deref() {
            Some("application/json") => Ok(()),
            _ => Err(Refused::MediaType(given.unwrap_or_else(|| "none".into()))),
        }
    }
}

/// A port number as written after a host's colon.
fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

impl Refused {
    pub fn response(&self, path: &str) -> Response<Vec<u8>> {
        match self {
            Refused::Host(host) => json_error(
                StatusCode::FORBIDDEN,
                &format!("{path}: Host {host:?} is not a name of this admin listener (add it to admin.hostnames; IP addresses are always accepted)"),
            ),
            Refused::Origin(origin) => json_error(
                StatusCode::FORBIDDEN,
                &format!("{path}: requests from pages of Origin {origin:?} are refused (only the admin's own pages and admin.playground_origins)"),
            ),
            Refused::MediaType(given) => {
                let mut r = json_error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &format!("{path} takes a JSON body: send Content-Type: application/json (got {given})"),
                );
                r.headers_mut().insert(
                    "Accept-Post",
                    http::HeaderValue::from_static("application/json"),
                );
                r
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard {
            hostnames: vec!["localhost".into(), "admin.internal".into()],
            origins: vec!["http://127.0.0.1:9180".into()],
        }
    }

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/metrics", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn hosts() {
        let g = guard();
        for ok in [
            "localhost",
            "LOCALHOST:9180",
            "localhost.",
            "admin.internal:1",
            "127.0.0.1",
            "10.1.2.3:9180",
            "[::1]",
            "[::1]:9180",
        ] {
            assert_eq!(g.check(&req(&[("Host", ok)])), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9180",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "localhost:x",
            "[::1",
            "[evil]:80",
            "",
        ] {
            assert!(
                matches!(g.check(&req(&[("Host", bad)])), Err(Refused::Host(_))),
                "{bad}"
            );
        }
        assert!(g
            .check(&req(&[("Host", "localhost"), ("Host", "evil")]))
            .is_err());
        assert_eq!(g.check(&req(&[])), Ok(()), "no Host: not a browser");
        let any = Guard {
            hostnames: vec!["*".into()],
            origins: vec![],
        };
        assert_eq!(any.check(&req(&[("Host", "evil.example")])), Ok(()));
    }

    #[test]
    fn origins() {
        let g = guard();
        let with = |host: &str, origin: &str| g.check(&req(&[("Host", host), ("Origin", origin)]));
        assert_eq!(with("localhost:9180", "http://localhost:9180"), Ok(()));
        assert_eq!(with("127.0.0.1:1", "http://127.0.0.1:9180"), Ok(()));
        assert_eq!(with("admin.internal", "https://admin.internal"), Ok(()));
        for foreign in [
            "http://evil.example",
            "null",
            "http://localhost:9181",
            "file://",
        ] {
            assert!(
                matches!(with("localhost:9180", foreign), Err(Refused::Origin(_))),
                "{foreign}"
            );
        }
    }

    #[test]
    fn json_only() {
        let ct = |v: &str| Guard::check_json(&req(&[("Content-Type", v)]));
        assert_eq!(ct("application/json"), Ok(()));
        assert_eq!(ct("Application/JSON; charset=utf-8"), Ok(()));
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
        ] {
            assert!(ct(bad).is_err(), "{bad}");
        }
        assert!(Guard::check_json(&req(&[])).is_err());
    }
}
