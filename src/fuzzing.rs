//! Checks shared by the `cargo fuzz` targets (`fuzz/fuzz_targets/*.rs`) and their regression
//! test (`tests/fuzz_corpus.rs`), so that what the fuzzer explored and what `cargo test` replays
//! cannot drift apart. Each `check_*` takes arbitrary bytes, runs them through the real code
//! path with the real limits, and panics (that is the point: the fuzzer reports it) when the
//! code panics or an invariant below does not hold. Returning normally means "input handled".
//!
//! Nothing here runs in the proxy.

use std::sync::OnceLock;

use crate::config::{self, TransformSettings};
use crate::image::codec::{probe, sniff};
use crate::image::error::TransformError;
use crate::image::format::{FormatChoice, OutputFormat};
use crate::image::params::parse_query;
use crate::image::pipeline::transform;
use crate::proxy::transform::{path_form, sign_url, Transformer};
use crate::signing::SignatureError;

/// The configuration the URL and decode checks use: the defaults of `config/defaults.rs` for
/// every limit (nothing below sets one), two presets and a signing key, not required (so that
/// unsigned URLs are planned too).
pub const FUZZ_CONFIG: &str = r#"
upstreams:
  origin: {peers: ["127.0.0.1:1"]}
routes:
  - {prefix: "/", upstream: origin}
transform:
  workers: 1
  queue: 1
  presets:
    thumb: {width: 200, height: 200, fit: cover}
    hero: {width: 1200, format: auto, q: 70}
    moody: {width: 300, blur: 5, rotate: 90, border: "color:#fff;width:2", quality: low}
  signing:
    keys: ["fuzzing-key-0123456789abcdef"]
    required: false
"#;

/// Longest error message a bad URL may produce (it is sent as a 400 body; values are quoted
/// truncated to 64 characters).
const MAX_PARAM_ERROR_BYTES: usize = 600;

struct Fixture {
    settings: TransformSettings,
    transformer: Transformer,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let settings = match config::parse_str(FUZZ_CONFIG) {
            Ok(c) => c.transform,
            Err(e) => panic!("FUZZ_CONFIG does not validate: {e}"),
        };
        let transformer = Transformer::new(&settings);
        Fixture {
            settings,
            transformer,
        }
    })
}

/// The transform settings (real default limits) the URL and decode checks run with.
pub fn settings() -> &'static TransformSettings {
    &fixture().settings
}

/// `Accept` headers each URL is planned with: none, a browser that takes AVIF and WebP, one
/// that takes WebP only.
const ACCEPTS: [Option<&str>; 3] = [
    None,
    Some("image/avif,image/webp,image/apng,*/*;q=0.8"),
    Some("image/webp,*/*"),
];

/// (a) The request target (`/path?query`, as a client sends it) through the parse the proxy
/// does: `http::Uri` (what Pingora hands the proxy), then `Transformer::plan` with each of
/// [`ACCEPTS`], then signature checking. Invariants:
/// - planning never panics; an error message is non-empty and bounded;
/// - the canonical transform forwarded to a shield (`to_query`) parses back to the same
///   canonical form, and that form is a fixed point;
/// - the forwarded (non-transform) query holds no transform parameter and no `sig=`;
/// - `imgedge sign` (`sign_url`) on the URL gives a URL that plans to the same transform and
///   whose signature verifies for the same path; a different path does not verify.
pub fn check_transform_url(data: &[u8]) {
    let Ok(uri) = http::Uri::try_from(data) else {
        return; // Pingora refuses the request line before the proxy sees it
    };
    let f = fixture();
    let t = &f.transformer;
    // The path form plans as the query form of its SOURCE (options first), as the proxy does.
    let form = match path_form::split(uri.path()) {
        Ok(form) => form,
        Err((status, msg)) => {
            assert!(
                status == 400 || status == 403,
                "path form refused with {status}"
            );
            assert!(
                !msg.is_empty() && msg.len() <= MAX_PARAM_ERROR_BYTES,
                "{msg}"
            );
            return;
        }
    };
    let full_query = form.as_ref().map(|p| p.full_query(uri.query()));
    let path = form.as_ref().map_or(uri.path(), |p| p.source.as_str());
    let query = full_query.as_deref().or(uri.query());
    for accept in ACCEPTS {
        let planned = match t.plan(query, accept) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.is_empty(), "empty parameter error for {uri}");
                assert!(
                    msg.len() <= MAX_PARAM_ERROR_BYTES,
                    "parameter error of {} bytes for {uri}: {msg}",
                    msg.len()
                );
                continue;
            }
        };

        // The shield's view: the canonical transform as a query parses to the same canonical.
        let chosen = planned.negotiated.format();
        let shield_query = planned.spec.to_query(chosen);
        let again = match t.plan(Some(&shield_query), accept) {
            Ok(Some(p)) => p,
            other => panic!("to_query {shield_query:?} of {uri} does not plan again: {other:?}"),
        };
        assert_eq!(
            again.canonical,
            planned.produced(),
            "to_query {shield_query:?} of {uri} changes the canonical transform"
        );
        assert_eq!(
            again.spec.to_query(again.negotiated.format()),
            shield_query,
            "to_query of {uri} is not a fixed point"
        );
        assert_eq!(again.forward_query, None);
        assert_eq!(again.signature, None);

        // What goes to the origin carries no transform parameter and no signature.
        if let Some(fq) = planned.forward_query.as_deref() {
            match parse_query(Some(fq), &f.settings.limits, &f.settings.presets) {
                Ok(p) => {
                    assert_eq!(p.transform, None, "forwarded query {fq:?} of {uri}");
                    assert_eq!(p.signature, None, "forwarded query {fq:?} of {uri}");
                }
                Err(e) => panic!("forwarded query {fq:?} of {uri} does not parse: {e}"),
            }
        }

        // `imgedge sign` on the same URL, then the proxy's check of what it produced.
        let url = format!("{path}?{}", query.unwrap_or(""));
        let signed = match sign_url(&f.settings, &url) {
            Ok(s) => s,
            // An exp= that is not a time: `imgedge sign` refuses it, as the proxy would.
            Err(e) if e == SignatureError::BadExpiry.to_string() => continue,
            Err(e) => panic!("sign_url({url:?}) refused a URL the proxy plans: {e}"),
        };
        let signed_uri = match http::Uri::try_from(signed.as_str()) {
            Ok(u) => u,
            Err(e) => panic!("sign_url({url:?}) made an invalid URL {signed:?}: {e}"),
        };
        let resigned = match t.plan(signed_uri.query(), accept) {
            Ok(Some(p)) => p,
            other => panic!("signed URL {signed:?} does not plan: {other:?}"),
        };
        assert_eq!(
            resigned.canonical, planned.canonical,
            "signed URL {signed:?}"
        );
        assert_eq!(
            signed_uri.path(),
            path,
            "sign_url changed the path of {url:?}"
        );
        let verify = |path: &str| t.verify_signature("", path, signed_uri.query(), &resigned);
        match verify(signed_uri.path()) {
            // The URL's own exp= was signed as given: a past one is a valid, expired signature.
            Ok(()) | Err(SignatureError::Expired { .. }) => {}
            Err(e) => panic!("signature of {signed:?} does not verify: {e}"),
        }
        let other_path = format!("{path}x");
        assert!(
            verify(&other_path).is_err(),
            "signature of {signed:?} also verifies for {other_path:?}"
        );
    }
}

/// (b) YAML text through the real load + validate path (`config::parse_str`, what `-t` and
/// start-up run). Invariants: never panics; a refusal lists at least one error, each with a
/// message.
pub fn check_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // load_file refuses it as "cannot read" before parsing
    };
    match config::parse_str(text) {
        Ok(_) => {}
        Err(errs) => {
            assert!(!errs.0.is_empty(), "config refused without an error");
            for e in &errs.0 {
                assert!(
                    !e.message.is_empty(),
                    "config error at {:?} has no message",
                    e.path
                );
            }
        }
    }
}

/// Largest output width/height the decode check asks for: big enough for every resize path,
/// small enough that encoding does not drown the decoder in the fuzzer's time budget.
const DECODE_MAX_SIDE: u32 = 512;
/// AVIF (rav1e) encodes ~50x slower than the others: asked for at most this size.
const DECODE_MAX_SIDE_AVIF: u32 = 64;

/// The transform (as a URL query) the decode check derives from its first two bytes.
pub fn decode_query(b0: u8, b1: u8) -> String {
    let format = match b0 & 7 {
        0..=3 => None,
        4 => Some("jpeg"),
        5 => Some("png"),
        6 => Some("webp"),
        _ => Some("avif"),
    };
    let fit = ["scale-down", "contain", "cover", "crop", "pad"][usize::from((b0 >> 3) & 7) % 5];
    let max = if format == Some("avif") {
        DECODE_MAX_SIDE_AVIF
    } else {
        DECODE_MAX_SIDE
    };
    let side = |bits: u8| (u32::from(bits) + 1) * max / 64;
    let w = side(b1 & 0x3f);
    let mut q = format!("width={w}&fit={fit}");
    match b1 >> 6 {
        0 => {}
        1 => q.push_str(&format!("&height={}", side(b1.rotate_left(3) & 0x3f))),
        2 => q.push_str(&format!("&height={w}&gravity=top-left&background=336699")),
        // the operations of the URL API (issue 19) on the same paths
        _ => q.push_str("&dpr=1.5&q=40&rotate=90&flip=h&trim=1;2;1;2&sharpen=1&saturation=0.5"),
    }
    if let Some(f) = format {
        q.push_str("&format=");
        q.push_str(f);
    }
    q
}

/// (c) Arbitrary bytes as a source image through the real pipeline (`pipeline::transform`: size
/// and pixel limits, sniff, probe, decode, resize, orient, pad/flatten, encode) with the real
/// default limits. The first two bytes choose the transform ([`decode_query`]), the rest is the
/// source. Invariants: never panics; a refusal is a source problem, never an encoder failure;
/// an output respects the requested box and the pixel limit, and is an image of the format and
/// size reported.
pub fn check_decode(data: &[u8]) {
    let [b0, b1, src @ ..] = data else {
        return;
    };
    let s = settings();
    let query = decode_query(*b0, *b1);
    let spec = match parse_query(Some(&query), &s.limits, &s.presets) {
        Ok(p) => match p.transform {
            Some(spec) => spec,
            None => panic!("decode query {query:?} is not a transform"),
        },
        Err(e) => panic!("decode query {query:?} refused: {e}"),
    };
    // No fixed format: "same as source", from the sniffed bytes. Bytes that do not sniff are
    // refused before the format matters.
    let out = match spec.format {
        FormatChoice::Fixed(f) => f,
        _ => sniff(src).map_or(OutputFormat::Jpeg, |f| f.same_output()),
    };
    let output = match transform(src, &spec, out, &s.limits) {
        Ok(o) => o,
        Err(TransformError::Encode(e)) => {
            panic!("encoder failed on a source that decoded ({query}): {e}")
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(
        output.width > 0 && output.height > 0,
        "empty output ({query})"
    );
    assert!(
        output.width as u64 * output.height as u64 <= s.limits.max_output_pixels,
        "output {}x{} above max_output_pixels ({query})",
        output.width,
        output.height
    );
    if let Some(tw) = spec.target_width() {
        assert!(
            output.width <= tw,
            "width {} > {tw} ({query})",
            output.width
        );
    }
    if let Some(th) = spec.target_height() {
        assert!(
            output.height <= th,
            "height {} > {th} ({query})",
            output.height
        );
    }
    if let FormatChoice::Fixed(f) = spec.format {
        assert_eq!(output.format, f, "({query})");
    }
    assert!(!output.bytes.is_empty(), "no bytes ({query})");
    // The probe reads JPEG, PNG, WebP and GIF headers only (AVIF is never a source here).
    if output.format != OutputFormat::Avif {
        let p = match probe(&output.bytes) {
            Ok(p) => p,
            Err(e) => panic!(
                "our own {:?} output does not probe ({query}): {e}",
                output.format
            ),
        };
        assert_eq!(
            (p.width, p.height),
            (output.width, output.height),
            "encoded size differs from the reported size ({query})"
        );
    }
}

/// (d) Arbitrary bytes as an SVG from the origin through the sanitizer
/// (`image::svg::sanitize`, as `transform.svg: sanitize` serves it). Invariants: never panics;
/// what it returns sanitizes again (well-formed, still SVG) and holds no script element, no
/// `javascript:`, no DOCTYPE or entity declaration, no `foreignObject`.
pub fn check_svg(data: &[u8]) {
    let Ok(clean) = crate::image::svg::sanitize(data) else {
        return;
    };
    let text = String::from_utf8_lossy(&clean).to_ascii_lowercase();
    for bad in [
        "<script",
        "javascript:",
        "<!doctype",
        "<!entity",
        "<foreignobject",
    ] {
        assert!(!text.contains(bad), "sanitized SVG holds {bad}: {text}");
    }
    if let Err(e) = crate::image::svg::sanitize(&clean) {
        panic!("sanitized SVG does not sanitize again ({e}): {text}");
    }
}
