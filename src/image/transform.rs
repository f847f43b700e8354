//! The whole pipeline: limits -> sniff/probe -> decode (JPEG shrink-on-load) -> resize ->
//! orient -> pad/flatten -> encode.

use super::decode::{decode_jpeg, decode_with_image, probe};
use super::encode::encode;
use super::error::TransformError;
use super::format::{Negotiated, OutputFormat, SourceFormat};
use super::params::{Limits, TransformSpec};
use super::resize::{apply_orientation, flatten, pad, plan, resize, upright_rect_to_stored, Rect};

/// An encoded result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub bytes: Vec<u8>,
    pub format: OutputFormat,
    pub width: u32,
    pub height: u32,
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

/// Transforms `src` per `spec` into `out` (resolved against the sniffed source format; the
/// Content-Type the origin sent plays no part). Checks, in order, before any pixel buffer is
/// allocated: `max_source_bytes`, the magic bytes, the header's dimensions against
/// `max_source_pixels`, the output canvas against `max_output_pixels`.
///
/// Alpha: PNG/WebP/AVIF keep it; JPEG is flattened onto `background` (default white). `pad`
/// fills with `background`, or transparent for alpha formats when no background is given.
pub fn transform(
    src: &[u8],
    spec: &TransformSpec,
    out: Negotiated,
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
    let format = out.resolve(probe.format);
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
    let pixels = match probe.format {
        SourceFormat::Jpeg => decode_jpeg(src, jpeg_scale_denominator(crop, rw, rh))?,
        f => decode_with_image(src, f, probe.width, probe.height)?,
    };
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
    let bytes = encode(&img, format, quality, limits.avif_speed)?;
    Ok(Output {
        bytes,
        format,
        width: img.width,
        height: img.height,
    })
}
