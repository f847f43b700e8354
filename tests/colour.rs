//! Issue 14, item 1: colour management. A source tagged with an ICC profile is converted to
//! sRGB before the resize. Fixtures: one sRGB photo and the same photo converted by libvips
//! (`vips icc_transform`, which embeds the profile) into Adobe RGB (1998), ProPhoto RGB and a
//! profile that swaps red and green (colord-data, v4 matrix/TRC), and Adobe RGB v2
//! (ghostscript's a98.icc); see tests/fixtures/LICENSES.md. Each one through the proxy must look
//! like the sRGB original through the proxy at the same size.

mod common;
use common::*;

fn setup(origin: &Origin, transform: &str) -> Edge {
    Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\ntransform:\n  decoded_cache_bytes: 0\n{transform}",
        origin.peer()
    ))
}

fn rgb(bytes: &[u8]) -> image::RgbImage {
    image::load_from_memory(bytes)
        .unwrap_or_else(|e| panic!("not an image: {e}"))
        .to_rgb8()
}

/// Mean absolute difference over every sample (0-255).
fn mean_diff(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y) as u64)
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

/// The JPEG with its (single) `APP2 ICC_PROFILE` segment split into `n` chunks, as a writer
/// does for a profile over 64 KB.
fn split_icc(jpeg: &[u8], n: usize) -> Vec<u8> {
    const TAG: &[u8] = b"ICC_PROFILE\0";
    let at = jpeg
        .windows(TAG.len())
        .position(|w| w == TAG)
        .expect("an ICC segment")
        - 4;
    let len = u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]) as usize;
    let icc = &jpeg[at + 4 + TAG.len() + 2..at + 2 + len];
    let mut out = jpeg[..at].to_vec();
    for (i, part) in icc.chunks(icc.len().div_ceil(n)).enumerate() {
        out.extend_from_slice(&[0xFF, 0xE2]);
        out.extend_from_slice(&((2 + TAG.len() + 2 + part.len()) as u16).to_be_bytes());
        out.extend_from_slice(TAG);
        out.extend_from_slice(&[i as u8 + 1, n as u8]);
        out.extend_from_slice(part);
    }
    out.extend_from_slice(&jpeg[at + 2 + len..]);
    out
}

fn get_png(edge: &Edge, path: &str) -> image::RgbImage {
    let r = get(&edge.url(&format!("{path}&format=png")));
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    rgb(&r.body)
}

/// Every JPEG path: baseline and progressive, full-size decode (width=400 of 640 is a full-size
/// shrink-on-load), (160) 1/4 and (80) 1/8 (the progressive DC-only path); WebP (v2 profile) and PNG.
#[test]
fn embedded_profiles_are_applied_before_the_resize() {
    let origin = Origin::start();
    let sources = [
        ("meadow_640.jpg", fixture("meadow_640.jpg")),
        (
            "meadow_640_adobergb.jpg",
            fixture("meadow_640_adobergb.jpg"),
        ),
        (
            "meadow_640_adobergb_3chunks.jpg",
            split_icc(&fixture("meadow_640_adobergb.jpg"), 3),
        ),
        (
            "meadow_640_prophoto_prog.jpg",
            fixture("meadow_640_prophoto_prog.jpg"),
        ),
        ("meadow_640_swapped.jpg", fixture("meadow_640_swapped.jpg")),
        ("meadow_640_a98v2.webp", fixture("meadow_640_a98v2.webp")),
        ("meadow_200_srgb.png", fixture("meadow_200_srgb.png")),
        (
            "meadow_200_prophoto.png",
            fixture("meadow_200_prophoto.png"),
        ),
    ];
    for (name, body) in &sources {
        let ct = if name.ends_with(".png") {
            "image/png"
        } else if name.ends_with(".webp") {
            "image/webp"
        } else {
            "image/jpeg"
        };
        origin.route(&format!("/{name}"), Reply::ok(ct, body.clone()));
    }
    let edge = setup(&origin, "");
    let mut report = Vec::new();
    for width in [400, 160, 80] {
        let reference = get_png(&edge, &format!("/meadow_640.jpg?width={width}"));
        for name in [
            "meadow_640_adobergb.jpg",
            "meadow_640_adobergb_3chunks.jpg",
            "meadow_640_prophoto_prog.jpg",
            "meadow_640_swapped.jpg",
            "meadow_640_a98v2.webp",
        ] {
            let out = get_png(&edge, &format!("/{name}?width={width}"));
            report.push((format!("{name} width={width}"), mean_diff(&out, &reference)));
        }
    }
    let reference = get_png(&edge, "/meadow_200_srgb.png?width=100");
    let out = get_png(&edge, "/meadow_200_prophoto.png?width=100");
    report.push((
        "meadow_200_prophoto.png".into(),
        mean_diff(&out, &reference),
    ));
    let bad: Vec<_> = report.iter().filter(|(_, d)| *d > 3.0).collect();
    assert!(bad.is_empty(), "over 3: {bad:?}\nall: {report:?}");
}

/// JPEG output too (the format asked by most clients).
#[test]
fn jpeg_output() {
    let origin = Origin::start();
    for name in ["meadow_640.jpg", "meadow_640_swapped.jpg"] {
        origin.route(&format!("/{name}"), Reply::ok("image/jpeg", fixture(name)));
    }
    let edge = setup(&origin, "");
    let a = get(&edge.url("/meadow_640.jpg?width=400&format=jpeg"));
    let b = get(&edge.url("/meadow_640_swapped.jpg?width=400&format=jpeg"));
    assert_eq!((a.status, b.status), (200, 200));
    let d = mean_diff(&rgb(&a.body), &rgb(&b.body));
    assert!(d <= 3.0, "swapped red/green as JPEG: {d}");
}

/// Item 2: grey with a grey profile (ghostscript's sGray, ICC v2) against libvips' own
/// conversion of the same file (`vips icc_transform ... srgb --embedded`); CMYK JPEGs
/// (Adobe-inverted, as libvips writes them) with a v4 LUT profile against the sRGB original
/// (<= 9), and with a v2 LUT profile of 187 KB (three APP2 chunks) against libvips' conversion.
#[test]
fn grey_and_cmyk_profiles() {
    let origin = Origin::start();
    for name in [
        "meadow_640.jpg",
        "meadow_640_grey_sgray.jpg",
        "meadow_640_grey_sgray_ref.jpg",
        "meadow_640_cmyk.jpg",
        "meadow_320_cmyk_swop.jpg",
        "meadow_320_cmyk_swop_ref.jpg",
    ] {
        origin.route(&format!("/{name}"), Reply::ok("image/jpeg", fixture(name)));
    }
    let edge = setup(&origin, "");
    let mut report = Vec::new();
    for width in [320, 160] {
        let reference = get_png(
            &edge,
            &format!("/meadow_640_grey_sgray_ref.jpg?width={width}"),
        );
        let out = get_png(&edge, &format!("/meadow_640_grey_sgray.jpg?width={width}"));
        report.push((format!("grey {width}"), mean_diff(&out, &reference), 3.0));
        let reference = get_png(&edge, &format!("/meadow_640.jpg?width={width}"));
        let out = get_png(&edge, &format!("/meadow_640_cmyk.jpg?width={width}"));
        report.push((format!("cmyk v4 {width}"), mean_diff(&out, &reference), 9.0));
    }
    // SWOP's gamut loses more: libvips (lcms) itself is 9.6 from the original on this file, so
    // the reference is libvips' conversion of the CMYK file
    let reference = get_png(&edge, "/meadow_320_cmyk_swop_ref.jpg?width=160");
    let out = get_png(&edge, "/meadow_320_cmyk_swop.jpg?width=160");
    report.push(("cmyk swop v2 160".into(), mean_diff(&out, &reference), 3.0));
    let bad: Vec<_> = report.iter().filter(|(_, d, max)| d > max).collect();
    assert!(bad.is_empty(), "over: {bad:?}\nall: {report:?}");
}

/// Item 3: `transform.color_profile: keep` leaves an RGB source's pixels in its colour space
/// and embeds the same profile bytes in JPEG, PNG and WebP output (exiftool extracts it, a
/// reader nobody here wrote); AVIF output, which cannot carry it, is converted to sRGB instead.
/// Without the profile applied the pixels differ from the sRGB original by as much as before
/// colour management (this is what the default `srgb` fixes, so the comparison bites).
#[test]
fn keep_embeds_the_source_profile() {
    let origin = Origin::start();
    for name in ["meadow_640.jpg", "meadow_640_adobergb.jpg"] {
        origin.route(&format!("/{name}"), Reply::ok("image/jpeg", fixture(name)));
    }
    origin.route(
        "/meadow_200_prophoto.png",
        Reply::ok("image/png", fixture("meadow_200_prophoto.png")),
    );
    let edge = setup(&origin, "  color_profile: keep\n");
    let dir = tempfile::tempdir().unwrap();
    let icc_of = |bytes: &[u8], name: &str| -> Vec<u8> {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = std::process::Command::new("exiftool")
            .args(["-b", "-icc_profile"])
            .arg(&path)
            .output()
            .expect("exiftool (libimage-exiftool-perl)");
        out.stdout
    };
    let profile_of = |name: &str| icc_of(&fixture(name), name);
    let adobe = profile_of("meadow_640_adobergb.jpg");
    let prophoto = profile_of("meadow_200_prophoto.png");
    assert!(adobe.len() > 1000 && prophoto.len() > 1000);
    let reference = get_png(&edge, "/meadow_640.jpg?width=400");
    for format in ["jpeg", "png", "webp"] {
        let r = get(&edge.url(&format!(
            "/meadow_640_adobergb.jpg?width=400&format={format}"
        )));
        assert_eq!(r.status, 200, "{format}: {}", r.text());
        assert_eq!(icc_of(&r.body, &format!("out.{format}")), adobe, "{format}");
        let d = mean_diff(&rgb(&r.body), &reference);
        assert!(d > 8.0, "{format}: pixels look converted ({d})");
        let r = get(&edge.url(&format!(
            "/meadow_200_prophoto.png?width=100&format={format}"
        )));
        assert_eq!(
            icc_of(&r.body, &format!("pp.{format}")),
            prophoto,
            "{format}"
        );
    }
    // an untagged source gets no profile
    let r = get(&edge.url("/meadow_640.jpg?width=400&format=jpeg"));
    assert!(icc_of(&r.body, "plain.jpg").is_empty());
    let r = get(&edge.url("/meadow_640_adobergb.jpg?width=400&format=avif"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(icc_of(&r.body, "out.avif").is_empty());
}

/// A bad value is refused by `imgedge -t`, naming the key.
#[test]
fn a_bad_color_profile_value_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imgedge.yaml");
    std::fs::write(
        &path,
        "upstreams:\n  o: {peers: [\"127.0.0.1:1\"]}\nroutes:\n  - {prefix: /, upstream: o}\ntransform:\n  color_profile: p3\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("transform.color_profile") && text.contains("srgb, keep"),
        "{text}"
    );
}
