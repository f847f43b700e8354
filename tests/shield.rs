//! The two-tier topology on loopback: edges whose upstream is a pool of imgedge shields picked
//! by consistent hashing on the cache key, the shields fetching from the origin. Edges forward
//! the canonical transform, so each transform is made once per fleet.

mod common;
use common::*;

fn shield(origin: &Origin) -> Edge {
    Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\n",
        origin.peer()
    ))
}

fn edge(shields: &[&Edge]) -> Edge {
    let peers: Vec<String> = shields
        .iter()
        .map(|s| format!("\"127.0.0.1:{}\"", s.port))
        .collect();
    Edge::start(&format!(
        "upstreams:\n  shields: {{peers: [{}], lb: consistent, retries: 1}}\nroutes:\n  - {{prefix: /, upstream: shields, forward_transform: true}}\n",
        peers.join(", ")
    ))
}

fn transforms(e: &Edge) -> f64 {
    e.metric("imgedge_transform_duration_seconds_count")
}

fn width_of(r: &Resp) -> u32 {
    image::load_from_memory(&r.body)
        .unwrap_or_else(|e| panic!("not an image ({e}): {}", r.text()))
        .width()
}

#[test]
fn a_transform_is_made_once_per_fleet() {
    let origin = Origin::start();
    origin.route("/a.jpg", Reply::ok("image/jpeg", fixture("meadow_640.jpg")));
    let (s1, s2) = (shield(&origin), shield(&origin));
    let (e1, e2) = (edge(&[&s1, &s2]), edge(&[&s1, &s2]));

    for w in 100..110 {
        let path = format!("/a.jpg?w={w}&format=png");
        let a = get(&e1.url(&path));
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(width_of(&a), w);
        // The other edge has never seen it: a miss there, a hit on the key's shield.
        let b = get(&e2.url(&format!("/a.jpg?format=png&width={w}")));
        assert_eq!(b.status, 200);
        assert_eq!(b.cache(), "MISS");
        assert_eq!(b.body, a.body);
    }
    // Each shield keeps the original (its source cache) and makes its share of the variants
    // from it: one origin fetch per shield that made any.
    let making = [&s1, &s2].iter().filter(|s| transforms(s) > 0.0).count();
    assert_eq!(origin.hits("/a.jpg"), making, "one origin fetch per shield");
    assert_eq!(
        transforms(&e1) + transforms(&e2),
        0.0,
        "edges do not transform"
    );
    assert_eq!(transforms(&s1) + transforms(&s2), 10.0);
    assert!(
        transforms(&s1) > 0.0 && transforms(&s2) > 0.0,
        "keys spread over both shields"
    );

    // format=auto is negotiated at the edge; the shield gets the concrete format.
    let r = get_with(
        &e1.url("/a.jpg?width=64&format=auto"),
        &[("Accept", "image/webp,*/*")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/webp"));
    assert!(r.header("vary").is_some_and(|v| v.contains("Accept")));
    let r2 = get_with(&e2.url("/a.jpg?width=64&format=webp"), &[]);
    assert_eq!(r2.body, r.body, "the shield made it once for both");
    assert_eq!(
        origin.hits("/a.jpg"),
        making,
        "made from the shield's original"
    );

    // A bad parameter is refused at the edge, before any shield.
    let before = s1.metric("imgedge_requests_total") + s2.metric("imgedge_requests_total");
    assert_eq!(get(&e1.url("/a.jpg?width=-3")).status, 400);
    let after = s1.metric("imgedge_requests_total") + s2.metric("imgedge_requests_total");
    assert_eq!(before, after);
}

#[test]
fn losing_a_shield_keeps_every_request_succeeding() {
    let origin = Origin::start();
    origin.route(
        "/b.jpg",
        Reply::ok("image/jpeg", fixture("seeding_640x360.jpg")),
    );
    let s1 = shield(&origin);
    let mut s2 = Some(shield(&origin));
    let (e1, e2) = {
        let both = [&s1, s2.as_ref().unwrap()];
        (edge(&both), edge(&both))
    };
    let paths: Vec<String> = (0..12)
        .map(|i| format!("/b.jpg?width={}&format=jpeg", 50 + i))
        .collect();
    for p in &paths {
        assert_eq!(get(&e1.url(p)).status, 200);
    }
    drop(s2.take()); // killed: its connections are refused from now on

    for p in &paths {
        for e in [&e1, &e2] {
            let r = get(&e.url(p));
            assert_eq!(r.status, 200, "{p}: {}", r.text());
        }
    }
    for i in 0..12 {
        let r = get(&e2.url(&format!("/b.jpg?width={}&format=png", 200 + i)));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(width_of(&r), 200 + i);
    }
}
