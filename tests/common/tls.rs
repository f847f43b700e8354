//! TLS material for tests: a self-signed certificate.

use std::path::Path;
use std::process::{Command, Stdio};

/// Makes a self-signed certificate with `openssl` in `dir`: `key.pem` and `cert.pem`, subject
/// `/CN=cn`, `subjectAltName=san` (e.g. `"DNS:imgedge.test,IP:127.0.0.1"`), valid for a day.
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
