//! SVG end to end through the proxy (issue 14): hostile documents come out sanitized (or are
//! refused), with a restrictive CSP; `?width=` rasterizes, compared with librsvg's rendering;
//! sanitized output is cached, refusals are not; `transform.svg: passthrough` serves the bytes.

mod common;
use common::*;
use image::GenericImageView;

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// Served sanitized, each with what must not survive (beyond the checks of [`assert_clean`]).
const HOSTILE: [(&str, &[&str]); 7] = [
    ("script.svg", &["<script", "alert", "x.js"]),
    ("handlers.svg", &["javascript:"]),
    (
        "xlink.svg",
        &["javascript:", "evil.example", "data:text", "phish"],
    ),
    (
        "foreign.svg",
        &["foreignObject", "iframe", "<body", "onerror", "alert"],
    ),
    (
        "use_external.svg",
        &["evil.example", "sprite.svg", "/uploads/", "other.svg"],
    ),
    (
        "css_url.svg",
        &["@import", "evil.example", "a.css", "b.css", "woff"],
    ),
    ("logo.svg", &["DOCTYPE", "svg11.dtd"]),
];
/// Refused: entity declarations are cut with the DOCTYPE, so their references are undefined.
const REFUSED: [&str; 2] = ["billion_laughs.svg", "external_entity.svg"];

fn svg_fixture(name: &str) -> Vec<u8> {
    fixture(&format!("svg/{name}"))
}

fn setup(extra: &str) -> (Origin, Edge) {
    let origin = Origin::start();
    for name in HOSTILE
        .iter()
        .map(|(n, _)| *n)
        .chain(REFUSED)
        .chain(["use_bomb.svg"])
    {
        origin.route(
            &format!("/{name}"),
            Reply::ok("image/svg+xml", svg_fixture(name)).header("Cache-Control", "max-age=600"),
        );
    }
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\n{extra}",
        origin.peer()
    ));
    (origin, edge)
}

/// No script element, no `on*` attribute, no `javascript:`, no external `href` or `url()`.
fn assert_clean(name: &str, body: &str) {
    let lower = body.to_ascii_lowercase();
    for bad in [
        "<script",
        "javascript:",
        "foreignobject",
        "<!doctype",
        "<!entity",
        "@import",
    ] {
        assert!(!lower.contains(bad), "{name}: {bad} left in {body}");
    }
    // every attribute: no handler, every href local
    for (i, _) in lower.match_indices('=') {
        let before = &lower[..i];
        let attr = before.rsplit([' ', '\n', '\t', '<']).next().unwrap_or("");
        assert!(!attr.starts_with("on"), "{name}: handler {attr} in {body}");
        if attr.ends_with("href") {
            let value = lower[i + 2..].split(['"', '\'']).next().unwrap_or("");
            assert!(value.starts_with('#'), "{name}: {attr}={value} in {body}");
        }
    }
    for (i, _) in lower.match_indices("url(") {
        assert!(
            lower[i + 4..].starts_with('#'),
            "{name}: external url() in {body}"
        );
    }
}

#[test]
fn hostile_svgs_are_served_sanitized_with_a_csp_and_cached() {
    let (origin, edge) = setup("");
    for (name, gone) in HOSTILE {
        let url = edge.url(&format!("/{name}"));
        let r = get(&url);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("image/svg+xml"), "{name}");
        assert_eq!(r.header("content-security-policy"), Some(CSP), "{name}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{name}"
        );
        let body = r.text();
        assert!(body.contains("<svg"), "{name}: {body}");
        assert_clean(name, &body);
        for bad in gone {
            assert!(!body.contains(bad), "{name}: {bad} left in {body}");
        }
        // the sanitized document is what is cached, headers included
        let again = get(&url);
        assert_eq!(again.cache(), "HIT", "{name}");
        assert_eq!(
            (&again.body, again.header("content-security-policy")),
            (&r.body, Some(CSP))
        );
        assert_eq!(origin.hits(&format!("/{name}")), 1, "{name}");
    }
    // what the drawing needs survives
    let logo = get(&edge.url("/logo.svg")).text();
    for kept in ["fill=\"url(#sky)\"", "<linearGradient", "<path", "<circle"] {
        assert!(logo.contains(kept), "{kept} lost: {logo}");
    }
    let css = get(&edge.url("/css_url.svg")).text();
    assert!(
        css.contains("url(#g)") && css.contains("fill: #2a7fff"),
        "{css}"
    );
}

#[test]
fn entity_declarations_are_refused_and_nothing_is_cached() {
    let (origin, edge) = setup("");
    let before = edge.metric("imgedge_cache_insertions_total");
    for name in REFUSED {
        for round in 1..=2 {
            let url = edge.url(&format!("/{name}"));
            match try_get_with(&url, &[]) {
                Ok(r) => {
                    // a 422 with the reason, or the status line had gone: a short body that
                    // never holds the expansion
                    assert!(
                        !r.text().contains("lollol") && !r.text().contains("root:"),
                        "{}",
                        r.text()
                    );
                    if r.status != 200 {
                        assert_eq!(r.status, 422, "{name}: {}", r.text());
                    }
                }
                Err(e) => eprintln!("{name}: aborted as documented ({e})"),
            }
            assert_eq!(
                origin.hits(&format!("/{name}")),
                round,
                "{name}: nothing cached"
            );
        }
    }
    assert_eq!(edge.metric("imgedge_cache_insertions_total"), before);
    // still serving
    assert_eq!(get(&edge.url("/logo.svg")).status, 200);
}

fn mean_abs_diff(a: &image::RgbaImage, b: &image::RgbaImage) -> f64 {
    let total: u64 = a
        .pixels()
        .zip(b.pixels())
        .flat_map(|(p, q)| (0..3).map(move |c| (p[c] as i64 - q[c] as i64).unsigned_abs()))
        .sum();
    total as f64 / (a.width() * a.height() * 3) as f64
}

#[test]
fn a_width_rasterizes_like_librsvg_does() {
    let (_origin, edge) = setup("");
    // librsvg's rendering (rsvg-convert -w 200 logo.svg), made outside imgedge
    let reference = image::load_from_memory(&svg_fixture("logo_200_rsvg.png"))
        .unwrap()
        .to_rgba8();
    for (query, magic) in [
        ("width=200", &b"\x89PNG"[..]),
        ("width=200&format=webp", b"RIFF"),
    ] {
        let r = get(&edge.url(&format!("/logo.svg?{query}")));
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        assert!(r.body.starts_with(magic), "{query}");
        assert_eq!(
            r.header("content-security-policy"),
            None,
            "{query}: a raster needs no CSP"
        );
        let img = image::load_from_memory(&r.body).unwrap();
        assert_eq!(img.dimensions(), (200, 100), "{query}");
        let d = mean_abs_diff(&img.to_rgba8(), &reference);
        assert!(
            d <= 3.0,
            "{query}: mean absolute difference {d:.2} from librsvg's"
        );
    }
    // the vector is drawn at the size asked, above its own 100x50 (no "scale-down")
    let r = get(&edge.url("/logo.svg?width=400&format=png"));
    assert_eq!(
        image::load_from_memory(&r.body).unwrap().dimensions(),
        (400, 200)
    );
    // a hostile document rasterizes from its sanitized form
    let r = get(&edge.url("/script.svg?height=30&format=jpeg"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        image::load_from_memory(&r.body).unwrap().dimensions(),
        (60, 30)
    );
    // format=auto alone keeps a document
    let r = get_with(
        &edge.url("/logo.svg?format=auto"),
        &[("accept", "image/webp")],
    );
    assert_eq!(r.header("content-type"), Some("image/svg+xml"));
}

#[test]
fn rendering_is_bounded_by_the_pixel_limit_and_the_element_limit() {
    let (_origin, edge) = setup("transform:\n  max_source_pixels: 1000000\n");
    // 2000x1000 to render: refused before rendering
    let r = get(&edge.url("/logo.svg?width=2000&format=png"));
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("pixels"), "{}", r.text());
    // <use> fan-out (10^8 elements once expanded): refused or drawn, never a hung process
    match try_get_with(&edge.url("/use_bomb.svg?width=100"), &[]) {
        Ok(r) => assert!(
            r.status == 422 || r.status == 200,
            "{}: {}",
            r.status,
            r.text()
        ),
        Err(e) => eprintln!("use bomb: aborted ({e})"),
    }
    assert_eq!(get(&edge.url("/logo.svg?width=50")).status, 200);
}

#[test]
fn compressed_svg_is_refused_when_sanitizing_and_passthrough_serves_the_bytes() {
    let (origin, edge) = setup("");
    let gz =
        Reply::ok("image/svg+xml", svg_fixture("script.svg")).header("Content-Encoding", "gzip");
    origin.route("/packed.svg", gz);
    let r = get(&edge.url("/packed.svg"));
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("Content-Encoding"), "{}", r.text());

    let (_origin, edge) = setup("transform:\n  svg: passthrough\n");
    let r = get(&edge.url("/script.svg"));
    assert_eq!(
        r.body,
        svg_fixture("script.svg"),
        "passthrough: the origin's bytes"
    );
    let r = get(&edge.url("/logo.svg?width=200"));
    assert_eq!(
        image::load_from_memory(&r.body).unwrap().dimensions(),
        (200, 100)
    );
}

#[test]
fn a_bad_svg_mode_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("c.yaml");
    std::fs::write(
        &conf,
        "upstreams:\n  o: {peers: [\"127.0.0.1:1\"]}\nroutes:\n  - {prefix: /, upstream: o}\ntransform:\n  svg: strip\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["-t", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("transform.svg"), "{text}");
}

/// An SVG through the rest of the URL API: `format=json` describes the sanitized document,
/// `onerror=redirect` sends a refused or unrenderable SVG to its original (which is itself only
/// ever served sanitized, or refused), the path form rasterizes and sanitizes as the query form.
#[test]
fn svg_through_json_onerror_and_the_path_form() {
    let (origin, edge) = setup("transform:\n  max_source_pixels: 1000000\n");
    // format=json: the output's size and the original's own (not the size it renders at)
    let r = get(&edge.url("/logo.svg?width=300&format=json"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let sanitized = get(&edge.url("/logo.svg")).body.len();
    assert_eq!(
        v,
        serde_json::json!({
            "width": 300,
            "height": 150,
            "original": {"file_size": sanitized, "width": 100, "height": 50, "format": "image/svg+xml"},
        })
    );
    let r = try_get_with(&edge.url("/billion_laughs.svg?format=json"), &[]);
    if let Ok(r) = r {
        assert_ne!(r.status, 200, "{}", r.text());
    }

    // onerror=redirect on a document the sanitizer refuses: the original (which the source
    // cache fetches, sanitized, as a plain GET) is itself refused, and that 422 is answered
    // (a 302 to it would only lead to the same 422); never the raw document.
    let url = edge.url("/billion_laughs.svg?width=100&onerror=redirect");
    for _ in 0..2 {
        if let Ok(r) = try_get_with(&url, &[]) {
            assert!(r.status == 422 || r.status == 302, "{}", r.text());
            assert!(!r.text().contains("lollol"), "{}", r.text());
        }
    }
    match try_get_with(&edge.url("/billion_laughs.svg"), &[]) {
        Ok(r) => assert_eq!(r.status, 422, "{}", r.text()),
        Err(e) => eprintln!("original aborted as documented ({e})"),
    }
    // ... and on a size it may not render at (the limit is 1 Mpx): the redirect, whose
    // original is the sanitized document with its CSP
    let url = edge.url("/script.svg?width=4000&onerror=redirect");
    if let Err(e) = try_get_with(&url, &[]) {
        eprintln!("first answer aborted as documented ({e})");
    }
    let r = get(&url);
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(r.header("location"), Some("/script.svg"));
    let r = get(&edge.url("/script.svg"));
    assert_eq!(r.header("content-security-policy"), Some(CSP));
    assert_clean("script.svg", &r.text());

    // the path form: rasterized at the width asked, or served as a sanitized document
    let r = get(&edge.url("/cdn-cgi/image/width=100/logo.svg"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(
        image::load_from_memory(&r.body).unwrap().dimensions(),
        (100, 50)
    );
    let r = get(&edge.url("/cdn-cgi/image/format=auto/script.svg"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/svg+xml"));
    assert_eq!(r.header("content-security-policy"), Some(CSP));
    assert_clean("script.svg", &r.text());
    assert!(origin.hits("/logo.svg") >= 1);
}

/// `transform.svg: passthrough`: documents as the origin sent them (no CSP added), even with
/// `format=auto`; sizes and raster formats still rasterize.
#[test]
fn passthrough_serves_documents_as_sent_and_still_rasterizes() {
    let (_origin, edge) = setup("transform:\n  svg: passthrough\n");
    for path in [
        "/script.svg",
        "/script.svg?format=auto",
        "/cdn-cgi/image/format=auto/script.svg",
    ] {
        let r = get(&edge.url(path));
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, svg_fixture("script.svg"), "{path}");
        assert_eq!(r.header("content-security-policy"), None, "{path}");
    }
    for (path, size) in [
        ("/script.svg?height=30&format=jpeg", (60, 30)),
        ("/cdn-cgi/image/width=240/script.svg", (240, 120)),
    ] {
        let r = get(&edge.url(path));
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(
            image::load_from_memory(&r.body).unwrap().dimensions(),
            size,
            "{path}"
        );
    }
}
