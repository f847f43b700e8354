//! End-to-end image transforms through the proxy, against a real origin on loopback.

mod common;
use common::*;
use image::{GenericImageView, ImageFormat};

/// An origin serving every fixture with its image content type, and an edge in front.
fn setup(extra: &str) -> (Origin, Edge) {
    let origin = Origin::start();
    for (name, ct) in [
        ("seeding_640x360.jpg", "image/jpeg"),
        ("meadow_640.jpg", "image/jpeg"),
        ("friends_orient6_386x256.jpg", "image/jpeg"),
        ("emerald_alpha_300.png", "image/png"),
        ("aitzgorri_480.webp", "image/webp"),
        ("seeding_pan_anim_240.gif", "image/gif"),
        ("truncated.jpg", "image/jpeg"),
        ("bomb_20000x20000.png", "image/png"),
    ] {
        origin.route(&format!("/{name}"), Reply::ok(ct, fixture(name)));
    }
    origin.route(
        "/not-an-image.jpg",
        Reply::ok("image/jpeg", "<html>oops, an error page</html>"),
    );
    origin.route("/big.jpg", Reply::ok("image/jpeg", vec![0xFFu8; 300_000]));
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\ntransform:\n  max_source_bytes: 200KiB\n  presets:\n    thumb: {{width: 100, height: 100, fit: cover}}\n{extra}",
        origin.peer()
    ));
    (origin, edge)
}

fn decode(r: &Resp) -> image::DynamicImage {
    image::load_from_memory(&r.body).unwrap_or_else(|e| panic!("not an image ({e}): {}", r.text()))
}

fn dims(edge: &Edge, q: &str) -> (u32, u32) {
    let r = get(&edge.url(&format!("/seeding_640x360.jpg?{q}&format=png")));
    assert_eq!(r.status, 200, "{q}: {}", r.text());
    decode(&r).dimensions()
}

#[test]
fn output_dimensions_for_each_fit_and_dpr() {
    let (_o, edge) = setup("");
    // Source 640x360 (16:9).
    assert_eq!(dims(&edge, "width=320"), (320, 180));
    assert_eq!(dims(&edge, "height=90"), (160, 90));
    assert_eq!(
        dims(&edge, "width=1280"),
        (640, 360),
        "scale-down never enlarges"
    );
    assert_eq!(dims(&edge, "width=1280&fit=contain"), (1280, 720));
    assert_eq!(dims(&edge, "width=200&height=200"), (200, 113));
    assert_eq!(dims(&edge, "width=200&height=200&fit=contain"), (200, 113));
    assert_eq!(dims(&edge, "width=200&height=200&fit=cover"), (200, 200));
    assert_eq!(dims(&edge, "width=200&height=200&fit=crop"), (200, 200));
    assert_eq!(
        dims(&edge, "width=400&height=400&fit=crop"),
        (400, 360),
        "crop never enlarges"
    );
    assert_eq!(
        dims(&edge, "width=400&height=400&fit=cover"),
        (400, 400),
        "cover may enlarge"
    );
    assert_eq!(dims(&edge, "width=200&height=200&fit=pad"), (200, 200));
    assert_eq!(dims(&edge, "width=100&dpr=2"), (200, 113));
    assert_eq!(dims(&edge, "w=100&h=100&fit=cover&dpr=3"), (300, 300));
    assert_eq!(dims(&edge, "preset=thumb"), (100, 100));
}

fn magic(b: &[u8]) -> &'static str {
    match image::guess_format(b) {
        Ok(ImageFormat::Jpeg) => "jpeg",
        Ok(ImageFormat::Png) => "png",
        Ok(ImageFormat::WebP) => "webp",
        Ok(ImageFormat::Avif) => "avif",
        Ok(ImageFormat::Gif) => "gif",
        _ if b.len() > 12 && &b[4..12] == b"ftypavif" => "avif",
        _ => "unknown",
    }
}

#[test]
fn output_format_for_every_format_and_auto() {
    let (_o, edge) = setup("");
    let url = |q: &str| edge.url(&format!("/seeding_640x360.jpg?width=200&{q}"));
    for (q, want, ct) in [
        ("format=jpeg", "jpeg", "image/jpeg"),
        ("format=png", "png", "image/png"),
        ("format=webp", "webp", "image/webp"),
        ("format=avif", "avif", "image/avif"),
        ("quality=50", "jpeg", "image/jpeg"),
    ] {
        let r = get(&url(q));
        assert_eq!(
            (magic(&r.body), r.header("content-type")),
            (want, Some(ct)),
            "{q}"
        );
        assert!(r.header("vary").is_none(), "{q} must not vary");
    }
    for (accept, want) in [
        ("image/avif,image/webp,*/*", "avif"),
        ("image/webp,image/*", "webp"),
        ("image/*,*/*;q=0.8", "jpeg"),
        ("", "jpeg"),
    ] {
        let r = get_with(&url("format=auto"), &[("Accept", accept)]);
        assert_eq!(r.status, 200);
        assert_eq!(magic(&r.body), want, "Accept: {accept}");
        assert_eq!(r.header("vary"), Some("Accept"), "Accept: {accept}");
    }
    // Each negotiated format is its own cache entry: a repeat is a hit with the same format.
    let r = get_with(&url("format=auto"), &[("Accept", "image/webp")]);
    assert_eq!((r.cache(), magic(&r.body)), ("HIT", "webp"));
    // PNG and WebP sources, and an animated GIF (kept a GIF, animated: tests/animation.rs).
    let r = get(&edge.url("/aitzgorri_480.webp?width=100"));
    assert_eq!(magic(&r.body), "webp");
    let r = get(&edge.url("/seeding_pan_anim_240.gif?width=100"));
    assert_eq!((magic(&r.body), decode(&r).width()), ("gif", 100));
}

#[test]
fn exif_orientation_6_comes_out_upright() {
    let (_o, edge) = setup("");
    let r = get(&edge.url("/friends_orient6_386x256.jpg?width=256&format=png"));
    let out = decode(&r).to_rgb8();
    let reference = image::load_from_memory(&fixture("friends_upright_ref.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(
        out.dimensions(),
        reference.dimensions(),
        "upright is 256x386"
    );
    let diff: f64 = out
        .as_raw()
        .iter()
        .zip(reference.as_raw())
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .sum::<f64>()
        / out.as_raw().len() as f64;
    assert!(
        diff < 4.0,
        "mean abs pixel difference {diff} vs the upright reference"
    );
}

#[test]
fn transparency_kept_or_flattened() {
    let (_o, edge) = setup("");
    let alpha_min = |r: &Resp| decode(r).to_rgba8().pixels().map(|p| p[3]).min().unwrap();
    for f in ["png", "webp"] {
        let r = get(&edge.url(&format!("/emerald_alpha_300.png?width=150&format={f}")));
        assert_eq!(magic(&r.body), f);
        assert!(alpha_min(&r) < 50, "{f} lost its transparency");
    }
    let r = get(&edge.url("/emerald_alpha_300.png?width=150&format=jpeg"));
    let img = decode(&r).to_rgb8();
    // The corner is fully transparent in the source: flattened onto white.
    let p = img.get_pixel(0, 0);
    assert!(p.0.iter().all(|c| *c > 240), "corner {p:?} is not white");
    let r = get(&edge.url("/emerald_alpha_300.png?width=150&format=jpeg&background=%23ff0000"));
    let p = *decode(&r).to_rgb8().get_pixel(0, 0);
    assert!(
        p[0] > 200 && p[1] < 60 && p[2] < 60,
        "corner {p:?} is not red"
    );
}

#[test]
fn aliases_share_one_cache_entry() {
    let (origin, edge) = setup("");
    let a = get(&edge.url("/meadow_640.jpg?w=400"));
    let b = get(&edge.url("/meadow_640.jpg?width=400"));
    let c = get(&edge.url("/meadow_640.jpg?width=400&fit=scale-down&dpr=1"));
    assert_eq!((a.cache(), b.cache(), c.cache()), ("MISS", "HIT", "HIT"));
    assert_eq!(a.body, b.body);
    assert_eq!(origin.hits("/meadow_640.jpg"), 1);
    // The miss was sent chunked; the hit knows its length.
    assert_eq!(
        b.header("content-length"),
        Some(b.body.len().to_string().as_str())
    );
    // No transform parameter: the original, untouched.
    let r = get(&edge.url("/meadow_640.jpg"));
    assert_eq!(r.body, fixture("meadow_640.jpg"));
}

#[test]
fn transform_params_are_not_forwarded_others_are() {
    let (origin, edge) = setup("");
    origin.route(
        "/meadow_640.jpg?v=3",
        Reply::ok("image/jpeg", fixture("meadow_640.jpg")),
    );
    let r = get(&edge.url("/meadow_640.jpg?width=100&v=3&format=webp"));
    assert_eq!(r.status, 200);
    assert_eq!(origin.hits("/meadow_640.jpg?v=3"), 1);
}

#[test]
fn invalid_parameters_are_400_without_an_origin_request() {
    let (origin, edge) = setup("");
    for (q, reason) in [
        ("width=-3", "width: \"-3\" is not a positive integer"),
        ("format=tiff", "format"),
        ("width=5000", "width"),
        ("fit=stretch", "fit"),
        ("quality=0", "quality"),
        ("dpr=9", "dpr"),
        ("background=zzz", "background"),
        ("preset=nope", "preset"),
    ] {
        let r = get(&edge.url(&format!("/meadow_640.jpg?{q}")));
        assert_eq!(r.status, 400, "{q}");
        assert!(r.text().contains(reason), "{q}: {}", r.text());
        assert_eq!(
            r.text().trim().lines().count(),
            1,
            "one-line reason: {}",
            r.text()
        );
    }
    assert_eq!(origin.total_hits(), 0);
}

/// A source that cannot be transformed: the first answer is a 422 with the reason, or, once the
/// status line has gone out, an aborted response; nothing is cached, and repeats get the 422 up
/// front without asking the origin again.
fn assert_refused(edge: &Edge, origin: &Origin, path: &str, reason: &str) {
    let url = edge.url(&format!("{path}?width=100"));
    match try_get_with(&url, &[]) {
        Ok(r) => {
            assert_eq!(r.status, 422, "{path}: {}", r.text());
            assert!(r.text().contains(reason), "{path}: {}", r.text());
        }
        Err(e) => eprintln!("{path}: first answer aborted as documented ({e})"),
    }
    let r = get(&url);
    assert_eq!(r.status, 422, "{path}: {}", r.text());
    assert!(r.text().contains(reason), "{path}: {}", r.text());
    assert_eq!(
        origin.hits(path),
        1,
        "{path}: the repeat must not reach the origin"
    );
}

#[test]
fn bad_sources_get_their_documented_answer_and_nothing_is_cached() {
    let (origin, edge) = setup("");
    let before = edge.metric("imgedge_cache_insertions_total");
    assert_refused(
        &edge,
        &origin,
        "/bomb_20000x20000.png",
        "20000x20000 pixels",
    );
    assert_refused(&edge, &origin, "/truncated.jpg", "truncated");
    assert_refused(&edge, &origin, "/not-an-image.jpg", "not an image");
    assert_refused(&edge, &origin, "/big.jpg", "above the maximum");
    // No variant was cached: the four entries are the originals, kept as the origin sent them
    // (the source cache stores what a plain GET would), never a half-made variant.
    assert_eq!(
        edge.metric("imgedge_cache_insertions_total"),
        before + 4.0,
        "only the originals were cached"
    );
    for path in [
        "/bomb_20000x20000.png",
        "/truncated.jpg",
        "/not-an-image.jpg",
        "/big.jpg",
    ] {
        let r = get(&edge.url(path));
        assert_eq!((r.status, r.cache()), (200, "HIT"), "{path}");
        assert_eq!(origin.hits(path), 1, "{path}");
    }
    for reason in ["bomb", "bad_data", "too_big", "remembered"] {
        let v = edge.metric(&format!(
            "imgedge_transforms_refused_total{{reason=\"{reason}\"}}"
        ));
        assert!(v >= 1.0, "{reason} not counted");
    }
    // The process is still serving.
    assert_eq!(get(&edge.url("/meadow_640.jpg?width=50")).status, 200);
}

#[test]
fn non_image_responses_pass_through() {
    let (origin, edge) = setup("");
    origin.route("/doc.txt", Reply::ok("text/plain", "just text"));
    let r = get(&edge.url("/doc.txt?width=100"));
    assert_eq!((r.status, r.text().as_str()), (200, "just text"));
    let r = get(&edge.url("/missing.jpg?width=100"));
    assert_eq!(r.status, 404, "a 404 stays a 404");
}

fn psnr(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    let mse: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / a.as_raw().len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

#[test]
fn visual_quality_of_a_400px_downscale() {
    let (_o, edge) = setup("");
    let src = image::load_from_memory(&fixture("meadow_640.jpg")).unwrap();
    let reference = src
        .resize_exact(400, 320, image::imageops::FilterType::Lanczos3)
        .to_rgb8();
    for (f, min_db) in [("png", 35.0), ("jpeg", 30.0), ("webp", 30.0)] {
        let r = get(&edge.url(&format!("/meadow_640.jpg?width=400&format={f}")));
        let out = decode(&r).to_rgb8();
        assert_eq!(out.dimensions(), (400, 320));
        let db = psnr(&out, &reference);
        assert!(db > min_db, "{f}: PSNR {db:.1} dB below {min_db}");
    }
}

#[test]
fn full_transform_queue_is_a_503_before_the_origin() {
    let origin = Origin::start();
    origin.route(
        "/slow.jpg",
        Reply::ok("image/jpeg", fixture("meadow_640.jpg"))
            .delay(std::time::Duration::from_millis(800)),
    );
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin, cache: false}}\ntransform: {{workers: 1, queue: 0}}\n",
        origin.peer()
    ));
    let url = edge.url("/slow.jpg?width=100");
    let first = std::thread::spawn(move || get(&url));
    eventually(5, "the first request to reach the origin", || {
        (origin.hits("/slow.jpg") == 1).then_some(())
    });
    let r = get(&edge.url("/slow.jpg?width=120"));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        origin.hits("/slow.jpg"),
        1,
        "the refused request never reached the origin"
    );
    assert_eq!(first.join().unwrap().status, 200);
    assert!(edge.metric("imgedge_transforms_refused_total{reason=\"queue_full\"}") >= 1.0);
}

/// An origin serving `meadow_640.jpg` as `/photo.jpg`, and an edge with `transform` settings.
fn photo_edge(transform: &str) -> (Origin, Edge) {
    let origin = Origin::start();
    origin.route(
        "/photo.jpg",
        Reply::ok("image/jpeg", fixture("meadow_640.jpg")),
    );
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\ntransform: {{{transform}}}\n",
        origin.peer()
    ));
    (origin, edge)
}

/// A costly variant of the photo: a 2000x2000 AVIF at quality 100 (about a second of CPU).
fn costly(i: u32) -> String {
    format!(
        "/photo.jpg?w={}&h=2000&fit=cover&format=avif&q=100",
        2000 + i
    )
}

fn wait_for_idle_pool(edge: &Edge) {
    eventually(120, "the transform pool to drain", || {
        let idle = edge.metric("imgedge_transform_in_flight") == 0.0
            && edge.metric("imgedge_transform_queue_depth") == 0.0;
        idle.then_some(())
    });
}

/// Issue 18, item 7: timeouts are remembered for the variant that ran past the timeout, never
/// for the source: other variants of the photo are still made.
#[test]
fn timed_out_variants_do_not_block_other_variants_of_the_source() {
    let (origin, edge) = photo_edge("timeout: 300ms, workers: 2, failure_ttl: 120s");
    // One costly variant first (it runs, and runs on past its timeout), then seven at once
    // (one runs, the others time out waiting for a worker).
    let answer = |path: String| match try_get_with(&edge.url(&path), &[]) {
        Ok(r) => r.status,
        Err(_) => 0, // aborted after the status line: documented
    };
    assert!(matches!(answer(costly(0)), 503 | 0));
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..8).map(|i| s.spawn(move || answer(costly(i)))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.iter().all(|s| matches!(s, 503 | 0)),
        "the costly variants time out: {statuses:?}"
    );
    wait_for_idle_pool(&edge);
    let hits = origin.hits("/photo.jpg");
    // A cheap variant of the same photo is made.
    let r = get(&edge.url("/photo.jpg?w=32&format=jpeg"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(decode(&r).width(), 32);
    // Made from the cached original (the source cache): no origin request.
    assert_eq!(origin.hits("/photo.jpg"), hits);
    // The variant that ran past its timeout is answered up front, without the origin.
    let r = get(&edge.url(&costly(0)));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("transform.timeout"), "{}", r.text());
    assert_eq!(origin.hits("/photo.jpg"), hits);
}

/// Issue 18, item 7: what is the source's fault is still remembered for the source: any other
/// variant of a truncated image is a 422 up front, without asking the origin again.
#[test]
fn a_bad_source_is_refused_for_every_variant() {
    let (origin, edge) = setup("");
    match try_get_with(&edge.url("/truncated.jpg?width=100"), &[]) {
        Ok(r) => assert_eq!(r.status, 422, "{}", r.text()),
        Err(e) => eprintln!("first answer aborted as documented ({e})"),
    }
    for q in [
        "width=200&format=webp",
        "height=50",
        "preset=thumb&format=png",
    ] {
        let r = get(&edge.url(&format!("/truncated.jpg?{q}")));
        assert_eq!(r.status, 422, "{q}: {}", r.text());
        assert!(r.text().contains("truncated"), "{q}: {}", r.text());
    }
    assert_eq!(origin.hits("/truncated.jpg"), 1);
}

/// A 16-bit RGBA PNG of one colour: `w` x `h` pixels in very few bytes.
fn deep_png(w: u32, h: u32) -> Vec<u8> {
    let img: image::ImageBuffer<image::Rgba<u16>, Vec<u16>> =
        image::ImageBuffer::from_pixel(w, h, image::Rgba([1000, 30000, 50000, 65535]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::from(img)
        .write_to(&mut out, ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// Issue 18, item 9: a job whose estimated peak is above the whole `max_memory_bytes` is
/// refused with its reason from the header, before its ~100 MB of pixels are decoded.
#[test]
fn a_job_that_could_never_fit_the_memory_budget_is_refused_before_decoding() {
    let origin = Origin::start();
    let png = deep_png(3000, 3000);
    assert!(png.len() < 500_000, "{} bytes", png.len());
    origin.route("/deep.png", Reply::ok("image/png", png));
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\ntransform: {{max_memory_bytes: 32MiB}}\n",
        origin.peer()
    ));
    let rss = || edge.metric("imgedge_process_resident_bytes");
    let before = rss();
    let reason = "above transform.max_memory_bytes";
    match try_get_with(&edge.url("/deep.png?width=100"), &[]) {
        Ok(r) => {
            assert_eq!(r.status, 422, "{}", r.text());
            assert!(r.text().contains(reason), "{}", r.text());
        }
        Err(e) => eprintln!("first answer aborted as documented ({e})"),
    }
    // Decoding would have held 72 MB of 16-bit pixels (jemalloc keeps freed pages ~10 s).
    let grown = rss() - before;
    assert!(
        grown < 40e6,
        "RSS grew by {grown} bytes: the image was decoded"
    );
    assert_eq!(
        edge.metric("imgedge_transforms_refused_total{reason=\"memory\"}"),
        1.0
    );
    assert_eq!(edge.metric("imgedge_transform_memory_reserved_bytes"), 0.0);
    // The repeat: the same answer up front (for this variant).
    let r = get(&edge.url("/deep.png?width=100"));
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains(reason), "{}", r.text());
    assert_eq!(origin.hits("/deep.png"), 1);
}

/// The estimate the edge reserves for `query` on `meadow_640.jpg` (the library's own).
fn estimate(query: &str) -> u64 {
    use imgedge::image::{format::OutputFormat, params, pipeline, spec::Limits};
    let limits = Limits::default();
    let spec = params::parse_query(Some(query), &limits, &params::Presets::new())
        .unwrap()
        .transform
        .unwrap();
    let src = fixture("meadow_640.jpg");
    pipeline::prepare(&src, &spec, OutputFormat::Avif, &limits)
        .unwrap()
        .peak_bytes()
}

/// Issue 18, item 9: two jobs that fit the budget only one at a time both succeed: the second
/// waits for the first to give its memory back, and the reserved bytes never exceed the budget.
#[test]
fn jobs_that_fit_one_at_a_time_both_succeed_the_second_waits() {
    let (a, b) = (costly(0), costly(0).replace("q=100", "q=99"));
    let need = estimate(a.split_once('?').unwrap().1);
    assert_eq!(need, estimate(b.split_once('?').unwrap().1));
    let budget = need + need / 2;
    let (_origin, edge) = photo_edge(&format!(
        "max_memory_bytes: {budget}, workers: 2, timeout: 60s"
    ));
    let reserved = || edge.metric("imgedge_transform_memory_reserved_bytes");
    std::thread::scope(|s| {
        let first = s.spawn(|| get(&edge.url(&a)));
        eventually(30, "the first job to reserve its memory", || {
            (reserved() == need as f64).then_some(())
        });
        let second = s.spawn(|| get(&edge.url(&b)));
        eventually(30, "the second job to wait for memory", || {
            (edge.metric("imgedge_transform_memory_waiting") == 1.0).then_some(())
        });
        assert_eq!(reserved(), need as f64, "one job's worth reserved, not two");
        let (first, second) = (first.join().unwrap(), second.join().unwrap());
        assert_eq!(first.status, 200, "{}", first.text());
        assert_eq!(second.status, 200, "{}", second.text());
        assert_eq!(magic(&second.body), "avif");
    });
    assert_eq!(reserved(), 0.0);
    assert_eq!(edge.metric("imgedge_transform_memory_waits_total"), 1.0);
    assert_eq!(edge.metric("imgedge_transform_memory_waiting"), 0.0);
}
