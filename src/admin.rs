//! The admin listener: `GET /healthz`, `/metrics`, `/quota?key=...`, `POST /purge` (JSON body,
//! see `crate::purge`), and the try-it page at `/` with its settings at
//! `/playground/config.json` (unless `admin.playground: false`).
//!
//! `/quota` and `/purge` answer only clients in `admin.allow_cidrs` (default: loopback) or
//! requests carrying `Authorization: Bearer <admin.token>`; `/healthz`, `/metrics` and the page
//! stay open to whoever reaches the listener.

use crate::metrics;
use crate::proxy::State;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::net::IpAddr;

pub struct Admin {
    pub state: &'static State,
    /// `None` when `admin.playground: false`.
    pub playground: Option<Playground>,
    pub access: Access,
}

/// Who may use the endpoints that read or change state (`/quota`, `/purge`).
pub struct Access {
    /// `admin.token`: accepted from any address as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// `admin.allow_cidrs`: addresses allowed without the token.
    pub allow: Vec<ipnet::IpNet>,
}

/// Why a protected admin request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// No credentials and the address is not allowed: 401.
    NoCredentials(String),
    /// A bearer token that is not `admin.token`: 403.
    WrongToken,
    /// Not allowed and no token configured that could allow it: 403.
    NotAllowed(String),
}

impl Access {
    pub fn new(config: &crate::config::AdminSettings) -> Access {
        Access {
            token: config.token.clone(),
            allow: config.allow_cidrs.clone(),
        }
    }

    /// `peer`: the client's socket address (never a forwarded header: the admin listener is
    /// reached directly). `authorization`: the raw header value, when sent.
    pub fn check(&self, peer: Option<IpAddr>, authorization: Option<&str>) -> Result<(), Denied> {
        let peer = peer.map(|ip| ip.to_canonical());
        if let Some(given) = authorization {
            let bearer = given
                .strip_prefix("Bearer ")
                .or_else(|| given.strip_prefix("bearer "))
                .map(str::trim);
            return match (&self.token, bearer) {
                (Some(t), Some(b)) if crate::purge::token_matches(t, b) => Ok(()),
                // A wrong or malformed credential is refused even from an allowed address: the
                // caller meant to authenticate and should learn that it failed.
                (Some(_), _) => Err(Denied::WrongToken),
                (None, _) if peer.is_some_and(|ip| self.allows(ip)) => Ok(()),
                (None, _) => Err(Denied::NotAllowed(addr_text(peer))),
            };
        }
        if peer.is_some_and(|ip| self.allows(ip)) {
            return Ok(());
        }
        if self.token.is_some() {
            Err(Denied::NoCredentials(addr_text(peer)))
        } else {
            Err(Denied::NotAllowed(addr_text(peer)))
        }
    }

    fn allows(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|n| n.contains(&ip))
    }
}

fn addr_text(peer: Option<IpAddr>) -> String {
    peer.map_or_else(|| "an unknown address".into(), |ip| ip.to_string())
}

impl Denied {
    fn response(&self, path: &str) -> Response<Vec<u8>> {
        match self {
            Denied::NoCredentials(addr) => {
                let mut r = json_error(
                    StatusCode::UNAUTHORIZED,
                    &format!("{path} needs Authorization: Bearer <admin.token> (requests from {addr} are not in admin.allow_cidrs)"),
                );
                r.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer realm=\"imgedge admin\""),
                );
                r
            }
            Denied::WrongToken => json_error(
                StatusCode::FORBIDDEN,
                &format!("{path}: wrong admin token (send Authorization: Bearer <admin.token>)"),
            ),
            Denied::NotAllowed(addr) => json_error(
                StatusCode::FORBIDDEN,
                &format!("{path} is not allowed from {addr}: add it to admin.allow_cidrs, or set admin.token and send it as a Bearer token"),
            ),
        }
    }
}

/// The try-it page (plain HTML/CSS/JS, no build step) and what it needs to know.
const PLAYGROUND_HTML: &str = include_str!("admin/playground.html");
/// Most sample paths listed on the page.
const MAX_SAMPLES: usize = 50;
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "avif"];

pub struct Playground {
    /// `/playground/config.json`, built once at start-up.
    config_json: Vec<u8>,
}

impl Playground {
    pub fn new(config: &crate::config::Config) -> Playground {
        let first = config.listen.first().map(String::as_str).unwrap_or("");
        // A wildcard listener is reached under whatever host the browser used for the admin.
        let (proxy, port) = match first.parse::<std::net::SocketAddr>() {
            Ok(a) if a.ip().is_unspecified() => (None, Some(a.port())),
            Ok(a) => (Some(format!("http://{a}")), Some(a.port())),
            Err(_) => (None, None),
        };
        let body = serde_json::json!({
            "proxy": proxy,
            "proxy_port": port,
            "samples": sample_paths(config),
        });
        Playground {
            config_json: body.to_string().into_bytes(),
        }
    }
}

/// Image files served by `dir` upstreams on host-less routes, as request paths.
fn sample_paths(config: &crate::config::Config) -> Vec<String> {
    let mut out = Vec::new();
    for route in config.routes.iter().filter(|r| r.host.is_none()) {
        let Some(up) = config.upstreams.get(route.upstream) else {
            continue;
        };
        let crate::config::UpstreamKind::Dir(root) = &up.kind else {
            continue;
        };
        let base = route.prefix.trim_end_matches('/');
        let dir = if route.strip_prefix {
            root.clone()
        } else {
            root.join(base.trim_start_matches('/'))
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| {
                n.rsplit_once('.').is_some_and(|(_, ext)| {
                    IMAGE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
                })
            })
            .collect();
        names.sort();
        for n in names {
            let encoded =
                percent_encoding::utf8_percent_encode(&n, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
                    .replace("%2E", ".")
                    .replace("%2D", "-")
                    .replace("%5F", "_");
            let path = format!("{base}/{encoded}");
            if !out.contains(&path) {
                out.push(path);
            }
            if out.len() >= MAX_SAMPLES {
                return out;
            }
        }
    }
    out
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .header("Content-Length", body.len())
        .header("Cache-Control", "no-store")
        .body(body)
        .unwrap_or_default()
}

fn json_error(status: StatusCode, msg: &str) -> Response<Vec<u8>> {
    let body = serde_json::json!({ "error": msg }).to_string() + "\n";
    reply(status, "application/json", body.into_bytes())
}

impl Admin {
    /// `POST /purge` with `{"url"|"path"|"prefix"|"tag": ..., "host"?: ...}`: removes the
    /// entries from memory and disk, answers `{"purged": N, ...}`.
    async fn purge(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if session.req_header().method != http::Method::POST {
            return json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "POST a JSON body: {\"url\": \"http://host/path\"}, {\"path\": \"/p\", \"host\": \"h\"}, {\"prefix\": \"/p/\"} or {\"tag\": \"t\"}",
            );
        }
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > crate::cache::purge::MAX_BODY {
                        return json_error(StatusCode::PAYLOAD_TOO_LARGE, "purge body too large");
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        &format!("cannot read the request body: {e}"),
                    )
                }
            }
        }
        let p = match crate::cache::purge::parse_body(&body) {
            Ok(p) => p,
            Err(msg) => return json_error(StatusCode::BAD_REQUEST, &msg),
        };
        let n = self.state.cache.purge(&p).await;
        let body = crate::cache::purge::answer(&p, n) + "\n";
        reply(StatusCode::OK, "application/json", body.into_bytes())
    }

    /// 200 while every pool has at least one healthy peer; 503 naming the pools that have none.
    pub fn healthz(&self) -> (StatusCode, String) {
        let down: Vec<&str> = self
            .state
            .pools
            .iter()
            .filter(|p| !p.health().iter().any(|(_, healthy)| *healthy))
            .map(|p| p.name.as_str())
            .collect();
        if down.is_empty() {
            (StatusCode::OK, "ok\n".into())
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("down: no healthy peer in upstream {}\n", down.join(", ")),
            )
        }
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = req.uri.path();
        if path == "/purge" || path == "/quota" {
            let peer = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            let authorization = req
                .headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap_or("?"));
            if let Err(denied) = self.access.check(peer, authorization) {
                log::warn!(
                    "admin {} {path} from {}: refused ({denied:?})",
                    req.method,
                    addr_text(peer)
                );
                return denied.response(path);
            }
        }
        if path == "/purge" {
            return self.purge(session).await;
        }
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"GET only\n".to_vec(),
            );
        }
        match (req.uri.path(), &self.playground) {
            ("/", Some(_)) => {
                let mut r = reply(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    PLAYGROUND_HTML.as_bytes().to_vec(),
                );
                let h = r.headers_mut();
                // Only inline code of its own; images and fetches go to the proxy.
                h.insert(
                    "Content-Security-Policy",
                    http::HeaderValue::from_static(
                        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src * blob: data:; connect-src *; base-uri 'none'; form-action 'none'",
                    ),
                );
                h.insert(
                    "X-Content-Type-Options",
                    http::HeaderValue::from_static("nosniff"),
                );
                r
            }
            ("/playground/config.json", Some(p)) => {
                reply(StatusCode::OK, "application/json", p.config_json.clone())
            }
            ("/healthz", _) => {
                let (status, body) = self.healthz();
                reply(status, "text/plain; charset=utf-8", body.into_bytes())
            }
            ("/quota", _) => {
                let key = req
                    .uri
                    .query()
                    .unwrap_or("")
                    .split('&')
                    .find_map(|p| p.strip_prefix("key="))
                    .map(|k| {
                        percent_encoding::percent_decode_str(k)
                            .decode_utf8_lossy()
                            .into_owned()
                    });
                let Some(key) = key.filter(|k| !k.is_empty()) else {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        "text/plain; charset=utf-8",
                        b"missing ?key= (a client IP, an org, an API key or a header value)\n"
                            .to_vec(),
                    );
                };
                let reports = self.state.limiter.quota(&key).await;
                let items: Vec<serde_json::Value> = reports
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "policy": r.name, "key": r.key, "rate": r.rate, "limit": r.limit,
                            "remaining": r.remaining, "reset_seconds": r.reset_secs,
                        })
                    })
                    .collect();
                let body = serde_json::json!({ "key": key, "limits": items }).to_string();
                reply(StatusCode::OK, "application/json", body.into_bytes())
            }
            ("/metrics", _) => {
                let (ct, body) = metrics::render(
                    &self.state.pools,
                    self.state.cache.storage,
                    &self.state.transformer,
                );
                reply(StatusCode::OK, &ct, body)
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                b"not found (try /healthz, /metrics, /quota?key=... or POST /purge)\n".to_vec(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn access(token: bool, allow: &[&str]) -> Access {
        Access {
            token: token.then(|| TOKEN.to_string()),
            allow: allow.iter().map(|c| c.parse().unwrap()).collect(),
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn allowed_networks_need_no_token() {
        let a = access(false, &["127.0.0.0/8", "::1/128"]);
        assert_eq!(a.check(ip("127.0.0.1"), None), Ok(()));
        assert_eq!(a.check(ip("::1"), None), Ok(()));
        // IPv4-mapped IPv6 peers (dual-stack listeners) count as their IPv4 address.
        assert_eq!(a.check(ip("::ffff:127.0.0.1"), None), Ok(()));
        assert!(matches!(
            a.check(ip("10.1.2.3"), None),
            Err(Denied::NotAllowed(_))
        ));
    }

    #[test]
    fn token_from_anywhere() {
        let a = access(true, &[]);
        let good = format!("Bearer {TOKEN}");
        assert_eq!(a.check(ip("203.0.113.9"), Some(&good)), Ok(()));
        assert!(matches!(
            a.check(ip("203.0.113.9"), None),
            Err(Denied::NoCredentials(_))
        ));
        assert_eq!(
            a.check(ip("203.0.113.9"), Some("Bearer nope")),
            Err(Denied::WrongToken)
        );
        assert_eq!(
            a.check(ip("203.0.113.9"), Some(&format!("Basic {TOKEN}"))),
            Err(Denied::WrongToken)
        );
        // A wrong token is refused even from an allowed address.
        let b = access(true, &["127.0.0.0/8"]);
        assert_eq!(
            b.check(ip("127.0.0.1"), Some("Bearer nope")),
            Err(Denied::WrongToken)
        );
        assert_eq!(b.check(ip("127.0.0.1"), None), Ok(()));
    }
}
