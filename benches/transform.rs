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

/// Each pixel operation of the URL API (issue 19) on its own, on the 640x360 test fixture's
/// decoded RGB pixels (the size of a typical output). `trim`, `flip` and `rotate` are geometry:
/// `flip`/`rotate` cost one orientation pass (`orient_rotate90`), `trim` nothing of its own.
fn ops(c: &mut Criterion) {
    use imgedge::image::ops::{
        blur, border, brightness, contrast, gamma, orient, saturation, sharpen,
    };
    use imgedge::image::pixels::Pixels;
    use imgedge::image::spec::Border;
    let path = format!(
        "{}/tests/fixtures/seeding_640x360.jpg",
        env!("CARGO_MANIFEST_DIR")
    );
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!("skipping ops bench: {path} missing");
        return;
    };
    let rgb = image::load_from_memory(&bytes)
        .expect("fixture decodes")
        .to_rgb8();
    let px = Pixels {
        width: rgb.width(),
        height: rgb.height(),
        channels: 3,
        data: rgb.into_raw(),
    };
    let mut g = c.benchmark_group("ops_640x360");
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
    let frame = Border {
        colour: [255, 0, 0],
        top: 10,
        right: 10,
        bottom: 10,
        left: 10,
    };
    g.bench_function("border_10", |b| {
        b.iter(|| black_box(border::border(&px, &frame)))
    });
    g.bench_function("orient_rotate90", |b| {
        b.iter_batched(
            || px.clone(),
            |p| orient::apply_orientation(p, 6),
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench, ops);
criterion_main!(benches);
