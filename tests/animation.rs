//! Animated GIF and WebP through the proxy, against a real origin on loopback: the output's
//! frames, delays, loop count and frame sizes read back with the `image` crate's decoders;
//! `anim=false`; `format=auto`; the animation limits, refused from the header.
//!
//! The sources (tests/fixtures/LICENSES.md): 6 frames of 240x160, delays 50, 100, ... 300 ms,
//! played 4 times (a GIF's NETSCAPE2.0 repeat count 3; the WebP's ANIM loop count 4), the
//! WebP made from the GIF by libvips.

mod common;
use common::*;
use image::AnimationDecoder;
use std::io::Cursor;

const GIF: &str = "seeding_pan_anim6_240x160.gif";
const WEBP: &str = "seeding_pan_anim6_240x160.webp";
const DELAYS: [u32; 6] = [50, 100, 150, 200, 250, 300];

fn setup(extra: &str) -> (Origin, Edge) {
    let origin = Origin::start();
    origin.route(&format!("/{GIF}"), Reply::ok("image/gif", fixture(GIF)));
    origin.route(&format!("/{WEBP}"), Reply::ok("image/webp", fixture(WEBP)));
    origin.route(
        "/bomb.gif",
        Reply::ok("image/gif", bomb(1000, 1000, 10_000)),
    );
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\n{extra}",
        origin.peer()
    ));
    (origin, edge)
}

/// A GIF of `frames` 1x1 frames on a `w` x `h` screen, looping forever: a few bytes per frame.
fn bomb(w: u16, h: u16, frames: u32) -> Vec<u8> {
    let mut b = b"GIF89a".to_vec();
    b.extend_from_slice(&w.to_le_bytes());
    b.extend_from_slice(&h.to_le_bytes());
    b.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 255, 255, 255]);
    b.extend_from_slice(b"\x21\xFF\x0bNETSCAPE2.0\x03\x01\x00\x00\x00");
    for _ in 0..frames {
        b.extend_from_slice(&[0x21, 0xF9, 4, 0, 10, 0, 0, 0]);
        b.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 0x01, 0]);
    }
    b.push(0x3B);
    b
}

/// An animation as decoded: each frame's size and delay (ms), and how often it plays (0 =
/// forever).
#[derive(Debug, PartialEq)]
struct Anim {
    frames: Vec<((u32, u32), u32)>,
    plays: u32,
}

fn frames_of(frames: image::Frames) -> Vec<((u32, u32), u32)> {
    frames
        .map(|f| {
            let f = f.expect("frame decodes");
            let (n, d) = f.delay().numer_denom_ms();
            (f.buffer().dimensions(), n / d)
        })
        .collect()
}

/// Decodes an animated GIF or WebP (panics on anything else).
fn anim(r: &Resp) -> Anim {
    let b = &r.body;
    if b.starts_with(b"GIF8") {
        let d = image::codecs::gif::GifDecoder::new(Cursor::new(b)).unwrap();
        // the image crate reports a GIF's NETSCAPE2.0 repeat count: plays = repeats + 1
        let plays = match d.loop_count() {
            image::metadata::LoopCount::Infinite => 0,
            image::metadata::LoopCount::Finite(n) => n.get() + 1,
        };
        Anim {
            frames: frames_of(d.into_frames()),
            plays,
        }
    } else {
        let d = image::codecs::webp::WebPDecoder::new(Cursor::new(b))
            .unwrap_or_else(|e| panic!("not a WebP ({e}): {}", r.text()));
        assert!(d.has_animation(), "a still WebP");
        let plays = match d.loop_count() {
            image::metadata::LoopCount::Infinite => 0,
            image::metadata::LoopCount::Finite(n) => n.get(),
        };
        Anim {
            frames: frames_of(d.into_frames()),
            plays,
        }
    }
}

/// Six frames of `size` with the source's delays, played 4 times.
fn expected(size: (u32, u32)) -> Anim {
    Anim {
        frames: DELAYS.iter().map(|d| (size, *d)).collect(),
        plays: 4,
    }
}

fn ok(edge: &Edge, path: &str, accept: &str) -> Resp {
    let r = get_with(&edge.url(path), &[("Accept", accept)]);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r
}

#[test]
fn sources_read_back_as_described() {
    // the fixtures themselves, so that what follows compares with the right numbers
    let (_o, edge) = setup("");
    for f in [GIF, WEBP] {
        let r = ok(&edge, &format!("/{f}"), "*/*");
        assert_eq!(anim(&r), expected((240, 160)), "{f}");
    }
}

#[test]
fn gif_and_webp_stay_animated_every_frame_resized_alike() {
    let (_o, edge) = setup("");
    for (src, ct) in [(GIF, "image/gif"), (WEBP, "image/webp")] {
        let r = ok(&edge, &format!("/{src}?width=120"), "*/*");
        assert_eq!(r.header("content-type"), Some(ct), "{src}");
        assert_eq!(anim(&r), expected((120, 80)), "{src}");
        // cropped, then turned: width and height refer to the rotated axes
        let r = ok(
            &edge,
            &format!("/{src}?width=64&height=64&fit=cover"),
            "*/*",
        );
        assert_eq!(anim(&r), expected((64, 64)), "{src} cover");
        let r = ok(
            &edge,
            &format!("/{src}?height=120&rotate=90&flip=h&brightness=1.2"),
            "*/*",
        );
        assert_eq!(anim(&r), expected((80, 120)), "{src} rotate");
        // GIF <-> WebP
        let r = ok(&edge, &format!("/{src}?width=96&format=webp"), "*/*");
        assert_eq!(r.header("content-type"), Some("image/webp"));
        assert_eq!(anim(&r), expected((96, 64)), "{src} as WebP");
    }
}

#[test]
fn frames_keep_their_pixels_in_order() {
    // the source pans across a photo: each output frame is its own source frame, resized
    let (_o, edge) = setup("");
    let src = image::codecs::gif::GifDecoder::new(Cursor::new(fixture(GIF))).unwrap();
    let src: Vec<_> = src
        .into_frames()
        .map(|f| f.unwrap().into_buffer())
        .collect();
    let r = ok(
        &edge,
        &format!("/{GIF}?width=240&format=webp&quality=95"),
        "*/*",
    );
    let d = image::codecs::webp::WebPDecoder::new(Cursor::new(&r.body)).unwrap();
    let out: Vec<_> = d.into_frames().map(|f| f.unwrap().into_buffer()).collect();
    assert_eq!(out.len(), src.len());
    let diff = |a: &image::RgbaImage, b: &image::RgbaImage| {
        let s: u64 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| (*x as i64 - *y as i64).unsigned_abs())
            .sum();
        s as f64 / a.as_raw().len() as f64
    };
    for (i, o) in out.iter().enumerate() {
        let own = diff(o, &src[i]);
        assert!(
            own < 6.0,
            "frame {i}: mean difference {own} from its source"
        );
        if i > 0 {
            let prev = diff(o, &src[i - 1]);
            assert!(
                own < prev,
                "frame {i} is its own ({own}), not the previous ({prev})"
            );
        }
    }
}

#[test]
fn anim_false_gives_the_first_frame_as_a_still() {
    let (_o, edge) = setup("");
    let first = image::load_from_memory(&fixture(GIF)).unwrap();
    // no format: a GIF without its animation is a PNG (as before), a WebP a still WebP
    let r = ok(&edge, &format!("/{GIF}?width=120&anim=false"), "*/*");
    assert_eq!(r.header("content-type"), Some("image/png"));
    let still = image::load_from_memory(&r.body).unwrap();
    assert_eq!((still.width(), still.height()), (120, 80));
    let r = ok(&edge, &format!("/{WEBP}?width=120&anim=false"), "*/*");
    assert_eq!(r.header("content-type"), Some("image/webp"));
    let d = image::codecs::webp::WebPDecoder::new(Cursor::new(&r.body)).unwrap();
    assert!(!d.has_animation());
    // a still format asked by name: the first frame (as Cloudflare serves it)
    let r = ok(&edge, &format!("/{GIF}?format=png"), "*/*");
    let png = image::load_from_memory(&r.body).unwrap().to_rgba8();
    assert_eq!(
        png.as_raw(),
        first.to_rgba8().as_raw(),
        "the first frame, untouched"
    );
    let r = ok(
        &edge,
        &format!("/{GIF}?width=120&format=webp&anim=false"),
        "*/*",
    );
    let d = image::codecs::webp::WebPDecoder::new(Cursor::new(&r.body)).unwrap();
    assert!(!d.has_animation());
    // anim=false is its own cache entry
    let r = ok(&edge, &format!("/{GIF}?width=120"), "*/*");
    assert_eq!(r.header("content-type"), Some("image/gif"));
}

#[test]
fn format_auto_picks_an_animated_format_the_client_takes() {
    let (_o, edge) = setup("");
    for src in [GIF, WEBP] {
        for (accept, ct) in [
            (
                "image/avif,image/webp,image/apng,image/*,*/*;q=0.8",
                "image/webp",
            ),
            ("image/webp,*/*", "image/webp"),
            ("image/avif,*/*", "image/gif"),
            ("image/*,*/*", "image/gif"),
            ("", "image/gif"),
        ] {
            let path = format!("/{src}?width=120&format=auto");
            let r = ok(&edge, &path, accept);
            assert_eq!(r.header("content-type"), Some(ct), "{src} Accept: {accept}");
            assert_eq!(r.header("vary"), Some("Accept"), "{src} Accept: {accept}");
            assert_eq!(anim(&r), expected((120, 80)), "{src} Accept: {accept}");
            // the same Accept again is a hit of the same format
            let again = ok(&edge, &path, accept);
            assert_eq!(
                (again.cache(), again.header("content-type")),
                ("HIT", Some(ct)),
                "{src} Accept: {accept}"
            );
        }
    }
}

#[test]
fn a_crafted_header_with_10000_frames_is_refused_before_decoding() {
    let (origin, edge) = setup("");
    let before = edge.metric("imgedge_process_resident_bytes");
    let url = edge.url("/bomb.gif?width=100");
    // the first answer may be cut (the status line was sent); the repeat is the 422
    if let Ok(r) = try_get_with(&url, &[]) {
        assert_eq!(r.status, 422, "{}", r.text());
    }
    let r = get(&url);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text().contains("10000 frames") && r.text().contains("max_animation_frames"),
        "{}",
        r.text()
    );
    assert_eq!(
        origin.hits("/bomb.gif"),
        1,
        "the repeat is answered up front"
    );
    // 10 000 frames of a 1000x1000 screen would be 40 GB of RGBA: none was made
    let after = edge.metric("imgedge_process_resident_bytes");
    assert!(
        after - before < 64e6,
        "resident memory grew from {before} to {after}"
    );
    assert!(edge.metric("imgedge_transforms_refused_total{reason=\"bomb\"}") >= 1.0);
    // its first frame alone is still made (refused per variant, not per source)
    let r = get(&edge.url("/bomb.gif?width=100&anim=false"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/png"));
}

#[test]
fn max_animation_pixels_counts_every_frame() {
    // 6 frames of 240x160 = 230 400 pixels
    let (_o, edge) = setup("transform:\n  max_animation_pixels: 200000\n");
    let url = edge.url(&format!("/{WEBP}?width=100"));
    let _ = try_get_with(&url, &[]);
    let r = get(&url);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("max_animation_pixels"), "{}", r.text());
    let (_o, edge) = setup("transform:\n  max_animation_frames: 5\n");
    let url = edge.url(&format!("/{GIF}?width=100"));
    let _ = try_get_with(&url, &[]);
    let r = get(&url);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("max_animation_frames"), "{}", r.text());
    let (_o, edge) = setup("transform:\n  max_animation_frames: 6\n");
    let r = ok(&edge, &format!("/{GIF}?width=100"), "*/*");
    assert_eq!(anim(&r).frames.len(), 6);
}
