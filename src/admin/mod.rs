//! The admin listener: `GET /healthz`, `/metrics`, `/quota?key=...`, `POST /purge` (JSON body,
//! see `crate::purge`), and the try-it page at `/` with its settings at
//! `/playground/config.json` (unless `admin.playground: false`).
//!
//! Every request first passes `guard` (a `Host` among `admin.hostnames` or an IP, no foreign
//! `Origin`: web pages stay out). Then `/quota` and `/purge` answer only clients in
//! `admin.allow_cidrs` (default: loopback) or requests carrying `Authorization: Bearer
//! <admin.token>`; `/healthz`, `/metrics` and the page stay open to whoever reaches the
//! listener. `POST /purge` takes `Content-Type: application/json` only.

mod access;
mod guard;
mod metrics;
mod playground;

pub use access::Access;
pub use guard::Guard;
pub use playground::Playground;

use crate::proxy::State;
use access::addr_text;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use playground::PLAYGROUND_HTML;

pub struct Admin {
    pub state: &'static State,
    /// `None` when `admin.playground: false`.
    pub playground: Option<Playground>,
    pub access: Access,
    pub guard: Guard,
}

pub(crate) fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .header("Content-Length", body.len())
        .header("Cache-Control", "no-store")
        .body(body)
        .unwrap_or_default()
}

pub(crate) fn json_error(status: StatusCode, msg: &str) -> Response<Vec<u8>> {
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
        if let Err(refused) = Guard::check_json(session.req_header()) {
            return refused.response("/purge");
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
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if let Err(refused) = self.guard.check(req) {
            log::warn!(
                "admin {} {path} from {}: refused ({refused:?})",
                req.method,
                addr_text(peer)
            );
            return refused.response(path);
        }
        if path == "/purge" || path == "/quota" {
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
