//! What reaches the origin and what reaches the client: `X-Forwarded-For` / `Forwarded` /
//! `X-Forwarded-*` (with and without `limits.trusted_proxies`), hop-by-hop fields in both
//! directions, and no SSRF: a client-chosen `Host`, absolute-form target, `X-Forwarded-Host`,
//! `CONNECT`, upgrade or odd path never makes imgedge connect anywhere but its configured peers
//! (an "evil" listener on loopback counts the connections it gets: zero).

mod common;

use common::{eventually, Edge, Origin, Reply};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A listener that only counts the connections made to it.
struct Evil {
    port: u16,
    conns: Arc<AtomicUsize>,
}

impl Evil {
    fn start() -> Evil {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let conns = Arc::new(AtomicUsize::new(0));
        let c = conns.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                c.fetch_add(1, Ordering::SeqCst);
                drop(s);
            }
        });
        Evil { port, conns }
    }
    fn count(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
}

/// Writes a hand-made request (Connection: close is the caller's business) and reads the answer.
fn raw(port: u16, request: &str) -> (u16, String) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    common::exchange(s, request)
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    h.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn origin_with(paths: &[&str]) -> Origin {
    let o = Origin::start();
    for p in paths {
        o.route(p, Reply::ok("image/png", b"png".to_vec()));
    }
    o
}

fn edge_for(origin: &Origin, extra: &str) -> Edge {
    Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\n{extra}",
        origin.peer()
    ))
}

#[test]
fn untrusted_client_forwarding_headers_are_replaced() {
    let origin = origin_with(&["/a.png"]);
    let edge = edge_for(&origin, "");
    let req = format!(
        "GET /a.png HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\nForwarded: for=6.6.6.6;host=evil.example\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\nX-Real-IP: 6.6.6.6\r\nConnection: close\r\n\r\n",
        p = edge.port
    );
    let (status, text) = raw(edge.port, &req);
    assert_eq!(status, 200, "{text}");
    let h = origin.last_request_headers("/a.png").unwrap();
    assert_eq!(header(&h, "x-forwarded-for"), ["127.0.0.1"]);
    // The host as the cache key holds it (issue 18: without the port the client wrote).
    assert_eq!(
        header(&h, "forwarded"),
        ["for=127.0.0.1;proto=http;host=127.0.0.1"]
    );
    assert_eq!(header(&h, "x-forwarded-host"), ["127.0.0.1"]);
    assert_eq!(header(&h, "x-forwarded-proto"), ["http"]);
    assert!(header(&h, "x-real-ip").is_empty());
    // Host goes to the origin lower-cased and without its port, as the key holds it (no
    // upstream `host:` override here).
    assert_eq!(header(&h, "host"), ["127.0.0.1"]);
}

#[test]
fn trusted_proxy_chain_is_appended_to() {
    let origin = origin_with(&["/a.png"]);
    let edge = edge_for(&origin, "limits:\n  trusted_proxies: [\"127.0.0.1/32\"]\n");
    let req = "GET /a.png HTTP/1.1\r\nHost: img.example.com\r\nX-Forwarded-For: 198.51.100.7\r\nX-Forwarded-For: 10.0.0.2\r\nForwarded: for=198.51.100.7;proto=https\r\nForwarded: for=\"[2001:db8::1]\"\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: img.example.com\r\nConnection: close\r\n\r\n";
    let (status, text) = raw(edge.port, req);
    assert_eq!(status, 200, "{text}");
    let h = origin.last_request_headers("/a.png").unwrap();
    assert_eq!(
        header(&h, "x-forwarded-for"),
        ["198.51.100.7, 10.0.0.2, 127.0.0.1"]
    );
    assert_eq!(
        header(&h, "forwarded"),
        ["for=198.51.100.7;proto=https, for=\"[2001:db8::1]\", for=127.0.0.1;proto=http;host=img.example.com"]
    );
    // A trusted proxy's view of the scheme and host is kept.
    assert_eq!(header(&h, "x-forwarded-proto"), ["https"]);
    assert_eq!(header(&h, "x-forwarded-host"), ["img.example.com"]);
}

/// IPv6 clients: `X-Forwarded-For: ::1`, `Forwarded: for="[::1]"`. Needs an IPv6 loopback.
#[test]
fn ipv6_client_is_quoted_in_forwarded() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    }
    let origin = origin_with(&["/a.png"]);
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let admin = common::free_port();
    let conf = format!(
        "server: {{threads: 1, pid_file: {d}/p.pid, upgrade_sock: {d}/u.sock, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1}}\nlisten: [\"[::1]:{port}\"]\nadmin: {{listen: \"127.0.0.1:{admin}\"}}\nupstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\n",
        origin.peer(),
        d = dir.path().display()
    );
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, conf).unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = std::process::Command::new(common::bin())
        .arg("-c")
        .arg(&path)
        .env("RUNTIME_DIRECTORY", dir.path())
        .stderr(log)
        .spawn()
        .unwrap();
    eventually(20, "imgedge on [::1]", || {
        TcpStream::connect(("::1", port)).ok()
    });
    let mut s = TcpStream::connect(("::1", port)).unwrap();
    write!(
        s,
        "GET /a.png HTTP/1.1\r\nHost: [::1]:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let h = origin.last_request_headers("/a.png").unwrap();
    assert_eq!(header(&h, "x-forwarded-for"), ["::1"]);
    assert_eq!(
        header(&h, "forwarded"),
        ["for=\"[::1]\";proto=http;host=\"[::1]\""]
    );
}

#[test]
fn hop_by_hop_request_fields_do_not_reach_the_origin() {
    let origin = origin_with(&["/a.png", "/ws.png"]);
    let edge = edge_for(&origin, "");
    let (status, text) = raw(
        edge.port,
        "GET /a.png HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-Checksum\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nX-Kept: yes\r\n\r\n",
    );
    assert_eq!(status, 200, "{text}");
    let h = origin.last_request_headers("/a.png").unwrap();
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "proxy-authorization",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(
            header(&h, gone).is_empty(),
            "{gone} reached the origin: {h:?}"
        );
    }
    assert_eq!(header(&h, "x-kept"), ["yes"]);
    for c in header(&h, "connection") {
        assert!(!c.to_ascii_lowercase().contains("x-secret"), "{c}");
    }
    // No WebSocket (or any) upgrade is forwarded to an image origin.
    let (status, text) = raw(
        edge.port,
        "GET /ws.png HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(status, 200, "{text}");
    let ws = origin.last_request_headers("/ws.png").unwrap();
    assert!(header(&ws, "upgrade").is_empty(), "{ws:?}");
    for c in header(&ws, "connection") {
        assert!(!c.to_ascii_lowercase().contains("upgrade"), "{c}");
    }
    // Naming a forwarding field in Connection (to have it dropped) is refused.
    let (status, text) = raw(
        edge.port,
        "GET /a.png?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close, X-Forwarded-For\r\n\r\n",
    );
    assert_eq!(status, 400, "{text}");
    assert_eq!(origin.hits("/a.png?x=1"), 0);
}

#[test]
fn hop_by_hop_response_fields_do_not_reach_the_client() {
    let origin = Origin::start();
    origin.route(
        "/h.png",
        Reply::ok("image/png", b"png".to_vec())
            .header("Connection", "X-Internal")
            .header("X-Internal", "secret")
            .header("Keep-Alive", "timeout=5, max=100")
            .header("Proxy-Connection", "keep-alive")
            .header("Proxy-Authenticate", "Basic realm=origin")
            .header("Trailer", "X-Checksum")
            .header("Upgrade", "h2c")
            .header("X-Kept", "yes")
            .header("Cache-Control", "max-age=60"),
    );
    let edge = edge_for(&origin, "");
    for expect in ["MISS", "HIT"] {
        let (status, text) = raw(
            edge.port,
            "GET /h.png HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(status, 200, "{text}");
        let head = text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        assert!(
            head.contains(&format!("x-cache-status: {}", expect.to_ascii_lowercase())),
            "{head}"
        );
        for gone in [
            "x-internal:",
            "keep-alive:",
            "proxy-connection:",
            "proxy-authenticate:",
            "trailer:",
            "upgrade:",
        ] {
            assert!(
                !head.contains(gone),
                "{gone} reached the client ({expect}):\n{head}"
            );
        }
        assert!(head.contains("x-kept: yes"), "{head}");
        // Pingora's own Connection header only.
        assert!(head.contains("connection: close"), "{head}");
        assert!(text.ends_with("png"), "{text}");
    }
    assert_eq!(origin.hits("/h.png"), 1);
}

#[test]
fn nothing_from_the_client_picks_the_upstream() {
    let evil = Evil::start();
    let e = evil.port;
    let origin = origin_with(&["/a.png", "/x"]);
    let edge = edge_for(&origin, "");
    let p = edge.port;
    let cases: Vec<(String, &[u16])> = vec![
        // Host naming the evil listener: routed by the config, sent to the configured peer.
        (format!("GET /a.png HTTP/1.1\r\nHost: 127.0.0.1:{e}\r\n"), &[200]),
        // Absolute-form target naming it (with a matching Host, as RFC 9112 wants).
        (format!("GET http://127.0.0.1:{e}/x HTTP/1.1\r\nHost: 127.0.0.1:{e}\r\n"), &[200]),
        // ... with a different Host: refused by Pingora as ambiguous.
        (format!("GET http://127.0.0.1:{e}/x HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\n"), &[400]),
        // ... without a Host.
        (format!("GET http://127.0.0.1:{e}/x HTTP/1.1\r\n"), &[200, 400]),
        // Userinfo tricks.
        (format!("GET http://a@127.0.0.1:{e}/x HTTP/1.1\r\nHost: a@127.0.0.1:{e}\r\n"), &[400]),
        (format!("GET /x HTTP/1.1\r\nHost: 127.0.0.1:{p}@127.0.0.1:{e}\r\n"), &[400]),
        // Forwarding headers are data for the origin, never a destination.
        (format!("GET /a.png HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-Host: 127.0.0.1:{e}\r\nX-Forwarded-For: 127.0.0.1:{e}\r\nForwarded: host=\"127.0.0.1:{e}\"\r\nX-Original-URL: http://127.0.0.1:{e}/x\r\nX-Rewrite-URL: http://127.0.0.1:{e}/x\r\n"), &[200]),
        // Paths that look like URLs stay paths at the configured origin.
        (format!("GET //127.0.0.1:{e}/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"), &[400, 404]),
        (format!("GET /@127.0.0.1:{e}/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"), &[404]),
        (format!("GET /http://127.0.0.1:{e}/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"), &[404]),
        // Traversal, plain and encoded: refused before routing.
        ("GET /../x HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_string(), &[400]),
        ("GET /a/%2e%2e/%2E%2e/x HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_string(), &[400]),
        ("GET /a/..%2f..%2fx HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_string(), &[400]),
        ("GET /a/..%5cx HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_string(), &[400]),
        ("GET /a.png%00.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_string(), &[400]),
        // CONNECT and upgrades.
        (format!("CONNECT 127.0.0.1:{e} HTTP/1.1\r\nHost: 127.0.0.1:{e}\r\n"), &[405]),
        (format!("GET /a.png HTTP/1.1\r\nHost: 127.0.0.1:{e}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"), &[200]),
    ];
    let mut wrong = Vec::new();
    for (head, want) in &cases {
        let (status, text) = raw(p, &format!("{head}Connection: close\r\n\r\n"));
        if !want.contains(&status) {
            wrong.push(format!("{head:?}: got {status}, want {want:?}\n{text}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n----\n"));
    // Traversal refusals say why.
    let (_, text) = raw(
        p,
        "GET /a/%2e%2e/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert!(text.contains("\"..\" segment"), "{text}");
    assert_eq!(evil.count(), 0, "imgedge connected to the evil listener");
    assert!(
        origin.total_hits() >= 4,
        "the configured origin got the requests"
    );
    assert_eq!(origin.hits("/../x"), 0);
}

#[test]
fn upstream_host_override_wins_over_the_client_host() {
    let evil = Evil::start();
    let origin = origin_with(&["/a.png"]);
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"], host: images.example.com}}\nroutes:\n  - {{prefix: /, upstream: origin}}\n",
        origin.peer()
    ));
    let (status, text) = raw(
        edge.port,
        &format!(
            "GET http://127.0.0.1:{e}/a.png HTTP/1.1\r\nHost: 127.0.0.1:{e}\r\nConnection: close\r\n\r\n",
            e = evil.port
        ),
    );
    assert_eq!(status, 200, "{text}");
    let h = origin.last_request_headers("/a.png").unwrap();
    assert_eq!(header(&h, "host"), ["images.example.com"]);
    assert_eq!(evil.count(), 0);
}
