//! Client connection timeouts: the whole request header must arrive within
//! `client.header_timeout` (slowloris), and a keep-alive connection may stay idle between two
//! requests for `client.keepalive_timeout`.
//!
//! Pingora 0.9 has neither as such: its HTTP/1 server only times out each read on its own (a
//! keep-alive timeout, fixed at 60 s for a new connection, reset by every byte), so a client
//! sending one header byte every 59 s holds a connection forever, and `HttpServerOptions` has
//! no header timeout. This service wraps Pingora's proxy app: for each HTTP/1 request it reads
//! the header block itself, under the deadlines, then hands the bytes to Pingora as the
//! session's pipelined prefix (the public way Pingora feeds already-read bytes to a session), so
//! Pingora still parses and serves the request exactly as before. The block is complete when
//! its empty line is here, whatever httparse thinks of the request line: Pingora reads on past
//! a target httparse refuses (it escapes it), and would do so without our deadline. The admin
//! listener is wrapped the same way. HTTP/2 connections (TLS with
//! ALPN h2) go straight to Pingora, with `h2_idle_timeout` set to the keep-alive timeout.

use crate::metrics::METRICS;
use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// A header block larger than this is handed to Pingora unfinished (it answers 400).
const MAX_HEAD_BYTES: usize = 1 << 20;
/// Most header lines parsed (Pingora's limit).
const MAX_HEADERS: usize = 256;
/// How long writing the 408 may take before the connection is just closed.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Wraps an HTTP app (the Pingora proxy) with the client timeouts.
pub struct ClientTimeouts<A> {
    inner: Arc<A>,
    cfg: crate::config::ClientTimeouts,
}

impl<A> ClientTimeouts<A> {
    pub fn new(inner: A, cfg: crate::config::ClientTimeouts) -> Self {
        ClientTimeouts {
            inner: Arc::new(inner),
            cfg,
        }
    }
}

/// Why no request header was read.
#[derive(Debug, PartialEq)]
enum NoHead {
    /// The client closed (or the connection broke) between requests.
    Closed,
    /// Idle longer than the keep-alive timeout.
    Idle,
    /// The header block did not complete in time; `n` bytes had arrived.
    Slow(usize),
    /// The server is shutting down and the connection was idle.
    Shutdown,
}

/// Whether `buf` holds a whole header block, or bytes Pingora refuses without reading more
/// (it answers 400). Until then the bytes stay here, under the deadlines.
fn head_complete(buf: &[u8]) -> bool {
    if buf.len() > MAX_HEAD_BYTES {
        return true;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => true,
        Ok(httparse::Status::Partial) => false,
        // A target httparse refuses (a space, DEL, a control byte) is one Pingora
        // percent-escapes and goes on reading by itself, with no deadline but its per-read
        // keep-alive timeout: hand it over only once the whole block is here.
        Err(httparse::Error::Token | httparse::Error::Version) if pingora_may_escape(buf) => {
            has_block_end(buf)
        }
        Err(_) => true,
    }
}

/// Whether Pingora's request-line rescue (`^\w+ (?P<uri>.+) HTTP/\d`, escaping the target)
/// could apply to `buf`: a method of word characters and a space, and, once the line is
/// complete, an HTTP version in it. A superset: when in doubt, keep reading here.
fn pingora_may_escape(buf: &[u8]) -> bool {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b >= 0x80;
    let method = buf.iter().take_while(|b| word(b)).count();
    if method == 0 || buf.get(method) != Some(&b' ') {
        return false;
    }
    match buf.iter().position(|b| *b == b'\n') {
        Some(end) => buf[..end].windows(6).any(|w| w == b" HTTP/"),
        None => true,
    }
}

/// Whether `buf` holds the empty line that ends a header block (CRLF or bare LF endings, as
/// httparse accepts them).
fn has_block_end(buf: &[u8]) -> bool {
    buf.windows(2).any(|w| w == b"\n\n") || buf.windows(3).any(|w| w == b"\n\r\n")
}

async fn wait_shutdown(mut shutdown: ShutdownWatch) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            // The sender is gone: no shutdown will ever be signalled.
            std::future::pending::<()>().await;
        }
    }
}

/// Reads one request header block. On a new connection the header deadline runs from now; on
/// a reused one, first the keep-alive wait for the first byte, then the header deadline.
async fn read_head(
    stream: &mut Stream,
    first: bool,
    cfg: crate::config::ClientTimeouts,
    shutdown: &ShutdownWatch,
) -> Result<BytesMut, NoHead> {
    if !first && *shutdown.borrow() {
        return Err(NoHead::Shutdown);
    }
    let mut buf = BytesMut::with_capacity(4096);
    let mut header_deadline = first.then(|| Instant::now() + cfg.header);
    let idle_deadline = Instant::now() + cfg.keepalive;
    loop {
        let deadline = header_deadline.unwrap_or(idle_deadline);
        let idle = buf.is_empty() && !first;
        let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf));
        let n = tokio::select! {
            biased;
            r = read => match r {
                Err(_) if header_deadline.is_some() => return Err(NoHead::Slow(buf.len())),
                Err(_) => return Err(NoHead::Idle),
                Ok(Ok(n)) => n,
                Ok(Err(_)) => return Err(NoHead::Closed),
            },
            // Only an idle connection is dropped; a request being sent is finished.
            _ = wait_shutdown(shutdown.clone()), if idle => {
                return Err(NoHead::Shutdown)
            }
        };
        if n == 0 {
            return Err(NoHead::Closed);
        }
        if header_deadline.is_none() {
            header_deadline = Some(Instant::now() + cfg.header);
        }
        if head_complete(&buf) {
            return Ok(buf);
        }
    }
}

fn client_addr(stream: &Stream) -> String {
    stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().map(|a| a.to_string()))
        .unwrap_or_else(|| "-".to_string())
}

/// 408 with a one-line reason, then close (what nginx does on client_header_timeout).
async fn answer_slow(stream: &mut Stream, header: Duration) {
    let body = format!(
        "request timeout: the request header did not arrive within {header:?} (client.header_timeout)\n"
    );
    let resp = format!(
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REPLY_TIMEOUT, async {
        stream.write_all(resp.as_bytes()).await?;
        stream.flush().await?;
        stream.shutdown().await
    })
    .await;
}

#[async_trait]
impl<A> ServerApp for ClientTimeouts<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return self.inner.process_new(stream, shutdown).await;
        }
        let cfg = self.cfg;
        let mut persistent: Option<HttpPersistentSettings> = None;
        let mut first = true;
        loop {
            let head = match read_head(&mut stream, first, cfg, shutdown).await {
                Ok(head) => head,
                Err(why) => {
                    match why {
                        NoHead::Slow(n) => {
                            METRICS.client_timeouts.with_label_values(&["header"]).inc();
                            log::info!(
                                "client {}: closed: request header incomplete after {:?} ({n} bytes received; client.header_timeout)",
                                client_addr(&stream),
                                cfg.header
                            );
                            if n > 0 {
                                answer_slow(&mut stream, cfg.header).await;
                            }
                        }
                        NoHead::Idle => {
                            METRICS
                                .client_timeouts
                                .with_label_values(&["keepalive"])
                                .inc();
                            log::debug!(
                                "client {}: keep-alive connection idle for {:?}: closed",
                                client_addr(&stream),
                                cfg.keepalive
                            );
                        }
                        NoHead::Closed | NoHead::Shutdown => {}
                    }
                    return None;
                }
            };
            let mut session = ServerSession::new_http1(stream);
            match persistent.take() {
                Some(p) => p.apply_to_session(&mut session),
                None => {
                    // Whole seconds (Pingora's unit); our own wait above is exact.
                    let secs = cfg.keepalive.as_secs().max(1);
                    session.set_keepalive(if *shutdown.borrow() { None } else { Some(secs) });
                }
            }
            session.set_pipelined_prefix(head);
            let reused = self.inner.process_new_http(session, shutdown).await;
            match reused.map(|r| r.consume()) {
                Some((s, p)) => {
                    stream = s;
                    persistent = p;
                    first = false;
                }
                None => return None,
            }
        }
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_block_completion() {
        assert!(!head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(!head_complete(b"GE"));
        assert!(head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        // Bare LF line endings are accepted by the parser too.
        assert!(head_complete(b"GET / HTTP/1.1\nHost: a\n\n"));
        // Garbage is handed over at once: Pingora answers 400.
        assert!(head_complete(b"\x00\x01 nonsense\r\n\r\n"));
        assert!(head_complete(b"\x16\x03\x01\x02\x00"));
        assert!(head_complete(b"GET /a HTTP/1.1\r\nBad Name: x\r\n"));
    }

    /// A target with a space or DEL is refused by httparse but escaped and read on by Pingora:
    /// it stays here until its block is complete.
    #[test]
    fn request_lines_pingora_escapes_wait_for_the_whole_block() {
        for line in [
            &b"GET /a b HTTP/1.1"[..],
            b"GET /a\x7fb HTTP/1.1",
            b"GET /a\x01 HTTP/1.0",
        ] {
            let mut partial = line.to_vec();
            partial.extend_from_slice(b"\r\nHost: a\r\nX-Slow: aa");
            assert!(!head_complete(&partial), "{}", partial.escape_ascii());
            assert!(!head_complete(line), "{}", line.escape_ascii());
            partial.extend_from_slice(b"\r\n\r\n");
            assert!(head_complete(&partial), "{}", partial.escape_ascii());
            let mut lf = line.to_vec();
            lf.extend_from_slice(b"\nHost: a\n\n");
            assert!(head_complete(&lf), "{}", lf.escape_ascii());
        }
        // Not a request line Pingora can rescue: at once.
        assert!(head_complete(b"GET /a b\r\nHost: a\r\n"));
        assert!(head_complete(b"G\x01T /a HTTP/1.1\r\n"));
    }
}
