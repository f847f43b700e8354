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

/// A config whose `transform.signing` mapping gets `extra` (`, cover_host: true`, ...).
fn config_with(origin: &Origin, extra: &str) -> String {
    format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\ntransform:\n  signing: {{keys: [\"{NEW_KEY}\"], required: true{extra}}}\n",
        origin.peer(),
    )
}

/// `imgedge sign -c FILE ARGS...` with `config`; the printed URL.
fn sign_args(dir: &std::path::Path, config: &str, args: &[&str]) -> String {
    let path = dir.join("sign-args.yaml");
    std::fs::write(&path, format!("listen: [\"127.0.0.1:1\"]\n{config}")).unwrap();
    let out = Command::new(bin())
        .args(["sign", "-c"])
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// HMAC-SHA256 of `message` with `key`, as `sig=` carries it.
fn hmac_sig(key: &str, message: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    m.update(message.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One GET with this `Host`, written by hand; status and body.
fn get_host(port: u16, host: &str, target: &str) -> (u16, String) {
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (status, text) = exchange(
        s,
        &format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    (
        status,
        text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string(),
    )
}

#[test]
fn signed_urls_expire() {
    let origin = Origin::start();
    origin.route("/a.jpg", Reply::ok("image/jpeg", fixture("meadow_640.jpg")));
    let config = config_with(&origin, "");
    let edge = Edge::start(&config);
    let tmp = tempfile::tempdir().unwrap();
    let now = unix_now();

    // A signature over path and transform (the format of before) keeps verifying...
    let old = hmac_sig(NEW_KEY, "/a.jpg\nw=200");
    assert_eq!(
        get(&edge.url(&format!("/a.jpg?w=200&sig={old}"))).status,
        200
    );
    // ...but an exp= added to it is not covered by it: refused, not served.
    let past = now - 60;
    let r = get(&edge.url(&format!("/a.jpg?w=200&exp={past}&sig={old}")));
    assert_eq!(
        r.status,
        403,
        "an exp= the signature does not cover: {}",
        r.text()
    );

    // exp covered by the signature: past -> 403 naming the expiry; future -> served.
    let sig = hmac_sig(NEW_KEY, &format!("/a.jpg\nw=200\nexp={past}"));
    let r = get(&edge.url(&format!("/a.jpg?w=200&exp={past}&sig={sig}")));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("expired"), "{}", r.text());
    let later = now + 600;
    let sig = hmac_sig(NEW_KEY, &format!("/a.jpg\nw=200\nexp={later}"));
    let r = get(&edge.url(&format!("/a.jpg?w=200&exp={later}&sig={sig}")));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.cache(), "HIT", "exp= is not part of the cache key");
    // Changing exp breaks the signature.
    let r = get(&edge.url(&format!("/a.jpg?w=200&exp={}&sig={sig}", later + 1)));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("does not match"), "{}", r.text());

    // `imgedge sign --expires 3600` makes a URL that verifies; --expires-at in the past one
    // that is refused as expired.
    let signed = sign_args(tmp.path(), &config, &["--expires", "3600", "/a.jpg?w=300"]);
    assert!(signed.contains("&exp="), "{signed}");
    let r = get(&edge.url(&signed));
    assert_eq!(r.status, 200, "{signed}: {}", r.text());
    let at = (now - 10).to_string();
    let signed = sign_args(tmp.path(), &config, &["--expires-at", &at, "/a.jpg?w=300"]);
    let r = get(&edge.url(&signed));
    assert_eq!(r.status, 403, "{signed}: {}", r.text());
    assert!(r.text().contains("expired"), "{}", r.text());
    // exp= is never forwarded to the origin.
    assert_eq!(origin.total_hits(), origin.hits("/a.jpg"));
}

#[test]
fn signatures_can_cover_the_host_and_the_whole_query() {
    let origin = Origin::start();
    origin.route("/a.jpg", Reply::ok("image/jpeg", fixture("meadow_640.jpg")));
    origin.route(
        "/a.jpg?v=2",
        Reply::ok("image/jpeg", fixture("meadow_640.jpg")),
    );
    let tmp = tempfile::tempdir().unwrap();

    // Host coverage: the signature holds for the host it was made for only.
    let config = config_with(&origin, ", cover_host: true");
    let edge = Edge::start(&config);
    let signed = sign_args(tmp.path(), &config, &["http://img.a.example/a.jpg?w=200"]);
    let target = signed.strip_prefix("http://img.a.example").unwrap();
    let (status, body) = get_host(edge.port, "img.a.example", target);
    assert_eq!(status, 200, "{body}");
    let (status, body) = get_host(edge.port, "IMG.A.example:8080", target);
    assert_eq!(
        status, 200,
        "host names compare without case and port: {body}"
    );
    let (status, body) = get_host(edge.port, "img.b.example", target);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("does not match"), "{body}");
    // A path-only URL needs --host to be signed for one.
    let signed = sign_args(
        tmp.path(),
        &config,
        &["--host", "img.b.example", "/a.jpg?w=200"],
    );
    assert_eq!(get_host(edge.port, "img.b.example", &signed).0, 200);
    assert_eq!(get_host(edge.port, "img.a.example", &signed).0, 403);
    drop(edge);

    // Query coverage: any added, removed or changed parameter breaks the signature.
    let config = config_with(&origin, ", cover_query: true");
    let edge = Edge::start(&config);
    let signed = sign_args(
        tmp.path(),
        &config,
        &["--expires", "600", "/a.jpg?w=200&v=2"],
    );
    let r = get(&edge.url(&signed));
    assert_eq!(r.status, 200, "{signed}: {}", r.text());
    for tampered in [
        format!("{signed}&x=1"),
        signed.replace("v=2", "v=3"),
        signed.replace("v=2&", ""),
    ] {
        let r = get(&edge.url(&tampered));
        assert_eq!(r.status, 403, "{tampered}: {}", r.text());
    }
    drop(edge);

    // Without coverage (the default) an added parameter is not part of the signature.
    let config = config_with(&origin, "");
    let edge = Edge::start(&config);
    let signed = sign_args(tmp.path(), &config, &["/a.jpg?w=200"]);
    assert_eq!(get(&edge.url(&signed)).status, 200);
    assert_eq!(get(&edge.url(&format!("{signed}&v=2"))).status, 200);
}
