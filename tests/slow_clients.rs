//! End-to-end: slow and silent clients are disconnected after `client.header_timeout`, idle
//! keep-alive connections after `client.keepalive_timeout`, while other clients keep being
//! served. Real sockets on loopback; the only waits are the slow client's own pacing and
//! blocking reads bounded by socket timeouts.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn edge(origin: &Origin) -> Edge {
    Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\nclient: {{header_timeout: 1s, keepalive_timeout: 1500ms}}\n",
        origin.peer()
    ))
}

/// Reads until the server closes; returns what arrived and when the close came.
fn read_until_closed(s: &mut TcpStream, started: Instant) -> (String, Duration) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    (
        String::from_utf8_lossy(&buf).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn slowloris_is_cut_off_at_the_header_timeout_while_others_are_served() {
    let origin = Origin::start();
    origin.route("/ok", Reply::ok("text/plain", "ok"));
    let edge = edge(&origin);
    let port = edge.port;
    // The slow client: a request line, then one header byte every 100 ms, forever.
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let started = Instant::now();
        s.write_all(b"GET /ok HTTP/1.1\r\nHost: localhost\r\n")
            .unwrap();
        let mut reader = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            for b in b"X-Slow: ".iter().chain([b'a'; 200].iter()).cycle() {
                if s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let out = read_until_closed(&mut reader, started);
        drop(writer);
        out
    });
    // Meanwhile other clients are served promptly.
    let deadline = Instant::now() + Duration::from_millis(900);
    let mut served = 0;
    while Instant::now() < deadline {
        let t = Instant::now();
        let r = get(&edge.url("/ok"));
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        served += 1;
    }
    assert!(served >= 3, "only {served} requests served");
    let (reply, took) = slow.join().unwrap();
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "cut after {took:?}"
    );
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("(client.header_timeout)"), "{reply}");
    assert!(edge.metric("imgedge_client_timeouts_total{kind=\"header\"}") >= 1.0);
    // The edge still serves.
    assert_eq!(get(&edge.url("/ok")).status, 200);
}

#[test]
fn a_silent_client_is_closed_at_the_header_timeout() {
    let origin = Origin::start();
    let edge = edge(&origin);
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
    let (reply, took) = read_until_closed(&mut s, started);
    assert_eq!(reply, "", "nothing is sent to a client that sent nothing");
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
}

#[test]
fn idle_keepalive_connection_is_closed_at_the_keepalive_timeout() {
    let origin = Origin::start();
    origin.route("/ok", Reply::ok("text/plain", "ok"));
    let edge = edge(&origin);
    let mut s = TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
    // Two requests on one connection: keep-alive works.
    for _ in 0..2 {
        s.write_all(b"GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        while !String::from_utf8_lossy(&got).ends_with("\r\n\r\nok") {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
    }
    // Then idle: closed after keepalive_timeout (1.5 s), not after the header timeout (1 s).
    let started = Instant::now();
    let (rest, took) = read_until_closed(&mut s, started);
    assert_eq!(rest, "");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "closed after {took:?}"
    );
}

/// Sends `head` at once, then trickles header bytes every 100 ms (at most ~6 s, so a server
/// that never cuts it still ends the test); returns what arrived and when the server closed.
fn trickle_after(port: u16, head: &'static [u8]) -> (String, Duration) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let started = Instant::now();
    s.write_all(head).unwrap();
    let mut reader = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for b in b"X-Slow: ".iter().chain([b'a'; 52].iter()) {
            if s.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let out = read_until_closed(&mut reader, started);
    let _ = writer.join();
    out
}

fn assert_cut_at_header_timeout((reply, took): (String, Duration), what: &str) {
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "{what}: cut after {took:?}: {reply}"
    );
    assert!(reply.starts_with("HTTP/1.1 408"), "{what}: {reply}");
}

/// A space (or DEL) in the target makes httparse refuse the request line while Pingora escapes
/// it and goes on reading: the header deadline must hold all the same.
#[test]
fn a_request_line_the_parser_refuses_does_not_escape_the_header_timeout() {
    let origin = Origin::start();
    origin.route("/ok", Reply::ok("text/plain", "ok"));
    let edge = edge(&origin);
    let got = trickle_after(edge.port, b"GET /a b HTTP/1.1\r\nHost: localhost\r\n");
    assert_cut_at_header_timeout(got, "space in the target");
    let got = trickle_after(edge.port, b"GET /a\x7fb HTTP/1.1\r\nHost: localhost\r\n");
    assert_cut_at_header_timeout(got, "DEL in the target");
    // Sent whole and at once, such a request is still served as before (Pingora escapes it).
    let s = TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
    let (status, _) = exchange(
        s,
        "GET /o k HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_ne!(status, 0);
    assert!(status < 500, "{status}");
    assert_eq!(get(&edge.url("/ok")).status, 200);
}

/// The admin listener keeps the same deadlines as the proxy's (`client` section).
#[test]
fn the_admin_listener_has_the_client_timeouts_too() {
    let origin = Origin::start();
    let edge = edge(&origin);
    let got = trickle_after(
        edge.admin_port,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n",
    );
    assert_cut_at_header_timeout(got, "admin slowloris");
    let got = trickle_after(edge.admin_port, b"GET /a b HTTP/1.1\r\nHost: localhost\r\n");
    assert_cut_at_header_timeout(got, "admin, space in the target");
    // A silent client is closed at the header timeout; an idle keep-alive one at keepalive.
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", edge.admin_port)).unwrap();
    let (reply, took) = read_until_closed(&mut s, started);
    assert_eq!(reply, "");
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "silent admin client closed after {took:?}"
    );
    let mut s = TcpStream::connect(("127.0.0.1", edge.admin_port)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while !String::from_utf8_lossy(&got).ends_with("ok\n") {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    let started = Instant::now();
    let (rest, took) = read_until_closed(&mut s, started);
    assert_eq!(rest, "");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "idle admin connection closed after {took:?}"
    );
}
