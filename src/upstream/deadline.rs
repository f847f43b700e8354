//! First-byte and total deadlines of one origin response.
//!
//! Pingora 0.9 only has per-read timeouts on upstream connections (`read_timeout`, reset by
//! every read), so an origin that dribbles bytes, or answers its header only after minutes,
//! is never cut off. No proxy phase runs while Pingora waits for the origin, so the deadlines
//! are kept by a small timer task: when one passes, it shuts the upstream socket down. The
//! pending read then fails at once, Pingora never reuses the connection, and the proxy maps the
//! failure to a 504 with the reason (or serves the stale entry).
//!
//! The task only ever touches the socket while the request that armed it still owns the
//! connection: it is disarmed (under the same lock the timer takes) when the response ends,
//! fails or the request ends, before Pingora can return the connection to its pool, and it
//! checks that the descriptor still names the same connection (local and peer address) first.

use parking_lot::Mutex;
use std::mem::ManuallyDrop;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::io::{FromRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    FirstByte(Duration),
    Total(Duration),
}

impl Expired {
    /// Metric label.
    pub fn kind(self) -> &'static str {
        match self {
            Expired::FirstByte(_) => "first_byte",
            Expired::Total(_) => "total",
        }
    }

    /// One-line reason for the client and the log.
    pub fn reason(self, pool: &str) -> String {
        match self {
            Expired::FirstByte(d) => format!(
                "gateway timeout: upstream {pool} sent no response header within {d:?} (timeouts.first_byte)"
            ),
            Expired::Total(d) => format!(
                "gateway timeout: upstream {pool} did not finish its response within {d:?} (timeouts.total)"
            ),
        }
    }
}

struct Shared {
    armed: bool,
    header_seen: bool,
    expired: Option<Expired>,
    fd: RawFd,
    addrs: Option<(SocketAddr, SocketAddr)>,
}

/// The deadlines of one attempt; disarmed on drop.
pub struct Deadlines {
    shared: Arc<Mutex<Shared>>,
    cancel: Option<oneshot::Sender<()>>,
}

/// Local and peer address of a TCP socket, without taking ownership of it.
fn addrs(fd: RawFd) -> Option<(SocketAddr, SocketAddr)> {
    // SAFETY: the descriptor is borrowed, never closed (ManuallyDrop); std only calls
    // getsockname/getpeername on it here.
    let s = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
    Some((s.local_addr().ok()?, s.peer_addr().ok()?))
}

fn shut_down(fd: RawFd) {
    // SAFETY: as in `addrs`; shutdown() wakes the pending read, the owner still closes it.
    let s = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
    let _ = s.shutdown(std::net::Shutdown::Both);
}

impl Deadlines {
    /// Starts the clock for a request just sent on the connection `fd`.
    pub fn arm(fd: RawFd, first_byte: Duration, total: Duration) -> Deadlines {
        let shared = Arc::new(Mutex::new(Shared {
            armed: true,
            header_seen: false,
            expired: None,
            fd,
            addrs: addrs(fd),
        }));
        let (tx, rx) = oneshot::channel::<()>();
        let s = Arc::clone(&shared);
        tokio::spawn(async move {
            let fire = |which: Expired| {
                let mut g = s.lock();
                if !g.armed {
                    return true;
                }
                if matches!(which, Expired::FirstByte(_)) && g.header_seen {
                    return false;
                }
                // Only the very connection that was armed (the number may have been reused).
                if g.addrs.is_some() && addrs(g.fd) == g.addrs {
                    g.expired = Some(which);
                    g.armed = false;
                    shut_down(g.fd);
                }
                true
            };
            let start = tokio::time::Instant::now();
            tokio::pin!(rx);
            tokio::select! {
                _ = &mut rx => return,
                _ = tokio::time::sleep_until(start + first_byte.min(total)) => {}
            }
            let which = if first_byte < total {
                Expired::FirstByte(first_byte)
            } else {
                Expired::Total(total)
            };
            if fire(which) {
                return;
            }
            tokio::select! {
                _ = &mut rx => {}
                _ = tokio::time::sleep_until(start + total) => {
                    fire(Expired::Total(total));
                }
            }
        });
        Deadlines {
            shared,
            cancel: Some(tx),
        }
    }

    /// The response header arrived: only the total deadline remains.
    pub fn header_received(&self) {
        self.shared.lock().header_seen = true;
    }

    /// The response ended (or failed): nothing more may touch the socket.
    pub fn disarm(&mut self) {
        self.shared.lock().armed = false;
        if let Some(tx) = self.cancel.take() {
            let _ = tx.send(());
        }
    }

    /// The deadline that passed, if one did.
    pub fn expired(&self) -> Option<Expired> {
        self.shared.lock().expired
    }
}

impl Drop for Deadlines {
    fn drop(&mut self) {
        self.disarm();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::io::AsRawFd;

    #[tokio::test]
    async fn first_byte_deadline_shuts_the_socket_down() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _server = l.accept().unwrap();
        let d = Deadlines::arm(
            c.as_raw_fd(),
            Duration::from_millis(20),
            Duration::from_secs(5),
        );
        let mut buf = [0u8; 1];
        // The read returns (EOF) because the timer shut the socket down.
        let n = tokio::task::spawn_blocking(move || c.read(&mut buf).unwrap_or(0))
            .await
            .unwrap();
        assert_eq!(n, 0);
        assert_eq!(
            d.expired(),
            Some(Expired::FirstByte(Duration::from_millis(20)))
        );
    }

    #[tokio::test]
    async fn disarmed_or_answered_deadlines_do_nothing() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _server = l.accept().unwrap();
        let d = Deadlines::arm(
            c.as_raw_fd(),
            Duration::from_millis(10),
            Duration::from_millis(60),
        );
        d.header_received();
        let mut d2 = Deadlines::arm(
            c.as_raw_fd(),
            Duration::from_millis(10),
            Duration::from_millis(10),
        );
        d2.disarm();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            d.expired(),
            None,
            "header seen: first byte no longer applies"
        );
        assert_eq!(d2.expired(), None);
        // The total deadline still applies after the header (polled: timers may run late).
        for _ in 0..500 {
            if d.expired().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(d.expired(), Some(Expired::Total(Duration::from_millis(60))));
    }
}
