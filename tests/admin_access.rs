//! Who may use the admin listener's `/quota` and `/purge`: clients in `admin.allow_cidrs`
//! (default loopback) or with `Authorization: Bearer <admin.token>`. `/healthz`, `/metrics` and
//! the try-it page stay open. The real binary, real sockets; a second loopback address
//! (127.0.0.2) plays the remote client.

mod common;

use common::{Edge, Origin};
use std::net::SocketAddr;

const TOKEN: &str = "admin-secret-0123456789";

fn body(origin: &Origin) -> String {
    format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\n",
        origin.peer()
    )
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// One request over a socket bound to `from` (a loopback address) so the admin listener sees
/// that client address.
fn request(
    from: &str,
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    sock.bind(&local.into()).unwrap();
    let remote: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    sock.connect(&remote.into()).unwrap();
    let s: std::net::TcpStream = sock.into();
    let (status, text) = common::exchange(s, &common::request_text(method, target, headers, body));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn get(from: &str, port: u16, target: &str, auth: Option<&str>) -> Answer {
    let h: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    request(from, port, "GET", target, &h, "")
}

fn purge(from: &str, port: u16, auth: Option<&str>) -> Answer {
    let mut h: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    h.push(("Content-Type", "application/json"));
    request(from, port, "POST", "/purge", &h, r#"{"prefix": "/"}"#)
}

/// Open endpoints answer anyone who reaches the listener.
fn open_endpoints_answer(edge: &Edge, from: &str) {
    for path in ["/healthz", "/metrics", "/"] {
        let a = get(from, edge.admin_port, path, None);
        assert_eq!(a.status, 200, "{path} from {from}: {}", a.body);
    }
}

#[test]
fn default_allows_loopback_without_token() {
    let origin = Origin::start();
    let edge = Edge::start(&body(&origin));
    for from in ["127.0.0.1", "127.0.0.2"] {
        let a = get(from, edge.admin_port, "/quota?key=1.2.3.4", None);
        assert_eq!(a.status, 200, "{}", a.body);
        let a = purge(from, edge.admin_port, None);
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.body.contains("\"purged\""), "{}", a.body);
    }
    open_endpoints_answer(&edge, "127.0.0.1");
    // Without a token configured, a bearer token from an allowed address does not hurt.
    let a = get(
        "127.0.0.1",
        edge.admin_port,
        "/quota?key=x",
        Some("Bearer whatever"),
    );
    assert_eq!(a.status, 200, "{}", a.body);
}

#[test]
fn token_or_allowed_network() {
    let origin = Origin::start();
    let edge = Edge::start_with_admin(
        &body(&origin),
        &format!("token: \"{TOKEN}\", allow_cidrs: [\"127.0.0.2/32\"]"),
    );
    let port = edge.admin_port;
    let bearer = format!("Bearer {TOKEN}");

    // 127.0.0.1 is not allowed: no credentials -> 401 with a reason and a challenge.
    for a in [
        get("127.0.0.1", port, "/quota?key=x", None),
        purge("127.0.0.1", port, None),
    ] {
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(a.head.contains("www-authenticate: bearer"), "{}", a.head);
        assert!(a.body.contains("Authorization: Bearer"), "{}", a.body);
        assert!(a.body.contains("127.0.0.1"), "{}", a.body);
        assert!(a.body.contains("admin.allow_cidrs"), "{}", a.body);
    }
    // A wrong token -> 403, also from the allowed address.
    for from in ["127.0.0.1", "127.0.0.2"] {
        let a = get(from, port, "/quota?key=x", Some("Bearer not-the-token"));
        assert_eq!(a.status, 403, "{from}: {}", a.body);
        assert!(a.body.contains("wrong admin token"), "{}", a.body);
        let a = purge(from, port, Some(&format!("Basic {TOKEN}")));
        assert_eq!(a.status, 403, "{from}: {}", a.body);
    }
    // The right token from anywhere; the allowed network without one.
    let a = get("127.0.0.1", port, "/quota?key=x", Some(&bearer));
    assert_eq!(a.status, 200, "{}", a.body);
    let a = purge("127.0.0.1", port, Some(&bearer));
    assert_eq!(a.status, 200, "{}", a.body);
    let a = get("127.0.0.2", port, "/quota?key=x", None);
    assert_eq!(a.status, 200, "{}", a.body);
    let a = purge("127.0.0.2", port, None);
    assert_eq!(a.status, 200, "{}", a.body);
    // The method check comes after the access check: nothing is learnt without access.
    let a = get("127.0.0.1", port, "/purge", None);
    assert_eq!(a.status, 401, "{}", a.body);

    open_endpoints_answer(&edge, "127.0.0.1");
    assert!(
        edge.log().contains("refused"),
        "refusals are logged:\n{}",
        edge.log()
    );
}

#[test]
fn empty_allow_list_without_token_refuses_everyone() {
    let origin = Origin::start();
    let edge = Edge::start_with_admin(&body(&origin), "allow_cidrs: []");
    let a = get("127.0.0.1", edge.admin_port, "/quota?key=x", None);
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("not allowed from 127.0.0.1"), "{}", a.body);
    let a = purge("127.0.0.1", edge.admin_port, Some("Bearer x"));
    assert_eq!(a.status, 403, "{}", a.body);
    open_endpoints_answer(&edge, "127.0.0.1");
}

#[test]
fn admin_listener_defaults_to_loopback() {
    // The embedded default and a config without admin.listen both bind the admin to 127.0.0.1.
    let c = imgedge::config::parse_str(
        "upstreams:\n  o: {peers: [\"127.0.0.1:1\"]}\nroutes:\n  - {prefix: /, upstream: o}\n",
    )
    .unwrap();
    let addr: SocketAddr = c.admin.listen.parse().unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    let nets: Vec<String> = c.admin.allow_cidrs.iter().map(|n| n.to_string()).collect();
    assert_eq!(nets, ["127.0.0.0/8", "::1/128"]);
    let d = imgedge::config::parse_str(imgedge::config::EMBEDDED_DEFAULT).unwrap();
    let addr: SocketAddr = d.admin.listen.parse().unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
}

/// One request written by hand with exactly these header lines (`Host` included).
fn raw(port: u16, method: &str, target: &str, lines: &[(&str, &str)], body: &str) -> Answer {
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in lines {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (status, text) = common::exchange(s, &req);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// An edge whose origin serves a cacheable `/a.jpg`, fetched once so that it is cached.
fn cached_edge(origin: &Origin, admin_extra: &str) -> Edge {
    origin.route(
        "/a.jpg",
        common::Reply::ok("image/jpeg", common::fixture("meadow_640.jpg"))
            .header("Cache-Control", "max-age=600"),
    );
    let edge = Edge::start_with_admin(&body(origin), admin_extra);
    common::get(&edge.url("/a.jpg"));
    assert_eq!(common::get(&edge.url("/a.jpg")).cache(), "HIT");
    edge
}

fn still_cached(edge: &Edge, what: &str) {
    assert_eq!(
        common::get(&edge.url("/a.jpg")).cache(),
        "HIT",
        "{what}: the entry must not have been purged"
    );
}

const PURGE_ALL: &str = r#"{"prefix": "/"}"#;

/// A web page can POST `text/plain` (or a form) anywhere without a CORS preflight: `/purge`
/// takes only `application/json`, and no request from a foreign `Origin`.
#[test]
fn cross_site_purges_are_refused() {
    let origin = Origin::start();
    let edge = cached_edge(&origin, "");
    let port = edge.admin_port;
    let host = format!("127.0.0.1:{port}");
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut h = vec![("Host", host.as_str())];
        h.extend(ct.map(|c| ("Content-Type", c)));
        let a = raw(port, "POST", "/purge", &h, PURGE_ALL);
        assert_eq!(a.status, 415, "{ct:?}: {}", a.body);
        assert!(a.body.contains("application/json"), "{}", a.body);
        still_cached(&edge, &format!("Content-Type {ct:?}"));
    }
    // JSON from a foreign page (it would need a preflight, but refuse it anyway): 403.
    for foreign in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let h = [
            ("Host", host.as_str()),
            ("Content-Type", "application/json"),
            ("Origin", foreign),
        ];
        let a = raw(port, "POST", "/purge", &h, PURGE_ALL);
        assert_eq!(a.status, 403, "Origin {foreign}: {}", a.body);
        assert!(a.body.contains("Origin"), "{}", a.body);
        still_cached(&edge, &format!("Origin {foreign}"));
        let h = [("Host", host.as_str()), ("Origin", foreign)];
        let a = raw(port, "GET", "/metrics", &h, "");
        assert_eq!(a.status, 403, "GET /metrics, Origin {foreign}: {}", a.body);
    }
    // The admin's own origin (the try-it page) and a JSON type with parameters are fine.
    let own = format!("http://{host}");
    let h = [
        ("Host", host.as_str()),
        ("Content-Type", "application/json; charset=utf-8"),
        ("Origin", own.as_str()),
    ];
    let a = raw(port, "POST", "/purge", &h, PURGE_ALL);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(common::get(&edge.url("/a.jpg")).cache(), "MISS");
}

/// DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 reaches the admin
/// listener with `Host: evil.example`. Only the admin's names (and IP literals) are served.
#[test]
fn only_the_admin_host_names_are_served() {
    let origin = Origin::start();
    let edge = cached_edge(&origin, "");
    let port = edge.admin_port;
    for path in ["/metrics", "/quota?key=x", "/healthz", "/"] {
        for host in [
            "evil.example".to_string(),
            format!("evil.example:{port}"),
            format!("localhost.evil.example:{port}"),
        ] {
            let a = raw(port, "GET", path, &[("Host", &host)], "");
            assert_eq!(a.status, 403, "{path} with Host {host}: {}", a.body);
            assert!(a.body.contains("admin.hostnames"), "{}", a.body);
            assert!(!a.body.contains("imgedge_"), "no metrics leak: {}", a.body);
        }
        for host in [
            format!("localhost:{port}"),
            "LOCALHOST".to_string(),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ] {
            let a = raw(port, "GET", path, &[("Host", &host)], "");
            assert_eq!(a.status, 200, "{path} with Host {host}: {}", a.body);
        }
    }
    let h = [
        ("Host", "evil.example"),
        ("Content-Type", "application/json"),
    ];
    let a = raw(port, "POST", "/purge", &h, PURGE_ALL);
    assert_eq!(a.status, 403, "{}", a.body);
    still_cached(&edge, "Host evil.example");
}

#[test]
fn configured_admin_host_names() {
    let origin = Origin::start();
    let edge = Edge::start_with_admin(&body(&origin), "hostnames: [\"admin.internal\"]");
    let port = edge.admin_port;
    let a = raw(port, "GET", "/metrics", &[("Host", "admin.internal")], "");
    assert_eq!(a.status, 200, "{}", a.body);
    let a = raw(port, "GET", "/metrics", &[("Host", "localhost")], "");
    assert_eq!(a.status, 403, "the list replaces the default: {}", a.body);
    let a = raw(port, "GET", "/metrics", &[("Host", "127.0.0.1")], "");
    assert_eq!(a.status, 200, "{}", a.body);
}
