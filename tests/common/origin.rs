//! Origins for imgedge to fetch from: a small well-behaved HTTP/1.1 server with canned replies
//! (`Origin`) and a raw-TCP one that misbehaves on demand (`FaultyOrigin`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
pub fn reset(conn: TcpStream) {
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
