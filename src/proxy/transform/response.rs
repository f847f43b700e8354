//! Making a variant on a miss: a pool slot reserved before the origin is asked, the origin's
//! header turned into the variant's (or a 422 refusal), the source body buffered and
//! transformed on the pool at its end. What this leaves in the body is what is cached.

use super::{onerror, FailureKeys, Planned, Verdict};
use crate::image::format::{OutputFormat, SourceFormat};
use crate::image::hints::HintsUsed;
use crate::metrics::METRICS;
use crate::proxy::ctx::{Buffering, Ctx};
use crate::proxy::reply::{respond_busy, respond_text, respond_with};
use crate::proxy::state::State;
use bytes::Bytes;
use pingora::prelude::*;
use pingora_http::ResponseHeader;
use std::time::Instant;

/// Before going to the origin for a transform made here: a source, or this variant of it,
/// that just failed is answered with its error; a pool slot is reserved (503 when full).
/// `Ok(false)`: answered.
pub async fn reserve(state: &State, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
    let Some(keys) = failure_keys(ctx) else {
        return Ok(true);
    };
    if ctx.transform.forwarded || session.req_header().method == http::Method::HEAD {
        return Ok(true);
    }
    let t = &state.transformer;
    let cors = ctx.request.cors.as_deref();
    let redirect = ctx.transform.redirect.as_deref();
    if let Some((status, reason)) = t.recent_failure_of(&keys) {
        refused("remembered");
        match redirect {
            Some(to) => redirect_now(session, cors, to, &reason).await?,
            None => respond_text(session, cors, status, &reason).await?,
        }
        return Ok(false);
    }
    match t.reserve() {
        Some(permit) => {
            ctx.transform.permit = Some(permit);
            Ok(true)
        }
        None => {
            refused("queue_full");
            match redirect {
                Some(to) => redirect_now(session, cors, to, "the transform queue is full").await?,
                None => respond_busy(session, cors).await?,
            }
            Ok(false)
        }
    }
}

/// `onerror=redirect`: the 302 to the original, as the whole answer.
async fn redirect_now(
    session: &mut Session,
    cors: Option<&str>,
    to: &str,
    why: &str,
) -> Result<()> {
    let headers = onerror::headers(to);
    respond_with(session, cors, 302, &onerror::message(to, why), &headers).await
}

/// Where this request's failures are remembered (`None`: no transform).
fn failure_keys(ctx: &Ctx) -> Option<FailureKeys> {
    let planned = ctx.transform.planned.as_deref()?;
    Some(FailureKeys::new(&ctx.transform.source_key, planned))
}

fn refused(reason: &str) {
    METRICS
        .transforms_refused
        .with_label_values(&[reason])
        .inc();
}

/// The origin's response header, for a request with a transform: revalidations and forwarded
/// transforms get their headers fixed; a source we transform gets the variant's headers (or is
/// refused from its declared length).
pub fn on_header(
    state: &State,
    session: &Session,
    resp: &mut ResponseHeader,
    ctx: &mut Ctx,
) -> Result<()> {
    let status = resp.status.as_u16();
    let Some(planned) = ctx.transform.planned.as_deref() else {
        return on_plain_header(state, session, resp, ctx);
    };
    if status == 304 && !ctx.transform.forwarded {
        // Revalidated: the origin's tag names the source; the stored entry keeps its own.
        resp.remove_header(&http::header::ETAG);
    }
    if ctx.transform.forwarded && (200..300).contains(&status) {
        add_vary(resp, planned)?;
    }
    if ctx.transform.permit.is_none() {
        return Ok(());
    }
    let h = &resp.headers;
    let text = |name: http::header::HeaderName| h.get(name).and_then(|v| v.to_str().ok());
    let declared_len = text(http::header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    let verdict = state.transformer.inspect(
        planned,
        status,
        text(http::header::CONTENT_TYPE),
        text(http::header::CONTENT_ENCODING),
        declared_len,
    );
    match verdict {
        Verdict::PassThrough => {}
        Verdict::Transform { out, declared } => {
            remove_source_headers(resp);
            if declared == SourceFormat::Svg {
                // the sanitized document's (through the source cache): not the raster's
                resp.remove_header(&http::header::CONTENT_SECURITY_POLICY);
            }
            set_transformed_headers(resp, out, planned)?;
            // Room for the whole declared body up front (inspect checked the limit).
            let capacity = usize::try_from(declared_len.unwrap_or(0)).unwrap_or(0);
            ctx.transform.buffering = Some(Buffering {
                out,
                declared,
                source: Vec::with_capacity(capacity),
            });
        }
        Verdict::Sanitize => {
            set_sanitized_headers(resp, Some(planned))?;
            ctx.transform.sanitizing = Some(Vec::new());
            // Sanitizing runs here, not on the pool: free the slot for others.
            ctx.transform.permit = None;
        }
        Verdict::Refuse(reason) => {
            // The declared length (or encoding) is the source's own: every variant of it is
            // refused alike.
            let keys = FailureKeys::new(&ctx.transform.source_key, planned);
            state
                .transformer
                .remember_failure(&keys.source, 422, &reason);
            refuse(session, resp, ctx, reason)?;
        }
    }
    Ok(())
}

/// The origin's header for a request without transform parameters: an SVG is sanitized.
fn on_plain_header(
    state: &State,
    session: &Session,
    resp: &mut ResponseHeader,
    ctx: &mut Ctx,
) -> Result<()> {
    let h = &resp.headers;
    if resp.status.as_u16() == 304 {
        // A sanitized entry keeps its own tag, as a transformed one does.
        let meta = session.cache.maybe_cache_meta();
        if meta.is_some_and(|m| m.headers().contains_key(crate::cache::SOURCE_ETAG)) {
            resp.remove_header(&http::header::ETAG);
        }
        return Ok(());
    }
    let text = |name: http::header::HeaderName| h.get(name).and_then(|v| v.to_str().ok());
    let verdict = state.transformer.inspect_plain(
        resp.status.as_u16(),
        text(http::header::CONTENT_TYPE),
        text(http::header::CONTENT_ENCODING),
        text(http::header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok()),
    );
    match verdict {
        Verdict::Sanitize => {
            set_sanitized_headers(resp, None)?;
            ctx.transform.sanitizing = Some(Vec::new());
        }
        Verdict::Refuse(reason) => refuse(session, resp, ctx, reason)?,
        Verdict::PassThrough | Verdict::Transform { .. } => {}
    }
    Ok(())
}

/// Replaces the origin's response by a 422 with `reason` (or, with `onerror=redirect`, a 302
/// to the original); its body follows in `on_body`.
fn refuse(
    session: &Session,
    resp: &mut ResponseHeader,
    ctx: &mut Ctx,
    reason: String,
) -> Result<()> {
    log::warn!(
        "transform refused for {}: {reason}",
        session.req_header().uri
    );
    refused(if reason == super::svg::ENCODED {
        "bad_data"
    } else {
        "too_big"
    });
    let (header, body) = match ctx.transform.redirect.as_deref() {
        Some(to) => onerror::response(to, &reason)?,
        None => refusal(&reason)?,
    };
    *resp = header;
    ctx.transform.refusal = Some(body);
    Ok(())
}

/// The 422 answered for a source refused from its header.
fn refusal(reason: &str) -> Result<(ResponseHeader, Bytes)> {
    let body = Bytes::from(format!("{reason}\n"));
    let mut resp = ResponseHeader::build(422, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    Ok((resp, body))
}

/// A chunk of the origin's body: replaced by the refusal, or buffered until the end (or the
/// size limit), then transformed; anything else passes untouched.
pub fn on_body(
    state: &State,
    session: &Session,
    body: &mut Option<Bytes>,
    end_of_stream: bool,
    ctx: &mut Ctx,
) -> Result<()> {
    if ctx.transform.refusal.is_some() {
        *body = None;
        if end_of_stream {
            *body = ctx.transform.refusal.take();
        }
        return Ok(());
    }
    if ctx.transform.sanitizing.is_some() {
        return sanitize_body(state, session, body, end_of_stream, ctx);
    }
    let Some(b) = ctx.transform.buffering.as_mut() else {
        return Ok(());
    };
    if let Some(chunk) = body.take() {
        b.source.extend_from_slice(&chunk);
    }
    let over = b.source.len() as u64 > state.transformer.max_source_bytes();
    if !end_of_stream && !over {
        return Ok(());
    }
    let Some(b) = ctx.transform.buffering.take() else {
        return Ok(());
    };
    // Over the limit: the pipeline refuses it at once (TooLarge) without decoding.
    *body = Some(run(state, session, b, ctx)?);
    Ok(())
}

/// A chunk of an SVG body to sanitize: buffered (up to the size limit), sanitized at the end.
/// Sanitizing is a single pass over a bounded document: it runs here, not on the pool.
fn sanitize_body(
    state: &State,
    session: &Session,
    body: &mut Option<Bytes>,
    end_of_stream: bool,
    ctx: &mut Ctx,
) -> Result<()> {
    let Some(source) = ctx.transform.sanitizing.as_mut() else {
        return Ok(());
    };
    if let Some(chunk) = body.take() {
        source.extend_from_slice(&chunk);
    }
    let over = source.len() as u64 > state.transformer.max_source_bytes();
    if !end_of_stream && !over {
        return Ok(());
    }
    let source = ctx.transform.sanitizing.take().unwrap_or_default();
    let t = &state.transformer;
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let result = if multi_thread {
        tokio::task::block_in_place(|| t.sanitize_svg(&source))
    } else {
        t.sanitize_svg(&source)
    };
    match result {
        Ok(clean) => {
            *body = Some(Bytes::from(clean));
            Ok(())
        }
        Err(e) => {
            // As a failed transform: nothing is cached, the client gets the 422 (or the
            // redirect of onerror=redirect) or an abort.
            let failure = super::Failure::Image(e);
            let reason = failure.to_string();
            log::warn!("SVG refused for {}: {reason}", session.req_header().uri);
            refused(failure.reason());
            if let Some(keys) = failure_keys(ctx) {
                t.remember(&keys, &failure);
            }
            ctx.transform.failure = Some(reason.clone());
            Error::e_explain(ErrorType::HTTPStatus(failure.status()), reason)
        }
    }
}

/// An SVG served as a sanitized document: its type, what it may load (`svg::CSP`), no
/// sniffing, no length or ranges (the body changes), a tag of its own.
fn set_sanitized_headers(resp: &mut ResponseHeader, planned: Option<&Planned>) -> Result<()> {
    resp.insert_header(http::header::CONTENT_TYPE, "image/svg+xml")?;
    resp.insert_header(http::header::CONTENT_SECURITY_POLICY, super::svg::CSP)?;
    resp.insert_header(http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")?;
    // an origin's Content-Disposition (attachment) stays: it only makes the SVG safer
    for h in [
        http::header::CONTENT_LENGTH,
        http::header::ACCEPT_RANGES,
        http::header::CONTENT_ENCODING,
    ] {
        resp.remove_header(&h);
    }
    let canonical = planned.map_or("", |p| p.canonical.as_str());
    set_variant_etag(resp, &format!("{canonical}/svg-sanitized"))?;
    match planned {
        Some(p) => add_vary(resp, p),
        None => Ok(()),
    }
}

/// Runs the transform of the buffered source on the pool and records what it cost.
fn run(state: &State, session: &Session, b: Buffering, ctx: &mut Ctx) -> Result<Bytes> {
    let planned = ctx.transform.planned.as_ref().map(|p| &p.spec);
    let (Some(spec), Some(permit)) = (planned, ctx.transform.permit.take()) else {
        return Error::e_explain(ErrorType::InternalError, "transform state lost");
    };
    let source_len = b.source.len();
    let started = Instant::now();
    let (format, result) = match spec.json {
        // format=json: the header alone, on this thread (nothing is decoded).
        true => ("json", state.transformer.describe(permit, &b.source, spec)),
        false => (
            b.out.as_str(),
            state
                .transformer
                .run(permit, b.source, spec, b.out, b.declared)
                .map(|o| o.bytes),
        ),
    };
    match result {
        Ok(out) => {
            let m = &*METRICS;
            let took = started.elapsed();
            m.transform_duration
                .with_label_values(&[format])
                .observe(took.as_secs_f64());
            let ms = took.as_secs_f64() * 1000.0;
            ctx.timing.transform_ms = Some(ms);
            // The header of this miss is already gone: hits of the entry report it.
            if ctx.cache.enabled {
                state.transformer.record_duration(&ctx.cache.lb_key, ms);
            }
            m.transform_source_bytes.inc_by(source_len as u64);
            m.transform_output_bytes
                .with_label_values(&[format])
                .inc_by(out.len() as u64);
            Ok(Bytes::from(out))
        }
        Err(failure) => {
            // The status line may be gone: abort so nothing is cached and the client sees a
            // failed response; repeats are answered up front (`reserve`), per the failure's
            // scope (`Failure::scope`).
            let reason = failure.to_string();
            log::warn!(
                "transform failed for {} ({source_len} source bytes): {reason}",
                session.req_header().uri
            );
            refused(failure.reason());
            if let Some(keys) = failure_keys(ctx) {
                state.transformer.remember(&keys, &failure);
            }
            ctx.transform.failure = Some(reason.clone());
            Error::e_explain(ErrorType::HTTPStatus(failure.status()), reason)
        }
    }
}

/// The headers of a response whose body will be replaced by the transform: the new type, no
/// length (sent chunked; the stored entry knows its length), no ranges, no encoding, an ETag of
/// its own (the origin's named the original bytes; it is kept aside for revalidation), and
/// `Vary: Accept` when the format was negotiated.
fn set_transformed_headers(
    resp: &mut ResponseHeader,
    out: OutputFormat,
    planned: &Planned,
) -> Result<()> {
    let content_type = match planned.spec.json {
        true => "application/json",
        false => out.content_type(),
    };
    resp.insert_header(http::header::CONTENT_TYPE, content_type)?;
    set_variant_etag(resp, &format!("{}/{}", planned.canonical, out.as_str()))?;
    add_vary(resp, planned)
}

/// An ETag naming `variant` of the source the origin's validator names; the origin's tag kept
/// aside for revalidation.
fn set_variant_etag(resp: &mut ResponseHeader, variant: &str) -> Result<()> {
    let text = |h| resp.headers.get(h).and_then(|v| v.to_str().ok());
    let origin_etag = text(http::header::ETAG).map(str::to_string);
    let source = origin_etag
        .clone()
        .or_else(|| text(http::header::LAST_MODIFIED).map(str::to_string));
    if let Some(source) = source {
        let etag = crate::cache::variant_etag(&source, variant);
        resp.insert_header(http::header::ETAG, etag)?;
    } else {
        // No validator: the storage tags the finished body instead.
        resp.remove_header(&http::header::ETAG);
    }
    if let Some(tag) = origin_etag {
        resp.insert_header(crate::cache::SOURCE_ETAG, tag)?;
    }
    Ok(())
}

/// `Vary: Accept` when the format was negotiated; for `width=auto`, `Vary` on the client hints
/// read (exactly those) and `Accept-CH` asking for them.
fn add_vary(resp: &mut ResponseHeader, planned: &Planned) -> Result<()> {
    if planned.vary_accept {
        add_vary_name(resp, "Accept")?;
    }
    if let Some(used) = planned.spec.auto_width {
        for name in used.names() {
            add_vary_name(resp, name)?;
        }
        resp.insert_header("accept-ch", HintsUsed::ACCEPT_CH)?;
    }
    Ok(())
}

fn add_vary_name(resp: &mut ResponseHeader, name: &str) -> Result<()> {
    let vary = match resp
        .headers
        .get(http::header::VARY)
        .and_then(|v| v.to_str().ok())
    {
        Some(v) if !crate::cache::vary::lists(v, name) => format!("{v}, {name}"),
        Some(v) => v.to_string(),
        None => name.to_string(),
    };
    resp.insert_header(http::header::VARY, vary)
}

fn remove_source_headers(resp: &mut ResponseHeader) {
    for h in [
        http::header::CONTENT_LENGTH,
        http::header::ACCEPT_RANGES,
        http::header::CONTENT_ENCODING,
        http::header::CONTENT_DISPOSITION,
    ] {
        resp.remove_header(&h);
    }
}
