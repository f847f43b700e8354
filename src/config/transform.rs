//! The `transform` section: image limits, output formats, presets, workers, the memory budget,
//! and signed URLs.

use super::check::{dur, read_secret_text, size, Errors};
use super::defaults;
use super::raw::{RawSigning, RawTransform};
use super::{TransformSettings, UnknownParams};
use serde_yaml::Value;

/// `transform`: limits of URLs and sources, quality, formats, presets (checked against the
/// limits), signing and time budgets.
pub(super) fn validate_transform(t: RawTransform, errs: &mut Errors) -> TransformSettings {
    use crate::image::format::OutputFormat;
    use crate::image::params::{parse_preset, Presets};
    use crate::image::spec::Limits;
    let positive = |v: Option<u64>, d: u64, key: &str, errs: &mut Errors| -> u64 {
        let v = v.unwrap_or(d);
        if v == 0 {
            errs.add(format!("transform.{key}"), "must be at least 1");
        }
        v
    };
    let max_width = positive(
        t.max_width.map(u64::from),
        defaults::TRANSFORM_MAX_WIDTH.into(),
        "max_width",
        errs,
    );
    let max_height = positive(
        t.max_height.map(u64::from),
        defaults::TRANSFORM_MAX_HEIGHT.into(),
        "max_height",
        errs,
    );
    let max_output_pixels = positive(
        t.max_output_pixels,
        defaults::TRANSFORM_MAX_OUTPUT_PIXELS,
        "max_output_pixels",
        errs,
    );
    let max_source_pixels = positive(
        t.max_source_pixels,
        defaults::TRANSFORM_MAX_SOURCE_PIXELS,
        "max_source_pixels",
        errs,
    );
    let max_source_bytes = size(
        t.max_source_bytes,
        defaults::TRANSFORM_MAX_SOURCE_BYTES,
        "transform.max_source_bytes",
        errs,
    );
    let max_memory_bytes = size(
        t.max_memory_bytes,
        defaults::TRANSFORM_MAX_MEMORY_BYTES,
        "transform.max_memory_bytes",
        errs,
    );
    if max_memory_bytes < defaults::TRANSFORM_MIN_MEMORY_BYTES {
        errs.add(
            "transform.max_memory_bytes",
            format!("{max_memory_bytes} bytes is below the minimum 1MiB"),
        );
    }
    let decoded_cache_bytes = size(
        t.decoded_cache_bytes,
        defaults::TRANSFORM_DECODED_CACHE_BYTES,
        "transform.decoded_cache_bytes",
        errs,
    );
    let workers = t.workers.unwrap_or_else(defaults::threads);
    if workers == 0 {
        errs.add("transform.workers", "must be at least 1");
    }
    let quality = t.quality.unwrap_or(defaults::TRANSFORM_QUALITY);
    if !(1..=100).contains(&quality) {
        errs.add(
            "transform.quality",
            format!("{quality} is not within 1-100"),
        );
    }
    let avif_speed = t.avif_speed.unwrap_or(defaults::TRANSFORM_AVIF_SPEED);
    if !(1..=10).contains(&avif_speed) {
        errs.add(
            "transform.avif_speed",
            format!("{avif_speed} is not within 1 (slow) - 10 (fast)"),
        );
    }
    let mut allowed_formats = Vec::new();
    for (i, f) in t.formats.unwrap_or_default().iter().enumerate() {
        match OutputFormat::parse(f) {
            Some(f) => allowed_formats.push(f),
            None => errs.add(
                format!("transform.formats[{i}]"),
                format!("{f:?} is not one of avif, webp, jpeg, png, gif"),
            ),
        }
    }
    let color_profile = t
        .color_profile
        .as_deref()
        .unwrap_or(defaults::TRANSFORM_COLOR_PROFILE);
    let keep_color_profile = match color_profile {
        "srgb" => false,
        "keep" => true,
        other => {
            errs.add(
                "transform.color_profile",
                format!("{other:?} is not one of srgb, keep"),
            );
            false
        }
    };
    let limits = Limits {
        max_width: max_width.min(u32::MAX.into()) as u32,
        max_height: max_height.min(u32::MAX.into()) as u32,
        max_output_pixels,
        max_source_pixels,
        max_source_bytes,
        default_quality: quality,
        avif_speed,
        allowed_formats,
        keep_color_profile,
        max_animation_frames: positive(
            t.max_animation_frames.map(u64::from),
            defaults::TRANSFORM_MAX_ANIMATION_FRAMES.into(),
            "max_animation_frames",
            errs,
        )
        .min(u32::MAX.into()) as u32,
        max_animation_pixels: positive(
            t.max_animation_pixels,
            defaults::TRANSFORM_MAX_ANIMATION_PIXELS,
            "max_animation_pixels",
            errs,
        ),
    };
    let mut presets = Presets::new();
    for (name, params) in t.presets.unwrap_or_default() {
        let path = format!("transform.presets.{name}");
        let mut strings = std::collections::BTreeMap::new();
        for (k, v) in params {
            let s = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    errs.add(format!("{path}.{k}"), "must be a string or a number");
                    continue;
                }
            };
            strings.insert(k, s);
        }
        match parse_preset(&strings).and_then(|p| p.validate(&limits).map(|_| p)) {
            Ok(p) => {
                presets.insert(name, p);
            }
            Err(e) => errs.add(format!("{path}.{}", e.param), e.problem),
        }
    }
    let signing = t.signing.map(|s| validate_signing(s, errs));
    let timeout = dur(
        t.timeout,
        defaults::TRANSFORM_TIMEOUT,
        "transform.timeout".into(),
        errs,
    );
    if timeout.is_zero() {
        errs.add("transform.timeout", "must be above zero");
    }
    let unknown = t.unknown_params;
    let unknown = unknown
        .as_deref()
        .unwrap_or(defaults::TRANSFORM_UNKNOWN_PARAMS);
    let unknown_params = UnknownParams::parse(unknown).unwrap_or_else(|| {
        errs.add(
            "transform.unknown_params",
            format!("{unknown:?} is not one of forward, warn, reject"),
        );
        UnknownParams::Warn
    });
    let remote_sources = t
        .remote_sources
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, v)| match remote_source(v) {
            Ok(r) => Some(r),
            Err(why) => {
                errs.add(format!("transform.remote_sources[{i}]"), why);
                None
            }
        })
        .collect();
    let svg = match t.svg.as_deref() {
        None => defaults::TRANSFORM_SVG,
        Some(s) => crate::image::svg::SvgMode::parse(s).unwrap_or_else(|| {
            errs.add(
                "transform.svg",
                format!("{s:?} is not one of sanitize, passthrough"),
            );
            defaults::TRANSFORM_SVG
        }),
    };
    TransformSettings {
        svg,
        remote_sources,
        unknown_params,
        signing,
        limits,
        presets,
        workers,
        queue: t.queue.unwrap_or(defaults::TRANSFORM_QUEUE),
        max_memory_bytes,
        decoded_cache_bytes,
        auto_avif: t.auto_avif.unwrap_or(defaults::TRANSFORM_AUTO_AVIF),
        failure_ttl: dur(
            t.failure_ttl,
            defaults::TRANSFORM_FAILURE_TTL,
            "transform.failure_ttl".into(),
            errs,
        ),
        timeout,
    }
}

/// `transform.signing`: inline keys and/or key files (one key per file, surrounding whitespace
/// ignored), each at least `MIN_KEY_BYTES` long; what signatures cover besides path and
/// transform.
fn validate_signing(s: RawSigning, errs: &mut Errors) -> crate::signing::SigningSettings {
    use crate::signing::MIN_KEY_BYTES;
    let mut keys = Vec::new();
    for (i, k) in s.keys.unwrap_or_default().into_iter().enumerate() {
        if k.len() < MIN_KEY_BYTES {
            errs.add(
                format!("transform.signing.keys[{i}]"),
                format!(
                    "{} bytes is too short: use at least {MIN_KEY_BYTES} random bytes",
                    k.len()
                ),
            );
        }
        keys.push(k.into_bytes());
    }
    for (i, f) in s.key_files.unwrap_or_default().into_iter().enumerate() {
        let path = format!("transform.signing.key_files[{i}]");
        match read_secret_text(&f) {
            Ok(k) if k.trim().len() >= MIN_KEY_BYTES => keys.push(k.trim().as_bytes().to_vec()),
            Ok(k) => errs.add(
                path,
                format!(
                    "{f:?} holds {} bytes: use at least {MIN_KEY_BYTES}",
                    k.trim().len()
                ),
            ),
            Err(e) => errs.add(path, format!("cannot read {f:?}: {e}")),
        }
    }
    if keys.is_empty() {
        errs.add(
            "transform.signing.keys",
            "no key: give keys or key_files (or remove transform.signing)",
        );
    }
    crate::signing::SigningSettings {
        keys,
        required: s.required.unwrap_or(defaults::SIGNING_REQUIRED),
        cover_host: s.cover_host.unwrap_or(defaults::SIGNING_COVER_HOST),
        cover_query: s.cover_query.unwrap_or(defaults::SIGNING_COVER_QUERY),
    }
}

/// One `transform.remote_sources` entry: `https://host[:port]`, or `http://` for a loopback
/// host only (a test origin on this machine: plain HTTP elsewhere would let anyone on the path
/// change the images). No user, path (but `/`), query or fragment.
pub(crate) fn remote_source(v: &str) -> Result<super::RemoteSource, String> {
    let bad = |why: &str| format!("{v:?}: {why} (expected https://host[:port])");
    let (tls, rest) = if let Some(r) = v.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = v.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad("the scheme is not https:// or http://"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(bad("only a scheme, a host and a port"));
    }
    let auth: http::uri::Authority = authority.parse().map_err(|_| bad("not a host[:port]"))?;
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    let host = host.to_ascii_lowercase();
    // The part after an IPv6 host's brackets says whether a port was written at all.
    let after_host = auth
        .as_str()
        .rsplit_once(']')
        .map_or(auth.as_str(), |(_, r)| r);
    let port = match auth.port_u16() {
        Some(p) => p,
        None if auth.as_str().ends_with(':') => return Err(bad("empty port")),
        None if after_host.contains(':') => return Err(bad("the port is not 1-65535")),
        None if tls => 443,
        None => 80,
    };
    if port == 0 {
        return Err(bad("port 0"));
    }
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !tls && !loopback {
        return Err(bad("http:// is allowed for a loopback host only"));
    }
    Ok(super::RemoteSource { tls, host, port })
}

#[cfg(test)]
mod remote_tests {
    use super::remote_source;

    #[test]
    fn remote_sources_parse() {
        let r = remote_source("https://Images.Example.com").unwrap();
        assert_eq!(
            (r.tls, r.host.as_str(), r.port),
            (true, "images.example.com", 443)
        );
        assert_eq!(r.origin(), "https://images.example.com");
        let r = remote_source("http://127.0.0.1:8081/").unwrap();
        assert_eq!(r.origin(), "http://127.0.0.1:8081");
        assert_eq!(
            remote_source("https://[::1]:444").unwrap().origin(),
            "https://[::1]:444"
        );
        for bad in [
            "images.example.com",
            "ftp://x",
            "http://images.example.com",
            "https://",
            "https://x/path",
            "https://u@x",
            "https://x?q",
            "https://x:0",
            "https://x:99999",
        ] {
            assert!(remote_source(bad).is_err(), "{bad}");
        }
    }
}
