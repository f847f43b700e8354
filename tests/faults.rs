//! End-to-end: origins that hang, answer slowly, reset mid-body, send more or fewer bytes than
//! `Content-Length`, or answer garbage; the client gets a clean error (or the stale entry),
//! nothing partial is cached, and the circuit breaker takes a failing peer out and brings it
//! back with a half-open probe (or, when every peer is open, with the next success). Real
//! origins on loopback, real clients, no fixed sleeps.

mod common;
use common::*;
use std::time::{Duration, Instant};

/// Short deadlines so faults resolve fast; the breaker off unless a test wants it.
fn edge_for(peers: &[String], upstream_extra: &str, extra: &str) -> Edge {
    let list: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    Edge::start(&format!(
        "upstreams:\n  origin:\n    peers: [{}]\n    timeouts: {{first_byte: 700ms, total: 3s, read: 2s}}\n{upstream_extra}routes:\n  - {{prefix: /, upstream: origin}}\ncache: {{stale_while_revalidate: 0}}\n{extra}",
        list.join(", ")
    ))
}

fn no_breaker() -> &'static str {
    "    retries: 0\n    circuit_breaker: {enabled: false}\n"
}

/// After a fault, the origin is fixed: the next request must be a MISS with the whole body,
/// then a HIT (nothing of the failed response was stored).
fn fixed_origin_serves_whole_body(edge: &Edge, origin: &FaultyOrigin, path: &str, want: &[u8]) {
    origin.set(Fault::None);
    let r = get(&edge.url(path));
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    assert_eq!(
        r.cache(),
        "MISS",
        "{path}: something of the failed response was cached"
    );
    assert_eq!(r.body, want, "{path}: body after the fix");
    let again = get(&edge.url(path));
    assert_eq!((again.cache(), again.body.as_slice()), ("HIT", want));
}

#[test]
fn origin_faults_give_clean_errors_and_cache_nothing() {
    let jpeg = fixture("meadow_640.jpg");
    let origin = FaultyOrigin::start("image/jpeg", jpeg.clone(), Fault::None);
    let edge = edge_for(&[origin.peer()], no_breaker(), "");
    // The transformed bytes the fixed origin leads to (a different path: nothing shared).
    let want_small = get(&edge.url("/ref.jpg?w=100")).body;
    assert!(!want_small.is_empty() && want_small != jpeg);
    let cases = [
        ("hang", Fault::Hang),
        ("garbage", Fault::Garbage),
        ("reset", Fault::ResetMidBody),
        ("short", Fault::Short),
    ];
    for (name, fault) in cases {
        for transform in [false, true] {
            // Another path for the variant: the plain request's fixed original is cached, and
            // a variant of it would be made from the cache without asking the origin.
            let path = if transform {
                format!("/{name}_t.jpg?w=100")
            } else {
                format!("/{name}.jpg")
            };
            origin.set(fault.clone());
            let started = Instant::now();
            match try_get_with(&edge.url(&path), &[]) {
                Ok(r) => {
                    // The header had not gone out: a clean error with a one-line reason.
                    assert!(
                        r.status == 502 || r.status == 504,
                        "{path}: {} {}",
                        r.status,
                        r.text()
                    );
                    assert!(
                        r.text().contains("upstream origin"),
                        "{path}: reason {:?}",
                        r.text()
                    );
                    if fault == Fault::Hang {
                        assert_eq!(r.status, 504);
                        assert!(r.text().contains("first_byte"), "{}", r.text());
                    }
                }
                // The header had gone out: the body is cut off and the client sees it fail.
                Err(e) => assert!(
                    matches!(fault, Fault::ResetMidBody | Fault::Short),
                    "{path}: transport error {e}"
                ),
            }
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{path}: took {:?}",
                started.elapsed()
            );
            let want = if transform { &want_small } else { &jpeg };
            fixed_origin_serves_whole_body(&edge, &origin, &path, want);
        }
    }
    // The hang was cut by the first-byte deadline, counted by kind.
    assert!(edge.metric("imgedge_upstream_errors_total{kind=\"first_byte\"") >= 2.0);
}

#[test]
fn surplus_bytes_after_content_length_are_not_served_or_cached() {
    let body = b"exactly these bytes".to_vec();
    let origin = FaultyOrigin::start("application/octet-stream", body.clone(), Fault::Long);
    let edge = edge_for(&[origin.peer()], no_breaker(), "");
    // The message ends at Content-Length (RFC 9112 6.3); the surplus is dropped and the
    // connection is not reused, so it never leaks into another response.
    let r = get(&edge.url("/long"));
    assert_eq!((r.status, r.body.as_slice()), (200, body.as_slice()));
    let other = get(&edge.url("/other"));
    assert_eq!(other.body, body);
    assert_eq!(get(&edge.url("/long")).cache(), "HIT");
    assert_eq!(get(&edge.url("/long")).body, body);
}

#[test]
fn slow_first_byte_is_504_and_a_dribbling_origin_is_cut_at_total() {
    let body = vec![7u8; 400];
    let origin = FaultyOrigin::start(
        "application/octet-stream",
        body.clone(),
        Fault::SlowFirstByte(Duration::from_secs(3)),
    );
    let edge = edge_for(&[origin.peer()], no_breaker(), "");
    let started = Instant::now();
    let r = get(&edge.url("/slow"));
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        r.text()
            .contains("sent no response header within 700ms (timeouts.first_byte)"),
        "{}",
        r.text()
    );
    assert!(
        took >= Duration::from_millis(650) && took < Duration::from_millis(2500),
        "first_byte 700ms, answered after {took:?}"
    );
    // Every byte arrives well within `read` (2s), but the whole body would take 40 s.
    origin.set(Fault::Dribble(Duration::from_millis(100)));
    let started = Instant::now();
    let r = try_get_with(&edge.url("/dribble"), &[]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(6),
        "total 3s, ended after {took:?}"
    );
    if let Ok(r) = r {
        assert_ne!(r.body, body, "a cut response must not look complete");
    }
    assert!(edge.metric("imgedge_upstream_errors_total{kind=\"total\"") >= 1.0);
    fixed_origin_serves_whole_body(&edge, &origin, "/dribble", &body);
}

#[test]
fn stale_entry_is_served_when_the_origin_faults() {
    let body = fixture("meadow_640.jpg");
    let origin = FaultyOrigin::start("image/jpeg", body.clone(), Fault::None);
    origin.header("Cache-Control", "max-age=1");
    let edge = edge_for(&[origin.peer()], no_breaker(), "");
    // Faults before the response header: once a new header has gone out (a reset mid-body),
    // the stale entry can no longer be sent and the client sees a cut-off body instead.
    for (i, fault) in [Fault::Hang, Fault::Garbage].into_iter().enumerate() {
        for transform in [false, true] {
            let path = if transform {
                format!("/stale{i}.jpg?w=120")
            } else {
                format!("/stale{i}.jpg")
            };
            origin.set(Fault::None);
            let fresh = get(&edge.url(&path));
            assert_eq!((fresh.status, fresh.cache()), (200, "MISS"));
            origin.set(fault.clone());
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(10);
            let r = loop {
                let r = try_get_with(&edge.url(&path), &[]);
                match &r {
                    Ok(r) if r.cache() == "STALE" => break r.clone(),
                    Ok(r) => seen.push(format!("{} {} {}", r.status, r.cache(), r.text().len())),
                    Err(e) => seen.push(e.clone()),
                }
                assert!(
                    Instant::now() < deadline,
                    "{path} {fault:?}: no stale answer; got {seen:?}\n{}",
                    edge.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            };
            assert_eq!(r.status, 200, "{path} {fault:?}");
            assert_eq!(r.body, fresh.body, "{path} {fault:?}: stale body");
        }
    }
}

#[test]
fn circuit_breaker_takes_a_failing_peer_out_and_a_probe_brings_it_back() {
    let good = Origin::start();
    for i in 0..200 {
        good.route(
            &format!("/b/{i}"),
            Reply::ok("text/plain", format!("good {i}")),
        );
    }
    let bad = FaultyOrigin::start("text/plain", b"fixed".to_vec(), Fault::Garbage);
    let edge = edge_for(
        &[good.peer(), bad.peer()],
        "    retries: 1\n    circuit_breaker: {failures: 3, cooldown: 2s}\n",
        "",
    );
    let bad_label = format!("peer=\"{}\"", bad.peer());
    let open = |edge: &Edge| {
        edge.metric(&format!(
            "imgedge_upstream_circuit_state{{{bad_label},pool=\"origin\",state=\"open\"}}"
        ))
    };
    // Round robin sends every other request to the bad peer; each failure is retried on the
    // good one, so every client request succeeds.
    let mut i = 0;
    while bad.hits() < 3 {
        let r = get(&edge.url(&format!("/b/{i}")));
        assert_eq!((r.status, r.text()), (200, format!("good {i}")));
        i += 1;
        assert!(i < 50, "the bad peer got no traffic");
    }
    assert_eq!(open(&edge), 1.0, "open after 3 consecutive failures");
    // While open (2s cooldown), requests no longer reach it.
    let hits_when_opened = bad.hits();
    let started = Instant::now();
    for _ in 0..30 {
        let r = get(&edge.url(&format!("/b/{i}")));
        assert_eq!(r.status, 200);
        i += 1;
    }
    if started.elapsed() < Duration::from_secs(2) {
        assert_eq!(bad.hits(), hits_when_opened, "an open circuit got traffic");
    }
    // Fixed: after the cooldown one probe goes through, succeeds, and closes the circuit.
    bad.set(Fault::None);
    eventually(15, "the probe to close the circuit", || {
        let r = get(&edge.url(&format!("/b/{}", 100 + (i % 100))));
        assert_eq!(r.status, 200);
        i += 1;
        (open(&edge) == 0.0
            && edge.metric(&format!(
                "imgedge_upstream_circuit_state{{{bad_label},pool=\"origin\",state=\"closed\"}}"
            )) == 1.0)
            .then_some(())
    });
    assert!(bad.hits() > hits_when_opened, "the probe reached the peer");
    let log = edge.log();
    assert!(log.contains("closed -> open"), "{log}");
    assert!(log.contains("open -> half_open"), "{log}");
    assert!(log.contains("half_open -> closed"), "{log}");
    assert!(
        edge.metric("imgedge_upstream_circuit_transitions_total{") >= 3.0,
        "transitions counted"
    );
    // Back in rotation: it serves again.
    let before = bad.hits();
    let mut k = 0;
    eventually(10, "traffic to the recovered peer", || {
        k += 1;
        assert_eq!(get(&edge.url(&format!("/b/{}", 150 + k % 50))).status, 200);
        (bad.hits() > before).then_some(())
    });
}

/// A pool never answers 503 only because its breakers are open (nginx with one server, Envoy's
/// panic threshold): the request is sent, the client gets the origin's real answer, and a
/// success closes the circuit without waiting for the cooldown.
#[test]
fn a_single_peer_with_an_open_circuit_still_gets_requests_and_recovers() {
    let bad = FaultyOrigin::start("text/plain", b"x".to_vec(), Fault::Garbage);
    let edge = edge_for(
        &[bad.peer()],
        "    retries: 0\n    circuit_breaker: {failures: 2, cooldown: 1h}\n",
        "",
    );
    let state = |s: &str| {
        edge.metric(&format!(
            "imgedge_upstream_circuit_state{{peer=\"{}\",pool=\"origin\",state=\"{s}\"}}",
            bad.peer()
        ))
    };
    // Two different URLs failing open the circuit.
    for path in ["/one", "/two"] {
        assert_eq!(get(&edge.url(path)).status, 502);
    }
    assert_eq!(state("open"), 1.0);
    // Every peer open: the request still goes to the origin; its failure is the answer.
    let hits = bad.hits();
    let r = get(&edge.url("/three"));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("upstream origin"), "{}", r.text());
    assert_eq!(bad.hits(), hits + 1, "the request reached the open peer");
    assert_eq!(
        state("open"),
        1.0,
        "a failure through an open circuit changes nothing"
    );
    // The origin recovers: served at once, and the circuit closes (no 1h cooldown).
    bad.set(Fault::None);
    let r = get(&edge.url("/four"));
    assert_eq!((r.status, r.text()), (200, "x".to_string()));
    eventually(5, "the circuit to close", || {
        (state("closed") == 1.0).then_some(())
    });
    let log = edge.log();
    assert_eq!(
        log.matches("every peer's circuit is open").count(),
        1,
        "logged once: {log}"
    );
    assert!(log.contains("open -> closed"), "{log}");
    assert!(edge.metric("imgedge_upstream_circuit_bypassed_total{") >= 2.0);
}

#[test]
fn transform_over_its_budget_is_a_clean_503_and_nothing_is_cached() {
    let origin = Origin::start();
    origin.route("/m.jpg", Reply::ok("image/jpeg", fixture("meadow_640.jpg")));
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\ntransform: {{timeout: 1ms}}\n",
        origin.peer()
    ));
    match try_get_with(&edge.url("/m.jpg?w=300&format=png"), &[]) {
        Ok(r) => {
            assert_eq!(r.status, 503, "{}", r.text());
            assert!(r.text().contains("(transform.timeout)"), "{}", r.text());
        }
        // The status line had gone out: the chunked body is aborted, never complete.
        Err(e) => assert!(!e.is_empty()),
    }
    // Timed out running, or (issue 18) still waiting for a worker when the 1 ms was up.
    let log = edge.log();
    assert!(
        log.contains("transform did not finish within 1ms (transform.timeout)")
            || log.contains("transform waited 1ms for a worker (transform.timeout)"),
        "{log}"
    );
    // Nothing was stored: the repeat is not a hit (the failure is remembered briefly).
    let again = get(&edge.url("/m.jpg?w=300&format=png"));
    assert_eq!(
        (again.status, again.cache()),
        (503, "BYPASS"),
        "{}",
        again.text()
    );
    assert!(
        again.text().contains("(transform.timeout)"),
        "{}",
        again.text()
    );
    assert!(edge.metric("imgedge_transforms_refused_total{reason=\"timeout\"}") >= 1.0);
    // The source itself passes through untouched.
    assert_eq!(get(&edge.url("/m.jpg")).status, 200);
}
