//! The try-it page in a real headless browser (Debian's chromium + chromedriver, installed by
//! .ci/setup), driven over the W3C WebDriver protocol: the page loads, fetches through the real
//! proxy listener (cross-origin, so CORS must be right), and what it displays matches the
//! response. Screenshots go to the test's temp dir, and to $IMGEDGE_SCREENSHOT_DIR when set
//! (how docs/playground.png was made).

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// chromedriver on an ephemeral port, and one browser session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn find_binary(names: &[&str]) -> PathBuf {
    for n in names {
        for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
            let p = Path::new(dir).join(n);
            if p.exists() {
                return p;
            }
        }
    }
    panic!("none of {names:?} is installed (.ci/setup installs chromium and chromium-driver)");
}

impl Browser {
    /// A desktop window of `width` x `height`, or with `phone`, Chrome's mobile emulation at that
    /// viewport (a headless window cannot be narrower than 500 px).
    fn start(width: u32, height: u32, phone: bool) -> Browser {
        let port = free_port();
        let driver = Command::new(find_binary(&["chromedriver"]))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        eventually(20, "chromedriver to answer /status", || {
            let r = agent().get(&format!("{base}/status")).call().ok()?;
            (r.status() == 200).then_some(())
        });
        let chromium = find_binary(&["chromium", "chromium-browser"]);
        let mut options = json!({
            "binary": chromium.to_string_lossy(),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--hide-scrollbars",
                     format!("--window-size={width},{height}")]
        });
        if phone {
            options["mobileEmulation"] = json!({
                "deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0, "touch": true}
            });
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options
        }}});
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
        };
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let mut resp = match (method, body) {
            ("GET", _) => agent().get(&url).call(),
            ("DELETE", _) => agent().delete(&url).call(),
            (_, b) => agent()
                .post(&url)
                .header("Content-Type", "application/json")
                .send(b.unwrap_or(json!({})).to_string()),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert!(status == 200, "{method} {path}: {status} {text}");
        v["value"].clone()
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({"url": url})));
    }

    fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.s("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
    }

    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            &self.s("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    fn text(&self, css: &str) -> String {
        let id = self.element(css);
        self.call("GET", &self.s(&format!("/element/{id}/text")), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call("POST", &self.s(&format!("/element/{id}/clear")), None);
        self.call(
            "POST",
            &self.s(&format!("/element/{id}/value")),
            Some(json!({"text": text})),
        );
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.call("POST", &self.s(&format!("/element/{id}/click")), None);
    }

    /// Waits until the result panel shows a finished run of a URL containing all of `parts`.
    fn wait_result(&self, parts: &[&str]) -> String {
        eventually(30, "the page to show the result", || {
            let v = self.js(
                "const r = document.getElementById('result'); return [r.dataset.state, r.dataset.url || ''];",
            );
            let state = v[0].as_str()?;
            let url = v[1].as_str()?.to_string();
            let ours = parts.iter().all(|p| url.contains(p));
            if state == "error" && ours {
                panic!("the page shows an error: {}", self.text("#result"));
            }
            (state == "done" && ours).then_some(url)
        })
    }

    fn screenshot(&self, name: &str) {
        let b64 = self.call("GET", &self.s("/screenshot"), None);
        let png = decode_base64(b64.as_str().unwrap_or_default());
        assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&tmp, &png).unwrap();
        if let Some(dir) = std::env::var_os("IMGEDGE_SCREENSHOT_DIR") {
            std::fs::write(Path::new(&dir).join(name), &png).unwrap();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = agent()
                .delete(&format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn samples_edge() -> Edge {
    Edge::start(&samples_config())
}

#[test]
fn page_shows_what_the_proxy_returns() {
    let edge = samples_edge();
    let browser = Browser::start(1280, 1050, false);
    browser.goto(&edge.admin_url("/?path=/meadow.jpg"));
    // The first sample at the page's default width.
    browser.wait_result(&["width=400"]);

    browser.type_into("#width", "240");
    browser.click("#format option[value='webp']");
    let url = browser.wait_result(&["width=240", "format=webp"]);
    assert_eq!(
        browser.js("return document.getElementById('url').value;"),
        url
    );

    let dims = browser.text("#res-dims");
    let format = browser.text("#res-format");
    let bytes = browser.text("#res-bytes");
    let cache = browser.text("#res-cache");
    let time = browser.text("#res-time");

    // What a client gets for that exact URL.
    let r = get(&url);
    assert_eq!(r.status, 200);
    let ct = r.header("content-type").unwrap().to_string();
    assert_eq!(format, ct);
    assert_eq!(ct, "image/webp");
    let img = image::load_from_memory(&r.body).unwrap();
    assert_eq!(img.width(), 240);
    assert_eq!(dims, format!("{} × {}", img.width(), img.height()));
    // Shown as "7,444 B (7.3 KiB)".
    assert!(
        bytes
            .replace(',', "")
            .starts_with(&format!("{} B", r.body.len())),
        "{bytes} vs {}",
        r.body.len()
    );
    assert!(
        ["MISS", "HIT"].contains(&cache.as_str()),
        "cache status {cache}"
    );
    assert!(time.contains(" ms"), "transform time shown: {time}");
    // The original panel shows the source.
    assert_eq!(browser.text("#orig-format"), "image/jpeg");
    browser.screenshot("playground.png");

    // Height and fit too: the displayed size follows.
    browser.type_into("#height", "240");
    browser.click("#fit option[value='cover']");
    let url = browser.wait_result(&["width=240", "height=240", "fit=cover"]);
    let img = image::load_from_memory(&get(&url).body).unwrap();
    assert_eq!((img.width(), img.height()), (240, 240));
    assert_eq!(browser.text("#res-dims"), "240 × 240");

    // A bad value: the page shows the proxy's reason (readable thanks to CORS on errors).
    browser.type_into("#quality", "500");
    eventually(30, "the 400 reason on the page", || {
        let t = browser.text("#res-view");
        t.contains("400").then_some(())
    });
    assert!(browser.text("#res-view").contains("quality"));

    // The other options, in the path form Cloudflare's loaders use: the page's URL is what a
    // client gets, and the query form of the same transform is the same cache entry.
    browser.type_into("#quality", "");
    browser.type_into("#height", "");
    browser.click("#fit option[value='']");
    browser.click("#more summary");
    browser.click("#rotate option[value='90']");
    browser.type_into("#blur", "3");
    browser.click("#urlform option[value='path']");
    let url = browser.wait_result(&["/cdn-cgi/image/", "width=240", "rotate=90", "blur=3"]);
    assert!(url.ends_with("/meadow.jpg"), "{url}");
    let r = get(&url);
    assert_eq!(r.status, 200, "{}", r.text());
    let img = image::load_from_memory(&r.body).unwrap();
    // Width and height refer to the rotated axes.
    assert_eq!(img.width(), 240);
    assert!(
        img.height() > img.width(),
        "rotated: {}x{}",
        img.width(),
        img.height()
    );
    assert_eq!(
        browser.text("#res-dims"),
        format!("{} × {}", img.width(), img.height())
    );
    let query_form = get(&edge.url("/meadow.jpg?width=240&format=webp&rotate=90&blur=3"));
    assert_eq!(query_form.cache(), "HIT");
    assert_eq!(query_form.body, r.body);
}

/// Opened without a path: the largest JPEG sample (seeding.jpg, 218,818 bytes) at width 400 in
/// the browser's best format, and what that saved.
#[test]
fn page_opens_on_a_photo_resized_and_shows_the_bytes_saved() {
    let edge = samples_edge();
    let browser = Browser::start(1280, 1050, false);
    browser.goto(&edge.admin_url("/"));
    let url = browser.wait_result(&["/seeding.jpg?", "width=400", "format=auto"]);
    assert_eq!(browser.text("#orig-format"), "image/jpeg");
    let orig = std::fs::metadata(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/seeding.jpg"))
        .unwrap()
        .len();
    assert_eq!(orig, 218_818, "the sample changed: update this test");
    let shown: u64 = browser
        .text("#res-bytes")
        .split(" B")
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(shown * 5 < orig, "{shown} bytes for {url}");
    let pct = ((1.0 - shown as f64 / orig as f64) * 100.0).round();
    // As the page writes KB (1000 bytes): one decimal under 10 KB.
    let kb = if shown < 10_000 {
        format!("{:.1}", shown as f64 / 1000.0)
    } else {
        format!("{}", (shown as f64 / 1000.0).round())
    };
    assert_eq!(
        browser.text("#res-saved"),
        format!("{kb} KB, {pct}% smaller than the 219 KB original")
    );
}

#[test]
fn page_is_readable_on_a_phone() {
    let edge = samples_edge();
    let browser = Browser::start(390, 844, true);
    browser.goto(&edge.admin_url("/?path=/seeding.jpg"));
    browser.wait_result(&["width=400"]);
    // Nothing wider than the screen: no sideways scrolling.
    let v = browser.js(
        "return [document.documentElement.scrollWidth, window.innerWidth, document.getElementById('res-img').getBoundingClientRect().right];",
    );
    let (scroll, inner, img_right) = (
        v[0].as_f64().unwrap(),
        v[1].as_f64().unwrap(),
        v[2].as_f64().unwrap(),
    );
    assert_eq!(inner, 390.0, "the phone's viewport");
    assert!(
        scroll <= inner,
        "page {scroll}px wide on a {inner}px screen"
    );
    assert!(
        img_right <= inner,
        "result image overflows: {img_right} > {inner}"
    );
    browser.screenshot("playground-phone.png");
}

#[test]
fn cors_only_for_the_admin_origin_and_page_can_be_turned_off() {
    let edge = samples_edge();
    let admin_origin = format!("http://127.0.0.1:{}", edge.admin_port);
    let r = get_with(
        &edge.url("/meadow.jpg?width=50"),
        &[("Origin", admin_origin.as_str())],
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(admin_origin.as_str())
    );
    let exposed = r.header("access-control-expose-headers").unwrap_or("");
    for h in [
        "X-Cache-Status",
        "Server-Timing",
        "Content-Type",
        "Content-Length",
    ] {
        assert!(exposed.contains(h), "{exposed}");
    }
    assert!(r.header("vary").unwrap_or("").contains("Origin"));
    // The hit of a transformed entry says how long making it took.
    let hit = get_with(
        &edge.url("/meadow.jpg?width=50"),
        &[("Origin", admin_origin.as_str())],
    );
    assert_eq!(hit.cache(), "HIT");
    let st = hit.header("server-timing").unwrap_or("");
    assert!(st.starts_with("transform;dur="), "{st}");
    // Another origin, or none: no CORS headers.
    let other = get_with(
        &edge.url("/meadow.jpg?width=50"),
        &[("Origin", "http://evil.example")],
    );
    assert!(other.header("access-control-allow-origin").is_none());
    assert!(get(&edge.url("/meadow.jpg"))
        .header("access-control-allow-origin")
        .is_none());
    // Errors answered by the proxy itself carry them too (the page shows the reason).
    let bad = get_with(
        &edge.url("/meadow.jpg?width=-1"),
        &[("Origin", admin_origin.as_str())],
    );
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.header("access-control-allow-origin"),
        Some(admin_origin.as_str())
    );
    // The page and its settings.
    let page = get(&edge.admin_url("/"));
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let cfg: serde_json::Value =
        serde_json::from_slice(&get(&edge.admin_url("/playground/config.json")).body).unwrap();
    assert_eq!(cfg["proxy"], format!("http://127.0.0.1:{}", edge.port));
    let samples: Vec<&str> = cfg["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(samples.contains(&"/meadow.jpg"), "{samples:?}");
    for s in &samples {
        assert_eq!(get(&edge.url(s)).status, 200, "sample {s}");
    }
}

fn samples_config() -> String {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    format!(
        "upstreams:\n  samples: {{dir: \"{}\"}}\nroutes:\n  - {{prefix: /, upstream: samples}}\n",
        samples.display()
    )
}

#[test]
fn extra_origins_and_playground_off() {
    let edge = Edge::start_with_admin(
        &samples_config(),
        "playground_origins: [\"https://admin.example.com\"]",
    );
    let r = get_with(
        &edge.url("/meadow.jpg"),
        &[("Origin", "https://admin.example.com")],
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://admin.example.com")
    );
    let any = Edge::start_with_admin(&samples_config(), "playground_origins: [\"*\"]");
    let r = get_with(&any.url("/meadow.jpg"), &[("Origin", "http://x.example")]);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));

    let off = Edge::start_with_admin(&samples_config(), "playground: false");
    assert_eq!(get(&off.admin_url("/")).status, 404);
    assert_eq!(get(&off.admin_url("/playground/config.json")).status, 404);
    assert_eq!(get(&off.admin_url("/healthz")).status, 200);
    let admin_origin = format!("http://127.0.0.1:{}", off.admin_port);
    let r = get_with(
        &off.url("/meadow.jpg"),
        &[("Origin", admin_origin.as_str())],
    );
    assert!(
        r.header("access-control-allow-origin").is_none(),
        "no page, no CORS"
    );
}
