//! decode + resize + encode of the 4K corpus JPEG to 400 px wide, single-threaded.
//! Corpus: `IMGEDGE_BENCH_IMAGE` or `../shared/corpus/seeding_4k_3840x2160.jpg`.
//! Compare with `../shared/bench/vips-baseline.sh ../shared/corpus/seeding_4k_3840x2160.jpg 400`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use imgedge::image::format::OutputFormat;
use imgedge::image::params::{parse_query, Presets};
use imgedge::image::pipeline::transform;
use imgedge::image::spec::Limits;

fn bench(c: &mut Criterion) {
    let path = std::env::var("IMGEDGE_BENCH_IMAGE").unwrap_or_else(|_| {
        format!(
            "{}/../shared/corpus/seeding_4k_3840x2160.jpg",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    let src = match std::fs::read(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipping transform bench: {path}: {e}");
            return;
        }
    };
    let limits = Limits::default();
    let mut g = c.benchmark_group("4k_jpeg_to_400w");
    for (name, fmt) in [
        ("jpeg_q80", OutputFormat::Jpeg),
        ("webp_q80", OutputFormat::Webp),
        ("avif_q80", OutputFormat::Avif),
    ] {
        let spec = parse_query(Some("width=400&quality=80"), &limits, &Presets::new())
            .expect("valid query")
            .transform
            .expect("transform");
        if fmt == OutputFormat::Avif {
            g.sample_size(10);
        }
        g.bench_function(name, |b| {
            b.iter(|| {
                let out = transform(black_box(&src), &spec, fmt, &limits).expect("transform");
                black_box(out.bytes.len())
            })
        });
    }
    g.finish();
}

/// Each pixel operation of the URL API (issue 19) on its own, on a 1000x563 RGB image (the
/// 4K corpus JPEG resized with the pipeline's own Lanczos3; without the corpus, the 640x360
/// test fixture enlarged). `trim` by pixel counts is geometry (a crop rectangle, no pass of
/// its own); `trim=border` is `trim_border::content` on the image framed by 40 white pixels;
/// `flip` and `rotate` cost one orientation pass each (EXIF 2 and 6).
fn ops(c: &mut Criterion) {
    use imgedge::image::ops::{
        blur, border, brightness, contrast, gamma, orient, resize, saliency, saturation, sharpen,
        trim_border, Rect,
    };
    use imgedge::image::pixels::Pixels;
    use imgedge::image::spec::{Border, TrimBorder};
    let corpus = format!(
        "{}/../shared/corpus/seeding_4k_3840x2160.jpg",
        env!("CARGO_MANIFEST_DIR")
    );
    let fixture = format!(
        "{}/tests/fixtures/seeding_640x360.jpg",
        env!("CARGO_MANIFEST_DIR")
    );
    let Ok(bytes) = std::fs::read(&corpus).or_else(|_| std::fs::read(&fixture)) else {
        eprintln!("skipping ops bench: {fixture} missing");
        return;
    };
    let rgb = image::load_from_memory(&bytes)
        .expect("image decodes")
        .to_rgb8();
    let src = Pixels {
        width: rgb.width(),
        height: rgb.height(),
        channels: 3,
        data: rgb.into_raw(),
    };
    let whole = |p: &Pixels| Rect {
        x: 0.0,
        y: 0.0,
        w: p.width as f64,
        h: p.height as f64,
    };
    let px = resize::resize_from(&src, whole(&src), 1000, 563).expect("resize");
    let mut g = c.benchmark_group("ops_1000x563");
    g.sample_size(20);
    g.bench_function("resize_to_400", |b| {
        b.iter(|| black_box(resize::resize_from(&px, whole(&px), 400, 225).expect("resize")))
    });
    let mut lut = |name: &str, f: fn(&mut Pixels, f32), v: f32| {
        g.bench_function(name, |b| {
            b.iter_batched_ref(|| px.clone(), |p| f(p, v), criterion::BatchSize::LargeInput)
        });
    };
    lut("brightness_1.5", brightness::brightness, 1.5);
    lut("contrast_1.5", contrast::contrast, 1.5);
    lut("gamma_2", gamma::gamma, 2.0);
    lut("saturation_0.5", saturation::saturation, 0.5);
    for (name, r) in [("blur_2", 2.0), ("blur_50", 50.0), ("blur_250", 250.0)] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || px.clone(),
                |p| blur::blur(p, r),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.bench_function("sharpen_1", |b| {
        b.iter_batched(
            || px.clone(),
            |p| sharpen::sharpen(p, 1.0),
            criterion::BatchSize::LargeInput,
        )
    });
    let frame = |colour, w| Border {
        colour,
        top: w,
        right: w,
        bottom: w,
        left: w,
    };
    g.bench_function("border_10", |b| {
        b.iter(|| black_box(border::border(&px, &frame([255, 0, 0], 10))))
    });
    for (name, o) in [("flip_h", 2), ("rotate_90", 6)] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || px.clone(),
                |p| orient::apply_orientation(p, o),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    let framed = border::border(&px, &frame([255, 255, 255], 40));
    g.bench_function("trim_border", |b| {
        b.iter(|| {
            black_box(trim_border::content(
                &framed,
                whole(&framed),
                &TrimBorder::default(),
            ))
        })
    });
    g.bench_function("saliency_563x563", |b| {
        b.iter(|| black_box(saliency::best_window(&px, whole(&px), 563.0, 563.0)))
    });
    g.finish();
}

/// What colour management costs (issue 14): the 4K corpus JPEG to 400 px JPEG without a
/// profile, with an sRGB one (detected, nothing applied) and with Adobe RGB (1998) (the
/// profile of `tests/fixtures/meadow_640_adobergb.jpg`, colord's), inserted as `APP2`. The
/// corpus as for [`bench`] (`IMGEDGE_BENCH_IMAGE`).
fn colour(c: &mut Criterion) {
    use imgedge::image::codec::icc;
    let dir = env!("CARGO_MANIFEST_DIR");
    let corpus = std::env::var("IMGEDGE_BENCH_IMAGE")
        .unwrap_or_else(|_| format!("{dir}/../shared/corpus/seeding_4k_3840x2160.jpg"));
    let tagged = format!("{dir}/tests/fixtures/meadow_640_adobergb.jpg");
    let (Ok(src), Ok(tagged)) = (std::fs::read(&corpus), std::fs::read(&tagged)) else {
        eprintln!("skipping colour bench: {corpus} missing");
        return;
    };
    let adobe = icc::jpeg(&tagged).expect("the fixture's profile");
    let srgb = moxcms::ColorProfile::new_srgb()
        .encode()
        .expect("sRGB profile");
    let limits = Limits::default();
    let spec = parse_query(Some("width=400&quality=80"), &limits, &Presets::new())
        .expect("valid query")
        .transform
        .expect("transform");
    let mut g = c.benchmark_group("colour_4k_jpeg_to_400w");
    for (name, profile) in [
        ("none", None),
        ("srgb", Some(&srgb)),
        ("adobergb", Some(&adobe)),
    ] {
        let bytes = match profile {
            Some(p) => icc::embed(src.clone(), OutputFormat::Jpeg, p, 3840, 2160),
            None => src.clone(),
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let out = transform(black_box(&bytes), &spec, OutputFormat::Jpeg, &limits)
                    .expect("transform");
                black_box(out.bytes.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, ops, colour);
criterion_main!(benches);
