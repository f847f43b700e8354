//! The whole pipeline: limits -> sniff/probe -> decode (JPEG shrink-on-load) -> resize ->
//! orient -> pad/flatten -> encode. The caller decides the output format.

use crate::image::codec::{self, probe};
use crate::image::error::TransformError;
use crate::image::format::{OutputFormat, SourceFormat};
use crate::image::ops::fit::plan;
use crate::image::ops::flatten::flatten;
use crate::image::ops::orient::{apply_orientation, upright_rect_to_stored};
use crate::image::ops::pad::pad;
use crate::image::ops::resize::resize;
use crate::image::ops::Rect;
use crate::image::spec::{Limits, TransformSpec};

/// An encoded result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub bytes: Vec<u8>,
    pub format: OutputFormat,
    pub width: u32,
    pub height: u32,
    /// The source's format as sniffed from its bytes (the caller may compare it with what the
    /// origin's `Content-Type` declared).
    pub source: SourceFormat,
}

/// Largest JPEG DCT scaling denominator (8, 4, 2, else 1) whose decoded crop is still at least
/// `rw` x `rh`: the resize after it always shrinks (or keeps) the decoded pixels.
pub fn jpeg_scale_denominator(crop: Rect, rw: u32, rh: u32) -> usize {
    for d in [8usize, 4, 2] {
        if (crop.w / d as f64).floor() >= rw as f64 && (crop.h / d as f64).floor() >= rh as f64 {
            return d;
        }
    }
    1
}

/// Transforms `src` per `spec` into `format`, which the caller has decided (the pipeline does
/// not look at `spec.format`; the Content-Type the origin sent plays no part). Checks, in
/// order, before any pixel buffer is allocated: `max_source_bytes`, the magic bytes, the
/// header's dimensions against `max_source_pixels`, the output canvas against
/// `max_output_pixels`.
///
/// Alpha: PNG/WebP/AVIF keep it; JPEG is flattened onto `background` (default white). `pad`
/// fills with `background`, or transparent for alpha formats when no background is given.
pub fn transform(
    src: &[u8],
    spec: &TransformSpec,
    format: OutputFormat,
    limits: &Limits,
) -> Result<Output, TransformError> {
    if src.len() as u64 > limits.max_source_bytes {
        return Err(TransformError::TooLarge {
            bytes: src.len() as u64,
            max: limits.max_source_bytes,
        });
    }
    let probe = probe(src)?;
    if probe.pixels() > limits.max_source_pixels {
        return Err(TransformError::TooManyPixels {
            w: probe.width,
            h: probe.height,
            max: limits.max_source_pixels,
        });
    }
    let (uw, uh) = probe.oriented_size();
    let plan = plan(
        uw,
        uh,
        spec.target_width(),
        spec.target_height(),
        spec.fit,
        spec.gravity,
    );
    if plan.canvas_w as u64 * plan.canvas_h as u64 > limits.max_output_pixels {
        return Err(TransformError::OutputTooLarge {
            w: plan.canvas_w,
            h: plan.canvas_h,
            max: limits.max_output_pixels,
        });
    }

    // work in stored orientation up to the resize, then turn only the small result upright
    let o = probe.orientation;
    let crop = upright_rect_to_stored(plan.crop, o, probe.width as f64, probe.height as f64);
    let (rw, rh) = if o >= 5 {
        (plan.scaled_h, plan.scaled_w)
    } else {
        (plan.scaled_w, plan.scaled_h)
    };
    let pixels = codec::decode(src, &probe, jpeg_scale_denominator(crop, rw, rh))?;
    let fx = pixels.width as f64 / probe.width as f64;
    let fy = pixels.height as f64 / probe.height as f64;
    let crop = Rect {
        x: crop.x * fx,
        y: crop.y * fy,
        w: crop.w * fx,
        h: crop.h * fy,
    };
    let mut img = apply_orientation(resize(pixels, crop, rw, rh)?, o);

    let flatten_bg = spec.background.unwrap_or([255, 255, 255]);
    if plan.is_padded() {
        let canvas_bg = if format.has_alpha() {
            spec.background
        } else {
            Some(flatten_bg)
        };
        img = pad(
            &img,
            plan.canvas_w,
            plan.canvas_h,
            plan.offset_x,
            plan.offset_y,
            canvas_bg,
        );
    }
    if !format.has_alpha() {
        img = flatten(img, flatten_bg);
    }
    let quality = spec.quality.unwrap_or(limits.default_quality);
    let bytes = codec::encode(&img, format, quality, limits.avif_speed)?;
    Ok(Output {
        bytes,
        format,
        width: img.width,
        height: img.height,
        source: probe.format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrink_on_load_choice() {
        let full = |w: f64, h: f64| Rect {
            x: 0.0,
            y: 0.0,
            w,
            h,
        };
        assert_eq!(jpeg_scale_denominator(full(3840.0, 2160.0), 400, 225), 8);
        assert_eq!(jpeg_scale_denominator(full(3840.0, 2160.0), 800, 450), 4);
        assert_eq!(jpeg_scale_denominator(full(3840.0, 2160.0), 1000, 563), 2);
        assert_eq!(jpeg_scale_denominator(full(3840.0, 2160.0), 2000, 1125), 1);
        assert_eq!(jpeg_scale_denominator(full(3840.0, 2160.0), 3840, 2160), 1);
    }
}
