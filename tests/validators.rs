//! Validators, lengths and ranges on cached entries (originals and transforms): 304 answered
//! from the cache, 206/416 from stored bodies, and revalidation of a stale transform with the
//! origin's own validator (a 304 refreshes it without transforming again).

mod common;
use common::*;

const LAST_MODIFIED: &str = "Tue, 03 Nov 2026 10:00:00 GMT";

fn setup(origin: &Origin) -> Edge {
    Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\ncache: {{stale_while_revalidate: 0}}\n",
        origin.peer()
    ))
}

/// Sends until the answer comes from the cache.
fn hit(url: &str, headers: &[(&str, &str)]) -> Resp {
    eventually(10, "a cache hit", || {
        let r = get_with(url, headers);
        (r.cache() == "HIT").then_some(r)
    })
}

#[test]
fn transformed_hits_carry_length_and_etag_and_answer_304() {
    let origin = Origin::start();
    origin.route(
        "/a.jpg",
        Reply::ok("image/jpeg", fixture("meadow_640.jpg"))
            .header("ETag", "\"src-v1\"")
            .header("Last-Modified", LAST_MODIFIED),
    );
    let edge = setup(&origin);
    let url = edge.url("/a.jpg?width=100&format=png");
    let miss = get(&url);
    assert_eq!(miss.status, 200, "{}", miss.text());
    let etag = miss
        .header("etag")
        .expect("transformed miss has an ETag")
        .to_string();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_ne!(
        etag, "\"src-v1\"",
        "the source's tag does not name the transform"
    );
    assert!(miss.header("x-imgedge-source-etag").is_none());

    let h = hit(&url, &[]);
    assert_eq!(h.header("etag"), Some(etag.as_str()));
    assert_eq!(
        h.header("content-length"),
        Some(h.body.len().to_string().as_str())
    );
    assert_eq!(h.body, miss.body);
    assert!(h.header("x-imgedge-source-etag").is_none());

    let r = get_with(&url, &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.cache(), "HIT");
    let r = get_with(&url, &[("If-None-Match", "W/\"something-else\"")]);
    assert_eq!(r.status, 200);
    let r = get_with(&url, &[("If-Modified-Since", LAST_MODIFIED)]);
    assert_eq!(r.status, 304);
    // A different transform of the same source has a different tag.
    let other = get(&edge.url("/a.jpg?width=101&format=png"));
    assert_ne!(other.header("etag"), Some(etag.as_str()));
    // Both made from the one cached original (the source cache).
    assert_eq!(origin.hits("/a.jpg"), 1);
}

#[test]
fn entries_without_an_origin_validator_get_one_from_the_body() {
    let origin = Origin::start();
    origin.route(
        "/plain.bin",
        Reply::ok("application/octet-stream", vec![5u8; 5000]),
    );
    origin.route("/t.jpg", Reply::ok("image/jpeg", fixture("meadow_640.jpg")));
    let edge = setup(&origin);
    for path in ["/plain.bin", "/t.jpg?width=80"] {
        let url = edge.url(path);
        get(&url);
        let h = hit(&url, &[]);
        let etag = h
            .header("etag")
            .unwrap_or_else(|| panic!("{path}: no ETag on hit"));
        assert!(etag.starts_with('"'), "{path}: {etag}");
        assert!(h.header("x-imgedge-generated-etag").is_none());
        let r = get_with(&url, &[("If-None-Match", etag)]);
        assert_eq!(r.status, 304, "{path}");
    }
}

#[test]
fn ranges_are_served_from_cached_entries() {
    let origin = Origin::start();
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    origin.route(
        "/blob.bin",
        Reply::ok("application/octet-stream", body.clone()),
    );
    origin.route("/t.jpg", Reply::ok("image/jpeg", fixture("meadow_640.jpg")));
    let edge = setup(&origin);

    let url = edge.url("/blob.bin");
    get(&url);
    let h = hit(&url, &[]);
    assert_eq!(h.header("accept-ranges"), Some("bytes"));
    let r = hit(&url, &[("Range", "bytes=100-199")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 100-199/10000"));
    assert_eq!(r.body, &body[100..200]);
    let r = hit(&url, &[("Range", "bytes=-10")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &body[9990..]);
    let r = hit(&url, &[("Range", "bytes=20000-")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */10000"));

    // A transformed entry: ranges of the stored (transformed) body.
    let url = edge.url("/t.jpg?width=90&format=png");
    let full = get(&url).body;
    let r = hit(&url, &[("Range", "bytes=0-9")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &full[..10]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-9/{}", full.len()).as_str())
    );
    assert_eq!(origin.hits("/blob.bin") + origin.hits("/t.jpg"), 2);
}

/// Without the source cache the variant's own revalidation carries the source's tag to the
/// origin.
#[test]
fn stale_transform_is_revalidated_with_the_origin_validator() {
    stale_transform_is_revalidated(false);
}

/// With it (the default) the variant is revalidated against the cached original, which is
/// itself revalidated at the origin when stale: never a second transform, never a full refetch.
#[test]
fn stale_transform_is_revalidated_through_the_source_cache() {
    stale_transform_is_revalidated(true);
}

fn stale_transform_is_revalidated(source_cache: bool) {
    let origin = Origin::start();
    origin.route(
        "/r.jpg",
        Reply::ok("image/jpeg", fixture("meadow_640.jpg"))
            .header("ETag", "\"r-v1\"")
            .header("Cache-Control", "max-age=1"),
    );
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin, source_cache: {source_cache}}}\ncache: {{stale_while_revalidate: 0}}\n",
        origin.peer()
    ));
    let url = edge.url("/r.jpg?width=120&format=webp");
    let first = get(&url);
    assert_eq!(first.cache(), "MISS");
    let etag = first.header("etag").unwrap().to_string();
    let transforms = edge.metric("imgedge_transform_duration_seconds_count");
    assert_eq!(transforms, 1.0);

    // Once stale, the edge asks the origin about the source's tag; the 304 refreshes the entry.
    let r = eventually(10, "a revalidated answer", || {
        let r = get(&url);
        (r.cache() == "REVALIDATED").then_some(r)
    });
    assert_eq!(r.status, 200);
    assert_eq!(r.body, first.body);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    if source_cache {
        // The cached original answered; it was revalidated at the origin if it was stale too
        // (the two expire within the same second), else still fresh: no full refetch.
        assert_eq!(origin.hits("/r.jpg"), 1 + origin.not_modified("/r.jpg"));
    } else {
        assert_eq!(origin.not_modified("/r.jpg"), 1);
    }
    if origin.not_modified("/r.jpg") > 0 {
        let sent = origin.last_request_headers("/r.jpg").unwrap();
        assert!(sent.contains(&("if-none-match".to_string(), "\"r-v1\"".to_string())));
    }
    assert_eq!(
        edge.metric("imgedge_transform_duration_seconds_count"),
        1.0,
        "no second transform"
    );
    let h = get(&url);
    assert!(matches!(h.cache(), "HIT" | "REVALIDATED"), "{}", h.cache());
    assert_eq!(h.header("etag"), Some(etag.as_str()));

    // The source changes: the next revalidation gets a 200 and a new transform and tag.
    origin.route(
        "/r.jpg",
        Reply::ok("image/jpeg", fixture("seeding_640x360.jpg"))
            .header("ETag", "\"r-v2\"")
            .header("Cache-Control", "max-age=1"),
    );
    let r = eventually(10, "the new version", || {
        let r = get(&url);
        (r.header("etag") != Some(etag.as_str())).then_some(r)
    });
    assert_eq!(r.status, 200);
    assert_ne!(r.body, first.body);
    assert_eq!(edge.metric("imgedge_transform_duration_seconds_count"), 2.0);
}
