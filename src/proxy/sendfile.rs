//! Writes a whole response straight to a client's TCP socket: the header with
//! `send(MSG_MORE)`, the body with `sendfile()` from a file descriptor, so the body goes from
//! the page cache to the socket without a copy through user space. Knows nothing of caches or
//! HTTP sessions: the caller passes the raw socket (non-blocking, owned by the runtime) and
//! decides what may be sent this way.
//!
//! Never blocks a thread: on `EAGAIN` it waits for writability through the runtime's reactor
//! (on a `dup()` of the socket, since the original is already registered by its owner), at most
//! `stall` per wait; a client that accepts nothing for that long is given up on.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("client accepted nothing for {0:?}")]
    Stalled(Duration),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the file ended early at {0} bytes")]
    ShortFile(usize),
}

/// A failed send and how many body bytes were sent before it.
#[derive(Debug)]
pub struct Failed {
    pub error: SendError,
    pub body_sent: usize,
}

/// Sends `head` then `len` bytes of `file` (from offset 0) to `sock`. Returns the body bytes
/// sent (`len`). On error the connection is unusable: part of the response may be out.
pub async fn send_response(
    sock: RawFd,
    head: &[u8],
    file: RawFd,
    len: usize,
    stall: Duration,
) -> Result<usize, Failed> {
    let mut w = Writer {
        sock,
        waiter: None,
        stall,
    };
    let fail = |error, body_sent| Failed { error, body_sent };
    let mut off = 0;
    while off < head.len() {
        let rest = &head[off..];
        // SAFETY: sends from a live slice; MSG_NOSIGNAL: a closed peer is EPIPE, not a signal.
        let n = unsafe {
            libc::send(
                sock,
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_MORE | libc::MSG_NOSIGNAL,
            )
        };
        match w.outcome(n, "sending the header").await {
            Ok(n) => off += n,
            Err(e) => return Err(fail(e, 0)),
        }
    }
    let mut pos: libc::off_t = 0;
    while (pos as usize) < len {
        let want = len - pos as usize;
        // SAFETY: sendfile advances `pos`; both descriptors stay open for the call.
        let n = unsafe { libc::sendfile(sock, file, &mut pos, want) };
        if n == 0 {
            return Err(fail(SendError::ShortFile(pos as usize), pos as usize));
        }
        if let Err(e) = w.outcome(n, "sending the body").await {
            return Err(fail(e, pos as usize));
        }
    }
    Ok(len)
}

struct Writer {
    sock: RawFd,
    /// Registered with the reactor on the first `EAGAIN` (most responses never need it).
    waiter: Option<AsyncFd<OwnedFd>>,
    stall: Duration,
}

impl Writer {
    /// `Ok(n)`: n bytes went out (0 after waiting for room); `Err`: give up.
    async fn outcome(&mut self, n: isize, what: &'static str) -> Result<usize, SendError> {
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => Ok(0),
            io::ErrorKind::WouldBlock => {
                self.wait().await?;
                Ok(0)
            }
            _ => Err(SendError::Io { what, source: e }),
        }
    }

    async fn wait(&mut self) -> Result<(), SendError> {
        if self.waiter.is_none() {
            // SAFETY: dup of a descriptor the caller keeps open; the copy is owned here.
            let d = unsafe { libc::fcntl(self.sock, libc::F_DUPFD_CLOEXEC, 0) };
            if d < 0 {
                let source = io::Error::last_os_error();
                return Err(SendError::Io {
                    what: "dup",
                    source,
                });
            }
            // SAFETY: `d` is a fresh descriptor nobody else owns.
            let owned = unsafe { OwnedFd::from_raw_fd(d) };
            // SAFETY: the AsyncFd owns `owned`, which stays open and unchanged until dropped.
            let registered = unsafe { AsyncFd::register_with_interest(owned, Interest::WRITABLE) };
            let afd = registered.map_err(|e| SendError::Io {
                what: "registering with the reactor",
                source: e.into_parts().1,
            })?;
            self.waiter = Some(afd);
        }
        let Some(afd) = self.waiter.as_ref() else {
            return Ok(());
        };
        match tokio::time::timeout(self.stall, afd.writable()).await {
            Err(_) => Err(SendError::Stalled(self.stall)),
            Ok(Err(source)) => Err(SendError::Io {
                what: "waiting for the socket",
                source,
            }),
            Ok(Ok(mut guard)) => {
                // The caller retries the send: readiness is re-armed only if that hits EAGAIN
                // again, so clearing here (after an EAGAIN we saw) loses no wake-up: the
                // reactor sets it again on the next edge.
                guard.clear_ready();
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};
    use std::os::fd::AsRawFd;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected loopback pair: (server side, as the proxy holds it; client side), with small
    /// socket buffers so that a client that reads nothing blocks the sender after ~a few
    /// hundred KB whatever the host's buffer tuning.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(64 << 10).expect("SO_RCVBUF");
        let client = socket
            .connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = l.accept().await.expect("accept");
        socket2::SockRef::from(&server)
            .set_send_buffer_size(64 << 10)
            .expect("SO_SNDBUF");
        (server, client)
    }

    fn body_file(len: usize) -> std::fs::File {
        let mut f = tempfile::tempfile().expect("tempfile");
        let chunk: Vec<u8> = (0..=255u8).cycle().take(1 << 16).collect();
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            f.write_all(&chunk[..n]).expect("write");
            left -= n;
        }
        f.rewind().expect("rewind");
        f
    }

    #[tokio::test]
    async fn sends_head_then_the_whole_body() {
        let (server, mut client) = pair().await;
        let len = 3 << 20;
        let file = body_file(len);
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 3145728\r\n\r\n";
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.expect("read");
            got
        });
        let sent = send_response(
            server.as_raw_fd(),
            head,
            file.as_raw_fd(),
            len,
            Duration::from_secs(30),
        )
        .await
        .expect("sent");
        assert_eq!(sent, len);
        drop(server);
        let got = reader.await.expect("reader");
        assert_eq!(&got[..head.len()], head);
        assert_eq!(got.len(), head.len() + len);
        let body = &got[head.len()..];
        assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 256) as u8));
    }

    #[tokio::test]
    async fn a_client_that_reads_nothing_is_given_up_after_the_stall_limit() {
        let (server, client) = pair().await;
        // Far more than the pair's socket buffers hold, so the sender must wait.
        let len = 8 << 20;
        let file = body_file(len);
        let stall = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let failed = send_response(
            server.as_raw_fd(),
            b"HTTP/1.1 200 OK\r\n\r\n",
            file.as_raw_fd(),
            len,
            stall,
        )
        .await
        .expect_err("a client that reads nothing cannot take 8 MiB");
        assert!(
            matches!(failed.error, SendError::Stalled(d) if d == stall),
            "{:?}",
            failed.error
        );
        assert!(failed.body_sent < len);
        // It waited on the reactor, not on a blocked thread, and gave up once the limit passed.
        assert!(started.elapsed() >= stall);
        drop(client);
    }

    #[tokio::test]
    async fn a_file_shorter_than_promised_is_an_error_not_a_hang() {
        let (server, _client) = pair().await;
        let file = body_file(1000);
        let failed = send_response(
            server.as_raw_fd(),
            b"H",
            file.as_raw_fd(),
            5000,
            Duration::from_secs(5),
        )
        .await
        .expect_err("only 1000 bytes exist");
        assert!(
            matches!(failed.error, SendError::ShortFile(1000)),
            "{:?}",
            failed.error
        );
        assert_eq!(failed.body_sent, 1000);
    }

    #[tokio::test]
    async fn a_vanished_client_is_an_io_error() {
        let (server, client) = pair().await;
        drop(client);
        let len = 16 << 20;
        let file = body_file(len);
        let failed = send_response(
            server.as_raw_fd(),
            b"HTTP/1.1 200 OK\r\n\r\n",
            file.as_raw_fd(),
            len,
            Duration::from_secs(5),
        )
        .await
        .expect_err("the peer is gone");
        assert!(
            matches!(failed.error, SendError::Io { .. }),
            "{:?}",
            failed.error
        );
    }
}
