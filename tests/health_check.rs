//! Active health checks told in imgedge's words: an origin without the checked path fails
//! every check; that is logged once, with what imgedge does about it, and requests still work.

mod common;
use common::*;

#[test]
fn every_peer_failing_its_check_is_logged_once_and_requests_still_flow() {
    let origin = Origin::start();
    origin.route(
        "/a.jpg",
        Reply::ok("image/jpeg", fixture("seeding_640x360.jpg")),
    );
    // The origin has no /health: every check gets its 404.
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"], health_check: {{path: /health, interval: 100ms, unhealthy_threshold: 1}}}}\nroutes:\n  - {{prefix: /, upstream: origin, cache: false}}\n",
        origin.peer()
    ));
    let line = format!(
        "upstream \"origin\": its peer {} fails its health check (GET /health -> 404); imgedge keeps sending requests to it rather than refusing all traffic",
        origin.peer()
    );
    eventually(10, "the all-down line", || {
        edge.log().contains(&line).then_some(())
    });
    // Several more failed checks: still one line.
    let seen = origin.hits("/health");
    eventually(10, "five more checks", || {
        (origin.hits("/health") >= seen + 5).then_some(())
    });
    for _ in 0..3 {
        assert_eq!(get(&edge.url("/a.jpg")).status, 200);
    }
    let log = edge.log();
    assert_eq!(log.matches("fails its health check").count(), 1, "{log}");
    // Pingora's own line (a Backend debug dump) is not shown.
    assert!(!log.contains("becomes unhealthy"), "{log}");
    assert_eq!(edge.metric("imgedge_upstream_peer_healthy"), 0.0);
}
