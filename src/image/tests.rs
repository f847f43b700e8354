//! End-to-end tests of the pipeline (`pipeline::transform`) on the fixtures in
//! `<crate>/fixtures/` (or `tests/fixtures/`).

use crate::image::codec::{probe, sniff};
use crate::image::error::TransformError;
use crate::image::format::{negotiate, OutputFormat, SourceFormat};
use crate::image::ops::resize::resize;
use crate::image::ops::Rect;
use crate::image::params::{parse_query, Presets};
use crate::image::pipeline::{transform, Output};
use crate::image::pixels::Pixels;
use crate::image::spec::{Limits, TransformSpec};

/// Reads a fixture from `<crate>/fixtures/` or `<crate>/tests/fixtures/`.
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let root = env!("CARGO_MANIFEST_DIR");
    for dir in ["fixtures", "tests/fixtures"] {
        if let Ok(b) = std::fs::read(format!("{root}/{dir}/{name}")) {
            return b;
        }
    }
    panic!("fixture {name} not found in {root}/fixtures or {root}/tests/fixtures")
}

fn spec(q: &str) -> TransformSpec {
    parse_query(Some(q), &Limits::default(), &Presets::new())
        .unwrap()
        .transform
        .unwrap()
}

fn run(src: &[u8], q: &str) -> Result<Output, TransformError> {
    let s = spec(q);
    // The caller decides the format: "same as source" from the sniffed bytes. Bytes that do
    // not sniff are refused before the format matters.
    let negotiated = negotiate(s.format, None, true);
    let out = sniff(src).map_or(OutputFormat::Jpeg, |f| negotiated.resolve(f));
    transform(src, &s, out, &Limits::default())
}

fn decode_rgba(bytes: &[u8]) -> image::RgbaImage {
    image::load_from_memory(bytes).unwrap().to_rgba8()
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as i32 - *y as i32).unsigned_abs() as f64)
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn jpeg_resize_all_formats() {
    let src = fixture("seeding_640x360.jpg");
    for (f, magic) in [
        ("jpeg", &b"\xFF\xD8\xFF"[..]),
        ("png", b"\x89PNG"),
        ("webp", b"RIFF"),
    ] {
        let out = run(&src, &format!("w=320&format={f}")).unwrap();
        assert_eq!((out.width, out.height), (320, 180), "{f}");
        assert!(out.bytes.starts_with(magic), "{f}");
        let back = decode_rgba(&out.bytes);
        assert_eq!(back.dimensions(), (320, 180));
    }
    let out = run(&src, "w=64&format=avif").unwrap();
    assert_eq!(
        (out.format, out.width, out.height),
        (OutputFormat::Avif, 64, 36)
    );
    assert_eq!(&out.bytes[4..12], b"ftypavif");
    // no format param: same as source
    assert_eq!(run(&src, "w=100").unwrap().format, OutputFormat::Jpeg);
}

#[test]
fn fit_modes_on_real_image() {
    let src = fixture("seeding_640x360.jpg");
    let dims = |q: &str| {
        let o = run(&src, q).unwrap();
        (o.width, o.height)
    };
    assert_eq!(dims("w=200&h=200"), (200, 113));
    assert_eq!(dims("w=2000"), (640, 360)); // scale-down never enlarges
    assert_eq!(dims("w=1280&fit=contain"), (1280, 720));
    assert_eq!(dims("w=200&h=200&fit=cover&gravity=left"), (200, 200));
    assert_eq!(dims("w=1000&h=100&fit=crop"), (640, 100));
    assert_eq!(dims("w=300&h=300&fit=pad&background=%23ff0000"), (300, 300));
    assert_eq!(dims("w=100&dpr=2"), (200, 113));
    // pad of a JPEG: the padding is the background colour
    let o = run(&src, "w=300&h=300&fit=pad&background=ff0000&format=png").unwrap();
    let img = decode_rgba(&o.bytes);
    assert_eq!(img.get_pixel(150, 2).0, [255, 0, 0, 255]);
    // pad to an alpha format without background: transparent
    let o = run(&src, "w=300&h=300&fit=pad&format=png").unwrap();
    assert_eq!(decode_rgba(&o.bytes).get_pixel(150, 2).0[3], 0);
}

#[test]
fn exif_orientation_6_is_upright() {
    let src = fixture("friends_orient6_386x256.jpg");
    let reference = image::load_from_memory(&fixture("friends_upright_ref.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(reference.dimensions(), (256, 386));
    // no resize: pixel-identical up to decoder rounding
    let out = run(&src, "format=png").unwrap();
    assert_eq!((out.width, out.height), (256, 386));
    let got = image::load_from_memory(&out.bytes).unwrap().to_rgb8();
    let d = mean_abs_diff(got.as_raw(), reference.as_raw());
    assert!(d < 1.0, "mean abs diff {d}");
    // sideways would be far off: compare against the reference rotated back
    let sideways = image::imageops::rotate270(&reference);
    assert_eq!(sideways.dimensions(), (386, 256));
    // resized + cropped: same as resizing the upright reference
    let out = run(&src, "w=100&h=100&fit=cover&gravity=top&format=png").unwrap();
    let got = image::load_from_memory(&out.bytes).unwrap().to_rgb8();
    let p = Pixels {
        width: 256,
        height: 386,
        channels: 3,
        data: reference.into_raw(),
    };
    let want = resize(
        p,
        Rect {
            x: 0.0,
            y: 0.0,
            w: 256.0,
            h: 256.0,
        },
        100,
        100,
    )
    .unwrap();
    let d = mean_abs_diff(got.as_raw(), &want.data);
    assert!(d < 2.0, "mean abs diff {d}");
    // output carries no EXIF
    let out = run(&src, "w=100").unwrap();
    assert!(!out.bytes.windows(4).any(|w| w == b"Exif"));
}

#[test]
fn all_orientations_upright() {
    // encode a 4x2 image with distinct quadrants as JPEG, set each orientation, check dims
    let src = fixture("friends_orient6_386x256.jpg");
    let pos = src.windows(6).position(|w| w == b"Exif\0\0").unwrap();
    // the Orientation value is inside the first APP1; find the 0x0112 entry and rewrite it
    let tiff = pos + 6;
    let le = &src[tiff..tiff + 2] == b"II";
    for o in 1..=8u8 {
        let mut s = src.clone();
        let entry = (tiff..tiff + 200)
            .find(|&i| {
                if le {
                    s[i..i + 2] == [0x12, 0x01]
                } else {
                    s[i..i + 2] == [0x01, 0x12]
                }
            })
            .unwrap();
        if le {
            s[entry + 8] = o;
        } else {
            s[entry + 9] = o;
        }
        assert_eq!(probe(&s).unwrap().orientation, o);
        let out = run(&s, "w=50&format=png").unwrap();
        let h = if o >= 5 {
            (50.0 * 386.0f64 / 256.0).round() as u32
        } else {
            (50.0 * 256.0f64 / 386.0).round() as u32
        };
        assert_eq!((out.width, out.height), (50, h), "orientation {o}");
    }
}

#[test]
fn truncated_and_corrupt_data_is_an_error() {
    let src = fixture("seeding_640x360.jpg");
    for cut in [src.len() / 2, src.len() - 2, 700] {
        let e = run(&src[..cut], "w=100").unwrap_err();
        assert!(
            matches!(e, TransformError::Truncated | TransformError::Corrupt(_)),
            "cut {cut}: {e}"
        );
        assert_eq!(e.reason(), "bad_data");
    }
    assert_eq!(
        run(&src[..src.len() / 2], "w=100").unwrap_err(),
        TransformError::Truncated
    );
    // full size decode too (no DCT scaling)
    assert_eq!(
        run(&src[..src.len() / 2], "format=png").unwrap_err(),
        TransformError::Truncated
    );
    // progressive JPEG, truncated
    let img = image::load_from_memory(&src).unwrap().to_rgb8();
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_progressive(true).unwrap();
    c.set_quality(85).unwrap();
    let prog = c
        .compress_to_vec(turbojpeg::Image {
            pixels: img.as_raw().as_slice(),
            width: 640,
            pitch: 640 * 3,
            height: 360,
            format: turbojpeg::PixelFormat::RGB,
        })
        .unwrap();
    assert!(run(&prog, "w=100").is_ok());
    assert_eq!(
        run(&prog[..prog.len() * 2 / 3], "w=100").unwrap_err(),
        TransformError::Truncated
    );
    // corrupt entropy data
    let mut bad = src.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 64] {
        *b = 0xFF;
    }
    assert!(run(&bad, "w=100").is_err());
    // other formats
    for f in [
        "emerald_alpha_300.png",
        "aitzgorri_480.webp",
        "seeding_pan_anim_240.gif",
    ] {
        let s = fixture(f);
        let e = run(&s[..s.len() / 2], "w=100").unwrap_err();
        assert_eq!(e.reason(), "bad_data", "{f}: {e}");
    }
}

#[test]
fn not_an_image() {
    let e = run(b"<html><body>404</body></html>", "w=100").unwrap_err();
    assert_eq!(e, TransformError::NotAnImage);
    assert_eq!(e.reason(), "bad_data");
    assert!(run(b"", "w=100").is_err());
    assert!(run(b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00", "w=100").is_err());
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut c = kind.to_vec();
    c.extend_from_slice(data);
    out.extend_from_slice(&c);
    out.extend_from_slice(&crc32(&c).to_be_bytes());
}

/// A few-KB PNG claiming 20000x20000 RGBA (1.6 GB decoded).
fn png_bomb() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&20000u32.to_be_bytes());
    ihdr.extend_from_slice(&20000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &ihdr);
    // zlib header + a stored block of zeros (content is irrelevant: refused at the header)
    let mut idat = vec![0x78, 0x01, 0x00, 0x00, 0x10, 0xFF, 0xEF];
    idat.extend(std::iter::repeat_n(0u8, 4096));
    png_chunk(&mut png, b"IDAT", &idat);
    png_chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn png_bomb_is_refused_from_its_header() {
    let bomb = png_bomb();
    assert!(bomb.len() < 8192);
    let p = probe(&bomb).unwrap();
    assert_eq!((p.width, p.height), (20000, 20000));
    // Refused from the header: no pixel buffer is ever allocated (no timing asserted here;
    // speed is for the benches).
    let e = run(&bomb, "w=100").unwrap_err();
    assert_eq!(
        e,
        TransformError::TooManyPixels {
            w: 20000,
            h: 20000,
            max: Limits::default().max_source_pixels
        }
    );
    assert_eq!(e.reason(), "bomb");
    // a JPEG header claiming 65535x65535 likewise
    let mut jpeg = b"\xFF\xD8\xFF\xC0\x00\x11\x08\xFF\xFF\xFF\xFF\x03".to_vec();
    jpeg.extend_from_slice(&[1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    assert_eq!(run(&jpeg, "w=100").unwrap_err().reason(), "bomb");
}

#[test]
fn too_large_and_output_limits() {
    let src = fixture("seeding_640x360.jpg");
    let limits = Limits {
        max_source_bytes: 1000,
        ..Limits::default()
    };
    let e = transform(&src, &spec("w=10"), OutputFormat::Jpeg, &limits).unwrap_err();
    assert_eq!(
        e,
        TransformError::TooLarge {
            bytes: src.len() as u64,
            max: 1000
        }
    );
    assert_eq!(e.reason(), "too_big");
    let limits = Limits {
        max_output_pixels: 1000,
        ..Limits::default()
    };
    let e = transform(&src, &spec("format=png"), OutputFormat::Jpeg, &limits).unwrap_err();
    assert_eq!(e.reason(), "too_big");
}

#[test]
fn alpha_handling() {
    let src = fixture("emerald_alpha_300.png");
    // WebP and PNG keep alpha
    for f in ["webp", "png"] {
        let out = run(&src, &format!("w=150&format={f}")).unwrap();
        let img = decode_rgba(&out.bytes);
        assert!(img.pixels().any(|p| p.0[3] == 0), "{f}");
        assert!(img.pixels().any(|p| p.0[3] == 255), "{f}");
    }
    // JPEG: flattened onto white by default, or onto the background
    let out = run(&src, "w=150&format=jpeg").unwrap();
    let img = decode_rgba(&out.bytes);
    let corner = img.get_pixel(0, 0).0;
    assert!(
        corner[0] > 245 && corner[1] > 245 && corner[2] > 245,
        "{corner:?}"
    );
    let out = run(&src, "w=150&format=jpeg&background=000").unwrap();
    let corner = decode_rgba(&out.bytes).get_pixel(0, 0).0;
    assert!(
        corner[0] < 10 && corner[1] < 10 && corner[2] < 10,
        "{corner:?}"
    );
    // AVIF with alpha
    let out = run(&src, "w=40&format=avif").unwrap();
    assert_eq!(&out.bytes[4..12], b"ftypavif");
}

#[test]
fn gif_first_frame_and_webp_source() {
    let out = run(&fixture("seeding_pan_anim_240.gif"), "w=120").unwrap();
    assert_eq!(
        (out.format, out.width, out.height),
        (OutputFormat::Png, 120, 80)
    );
    let out = run(&fixture("aitzgorri_480.webp"), "w=240&h=240&fit=cover").unwrap();
    assert_eq!(
        (out.format, out.width, out.height),
        (OutputFormat::Webp, 240, 240)
    );
}

/// The caller decides the format; the result says what the source's bytes were, so that the
/// proxy can log a `Content-Type` that said otherwise.
#[test]
fn output_reports_the_sniffed_source_format() {
    let png = fixture("emerald_alpha_300.png");
    let out = transform(&png, &spec("w=50"), OutputFormat::Jpeg, &Limits::default()).unwrap();
    assert_eq!(
        (out.source, out.format),
        (SourceFormat::Png, OutputFormat::Jpeg)
    );
}

#[test]
fn never_panics_on_garbage() {
    let src = fixture("seeding_640x360.jpg");
    let png = fixture("emerald_alpha_300.png");
    let mut seed = 0x1234_5678u32;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for base in [&src, &png] {
        for _ in 0..20 {
            let mut s = base[..base.len().min(6000)].to_vec();
            for _ in 0..8 {
                let i = rnd() as usize % s.len();
                s[i] = rnd() as u8;
            }
            let _ = run(&s, "w=50");
        }
    }
}
