//! Issue 15, item 6: a progressive JPEG decoded at a reduced scale reads only the scans that
//! scale uses, and gives the full decode's picture; a progressive file cut short is still
//! refused. References: Pillow (libjpeg-turbo) decoding the whole fixture at the same DCT scale
//! (`Image.draft`), saved as PNG (tests/fixtures/LICENSES.md).

mod common;
use common::*;

const SEEDING: &str = "seeding_prog_1600x896.jpg";
const SUNSET: &str = "sunset_prog422_rst_800x528.jpg";

fn setup(origin: &Origin, transform: &str) -> Edge {
    Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\ntransform:\n  max_source_bytes: 1MiB\n{transform}",
        origin.peer()
    ))
}

fn rgb(bytes: &[u8]) -> image::RgbImage {
    image::load_from_memory(bytes)
        .unwrap_or_else(|e| panic!("not an image: {e}"))
        .to_rgb8()
}

/// Largest and mean absolute difference over every sample.
fn diff(a: &image::RgbImage, b: &image::RgbImage) -> (u8, f64) {
    assert_eq!(a.dimensions(), b.dimensions());
    let (mut max, mut sum) = (0u8, 0u64);
    for (x, y) in a.as_raw().iter().zip(b.as_raw()) {
        let d = x.abs_diff(*y);
        max = max.max(d);
        sum += d as u64;
    }
    (max, sum as f64 / a.as_raw().len() as f64)
}

/// Output sizes equal to the DCT-scaled size, so the pixels are the decoder's (no resize).
#[test]
fn a_scaled_progressive_decode_is_the_full_decode() {
    let origin = Origin::start();
    for name in [SEEDING, SUNSET] {
        origin.route(&format!("/{name}"), Reply::ok("image/jpeg", fixture(name)));
    }
    let edge = setup(&origin, "");
    for (name, query, reference) in [
        // 1/8: luma from its DC scans alone; 4:2:0 chroma keeps its scans (2x2 IDCT)
        (SEEDING, "width=200", "seeding_prog_s8_ref.png"),
        // 1/8, 4:2:2 with restart markers: every component from its DC scans alone
        (SUNSET, "width=100", "sunset_prog422_s8_ref.png"),
        // 1/4: every scan
        (SEEDING, "width=400", "seeding_prog_s4_ref.png"),
    ] {
        let r = get(&edge.url(&format!("/{name}?{query}&format=png")));
        assert_eq!(r.status, 200, "{name} {query}: {}", r.text());
        let (max, mean) = diff(&rgb(&r.body), &rgb(&fixture(reference)));
        // the same library at the same scale; a little slack for another libjpeg-turbo release
        assert!(
            max <= 2 && mean < 0.05,
            "{name} {query}: max {max}, mean {mean}"
        );
    }
}

/// The decoded-source cache holds the 1/8 decode, and a smaller variant reuses it.
#[test]
fn a_pruned_decode_serves_the_decoded_cache() {
    let origin = Origin::start();
    origin.route(
        &format!("/{SEEDING}"),
        Reply::ok("image/jpeg", fixture(SEEDING)),
    );
    let edge = setup(&origin, "  decoded_cache_bytes: 64MiB\n");
    let first = get(&edge.url(&format!("/{SEEDING}?width=200&format=png")));
    assert_eq!(first.status, 200, "{}", first.text());
    let smaller = get(&edge.url(&format!("/{SEEDING}?width=160&format=png")));
    assert_eq!(smaller.status, 200, "{}", smaller.text());
    assert_eq!(rgb(&smaller.body).dimensions(), (160, 90));
    assert_eq!(edge.metric("imgedge_decoded_cache_misses_total"), 1.0);
    assert_eq!(edge.metric("imgedge_decoded_cache_hits_total"), 1.0);
    // 200x112 RGB
    assert!(edge.metric("imgedge_decoded_cache_bytes") >= 200.0 * 112.0 * 3.0);
}

/// Cut in the last scan (luma's last refinement, which a 1/8 decode does not read), and just
/// before EOI: refused as truncated at every scale, for every variant, and nothing decoded is
/// kept.
#[test]
fn a_truncated_progressive_file_is_refused() {
    let whole = fixture(SEEDING);
    let origin = Origin::start();
    let cuts = [whole.len() * 7 / 10, whole.len() - 2];
    for cut in cuts {
        origin.route(
            &format!("/cut{cut}.jpg"),
            Reply::ok("image/jpeg", whole[..cut].to_vec()),
        );
    }
    let edge = setup(&origin, "  decoded_cache_bytes: 64MiB\n");
    for cut in cuts {
        let path = format!("/cut{cut}.jpg");
        for query in [
            "width=200",
            "width=100&format=webp",
            "width=400",
            "width=800",
        ] {
            match try_get_with(&edge.url(&format!("{path}?{query}")), &[]) {
                Ok(r) => {
                    assert_eq!(r.status, 422, "{path}?{query}: {}", r.text());
                    assert!(
                        r.text().contains("truncated"),
                        "{path}?{query}: {}",
                        r.text()
                    );
                }
                // the first refusal may abort the response (tests/transform.rs)
                Err(e) => eprintln!("{path}?{query}: aborted ({e})"),
            }
        }
        let r = get(&edge.url(&format!("{path}?width=200")));
        assert_eq!(r.status, 422, "{path}: {}", r.text());
    }
    assert_eq!(edge.metric("imgedge_decoded_cache_bytes"), 0.0);
    assert_eq!(edge.metric("imgedge_decoded_cache_hits_total"), 0.0);
}
