//! Rate limits end to end: a real origin, imgedge, and (for the shared backend) a real
//! redis-server on loopback.

mod common;
use common::*;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn edge_with(origin: &Origin, limits: &str) -> Edge {
    Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\nlimits:\n{limits}",
        origin.peer()
    ))
}

fn origin() -> Origin {
    let o = Origin::start();
    o.route("/a.jpg", Reply::ok("image/jpeg", fixture("meadow_640.jpg")));
    o
}

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[test]
fn over_the_rate_is_429_with_retry_after_then_admitted_again() {
    let o = origin();
    let edge = edge_with(
        &o,
        "  policies:\n    - {name: per_ip, key: client_ip, rate: \"1/s\", burst: 3}\n",
    );
    for i in 0..3 {
        let r = get(&edge.url("/a.jpg"));
        assert_eq!(r.status, 200, "request {i} is within the burst");
        assert!(r
            .header("ratelimit-policy")
            .is_some_and(|p| p.contains("per_ip")));
    }
    let r = get(&edge.url("/a.jpg"));
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("per_ip"), "{}", r.text());
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(retry, 1);
    assert!(r.header("ratelimit").is_some());
    let refused_at = Instant::now();
    let r = eventually(5, "admission after Retry-After", || {
        let r = get(&edge.url("/a.jpg"));
        (r.status == 200).then_some(r)
    });
    assert_eq!(r.status, 200);
    // Admitted again once Retry-After has passed (generous slack for a loaded CI machine).
    assert!(refused_at.elapsed() <= Duration::from_secs(retry + 2));
    // Refused requests never reached the origin (the first was a miss, then hits).
    assert_eq!(o.hits("/a.jpg"), 1);
    assert!(
        edge.metric("imgedge_ratelimit_decisions_total{policy=\"per_ip\",result=\"deny\"}") >= 1.0
    );
}

fn jwt(secret: &[u8], roles: &[&str], org: &str, exp_offset: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims =
        serde_json::json!({"sub": "user-1", "roles": roles, "org": org, "exp": now + exp_offset});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

#[test]
fn api_keys_and_jwts_get_their_tier_bad_tokens_get_401() {
    let o = origin();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("jwt.key");
    std::fs::write(&secret_file, "s3cret-for-tests").unwrap();
    let edge = edge_with(
        &o,
        &format!(
            "  api_keys:\n    header: X-Api-Key\n    keys:\n      - {{key_sha256: \"{}\", tier: pro, org: acme}}\n  jwt:\n    hs256_secret_file: \"{}\"\n    tier_claim: roles\n    org_claim: org\n  tiers:\n    free: {{rate: \"1/min\", burst: 1}}\n    pro: {{rate: \"100/s\", burst: 50}}\n",
            sha("pro-key"),
            secret_file.display()
        ),
    );
    let url = edge.url("/a.jpg");
    // Anonymous: the free tier (burst 1) by client IP.
    assert_eq!(get(&url).status, 200);
    assert_eq!(get(&url).status, 429);
    // The pro key is far above that.
    for _ in 0..10 {
        assert_eq!(get_with(&url, &[("X-Api-Key", "pro-key")]).status, 200);
    }
    let r = get_with(&url, &[("X-Api-Key", "wrong-key")]);
    assert_eq!(r.status, 401, "{}", r.text());
    // A JWT with the pro role.
    let token = jwt(b"s3cret-for-tests", &["free", "pro"], "acme", 600);
    for _ in 0..10 {
        let r = get_with(&url, &[("Authorization", &format!("Bearer {token}"))]);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for (bad, what) in [
        (jwt(b"s3cret-for-tests", &["pro"], "acme", -60), "expired"),
        (jwt(b"forged-secret", &["pro"], "acme", 600), "forged"),
        ("not.a.jwt".to_string(), "malformed"),
    ] {
        let r = get_with(&url, &[("Authorization", &format!("Bearer {bad}"))]);
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert!(
            r.text().starts_with("unauthorized:"),
            "{what}: {}",
            r.text()
        );
    }
}

#[test]
fn keys_of_one_org_share_its_quota() {
    let o = origin();
    let edge = edge_with(
        &o,
        &format!(
            "  policies:\n    - {{name: org_quota, key: org, rate: \"1/min\", burst: 2}}\n  api_keys:\n    keys:\n      - {{key_sha256: \"{}\", org: acme}}\n      - {{key_sha256: \"{}\", org: acme}}\n      - {{key_sha256: \"{}\", org: other}}\n",
            sha("k1"),
            sha("k2"),
            sha("k3")
        ),
    );
    let url = edge.url("/a.jpg");
    let with = |k: &str| get_with(&url, &[("X-Api-Key", k)]).status;
    assert_eq!(with("k1"), 200);
    assert_eq!(with("k2"), 200);
    assert_eq!(
        with("k1"),
        429,
        "acme's two requests are used up by its two keys"
    );
    assert_eq!(with("k2"), 429);
    assert_eq!(with("k3"), 200, "another org has its own quota");
    let q = get(&edge.admin_url("/quota?key=acme"));
    assert_eq!(q.status, 200);
    assert!(q.text().contains("\"remaining\":0"), "{}", q.text());
    // Reading the quota does not consume it.
    let q2 = get(&edge.admin_url("/quota?key=other"));
    let q3 = get(&edge.admin_url("/quota?key=other"));
    assert_eq!(q2.text(), q3.text());
}

#[test]
fn x_forwarded_for_counts_only_from_trusted_proxies() {
    let o = origin();
    let policy = "  policies:\n    - {name: per_ip, key: client_ip, rate: \"1/min\", burst: 1}\n";
    let untrusted = edge_with(&o, policy);
    let url = untrusted.url("/a.jpg");
    assert_eq!(
        get_with(&url, &[("X-Forwarded-For", "203.0.113.1")]).status,
        200
    );
    assert_eq!(
        get_with(&url, &[("X-Forwarded-For", "203.0.113.2")]).status,
        429,
        "a client cannot pick its IP"
    );
    let trusted = edge_with(
        &o,
        &format!("{policy}  trusted_proxies: [\"127.0.0.0/8\"]\n"),
    );
    let url = trusted.url("/a.jpg");
    assert_eq!(
        get_with(&url, &[("X-Forwarded-For", "203.0.113.1")]).status,
        200
    );
    assert_eq!(
        get_with(&url, &[("X-Forwarded-For", "203.0.113.2")]).status,
        200
    );
    assert_eq!(
        get_with(&url, &[("X-Forwarded-For", "203.0.113.1")]).status,
        429
    );
}

fn redis_limits(redis: &Redis, on_error: &str) -> String {
    format!(
        "  policies:\n    - {{name: shared, key: client_ip, rate: \"20/s\", burst: 20}}\n  backend: {{kind: redis, redis_url: \"{}\", timeout_ms: 50, on_error: {on_error}, nodes: 2}}\n",
        redis.url()
    )
}

/// Requests from `threads` clients per edge for `secs`; returns (admitted, refused, slowest).
fn hammer(edges: &[&Edge], threads: usize, secs: u64) -> (usize, usize, Duration) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let handles: Vec<_> = edges
        .iter()
        .flat_map(|e| (0..threads).map(move |_| e.url("/a.jpg")))
        .map(|url| {
            std::thread::spawn(move || {
                let (mut ok, mut refused, mut slowest) = (0, 0, Duration::ZERO);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match get(&url).status {
                        200 => ok += 1,
                        _ => refused += 1,
                    }
                    slowest = slowest.max(t.elapsed());
                }
                (ok, refused, slowest)
            })
        })
        .collect();
    handles.into_iter().fold((0, 0, Duration::ZERO), |a, h| {
        let (o, r, s) = h.join().unwrap();
        (a.0 + o, a.1 + r, a.2.max(s))
    })
}

#[test]
fn redis_shares_limits_across_nodes_and_survives_its_outage() {
    let mut redis = Redis::start();
    let o = origin();
    let a = edge_with(&o, &redis_limits(&redis, "closed"));
    let b = edge_with(&o, &redis_limits(&redis, "closed"));
    // Two nodes, one shared limit: burst 20 + 20/s over 5 s = 120.
    let (ok, refused, _) = hammer(&[&a, &b], 2, 5);
    assert!(refused > 0);
    assert!(
        (108..=132).contains(&ok),
        "admitted {ok}, expected 120 ± 10%"
    );

    // Redis down, on_error closed: a fast 503 for everyone, nobody hangs past the timeout.
    redis.stop();
    let (ok, _, slowest) = hammer(&[&a], 1, 1);
    assert_eq!(ok, 0);
    assert!(
        slowest < Duration::from_millis(1000),
        "slowest request took {slowest:?}"
    );
    let r = get(&a.url("/a.jpg"));
    assert_eq!(r.status, 503, "{}", r.text());

    // Back up: shared limiting resumes by itself.
    redis.restart();
    eventually(10, "recovery after redis restarts", || {
        (get(&a.url("/a.jpg")).status == 200).then_some(())
    });
    assert!(a.metric("imgedge_ratelimit_fallback_switches_total") >= 1.0);
}

#[test]
fn redis_leases_cut_round_trips_but_not_the_shared_limit() {
    let redis = Redis::start();
    let o = origin();
    // 400/s: a lease may hold up to 20 requests (50 ms of the rate).
    let limits = format!(
        "  policies:\n    - {{name: shared, key: client_ip, rate: \"400/s\", burst: 200}}\n  backend: {{kind: redis, redis_url: \"{}\", timeout_ms: 200, on_error: closed, nodes: 2}}\n",
        redis.url()
    );
    let a = edge_with(&o, &limits);
    let b = edge_with(&o, &limits);
    // Far below the limit: fewer Redis round trips than requests.
    let start = Instant::now();
    for _ in 0..100 {
        assert_eq!(get(&a.url("/a.jpg")).status, 200);
    }
    let calls = a.metric("imgedge_ratelimit_redis_duration_seconds_count");
    assert!(
        calls < 50.0,
        "{calls} Redis calls for 100 requests far below the limit"
    );
    // Over the limit from both nodes: still the shared limit, within 10%.
    let (ok, refused, _) = hammer(&[&a, &b], 3, 3);
    let secs = start.elapsed().as_secs_f64();
    assert!(refused > 0, "the clients must go over the limit");
    // the first 100 took part of the burst; tokens refill at 400/s
    let allowed = 200.0 + 400.0 * secs;
    let ok = ok as f64 + 100.0;
    eprintln!("leases: {calls} redis calls for 100 requests; admitted {ok} of {allowed:.0}");
    assert!(
        ok <= allowed * 1.1 && ok >= allowed * 0.9,
        "admitted {ok}, the shared limit allows {allowed:.0}"
    );
}

#[test]
fn redis_outage_with_on_error_local_enforces_the_node_share() {
    let mut redis = Redis::start();
    let o = origin();
    let a = edge_with(&o, &redis_limits(&redis, "local"));
    assert_eq!(get(&a.url("/a.jpg")).status, 200);
    redis.stop();
    // nodes: 2 -> this node alone allows burst 10; never a hang.
    let mut ok = 0;
    for _ in 0..30 {
        let t = Instant::now();
        if get(&a.url("/a.jpg")).status == 200 {
            ok += 1;
        }
        assert!(t.elapsed() < Duration::from_millis(1000));
    }
    assert!(
        (8..=13).contains(&ok),
        "admitted {ok} with the local fallback"
    );
}

#[test]
fn redis_cluster_backend_shares_limits() {
    let cluster = RedisCluster::start();
    let o = origin();
    let limits = format!(
        "  policies:\n    - {{name: per_client, key: \"header:X-Client\", rate: \"1/min\", burst: 5}}\n  backend: {{kind: redis, redis_url: \"redis://127.0.0.1:{}\", cluster: true, timeout_ms: 500, on_error: closed}}\n",
        cluster.ports[0]
    );
    let a = edge_with(&o, &limits);
    let b = edge_with(&o, &limits);
    // Warm both nodes' cluster connections with another client's requests.
    for e in [&a, &b] {
        eventually(20, "the cluster connection", || {
            (get_with(&e.url("/a.jpg"), &[("X-Client", "warm-up")]).status != 503).then_some(())
        });
    }
    // One shared bucket across both nodes: exactly the burst passes.
    let mut ok = 0;
    for i in 0..10 {
        let e = if i % 2 == 0 { &a } else { &b };
        let r = get_with(&e.url("/a.jpg"), &[("X-Client", "c1")]);
        assert!(
            r.status == 200 || r.status == 429,
            "{}: {}",
            r.status,
            r.text()
        );
        ok += usize::from(r.status == 200);
    }
    assert_eq!(ok, 5);
}

#[test]
fn rs256_tokens_are_verified_with_the_public_key() {
    let o = origin();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let st = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl {args:?}");
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "priv.pem",
    ]);
    run(&["pkey", "-in", "priv.pem", "-pubout", "-out", "pub.pem"]);
    let edge = edge_with(
        &o,
        &format!(
            "  jwt:\n    rs256_public_key_file: \"{}\"\n    tier_claim: roles\n    org_claim: org\n  tiers:\n    free: {{rate: \"1/min\", burst: 1}}\n    pro: {{rate: \"100/s\", burst: 50}}\n",
            dir.path().join("pub.pem").display()
        ),
    );
    let private = std::fs::read(dir.path().join("priv.pem")).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({"sub": "u", "roles": ["pro"], "org": "acme", "exp": now + 600});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&private).unwrap(),
    )
    .unwrap();
    let url = edge.url("/a.jpg");
    for _ in 0..5 {
        let r = get_with(&url, &[("Authorization", &format!("Bearer {token}"))]);
        assert_eq!(r.status, 200, "pro tier via RS256: {}", r.text());
    }
    // An HS256 token (signed with anything) is refused: the configured algorithm is RS256.
    let hs = jwt(b"whatever", &["pro"], "acme", 600);
    assert_eq!(
        get_with(&url, &[("Authorization", &format!("Bearer {hs}"))]).status,
        401
    );
}
