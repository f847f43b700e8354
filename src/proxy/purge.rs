//! Purge requests on the proxy listeners (`PURGE /path` with `Authorization: Bearer
//! <admin.token>`). The purge language (`POST /purge` bodies too) is `cache::purge`; both end
//! in `Cache::purge`, which removes entries from memory and disk.

use super::state::State;
use crate::cache::purge::{answer, parse_proxy_request};
use crate::signing::token_matches;
use bytes::Bytes;
use pingora::prelude::*;
use pingora_http::ResponseHeader;

async fn reply(session: &mut Session, status: u16, json: String) -> Result<()> {
    let body = Bytes::from(format!("{json}\n"));
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.insert_header("X-Cache-Status", "BYPASS")?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

fn error_json(msg: &str) -> String {
    serde_json::json!({ "error": msg }).to_string()
}

/// `PURGE /path` on a proxy listener: every variant of the path on the request's host;
/// `PURGE /prefix*`: every path starting with the prefix; `X-Purge-Tag: t` (path ignored):
/// every entry tagged `t`. 405 without `admin.token`, 403 without the right bearer token.
pub async fn serve_proxy_purge(
    session: &mut Session,
    state: &'static State,
    host: &str,
) -> Result<()> {
    let Some(token) = state.purge_token.as_deref() else {
        let msg = "PURGE is not enabled on this listener: set admin.token, or use POST /purge on the admin listener";
        return reply(session, 405, error_json(msg)).await;
    };
    let req = session.req_header();
    let given = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !token_matches(token, given.trim()) {
        log::warn!(
            "PURGE {} refused: missing or wrong admin token",
            req.uri.path()
        );
        let msg = "PURGE needs Authorization: Bearer <admin.token>";
        return reply(session, 403, error_json(msg)).await;
    }
    let tag = req.headers.get("x-purge-tag").and_then(|v| v.to_str().ok());
    let p = match parse_proxy_request(host, req.uri.path(), tag) {
        Ok(p) => p,
        Err(msg) => return reply(session, 400, error_json(&msg)).await,
    };
    let n = state.cache.purge(&p).await;
    reply(session, 200, answer(&p, n)).await
}
