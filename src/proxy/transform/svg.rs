//! SVG responses (`transform.svg`). With `sanitize` (the default) every SVG the origin sends
//! (`Content-Type: image/svg+xml`), with or without transform parameters, is served as the
//! sanitized document (`image::svg`) with a restrictive `Content-Security-Policy`, unless a
//! size or a raster format is asked: then it is rasterized from the sanitized document. With
//! `passthrough`, SVGs are served as the origin sent them and still rasterized when asked.

use super::{Transformer, Verdict};
use crate::image::codec::sniff;
use crate::image::error::TransformError;
use crate::image::format::{source_format_from_content_type, FormatChoice, SourceFormat};
use crate::image::spec::TransformSpec;
use crate::image::svg::{sanitize, SvgMode};

/// What a sanitized SVG may still load or run where it is opened as a document: nothing but
/// its own inline styles and embedded (`data:`) images.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// The refusal of a compressed SVG: it cannot be sanitized as it is, and must not pass.
pub const ENCODED: &str = "an SVG with a Content-Encoding cannot be sanitized (transform.svg: \
    sanitize): the origin must send it uncompressed";

/// Whether the transform asks for pixels (a width, a height or a fixed output format) or for
/// `format=json`. Anything else (`format=auto` alone, a quality...) leaves an SVG a document.
pub fn rasterizes(spec: &TransformSpec) -> bool {
    spec.width.is_some()
        || spec.height.is_some()
        || spec.json
        || matches!(spec.format, FormatChoice::Fixed(_))
}

impl Transformer {
    /// The verdict on an origin response to a request without transform parameters: an SVG
    /// is sanitized (or refused from its header), anything else passes.
    pub fn inspect_plain(
        &self,
        status: u16,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        content_length: Option<u64>,
    ) -> Verdict {
        let svg = content_type.and_then(source_format_from_content_type) == Some(SourceFormat::Svg);
        if !svg || self.svg != SvgMode::Sanitize {
            return Verdict::PassThrough;
        }
        if let Err(v) = self.source_of(status, content_type, content_encoding) {
            return v;
        }
        self.declared_too_large(content_length)
            .unwrap_or(Verdict::Sanitize)
    }

    /// The verdict on an SVG served as a document.
    pub(super) fn svg_document(&self) -> Verdict {
        match self.svg {
            SvgMode::Sanitize => Verdict::Sanitize,
            SvgMode::Passthrough => Verdict::PassThrough,
        }
    }

    /// The source sanitized, when it is an SVG and `transform.svg` says so (so nothing the
    /// sanitizer removes ever reaches the renderer either); `None`: use it as it is.
    pub(super) fn sanitized_if_svg(
        &self,
        source: &[u8],
    ) -> Result<Option<Vec<u8>>, TransformError> {
        if self.svg == SvgMode::Sanitize && sniff(source) == Some(SourceFormat::Svg) {
            self.sanitize_svg(source).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Sanitizes a whole SVG body, within `transform.max_source_bytes`.
    pub fn sanitize_svg(&self, source: &[u8]) -> Result<Vec<u8>, TransformError> {
        if source.len() as u64 > self.limits.max_source_bytes {
            return Err(TransformError::TooLarge {
                bytes: source.len() as u64,
                max: self.limits.max_source_bytes,
            });
        }
        sanitize(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{defaults, TransformSettings};
    use crate::image::params::Presets;
    use crate::image::spec::Limits;

    fn t(svg: SvgMode) -> Transformer {
        Transformer::new(&TransformSettings {
            limits: Limits::default(),
            presets: Presets::new(),
            workers: 1,
            queue: 1,
            max_memory_bytes: defaults::TRANSFORM_MAX_MEMORY_BYTES,
            decoded_cache_bytes: 0,
            auto_avif: false,
            failure_ttl: defaults::TRANSFORM_FAILURE_TTL,
            timeout: defaults::TRANSFORM_TIMEOUT,
            signing: None,
            unknown_params: crate::config::UnknownParams::Warn,
            remote_sources: Vec::new(),
            svg,
        })
    }

    #[test]
    fn svg_verdicts() {
        let s = t(SvgMode::Sanitize);
        let svg = Some("image/svg+xml");
        assert_eq!(s.inspect_plain(200, svg, None, None), Verdict::Sanitize);
        assert_eq!(s.inspect_plain(404, svg, None, None), Verdict::PassThrough);
        assert_eq!(
            s.inspect_plain(200, Some("image/png"), None, None),
            Verdict::PassThrough
        );
        assert!(matches!(
            s.inspect_plain(200, svg, Some("gzip"), None),
            Verdict::Refuse(_)
        ));
        let planned = |q| s.plan(Some(q), None).unwrap().unwrap();
        assert_eq!(
            s.inspect(&planned("format=auto"), 200, svg, None, None),
            Verdict::Sanitize
        );
        assert!(matches!(
            s.inspect(&planned("width=20"), 200, svg, None, None),
            Verdict::Transform { .. }
        ));
        let p = t(SvgMode::Passthrough);
        assert_eq!(
            p.inspect_plain(200, svg, Some("gzip"), None),
            Verdict::PassThrough
        );
        assert_eq!(p.inspect_plain(200, svg, None, None), Verdict::PassThrough);
    }
}
