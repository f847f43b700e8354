//! End-to-end: HTTP caching rules a shared cache must keep (RFC 9111), each found broken by a
//! hostile probe or the public cache test suite (issue 18): the Host port in the key, Set-Cookie,
//! Vary, stale responses the origin forbids, invalidation by unsafe methods, 304 header updates,
//! Age, CDN-Cache-Control, and one normal form of the path for the key and purges.

mod common;
use common::*;

fn edge(origin: &Origin, extra: &str) -> Edge {
    Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\n{extra}",
        origin.peer()
    ))
}

fn status_of(r: &Resp) -> &str {
    r.header("x-cache-status").unwrap_or("-")
}

/// A raw request with an exact Host header; returns the status and the whole response text.
fn with_host(edge: &Edge, method: &str, target: &str, host: &str) -> (u16, String) {
    let stream = std::net::TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
    let req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    exchange(stream, &req)
}

/// A text response with the given `Cache-Control`.
fn text(body: &str, cache_control: &str) -> Reply {
    Reply::ok("text/plain", body).header("Cache-Control", cache_control)
}

#[test]
fn the_key_holds_exactly_the_host_the_origin_is_told() {
    let origin = Origin::start();
    origin.route(
        "/r",
        Reply::ok("text/plain", "moved")
            .status(301)
            .header("Location", "/elsewhere")
            .header("Cache-Control", "max-age=300"),
    );
    let edge = edge(&origin, "");
    let (s, _) = with_host(&edge, "GET", "/r", "victim.example:31337");
    assert_eq!(s, 301);
    // The port never reaches the origin (Host, X-Forwarded-Host, Forwarded), so what it made
    // is what the key says: the answer for `victim.example`.
    let h = origin.last_request_headers("/r").unwrap();
    let get = |name: &str| h.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(get("host").as_deref(), Some("victim.example"));
    for name in ["x-forwarded-host", "forwarded"] {
        assert!(
            get(name).is_none_or(|v| !v.contains("31337")),
            "{name}: {:?}",
            get(name)
        );
    }
    let (_, text) = with_host(&edge, "GET", "/r", "VICTIM.example");
    assert!(
        text.to_ascii_lowercase().contains("x-cache-status: hit"),
        "{text}"
    );
    assert_eq!(origin.hits("/r"), 1);
}

#[test]
fn set_cookie_responses_are_not_shared() {
    let origin = Origin::start();
    origin.route(
        "/me",
        text("hello you", "max-age=300").header("Set-Cookie", "sid=alice"),
    );
    origin.route(
        "/shared",
        text("hello all", "public, max-age=300").header("Set-Cookie", "sid=bob"),
    );
    let edge = edge(&origin, "");
    get(&edge.url("/me"));
    get(&edge.url("/me"));
    assert_eq!(
        origin.hits("/me"),
        2,
        "a response with Set-Cookie was stored"
    );
    let first = get(&edge.url("/shared"));
    assert_eq!(first.header("set-cookie"), Some("sid=bob"));
    let second = get(&edge.url("/shared"));
    assert_eq!(status_of(&second), "HIT");
    assert_eq!(
        second.header("set-cookie"),
        None,
        "a cookie was replayed from the cache"
    );
    assert_eq!(origin.hits("/shared"), 1);
}

#[test]
fn vary_selects_the_stored_variant() {
    let origin = Origin::start();
    origin.route("/v", text("v", "max-age=300").header("Vary", "Accept"));
    origin.route("/star", text("s", "max-age=300").header("Vary", "*"));
    origin.route(
        "/cookie",
        text("c", "public, max-age=300").header("Vary", "Cookie"),
    );
    let edge = edge(&origin, "");
    let webp = [("Accept", "image/webp,image/jpeg")];
    let jpeg = [("Accept", "image/jpeg")];
    assert_eq!(status_of(&get_with(&edge.url("/v"), &webp)), "MISS");
    assert_eq!(status_of(&get_with(&edge.url("/v"), &jpeg)), "MISS");
    assert_eq!(
        origin.hits("/v"),
        2,
        "a JPEG-only client got the WebP client's variant"
    );
    // The same preferences written differently are the same variant.
    let webp2 = [("Accept", "image/jpeg, IMAGE/WEBP")];
    assert_eq!(status_of(&get_with(&edge.url("/v"), &webp2)), "HIT");
    for _ in 0..2 {
        get(&edge.url("/star"));
    }
    assert_eq!(origin.hits("/star"), 2, "Vary: * was reused");
    get_with(&edge.url("/cookie"), &[("Cookie", "sid=alice")]);
    get_with(&edge.url("/cookie"), &[("Cookie", "sid=bob")]);
    assert_eq!(origin.hits("/cookie"), 2, "Vary: Cookie was shared");
}

#[test]
fn variants_per_url_are_bounded() {
    let origin = Origin::start();
    origin.route(
        "/many",
        text("m", "max-age=300").header("Vary", "X-Flavour"),
    );
    let edge = edge(&origin, "cache: {max_variants: 3}");
    for round in 0..2 {
        for i in 0..5 {
            let flavour = format!("f{i}");
            get_with(&edge.url("/many"), &[("X-Flavour", flavour.as_str())]);
        }
        // The first three are stored; the other two are fetched every time.
        assert_eq!(origin.hits("/many"), 5 + round * 2);
    }
}

#[test]
fn stale_is_never_served_against_no_cache_or_must_revalidate() {
    let origin = Origin::start();
    for (path, cc) in [
        ("/nc", "max-age=300, no-cache"),
        ("/zero", "max-age=0"),
        ("/mr", "max-age=60, must-revalidate"),
    ] {
        // `/mr` is stored already stale (older than its max-age): no waiting for expiry.
        let age = if path == "/mr" { "120" } else { "0" };
        origin.route(
            path,
            Reply::ok("text/plain", "x")
                .header("Cache-Control", cc)
                .header("ETag", "\"v1\"")
                .header("Age", age),
        );
    }
    // The defaults (stale_if_error on), as a newcomer runs them.
    let edge = edge(&origin, "");
    for path in ["/nc", "/zero"] {
        get(&edge.url(path));
        let r = get(&edge.url(path));
        assert_eq!(status_of(&r), "REVALIDATED", "{path}");
        assert_eq!(
            origin.not_modified(path),
            1,
            "{path}: not revalidated first"
        );
    }
    get(&edge.url("/mr"));
    origin.stop();
    let r = get(&edge.url("/mr"));
    assert_ne!(
        r.status,
        200,
        "must-revalidate served stale: {}",
        status_of(&r)
    );
}

#[test]
fn unsafe_methods_invalidate_the_url() {
    let origin = Origin::start();
    origin.route("/doc", text("doc", "max-age=300"));
    origin.route("/doc?v=1", text("doc", "max-age=300"));
    let edge = edge(&origin, "");
    get(&edge.url("/doc"));
    get(&edge.url("/doc?v=1"));
    assert_eq!(status_of(&get(&edge.url("/doc"))), "HIT");
    // The same URL as the GETs: the host with the edge's port.
    let host = format!("127.0.0.1:{}", edge.port);
    let (s, _) = with_host(&edge, "POST", "/doc", &host);
    assert_eq!(s, 200);
    assert_ne!(status_of(&get(&edge.url("/doc"))), "HIT");
    assert_ne!(status_of(&get(&edge.url("/doc?v=1"))), "HIT");
    assert_eq!(
        origin.hits("/doc"),
        3,
        "the POST and the GET after it reach the origin"
    );
    // A failed unsafe request invalidates nothing.
    origin.route("/keep", text("k", "max-age=300"));
    get(&edge.url("/keep"));
    origin.route("/keep", Reply::ok("text/plain", "no").status(500));
    let (s, _) = with_host(&edge, "DELETE", "/keep", &host);
    assert_eq!(s, 500);
    assert_eq!(status_of(&get(&edge.url("/keep"))), "HIT");
}

#[test]
fn a_304_updates_the_stored_headers() {
    let origin = Origin::start();
    origin.route(
        "/u",
        text("u", "max-age=60")
            .header("Age", "120") // stored stale: the next request revalidates
            .header("ETag", "\"a\"")
            .header("X-Version", "1"),
    );
    let edge = edge(&origin, "");
    get(&edge.url("/u"));
    origin.route(
        "/u",
        text("u", "max-age=300")
            .header("ETag", "\"a\"")
            .header("X-Version", "2"),
    );
    let r = get(&edge.url("/u"));
    assert_eq!(origin.not_modified("/u"), 1);
    assert_eq!(r.header("x-version"), Some("2"), "{}", status_of(&r));
    let r = get(&edge.url("/u"));
    assert_eq!(status_of(&r), "HIT");
    assert_eq!(r.header("x-version"), Some("2"));
}

#[test]
fn age_from_the_origin_counts() {
    let origin = Origin::start();
    origin.route("/old", text("o", "max-age=3600").header("Age", "7200"));
    origin.route("/aged", text("a", "max-age=3600").header("Age", "30"));
    let edge = edge(&origin, "");
    get(&edge.url("/old"));
    get(&edge.url("/old"));
    assert_eq!(
        origin.hits("/old"),
        2,
        "a response already older than its max-age was reused"
    );
    get(&edge.url("/aged"));
    let r = get(&edge.url("/aged"));
    assert_eq!(status_of(&r), "HIT");
    let age: u64 = r.header("age").unwrap().parse().unwrap();
    assert!(age >= 30, "Age {age}: the origin's 30 s were dropped");
}

#[test]
fn cdn_cache_control_takes_precedence() {
    let origin = Origin::start();
    origin.route(
        "/cdn-private",
        Reply::ok("text/plain", "p")
            .header("CDN-Cache-Control", "private")
            .header("Cache-Control", "max-age=300"),
    );
    origin.route(
        "/cdn-fresh",
        Reply::ok("text/plain", "f")
            .header("CDN-Cache-Control", "max-age=300")
            .header("Cache-Control", "no-store"),
    );
    let edge = edge(&origin, "");
    for path in ["/cdn-private", "/cdn-fresh"] {
        get(&edge.url(path));
        get(&edge.url(path));
    }
    assert_eq!(origin.hits("/cdn-private"), 2);
    assert_eq!(origin.hits("/cdn-fresh"), 1);
}

#[test]
fn one_normal_form_of_the_path_for_key_origin_and_purge() {
    let origin = Origin::start();
    origin.route(
        "/img/x.jpg",
        Reply::ok("image/jpeg", fixture("meadow_640.jpg")).header("Cache-Control", "max-age=300"),
    );
    let edge = Edge::start_with_admin(
        &format!(
            "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\n",
            origin.peer()
        ),
        "token: \"0123456789abcdef-token\"",
    );
    assert_eq!(get(&edge.url("//img/x.jpg")).status, 200);
    assert_eq!(status_of(&get(&edge.url("/img/./x.jpg"))), "HIT");
    assert_eq!(status_of(&get(&edge.url("/img/x.jpg"))), "HIT");
    assert_eq!(
        origin.hits("/img/x.jpg"),
        1,
        "the origin was asked for another spelling"
    );
    let stream = std::net::TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
    let req = "PURGE /img/x.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer 0123456789abcdef-token\r\nConnection: close\r\n\r\n";
    let (s, text) = exchange(stream, req);
    assert_eq!(s, 200, "{text}");
    assert_ne!(status_of(&get(&edge.url("//img/./x.jpg"))), "HIT");
}
