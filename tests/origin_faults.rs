//! End-to-end: how the origin side answers when an origin fails on some requests only. One URL
//! that the origin mishandles must not take its peer out (the circuit breaker counts evidence
//! about the peer, not about one URL); a pool whose every circuit is open still tries its peers;
//! a timeout with no peer left is a 504 with its reason; retries on reused keep-alive
//! connections are bounded. Real origins on loopback, the real binary, real clients.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What [`SplitOrigin`] does with a request, by path prefix.
#[derive(Clone, Copy, PartialEq)]
enum Act {
    /// 200 with a small body, keep-alive.
    Ok,
    /// 200 after this long (so concurrent requests need connections of their own).
    SlowOk(Duration),
    /// Reads the request, then resets the connection without answering.
    Reset,
    /// Reads the request, then closes the connection cleanly without answering.
    Close,
    /// Reads the request and never answers.
    Hang,
    /// Like `Close` the first time it comes on a connection that served a request before (an
    /// origin closing an idle keep-alive connection just as the request arrives); then `Ok`.
    CloseOnceReused,
}

#[derive(Default)]
struct SplitState {
    acts: Vec<(String, Act)>,
    requests: Vec<String>,
    connections: usize,
    closed_once: bool,
}

/// An HTTP/1.1 origin that misbehaves on some paths only, counting connections and requests.
struct SplitOrigin {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<SplitState>>,
    stopped: Arc<AtomicBool>,
}

impl SplitOrigin {
    /// `acts`: path prefix -> behaviour, first match wins; other paths are `Ok`.
    fn start(acts: &[(&str, Act)]) -> SplitOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(SplitState {
            acts: acts.iter().map(|(p, a)| (p.to_string(), *a)).collect(),
            ..SplitState::default()
        }));
        let stopped = Arc::new(AtomicBool::new(false));
        let (st, stop) = (state.clone(), stopped.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                // No clone of the connection is kept: a reset must be the last close.
                st.lock().unwrap().connections += 1;
                let (st, stop) = (st.clone(), stop.clone());
                std::thread::spawn(move || serve(conn, st, stop));
            }
        });
        SplitOrigin {
            addr,
            state,
            stopped,
        }
    }

    fn peer(&self) -> String {
        self.addr.to_string()
    }

    fn set(&self, prefix: &str, act: Act) {
        let mut s = self.state.lock().unwrap();
        s.acts.retain(|(p, _)| p != prefix);
        s.acts.insert(0, (prefix.to_string(), act));
    }

    /// Requests seen whose path starts with `prefix`.
    fn requests(&self, prefix: &str) -> usize {
        let s = self.state.lock().unwrap();
        s.requests.iter().filter(|p| p.starts_with(prefix)).count()
    }

    fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }
}

impl Drop for SplitOrigin {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(conn: TcpStream, st: Arc<Mutex<SplitState>>, stop: Arc<AtomicBool>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    let mut served = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || stop.load(Ordering::SeqCst) {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h.trim_end().is_empty() {
                break;
            }
        }
        let act = {
            let mut s = st.lock().unwrap();
            s.requests.push(path.clone());
            let act = s
                .acts
                .iter()
                .find(|(p, _)| path.starts_with(p.as_str()))
                .map_or(Act::Ok, |(_, a)| *a);
            match act {
                Act::CloseOnceReused if served > 0 && !s.closed_once => {
                    s.closed_once = true;
                    Act::Close
                }
                Act::CloseOnceReused => Act::Ok,
                other => other,
            }
        };
        served += 1;
        match act {
            Act::Ok | Act::CloseOnceReused => {}
            Act::SlowOk(d) => std::thread::sleep(d),
            Act::Reset => {
                drop(reader);
                return reset(out);
            }
            Act::Close => {
                let _ = out.shutdown(Shutdown::Both);
                return;
            }
            Act::Hang => {
                let mut buf = String::new();
                let _ = reader.read_line(&mut buf);
                return;
            }
        }
        let body = format!("body of {path}");
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(body.as_bytes()).is_err() {
            return;
        }
    }
}

fn edge_for(origin: &SplitOrigin, upstream_extra: &str) -> Edge {
    Edge::start(&format!(
        "upstreams:\n  origin:\n    peers: [\"{}\"]\n{upstream_extra}routes:\n  - {{prefix: /, upstream: origin}}\n",
        origin.peer()
    ))
}

fn circuit(edge: &Edge, origin: &SplitOrigin, state: &str) -> f64 {
    edge.metric(&format!(
        "imgedge_upstream_circuit_state{{peer=\"{}\",pool=\"origin\",state=\"{state}\"}}",
        origin.peer()
    ))
}

#[test]
fn one_url_that_resets_does_not_take_the_only_peer_out() {
    let origin = SplitOrigin::start(&[("/bad", Act::Reset)]);
    // The breaker at its defaults (on, 5 failures, 10s cooldown), default retries. The bad URL
    // is not cached, so concurrent requests for it each reach the origin rather than waiting on
    // the cache lock of a fetch that fails.
    let edge = Edge::start(&format!(
        "upstreams:\n  origin:\n    peers: [\"{}\"]\nroutes:\n  - {{prefix: /bad, upstream: origin, cache: false}}\n  - {{prefix: /, upstream: origin}}\n",
        origin.peer()
    ));
    let hammer: Vec<_> = (0..4)
        .map(|_| {
            let url = edge.url("/bad/photo.jpg");
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| try_get_with(&url, &[]).map(|r| r.status))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    // While the one URL is hammered, and after, every other URL is served.
    let mut i = 0;
    let mut check_others = |n: usize| {
        for _ in 0..n {
            let r = get(&edge.url(&format!("/good/{i}.jpg")));
            assert_eq!(
                (r.status, r.text()),
                (200, format!("body of /good/{i}.jpg")),
                "a good URL while /bad/photo.jpg fails; log:\n{}",
                edge.log()
            );
            i += 1;
        }
    };
    check_others(10);
    for h in hammer {
        for status in h.join().unwrap() {
            assert_eq!(status, Ok(502), "the bad URL itself fails cleanly");
        }
    }
    assert!(origin.requests("/bad/") >= 40);
    check_others(20);
    assert_eq!(circuit(&edge, &origin, "open"), 0.0, "{}", edge.log());
    assert!(!edge.log().contains("closed -> open"), "{}", edge.log());
}

#[test]
fn first_byte_timeout_with_a_single_peer_is_a_504_with_its_reason() {
    let origin = SplitOrigin::start(&[("/slow", Act::Hang)]);
    // One peer, the default retry: the retry finds no other peer.
    let edge = edge_for(&origin, "    timeouts: {first_byte: 300ms}\n");
    let started = Instant::now();
    let r = get(&edge.url("/slow.jpg"));
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        r.text()
            .contains("upstream origin sent no response header within 300ms (timeouts.first_byte)"),
        "{}",
        r.text()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        origin.requests("/slow"),
        1,
        "no second wait on the same peer"
    );
    // The other URLs are unaffected.
    assert_eq!(get(&edge.url("/fine.jpg")).status, 200);
}

#[test]
fn retries_on_reused_connections_are_bounded() {
    let origin = SplitOrigin::start(&[
        ("/warm", Act::SlowOk(Duration::from_millis(300))),
        ("/bad", Act::Close),
    ]);
    let edge = edge_for(&origin, "");
    // Twenty requests at once: twenty origin connections, all kept alive by the edge.
    let warm: Vec<_> = (0..20)
        .map(|i| {
            let url = edge.url(&format!("/warm/{i}"));
            std::thread::spawn(move || get(&url).status)
        })
        .collect();
    for w in warm {
        assert_eq!(w.join().unwrap(), 200);
    }
    assert!(origin.connections() >= 15, "{}", origin.connections());
    // The origin drops every connection that asks for /bad: each reused one fails before a
    // response, which looks like a stale keep-alive connection. Retries on them are bounded.
    let r = get(&edge.url("/bad/x.jpg"));
    assert_eq!(r.status, 502, "{}", r.text());
    let tries = origin.requests("/bad/");
    assert!(
        tries <= 3,
        "one request reached the origin {tries} times; log:\n{}",
        edge.log()
    );
    // A really stale connection is still retried without an error for the client.
    origin.set("/race", Act::CloseOnceReused);
    let before = origin.requests("/race");
    let r = get(&edge.url("/race/y.jpg"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        origin.requests("/race") - before,
        2,
        "closed once, then served"
    );
}
