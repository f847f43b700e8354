//! The Cloudflare URL API end to end (issue 19): every option name is either implemented or
//! refused with 400 before the origin is asked; the path form `/cdn-cgi/image/OPTIONS/SOURCE`
//! shares the query form's cache entry; each operation changes the output as documented,
//! checked against references made another way (the `image` crate's own operations on the
//! untouched output, or documented formulas).

mod common;
use common::*;
use image::{DynamicImage, GenericImageView, RgbImage};

const SRC: &str = "/seeding_640x360.jpg";

fn setup(extra: &str) -> (Origin, Edge) {
    let origin = Origin::start();
    for (name, ct) in [
        ("seeding_640x360.jpg", "image/jpeg"),
        ("friends_orient6_386x256.jpg", "image/jpeg"),
        ("emerald_alpha_300.png", "image/png"),
    ] {
        origin.route(&format!("/{name}"), Reply::ok(ct, fixture(name)));
        origin.route(&format!("/{name}?v=1"), Reply::ok(ct, fixture(name)));
    }
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\ntransform:\n  presets:\n    moody: {{width: 100, blur: 4, saturation: 0.5, rotate: 90}}\n{extra}",
        origin.peer()
    ));
    (origin, edge)
}

fn img(edge: &Edge, q: &str) -> RgbImage {
    let r = get(&edge.url(&format!("{SRC}?{q}&format=png")));
    assert_eq!(r.status, 200, "{q}: {}", r.text());
    image::load_from_memory(&r.body).unwrap().to_rgb8()
}

/// Mean absolute difference per channel (0-255).
fn mean_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (*x as i32 - *y as i32).unsigned_abs() as u64)
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

fn map(a: &RgbImage, f: impl Fn(f32) -> f32) -> RgbImage {
    let mut out = a.clone();
    for v in out.iter_mut() {
        *v = f(*v as f32).round().clamp(0.0, 255.0) as u8;
    }
    out
}

#[test]
fn unsupported_options_and_bad_values_are_400_before_the_origin() {
    let (origin, edge) = setup("");
    for q in [
        "segment=foreground",
        "gravity=face&width=100&height=100&fit=cover",
        "zoom=0.5",
        "slow-connection-quality=50",
        "origin-auth=share-publicly",
    ] {
        let r = get(&edge.url(&format!("{SRC}?{q}")));
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert!(
            r.text().contains("not supported by imgedge"),
            "{q}: {}",
            r.text()
        );
    }
    for q in [
        "blur=251",
        "blur=-1",
        "sharpen=11",
        "rotate=45",
        "flip=x",
        "trim=1;2;3",
        "trim.top=-1",
        "border=width:x",
        "border=color:red",
        "brightness=-1",
        "contrast=abc",
        "gamma=1e3",
        "saturation=11",
        "quality=ultra",
        "fit=stretch",
        "gravity=2x0.5",
        "compression=slow",
        "background=rgba(1,2,3,0.5)",
        "dpr=0.5",
    ] {
        let r = get(&edge.url(&format!("{SRC}?{q}")));
        assert_eq!(r.status, 400, "{q}: {}", r.text());
    }
    assert_eq!(origin.total_hits(), 0, "refused before any origin request");
    // other parameters still go to the origin untouched
    let r = get(&edge.url(&format!("{SRC}?width=100&v=1")));
    assert_eq!(r.status, 200);
    assert_eq!(origin.hits(&format!("{SRC}?v=1")), 1);
}

#[test]
fn path_form_shares_the_query_forms_entry() {
    let (origin, edge) = setup("");
    let a =
        get(&edge
            .url("/cdn-cgi/image/width=200,fit=cover,height=100,format=png/seeding_640x360.jpg"));
    assert_eq!((a.status, a.cache()), (200, "MISS"), "{}", a.text());
    let b = get(&edge.url(&format!("{SRC}?format=png&height=100&width=200&fit=cover")));
    assert_eq!((b.status, b.cache()), (200, "HIT"));
    assert_eq!(a.body, b.body, "identical bytes");
    assert_eq!(
        image::load_from_memory(&a.body).unwrap().dimensions(),
        (200, 100)
    );
    assert_eq!(origin.hits(SRC), 1);
    // the SOURCE's query goes to the origin; a colour with commas inside rgb() is one option
    let c =
        get(&edge.url("/cdn-cgi/image/width=50,background=rgb(0,0,255)/seeding_640x360.jpg?v=1"));
    assert_eq!(c.status, 200, "{}", c.text());
    assert_eq!(origin.hits(&format!("{SRC}?v=1")), 1);
    // unknown or unsupported options, no option, no SOURCE: 400 before the origin
    let before = origin.total_hits();
    for p in [
        "/cdn-cgi/image/width=50,colour=red/seeding_640x360.jpg",
        "/cdn-cgi/image/width=50,zoom=1/seeding_640x360.jpg",
        "/cdn-cgi/image//seeding_640x360.jpg",
        "/cdn-cgi/image/width=50",
        "/cdn-cgi/image/width=50&x=1/seeding_640x360.jpg",
    ] {
        let r = get(&edge.url(p));
        assert_eq!(r.status, 400, "{p}: {}", r.text());
    }
    assert_eq!(origin.total_hits(), before);
}

#[test]
fn remote_source_is_refused_without_any_connection() {
    let (origin, edge) = setup("");
    let bait = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    bait.set_nonblocking(true).unwrap();
    let port = bait.local_addr().unwrap().port();
    for src in [
        format!("https://127.0.0.1:{port}/x.jpg"),
        format!("http://127.0.0.1:{port}/x.jpg"),
        format!("http%3A%2F%2F127.0.0.1:{port}/x.jpg"),
    ] {
        let r = get(&edge.url(&format!("/cdn-cgi/image/width=100/{src}")));
        assert_eq!(r.status, 403, "{src}: {}", r.text());
        assert!(r.text().contains("remote SOURCE"), "{}", r.text());
    }
    assert!(bait.accept().is_err(), "no connection was made");
    assert_eq!(origin.total_hits(), 0);
}

#[test]
fn rotate_and_flip_match_the_image_crate() {
    let (_o, edge) = setup("");
    let plain = img(&edge, "width=320");
    assert_eq!(plain.dimensions(), (320, 180));
    // width and height refer to the rotated axes: 360x640 once turned, width=180 is half
    let r90 = img(&edge, "width=180&rotate=90");
    assert_eq!(r90.dimensions(), (180, 320));
    let d = mean_diff(&r90, &image::imageops::rotate90(&plain));
    assert!(d < 1.5, "rotate=90 vs rotate90: {d}");
    let d = mean_diff(
        &img(&edge, "width=180&rotate=270"),
        &image::imageops::rotate270(&plain),
    );
    assert!(d < 1.5, "rotate=270: {d}");
    let d = mean_diff(
        &img(&edge, "width=320&rotate=180"),
        &image::imageops::rotate180(&plain),
    );
    assert!(d < 1.5, "rotate=180: {d}");
    assert_eq!(img(&edge, "width=320&rotate=90").dimensions(), (320, 569));
    let d = mean_diff(
        &img(&edge, "width=320&flip=h"),
        &image::imageops::flip_horizontal(&plain),
    );
    assert!(d < 1.5, "flip=h: {d}");
    let d = mean_diff(
        &img(&edge, "width=320&flip=v"),
        &image::imageops::flip_vertical(&plain),
    );
    assert!(d < 1.5, "flip=v: {d}");
    // flip before rotate (Cloudflare's order)
    let want = image::imageops::rotate90(&image::imageops::flip_horizontal(&plain));
    let d = mean_diff(&img(&edge, "width=180&flip=h&rotate=90"), &want);
    assert!(d < 1.5, "flip=h then rotate=90: {d}");
    assert!(mean_diff(&r90, &want) > 10.0, "the order matters");
}

#[test]
fn rotate_comes_after_the_exif_orientation() {
    let (_o, edge) = setup("");
    let get_png = |q: &str| {
        let r = get(&edge.url(&format!("/friends_orient6_386x256.jpg?{q}&format=png")));
        assert_eq!(r.status, 200, "{}", r.text());
        image::load_from_memory(&r.body).unwrap().to_rgb8()
    };
    let upright = image::load_from_memory(&fixture("friends_upright_ref.png"))
        .unwrap()
        .to_rgb8();
    let plain = get_png("fit=scale-down");
    assert_eq!(plain.dimensions(), upright.dimensions());
    let turned = get_png("rotate=90");
    assert_eq!(turned.dimensions(), (upright.height(), upright.width()));
    let d = mean_diff(&turned, &image::imageops::rotate90(&upright));
    assert!(
        d < 4.0,
        "EXIF 6 then rotate=90 vs the upright reference turned: {d}"
    );
}

#[test]
fn trim_cuts_the_source_first() {
    let (_o, edge) = setup("");
    let full = img(&edge, "fit=scale-down");
    let t = img(&edge, "trim=10;20;30;40");
    assert_eq!(t.dimensions(), (580, 320));
    let want = image::imageops::crop_imm(&full, 40, 10, 580, 320).to_image();
    let d = mean_diff(&t, &want);
    assert!(d < 0.5, "trim vs crop: {d}");
    let t2 = img(
        &edge,
        "trim.top=10&trim.left=40&trim.width=580&trim.height=320",
    );
    assert_eq!(t2, t, "trim.* and trim= agree");
    // then resize: 580 wide scaled to 290
    assert_eq!(
        img(&edge, "trim=10;20;30;40&width=290").dimensions(),
        (290, 160)
    );
    // too much trim: a 422 (the first answer may be aborted once its header is gone)
    let url = edge.url(&format!("{SRC}?trim=0;400;0;400"));
    if let Ok(r) = try_get_with(&url, &[]) {
        assert_eq!(r.status, 422, "{}", r.text());
    }
    let r = get(&url);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("trim leaves nothing"), "{}", r.text());
    // not remembered against the source: other variants still work
    assert_eq!(get(&edge.url(&format!("{SRC}?width=10"))).status, 200);
}

#[test]
fn colour_adjustments_follow_their_formulas() {
    let (_o, edge) = setup("");
    let plain = img(&edge, "width=320");
    type Formula = Box<dyn Fn(f32) -> f32>;
    let cases: [(&str, Formula); 4] = [
        ("brightness=1.5", Box::new(|v| v * 1.5)),
        ("brightness=0.5", Box::new(|v| v * 0.5)),
        ("contrast=1.5", Box::new(|v| (v - 127.5) * 1.5 + 127.5)),
        ("gamma=2", Box::new(|v| 255.0 * (v / 255.0).powf(0.5))),
    ];
    for (q, f) in cases {
        let got = img(&edge, &format!("width=320&{q}"));
        let d = mean_diff(&got, &map(&plain, f));
        assert!(d < 0.6, "{q}: {d}");
        assert!(mean_diff(&got, &plain) > 5.0, "{q} changes the image");
    }
    // saturation=0 is the image crate's greyscale (Rec. 709 luma)
    let grey =
        DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(plain.clone()).to_luma8()).to_rgb8();
    let d = mean_diff(&img(&edge, "width=320&saturation=0"), &grey);
    assert!(d < 1.0, "saturation=0 vs to_luma8: {d}");
    // named quality levels are their numbers; baseline-jpeg is a baseline (SOF0) JPEG
    let q = |s: &str| get(&edge.url(&format!("{SRC}?width=100&{s}"))).body;
    assert_eq!(q("quality=low"), q("quality=50"));
    assert_eq!(q("quality=high"), q("quality=90"));
    let b = q("format=baseline-jpeg");
    assert!(b.windows(2).any(|w| w == [0xFF, 0xC0]), "SOF0 marker");
}

#[test]
fn blur_and_sharpen_match_references() {
    let (_o, edge) = setup("");
    let plain = img(&edge, "width=320");
    let blurred = img(&edge, "width=320&blur=20");
    let reference = image::imageops::blur(&plain, 10.0);
    let d = mean_diff(&blurred, &reference);
    assert!(d < 3.0, "blur=20 vs a Gaussian of sigma 10: {d}");
    assert!(
        mean_diff(&blurred, &plain) > 3.0 * d,
        "blur changes the image"
    );
    let sharp = img(&edge, "width=320&sharpen=4");
    // unsharp mask: v + 2 * (v - gaussian(sigma 1))
    let soft = image::imageops::blur(&plain, 1.0);
    let mut want = plain.clone();
    for (w, (p, s)) in want.iter_mut().zip(plain.iter().zip(soft.iter())) {
        *w = (*p as f32 + 2.0 * (*p as f32 - *s as f32))
            .round()
            .clamp(0.0, 255.0) as u8;
    }
    let d = mean_diff(&sharp, &want);
    assert!(d < 3.0, "sharpen=4 vs unsharp mask: {d}");
    assert!(mean_diff(&sharp, &plain) > 3.0, "sharpen changes the image");
}

#[test]
fn fit_gravity_border_background() {
    let (_o, edge) = setup("");
    // squeeze: the whole image stretched
    let sq = img(&edge, "width=200&height=200&fit=squeeze");
    let full = img(&edge, "fit=scale-down");
    let want = image::imageops::resize(&full, 200, 200, image::imageops::FilterType::CatmullRom);
    let d = mean_diff(&sq, &want);
    assert!(d < 3.0, "squeeze vs resize_exact: {d}");
    // focal gravity: 0x0 is left, 1x0.5 is right, 0.6x0.5 keeps x 204..564 of 640
    let cover = "width=100&height=100&fit=cover";
    assert_eq!(
        img(&edge, &format!("{cover}&gravity=0x0")),
        img(&edge, &format!("{cover}&gravity=left"))
    );
    assert_eq!(
        img(&edge, &format!("{cover}&gravity=1x0.5")),
        img(&edge, &format!("{cover}&gravity=right"))
    );
    let focal = img(&edge, &format!("{cover}&gravity=0.6x0.5"));
    let by_trim = img(&edge, "trim.left=204&trim.width=360&width=100&height=100");
    let d = mean_diff(&focal, &by_trim);
    assert!(d < 1.0, "focal 0.6x0.5 vs the same crop by trim: {d}");
    // border: around the output, dpr applied
    let b = img(&edge, "width=100&border=color:%23ff0000;width:5");
    assert_eq!(b.dimensions(), (110, 66));
    assert_eq!(b.get_pixel(0, 0).0, [255, 0, 0]);
    assert_eq!(b.get_pixel(109, 65).0, [255, 0, 0]);
    assert_ne!(b.get_pixel(55, 33).0, [255, 0, 0]);
    assert_eq!(
        img(&edge, "width=100&dpr=2&border=top:1;left:2").dimensions(),
        (204, 115)
    );
    // background: CSS rgb() on the pad
    let p = img(
        &edge,
        "width=200&height=200&fit=pad&background=rgb(0,0,255)",
    );
    assert_eq!(p.get_pixel(100, 0).0, [0, 0, 255]);
    // presets take the new options
    assert_eq!(img(&edge, "preset=moody").dimensions(), (100, 178));
}

#[test]
fn compression_fast_never_picks_avif() {
    let (_o, edge) = setup("  auto_avif: true\n");
    let accept = [("Accept", "image/avif,image/webp,*/*")];
    let r = get_with(&edge.url(&format!("{SRC}?width=100&format=auto")), &accept);
    assert_eq!(r.header("content-type"), Some("image/avif"));
    let r = get_with(
        &edge.url(&format!("{SRC}?width=100&format=auto&compression=fast")),
        &accept,
    );
    assert_eq!(r.header("content-type"), Some("image/webp"));
}
