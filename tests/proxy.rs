//! End-to-end: imgedge in front of a real origin on loopback.

mod common;
use common::*;
use std::time::Duration;

fn simple(origin: &Origin, extra: &str) -> Edge {
    Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\n{extra}",
        origin.peer()
    ))
}

#[test]
fn passes_status_headers_and_body_through() {
    let origin = Origin::start();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    origin.route(
        "/a.bin?x=1",
        Reply::ok("application/x-test", body.clone())
            .header("X-Origin", "yes")
            .status(203),
    );
    let edge = simple(&origin, "");
    let r = get(&edge.url("/a.bin?x=1"));
    assert_eq!(r.status, 203);
    assert_eq!(r.header("content-type"), Some("application/x-test"));
    assert_eq!(r.header("x-origin"), Some("yes"));
    assert_eq!(r.body, body);
    // The origin saw the client's path and query, and who the client was.
    let h = origin.last_request_headers("/a.bin?x=1").unwrap();
    assert!(h
        .iter()
        .any(|(k, v)| k == "x-forwarded-for" && v == "127.0.0.1"));
}

#[test]
fn miss_then_hit_with_identical_bytes() {
    let origin = Origin::start();
    let body = fixture("meadow_640.jpg");
    origin.route("/m.jpg", Reply::ok("image/jpeg", body.clone()));
    let edge = simple(&origin, "");
    let a = get(&edge.url("/m.jpg"));
    let b = get(&edge.url("/m.jpg"));
    assert_eq!((a.cache(), b.cache()), ("MISS", "HIT"));
    assert_eq!(a.body, body);
    assert_eq!(b.body, body);
    assert_eq!(origin.hits("/m.jpg"), 1);
    // Query order does not matter to the cache key.
    origin.route("/q?a=1&b=2", Reply::ok("text/plain", "q"));
    assert_eq!(get(&edge.url("/q?a=1&b=2")).cache(), "MISS");
    assert_eq!(get(&edge.url("/q?b=2&a=1")).cache(), "HIT");
}

#[test]
fn concurrent_misses_reach_the_origin_once() {
    let origin = Origin::start();
    origin.route(
        "/slow.jpg",
        Reply::ok("image/jpeg", vec![1u8; 50_000]).delay(Duration::from_millis(400)),
    );
    let edge = simple(&origin, "");
    let url = edge.url("/slow.jpg");
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || get(&url))
        })
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 50_000);
    }
    assert_eq!(origin.hits("/slow.jpg"), 1);
}

#[test]
fn no_store_is_not_cached_and_max_age_expires() {
    let origin = Origin::start();
    origin.route(
        "/ns",
        Reply::ok("text/plain", "ns").header("Cache-Control", "no-store"),
    );
    origin.route(
        "/priv",
        Reply::ok("text/plain", "p").header("Cache-Control", "private, max-age=60"),
    );
    origin.route(
        "/short",
        Reply::ok("text/plain", "s").header("Cache-Control", "max-age=1"),
    );
    let edge = simple(&origin, "cache: {stale_while_revalidate: 0}\n");
    for _ in 0..3 {
        assert_eq!(get(&edge.url("/ns")).status, 200);
        assert_eq!(get(&edge.url("/priv")).status, 200);
    }
    assert_eq!(origin.hits("/ns"), 3);
    assert_eq!(origin.hits("/priv"), 3);
    assert_eq!(get(&edge.url("/short")).cache(), "MISS");
    assert_eq!(get(&edge.url("/short")).cache(), "HIT");
    // Once max-age has passed, the next request goes to the origin again.
    eventually(10, "the short entry to expire", || {
        let r = get(&edge.url("/short"));
        (r.cache() != "HIT").then_some(())
    });
    assert_eq!(origin.hits("/short"), 2);
}

#[test]
fn stale_entry_is_served_when_the_origin_is_down() {
    let origin = Origin::start();
    origin.route(
        "/s.jpg",
        Reply::ok("image/jpeg", vec![9u8; 1000]).header("Cache-Control", "max-age=1"),
    );
    let edge = simple(
        &origin,
        "cache: {stale_while_revalidate: 0, stale_if_error: 1h}\n",
    );
    assert_eq!(get(&edge.url("/s.jpg")).cache(), "MISS");
    origin.stop();
    let r = eventually(10, "a stale answer", || {
        let r = get(&edge.url("/s.jpg"));
        (r.cache() == "STALE").then_some(r)
    });
    assert_eq!(r.status, 200);
    assert_eq!(r.body, vec![9u8; 1000]);
}

#[test]
fn one_dead_peer_of_two_loses_no_request() {
    let origin = Origin::start();
    origin.route("/x", Reply::ok("text/plain", "x"));
    let dead = free_port();
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\", \"127.0.0.1:{dead}\"], retries: 1}}\nroutes:\n  - {{prefix: /, upstream: origin, cache: false}}\n",
        origin.peer()
    ));
    for _ in 0..20 {
        let r = get(&edge.url("/x"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.cache(), "BYPASS");
    }
    assert_eq!(origin.hits("/x"), 20);
    assert!(edge.metric("imgedge_upstream_errors_total{") >= 1.0);
}

#[test]
fn unknown_route_is_a_404_with_a_reason() {
    let origin = Origin::start();
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /img/, upstream: origin}}\n",
        origin.peer()
    ));
    let r = get(&edge.url("/other/a.jpg"));
    assert_eq!(r.status, 404);
    assert!(r.text().contains("no route"), "{}", r.text());
    assert_eq!(origin.total_hits(), 0);
}

#[test]
fn routes_by_host_and_strip_prefix() {
    let a = Origin::start();
    let b = Origin::start();
    a.route("/pic.jpg", Reply::ok("image/jpeg", "from-a"));
    b.route("/img/pic.jpg", Reply::ok("image/jpeg", "from-b"));
    let edge = Edge::start(&format!(
        "upstreams:\n  a: {{peers: [\"{}\"]}}\n  b: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /img/, host: cdn.example, upstream: a, strip_prefix: true}}\n  - {{prefix: /, upstream: b}}\n",
        a.peer(),
        b.peer()
    ));
    let r = get_with(&edge.url("/img/pic.jpg"), &[("Host", "cdn.example")]);
    assert_eq!(r.text(), "from-a");
    let r = get(&edge.url("/img/pic.jpg"));
    assert_eq!(r.text(), "from-b");
}

#[test]
fn consistent_hashing_sends_a_key_to_one_peer() {
    let a = Origin::start();
    let b = Origin::start();
    for o in [&a, &b] {
        for i in 0..20 {
            o.route(&format!("/k{i}"), Reply::ok("text/plain", "k"));
        }
    }
    let edge = Edge::start(&format!(
        "upstreams:\n  o: {{peers: [\"{}\", \"{}\"], lb: consistent}}\nroutes:\n  - {{prefix: /, upstream: o, cache: false}}\n",
        a.peer(),
        b.peer()
    ));
    for _ in 0..3 {
        for i in 0..20 {
            assert_eq!(get(&edge.url(&format!("/k{i}"))).status, 200);
        }
    }
    for i in 0..20 {
        let p = format!("/k{i}");
        let (ha, hb) = (a.hits(&p), b.hits(&p));
        assert!(ha == 0 || hb == 0, "{p} went to both peers ({ha}, {hb})");
    }
    assert!(
        a.total_hits() > 0 && b.total_hits() > 0,
        "keys should spread over both peers"
    );
}

#[test]
fn eviction_keeps_stored_bytes_under_the_bound() {
    let origin = Origin::start();
    for i in 0..40 {
        origin.route(
            &format!("/o{i}"),
            Reply::ok("application/octet-stream", vec![i as u8; 100_000]),
        );
    }
    let edge = simple(&origin, "cache: {memory_bytes: 1MiB}\n");
    for i in 0..40 {
        assert_eq!(get(&edge.url(&format!("/o{i}"))).status, 200);
        let used = edge.metric("imgedge_cache_bytes ");
        assert!(used <= (1 << 20) as f64, "cache holds {used} bytes");
    }
    assert!(edge.metric("imgedge_cache_evictions_total") > 0.0);
    // The most recent entry is still there.
    assert_eq!(get(&edge.url("/o39")).cache(), "HIT");
}

#[test]
fn healthz_and_metrics() {
    let origin = Origin::start();
    origin.route("/hc", Reply::ok("text/plain", "ok"));
    origin.route("/m", Reply::ok("text/plain", "m"));
    let dead = free_port();
    let edge = Edge::start(&format!(
        "upstreams:\n  live: {{peers: [\"{}\"], health_check: {{path: /hc, interval: 100ms, healthy_threshold: 1, unhealthy_threshold: 1}}}}\n  gone: {{peers: [\"127.0.0.1:{dead}\"], health_check: {{path: /hc, interval: 100ms, unhealthy_threshold: 1}}}}\nroutes:\n  - {{prefix: /, upstream: live}}\n",
        origin.peer()
    ));
    let r = eventually(10, "healthz to report the dead pool", || {
        let r = get(&edge.admin_url("/healthz"));
        (r.status == 503).then_some(r)
    });
    assert!(r.text().contains("gone"), "{}", r.text());
    assert!(!r.text().contains("live"), "{}", r.text());
    assert!(origin.hits("/hc") >= 1);
    get(&edge.url("/m"));
    // The request is counted in the logging phase, just after the response went out: poll.
    let m = eventually(10, "the request to be counted", || {
        let m = get(&edge.admin_url("/metrics")).text();
        m.contains("imgedge_requests_total{cache_status=\"MISS\"")
            .then_some(m)
    });
    for name in [
        "imgedge_requests_total{cache_status=\"MISS\",route=\"/\",status_class=\"2xx\"} 1",
        "imgedge_request_duration_seconds_bucket",
        "imgedge_upstream_requests_total{",
        "imgedge_upstream_response_duration_seconds_bucket",
        "imgedge_upstream_peer_healthy{peer=\"127.0.0.1:",
        "imgedge_cache_items",
        "imgedge_cache_evictions_total",
    ] {
        assert!(m.contains(name), "missing {name} in metrics:\n{m}");
    }
    // Memory figures: the process's RSS and, from jemalloc (the default build), the live heap.
    let gauge = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in metrics:\n{m}"))
    };
    let rss = gauge("imgedge_process_resident_bytes");
    assert!(rss > 1e6, "RSS {rss}");
    #[cfg(feature = "jemalloc")]
    {
        let heap = gauge("imgedge_memory_allocated_bytes");
        let held = gauge("imgedge_memory_allocator_resident_bytes");
        // jemalloc's resident figure is an upper bound (untouched pages count), so it is not
        // compared with RSS; it always covers the live heap.
        assert!(heap > 0.0 && heap <= held, "heap {heap}, held {held}");
    }
    // The access log has one line per request.
    assert!(
        edge.log().contains("\"GET /m\" 200 cache=MISS"),
        "{}",
        edge.log()
    );
}

#[test]
fn dir_upstream_serves_files_safely() {
    let root = tempfile::tempdir().unwrap();
    let pics = root.path().join("pics");
    std::fs::create_dir(&pics).unwrap();
    std::fs::write(pics.join("a.png"), fixture("emerald_alpha_300.png")).unwrap();
    std::fs::write(root.path().join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(root.path().join("secret.txt"), pics.join("link.png")).unwrap();
    let edge = Edge::start(&format!(
        "upstreams:\n  files: {{dir: \"{}\"}}\nroutes:\n  - {{prefix: /, upstream: files}}\n",
        pics.display()
    ));
    let r = get(&edge.url("/a.png"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert!(r.header("etag").is_some() && r.header("last-modified").is_some());
    assert_eq!(r.body, fixture("emerald_alpha_300.png"));
    assert_eq!(get(&edge.url("/missing.png")).status, 404);
    for bad in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/link.png",
    ] {
        let (status, text) = raw_get(edge.port, bad);
        // `..` segments are refused by the proxy before routing (400), the symlink out of the
        // root by the dir origin (404).
        let want = if bad.contains("..") || bad.contains("%2e") {
            400
        } else {
            404
        };
        assert_eq!(status, want, "{bad}: {text}");
        assert!(
            !text.contains("secret\n") && !text.ends_with("secret"),
            "{bad} leaked: {text}"
        );
    }
}

/// Sends one request with `extra` header lines; returns the status.
fn raw_status(port: u16, target: &str, extra: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn oversized_targets_and_headers_are_refused_before_the_origin() {
    let origin = Origin::start();
    origin.route("/a.txt", Reply::ok("text/plain", "a"));
    let edge = simple(
        &origin,
        "http: {max_url_bytes: 1KiB, max_header_bytes: 4KiB}\n",
    );
    let long = format!("/a.txt?pad={}", "x".repeat(1100));
    assert_eq!(raw_status(edge.port, &long, ""), 414);
    let big = format!("X-Pad: {}\r\n", "y".repeat(5000));
    assert_eq!(raw_status(edge.port, "/a.txt", &big), 431);
    let many: String = (0..100)
        .map(|i| format!("X-H{i}: {}\r\n", "z".repeat(40)))
        .collect();
    assert_eq!(raw_status(edge.port, "/a.txt", &many), 431);
    assert_eq!(origin.total_hits(), 0);
    // Within the limits, and the process keeps serving.
    assert_eq!(raw_status(edge.port, "/a.txt", "X-Pad: ok\r\n"), 200);
    let r = get_with(&edge.url("/a.txt"), &[]);
    assert_eq!(r.status, 200);
}

/// A newcomer's first run (the embedded default's upstream, routes, cache and transform keys,
/// on free ports) logs no warning: resized and plain images, a miss then a hit.
#[test]
fn first_run_logs_no_warning() {
    let default = include_str!("../conf/imgedge.yaml");
    let body = default
        .split_once("\nupstreams:")
        .map(|(_, rest)| format!("upstreams:{rest}"))
        .unwrap();
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/samples");
    let edge = Edge::start(&body.replace("./samples", samples));
    for path in ["/seeding.jpg?width=400&format=auto", "/meadow.jpg"] {
        let first = get(&edge.url(path));
        assert_eq!(first.status, 200, "{path}");
        assert_eq!(first.header("x-cache-status"), Some("MISS"), "{path}");
        let second = get(&edge.url(path));
        assert_eq!(second.header("x-cache-status"), Some("HIT"), "{path}");
    }
    let log = edge.log();
    assert!(
        !log.contains(" WARN ") && !log.contains(" ERROR "),
        "first run logged a warning:\n{log}"
    );
}
