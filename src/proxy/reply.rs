//! Answers the proxy writes itself (refusals, errors, busy) and the headers every response to
//! a client gets (cache status, rate-limit state, transform timing, CORS).

use super::ctx::Ctx;
use super::state::State;
use bytes::Bytes;
use pingora::prelude::*;
use pingora_error::ErrorSource;
use pingora_http::{RequestHeader, ResponseHeader};

/// Response headers the try-it page reads across origins.
const CORS_EXPOSE: &str =
    "X-Cache-Status, Content-Type, Content-Length, Server-Timing, X-Transform-Ms, Imgedge-Warning";

/// The allowed-origin value for a request's `Origin` (`*` when every origin is allowed).
pub fn cors_origin(allowed: &[String], req: &RequestHeader) -> Option<String> {
    if allowed.is_empty() {
        return None;
    }
    let origin = req.headers.get(http::header::ORIGIN)?.to_str().ok()?;
    if allowed.iter().any(|a| a == "*") {
        return Some("*".into());
    }
    allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(origin))
        .then(|| origin.to_string())
}

/// CORS headers so a page on an allowed origin can read the response and its headers.
pub fn add_cors(resp: &mut ResponseHeader, origin: &str) -> Result<()> {
    resp.insert_header("Access-Control-Allow-Origin", origin)?;
    resp.insert_header("Access-Control-Expose-Headers", CORS_EXPOSE)?;
    resp.insert_header("Timing-Allow-Origin", origin)?;
    if origin != "*" {
        let vary = match resp
            .headers
            .get(http::header::VARY)
            .and_then(|v| v.to_str().ok())
        {
            Some(v) if v.to_ascii_lowercase().contains("origin") => v.to_string(),
            Some(v) => format!("{v}, Origin"),
            None => "Origin".to_string(),
        };
        resp.insert_header(http::header::VARY, vary)?;
    }
    Ok(())
}

/// Writes a short plain-text answer (a one-line reason) and ends the request.
pub async fn respond_text(
    session: &mut Session,
    cors: Option<&str>,
    status: u16,
    body: &str,
) -> Result<()> {
    respond_with(session, cors, status, body, &[]).await
}

/// Like [`respond_text`], with extra headers.
pub async fn respond_with(
    session: &mut Session,
    cors: Option<&str>,
    status: u16,
    body: &str,
    headers: &[(String, String)],
) -> Result<()> {
    let body = Bytes::from(format!("{body}\n"));
    let mut resp = ResponseHeader::build(status, Some(7 + headers.len()))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header("X-Cache-Status", "BYPASS")?;
    for (k, v) in headers {
        resp.insert_header(k.clone(), v.as_str())?;
    }
    if let Some(origin) = cors {
        add_cors(&mut resp, origin)?;
    }
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// 503 with `Retry-After` when the transform pool and its queue are full.
pub async fn respond_busy(session: &mut Session, cors: Option<&str>) -> Result<()> {
    let body = Bytes::from_static(b"busy: the transform queue is full, retry shortly\n");
    let mut resp = ResponseHeader::build(503, Some(8))?;
    if let Some(origin) = cors {
        add_cors(&mut resp, origin)?;
    }
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(http::header::RETRY_AFTER, "1")?;
    resp.insert_header("X-Cache-Status", "BYPASS")?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// Status for a failed request; 0 when the client is gone and nothing can be sent.
fn error_status(e: &Error, upstream_chosen: bool) -> u16 {
    use ErrorType::*;
    match e.etype() {
        HTTPStatus(code) => *code,
        ConnectTimedout | ReadTimedout | WriteTimedout => 504,
        _ => match e.esource() {
            ErrorSource::Downstream => match e.etype() {
                WriteError | ReadError | ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Upstream => 502,
            // TLS and connect failures may come without a source: blame the origin when one
            // was being contacted.
            _ if upstream_chosen => 502,
            _ => 500,
        },
    }
}

/// Answers a failed request with a status and a one-line reason: 502 when the origin failed
/// (connect, TLS, reset, garbage), 504 when it timed out, 4xx for a bad client request, the
/// transform's own status and reason when it failed. Returns the status (0: nothing sent).
pub async fn error_answer(state: &State, session: &mut Session, e: &Error, ctx: &mut Ctx) -> u16 {
    ctx.origin.deadlines = None;
    let fault = ctx.origin.fault.take();
    let failure = ctx.transform.failure.take();
    let transform_failed = failure.is_some();
    let code = match &fault {
        Some((status, _)) if failure.is_none() => *status,
        _ => error_status(e, ctx.origin.peer.is_some()),
    };
    if code == 0 {
        return 0;
    }
    let pool = state
        .pool(ctx.request.route)
        .map_or("-", |p| p.name.as_str());
    let reason = match (failure, fault) {
        // A failed transform carries its one-line reason.
        (Some(reason), _) => reason,
        // An origin timeout: said precisely.
        (None, Some((_, reason))) => reason,
        (None, None) => match code {
            502 => format!(
                "bad gateway: upstream {pool} failed ({})",
                e.etype().as_str()
            ),
            503 => format!("service unavailable: {}", e.etype().as_str()),
            504 => format!("gateway timeout: upstream {pool} did not answer in time"),
            c if c < 500 => format!("bad request ({})", e.etype().as_str()),
            _ => format!("internal error ({})", e.etype().as_str()),
        },
    };
    let redirect = ctx
        .transform
        .redirect
        .as_deref()
        .filter(|_| transform_failed);
    let (mut resp, body) = match redirect {
        // onerror=redirect: the original instead of the transform's error.
        Some(to) => match super::transform::onerror::response(to, &reason) {
            Ok(r) => r,
            Err(_) => return 0,
        },
        None => (
            pingora_core::protocols::http::ServerSession::generate_error(code),
            Bytes::from(format!("{reason}\n")),
        ),
    };
    let prepared = resp
        .set_content_length(body.len())
        .and_then(|_| match &ctx.request.cors {
            Some(origin) => add_cors(&mut resp, origin),
            None => Ok(()),
        });
    let sent = match prepared {
        Ok(()) => session.write_error_response(resp, body).await,
        Err(e) => Err(e),
    };
    if let Err(we) = sent {
        log::debug!("cannot send error response: {we}");
    }
    match redirect {
        Some(_) => 302,
        None => code,
    }
}

/// The headers every response to a client gets (hits through Pingora and sendfile hits
/// alike): cache status, rate-limit state, transform timing of cached transforms, CORS.
pub fn client_headers(
    state: &State,
    resp: &mut ResponseHeader,
    label: &str,
    ctx: &mut Ctx,
) -> Result<()> {
    crate::cache::strip_private_headers(resp);
    resp.insert_header("X-Cache-Status", label)?;
    for (k, v) in ctx.request.limit_headers.drain(..) {
        resp.insert_header(k, v)?;
    }
    // A transformed entry served from the cache: how long making it took (a miss sends its
    // header before the transform runs, so it cannot carry this).
    let cached = label != "MISS" && label != "BYPASS";
    if ctx.transform.planned.is_some() && ctx.cache.enabled && cached {
        if let Some(ms) = state.transformer.recorded_duration(&ctx.cache.lb_key) {
            resp.insert_header("Server-Timing", format!("transform;dur={ms:.1}"))?;
            resp.insert_header("X-Transform-Ms", format!("{ms:.1}"))?;
        }
    }
    if let Some(warning) = &ctx.request.warning {
        resp.insert_header("Imgedge-Warning", warning.as_str())?;
    }
    if let Some(origin) = &ctx.request.cors {
        add_cors(resp, origin)?;
    }
    Ok(())
}
