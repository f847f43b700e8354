//! A real HTTP client (ureq) and raw-TCP requests written by hand, and polling with a deadline.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

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
/// Sends `GET target` as written (for odd paths clients normalize) and reads the raw
/// HTTP/1.1 response.
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
