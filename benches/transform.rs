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

criterion_group!(benches, bench);
criterion_main!(benches);
