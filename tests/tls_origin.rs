//! HTTPS to the origin with SNI and a Host override, against a real TLS server on loopback
//! (`openssl s_server -WWW`, which refuses any SNI but `images.test`).

mod common;
use common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct TlsOrigin {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_origin() -> TlsOrigin {
    let dir = tempfile::tempdir().unwrap();
    self_signed_cert(dir.path(), "images.test", "DNS:images.test");
    std::fs::write(dir.path().join("hello.txt"), "hello over tls").unwrap();
    let port = free_port();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "-cert", "cert.pem", "-key", "key.pem", "-cert2", "cert.pem", "-key2", "key.pem",
        ])
        .args(["-servername", "images.test", "-servername_fatal"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(10, "openssl s_server", || {
        std::net::TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_millis(200),
        )
        .ok()
    });
    TlsOrigin {
        port,
        child,
        _dir: dir,
    }
}

fn edge_for(port: u16, tls: &str) -> Edge {
    Edge::start(&format!(
        "upstreams:\n  s3: {{peers: [\"127.0.0.1:{port}\"], tls: {tls}, host: images.test}}\nroutes:\n  - {{prefix: /, upstream: s3, cache: false}}\n"
    ))
}

#[test]
fn https_origin_with_sni() {
    let origin = tls_origin();
    let edge = edge_for(origin.port, "{sni: images.test, verify: false}");
    let r = get(&edge.url("/hello.txt"));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), edge.log());
    assert_eq!(r.text(), "hello over tls");
}

#[test]
fn wrong_sni_or_untrusted_certificate_fails_cleanly() {
    let origin = tls_origin();
    let edge = edge_for(origin.port, "{sni: wrong.test, verify: false}");
    assert_eq!(get(&edge.url("/hello.txt")).status, 502);
    // verify: true refuses the self-signed certificate.
    let edge = edge_for(origin.port, "{sni: images.test, verify: true}");
    assert_eq!(get(&edge.url("/hello.txt")).status, 502);
}
