//! A fresh memory hit sent with sendfile() from its memfd copy (`cache.sendfile_hits`, see
//! `cache::fastpath` and `sendfile`), straight from `request_filter`, when the answer is
//! exactly the stored 200 with the headers a hit through Pingora gets.

use super::ctx::{Ctx, Direct};
use super::state::State;
use pingora::prelude::*;
use pingora_cache::key::CacheHashKey;
use pingora_http::{RequestHeader, ResponseHeader};
use std::time::{Duration, SystemTime};

/// How long a sendfile hit waits for a client that accepts no bytes, when the server sets no
/// downstream write timeout.
const DIRECT_WRITE_STALL: Duration = Duration::from_secs(60);

/// A request whose answer from a fresh entry is the whole stored 200: no conditions, no
/// ranges, no cache directives, no body, no upgrade (those take the normal path).
fn plain_request(req: &RequestHeader) -> bool {
    use http::header::*;
    let h = &req.headers;
    let special = [
        RANGE,
        IF_RANGE,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_MATCH,
        IF_UNMODIFIED_SINCE,
        CACHE_CONTROL,
        PRAGMA,
        EXPECT,
        UPGRADE,
        TRANSFER_ENCODING,
    ];
    if special.iter().any(|name| h.contains_key(name)) {
        return false;
    }
    h.get(CONTENT_LENGTH).is_none_or(|v| v.as_bytes() == b"0")
}

/// The HTTP/1.1 status line and header block of `resp`, as Pingora's writer serializes it.
fn h1_head(resp: &ResponseHeader) -> Vec<u8> {
    let mut buf = bytes::BytesMut::with_capacity(1024);
    buf.extend_from_slice(b"HTTP/1.1 ");
    buf.extend_from_slice(resp.status.as_str().as_bytes());
    buf.extend_from_slice(b" ");
    if let Some(reason) = resp.get_reason_phrase() {
        buf.extend_from_slice(reason.as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    resp.header_to_h1_wire(&mut buf);
    buf.extend_from_slice(b"\r\n");
    buf.to_vec()
}

/// Whether this request may take the sendfile path at all (before any lookup).
fn eligible(state: &State, session: &Session, ctx: &Ctx) -> bool {
    if state.cache.storage.fast.is_none() || ctx.transform.negotiated() {
        return false;
    }
    match ctx.request.route {
        Some(i) if state.router.get(i).cache => {}
        _ => return false,
    }
    let req = session.req_header();
    req.method == http::Method::GET && req.version == http::Version::HTTP_11 && plain_request(req)
}

/// Serves the hit. `Ok(false)`: not such a request or no current copy; the normal path serves
/// it. An error mid-response closes the connection.
pub async fn serve(state: &State, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
    // The source cache's own fetches take the normal path (their socket is a Unix one, and
    // they are not client hits).
    if ctx.request.internal || !eligible(state, session, ctx) {
        return Ok(false);
    }
    let down = session.as_downstream();
    // HTTP/1 only (no stream for H2 or subrequests), and never under TLS.
    let Some(stream) = down.stream() else {
        return Ok(false);
    };
    if stream.get_ssl_digest().is_some() || down.digest().is_some_and(|d| d.ssl_digest.is_some()) {
        return Ok(false);
    }
    let sock = stream.id();
    // Handing over to a new process (graceful reload): this response ends the connection.
    let draining = state.draining();
    let keepalive = !draining
        && down.get_keepalive().is_some()
        && down.get_keepalive_reuses_remaining() != Some(0);
    let stall = down.get_write_timeout().unwrap_or(DIRECT_WRITE_STALL);
    let key = super::admit::cache_key(session.req_header(), ctx);
    let hash = key.combined_bin();
    let Some(copy) = state.cache.storage.fast_hit(&hash) else {
        ctx.cache.key = Some(key);
        return Ok(false);
    };
    // Invalidated by an unsafe method since it was stored (its epoch is never later than
    // that): the normal path revalidates it.
    let (host, path) = (&ctx.request.host, &ctx.request.path);
    if state
        .cache
        .invalidations
        .is_invalidated(host, path, copy.epoch)
    {
        ctx.cache.key = Some(key);
        return Ok(false);
    }
    ctx.cache.enabled = true;
    ctx.cache.hash = Some(hash);
    // What Pingora's hit path and HTTP/1 writer do: Age, version, Accept-Ranges (a 200 with a
    // length may be asked in ranges), then ours, then Date and Connection.
    let mut resp = copy.header.clone();
    let age = SystemTime::now()
        .duration_since(copy.epoch)
        .unwrap_or_default()
        .as_secs();
    resp.insert_header(http::header::AGE, age)?;
    resp.set_version(http::Version::HTTP_11);
    resp.insert_header(http::header::ACCEPT_RANGES, "bytes")?;
    super::reply::client_headers(state, &mut resp, "HIT", ctx)?;
    let date = pingora_core::protocols::http::date::get_cached_date();
    resp.insert_header(http::header::DATE, date)?;
    if draining {
        session.set_keepalive(None);
    }
    let connection = if keepalive { "keep-alive" } else { "close" };
    resp.insert_header(http::header::CONNECTION, connection)?;
    let head = h1_head(&resp);
    let (fd, len) = (copy.body.raw_fd(), copy.body.len());
    let sent = super::sendfile::send_response(sock, &head, fd, len, stall).await;
    // Fairness: this path makes no runtime I/O calls, so a keep-alive client whose next request
    // is already in would be served again and again before the task yields (a normal hit
    // yields on its writes); let the other connections of this thread run.
    tokio::task::yield_now().await;
    let (bytes, result) = match sent {
        Ok(n) => (n, Ok(true)),
        Err(f) => {
            let msg = format!("sendfile hit: {}", f.error);
            let e = Error::explain(ErrorType::WriteError, msg).into_down();
            (f.body_sent, Err(e))
        }
    };
    ctx.request.direct = Some(Direct {
        status: 200,
        cache: "HIT",
        bytes,
    });
    result
}
