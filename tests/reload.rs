//! Graceful reload under load, done exactly as `systemd/imgedge.service` does it:
//!
//! ```text
//! ExecStartPre = imgedge -t -c F
//! ExecStart    = imgedge -d -c F          (returns once the daemon is ready; pid in pid_file)
//! ExecReload   = imgedge -t -c F          (a bad file stops the reload here)
//!                imgedge -u -d -c F       (returns once the new daemon waits for the sockets)
//!                kill -QUIT $MAINPID      (the old one hands them over and drains)
//! ```
//!
//! Client threads send requests (cache hits and misses) without pause over keep-alive
//! connections, with no retry: any connection error or non-200 is a failure.

mod common;

use common::{bin, eventually, free_port, Origin, Reply};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 8;
const HITS: usize = 20;
const MISSES: usize = 40_000;

struct Daemon {
    dir: tempfile::TempDir,
    conf: PathBuf,
    port: u16,
    /// Every pid the pid file has named, stopped on drop.
    seen: Mutex<Vec<i32>>,
}

impl Daemon {
    fn config(&self, origin: &Origin, admin: u16) -> String {
        format!(
            "server:\n  threads: 2\n  pid_file: {d}/imgedge.pid\n  upgrade_sock: {d}/upgrade.sock\n  error_log: {d}/error.log\n  grace_period_seconds: 1\n  graceful_shutdown_timeout_seconds: 5\nlisten: [\"127.0.0.1:{port}\"]\nadmin: {{listen: \"127.0.0.1:{admin}\"}}\nupstreams:\n  origin: {{peers: [\"{peer}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\ncache: {{memory_bytes: 64MiB}}\nlog: {{access: false}}\n",
            d = self.dir.path().display(),
            port = self.port,
            peer = origin.peer(),
        )
    }

    fn new() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("imgedge.yaml");
        Daemon {
            dir,
            conf,
            port: free_port(),
            seen: Mutex::new(Vec::new()),
        }
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("imgedge.pid")
    }

    fn pid(&self) -> Option<i32> {
        let pid = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let mut seen = self.seen.lock().unwrap();
        if !seen.contains(&pid) {
            seen.push(pid);
        }
        Some(pid)
    }

    fn log(&self) -> String {
        let mut s = std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
        s += &std::fs::read_to_string(self.dir.path().join("cli.log")).unwrap_or_default();
        s
    }

    /// Runs `imgedge ARGS -c F` to completion (as systemd runs an Exec line).
    fn run(&self, args: &[&str]) -> (bool, String) {
        let out_path = self.dir.path().join("cli.out");
        let out = std::fs::File::create(&out_path).unwrap();
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("cli.log"))
            .unwrap();
        let status = Command::new(bin())
            .args(args)
            .arg("-c")
            .arg(&self.conf)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .unwrap();
        let text = std::fs::read_to_string(out_path).unwrap_or_default();
        (status.success(), text)
    }

    fn start(&self) -> i32 {
        let (ok, out) = self.run(&["-t"]);
        assert!(ok, "-t failed: {out}\n{}", self.log());
        let (ok, _) = self.run(&["-d"]);
        assert!(ok, "imgedge -d failed:\n{}", self.log());
        let pid = self
            .pid()
            .expect("pid file written before imgedge -d returns");
        eventually(20, "the proxy listener", || {
            TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
        pid
    }

    /// `systemctl reload`: stops at the first failing step, like systemd. Returns whether every
    /// step succeeded.
    fn reload(&self, main_pid: i32) -> bool {
        let (ok, out) = self.run(&["-t"]);
        if !ok {
            eprintln!("reload stopped at -t: {out}");
            return false;
        }
        let (ok, _) = self.run(&["-u", "-d"]);
        if !ok {
            return false;
        }
        Command::new("kill")
            .args(["-QUIT", &main_pid.to_string()])
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Fast stop of whatever is still running (SIGINT: no grace period).
        let _ = self.pid();
        for pid in self.seen.lock().unwrap().iter().filter(|p| alive(**p)) {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
        }
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

/// A keep-alive HTTP/1.1 client without retries: a request fails on any I/O error, an early
/// close or a non-200. A `Connection: close` answer is honoured (the next request reconnects).
struct Client {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    fn get(&mut self, path: &str) -> Result<Vec<u8>, String> {
        if self.conn.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port))
                .map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(20))).ok();
            self.conn = Some(BufReader::new(s));
        }
        let r = self.exchange(path);
        if !matches!(r, Ok((_, true))) {
            self.conn = None;
        }
        r.map(|(body, _)| body)
    }

    /// Body and whether the connection may be reused.
    fn exchange(&mut self, path: &str) -> Result<(Vec<u8>, bool), String> {
        let conn = self.conn.as_mut().ok_or("no connection")?;
        conn.get_mut()
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let mut line = String::new();
        let n = conn
            .read_line(&mut line)
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before a response".into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let (mut len, mut chunked, mut close) = (None, false, false);
        loop {
            let mut h = String::new();
            if conn
                .read_line(&mut h)
                .map_err(|e| format!("read header: {e}"))?
                == 0
            {
                return Err("closed in the header".into());
            }
            let h = h.trim_end().to_ascii_lowercase();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("content-length:") {
                len = v.trim().parse::<usize>().ok();
            } else if h.starts_with("transfer-encoding:") && h.contains("chunked") {
                chunked = true;
            } else if h.starts_with("connection:") && h.contains("close") {
                close = true;
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                conn.read_line(&mut size)
                    .map_err(|e| format!("read chunk: {e}"))?;
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| format!("bad chunk size {size:?}"))?;
                let mut chunk = vec![0; n + 2];
                conn.read_exact(&mut chunk)
                    .map_err(|e| format!("read chunk body: {e}"))?;
                body.extend_from_slice(&chunk[..n]);
                if n == 0 {
                    break;
                }
            }
        } else if let Some(n) = len {
            body.resize(n, 0);
            conn.read_exact(&mut body)
                .map_err(|e| format!("read body: {e}"))?;
        } else {
            conn.read_to_end(&mut body)
                .map_err(|e| format!("read body: {e}"))?;
            close = true;
        }
        if status != 200 {
            return Err(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok((body, !close))
    }
}

struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// `CLIENTS` threads: two requests in three are hits, one a miss on a new path.
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let next_miss = Arc::new(AtomicUsize::new(0));
        let threads = (0..CLIENTS)
            .map(|t| {
                let (stop, done, failures, next_miss) = (
                    stop.clone(),
                    done.clone(),
                    failures.clone(),
                    next_miss.clone(),
                );
                std::thread::spawn(move || {
                    let mut c = Client { port, conn: None };
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let path = if i % 3 == 0 {
                            let k = next_miss.fetch_add(1, Ordering::Relaxed) % MISSES;
                            format!("/m/{k}.png")
                        } else {
                            format!("/h/{}.png", i % HITS)
                        };
                        match c.get(&path) {
                            Ok(body) if body == path.as_bytes() => {}
                            Ok(body) => failures.lock().unwrap().push(format!(
                                "{path}: wrong body {:?}",
                                String::from_utf8_lossy(&body)
                            )),
                            Err(e) => failures.lock().unwrap().push(format!("{path}: {e}")),
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Load {
            stop,
            done,
            failures,
            threads,
        }
    }

    fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests have completed.
    fn wait_more(&self, n: usize, what: &str) {
        let target = self.done() + n;
        eventually(30, what, || (self.done() >= target).then_some(()));
    }

    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let f = self.failures.lock().unwrap().clone();
        (self.done.load(Ordering::Relaxed), f)
    }
}

fn origin() -> Origin {
    let o = Origin::start();
    for k in 0..HITS {
        let p = format!("/h/{k}.png");
        o.route(
            &p,
            Reply::ok("image/png", p.clone()).header("Cache-Control", "max-age=600"),
        );
    }
    for k in 0..MISSES {
        let p = format!("/m/{k}.png");
        // no-store: every request for it goes to the origin.
        o.route(
            &p,
            Reply::ok("image/png", p.clone()).header("Cache-Control", "no-store"),
        );
    }
    o
}

#[test]
fn reload_under_load_loses_nothing() {
    let origin = origin();
    let d = Daemon::new();
    std::fs::write(&d.conf, d.config(&origin, free_port())).unwrap();
    let mut pid = d.start();
    let load = Load::start(d.port);
    load.wait_more(500, "requests before the first reload");
    let started = Instant::now();
    for round in 1..=2 {
        let old = pid;
        assert!(d.reload(old), "reload {round} failed:\n{}", d.log());
        // systemd reads the pid file when the reload commands have finished: it must already
        // name the new process.
        let new = d.pid().expect("pid file after reload");
        assert_ne!(
            new, old,
            "reload {round}: pid file still names the old process"
        );
        assert!(alive(new), "reload {round}: new process {new} not running");
        eventually(30, "the old process to exit", || {
            (!alive(old)).then_some(())
        });
        // Only the new process is left: these are served by it.
        load.wait_more(300, "requests served by the new process");
        assert!(alive(new));
        pid = new;
    }
    let (total, failures) = load.finish();
    eprintln!(
        "{total} requests, 2 reloads in {:.1}s, {} failures",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed, e.g. {:?}\nlog:\n{}",
        failures.len(),
        &failures[..failures.len().min(10)],
        d.log()
    );
    assert!(origin.total_hits() > HITS, "misses reached the origin");
    assert!(d.log().contains("draining"), "{}", d.log());
}

#[test]
fn bad_config_leaves_the_old_process_serving() {
    let origin = origin();
    let d = Daemon::new();
    let admin = free_port();
    let good = d.config(&origin, admin);
    std::fs::write(&d.conf, &good).unwrap();
    let pid = d.start();
    let load = Load::start(d.port);
    load.wait_more(200, "requests before the reload");
    // Two mistakes in the new file: -t fails, naming both, and the reload stops there.
    std::fs::write(
        &d.conf,
        good.replace(
            "cache: {memory_bytes: 64MiB}",
            "cache: {memory_bytes: lots}",
        )
        .replace("log: {access: false}", "log: {access: false, level: loud}"),
    )
    .unwrap();
    assert!(!d.reload(pid), "the reload must fail");
    let log = d.log();
    assert!(log.contains("cache.memory_bytes"), "{log}");
    assert!(log.contains("log.level"), "every problem is named:\n{log}");
    load.wait_more(300, "requests after the failed reload");
    assert_eq!(d.pid(), Some(pid), "pid file unchanged");
    assert!(alive(pid), "old process still running");
    let (total, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    // The fixed file reloads fine afterwards.
    std::fs::write(&d.conf, &good).unwrap();
    assert!(d.reload(pid), "{}", d.log());
    let new = d.pid().unwrap();
    assert_ne!(new, pid);
    eventually(30, "the old process to exit", || {
        (!alive(pid)).then_some(())
    });
    let mut c = Client {
        port: d.port,
        conn: None,
    };
    assert_eq!(c.get("/h/1.png").unwrap(), b"/h/1.png");
}
