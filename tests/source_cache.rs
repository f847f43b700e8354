//! The source cache (`routes[].source_cache`): a transform miss reads the original
//! through the node's own cache, so many variants of one photo cost one origin request, and the
//! original is kept, revalidated and purged like a plain request for it. The origin counts its
//! requests.

mod common;
use common::*;
use image::GenericImageView;
use std::path::Path;
use std::time::Duration;

const PHOTO: &str = "/p.jpg";

fn config(origin: &Origin, route_extra: &str, extra: &str) -> String {
    // On for these tests (its default is off for now, see conf/reference.yaml).
    let route_extra = match route_extra.contains("source_cache") {
        true => route_extra.to_string(),
        false => format!("{route_extra}, source_cache: true"),
    };
    format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin{route_extra}}}\n{extra}",
        origin.peer()
    )
}

fn photo(origin: &Origin, reply: Reply) {
    origin.route(PHOTO, reply);
}

fn jpeg(name: &str) -> Reply {
    Reply::ok("image/jpeg", fixture(name))
}

/// A photo fresh for one second, with an ETag to revalidate it by.
fn expiring(name: &str, etag: &str) -> Reply {
    jpeg(name)
        .header("Cache-Control", "max-age=1")
        .header("ETag", etag)
}

fn dims(r: &Resp) -> (u32, u32) {
    assert_eq!(r.status, 200, "{}", r.text());
    image::load_from_memory(&r.body)
        .unwrap_or_else(|e| panic!("not an image ({e})"))
        .dimensions()
}

fn variant(edge: &Edge, q: &str) -> Resp {
    get(&edge.url(&format!("{PHOTO}?{q}")))
}

#[test]
fn variants_of_a_cached_original_make_no_origin_request() {
    let origin = Origin::start();
    photo(&origin, jpeg("seeding_640x360.jpg"));
    let edge = Edge::start(&config(&origin, "", ""));
    assert_eq!(get(&edge.url(PHOTO)).cache(), "MISS");
    assert_eq!(origin.hits(PHOTO), 1);
    let mut n = 0;
    for w in [100, 200, 320] {
        for f in ["webp", "jpeg"] {
            let r = variant(&edge, &format!("width={w}&format={f}"));
            assert_eq!(r.cache(), "MISS", "a new variant");
            assert_eq!(dims(&r).0, w);
            n += 1;
        }
    }
    assert_eq!(origin.hits(PHOTO), 1, "{n} variants, no origin request");
    assert_eq!(origin.total_hits(), 1);
    assert_eq!(
        edge.metric("imgedge_source_fetches_total{cache=\"HIT\"}")
            + edge.metric("imgedge_source_fetches_total{cache=\"hit\"}"),
        n as f64
    );
    // The internal fetches are not client requests: the log says where they came from and the
    // request counter holds only the client's 7.
    assert!(
        edge.log().contains("source-cache \"GET /p.jpg\""),
        "{}",
        edge.log()
    );
    assert_eq!(edge.metric("imgedge_requests_total"), 7.0);
}

#[test]
fn the_first_variant_stores_the_original_for_the_next_ones_and_plain_requests() {
    let origin = Origin::start();
    photo(&origin, jpeg("seeding_640x360.jpg"));
    let edge = Edge::start(&config(&origin, "", ""));
    assert_eq!(dims(&variant(&edge, "width=100")), (100, 56));
    assert_eq!(origin.hits(PHOTO), 1);
    assert_eq!(
        get(&edge.url(PHOTO)).cache(),
        "HIT",
        "the original is cached"
    );
    assert_eq!(dims(&variant(&edge, "width=200&format=png")), (200, 113));
    assert_eq!(origin.hits(PHOTO), 1);
    // The origin was asked for the original itself: no transform parameter, the client's host.
    let h = origin.last_request_headers(PHOTO).unwrap();
    let host = h.iter().find(|(k, _)| k == "host").map(|(_, v)| v.as_str());
    assert_eq!(host, Some("127.0.0.1"));
    assert!(h
        .iter()
        .any(|(k, v)| k == "x-forwarded-for" && v == "127.0.0.1"));
}

#[test]
fn concurrent_misses_of_different_variants_share_one_origin_fetch() {
    let origin = Origin::start();
    photo(
        &origin,
        jpeg("seeding_640x360.jpg").delay(Duration::from_millis(400)),
    );
    let edge = Edge::start(&config(&origin, "", ""));
    let urls: Vec<String> = (1..=10)
        .map(|i| edge.url(&format!("{PHOTO}?width={}", 40 * i)))
        .collect();
    let widths: Vec<u32> = std::thread::scope(|s| {
        let hs: Vec<_> = urls.iter().map(|u| s.spawn(|| dims(&get(u)).0)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(widths, (1..=10).map(|i| 40 * i).collect::<Vec<u32>>());
    assert_eq!(origin.hits(PHOTO), 1, "10 concurrent variant misses");
}

#[test]
fn a_purge_of_the_url_removes_the_original_and_its_variants() {
    let origin = Origin::start();
    photo(&origin, jpeg("seeding_640x360.jpg"));
    let edge = Edge::start_with_admin(&config(&origin, "", ""), "");
    variant(&edge, "width=100");
    variant(&edge, "width=200");
    assert_eq!(origin.hits(PHOTO), 1);
    let body = r#"{"url": "http://127.0.0.1/p.jpg"}"#;
    let req = request_text(
        "POST",
        "/purge",
        &[("Content-Type", "application/json")],
        body,
    );
    let s = std::net::TcpStream::connect(("127.0.0.1", edge.admin_port)).unwrap();
    let (status, text) = exchange(s, &req);
    assert_eq!(status, 200, "{text}");
    let json = text.split_once("\r\n\r\n").map_or("", |x| x.1);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["purged"], 3, "original + 2 variants: {text}");
    assert_eq!(variant(&edge, "width=100").cache(), "MISS");
    assert_eq!(origin.hits(PHOTO), 2, "the original was fetched again");
    assert_eq!(get(&edge.url(PHOTO)).cache(), "HIT");
}

#[test]
fn an_original_the_origin_says_not_to_store_is_fetched_each_time() {
    let origin = Origin::start();
    photo(
        &origin,
        jpeg("seeding_640x360.jpg").header("Cache-Control", "no-store"),
    );
    let edge = Edge::start(&config(&origin, "", ""));
    assert_eq!(dims(&variant(&edge, "width=100")), (100, 56));
    assert_eq!(dims(&variant(&edge, "width=200")), (200, 113));
    assert_eq!(origin.hits(PHOTO), 2, "no-store: nothing kept to reuse");
    // Its variants follow the same word: not stored either.
    assert_eq!(variant(&edge, "width=100").cache(), "MISS");
    assert_eq!(origin.hits(PHOTO), 3);
}

#[test]
fn an_original_changed_at_the_origin_gives_new_variants_after_it_expires() {
    let origin = Origin::start();
    photo(&origin, expiring("seeding_640x360.jpg", "\"a\""));
    let edge = Edge::start(&config(&origin, "", ""));
    assert_eq!(dims(&variant(&edge, "width=100")), (100, 56));
    // Changed at the origin (another photo, another shape, another ETag).
    photo(&origin, expiring("meadow_640.jpg", "\"b\""));
    // A variant never asked before, once the original is stale: made from the new original.
    let new_shape = image::load_from_memory(&fixture("meadow_640.jpg"))
        .unwrap()
        .dimensions();
    let expect_h = (120.0 * new_shape.1 as f64 / new_shape.0 as f64).round() as u32;
    eventually(10, "a variant of the changed original", || {
        let d = dims(&variant(&edge, "width=120"));
        (d != (120, 68)).then_some(d)
    });
    assert_eq!(dims(&variant(&edge, "width=120")), (120, expect_h));
    // The stale original was revalidated with its validator, as a plain request would.
    let h = origin.last_request_headers(PHOTO).unwrap();
    assert!(
        h.iter().any(|(k, v)| k == "if-none-match" && v == "\"a\""),
        "{h:?}"
    );
}

#[test]
fn an_unchanged_original_is_revalidated_not_refetched() {
    let origin = Origin::start();
    photo(&origin, expiring("seeding_640x360.jpg", "\"a\""));
    let edge = Edge::start(&config(&origin, "", ""));
    variant(&edge, "width=100");
    eventually(10, "a 304 from the origin", || {
        assert_eq!(dims(&variant(&edge, "width=150")).0, 150);
        (origin.not_modified(PHOTO) >= 1).then_some(())
    });
}

#[test]
fn source_cache_off_fetches_the_original_for_each_variant() {
    let origin = Origin::start();
    photo(&origin, jpeg("seeding_640x360.jpg"));
    let edge = Edge::start(&config(&origin, ", source_cache: false", ""));
    variant(&edge, "width=100");
    variant(&edge, "width=200");
    assert_eq!(origin.hits(PHOTO), 2);
    assert_eq!(
        get(&edge.url(PHOTO)).cache(),
        "MISS",
        "not stored by a variant"
    );
}

#[test]
fn the_client_is_rate_limited_once_not_again_for_its_original() {
    let origin = Origin::start();
    photo(&origin, jpeg("seeding_640x360.jpg"));
    // One request per client, no burst: the variant's own request uses it; the internal fetch
    // of its original must not be refused as a second one.
    let limits =
        "limits:\n  policies:\n    - {name: per_ip, key: client_ip, rate: \"1/min\", burst: 1}\n";
    let edge = Edge::start(&config(&origin, "", limits));
    assert_eq!(dims(&variant(&edge, "width=100")).0, 100);
    assert_eq!(variant(&edge, "width=200").status, 429);
}

#[test]
fn originals_kept_on_disk_serve_variants_after_a_restart() {
    let origin = Origin::start();
    photo(&origin, jpeg("seeding_640x360.jpg"));
    let dir = tempfile::tempdir().unwrap();
    let disk = format!(
        "cache:\n  disk: {{path: \"{}\", bytes: 64MiB}}\n",
        Path::new(dir.path()).display()
    );
    let edge = Edge::start(&config(&origin, "", &disk));
    variant(&edge, "width=100");
    eventually(20, "original and variant on disk", || {
        (edge.metric("imgedge_cache_disk_items") >= 2.0).then_some(())
    });
    drop(edge);
    let edge = Edge::start(&config(&origin, "", &disk));
    eventually(20, "the disk index scan", || {
        (edge.metric("imgedge_cache_disk_index_ready") == 1.0).then_some(())
    });
    assert_eq!(dims(&variant(&edge, "width=200")).0, 200);
    assert_eq!(
        origin.hits(PHOTO),
        1,
        "the original came from the disk tier"
    );
}

#[test]
fn another_variant_of_a_decoded_source_skips_the_decode() {
    let origin = Origin::start();
    photo(&origin, jpeg("seeding_640x360.jpg"));
    let edge = Edge::start(&config(&origin, "", ""));
    assert_eq!(dims(&variant(&edge, "width=100&format=webp")), (100, 56));
    assert_eq!(edge.metric("imgedge_decoded_cache_misses_total"), 1.0);
    // Same scale, another format: the decoded pixels are reused, and the result is the same
    // picture as a decode would give (same pixels in, same resize).
    let reused = variant(&edge, "width=100&format=png");
    assert_eq!(edge.metric("imgedge_decoded_cache_hits_total"), 1.0);
    let plain = Edge::start(&config(
        &origin,
        "",
        "transform:\n  decoded_cache_bytes: 0\n",
    ));
    let fresh = get(&plain.url(&format!("{PHOTO}?width=100&format=png")));
    assert_eq!(
        plain.metric("imgedge_decoded_cache_misses_total"),
        0.0,
        "off"
    );
    let (a, b) = (
        image::load_from_memory(&reused.body).unwrap().to_rgb8(),
        image::load_from_memory(&fresh.body).unwrap().to_rgb8(),
    );
    assert_eq!(a, b, "reused decode == fresh decode");
}

#[test]
fn the_decoded_cache_stays_within_its_bytes_under_a_random_workload() {
    let origin = Origin::start();
    let names = [
        ("seeding_640x360.jpg", "image/jpeg"),
        ("meadow_640.jpg", "image/jpeg"),
        ("friends_orient6_386x256.jpg", "image/jpeg"),
        ("aitzgorri_480.webp", "image/webp"),
        ("emerald_alpha_300.png", "image/png"),
    ];
    for (n, ct) in names {
        origin.route(&format!("/{n}"), Reply::ok(ct, fixture(n)));
    }
    let budget = 3u64 << 20;
    let edge = Edge::start(&config(
        &origin,
        "",
        &format!("transform:\n  decoded_cache_bytes: {budget}\n"),
    ));
    // A fixed pseudo-random sequence (xorshift): sources, widths and formats mixed.
    let mut x: u32 = 0x9e37_79b9;
    for _ in 0..60 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let (name, _) = names[(x % 5) as usize];
        let w = 40 + (x >> 8) % 300;
        let f = ["webp", "jpeg", "png"][((x >> 4) % 3) as usize];
        let r = get(&edge.url(&format!("/{name}?width={w}&format={f}")));
        assert_eq!(r.status, 200, "{name} {w} {f}: {}", r.text());
        let held = edge.metric("imgedge_decoded_cache_bytes");
        assert!(held <= budget as f64, "{held} > {budget}");
    }
    assert!(edge.metric("imgedge_decoded_cache_hits_total") > 0.0);
    assert_eq!(origin.total_hits(), 5, "one origin request per original");
}
