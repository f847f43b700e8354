//! SVG as a source: its intrinsic size, and rasterizing it (resvg) at the size the pipeline
//! asks for. No encoder: SVG output is the sanitized document itself (`image::svg`).
//!
//! Nothing outside the document is ever read: `<image>` references (file paths, `data:` URLs)
//! are not resolved, so embedded raster images are not drawn (their decoders would escape the
//! pixel limits). Text is drawn with the system's fonts, loaded once.

use super::{Layout, Probe};
use crate::image::error::TransformError;
use crate::image::ops::Rect;
use crate::image::pixels::Pixels;
use crate::image::spec::{Fit, Limits, TransformSpec};
use once_cell::sync::Lazy;
use resvg::{tiny_skia, usvg};
use std::borrow::Cow;
use std::sync::Arc;

/// The system's fonts, read once per process (scanning them costs milliseconds).
static FONTS: Lazy<Arc<usvg::fontdb::Database>> = Lazy::new(|| {
    let mut db = usvg::fontdb::Database::new();
    db.load_system_fonts();
    Arc::new(db)
});

fn options() -> usvg::Options<'static> {
    usvg::Options {
        resources_dir: None,
        image_href_resolver: usvg::ImageHrefResolver {
            resolve_data: Box::new(|_, _, _| None),
            resolve_string: Box::new(|_, _| None),
        },
        fontdb: Arc::clone(&FONTS),
        ..usvg::Options::default()
    }
}

fn parse(bytes: &[u8]) -> Result<usvg::Tree, TransformError> {
    usvg::Tree::from_data(bytes, &options()).map_err(|e| match e {
        usvg::Error::ElementsLimitReached => {
            TransformError::Unsupported("SVG has more than a million elements".into())
        }
        e => TransformError::Corrupt(format!("SVG: {e}")),
    })
}

/// The intrinsic size (`width`/`height`, else the `viewBox`), rounded up to whole pixels.
/// Parses the whole document: an SVG's header is the document.
pub fn probe(bytes: &[u8]) -> Result<(u32, u32, u8, Layout), TransformError> {
    let size = parse(bytes)?.size();
    let px = |v: f32| v.ceil().clamp(1.0, u32::MAX as f32) as u32;
    let layout = Layout::Svg {
        source_bytes: bytes.len() as u64,
    };
    Ok((px(size.width()), px(size.height()), 1, layout))
}

/// Renders the whole document scaled to `w` x `h` (RGBA, straight alpha). The caller checked
/// `w` x `h` against the pixel limits before.
pub fn render(bytes: &[u8], w: u32, h: u32) -> Result<Pixels, TransformError> {
    let tree = parse(bytes)?;
    let mut pixmap = tiny_skia::Pixmap::new(w, h)
        .ok_or_else(|| TransformError::Unsupported(format!("SVG cannot be rendered at {w}x{h}")))?;
    let size = tree.size();
    let t = tiny_skia::Transform::from_scale(w as f32 / size.width(), h as f32 / size.height());
    resvg::render(&tree, t, &mut pixmap.as_mut());
    Ok(Pixels {
        width: w,
        height: h,
        channels: 4,
        data: pixmap.take_demultiplied(),
    })
}

/// The spec an SVG's geometry is planned with: a vector has no native resolution to protect,
/// so the default `scale-down` draws it at the size asked (as `contain`).
pub fn vector_spec(svg: bool, spec: &TransformSpec) -> Cow<'_, TransformSpec> {
    if svg && spec.fit == Fit::ScaleDown {
        Cow::Owned(TransformSpec {
            fit: Fit::Contain,
            ..spec.clone()
        })
    } else {
        Cow::Borrowed(spec)
    }
}

/// The size to render an SVG of the probe's intrinsic size at, so that `crop` of it (in
/// intrinsic pixels) comes out at `resized`: exactly `resized` when the whole drawing is kept,
/// so no resize follows. Refused above `max_source_pixels`, before anything is rendered: the
/// limit applies to what is rendered, not to the document's own width and height.
pub fn render_size(
    crop: Rect,
    resized: (u32, u32),
    probe: &Probe,
    limits: &Limits,
) -> Result<(u32, u32), TransformError> {
    let (iw, ih) = (probe.width as f64, probe.height as f64);
    let whole = crop.x == 0.0 && crop.y == 0.0 && crop.w == iw && crop.h == ih;
    let px = |v: f64| v.ceil().clamp(1.0, u32::MAX as f64) as u32;
    let (w, h) = if whole {
        resized
    } else {
        (
            px(iw * resized.0 as f64 / crop.w),
            px(ih * resized.1 as f64 / crop.h),
        )
    };
    if w as u64 * h as u64 > limits.max_source_pixels {
        return Err(TransformError::RenderTooLarge {
            w,
            h,
            max: limits.max_source_pixels,
        });
    }
    Ok((w, h))
}

/// Whether the bytes look like an SVG document: XML (after a BOM, whitespace, an XML
/// declaration, comments or a DOCTYPE) whose first element is `svg`.
pub fn sniff(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let Ok(text) = std::str::from_utf8(head).or_else(|e| {
        std::str::from_utf8(&head[..e.valid_up_to()]) // cut mid-character at 4 KiB
    }) else {
        return false;
    };
    let mut rest = text.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("<?") {
            rest = r.split_once("?>").map_or("", |(_, r)| r).trim_start();
        } else if let Some(r) = rest.strip_prefix("<!--") {
            rest = r.split_once("-->").map_or("", |(_, r)| r).trim_start();
        } else if rest.starts_with("<!") {
            // a DOCTYPE: its name says what the root is
            return rest
                .get(..13)
                .is_some_and(|d| d.eq_ignore_ascii_case("<!DOCTYPE svg"));
        } else {
            return rest.starts_with("<svg")
                || rest.split_once(':').is_some_and(|(p, r)| {
                    p.starts_with('<') && !p.contains([' ', '>']) && r.starts_with("svg")
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARE: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20.5" viewBox="0 0 80 41"><rect width="40" height="41" fill="#ff0000"/><rect x="40" width="40" height="41" fill="#0000ff"/></svg>"##;

    #[test]
    fn sniffs_svg() {
        assert!(sniff(SQUARE.as_bytes()));
        assert!(sniff(
            b"\xEF\xBB\xBF<?xml version='1.0'?>\n<!-- x --><!DOCTYPE svg PUBLIC><svg/>"
        ));
        assert!(sniff(b"<svg:svg xmlns:svg='http://www.w3.org/2000/svg'/>"));
        assert!(!sniff(b"<html><svg/></html>"));
        assert!(!sniff(b"\x89PNG"));
    }

    #[test]
    fn probes_and_renders() {
        let (w, h, o, l) = probe(SQUARE.as_bytes()).unwrap();
        assert_eq!((w, h, o), (40, 21, 1));
        assert!(matches!(l, Layout::Svg { .. }));
        let p = render(SQUARE.as_bytes(), 80, 41).unwrap();
        assert_eq!((p.width, p.height, p.channels), (80, 41, 4));
        let at = |x: usize, y: usize| &p.data[(y * 80 + x) * 4..][..4];
        assert_eq!(at(10, 10), [255, 0, 0, 255]);
        assert_eq!(at(70, 30), [0, 0, 255, 255]);
        assert!(probe(b"<svg xmlns='http://www.w3.org/2000/svg'").is_err());
    }
}
