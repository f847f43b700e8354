//! The Cloudflare URL API's input and output options end to end (issue 19): `onerror=redirect`
//! (a source that cannot be transformed is a 302 to the original), through the real binary and
//! a real origin.

mod common;
use common::*;

fn setup(extra: &str) -> (Origin, Edge) {
    let origin = Origin::start();
    for (name, ct) in [
        ("seeding_640x360.jpg", "image/jpeg"),
        ("friends_orient6_386x256.jpg", "image/jpeg"),
        ("truncated.jpg", "image/jpeg"),
        ("meadow_640.jpg", "image/jpeg"),
    ] {
        origin.route(&format!("/{name}"), Reply::ok(ct, fixture(name)));
        origin.route(&format!("/{name}?v=1"), Reply::ok(ct, fixture(name)));
    }
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\ntransform:\n  max_source_bytes: 40000\n{extra}",
        origin.peer()
    ));
    (origin, edge)
}

/// A 302 to `to`, with nothing stored.
fn assert_redirect(r: &Resp, to: &str) {
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(r.header("location"), Some(to));
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

#[test]
fn onerror_redirect_sends_an_untransformable_source_to_the_original() {
    let (origin, edge) = setup("");
    // A truncated JPEG: the decoder fails on the whole body. The first answer is the redirect,
    // or, when the status line had already gone out, an aborted response (as for any failed
    // transform: docs/transforms.md); every repeat within failure_ttl is the redirect, up front.
    let url = edge.url("/truncated.jpg?width=100&onerror=redirect&v=1");
    match try_get_with(&url, &[]) {
        Ok(r) => assert_redirect(&r, "/truncated.jpg?v=1"),
        Err(e) => eprintln!("first answer aborted as documented ({e})"),
    }
    let r = get(&url);
    assert_redirect(&r, "/truncated.jpg?v=1");
    assert!(r.text().contains("truncated"), "{}", r.text());
    // Following it gives the original's bytes, untouched, and no second redirect.
    let r = get(&edge.url("/truncated.jpg?v=1"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, fixture("truncated.jpg"));
    // Another variant of the same source (path form): the redirect up front, no origin request.
    let hits = origin.hits("/truncated.jpg?v=1");
    let r =
        get(&edge.url("/cdn-cgi/image/width=50,onerror=redirect,format=webp/truncated.jpg?v=1"));
    assert_redirect(&r, "/truncated.jpg?v=1");
    assert_eq!(origin.hits("/truncated.jpg?v=1"), hits);
    // Without onerror the error stays.
    let r = get(&edge.url("/truncated.jpg?width=100&v=1"));
    assert_eq!(r.status, 422, "{}", r.text());
    // Refused from the header (declared larger than transform.max_source_bytes): a redirect
    // too, and the original is served (a pass-through is not limited).
    let r = get(&edge.url("/cdn-cgi/image/onerror=redirect,width=100/meadow_640.jpg?v=1"));
    assert_redirect(&r, "/meadow_640.jpg?v=1");
    let r = get(&edge.url("/meadow_640.jpg?v=1"));
    assert_eq!(r.body, fixture("meadow_640.jpg"));
    // A source that is simply missing stays a 404 (the origin's answer passes through).
    let r = get(&edge.url("/missing.jpg?width=100&onerror=redirect"));
    assert_eq!(r.status, 404, "{}", r.text());
    // A good source is transformed as without onerror, and shares its cache entry.
    let plain = get(&edge.url("/seeding_640x360.jpg?width=100"));
    assert_eq!(plain.status, 200);
    let r = get(&edge.url("/seeding_640x360.jpg?width=100&onerror=redirect"));
    assert_eq!((r.status, r.cache()), (200, "HIT"));
    assert_eq!(r.body, plain.body);
    // Only `redirect` is a value.
    let r = get(&edge.url("/seeding_640x360.jpg?width=100&onerror=ignore"));
    assert_eq!(r.status, 400, "{}", r.text());
}

/// `format=json`: Cloudflare's shape, the output's size as the image made with the same
/// options has it, the original's size, bytes and media type; cached like any variant.
#[test]
fn format_json_describes_the_output_and_the_original() {
    let (origin, edge) = setup("");
    let json = |path: &str| -> (Resp, serde_json::Value) {
        let r = get(&edge.url(path));
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v = serde_json::from_slice(&r.body).unwrap();
        (r, v)
    };
    let src = fixture("seeding_640x360.jpg");
    let (r, v) = json("/seeding_640x360.jpg?width=300&format=json");
    assert_eq!(r.cache(), "MISS");
    // 640x360 at width 300: 300 x round(360 * 300 / 640) = 300 x 169.
    assert_eq!(
        v,
        serde_json::json!({
            "width": 300,
            "height": 169,
            "original": {"file_size": src.len(), "width": 640, "height": 360, "format": "image/jpeg"}
        })
    );
    // The image made with the same options has that size.
    let img = get(&edge.url("/seeding_640x360.jpg?width=300"));
    let made = image::load_from_memory(&img.body).unwrap();
    assert_eq!((made.width(), made.height()), (300, 169));
    // The repeat is a HIT, the path form shares the entry; the origin was asked once for it.
    let (r, again) = json("/cdn-cgi/image/format=json,width=300/seeding_640x360.jpg");
    assert_eq!((r.cache(), &again), ("HIT", &v));
    // rotate: width and height refer to the rotated axes.
    let (_, v) = json("/seeding_640x360.jpg?width=300&rotate=90&format=json");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(300), Some(533))
    );
    // An EXIF-rotated source (stored 386x256, orientation 6) is described upright.
    let (_, v) = json("/friends_orient6_386x256.jpg?width=100&format=json");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(100), Some(151))
    );
    assert_eq!(v["original"]["width"], 256);
    assert_eq!(v["original"]["height"], 386);
    // A later format= in the URL replaces json (last one wins, as for every option).
    let r = get(&edge.url("/seeding_640x360.jpg?width=300&format=json&format=png"));
    assert_eq!(r.header("content-type"), Some("image/png"));
    // A source that is not an image is refused as the transform would be.
    origin.route(
        "/junk.jpg",
        Reply::ok("image/jpeg", b"not an image".to_vec()),
    );
    let r = try_get_with(&edge.url("/junk.jpg?format=json"), &[]);
    assert!(r.map(|r| r.status == 422).unwrap_or(true));
}

/// Connections a listener has accepted so far (it answers none).
fn accepted(trap: &std::net::TcpListener) -> usize {
    std::iter::from_fn(|| trap.accept().ok()).count()
}

/// `transform.remote_sources`: a path-form SOURCE URL on a listed host is fetched from that host
/// alone (its own cache entry); any other is a 403 without a connection.
#[test]
fn remote_sources_are_fetched_from_listed_hosts_only() {
    let remote = Origin::start();
    let jpeg = fixture("seeding_640x360.jpg");
    remote.route("/photos/s.jpg", Reply::ok("image/jpeg", jpeg.clone()));
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_port = trap.local_addr().unwrap().port();
    let listed = format!("http://{}", remote.peer());
    let (origin, edge) = setup(&format!("  remote_sources: [\"{listed}\"]\n"));
    let url = edge.url(&format!("/cdn-cgi/image/width=100/{listed}/photos/s.jpg"));
    let r = get(&url);
    assert_eq!((r.status, r.cache()), (200, "MISS"), "{}", r.text());
    assert_eq!(image::load_from_memory(&r.body).unwrap().width(), 100);
    assert_eq!(remote.hits("/photos/s.jpg"), 1);
    let host = remote.last_request_headers("/photos/s.jpg").unwrap();
    assert!(
        host.iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("host") && *v == remote.peer()),
        "{host:?}"
    );
    assert_eq!(get(&url).cache(), "HIT");
    assert_eq!(remote.hits("/photos/s.jpg"), 1);
    // The same path on this host is another resource (the key holds the remote origin).
    let r = get(&edge.url("/cdn-cgi/image/width=100/photos/s.jpg"));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(origin.hits("/photos/s.jpg"), 1);
    assert_eq!(remote.hits("/photos/s.jpg"), 1);
    // Unlisted: another port, another scheme, another spelling of the host: 403, no connection.
    let port = remote.peer().rsplit(':').next().unwrap().to_string();
    for source in [
        format!("http://127.0.0.1:{trap_port}/x.jpg"),
        format!("https://127.0.0.1:{port}/photos/s.jpg"),
        format!("http://localhost:{port}/photos/s.jpg"),
        format!("http:/127.0.0.1:{trap_port}/x.jpg"),
    ] {
        let r = get(&edge.url(&format!("/cdn-cgi/image/width=100/{source}")));
        assert_eq!(r.status, 403, "{source}: {}", r.text());
        assert!(
            r.text().contains("transform.remote_sources"),
            "{}",
            r.text()
        );
    }
    assert_eq!(accepted(&trap), 0, "an unlisted host was connected to");
    assert_eq!(remote.hits("/photos/s.jpg"), 1);
}

/// A bad `transform.remote_sources` entry is a config error naming it.
#[test]
fn a_bad_remote_source_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imgedge.yaml");
    std::fs::write(
        &path,
        "listen: [\"127.0.0.1:0\"]\nupstreams:\n  o: {peers: [\"127.0.0.1:9\"]}\nroutes:\n  - {prefix: /, upstream: o}\ntransform:\n  remote_sources: [\"https://images.example.com\", \"http://images.example.com\", \"https://x/path\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["-t", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("transform.remote_sources[1]"), "{text}");
    assert!(text.contains("loopback"), "{text}");
    assert!(text.contains("transform.remote_sources[2]"), "{text}");
    assert!(!text.contains("transform.remote_sources[0]"), "{text}");
}
