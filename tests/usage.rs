//! Usage events end to end: a real origin, imgedge, a real redis-server, and the
//! `imgedge usage` subcommand reading the stream through a consumer group.

mod common;
use common::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::process::Command;

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn origin() -> Origin {
    let o = Origin::start();
    o.route(
        "/img/a.jpg",
        Reply::ok("image/jpeg", fixture("meadow_640.jpg")),
    );
    // Only ever asked for plainly: a.jpg's original is stored when its variant is made.
    o.route(
        "/img/b.jpg",
        Reply::ok("image/jpeg", fixture("meadow_640.jpg")),
    );
    o.route(
        "/raw/a.jpg",
        Reply::ok("image/jpeg", fixture("meadow_640.jpg")),
    );
    o
}

/// Routes `/img` (cached) and `/raw` (not cached); API keys "k-acme" (org acme) and "k-other"
/// (org other); no rate-limit policy, so identification happens for the usage event only.
fn edge(o: &Origin, redis: &Redis, stream: &str, usage_extra: &str) -> Edge {
    Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /img, upstream: origin}}\n  - {{prefix: /raw, upstream: origin, cache: false}}\nlimits:\n  api_keys:\n    keys:\n      - {{key_sha256: \"{}\", org: acme}}\n      - {{key_sha256: \"{}\", org: other}}\nusage:\n  redis_url: \"{}\"\n  stream: \"{stream}\"\n  flush_interval: 20ms\n{usage_extra}",
        o.peer(),
        sha("k-acme"),
        sha("k-other"),
        redis.url()
    ))
}

fn conn(redis: &Redis) -> redis::Connection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

type Entry = (String, BTreeMap<String, String>);

fn entries(redis: &Redis, stream: &str) -> Vec<Entry> {
    let raw: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(&mut conn(redis))
        .unwrap();
    raw.into_iter()
        .map(|(id, kv)| {
            let m = kv.chunks(2).map(|c| (c[0].clone(), c[1].clone())).collect();
            (id, m)
        })
        .collect()
}

fn xlen(redis: &Redis, stream: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(stream)
        .query(&mut conn(redis))
        .unwrap()
}

fn published(edge: &Edge) -> f64 {
    edge.metric("imgedge_usage_events_published_total")
}

fn dropped(edge: &Edge) -> f64 {
    edge.metric("imgedge_usage_events_dropped_total")
}

#[test]
fn every_request_produces_an_event_with_its_fields() {
    let redis = Redis::start();
    let o = origin();
    let edge = edge(&o, &redis, "ev", "");
    let t0 = imgedge::usage::now_ms();
    let url = edge.url("/img/a.jpg?width=100&format=webp");
    let miss = get_with(&url, &[("X-Api-Key", "k-acme")]);
    assert_eq!((miss.status, miss.cache()), (200, "MISS"));
    let hit = get_with(&url, &[("X-Api-Key", "k-acme")]);
    assert_eq!((hit.status, hit.cache()), (200, "HIT"));
    let plain = get(&edge.url("/raw/a.jpg"));
    assert_eq!((plain.status, plain.cache()), (200, "BYPASS"));
    let bad = get(&edge.url("/img/a.jpg?width=-3"));
    assert_eq!(bad.status, 400);
    let none = get(&edge.url("/elsewhere"));
    assert_eq!(none.status, 404);
    // An unknown key is not an error without rate-limit policies: it counts as anonymous.
    let unknown = get_with(&edge.url("/raw/a.jpg"), &[("X-Api-Key", "nope")]);
    assert_eq!(unknown.status, 200);

    eventually(10, "6 events in the stream", || {
        (xlen(&redis, "ev") == 6).then_some(())
    });
    let ev = entries(&redis, "ev");
    let f = |i: usize, k: &str| ev[i].1.get(k).cloned().unwrap_or_default();
    for (i, (_, e)) in ev.iter().enumerate() {
        let ts: u64 = e["ts"].parse().unwrap();
        assert!(
            ts >= t0 && ts <= imgedge::usage::now_ms(),
            "event {i} ts {ts}"
        );
        assert_eq!(e["method"], "GET");
        assert_eq!(e["client"], "127.0.0.1");
    }
    // The transform miss.
    assert_eq!(f(0, "org"), "acme");
    assert!(f(0, "key").starts_with("ak:"), "{}", f(0, "key"));
    assert_eq!(f(0, "route"), "/img");
    assert_eq!(f(0, "path"), "/img/a.jpg");
    assert_eq!(f(0, "transform"), "w=100,f=webp");
    assert_eq!(f(0, "status"), "200");
    assert_eq!(f(0, "cache"), "MISS");
    assert_eq!(f(0, "bytes"), miss.body.len().to_string());
    let ms: f64 = f(0, "transform_ms")
        .parse()
        .expect("transform_ms on a miss");
    assert!(ms > 0.0);
    // The hit: no transform ran.
    assert_eq!(f(1, "cache"), "HIT");
    assert_eq!(f(1, "transform"), "w=100,f=webp");
    assert_eq!(f(1, "transform_ms"), "-");
    assert_eq!(f(1, "bytes"), hit.body.len().to_string());
    assert_eq!(f(1, "key"), f(0, "key"));
    // Anonymous pass-through on an uncached route.
    assert_eq!(f(2, "org"), "-");
    assert_eq!(f(2, "key"), "127.0.0.1");
    assert_eq!(f(2, "route"), "/raw");
    assert_eq!(f(2, "transform"), "-");
    assert_eq!(f(2, "cache"), "BYPASS");
    assert_eq!(f(2, "bytes"), fixture("meadow_640.jpg").len().to_string());
    // Refused and unrouted requests are events too.
    assert_eq!(
        (f(3, "status"), f(3, "route")),
        ("400".into(), "/img".into())
    );
    assert_eq!(f(3, "bytes"), bad.body.len().to_string());
    assert_eq!(
        (f(4, "status"), f(4, "route")),
        ("404".into(), "none".into())
    );
    assert_eq!((f(5, "org"), f(5, "status")), ("-".into(), "200".into()));
    assert_eq!(published(&edge), 6.0);
    assert_eq!(dropped(&edge), 0.0);
}

/// Runs `imgedge usage ... --json` and returns its report.
fn usage_cli(args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin())
        .arg("usage")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "imgedge usage {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

#[test]
fn usage_command_totals_match_the_requests_and_resume() {
    let redis = Redis::start();
    let o = origin();
    let edge = edge(&o, &redis, "tot", "");
    let bytes = std::cell::Cell::new(0u64);
    let req = |path: &str, key: Option<&str>| {
        let r = match key {
            Some(k) => get_with(&edge.url(path), &[("X-Api-Key", k)]),
            None => get(&edge.url(path)),
        };
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        bytes.set(bytes.get() + r.body.len() as u64);
        r.cache().to_string()
    };
    // acme: one transform (MISS) then two hits; other: two uncached; anonymous: MISS then HIT.
    assert_eq!(req("/img/a.jpg?width=120", Some("k-acme")), "MISS");
    assert_eq!(req("/img/a.jpg?width=120", Some("k-acme")), "HIT");
    assert_eq!(req("/img/a.jpg?width=120", Some("k-acme")), "HIT");
    assert_eq!(req("/raw/a.jpg", Some("k-other")), "BYPASS");
    assert_eq!(req("/raw/a.jpg", Some("k-other")), "BYPASS");
    assert_eq!(req("/img/b.jpg", None), "MISS");
    assert_eq!(req("/img/b.jpg", None), "HIT");
    eventually(10, "7 events published", || {
        (published(&edge) == 7.0).then_some(())
    });

    let url = redis.url();
    let base = [
        "--redis-url",
        url.as_str(),
        "--stream",
        "tot",
        "--since",
        "1h",
    ];
    let run = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        usage_cli(&a)
    };
    let r = run(&["--by", "org", "--consumer", "c1"]);
    let t = &r["total"];
    assert_eq!(t["requests"], 7, "{r}");
    assert_eq!(t["bytes"], bytes.get(), "{r}");
    assert_eq!(t["transforms"], 1, "{r}");
    assert_eq!(
        (t["hits"].as_u64(), t["misses"].as_u64()),
        (Some(3), Some(2))
    );
    assert!((t["hit_ratio"].as_f64().unwrap() - 0.6).abs() < 1e-9, "{r}");
    let g = &r["groups"];
    assert_eq!(g["acme"]["requests"], 3);
    assert_eq!(g["acme"]["hit_ratio"].as_f64(), Some(2.0 / 3.0));
    assert_eq!(g["other"]["requests"], 2);
    assert!(g["other"]["hit_ratio"].is_null(), "uncached: no ratio");
    assert_eq!(g["-"]["requests"], 2);
    assert_eq!(r["group"], "imgedge-usage");

    // Acknowledged: the group hands nothing out again, to this reader or another.
    let again = run(&["--consumer", "c1"]);
    assert_eq!(again["total"]["requests"], 0, "{again}");
    assert_eq!(run(&["--consumer", "c2"])["total"]["requests"], 0);

    // New requests go to whichever reader asks next, grouped by route here.
    req("/raw/a.jpg", None);
    req("/img/a.jpg", None);
    eventually(10, "9 events published", || {
        (published(&edge) == 9.0).then_some(())
    });
    let r = run(&["--by", "route", "--consumer", "c2"]);
    assert_eq!(r["total"]["requests"], 2, "{r}");
    assert_eq!(r["groups"]["/raw"]["requests"], 1);
    assert_eq!(r["groups"]["/img"]["requests"], 1);

    // A reader that died after reading (no XACK) gets its entries again on its next run.
    req("/raw/a.jpg", Some("k-acme"));
    eventually(10, "10 events published", || {
        (published(&edge) == 10.0).then_some(())
    });
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("imgedge-usage")
        .arg("dead")
        .arg("STREAMS")
        .arg("tot")
        .arg(">")
        .query(&mut conn(&redis))
        .unwrap();
    assert_eq!(run(&["--consumer", "c1"])["total"]["requests"], 0);
    let r = run(&["--consumer", "dead", "--by", "org"]);
    assert_eq!(r["total"]["requests"], 1, "{r}");
    assert_eq!(r["groups"]["acme"]["requests"], 1);

    // Entries older than --since are skipped (and acknowledged).
    let old = (imgedge::usage::now_ms() - 7_200_000).to_string();
    let _: String = redis::cmd("XADD")
        .arg("tot")
        .arg("*")
        .arg("ts")
        .arg(&old)
        .arg("org")
        .arg("acme")
        .arg("bytes")
        .arg("100")
        .query(&mut conn(&redis))
        .unwrap();
    let r = run(&["--consumer", "c1"]);
    assert_eq!(
        (r["total"]["requests"].as_u64(), r["skipped"].as_u64()),
        (Some(0), Some(1))
    );

    // A fresh group starts at the --since time: everything above is within the last hour.
    let fresh = run(&["--group", "billing", "--consumer", "b1"]);
    assert_eq!(fresh["total"]["requests"], 10, "{fresh}");
    assert_eq!(fresh["skipped"], 1);

    // The text table, with the stream named by the config file.
    let conf = edge.dir.path().join("imgedge.yaml");
    let out = Command::new(bin())
        .args(["usage", "-c"])
        .arg(&conf)
        .args(["--group", "report", "--by", "org"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("stream tot"), "{text}");
    let total = text.lines().find(|l| l.starts_with("total")).unwrap();
    let cols: Vec<&str> = total.split_whitespace().collect();
    assert_eq!(cols[1], "10", "{text}");

    // No stream named anywhere: a clear error.
    let out = Command::new(bin()).arg("usage").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--redis-url"));
}

#[test]
fn redis_down_then_back_loses_no_request_and_only_counted_events() {
    let mut redis = Redis::start();
    let o = origin();
    let edge = edge(
        &o,
        &redis,
        "down",
        "  buffer_size: 5\n  batch_size: 2\n  timeout: 500ms\n",
    );
    let url = edge.url("/raw/a.jpg");
    for _ in 0..3 {
        assert_eq!(get(&url).status, 200);
    }
    eventually(10, "3 events published", || {
        (published(&edge) == 3.0).then_some(())
    });
    assert_eq!(xlen(&redis, "down"), 3);

    redis.stop();
    let mut made = 3;
    for i in 0..30 {
        let started = std::time::Instant::now();
        let r = get(&url);
        assert_eq!(r.status, 200, "request {i} with Redis down");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "request {i} waited on Redis: {:?}",
            started.elapsed()
        );
        made += 1;
    }
    // At most the buffer (5) plus the batch being retried (2) can wait for Redis.
    let d = eventually(10, "events dropped while Redis is down", || {
        let d = dropped(&edge);
        (d >= (30 - 5 - 2) as f64).then_some(d)
    });
    assert_eq!(published(&edge), 3.0);

    redis.restart();
    // The buffered events are written; nothing else is lost.
    eventually(20, "published + dropped == requests made", || {
        (published(&edge) + dropped(&edge) == made as f64).then_some(())
    });
    assert_eq!(dropped(&edge), d, "no more drops once Redis is back");
    // The restarted Redis (no persistence) holds exactly what was written since.
    let after = published(&edge) - 3.0;
    assert!(after >= 1.0, "the buffered events were written");
    assert_eq!(xlen(&redis, "down") as f64, after);

    // And new requests flow again.
    assert_eq!(get(&url).status, 200);
    made += 1;
    eventually(10, "the new event published", || {
        (published(&edge) + dropped(&edge) == made as f64
            && xlen(&redis, "down") as f64 == published(&edge) - 3.0)
            .then_some(())
    });
    assert!(edge.log().contains("usage: cannot write"), "{}", edge.log());
    assert!(edge.log().contains("reachable again"), "{}", edge.log());
}
