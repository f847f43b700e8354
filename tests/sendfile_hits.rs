//! `cache.sendfile_hits`: fresh memory hits of large 200s sent with sendfile() from a memfd
//! copy. Every answer is compared with the same request to an edge with `sendfile_hits: false`
//! (same origin, same requests): status, body and headers must match (Date and Age aside, and
//! the RateLimit counters, which tick). `imgedge_cache_sendfile_hits_total` tells which path
//! answered. Raw HTTP/1.x on sockets, to see keep-alive and connection closes as they are.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

const TOKEN: &str = "sendfile-test-token-0123456789";
const PAGE: &str = "http://page.example";

struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn cache(&self) -> &str {
        self.header("x-cache-status").unwrap_or("-")
    }
    /// Header names and values, lower-cased names, sorted; Date and Age left out; RateLimit and
    /// the transform timing (each edge made its own transform) by name only.
    fn comparable(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .filter(|(k, _)| k != "date" && k != "age")
            .map(|(k, v)| match k.as_str() {
                "ratelimit" | "server-timing" | "x-transform-ms" => (k, "*".into()),
                _ => (k, v),
            })
            .collect();
        v.sort();
        v
    }
}

/// One client connection, requests written by hand.
struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Conn {
            r: BufReader::new(s),
        }
    }

    fn send(&mut self, method: &str, target: &str, version: &str, headers: &[(&str, &str)]) {
        let mut req = format!("{method} {target} {version}\r\nHost: 127.0.0.1\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.r.get_mut().write_all(req.as_bytes()).unwrap();
    }

    fn read(&mut self, head_only: bool) -> Raw {
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.to_string(), v.trim().to_string()));
        }
        let mut raw = Raw {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only || status == 304 {
            return raw;
        }
        if let Some(len) = raw.header("content-length") {
            raw.body = vec![0; len.parse().unwrap()];
            self.r.read_exact(&mut raw.body).unwrap();
            return raw;
        }
        assert_eq!(
            raw.header("transfer-encoding"),
            Some("chunked"),
            "{} {:?}",
            raw.status,
            raw.headers
        );
        loop {
            let mut size = String::new();
            self.r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            self.r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                return raw;
            }
            raw.body.extend_from_slice(&chunk[..n]);
        }
    }

    fn request(&mut self, target: &str, headers: &[(&str, &str)]) -> Raw {
        self.send("GET", target, "HTTP/1.1", headers);
        self.read(false)
    }

    /// The server closed the connection (after its answer).
    fn closed_by_server(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0))
    }
}

fn origin(big: &[u8]) -> Origin {
    let o = Origin::start();
    let jpeg = |name: &str| Reply::ok("image/jpeg", fixture(name));
    o.route(
        "/big.jpg",
        jpeg("meadow_640.jpg")
            .header("Cache-Control", "max-age=600")
            .header("ETag", "\"big-v1\"")
            .header("Last-Modified", "Tue, 03 Nov 2026 10:00:00 GMT")
            .header("Cache-Tag", "photos"),
    );
    o.route("/other.jpg", jpeg("seeding_640x360.jpg"));
    o.route("/small.jpg", jpeg("truncated.jpg"));
    o.route(
        "/vary.jpg",
        jpeg("meadow_640.jpg").header("Vary", "Accept-Encoding"),
    );
    o.route(
        "/short.jpg",
        jpeg("seeding_640x360.jpg")
            .header("Cache-Control", "max-age=2")
            .header("ETag", "\"short-v1\""),
    );
    o.route(
        "/huge.bin",
        Reply::ok("application/octet-stream", big.to_vec()),
    );
    o
}

fn edge(origin: &Origin, sendfile: bool, dir: &tempfile::TempDir) -> Edge {
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    Edge::start_with_admin(
        &format!(
            "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\ncache: {{memory_bytes: 512MiB, stale_while_revalidate: 0, sendfile_hits: {sendfile}}}\nlimits:\n  policies:\n    - {{name: per_ip, key: client_ip, rate: \"100000/s\", burst: 100000}}\n",
            origin.peer()
        ),
        &format!(
            "token_file: \"{}\", playground_origins: [\"{PAGE}\"]",
            token.display()
        ),
    )
}

struct Pair {
    origin: Origin,
    fast: Edge,
    slow: Edge,
    _dir: tempfile::TempDir,
}

fn pair() -> Pair {
    pair_with(&[])
}

fn pair_with(big: &[u8]) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let origin = origin(big);
    let fast = edge(&origin, true, &dir);
    let slow = edge(&origin, false, &dir);
    Pair {
        origin,
        fast,
        slow,
        _dir: dir,
    }
}

fn sendfile_hits(edge: &Edge) -> f64 {
    edge.metric("imgedge_cache_sendfile_hits_total")
}

/// Requests `target` (on a new connection) until the edge answers it with sendfile; returns
/// that answer.
fn fast_hit(edge: &Edge, target: &str, headers: &[(&str, &str)]) -> Raw {
    eventually(20, "a sendfile hit", || {
        let before = sendfile_hits(edge);
        let r = Conn::open(edge.port).request(target, headers);
        (sendfile_hits(edge) > before).then_some(r)
    })
}

/// The normal path's hit for the same request.
fn normal_hit(edge: &Edge, target: &str, headers: &[(&str, &str)]) -> Raw {
    eventually(20, "a normal hit", || {
        let r = Conn::open(edge.port).request(target, headers);
        (r.cache() == "HIT").then_some(r)
    })
}

fn assert_same(fast: &Raw, slow: &Raw) {
    assert_eq!(fast.status, slow.status);
    assert_eq!(fast.body, slow.body);
    assert_eq!(fast.comparable(), slow.comparable());
}

#[test]
fn sendfile_hits_match_normal_hits() {
    let p = pair();
    let body = fixture("meadow_640.jpg");
    let cases: [(&str, Vec<(&str, &str)>); 3] = [
        ("/big.jpg", vec![]),
        ("/big.jpg", vec![("Origin", PAGE)]),
        // A transformed entry: Server-Timing, its own ETag, a length the storage set.
        ("/big.jpg?width=600&format=png", vec![]),
    ];
    for (target, headers) in &cases {
        let fast = fast_hit(&p.fast, target, headers);
        let slow = normal_hit(&p.slow, target, headers);
        assert_same(&fast, &slow);
        assert_eq!(fast.status, 200);
        assert_eq!(fast.cache(), "HIT");
        assert_eq!(
            fast.header("content-length"),
            Some(fast.body.len().to_string().as_str())
        );
        assert!(fast.header("etag").is_some());
        assert!(fast.header("date").is_some());
        assert!(fast.header("age").is_some());
        assert!(fast.header("ratelimit-policy").is_some());
        assert_eq!(fast.header("connection"), Some("keep-alive"));
        assert!(fast.header("x-imgedge-source-etag").is_none());
        assert!(fast.header("x-imgedge-generated-etag").is_none());
        if target.contains('?') {
            assert!(fast.header("server-timing").is_some(), "{target}");
        } else {
            assert_eq!(fast.body, body);
        }
        if !headers.is_empty() {
            assert_eq!(fast.header("access-control-allow-origin"), Some(PAGE));
        }
    }
    assert_eq!(sendfile_hits(&p.slow), 0.0, "off means off");

    // No copy for bodies under 16 KiB or entries that vary: those hits stay on the normal path.
    for target in ["/small.jpg", "/vary.jpg"] {
        normal_hit(&p.fast, target, &[]);
        let before = sendfile_hits(&p.fast);
        for _ in 0..3 {
            let r = Conn::open(p.fast.port).request(target, &[]);
            assert_eq!(r.cache(), "HIT");
            assert_same(&r, &normal_hit(&p.slow, target, &[]));
        }
        assert_eq!(sendfile_hits(&p.fast), before, "{target}");
    }

    // Conditional and range requests take the normal path, which answers 304 and 206.
    let before = sendfile_hits(&p.fast);
    let cond = [("If-None-Match", "\"big-v1\"")];
    let r = Conn::open(p.fast.port).request("/big.jpg", &cond);
    assert_eq!(r.status, 304);
    let range = [("Range", "bytes=0-99")];
    let r = Conn::open(p.fast.port).request("/big.jpg", &range);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, body[..100]);
    assert_eq!(sendfile_hits(&p.fast), before);

    // Logging saw them as what they were: 200 HITs with their bytes.
    let log = p.fast.log();
    let line = "\"GET /big.jpg\" 200 cache=HIT";
    let bytes = format!("bytes={}", body.len());
    assert!(
        log.lines().any(|l| l.contains(line) && l.contains(&bytes)),
        "{log}"
    );
    let hits = p
        .fast
        .metric("imgedge_requests_total{cache_status=\"HIT\",route=\"/\",status_class=\"2xx\"}");
    assert!(hits >= 5.0, "{hits}");
}

#[test]
fn keep_alive_connections_are_reused_across_sendfile_hits() {
    let p = pair();
    let body = fixture("meadow_640.jpg");
    fast_hit(&p.fast, "/big.jpg", &[]);
    fast_hit(&p.fast, "/other.jpg", &[]);
    let before = sendfile_hits(&p.fast);
    let mut c = Conn::open(p.fast.port);
    for i in 0..6 {
        let target = if i % 2 == 0 { "/big.jpg" } else { "/other.jpg" };
        let r = c.request(target, &[]);
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.cache(), "HIT");
        assert_eq!(r.header("connection"), Some("keep-alive"));
        if i % 2 == 0 {
            assert_eq!(r.body, body);
        } else {
            assert_eq!(r.body, fixture("seeding_640x360.jpg"));
        }
    }
    assert_eq!(sendfile_hits(&p.fast), before + 6.0);
    // The connection is still good for the normal path, then for sendfile again.
    let r = c.request("/big.jpg", &[("Range", "bytes=10-19")]);
    assert_eq!((r.status, r.body.as_slice()), (206, &body[10..20]));
    let r = c.request("/big.jpg", &[]);
    assert_eq!((r.status, r.body.len()), (200, body.len()));
    assert_eq!(sendfile_hits(&p.fast), before + 7.0);
}

#[test]
fn http10_and_connection_close_get_the_same_answer_and_a_close() {
    let p = pair();
    fast_hit(&p.fast, "/big.jpg", &[]);
    normal_hit(&p.slow, "/big.jpg", &[]);

    // HTTP/1.1 with Connection: close: sendfile, then the server closes.
    let answer = |edge: &Edge, version: &str, headers: &[(&str, &str)]| {
        let mut c = Conn::open(edge.port);
        c.send("GET", "/big.jpg", version, headers);
        let r = c.read(false);
        assert!(c.closed_by_server(), "{version} {headers:?}: closed after");
        r
    };
    let close = [("Connection", "close")];
    let before = sendfile_hits(&p.fast);
    let fast = answer(&p.fast, "HTTP/1.1", &close);
    assert_eq!(sendfile_hits(&p.fast), before + 1.0);
    assert_eq!(fast.header("connection"), Some("close"));
    assert_same(&fast, &answer(&p.slow, "HTTP/1.1", &close));

    // HTTP/1.0 (no keep-alive): the normal path, same answer on both.
    let fast = answer(&p.fast, "HTTP/1.0", &[]);
    assert_eq!(fast.status, 200);
    assert_eq!(fast.cache(), "HIT");
    assert_same(&fast, &answer(&p.slow, "HTTP/1.0", &[]));
}

#[test]
fn head_is_answered_like_a_normal_hit() {
    let p = pair();
    fast_hit(&p.fast, "/big.jpg", &[]);
    normal_hit(&p.slow, "/big.jpg", &[]);
    let head = |edge: &Edge| {
        let mut c = Conn::open(edge.port);
        c.send("HEAD", "/big.jpg", "HTTP/1.1", &[]);
        let r = c.read(true);
        // Nothing follows the header: the next answer on the connection is whole.
        let next = c.request("/big.jpg", &[]);
        assert_eq!(next.body, fixture("meadow_640.jpg"));
        r
    };
    let fast = head(&p.fast);
    assert_eq!(fast.status, 200);
    assert_same(&fast, &head(&p.slow));
}

#[test]
fn purges_stop_sendfile_hits_at_once() {
    let p = pair();
    let auth = format!("Bearer {TOKEN}");
    let purge = |target: &str, extra: &[(&str, &str)]| {
        let mut h = vec![("Authorization", auth.as_str())];
        h.extend_from_slice(extra);
        let mut c = Conn::open(p.fast.port);
        c.send("PURGE", target, "HTTP/1.1", &h);
        let r = c.read(false);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    };
    let targets: [(&str, &[(&str, &str)]); 3] = [
        ("/big.jpg", &[]),
        ("/b*", &[]),
        ("/", &[("X-Purge-Tag", "photos")]),
    ];
    for (target, extra) in targets {
        fast_hit(&p.fast, "/big.jpg", &[]);
        let origin_before = p.origin.hits("/big.jpg");
        purge(target, extra);
        let r = Conn::open(p.fast.port).request("/big.jpg", &[]);
        assert_eq!(r.cache(), "MISS", "after purge {target}");
        assert_eq!(r.body, fixture("meadow_640.jpg"));
        assert_eq!(p.origin.hits("/big.jpg"), origin_before + 1);
    }
    // The copies' memory is given back (only the new entry's copy, once made, remains).
    fast_hit(&p.fast, "/big.jpg", &[]);
    assert_eq!(p.fast.metric("imgedge_cache_sendfile_items"), 1.0);
    // A new origin version after a purge is what the next sendfile hits send.
    p.origin.route(
        "/big.jpg",
        Reply::ok("image/jpeg", fixture("seeding_640x360.jpg"))
            .header("Cache-Control", "max-age=600"),
    );
    purge("/big.jpg", &[]);
    let r = fast_hit(&p.fast, "/big.jpg", &[]);
    assert_eq!(r.body, fixture("seeding_640x360.jpg"));
}

#[test]
fn an_expired_entry_is_revalidated_by_the_normal_path() {
    let p = pair();
    let body = fixture("seeding_640x360.jpg");
    let r = fast_hit(&p.fast, "/short.jpg", &[]);
    assert_eq!(r.body, body);
    // Until the entry expires, sendfile hits; never past its max-age.
    let revalidated = eventually(20, "the entry to be revalidated", || {
        let r = Conn::open(p.fast.port).request("/short.jpg", &[]);
        assert_eq!(r.body, body);
        if r.cache() == "HIT" {
            let age: u64 = r.header("age").unwrap().parse().unwrap();
            assert!(age <= 2, "a hit past max-age: Age {age}");
            return None;
        }
        Some(r)
    });
    assert_eq!(revalidated.cache(), "REVALIDATED");
    assert!(p.origin.not_modified("/short.jpg") >= 1);
    // The revalidated entry is served by sendfile again, with its new age.
    let r = fast_hit(&p.fast, "/short.jpg", &[]);
    assert_eq!(r.body, body);
    let age: u64 = r.header("age").unwrap().parse().unwrap();
    assert!(age <= 2, "Age {age}");
}

#[test]
fn clients_that_stall_or_leave_mid_body_do_not_hold_up_the_server() {
    // Larger than the socket buffers, so the send has to wait for the client (and under the
    // 16 MiB memory shard of a 512 MiB cache).
    let big: Vec<u8> = (0..15u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let p = pair_with(&big);
    let r = eventually(30, "a sendfile hit of the big body", || {
        let before = sendfile_hits(&p.fast);
        let r = Conn::open(p.fast.port).request("/huge.bin", &[]);
        (sendfile_hits(&p.fast) > before).then_some(r)
    });
    assert!(r.body == big, "the whole body");

    // Stalled clients (they ask and read nothing) keep their sends waiting; everyone else is
    // served meanwhile.
    let stalled: Vec<Conn> = (0..4)
        .map(|_| {
            let mut c = Conn::open(p.fast.port);
            c.send("GET", "/huge.bin", "HTTP/1.1", &[]);
            c
        })
        .collect();
    for _ in 0..10 {
        let r = Conn::open(p.fast.port).request("/big.jpg", &[]);
        assert_eq!(r.body, fixture("meadow_640.jpg"));
    }
    // They read a little, then leave.
    for mut c in stalled {
        let mut some = [0u8; 4096];
        c.r.read_exact(&mut some).unwrap();
        let s = c.r.get_ref();
        s.shutdown(Shutdown::Both).unwrap();
    }
    let log = eventually(20, "the aborted sends in the access log", || {
        let log = p.fast.log();
        (log.matches("error=\"").count() >= 4).then_some(log)
    });
    assert!(log.contains("sendfile hit"), "{log}");
    // Still serving, sendfile included.
    let r = fast_hit(&p.fast, "/huge.bin", &[]);
    assert!(r.body == big);
}

#[test]
fn tls_hits_never_take_the_sendfile_path() {
    let dir = tempfile::tempdir().unwrap();
    self_signed_cert(dir.path(), "imgedge.test", "IP:127.0.0.1");
    let origin = origin(&[]);
    let tls_port = free_port();
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\ntls:\n  listen: [\"127.0.0.1:{tls_port}\"]\n  cert_file: {d}/cert.pem\n  key_file: {d}/key.pem\n",
        origin.peer(),
        d = dir.path().display()
    ));
    // The entry has its copy: plain HTTP/1.1 hits are sent with sendfile.
    fast_hit(&edge, "/big.jpg", &[]);
    let before = sendfile_hits(&edge);
    let url = format!("https://127.0.0.1:{tls_port}/big.jpg");
    for version in ["--http1.1", "--http2", "--http1.1"] {
        let out = std::process::Command::new("curl")
            .args(["-s", "-D", "-", "--cacert"])
            .arg(dir.path().join("cert.pem"))
            .args([version, "-o"])
            .arg(dir.path().join("body"))
            .arg(&url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{version}");
        let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        assert!(head.contains("x-cache-status: hit"), "{version}: {head}");
        let body = std::fs::read(dir.path().join("body")).unwrap();
        assert!(body == fixture("meadow_640.jpg"), "{version}");
    }
    assert_eq!(sendfile_hits(&edge), before, "TLS hits go through Pingora");
}
