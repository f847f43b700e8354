//! `format=json` (Cloudflare's option): instead of an image, what the transform would make of
//! the source, in Cloudflare's shape: `{"width", "height", "original": {"file_size", "width",
//! "height", "format"}}`, `format` the original's media type. Answered from the header alone
//! (`pipeline::prepare`: the limits, the geometry of every option): nothing is decoded.

use crate::image::error::TransformError;
use crate::image::format::{OutputFormat, SourceFormat};
use crate::image::pipeline::prepare;
use crate::image::spec::{Limits, TransformSpec};

/// The media type of a source format.
fn media_type(f: SourceFormat) -> &'static str {
    match f {
        SourceFormat::Jpeg => "image/jpeg",
        SourceFormat::Png => "image/png",
        SourceFormat::Webp => "image/webp",
        SourceFormat::Gif => "image/gif",
        SourceFormat::Svg => "image/svg+xml",
    }
}

/// The JSON document for `src` transformed per `spec`: the output's width and height (border
/// included), the original's bytes, its size as displayed (EXIF orientation applied) and its
/// media type. Refused as the transform would be (limits, not an image).
pub fn describe(
    src: &[u8],
    spec: &TransformSpec,
    limits: &Limits,
) -> Result<Vec<u8>, TransformError> {
    // The output format plays no part in the geometry; any one satisfies `prepare`.
    let prepared = prepare(src, spec, OutputFormat::Png, limits)?;
    let (width, height) = prepared.output_size();
    let probe = match prepared.probe().format {
        // an SVG's prepared probe holds the size it would be rendered at, not its own
        SourceFormat::Svg => crate::image::codec::probe(src)?,
        _ => *prepared.probe(),
    };
    let (ow, oh) = probe.oriented_size();
    let doc = serde_json::json!({
        "width": width,
        "height": height,
        "original": {
            "file_size": src.len(),
            "width": ow,
            "height": oh,
            "format": media_type(probe.format),
        },
    });
    Ok(doc.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::params::{parse_query, Presets};

    #[test]
    fn sizes_from_the_header() {
        let mut png = std::io::Cursor::new(Vec::new());
        image::RgbImage::new(400, 200)
            .write_to(&mut png, image::ImageFormat::Png)
            .unwrap();
        let src = png.into_inner();
        let spec = parse_query(
            Some("width=100&format=json"),
            &Limits::default(),
            &Presets::new(),
        )
        .unwrap()
        .transform
        .unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&describe(&src, &spec, &Limits::default()).unwrap()).unwrap();
        assert_eq!(v["width"], 100);
        assert_eq!(v["height"], 50);
        assert_eq!(v["original"]["width"], 400);
        assert_eq!(v["original"]["height"], 200);
        assert_eq!(v["original"]["format"], "image/png");
        assert_eq!(v["original"]["file_size"], src.len());
        assert!(describe(b"not an image", &spec, &Limits::default()).is_err());
    }
}
