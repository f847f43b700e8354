//! Query parameters that look like transform parameters but are not (`widht=400`):
//! `transform.unknown_params` warn (default), reject, forward; end to end.

mod common;
use common::*;

const WARNING: &str = r#"unknown parameter "widht" (did you mean "width"?)"#;

fn setup(extra: &str) -> (Origin, Edge) {
    let origin = Origin::start();
    let jpeg = fixture("seeding_640x360.jpg");
    for target in ["/s.jpg", "/s.jpg?widht=400", "/s.jpg?Width=400&v=2"] {
        origin.route(target, Reply::ok("image/jpeg", jpeg.clone()));
    }
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\n{extra}",
        origin.peer()
    ));
    (origin, edge)
}

#[test]
fn a_lookalike_is_warned_on_miss_and_hit_and_logged() {
    let (origin, edge) = setup("");
    let original = fixture("seeding_640x360.jpg");
    let miss = get(&edge.url("/s.jpg?widht=400"));
    let hit = get(&edge.url("/s.jpg?widht=400"));
    for (r, label) in [(&miss, "MISS"), (&hit, "HIT")] {
        assert_eq!((r.status, r.cache()), (200, label));
        assert_eq!(r.header("imgedge-warning"), Some(WARNING), "{label}");
        // Served as imgedge has always served it: the original, untouched.
        assert!(r.body == original, "{label}: the original is served");
    }
    assert_eq!(origin.hits("/s.jpg?widht=400"), 1);
    // The warning is the request's, not the entry's: the plain URL has none, nor does a real
    // transform.
    let plain = get(&edge.url("/s.jpg"));
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("imgedge-warning"), None);
    let resized = get(&edge.url("/s.jpg?width=100"));
    assert_eq!(resized.status, 200);
    assert_eq!(resized.header("imgedge-warning"), None);
    // Another case of a known name; a one-letter name (a cache buster) is not a look-alike.
    let r = get(&edge.url("/s.jpg?Width=400&v=2"));
    assert_eq!(
        r.header("imgedge-warning"),
        Some(r#"unknown parameter "Width" (did you mean "width"?)"#)
    );
    let line = format!("warning={WARNING:?}");
    let log = eventually(5, "the warning in the access log", || {
        let log = edge.log();
        (log.matches(&line).count() == 2).then_some(log)
    });
    assert!(
        log.lines().any(|l| l.contains("GET /s.jpg?widht=400")
            && l.contains("cache=HIT")
            && l.contains(&line)),
        "{log}"
    );
}

#[test]
fn reject_answers_400_before_the_origin() {
    let (origin, edge) = setup("transform: {unknown_params: reject}\n");
    let r = get(&edge.url("/s.jpg?widht=400"));
    assert_eq!(r.status, 400);
    assert!(r.text().contains(WARNING), "{}", r.text());
    assert_eq!(origin.total_hits(), 0, "the origin saw no request");
    assert_eq!(get(&edge.url("/s.jpg?width=100")).status, 200);
}

#[test]
fn forward_is_silent() {
    let (origin, edge) = setup("transform: {unknown_params: forward}\n");
    let r = get(&edge.url("/s.jpg?widht=400"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("imgedge-warning"), None);
    assert_eq!(origin.hits("/s.jpg?widht=400"), 1);
    assert!(!edge.log().contains("warning="));
}

#[test]
fn a_bad_mode_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "upstreams:\n  origin: {peers: [\"127.0.0.1:9\"]}\nroutes:\n  - {prefix: /, upstream: origin}\ntransform: {unknown_params: shout}\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(r#"transform.unknown_params: "shout" is not one of forward, warn, reject"#),
        "{err}"
    );
}
