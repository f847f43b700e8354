//! Replays the fuzzing corpora kept in `fuzz/` (seeds, the minimized corpus, and inputs that once
//! crashed) through the same checks the fuzz targets run (`imgedge::fuzzing`), so a regression
//! shows up in `cargo test` without a nightly toolchain or libFuzzer.

use std::path::{Path, PathBuf};
use std::time::Instant;

/// Every file under `fuzz/{seeds,corpus,regressions}/<target>/`, sorted.
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for kind in ["seeds", "corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        for e in dir.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                files.push(e.path());
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str, check: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no inputs for fuzz target {target}");
    let start = Instant::now();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        // A panic names the input, so it can be run alone: cargo fuzz run TARGET FILE.
        eprintln!("{target}: {}", f.display());
        check(&data);
    }
    eprintln!(
        "{target}: {} inputs in {:.2?}",
        files.len(),
        start.elapsed()
    );
}

#[test]
fn transform_url_corpus() {
    replay("transform_url", imgedge::fuzzing::check_transform_url);
}

#[test]
fn config_corpus() {
    replay("config", imgedge::fuzzing::check_config);
}

#[test]
fn decode_corpus() {
    replay("decode", imgedge::fuzzing::check_decode);
}

/// The checks run with the shipped defaults, not limits of their own.
#[test]
fn checks_use_the_default_limits() {
    use imgedge::config::defaults as d;
    let l = &imgedge::fuzzing::settings().limits;
    assert_eq!(l.max_width, d::TRANSFORM_MAX_WIDTH);
    assert_eq!(l.max_height, d::TRANSFORM_MAX_HEIGHT);
    assert_eq!(l.max_output_pixels, d::TRANSFORM_MAX_OUTPUT_PIXELS);
    assert_eq!(l.max_source_pixels, d::TRANSFORM_MAX_SOURCE_PIXELS);
    assert_eq!(l.max_source_bytes, d::TRANSFORM_MAX_SOURCE_BYTES);
}

#[test]
fn svg_corpus() {
    replay("svg", imgedge::fuzzing::check_svg);
}
