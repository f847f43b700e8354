//! `metadata=copyright | keep | none` end to end (issue 14 item 2, issue 19's `metadata`): a
//! photo with Copyright, Artist, GPS, a camera, a thumbnail, XMP and EXIF Orientation 6
//! (pixels stored sideways) through the proxy, each output read back by exiftool (a reader
//! nobody here wrote).

mod common;
use common::*;
use serde_json::Value;

const PHOTO: &str = "/friends_meta_orient6_386x256.jpg";
const COPYRIGHT: &str = "(c) 2018 Aitzol Berasategi, CC-BY-4.0";
const ARTIST: &str = "Aitzol Berasategi";

fn setup(extra: &str) -> (Origin, Edge) {
    let origin = Origin::start();
    for (name, ct) in [
        ("friends_meta_orient6_386x256.jpg", "image/jpeg"),
        ("friends_meta_386x256.webp", "image/webp"),
        ("friends_meta_120x80.png", "image/png"),
        ("seeding_640x360.jpg", "image/jpeg"),
    ] {
        origin.route(&format!("/{name}"), Reply::ok(ct, fixture(name)));
    }
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\ntransform:\n  presets:\n    full: {{width: 100, metadata: keep}}\n{extra}",
        origin.peer()
    ));
    (origin, edge)
}

/// What exiftool reads in `body`: `-G0` group-prefixed keys (`EXIF:Copyright`, `XMP:Rights`),
/// `-n` numbers (`EXIF:Orientation` 1-8, GPS in degrees).
fn exiftool(body: &[u8]) -> serde_json::Map<String, Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    std::fs::write(&path, body).unwrap();
    let out = std::process::Command::new("exiftool")
        .args(["-j", "-G0", "-n"])
        .arg(&path)
        .output()
        .expect("exiftool (libimage-exiftool-perl, see .ci/setup)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0].as_object().unwrap().clone()
}

fn fetch(edge: &Edge, target: &str) -> Resp {
    let r = get(&edge.url(target));
    assert_eq!(r.status, 200, "{target}: {}", r.text());
    r
}

/// Keys of a metadata group (`EXIF`, `XMP`, ...).
fn group<'a>(m: &'a serde_json::Map<String, Value>, g: &str) -> Vec<&'a str> {
    let prefix = format!("{g}:");
    m.keys()
        .filter(|k| k.starts_with(&prefix))
        .map(|k| k.as_str())
        .collect()
}

fn no_gps(m: &serde_json::Map<String, Value>, what: &str) {
    let gps: Vec<&String> = m.keys().filter(|k| k.contains("GPS")).collect();
    assert!(gps.is_empty(), "{what}: GPS left: {gps:?}");
}

/// Mean absolute difference per channel (0-255) from the upright reference (256x386).
fn diff_from_upright(body: &[u8]) -> f64 {
    let out = image::load_from_memory(body).unwrap().to_rgb8();
    let reference = image::load_from_memory(&fixture("friends_upright_ref.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(
        out.dimensions(),
        reference.dimensions(),
        "upright is 256x386"
    );
    out.as_raw()
        .iter()
        .zip(reference.as_raw())
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .sum::<f64>()
        / out.as_raw().len() as f64
}

#[test]
fn default_keeps_copyright_and_artist_only() {
    let (_o, edge) = setup("");
    for f in ["jpeg", "webp", "png"] {
        for q in ["", "&metadata=copyright"] {
            let r = fetch(&edge, &format!("{PHOTO}?width=256&format={f}{q}"));
            let m = exiftool(&r.body);
            assert_eq!(m["EXIF:Copyright"], COPYRIGHT, "{f}{q}: {m:?}");
            assert_eq!(m["EXIF:Artist"], ARTIST, "{f}{q}");
            let mut exif = group(&m, "EXIF");
            exif.sort();
            assert_eq!(
                exif,
                ["EXIF:Artist", "EXIF:Copyright"],
                "{f}{q}: nothing else"
            );
            no_gps(&m, f);
            assert!(group(&m, "XMP").is_empty(), "{f}{q}: {m:?}");
            // no orientation tag: the upright pixels are shown as they are
            assert!(diff_from_upright(&r.body) < 6.0, "{f}{q}");
        }
    }
}

#[test]
fn keep_keeps_all_but_the_orientation_and_the_thumbnail() {
    let (_o, edge) = setup("");
    for f in ["jpeg", "webp", "png"] {
        let r = fetch(
            &edge,
            &format!("{PHOTO}?width=256&format={f}&metadata=keep"),
        );
        let m = exiftool(&r.body);
        assert_eq!(m["EXIF:Copyright"], COPYRIGHT, "{f}: {m:?}");
        assert_eq!(m["EXIF:Artist"], ARTIST, "{f}");
        assert_eq!(m["EXIF:Make"], "TestCam", "{f}");
        assert_eq!(m["EXIF:DateTimeOriginal"], "2018:06:01 12:00:00", "{f}");
        let lat = m["EXIF:GPSLatitude"].as_f64().unwrap();
        assert!((lat - 43.0153).abs() < 1e-4, "{f}: {lat}");
        assert_eq!(m["EXIF:GPSLongitudeRef"], "W", "{f}");
        // the pixels are turned: a viewer must not turn them again
        assert_eq!(m["EXIF:Orientation"], 1, "{f}");
        assert_eq!(m["XMP:Orientation"], 1, "{f}");
        assert_eq!(m["XMP:Rights"], COPYRIGHT, "{f}");
        assert_eq!(m["XMP:Creator"], ARTIST, "{f}");
        let thumb: Vec<&String> = m.keys().filter(|k| k.contains("Thumbnail")).collect();
        assert!(thumb.is_empty(), "{f}: thumbnail left: {thumb:?}");
        assert!(
            !m.contains_key("ExifTool:Warning"),
            "{f}: {}",
            m["ExifTool:Warning"]
        );
        assert!(diff_from_upright(&r.body) < 6.0, "{f}");
    }
}

#[test]
fn none_carries_nothing_and_avif_never_does() {
    let (_o, edge) = setup("");
    for (f, q) in [
        ("jpeg", "&metadata=none"),
        ("webp", "&metadata=none"),
        ("png", "&metadata=none"),
        ("avif", "&metadata=keep"),
        ("avif", ""),
    ] {
        let r = fetch(&edge, &format!("{PHOTO}?width=100&format={f}{q}"));
        let m = exiftool(&r.body);
        assert!(group(&m, "EXIF").is_empty(), "{f}{q}: {m:?}");
        assert!(group(&m, "XMP").is_empty(), "{f}{q}: {m:?}");
        no_gps(&m, f);
    }
    // a source without metadata gives an output without any, whatever is asked
    for q in ["", "&metadata=keep"] {
        let r = fetch(&edge, &format!("/seeding_640x360.jpg?width=100{q}"));
        let m = exiftool(&r.body);
        assert!(
            group(&m, "EXIF").is_empty() && group(&m, "XMP").is_empty(),
            "{m:?}"
        );
    }
}

#[test]
fn webp_and_png_sources_carry_their_copyright() {
    let (_o, edge) = setup("");
    for target in [
        "/friends_meta_386x256.webp?width=100",
        "/friends_meta_386x256.webp?width=100&format=jpeg",
        "/friends_meta_120x80.png?width=100",
        "/friends_meta_120x80.png?width=100&format=webp",
    ] {
        let m = exiftool(&fetch(&edge, target).body);
        assert_eq!(m["EXIF:Copyright"], COPYRIGHT, "{target}: {m:?}");
        assert_eq!(m["EXIF:Artist"], ARTIST, "{target}");
        no_gps(&m, target);
        let m = exiftool(&fetch(&edge, &format!("{target}&metadata=keep")).body);
        assert!(m.contains_key("EXIF:GPSLatitude"), "{target} keep: {m:?}");
    }
}

#[test]
fn values_cache_key_path_form_and_presets() {
    let (origin, edge) = setup("");
    for q in ["metadata=all", "metadata=", "metadata=KEEP"] {
        let r = get(&edge.url(&format!("{PHOTO}?width=100&{q}")));
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert!(r.text().contains("metadata"), "{q}: {}", r.text());
    }
    assert_eq!(origin.total_hits(), 0, "refused before any origin request");
    // the default spelled out shares the default's entry; keep and none have their own
    let a = fetch(&edge, &format!("{PHOTO}?width=100"));
    assert_eq!(a.cache(), "MISS");
    let b = fetch(&edge, &format!("{PHOTO}?width=100&metadata=copyright"));
    assert_eq!((b.cache(), &b.body), ("HIT", &a.body));
    let keep = fetch(&edge, &format!("{PHOTO}?width=100&metadata=keep"));
    assert_eq!(keep.cache(), "MISS");
    assert_ne!(keep.body, a.body);
    assert_eq!(
        fetch(&edge, &format!("{PHOTO}?width=100&metadata=none")).cache(),
        "MISS"
    );
    // the path form shares the query form's entry; a preset's metadata applies
    let p = fetch(
        &edge,
        &format!("/cdn-cgi/image/width=100,metadata=keep{PHOTO}"),
    );
    assert_eq!((p.cache(), &p.body), ("HIT", &keep.body));
    let preset = fetch(&edge, &format!("{PHOTO}?preset=full"));
    assert_eq!((preset.cache(), &preset.body), ("HIT", &keep.body));
    let over = fetch(&edge, &format!("{PHOTO}?preset=full&metadata=none"));
    assert!(group(&exiftool(&over.body), "EXIF").is_empty());
}
