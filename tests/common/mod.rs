//! Test harness: a real origin HTTP server on 127.0.0.1:0, the real imgedge binary started on
//! ephemeral ports with a generated config, and a real HTTP client. No fixed sleeps: readiness
//! and expiry are polled with deadlines.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One canned origin response.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
    pub fn status(mut self, s: u16) -> Self {
        self.status = s;
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

#[derive(Default)]
struct OriginState {
    routes: HashMap<String, Reply>,
    hits: HashMap<String, usize>,
    not_modified: HashMap<String, usize>,
    requests: Vec<(String, Vec<(String, String)>)>,
    conns: Vec<TcpStream>,
}

/// A small HTTP/1.1 origin (keep-alive, GET/HEAD) that counts requests per path+query.
pub struct Origin {
    pub addr: SocketAddr,
    state: Arc<Mutex<OriginState>>,
    stopped: Arc<AtomicBool>,
}

/// A server's accept loop: until `stop` is set, keeps a clone of each connection in the state
/// (so the test can cut it) and serves it on its own thread.
fn accept_loop<S: Send + 'static>(
    listener: TcpListener,
    st: Arc<Mutex<S>>,
    stop: Arc<AtomicBool>,
    conns: fn(&mut S) -> &mut Vec<TcpStream>,
    serve: fn(TcpStream, Arc<Mutex<S>>, Arc<AtomicBool>),
) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            if let Ok(c) = conn.try_clone() {
                conns(&mut st.lock().unwrap()).push(c);
            }
            let (st, stop) = (st.clone(), stop.clone());
            std::thread::spawn(move || serve(conn, st, stop));
        }
    });
}

impl Origin {
    pub fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(OriginState::default()));
        let stopped = Arc::new(AtomicBool::new(false));
        accept_loop(
            listener,
            state.clone(),
            stopped.clone(),
            |s: &mut OriginState| &mut s.conns,
            serve_conn,
        );
        Origin {
            addr,
            state,
            stopped,
        }
    }

    pub fn route(&self, path_and_query: &str, reply: Reply) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path_and_query.to_string(), reply);
    }

    /// Requests seen for this path (with query, as sent).
    pub fn hits(&self, path_and_query: &str) -> usize {
        *self
            .state
            .lock()
            .unwrap()
            .hits
            .get(path_and_query)
            .unwrap_or(&0)
    }

    /// Requests for a path answered 304 (the client's `If-None-Match` matched).
    pub fn not_modified(&self, path_and_query: &str) -> usize {
        *self
            .state
            .lock()
            .unwrap()
            .not_modified
            .get(path_and_query)
            .unwrap_or(&0)
    }

    pub fn total_hits(&self) -> usize {
        self.state.lock().unwrap().hits.values().sum()
    }

    /// Headers of the last request for a path.
    pub fn last_request_headers(&self, path_and_query: &str) -> Option<Vec<(String, String)>> {
        let s = self.state.lock().unwrap();
        s.requests
            .iter()
            .rev()
            .find(|(p, _)| p == path_and_query)
            .map(|(_, h)| h.clone())
    }

    pub fn peer(&self) -> String {
        self.addr.to_string()
    }

    /// Stops accepting and closes every open connection.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        for c in self.state.lock().unwrap().conns.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_conn(conn: TcpStream, st: Arc<Mutex<OriginState>>, stop: Arc<AtomicBool>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || stop.load(Ordering::SeqCst) {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("/").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let reply = {
            let mut s = st.lock().unwrap();
            *s.hits.entry(target.clone()).or_default() += 1;
            s.requests.push((target.clone(), headers));
            s.routes.get(&target).cloned()
        };
        let reply =
            reply.unwrap_or_else(|| Reply::ok("text/plain", "origin: not found").status(404));
        let reply = conditional(reply, &st, &target);
        if !reply.delay.is_zero() {
            std::thread::sleep(reply.delay);
        }
        let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
        for (k, v) in &reply.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if reply.status == 304 {
            head.push_str("\r\n");
        } else {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
        }
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
        if method != "HEAD" && out.write_all(&reply.body).is_err() {
            return;
        }
    }
}

/// Like a real origin: a request whose `If-None-Match` names the reply's `ETag` gets a 304
/// (without a body or content headers). Counted in `not_modified(path)`.
fn conditional(reply: Reply, st: &Arc<Mutex<OriginState>>, target: &str) -> Reply {
    let mut s = st.lock().unwrap();
    let etag = reply
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("etag"))
        .map(|(_, v)| v.trim_start_matches("W/").to_string());
    let inm = s
        .requests
        .last()
        .and_then(|(_, h)| h.iter().find(|(k, _)| k == "if-none-match"))
        .map(|(_, v)| v.clone());
    match (etag, inm) {
        (Some(e), Some(inm))
            if inm
                .split(',')
                .any(|t| t.trim().trim_start_matches("W/") == e) =>
        {
            *s.not_modified.entry(target.to_string()).or_default() += 1;
            Reply {
                status: 304,
                headers: reply
                    .headers
                    .into_iter()
                    .filter(|(k, _)| !k.to_ascii_lowercase().starts_with("content-"))
                    .collect(),
                body: Vec::new(),
                delay: reply.delay,
            }
        }
        _ => reply,
    }
}

/// A free loopback port (bound then released, so imgedge can bind it).
/// Makes a self-signed certificate with `openssl` in `dir`: `key.pem` and `cert.pem`, subject
/// `/CN=cn`, `subjectAltName=san` (e.g. `"DNS:imgedge.test,IP:127.0.0.1"`), valid for a day.
#[allow(dead_code)]
pub fn self_signed_cert(dir: &Path, cn: &str, san: &str) {
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .arg("-subj")
        .arg(format!("/CN={cn}"))
        .arg("-addext")
        .arg(format!("subjectAltName={san}"))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "openssl could not make a certificate");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_imgedge")
}

/// A running imgedge process.
pub struct Edge {
    pub port: u16,
    pub admin_port: u16,
    child: Child,
    pub dir: tempfile::TempDir,
}

impl Edge {
    /// `body` is the config without `listen`, `admin` and `server` (added here).
    pub fn start(body: &str) -> Edge {
        Edge::start_with_admin(body, "")
    }

    /// Like [`Edge::start`]; `admin_extra` adds keys to the `admin` mapping (`k: v, ...`).
    pub fn start_with_admin(body: &str, admin_extra: &str) -> Edge {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let admin_port = free_port();
        let sep = if admin_extra.is_empty() { "" } else { ", " };
        let conf = format!(
            "server:\n  threads: 2\n  pid_file: {d}/imgedge.pid\n  upgrade_sock: {d}/upgrade.sock\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\nlisten: [\"127.0.0.1:{port}\"]\nadmin: {{listen: \"127.0.0.1:{admin_port}\"{sep}{admin_extra}}}\n{body}",
            d = dir.path().display()
        );
        let path = dir.path().join("imgedge.yaml");
        std::fs::write(&path, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("imgedge.log")).unwrap();
        let child = Command::new(bin())
            .arg("-c")
            .arg(&path)
            .env("RUST_LOG", "info")
            .env("RUNTIME_DIRECTORY", dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let edge = Edge {
            port,
            admin_port,
            child,
            dir,
        };
        edge.wait_ready();
        edge
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && TcpStream::connect(("127.0.0.1", self.admin_port)).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("imgedge did not start; log:\n{}", self.log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("imgedge.log")).unwrap_or_default()
    }

    /// Value of a metric line (exact name+labels prefix), summed over matching lines.
    pub fn metric(&self, prefix: &str) -> f64 {
        let text = get(&self.admin_url("/metrics")).text();
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn cache(&self) -> &str {
        self.header("x-cache-status").unwrap_or("-")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub fn get(url: &str) -> Resp {
    get_with(url, &[])
}

pub fn get_with(url: &str, headers: &[(&str, &str)]) -> Resp {
    try_get_with(url, headers).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Polls `f` until it returns Some, or panics after `secs`.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap()
}

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Reads a raw HTTP/1.1 response to a request written by hand (for odd paths clients normalize).
/// A `Connection: close` HTTP/1.1 request with any method, extra headers and body.
pub fn request_text(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}

/// Writes `request` as it is on `s`, reads until the server closes; returns the status (0 when
/// none) and the whole answer.
pub fn exchange(mut s: TcpStream, request: &str) -> (u16, String) {
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

pub fn raw_get(port: u16, target: &str) -> (u16, String) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    exchange(
        s,
        &format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
}

/// Like [`get_with`], but a transport error (e.g. an aborted body) is returned, not a panic.
pub fn try_get_with(url: &str, headers: &[(&str, &str)]) -> Result<Resp, String> {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// A real `redis-server` on an ephemeral loopback port (installed by .ci/setup).
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and waits until it answers PING.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (installed by .ci/setup)");
        self.child = Some(child);
        let port = self.port;
        eventually(10, "redis-server to answer PING", || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.write_all(b"PING\r\n").ok()?;
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf).ok()?;
            (&buf == b"+PONG\r\n").then_some(())
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real three-node Redis Cluster on loopback (no replicas).
pub struct RedisCluster {
    pub ports: Vec<u16>,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let mut ports = Vec::new();
        while ports.len() < 3 {
            // The cluster bus listens on port + 10000: both must be free.
            let p = free_port();
            if p <= 55535
                && !ports.contains(&p)
                && TcpListener::bind(("127.0.0.1", p + 10000)).is_ok()
            {
                ports.push(p);
            }
        }
        let mut children = Vec::new();
        for p in &ports {
            let child = Command::new("redis-server")
                .args(["--port", &p.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("nodes-{p}.conf"),
                ])
                .args([
                    "--cluster-node-timeout",
                    "5000",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server");
            children.push(child);
        }
        let cluster = RedisCluster {
            ports,
            children,
            _dir: dir,
        };
        for p in &cluster.ports {
            let p = *p;
            eventually(10, "a cluster node to answer", || {
                TcpStream::connect(("127.0.0.1", p)).ok()
            });
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let first = cluster.ports[0].to_string();
        eventually(20, "cluster_state:ok", || {
            let out = Command::new("redis-cli")
                .args(["-p", &first, "cluster", "info"])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("cluster_state:ok")
                .then_some(())
        });
        cluster
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How a [`FaultyOrigin`] answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// A correct response (keep-alive).
    None,
    /// Reads the request, never answers (the connection stays open until stopped).
    Hang,
    /// The full response, after this long without a byte (slow first byte).
    SlowFirstByte(Duration),
    /// Header and half the body, then a TCP reset.
    ResetMidBody,
    /// Header and half the body, then a clean close: fewer bytes than Content-Length.
    Short,
    /// The body plus surplus bytes after Content-Length.
    Long,
    /// Not HTTP at all.
    Garbage,
    /// Header, then one body byte per given interval (never finishing in time).
    Dribble(Duration),
}

struct FaultyState {
    fault: Fault,
    content_type: String,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    hits: usize,
    conns: Vec<TcpStream>,
}

/// A raw-TCP origin that misbehaves on demand (`set`); counts requests (`hits`).
pub struct FaultyOrigin {
    pub addr: SocketAddr,
    state: Arc<Mutex<FaultyState>>,
    stopped: Arc<AtomicBool>,
}

impl FaultyOrigin {
    /// Serves `body` as `content_type` to every path, misbehaving as `fault` says.
    pub fn start(content_type: &str, body: Vec<u8>, fault: Fault) -> FaultyOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(FaultyState {
            fault,
            content_type: content_type.to_string(),
            body,
            headers: Vec::new(),
            hits: 0,
            conns: Vec::new(),
        }));
        let stopped = Arc::new(AtomicBool::new(false));
        accept_loop(
            listener,
            state.clone(),
            stopped.clone(),
            |s: &mut FaultyState| &mut s.conns,
            serve_faulty,
        );
        FaultyOrigin {
            addr,
            state,
            stopped,
        }
    }

    pub fn peer(&self) -> String {
        self.addr.to_string()
    }

    pub fn set(&self, fault: Fault) {
        self.state.lock().unwrap().fault = fault;
    }

    /// Extra response header (e.g. Cache-Control).
    pub fn header(&self, k: &str, v: &str) {
        self.state
            .lock()
            .unwrap()
            .headers
            .push((k.to_string(), v.to_string()));
    }

    pub fn hits(&self) -> usize {
        self.state.lock().unwrap().hits
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        for c in self.state.lock().unwrap().conns.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FaultyOrigin {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Closes with a TCP RST instead of a FIN (SO_LINGER with a zero timeout).
fn reset(conn: TcpStream) {
    use std::os::unix::io::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(conn);
}

fn serve_faulty(conn: TcpStream, st: Arc<Mutex<FaultyState>>, stop: Arc<AtomicBool>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        // The request header (GET only: no body).
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || stop.load(Ordering::SeqCst) {
                return;
            }
            if line.trim_end().is_empty() {
                break;
            }
        }
        let (fault, head, body) = {
            let mut s = st.lock().unwrap();
            s.hits += 1;
            let mut head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
                s.content_type,
                s.body.len()
            );
            for (k, v) in &s.headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            (s.fault.clone(), head, s.body.clone())
        };
        let half = body.len() / 2;
        match fault {
            Fault::None => {}
            Fault::Hang => {
                // Wait until the edge gives up (closes) or the test stops us.
                let mut buf = [0u8; 1];
                let _ = reader.read(&mut buf);
                return;
            }
            Fault::SlowFirstByte(d) => std::thread::sleep(d),
            Fault::ResetMidBody => {
                let _ = out.write_all(head.as_bytes());
                let _ = out.write_all(&body[..half]);
                let _ = out.flush();
                reset(out);
                return;
            }
            Fault::Short => {
                let _ = out.write_all(head.as_bytes());
                let _ = out.write_all(&body[..half]);
                let _ = out.shutdown(Shutdown::Both);
                return;
            }
            Fault::Long => {
                let _ = out.write_all(head.as_bytes());
                let _ = out.write_all(&body);
                let _ = out.write_all(b"SURPLUS BYTES AFTER THE DECLARED LENGTH");
                let _ = out.shutdown(Shutdown::Write);
                return;
            }
            Fault::Garbage => {
                let _ = out.write_all(b"I am not an HTTP server\r\n\r\n\x00\x01\x02");
                let _ = out.shutdown(Shutdown::Both);
                return;
            }
            Fault::Dribble(every) => {
                if out.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for b in &body {
                    if stop.load(Ordering::SeqCst) || out.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(every);
                }
                return;
            }
        }
        if out.write_all(head.as_bytes()).is_err() || out.write_all(&body).is_err() {
            return;
        }
    }
}
