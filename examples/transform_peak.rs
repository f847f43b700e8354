//! Calibrates `image::cost`: runs each transform in a process of its own and prints the
//! estimate beside the measured peak (the rise of VmHWM over VmRSS before the job, plus the
//! source bytes already held).
//!
//! `cargo run --release --example transform_peak -- DIR` writes the sources into DIR (once;
//! some are large) and prints one line per job. The jobs run one at a time.

use imgedge::image::format::OutputFormat;
use imgedge::image::params::{parse_query, Presets};
use imgedge::image::pipeline::prepare;
use imgedge::image::spec::Limits;
use std::path::Path;
use std::process::Command;

const JOBS: &[(&str, &str, &str)] = &[
    ("jpeg_12mp.jpg", "w=400", "webp"),
    ("jpeg_12mp.jpg", "w=1600", "jpeg"),
    ("jpeg_12mp.jpg", "q=90", "jpeg"),
    ("jpeg_12mp.jpg", "q=90", "webp"),
    ("jpeg_12mp.jpg", "q=90", "png"),
    ("jpeg_12mp.jpg", "w=3000&h=3000&fit=pad", "png"),
    ("jpeg_progressive_12mp.jpg", "w=400", "webp"),
    ("jpeg_progressive_12mp.jpg", "w=2000", "png"),
    ("jpeg_cmyk_3mp.jpg", "w=400", "jpeg"),
    ("jpeg_640.jpg", "w=4096&fit=contain", "jpeg"),
    ("png16_rgba_12mp.png", "w=400", "png"),
    ("png16_rgba_12mp.png", "w=400", "jpeg"),
    ("png8_rgb_12mp.png", "w=800", "webp"),
    ("png8_grey_12mp.png", "w=400", "jpeg"),
    ("webp_lossy_12mp.webp", "w=400", "jpeg"),
    ("webp_lossless_rgba_4mp.webp", "w=400", "png"),
    ("gif_1500.gif", "w=400", "png"),
    ("jpeg_4mp.jpg", "q=100", "avif"),
    ("jpeg_16mp.jpg", "q=100", "avif"),
    ("png16_rgba_49mp.png", "w=400", "jpeg"),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("job") if args.len() == 5 => job(&args[2], &args[3], &args[4]),
        Some(dir) => drive(Path::new(dir)),
        None => eprintln!("usage: transform_peak DIR"),
    }
}

fn drive(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create DIR");
    make_sources(dir);
    println!("| source | query | output | estimate MB | measured MB | estimate/measured |");
    println!("|---|---|---|---|---|---|");
    let me = std::env::current_exe().expect("own path");
    for (file, query, format) in JOBS {
        let path = dir.join(file);
        let out = Command::new(&me)
            .args(["job", &path.to_string_lossy(), query, format])
            .output()
            .expect("run a job");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut f = text
            .split_whitespace()
            .map(|v| v.parse::<f64>().unwrap_or(0.0));
        let (est, measured) = (f.next().unwrap_or(0.0), f.next().unwrap_or(0.0));
        let mb = |b: f64| b / 1e6;
        println!(
            "| {file} | {query} | {format} | {:.0} | {:.0} | {:.2} |",
            mb(est),
            mb(measured),
            est / measured.max(1.0)
        );
        if !out.status.success() {
            eprintln!("{file} {query}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// One job: prints the estimate and the measured peak, in bytes.
fn job(file: &str, query: &str, format: &str) {
    let src = std::fs::read(file).expect("read the source");
    let limits = Limits {
        max_source_bytes: 1 << 30,
        ..Limits::default()
    };
    let spec = parse_query(
        Some(&format!("{query}&format={format}")),
        &limits,
        &Presets::new(),
    )
    .expect("query")
    .transform
    .expect("a transform");
    let format = OutputFormat::parse(format).expect("format");
    let before = status_kib("VmRSS:") * 1024;
    let prepared = prepare(&src, &spec, format, &limits).expect("prepare");
    let estimate = prepared.peak_bytes();
    let out = prepared.run(&src, &spec, &limits).expect("transform");
    let peak = status_kib("VmHWM:") * 1024;
    assert!(!out.bytes.is_empty());
    println!(
        "{estimate} {}",
        peak.saturating_sub(before) + src.len() as u64
    );
}

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("a field of /proc/self/status")
}

/// A photo-like sample: smooth gradients with some noise (so that encoders work as on photos).
fn sample(x: u32, y: u32, c: u32, seed: &mut u32) -> u8 {
    *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
    let noise = (*seed >> 27) as i32 - 16;
    let base = ((x / 7 + y / 5 + c * 60) % 256) as i32;
    (base + noise).clamp(0, 255) as u8
}

fn rgb(w: u32, h: u32, channels: u32) -> Vec<u8> {
    let mut seed = 1;
    let mut v = Vec::with_capacity((w * h * channels) as usize);
    for y in 0..h {
        for x in 0..w {
            for c in 0..channels {
                v.push(if c == 3 {
                    200
                } else {
                    sample(x, y, c, &mut seed)
                });
            }
        }
    }
    v
}

fn jpeg(w: u32, h: u32, progressive: bool, cmyk: bool) -> Vec<u8> {
    use turbojpeg::{Compressor, Image, PixelFormat, Subsamp};
    let (format, c) = if cmyk {
        (PixelFormat::CMYK, 4)
    } else {
        (PixelFormat::RGB, 3)
    };
    let px = rgb(w, h, c);
    let mut comp = Compressor::new().expect("compressor");
    comp.set_quality(90).expect("quality");
    comp.set_subsamp(Subsamp::Sub2x2).expect("subsamp");
    comp.set_progressive(progressive).expect("progressive");
    if cmyk {
        comp.set_colorspace(turbojpeg::Colorspace::YCCK)
            .expect("colorspace");
    }
    let image = Image {
        pixels: &px[..],
        width: w as usize,
        pitch: (w * c) as usize,
        height: h as usize,
        format,
    };
    comp.compress_to_vec(image).expect("jpeg")
}

fn png(w: u32, h: u32) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    use image::{ImageBuffer, ImageFormat, Luma, Rgb, Rgba};
    let encode = |img: image::DynamicImage| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).expect("png");
        out.into_inner()
    };
    let mut seed = 7;
    let deep: ImageBuffer<Rgba<u16>, Vec<u16>> = ImageBuffer::from_fn(w, h, |x, y| {
        let mut s = |c| sample(x, y, c, &mut seed) as u16 * 257;
        Rgba([s(0), s(1), s(2), 60000])
    });
    let flat: ImageBuffer<Rgb<u8>, Vec<u8>> =
        ImageBuffer::from_raw(w, h, rgb(w, h, 3)).expect("rgb");
    let grey: ImageBuffer<Luma<u8>, Vec<u8>> =
        ImageBuffer::from_fn(w, h, |x, y| Luma([sample(x, y, 0, &mut seed)]));
    (
        encode(deep.into()),
        encode(flat.into()),
        encode(grey.into()),
    )
}

/// A 16-bit RGBA PNG of one colour: many pixels in few bytes.
fn png16_flat(w: u32, h: u32) -> Vec<u8> {
    let img: image::ImageBuffer<image::Rgba<u16>, Vec<u16>> =
        image::ImageBuffer::from_pixel(w, h, image::Rgba([1000, 30000, 50000, 65535]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::from(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

fn make_sources(dir: &Path) {
    let write = |name: &str, make: &dyn Fn() -> Vec<u8>| {
        let path = dir.join(name);
        if !path.exists() {
            eprintln!("writing {name}");
            std::fs::write(&path, make()).expect("write a source");
        }
    };
    write("jpeg_12mp.jpg", &|| jpeg(4000, 3000, false, false));
    write("jpeg_progressive_12mp.jpg", &|| {
        jpeg(4000, 3000, true, false)
    });
    write("jpeg_cmyk_3mp.jpg", &|| jpeg(2000, 1500, false, true));
    write("jpeg_640.jpg", &|| jpeg(640, 427, false, false));
    write("jpeg_4mp.jpg", &|| jpeg(2048, 2048, false, false));
    write("jpeg_16mp.jpg", &|| jpeg(4096, 4096, false, false));
    if !dir.join("png8_grey_12mp.png").exists() {
        let (deep, flat, grey) = png(4000, 3000);
        std::fs::write(dir.join("png16_rgba_12mp.png"), deep).expect("write");
        std::fs::write(dir.join("png8_rgb_12mp.png"), flat).expect("write");
        std::fs::write(dir.join("png8_grey_12mp.png"), grey).expect("write");
    }
    write("png16_rgba_49mp.png", &|| png16_flat(7000, 7000));
    write("webp_lossy_12mp.webp", &|| {
        webp::Encoder::from_rgb(&rgb(4000, 3000, 3), 4000, 3000)
            .encode(85.0)
            .to_vec()
    });
    write("webp_lossless_rgba_4mp.webp", &|| {
        webp::Encoder::from_rgba(&rgb(2000, 2000, 4), 2000, 2000)
            .encode_lossless()
            .to_vec()
    });
    write("gif_1500.gif", &|| {
        let img = image::RgbaImage::from_raw(1500, 1000, rgb(1500, 1000, 4)).expect("rgba");
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::from(img)
            .write_to(&mut out, image::ImageFormat::Gif)
            .expect("gif");
        out.into_inner()
    });
}
