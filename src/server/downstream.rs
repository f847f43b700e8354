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
//! Pingora still parses and serves the request exactly as before. HTTP/2 connections (TLS with
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

/// Whether `buf` holds a whole header block (or something Pingora will refuse anyway).
fn head_complete(buf: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => buf.len() > MAX_HEAD_BYTES,
        // Complete, or invalid: Pingora parses it again and answers (400 when invalid).
        _ => true,
    }
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
    }
}
