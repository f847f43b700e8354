//! The disk cache tier and purge, end to end: the real binary on loopback, a real origin, the
//! cache directory kept across restarts (and kill -9). Full-disk and read-only cases mount a
//! small tmpfs, which needs root (CAP_SYS_ADMIN); without it those two tests say so and skip.

mod common;
use common::*;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

const TOKEN: &str = "test-token-0123456789";

fn config(origin: &Origin, dir: &Path, extra: &str) -> String {
    format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\ncache:\n  disk: {{path: \"{}\", bytes: 256MiB}}\n{extra}",
        origin.peer(),
        dir.display()
    )
}

/// A request with any method and body; returns status and body (Connection: close).
fn raw(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (status, text) = exchange(s, &request_text(method, target, headers, body));
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

fn purge(edge: &Edge, json: &str) -> u64 {
    let (status, body) = raw(
        edge.admin_port,
        "POST",
        "/purge",
        &[("Content-Type", "application/json")],
        json,
    );
    assert_eq!(status, 200, "{json}: {body}");
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    v["purged"].as_u64().unwrap()
}

fn wait_disk_items(edge: &Edge, n: usize) {
    eventually(20, &format!("{n} entries on disk"), || {
        (edge.metric("imgedge_cache_disk_items") as usize >= n).then_some(())
    });
}

fn wait_index(edge: &Edge) {
    eventually(20, "the disk index scan", || {
        (edge.metric("imgedge_cache_disk_index_ready") == 1.0).then_some(())
    });
}

/// Every file under `dir` (recursively).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Deterministic, incompressible bytes.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn restart_keeps_hits_including_transformed_entries() {
    let origin = Origin::start();
    origin.route(
        "/photo.jpg",
        Reply::ok("image/jpeg", fixture("meadow_640.jpg")),
    );
    origin.route("/note.txt", Reply::ok("text/plain", "plain text"));
    let dir = tempfile::tempdir().unwrap();
    // The original first: with `source_cache`, a variant stores its original too.
    let urls = ["/photo.jpg", "/photo.jpg?width=100", "/note.txt"];
    let mut bodies = Vec::new();
    {
        let edge = Edge::start(&config(&origin, dir.path(), ""));
        for u in urls {
            let r = get(&edge.url(u));
            assert_eq!(r.status, 200, "{u}: {}", r.text());
            assert_eq!(r.cache(), "MISS", "{u}");
            bodies.push(r.body);
        }
        wait_disk_items(&edge, urls.len());
        assert_eq!(edge.metric("imgedge_cache_disk_up"), 1.0);
        // Dropping the edge kills it (SIGKILL): no graceful shutdown helps.
    }
    let origin_hits = origin.total_hits();
    let edge = Edge::start(&config(&origin, dir.path(), ""));
    for (u, want) in urls.iter().zip(&bodies) {
        let r = get(&edge.url(u));
        assert_eq!(r.status, 200, "{u}");
        assert_eq!(r.cache(), "HIT", "{u} after restart");
        assert_eq!(&r.body, want, "{u}: same bytes after restart");
        assert_eq!(
            r.header("content-length"),
            Some(want.len().to_string().as_str()),
            "{u}"
        );
    }
    assert_eq!(
        origin.total_hits(),
        origin_hits,
        "the origin saw no request"
    );
    assert!(edge.metric("imgedge_cache_disk_lookups_total{result=\"hit\"}") >= 3.0);
    // Served from memory once promoted.
    assert_eq!(get(&edge.url(urls[0])).cache(), "HIT");
    wait_index(&edge);
    assert_eq!(edge.metric("imgedge_cache_disk_items"), 3.0);
}

#[test]
fn kill_9_during_large_writes_leaves_no_corrupt_hit() {
    let origin = Origin::start();
    let n = 12;
    let size = 6 << 20;
    let bodies: Vec<Vec<u8>> = (0..n).map(|i| noise(i as u64 + 1, size)).collect();
    for (i, b) in bodies.iter().enumerate() {
        origin.route(
            &format!("/big{i}.bin"),
            Reply::ok("application/octet-stream", b.clone()),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let extra = "  memory_bytes: 512MiB\n  max_object_bytes: 16MiB\n";
    let conf = config(&origin, dir.path(), "").replace("cache:\n", &format!("cache:\n{extra}"));
    let edge = Edge::start(&conf);
    let port = edge.port;
    let clients: Vec<_> = (0..n)
        .map(|i| {
            std::thread::spawn(move || {
                let _ = try_get_with(&format!("http://127.0.0.1:{port}/big{i}.bin"), &[]);
            })
        })
        .collect();
    // Kill as soon as a write is in progress (a temp file exists), without sleeping.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut saw_tmp = false;
    while std::time::Instant::now() < deadline {
        if files(dir.path())
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".tmp"))
        {
            saw_tmp = true;
            break;
        }
    }
    drop(edge); // SIGKILL
    for c in clients {
        let _ = c.join();
    }
    assert!(saw_tmp, "no write was seen in progress");
    eprintln!(
        "after kill -9: {} files, {} temp",
        files(dir.path()).len(),
        files(dir.path())
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(".tmp"))
            .count()
    );

    let edge = Edge::start(&conf);
    wait_index(&edge);
    let leftovers: Vec<_> = files(dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "stale temp files: {leftovers:?}");
    let mut hits = 0;
    for (i, want) in bodies.iter().enumerate() {
        let r = get(&edge.url(&format!("/big{i}.bin")));
        assert_eq!(r.status, 200);
        assert!(
            &r.body == want,
            "/big{i}.bin ({}): {} bytes differ from the origin's",
            r.cache(),
            r.body.len()
        );
        if r.cache() == "HIT" {
            hits += 1;
        }
    }
    eprintln!("after restart: {hits} of {n} entries were disk hits, the rest misses");
    assert_eq!(edge.metric("imgedge_cache_disk_corrupt_entries_total"), 0.0);
}

#[test]
fn corrupt_and_truncated_entries_are_dropped_and_counted() {
    let origin = Origin::start();
    origin.route(
        "/a.bin",
        Reply::ok("application/octet-stream", noise(1, 50_000)),
    );
    origin.route(
        "/b.bin",
        Reply::ok("application/octet-stream", noise(2, 50_000)),
    );
    let dir = tempfile::tempdir().unwrap();
    {
        let edge = Edge::start(&config(&origin, dir.path(), ""));
        get(&edge.url("/a.bin"));
        get(&edge.url("/b.bin"));
        wait_disk_items(&edge, 2);
    }
    let mut entries = files(dir.path());
    entries.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    assert_eq!(entries.len(), 2);
    // One: a flipped byte in the body (found when read); the other: cut short (found by the
    // start-up scan).
    let mut data = std::fs::read(&entries[0]).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0x55;
    std::fs::write(&entries[0], data).unwrap();
    let data = std::fs::read(&entries[1]).unwrap();
    std::fs::write(&entries[1], &data[..data.len() - 1000]).unwrap();

    let before = origin.total_hits();
    let edge = Edge::start(&config(&origin, dir.path(), ""));
    for (p, seed) in [("/a.bin", 1), ("/b.bin", 2)] {
        let r = get(&edge.url(p));
        assert_eq!(r.status, 200);
        assert_eq!(r.cache(), "MISS", "{p}: a damaged entry is not a hit");
        assert_eq!(r.body, noise(seed, 50_000));
    }
    assert_eq!(origin.total_hits(), before + 2);
    wait_index(&edge);
    assert_eq!(edge.metric("imgedge_cache_disk_corrupt_entries_total"), 2.0);
    assert!(
        edge.log().contains("dropping corrupt entry"),
        "{}",
        edge.log()
    );
    // Rewritten from the origin: hits again, from disk after another restart.
    wait_disk_items(&edge, 2);
    drop(edge);
    let edge = Edge::start(&config(&origin, dir.path(), ""));
    assert_eq!(get(&edge.url("/a.bin")).cache(), "HIT");
    assert_eq!(get(&edge.url("/b.bin")).cache(), "HIT");
}

/// A tmpfs mounted for the test (root only), unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(opts: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: cannot mount a tmpfs (needs root / CAP_SYS_ADMIN)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, opts: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn full_disk_degrades_to_memory() {
    let Some(fs) = Tmpfs::mount("size=1m") else {
        return;
    };
    let origin = Origin::start();
    for i in 0..6 {
        origin.route(
            &format!("/f{i}.bin"),
            Reply::ok("application/octet-stream", noise(i, 300_000)),
        );
    }
    // The budget (256MiB) is far above what the file system holds: writes hit ENOSPC.
    let edge = Edge::start(&config(&origin, fs.path(), ""));
    for i in 0..6 {
        let r = get(&edge.url(&format!("/f{i}.bin")));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, noise(i, 300_000));
    }
    eventually(20, "a failed disk write", || {
        (edge.metric("imgedge_cache_disk_errors_total{op=\"write\"}") >= 1.0).then_some(())
    });
    assert_eq!(edge.metric("imgedge_cache_disk_up"), 0.0);
    assert!(
        edge.log().contains("serving from memory only"),
        "{}",
        edge.log()
    );
    // Still served, from memory.
    for i in 0..6 {
        let r = get(&edge.url(&format!("/f{i}.bin")));
        assert_eq!(r.status, 200);
        assert_eq!(r.cache(), "HIT");
        assert_eq!(r.body, noise(i, 300_000));
    }
    assert!(
        edge.metric("imgedge_cache_disk_writes_total{result=\"skipped\"}") >= 1.0
            || edge.metric("imgedge_cache_disk_errors_total{op=\"write\"}") >= 2.0
    );
    // No temp file is left behind by the failed writes.
    assert!(files(fs.path())
        .iter()
        .all(|p| !p.to_string_lossy().ends_with(".tmp")));
}

#[test]
fn read_only_directory_degrades_to_memory() {
    let Some(fs) = Tmpfs::mount("size=4m") else {
        return;
    };
    let origin = Origin::start();
    origin.route("/a.txt", Reply::ok("text/plain", "aaa"));
    origin.route("/b.txt", Reply::ok("text/plain", "bbb"));
    origin.route("/c.txt", Reply::ok("text/plain", "ccc"));

    // Read-only from the start: the directory cannot even be created.
    fs.remount("ro");
    let sub = fs.path().join("cache");
    let edge = Edge::start(&config(&origin, &sub, ""));
    wait_index(&edge);
    for _ in 0..2 {
        let r = get(&edge.url("/a.txt"));
        assert_eq!((r.status, r.text().as_str()), (200, "aaa"));
    }
    assert_eq!(get(&edge.url("/a.txt")).cache(), "HIT");
    assert_eq!(edge.metric("imgedge_cache_disk_up"), 0.0);
    assert_eq!(
        edge.metric("imgedge_cache_disk_errors_total{op=\"open\"}"),
        1.0
    );
    assert!(edge.log().contains("serving from memory only"));
    drop(edge);

    // Turned read-only while running: the next write fails, requests go on, reads still work.
    fs.remount("rw");
    let edge = Edge::start(&config(&origin, &sub, ""));
    get(&edge.url("/b.txt"));
    wait_disk_items(&edge, 1);
    fs.remount("ro");
    let r = get(&edge.url("/c.txt"));
    assert_eq!((r.status, r.text().as_str()), (200, "ccc"));
    eventually(20, "a failed disk write", || {
        (edge.metric("imgedge_cache_disk_errors_total{op=\"write\"}") >= 1.0).then_some(())
    });
    assert_eq!(edge.metric("imgedge_cache_disk_up"), 0.0);
    assert_eq!(get(&edge.url("/c.txt")).cache(), "HIT");
    drop(edge);
    // The entry written before is still read from the read-only directory after a restart.
    let before = origin.total_hits();
    let edge = Edge::start(&config(&origin, &sub, ""));
    let r = get(&edge.url("/b.txt"));
    assert_eq!((r.cache(), r.text().as_str()), ("HIT", "bbb"));
    assert_eq!(origin.total_hits(), before);
    fs.remount("rw");
}

/// Origin paths and the variants requested of each.
const VARIANTS: [(&str, &[&str]); 3] = [
    ("/a/x.jpg", &["", "?width=100", "?width=50&format=png"]),
    ("/a/y.jpg", &["", "?width=80"]),
    ("/b/z.jpg", &["", "?width=60"]),
];

fn purge_origin() -> Origin {
    let origin = Origin::start();
    let jpeg = fixture("meadow_640.jpg");
    origin.route(
        "/a/x.jpg",
        Reply::ok("image/jpeg", jpeg.clone()).header("Cache-Tag", "prod, red"),
    );
    origin.route("/a/y.jpg", Reply::ok("image/jpeg", jpeg.clone()));
    origin.route(
        "/b/z.jpg",
        Reply::ok("image/jpeg", jpeg).header("Surrogate-Key", "blue red"),
    );
    origin
}

fn fill(edge: &Edge) {
    for (path, vs) in VARIANTS {
        for v in vs {
            let r = get(&edge.url(&format!("{path}{v}")));
            assert_eq!(r.status, 200, "{path}{v}: {}", r.text());
        }
    }
}

/// The cache status of every variant of `path`.
fn statuses(edge: &Edge, path: &str) -> Vec<String> {
    let vs = VARIANTS.iter().find(|(p, _)| *p == path).unwrap().1;
    vs.iter()
        .map(|v| get(&edge.url(&format!("{path}{v}"))).cache().to_string())
        .collect()
}

fn all(s: &[String], want: &str) -> bool {
    s.iter().all(|x| x == want)
}

#[test]
fn purge_by_url_prefix_and_tag_from_both_tiers() {
    let origin = purge_origin();
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(&config(&origin, dir.path(), ""));
    fill(&edge);
    wait_disk_items(&edge, 7);

    // URL: every variant of /a/x.jpg, nothing else.
    assert_eq!(purge(&edge, r#"{"url": "http://127.0.0.1/a/x.jpg"}"#), 3);
    assert_eq!(edge.metric("imgedge_cache_disk_items"), 4.0);
    let hits = origin.hits("/a/x.jpg");
    assert!(all(&statuses(&edge, "/a/x.jpg"), "MISS"));
    // The original is refetched once; its variants are made from it (the source cache).
    assert_eq!(origin.hits("/a/x.jpg"), hits + 1, "the original refetched");
    assert!(all(&statuses(&edge, "/a/y.jpg"), "HIT"));
    assert!(all(&statuses(&edge, "/b/z.jpg"), "HIT"));
    wait_disk_items(&edge, 7);

    // Tag: /a/x.jpg (Cache-Tag: prod, red) and /b/z.jpg (Surrogate-Key: blue red).
    assert_eq!(purge(&edge, r#"{"tag": "red"}"#), 5);
    assert_eq!(purge(&edge, r#"{"tag": "red"}"#), 0);
    // Prefix (any host): /a/y.jpg is what remains under /a/.
    assert_eq!(purge(&edge, r#"{"prefix": "/a/"}"#), 2);
    assert_eq!(edge.metric("imgedge_cache_disk_items"), 0.0);
    assert_eq!(edge.metric("imgedge_cache_items"), 0.0);
    assert_eq!(edge.metric("imgedge_cache_purges_total{by=\"tag\"}"), 2.0);
    assert_eq!(
        edge.metric("imgedge_cache_purged_entries_total{by=\"prefix\"}"),
        2.0
    );

    // Bad requests are explained.
    let (status, body) = raw(
        edge.admin_port,
        "POST",
        "/purge",
        &[("Content-Type", "application/json")],
        r#"{"prefix": "a"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("must start with '/'"), "{body}");
    let (status, _) = raw(edge.admin_port, "GET", "/purge", &[], "");
    assert_eq!(status, 405);
    // PURGE on the proxy listener without admin.token: not enabled.
    let (status, body) = raw(edge.port, "PURGE", "/a/x.jpg", &[], "");
    assert_eq!(status, 405, "{body}");

    // After a restart the purged entries are gone from disk too.
    fill(&edge);
    wait_disk_items(&edge, 7);
    assert_eq!(
        purge(&edge, r#"{"path": "/b/z.jpg", "host": "127.0.0.1"}"#),
        2
    );
    drop(edge);
    let before = origin.hits("/b/z.jpg");
    let edge = Edge::start(&config(&origin, dir.path(), ""));
    assert!(all(&statuses(&edge, "/a/x.jpg"), "HIT"));
    assert!(all(&statuses(&edge, "/b/z.jpg"), "MISS"));
    // The original once; its variant is made from it.
    assert_eq!(origin.hits("/b/z.jpg"), before + 1);
}

#[test]
fn purge_on_the_proxy_listener_needs_the_admin_token() {
    let origin = purge_origin();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let cache_dir = dir.path().join("cache");
    // The harness writes `admin: {listen: ...}` itself; add the token file to that mapping.
    let edge = Edge::start_with_admin(
        &config(&origin, &cache_dir, ""),
        &format!("token_file: \"{}\"", token_file.display()),
    );
    fill(&edge);
    wait_disk_items(&edge, 7);

    let (status, _) = raw(edge.port, "PURGE", "/a/x.jpg", &[], "");
    assert_eq!(status, 403);
    let wrong = [("Authorization", "Bearer test-token-0123456780")];
    assert_eq!(raw(edge.port, "PURGE", "/a/x.jpg", &wrong, "").0, 403);
    assert!(all(&statuses(&edge, "/a/x.jpg"), "HIT"), "nothing purged");

    let auth = format!("Bearer {TOKEN}");
    let h = [("Authorization", auth.as_str())];
    let (status, body) = raw(edge.port, "PURGE", "/a/x.jpg", &h, "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"purged\":3"), "{body}");
    assert!(all(&statuses(&edge, "/a/x.jpg"), "MISS"));
    wait_disk_items(&edge, 7);

    // A trailing '*' purges a prefix; X-Purge-Tag a tag.
    let (_, body) = raw(edge.port, "PURGE", "/a/*", &h, "");
    assert!(body.contains("\"purged\":5"), "{body}");
    let tag = [("Authorization", auth.as_str()), ("X-Purge-Tag", "blue")];
    let (_, body) = raw(edge.port, "PURGE", "/", &tag, "");
    assert!(body.contains("\"purged\":2"), "{body}");
    assert!(all(&statuses(&edge, "/b/z.jpg"), "MISS"));
}
