//! TLS termination on the proxy listener: a real certificate made by `openssl`, a real client
//! (`curl`) speaking HTTP/2 (ALPN) and HTTP/1.1 over TLS 1.2 and 1.3; older versions refused.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn make_cert(dir: &Path) {
    self_signed_cert(dir, "imgedge.test", "DNS:imgedge.test,IP:127.0.0.1");
}

/// `curl` over HTTPS: (exit success, "http_version status", body).
fn curl(cert: &Path, url: &str, extra: &[&str]) -> (bool, String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(cert)
        .args(extra)
        .args(["-w", "\n%{http_version} %{http_code}", url])
        .output()
        .unwrap();
    let mut body = out.stdout;
    let split = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let tail = String::from_utf8_lossy(&body[split..]).trim().to_string();
    body.truncate(split);
    (out.status.success(), tail, body)
}

#[test]
fn https_with_h2_and_tls12_or_13_only() {
    let dir = tempfile::tempdir().unwrap();
    make_cert(dir.path());
    let origin = Origin::start();
    origin.route("/a.jpg", Reply::ok("image/jpeg", fixture("meadow_640.jpg")));
    let port = free_port();
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\ntls:\n  listen: [\"127.0.0.1:{port}\"]\n  cert_file: {d}/cert.pem\n  key_file: {d}/key.pem\n",
        origin.peer(),
        d = dir.path().display()
    ));
    let cert = dir.path().join("cert.pem");
    let url = format!("https://127.0.0.1:{port}/a.jpg?width=50&format=png");
    let (ok, status, body) = eventually(10, "the TLS listener", || {
        let r = curl(&cert, &url, &["--http2"]);
        r.0.then_some(r)
    });
    assert!(ok);
    assert_eq!(status, "2 200", "HTTP/2 negotiated by ALPN");
    assert_eq!(image::load_from_memory(&body).unwrap().width(), 50);

    let (_, status, _) = curl(&cert, &url, &["--http1.1"]);
    assert_eq!(status, "1.1 200");
    let (ok, status, _) = curl(&cert, &url, &["--http1.1", "--tlsv1.2", "--tls-max", "1.2"]);
    assert!(ok && status == "1.1 200", "TLS 1.2: {status}");
    let (ok, status, _) = curl(&cert, &url, &["--http1.1", "--tlsv1.3"]);
    assert!(ok && status == "1.1 200", "TLS 1.3: {status}");
    let (ok, _, _) = curl(&cert, &url, &["--tlsv1.1", "--tls-max", "1.1"]);
    assert!(!ok, "TLS 1.1 must be refused");
    // The plain listener still serves, the same cache behind both.
    let r = get(&edge.url("/a.jpg?width=50&format=png"));
    assert_eq!(r.status, 200);
    assert_eq!(r.cache(), "HIT");
}
