//! Signed transform URLs end to end: `imgedge sign` makes the signature, the edge checks it
//! before any origin request or transform (403 with a reason), key rotation with two keys.

mod common;
use common::*;
use std::process::Command;

const OLD_KEY: &str = "old-signing-key-0123456789abcdef";
const NEW_KEY: &str = "new-signing-key-0123456789abcdef";

fn config(origin: &Origin, keys: &[&str]) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\ntransform:\n  signing: {{keys: [{}], required: true}}\n  presets:\n    thumb: {{width: 100, height: 100, fit: cover}}\n",
        origin.peer(),
        keys.join(", ")
    )
}

/// `imgedge sign -c FILE URL` with a config holding `keys`.
fn sign(dir: &std::path::Path, origin: &Origin, keys: &[&str], url: &str) -> String {
    let path = dir.join(format!("sign-{}.yaml", keys.len()));
    std::fs::write(
        &path,
        format!("listen: [\"127.0.0.1:1\"]\n{}", config(origin, keys)),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["sign", "-c"])
        .arg(&path)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn signed_urls_are_checked_before_the_origin() {
    let origin = Origin::start();
    origin.route("/a.jpg", Reply::ok("image/jpeg", fixture("meadow_640.jpg")));
    let edge = Edge::start(&config(&origin, &[NEW_KEY, OLD_KEY]));
    let tmp = tempfile::tempdir().unwrap();

    // Unsigned, tampered, malformed: 403 with a reason, and nothing reaches the origin.
    let r = get(&edge.url("/a.jpg?width=200"));
    assert_eq!(r.status, 403);
    assert!(r.text().contains("must be signed"), "{}", r.text());
    let signed = sign(
        tmp.path(),
        &origin,
        &[NEW_KEY],
        "/a.jpg?width=200&format=png",
    );
    let sig = signed.rsplit_once("sig=").unwrap().1.to_string();
    let r = get(&edge.url(&format!("/a.jpg?width=201&format=png&sig={sig}")));
    assert_eq!(r.status, 403);
    assert!(r.text().contains("does not match"), "{}", r.text());
    let r = get(&edge.url(&format!("/b.jpg?width=200&format=png&sig={sig}")));
    assert_eq!(r.status, 403);
    let r = get(&edge.url("/a.jpg?width=200&sig=%%%"));
    assert_eq!(r.status, 403);
    assert_eq!(origin.total_hits(), 0);

    // The signed URL works; reordered and re-spelled parameters keep the signature valid.
    let r = get(&edge.url(&signed));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(&edge.url(&format!("/a.jpg?sig={sig}&format=png&w=200")));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.cache(), "HIT");
    assert_eq!(
        origin.hits("/a.jpg"),
        1,
        "sig= is neither forwarded nor in the cache key"
    );

    // A URL signed with the old key still verifies while both keys are configured.
    let old = sign(tmp.path(), &origin, &[OLD_KEY], "/a.jpg?preset=thumb");
    assert_eq!(get(&edge.url(&old)).status, 200);

    // Originals (no transform parameter) are not subject to signing.
    assert_eq!(get(&edge.url("/a.jpg")).status, 200);
}

#[test]
fn sign_explains_what_it_cannot_sign() {
    let out = Command::new(bin())
        .args(["sign", "/a.jpg?width=100"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("transform.signing is not configured"));
}
