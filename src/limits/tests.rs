//! Limiter-level tests (policies together, tiers, orgs, headers, Redis).

use super::gcra::ManualClock;
use super::identity::sha256_hex;
use super::*;
use crate::config::check::Errors;
use crate::config::limits::raw::RawLimits;
use crate::config::limits::{validate, Rate};
use http::HeaderMap;
use std::time::{Duration, Instant};

#[derive(serde::Deserialize)]
struct File {
    limits: RawLimits,
}

fn settings(yaml: &str) -> LimitSettings {
    let f: File = serde_yaml::from_str(yaml).unwrap();
    let mut errs = Errors::default();
    let s = validate(f.limits, &mut errs);
    let errs = errs.0;
    assert!(errs.is_empty(), "{errs:?}");
    s
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn api(key: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-api-key", key.parse().unwrap());
    h
}

fn header<'a>(d: &'a Decision, name: &str) -> Option<&'a str> {
    let hs = match d {
        Decision::Allow { headers, .. } | Decision::Deny { headers, .. } => headers,
        Decision::Unavailable { .. } => return None,
    };
    hs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

const REQ: Stage = Stage::Request { transform: false };
const XFORM: Stage = Stage::Request { transform: true };

#[tokio::test]
async fn all_policies_must_admit_and_stages_select_policies() {
    let s = settings(
        r#"
limits:
  policies:
    - {name: per_ip, key: client_ip, rate: "50/s", burst: 100}
    - {name: transforms, key: client_ip, applies_to: transforms, rate: "5/s", burst: 3}
    - {name: misses, key: client_ip, applies_to: misses, rate: "1/s", burst: 2}
"#,
    );
    let clock = Arc::new(ManualClock::new(0));
    let l = Limiter::with_clock(&s, clock.clone());
    assert!(l.is_enabled());
    let id = l.identify(&HeaderMap::new(), ip("192.0.2.1")).unwrap();
    for _ in 0..3 {
        assert!(l.check(&id, XFORM).await.is_allow());
    }
    match l.check(&id, XFORM).await {
        Decision::Deny {
            policy,
            retry_after_secs,
            headers,
        } => {
            assert_eq!(policy, "transforms");
            assert_eq!(retry_after_secs, 1);
            assert!(headers.contains(&("Retry-After".into(), "1".into())));
            assert!(headers.contains(&("RateLimit".into(), "\"transforms\";r=0;t=1".into())));
        }
        d => panic!("{d:?}"),
    }
    // plain requests still pass: the refused transform consumed nothing of per_ip
    let d = l.check(&id, REQ).await;
    assert_eq!(header(&d, "RateLimit"), Some("\"per_ip\";r=96;t=1"));
    // misses are separate
    assert!(l.check(&id, Stage::Miss).await.is_allow());
    assert!(l.check(&id, Stage::Miss).await.is_allow());
    assert!(!l.check(&id, Stage::Miss).await.is_allow());
    clock.advance_ns(1_000_000_000);
    assert!(l.check(&id, Stage::Miss).await.is_allow());
}

#[tokio::test]
async fn header_formatting() {
    let s = settings(
        "limits:\n  policies:\n    - {name: per_ip, key: client_ip, rate: \"50/s\", burst: 100}\n",
    );
    let l = Limiter::with_clock(&s, Arc::new(ManualClock::new(0)));
    let id = l.identify(&HeaderMap::new(), ip("192.0.2.1")).unwrap();
    let d = l.check(&id, REQ).await;
    assert_eq!(header(&d, "RateLimit-Policy"), Some("\"per_ip\";q=100;w=2"));
    assert_eq!(header(&d, "RateLimit"), Some("\"per_ip\";r=99;t=1"));
    assert_eq!(sf_string("a\"b"), "\"a\\\"b\"");
    // 10/min burst 5: window 30 s
    let g = Gcra::new(Limit {
        rate: Rate::parse("10/min").unwrap(),
        burst: 5,
    });
    let v = g.verdict_at(0, 0);
    assert_eq!(
        rate_limit_headers("x", &g, &v),
        vec![
            ("RateLimit-Policy".to_string(), "\"x\";q=5;w=30".to_string()),
            ("RateLimit".to_string(), "\"x\";r=5;t=0".to_string()),
        ]
    );
}

fn org_yaml() -> String {
    format!(
        r#"
limits:
  policies:
    - {{name: per_org, key: org, rate: "1/min", burst: 3}}
    - {{name: per_key, key: api_key, rate: "1/min", burst: 100}}
  api_keys:
    keys:
      - {{key_sha256: "{a}", tier: pro, org: acme}}
      - {{key_sha256: "{b}", tier: pro, org: acme}}
      - {{key_sha256: "{c}", org: other}}
  tiers:
    free: {{rate: "1/min", burst: 2}}
    pro: {{rate: "1/min", burst: 50}}
"#,
        a = sha256_hex(b"key-a"),
        b = sha256_hex(b"key-b"),
        c = sha256_hex(b"key-c"),
    )
}

#[tokio::test]
async fn org_buckets_are_shared_across_keys() {
    let l = Limiter::with_clock(&settings(&org_yaml()), Arc::new(ManualClock::new(0)));
    let peer = ip("192.0.2.1");
    let a = l.identify(&api("key-a"), peer).unwrap();
    let b = l.identify(&api("key-b"), peer).unwrap();
    let c = l.identify(&api("key-c"), peer).unwrap();
    assert!(l.check(&a, REQ).await.is_allow());
    assert!(l.check(&b, REQ).await.is_allow());
    assert!(l.check(&a, REQ).await.is_allow());
    match l.check(&b, REQ).await {
        Decision::Deny { policy, .. } => assert_eq!(policy, "per_org"),
        d => panic!("{d:?}"),
    }
    // another org is unaffected; key-c has no tier -> free applies (burst 2)
    assert_eq!(c.tier.as_deref(), Some("free"));
    assert!(l.check(&c, REQ).await.is_allow());
    assert!(l.check(&c, REQ).await.is_allow());
    match l.check(&c, REQ).await {
        Decision::Deny { policy, .. } => assert_eq!(policy, "tier:free"),
        d => panic!("{d:?}"),
    }
    assert!(matches!(
        l.identify(&api("nope"), peer),
        Err(AuthError::UnknownApiKey)
    ));
}

#[tokio::test]
async fn anonymous_gets_free_tier_by_ip_and_key_policies_skip_them() {
    let l = Limiter::with_clock(&settings(&org_yaml()), Arc::new(ManualClock::new(0)));
    let id = l.identify(&HeaderMap::new(), ip("192.0.2.7")).unwrap();
    assert!(l.check(&id, REQ).await.is_allow());
    let d = l.check(&id, REQ).await;
    assert_eq!(header(&d, "RateLimit"), Some("\"tier:free\";r=0;t=120"));
    let other = l.identify(&HeaderMap::new(), ip("192.0.2.8")).unwrap();
    assert!(!l.check(&id, REQ).await.is_allow());
    assert!(l.check(&other, REQ).await.is_allow());
    // tiers do not apply at the miss stage
    assert!(l.check(&id, Stage::Miss).await.is_allow());
}

#[tokio::test]
async fn quota_is_read_only() {
    let l = Limiter::with_clock(&settings(&org_yaml()), Arc::new(ManualClock::new(0)));
    let a = l.identify(&api("key-a"), ip("192.0.2.1")).unwrap();
    assert!(l.check(&a, REQ).await.is_allow());
    for _ in 0..3 {
        let q = l.quota("key-a").await;
        let names: Vec<&str> = q.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["per_key", "tier:pro", "per_org"]);
        assert_eq!(q[2].remaining, 2);
        assert_eq!(q[2].limit, 3);
        assert_eq!(q[2].rate, "1/min");
        assert_eq!(q[2].reset_secs, 60);
    }
    let q = l.quota("acme").await;
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].name.as_str(), q[0].remaining), ("per_org", 2));
    let q = l.quota("192.0.2.9").await;
    assert_eq!((q[0].name.as_str(), q[0].remaining), ("tier:free", 2));
}

#[tokio::test]
async fn concurrency_cap_holds_until_guard_dropped() {
    let s = settings(
        "limits:\n  policies:\n    - {name: c, key: client_ip, rate: \"100/s\", burst: 100, concurrency: 2}\n",
    );
    let l = Limiter::with_clock(&s, Arc::new(ManualClock::new(0)));
    let id = l.identify(&HeaderMap::new(), ip("192.0.2.1")).unwrap();
    let d1 = l.check(&id, REQ).await;
    let d2 = l.check(&id, REQ).await;
    assert!(d1.is_allow() && d2.is_allow());
    let d3 = l.check(&id, REQ).await;
    assert!(matches!(&d3, Decision::Deny { policy, .. } if policy == "c"));
    drop(d1);
    assert!(l.check(&id, REQ).await.is_allow());
}

#[tokio::test]
async fn disabled_without_policies() {
    let l = Limiter::new(&settings("limits: {}\n"));
    assert!(!l.is_enabled());
    let id = l.identify(&HeaderMap::new(), ip("192.0.2.1")).unwrap();
    assert!(l.check(&id, REQ).await.is_allow());
}

// ------------------------------------------------------------------ redis

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis_yaml(port: u16, on_error: &str, timeout_ms: u64) -> LimitSettings {
    settings(&format!(
        r#"
limits:
  policies:
    - {{name: per_ip, key: client_ip, rate: "1/min", burst: 20}}
  backend: {{kind: redis, redis_url: "redis://127.0.0.1:{port}", timeout_ms: {timeout_ms}, on_error: {on_error}, nodes: 2}}
"#
    ))
}

#[tokio::test]
async fn dead_redis_closed_is_unavailable_within_timeout() {
    let l = Limiter::new(&redis_yaml(free_port(), "closed", 20));
    let id = l.identify(&HeaderMap::new(), ip("192.0.2.1")).unwrap();
    for _ in 0..5 {
        let t = Instant::now();
        assert!(matches!(
            l.check(&id, REQ).await,
            Decision::Unavailable { .. }
        ));
        assert!(
            t.elapsed() < Duration::from_millis(150),
            "{:?}",
            t.elapsed()
        );
        assert!(l.is_degraded());
    }
}

struct RedisServer {
    child: std::process::Child,
    port: u16,
}

impl RedisServer {
    fn start(port: u16) -> Option<RedisServer> {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let s = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if s.ping() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server did not answer PING on port {port}");
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 7];
        c.write_all(b"PING\r\n").is_ok() && c.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn have_redis() -> bool {
    std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok()
}

/// Alternates requests for `ip` between limiters; returns how many passed.
async fn admitted(ls: &[&Limiter], ip_s: &str, n: usize) -> usize {
    let mut ok = 0;
    for i in 0..n {
        let l = ls[i % ls.len()];
        let id = l.identify(&HeaderMap::new(), ip(ip_s)).unwrap();
        if l.check(&id, REQ).await.is_allow() {
            ok += 1;
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_shared_limit_failover_and_recovery() {
    if !have_redis() {
        eprintln!("redis-server not on PATH: skipping");
        return;
    }
    let port = free_port();
    let server = RedisServer::start(port).unwrap();
    let timeout_ms = 20;
    let a = Limiter::new(&redis_yaml(port, "local", timeout_ms));
    let b = Limiter::new(&redis_yaml(port, "local", timeout_ms));
    let open = Limiter::new(&redis_yaml(port, "open", timeout_ms));
    let closed = Limiter::new(&redis_yaml(port, "closed", timeout_ms));

    // two nodes together admit one limit (burst 20, 1/min: no refill here)
    assert_eq!(admitted(&[&a, &b], "198.51.100.1", 60).await, 20);
    let q = a.quota("198.51.100.1").await;
    assert_eq!((q[0].remaining, q[0].limit), (0, 20));
    // quota is read-only, also in Redis
    assert_eq!(a.quota("198.51.100.2").await[0].remaining, 20);
    assert_eq!(a.quota("198.51.100.2").await[0].remaining, 20);
    for l in [&open, &closed] {
        assert!(admitted(&[l], "198.51.100.3", 1).await == 1);
    }
    assert!(!a.is_degraded() && !b.is_degraded());

    server.stop();
    let slack = Duration::from_millis(100);
    let budget = Duration::from_millis(timeout_ms) + slack;
    let timed = |l: Limiter, key: &'static str, n: usize| async move {
        let mut out = Vec::new();
        for _ in 0..n {
            let id = l.identify(&HeaderMap::new(), ip(key)).unwrap();
            let t = Instant::now();
            let d = l.check(&id, REQ).await;
            assert!(t.elapsed() <= budget, "call took {:?}", t.elapsed());
            out.push(d);
        }
        out
    };
    // local: each node enforces burst/nodes = 10
    let d = timed(a.clone(), "198.51.100.4", 30).await;
    assert_eq!(d.iter().filter(|d| d.is_allow()).count(), 10);
    assert!(a.is_degraded());
    let d = timed(open.clone(), "198.51.100.5", 30).await;
    assert!(d.iter().all(Decision::is_allow));
    let d = timed(closed.clone(), "198.51.100.6", 5).await;
    assert!(d.iter().all(|d| matches!(d, Decision::Unavailable { .. })));

    // restart on the same port: shared limiting resumes by itself
    let _server = RedisServer::start(port).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.is_degraded() || b.is_degraded() {
        assert!(Instant::now() < deadline, "no recovery");
        admitted(&[&a, &b], "198.51.100.7", 2).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(admitted(&[&a, &b], "198.51.100.8", 60).await, 20);
}
