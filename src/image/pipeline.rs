//! The whole pipeline, in Cloudflare's order of operations: limits -> sniff/probe -> trim ->
//! EXIF orientation, flip, rotate (one combined orientation, applied after the resize) ->
//! decode (JPEG shrink-on-load) -> resize and crop (`gravity=auto`: the window placed by
//! saliency on the decoded pixels) -> colour (brightness, contrast, gamma,
//! saturation) -> blur, sharpen -> pad/flatten onto the background -> border -> encode. The caller decides the output format. [`prepare`] does
//! everything the header allows (limits, geometry, the memory estimate) before a pixel is
//! decoded; [`Prepared::run`] does the rest. An animation kept animated (`animation`) goes
//! through the same steps frame by frame.

use crate::image::animation;
use crate::image::codec::{self, probe, AnimHeader, Probe};
use crate::image::cost;
use crate::image::decoded::DecodedCache;
use crate::image::error::TransformError;
use crate::image::format::{OutputFormat, SourceFormat};
use crate::image::metadata;
use crate::image::ops::fit::{plan, Plan};
use crate::image::ops::flatten::flatten;
use crate::image::ops::orient::{apply_orientation, compose, upright_rect_to_stored};
use crate::image::ops::pad::pad;
use crate::image::ops::resize::{is_identity, resize_from};
use crate::image::ops::{
    blur, border, brightness, color_profile, contrast, flip, gamma, rotate, saliency, saturation,
    sharpen, trim, trim_border, Rect,
};
use crate::image::pixels::Pixels;
use crate::image::spec::{Fit, Gravity, Limits, TransformSpec};
use std::sync::Arc;

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
    /// The decoded source came from the decoded-source cache (no decode ran).
    pub reused_decode: bool,
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
/// not look at `spec.format`; the Content-Type the origin sent plays no part): [`prepare`],
/// then [`Prepared::run`].
///
/// Alpha: PNG/WebP/AVIF keep it; JPEG is flattened onto `background` (default white). `pad`
/// fills with `background`, or transparent for alpha formats when no background is given.
pub fn transform(
    src: &[u8],
    spec: &TransformSpec,
    format: OutputFormat,
    limits: &Limits,
) -> Result<Output, TransformError> {
    prepare(src, spec, format, limits)?.run(src, spec, limits)
}

/// A transform checked against the limits from its source's header, with its geometry worked
/// out: nothing is decoded yet, and [`Prepared::peak_bytes`] tells what running it will hold.
#[derive(Clone, Debug)]
pub struct Prepared {
    probe: Probe,
    layout: Layout,
    jpeg_denom: usize,
    format: OutputFormat,
    source_bytes: u64,
    /// Colour, blur, sharpen or border work on the output (extra buffers).
    filtered: bool,
    /// An animation kept animated (`image::animation`): its frames are made one at a time.
    anim: Option<AnimHeader>,
}

/// Checks, in order, before any pixel buffer is allocated: `max_source_bytes`, the magic
/// bytes, the header's dimensions against `max_source_pixels`, the output canvas against
/// `max_output_pixels`.
pub fn prepare(
    src: &[u8],
    spec: &TransformSpec,
    format: OutputFormat,
    limits: &Limits,
) -> Result<Prepared, TransformError> {
    if src.len() as u64 > limits.max_source_bytes {
        return Err(TransformError::TooLarge {
            bytes: src.len() as u64,
            max: limits.max_source_bytes,
        });
    }
    let mut probe = probe(src)?;
    let svg = probe.format == SourceFormat::Svg;
    if !svg && probe.pixels() > limits.max_source_pixels {
        return Err(TransformError::TooManyPixels {
            w: probe.width,
            h: probe.height,
            max: limits.max_source_pixels,
        });
    }
    let (uw, uh) = probe.oriented_size();
    // trim cuts the upright source; its region in the stored pixels is what the rest sees
    let kept = match &spec.trim {
        Some(t) => trim::region(t, uw, uh).map_err(TransformError::Trim)?,
        None => Rect {
            x: 0.0,
            y: 0.0,
            w: uw as f64,
            h: uh as f64,
        },
    };
    let (sw, sh) = (probe.width as f64, probe.height as f64);
    let region = upright_rect_to_stored(kept, probe.orientation, sw, sh);
    // with `trim=border` this is the untrimmed layout: its output bounds the trimmed one's
    let mut layout = layout_of(
        region,
        probe.orientation,
        &codec::svg::vector_spec(svg, spec),
    );
    if svg {
        // rendered at the size the crop needs, checked against the pixel limit before
        let (w, h) = codec::svg::render_size(layout.crop, layout.resized, &probe, limits)?;
        let (fx, fy) = (
            w as f64 / probe.width as f64,
            h as f64 / probe.height as f64,
        );
        let to_render = |r: Rect| Rect {
            x: r.x * fx,
            y: r.y * fy,
            w: r.w * fx,
            h: r.h * fy,
        };
        (layout.crop, layout.region) = (to_render(layout.crop), to_render(layout.region));
        (probe.width, probe.height) = (w, h);
    }
    let output = layout.output;
    if output.0 as u64 * output.1 as u64 > limits.max_output_pixels {
        return Err(TransformError::OutputTooLarge {
            w: output.0,
            h: output.1,
            max: limits.max_output_pixels,
        });
    }
    let anim = animation::plan(src, &probe, spec, format, limits)?;
    let jpeg_denom = if spec.trim_border.is_some() {
        // the border is found on the full-size pixels, and the crop is not known before
        1
    } else {
        jpeg_scale_denominator(layout.crop, layout.resized.0, layout.resized.1)
    };
    Ok(Prepared {
        probe,
        layout,
        jpeg_denom,
        format,
        source_bytes: src.len() as u64,
        filtered: spec.adjust != Default::default() || spec.border.is_some(),
        anim,
    })
}

/// The geometry of a transform of the stored pixels' `region` (what `trim` keeps).
#[derive(Clone, Debug)]
struct Layout {
    plan: Plan,
    /// `plan.crop` in the stored orientation, in source pixels.
    crop: Rect,
    /// What `trim` keeps, in the stored orientation, in source pixels.
    region: Rect,
    /// `gravity=auto` moves `crop` within `region` once the pixels are decoded.
    auto_crop: bool,
    /// EXIF orientation, `flip` and `rotate` combined: what turns the resized pixels.
    orientation: u8,
    /// The output size, the border included.
    output: (u32, u32),
    /// The size the crop is resized to, in the stored orientation.
    resized: (u32, u32),
}

fn layout_of(region: Rect, exif: u8, spec: &TransformSpec) -> Layout {
    let o = compose(
        compose(exif, flip::orientation(spec.flip)),
        rotate::orientation(spec.rotate),
    );
    // width and height refer to the axes after rotation
    let (rw, rh) = (region.w.round() as u32, region.h.round() as u32);
    let (fw, fh) = if o >= 5 { (rh, rw) } else { (rw, rh) };
    let plan = plan(
        fw,
        fh,
        spec.target_width(),
        spec.target_height(),
        spec.fit,
        spec.gravity,
    );
    let b = spec.border.unwrap_or_default();
    let output = (
        plan.canvas_w.saturating_add(b.left).saturating_add(b.right),
        plan.canvas_h.saturating_add(b.top).saturating_add(b.bottom),
    );
    // work in stored orientation up to the resize, then turn only the small result
    let inner = upright_rect_to_stored(plan.crop, o, region.w, region.h);
    let crop = Rect {
        x: region.x + inner.x,
        y: region.y + inner.y,
        ..inner
    };
    let resized = if o >= 5 {
        (plan.scaled_h, plan.scaled_w)
    } else {
        (plan.scaled_w, plan.scaled_h)
    };
    let crops = matches!(spec.fit, Fit::Cover | Fit::Crop);
    let smaller = crop.w < region.w - 0.5 || crop.h < region.h - 0.5;
    Layout {
        plan,
        crop,
        region,
        auto_crop: spec.gravity == Gravity::Auto && crops && smaller,
        orientation: o,
        output,
        resized,
    }
}

impl Prepared {
    /// The output's size, the border included (what `format=json` reports).
    pub fn output_size(&self) -> (u32, u32) {
        self.layout.output
    }

    /// The source's header.
    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    /// The most memory running this transform holds at once, estimated from the header (the
    /// source bytes included): what it reserves of `transform.max_memory_bytes`.
    pub fn peak_bytes(&self) -> u64 {
        let (dw, dh) = codec::decoded_size(&self.probe, self.jpeg_denom);
        let fx = dw as f64 / self.probe.width as f64;
        let l = &self.layout;
        let c = l.crop;
        let whole = c.x == 0.0
            && c.y == 0.0
            && c.w == self.probe.width as f64
            && c.h == self.probe.height as f64;
        let still = cost::peak_bytes(&cost::Stages {
            source_bytes: self.source_bytes,
            probe: self.probe,
            decoded: (dw, dh),
            resize: !(whole && l.resized == (dw, dh)),
            crop_width: (c.w * fx).ceil() as u32,
            resized: l.resized,
            oriented: (2..=8).contains(&l.orientation),
            padded: l.plan.is_padded(),
            canvas: l.output,
            filtered: self.filtered,
            format: self.format,
        });
        match self.anim {
            Some(a) => still + cost::animation_bytes(&self.probe, a.frames, l.output, self.format),
            None => still,
        }
    }

    /// Decodes, resizes, orients, pads or flattens, and encodes `src` (the bytes it was
    /// prepared from).
    pub fn run(
        self,
        src: &[u8],
        spec: &TransformSpec,
        limits: &Limits,
    ) -> Result<Output, TransformError> {
        self.run_with(src, spec, limits, None)
    }

    /// [`Prepared::run`], taking the decoded source from `decoded` when it holds one with
    /// enough resolution, and keeping what it decodes there.
    pub fn run_with(
        self,
        src: &[u8],
        spec: &TransformSpec,
        limits: &Limits,
        decoded: Option<&DecodedCache>,
    ) -> Result<Output, TransformError> {
        let Prepared {
            probe,
            layout,
            jpeg_denom,
            format,
            anim,
            ..
        } = self;
        let quality = spec.quality.unwrap_or(limits.default_quality);
        if let Some(anim) = anim {
            // every frame shares the geometry settled on the first
            let mut shape = None;
            let each = |frame: Pixels| {
                let frame = Arc::new(frame);
                let s = shape.get_or_insert_with(|| settle(&frame, &probe, layout.clone(), spec));
                draw(frame, s, spec, format)
            };
            let (bytes, (width, height)) =
                animation::run(src, &probe, anim, format, quality, each)?;
            return Ok(Output {
                bytes,
                format,
                width,
                height,
                source: probe.format,
                reused_decode: false,
            });
        }
        // `keep`: AVIF cannot carry the profile (ravif writes none), so its output is converted
        let keep = limits.keep_color_profile && format != OutputFormat::Avif;
        let decoded = decoded.filter(|_| keep == limits.keep_color_profile);
        let (pixels, reused_decode) = decode_or_reuse(src, &probe, jpeg_denom, decoded, keep)?;
        let shape = settle(&pixels, &probe, layout, spec);
        let img = draw(pixels, &shape, spec, format)?;
        let mut bytes = codec::encode(&img, format, quality, limits.avif_speed)?;
        if keep {
            if let Some(icc) = codec::icc::profile(src, probe.format) {
                if color_profile::is_wide_rgb(&icc) {
                    bytes = codec::icc::embed(bytes, format, &icc, img.width, img.height);
                }
            }
        }
        let bytes = metadata::carry(src, probe.format, bytes, format, spec.metadata)?;
        Ok(Output {
            bytes,
            format,
            width: img.width,
            height: img.height,
            source: probe.format,
            reused_decode,
        })
    }
}

/// The geometry once the decoded pixels are seen: `trim=border` and `gravity=auto` decided on
/// them (for an animation, on its first frame: every frame is cut alike).
#[derive(Clone, Debug)]
struct Shape {
    plan: Plan,
    /// The crop in the decoded pixels.
    crop: Rect,
    resized: (u32, u32),
    orientation: u8,
}

/// Settles `layout` on the decoded `pixels` (of the probed source, maybe DCT-scaled).
fn settle(pixels: &Pixels, probe: &Probe, mut layout: Layout, spec: &TransformSpec) -> Shape {
    let fx = pixels.width as f64 / probe.width as f64;
    let fy = pixels.height as f64 / probe.height as f64;
    let scaled = |r: Rect| Rect {
        x: r.x * fx,
        y: r.y * fy,
        w: r.w * fx,
        h: r.h * fy,
    };
    if let Some(t) = &spec.trim_border {
        // the geometry again, on what the border leaves (never larger than prepared)
        let kept = trim_border::content(pixels, scaled(layout.region), t);
        let region = Rect {
            x: kept.x / fx,
            y: kept.y / fy,
            w: kept.w / fx,
            h: kept.h / fy,
        };
        layout = layout_of(region, probe.orientation, spec);
    }
    let mut crop = scaled(layout.crop);
    if layout.auto_crop {
        // saliency is the same in any orientation: the window is placed on the stored pixels
        (crop.x, crop.y) = saliency::best_window(pixels, scaled(layout.region), crop.w, crop.h);
    }
    Shape {
        plan: layout.plan,
        crop,
        resized: layout.resized,
        orientation: layout.orientation,
    }
}

/// Crops and resizes, orients, adjusts, pads or flattens and borders the decoded `pixels`.
fn draw(
    pixels: Arc<Pixels>,
    shape: &Shape,
    spec: &TransformSpec,
    format: OutputFormat,
) -> Result<Pixels, TransformError> {
    let Shape {
        plan,
        crop,
        resized: (rw, rh),
        orientation,
    } = shape;
    let (crop, rw, rh) = (*crop, *rw, *rh);
    let resized = if is_identity(&pixels, crop, rw, rh) {
        Arc::unwrap_or_clone(pixels)
    } else {
        resize_from(&pixels, crop, rw, rh)?
    };
    let img = apply_orientation(resized, *orientation);
    let mut img = adjust(img, spec);

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
    if let Some(b) = &spec.border {
        img = border::border(&img, b);
    }
    Ok(img)
}

/// The decoded source: from `cache` when it holds this source with enough resolution (or is
/// decoding it now), else decoded (and kept there). JPEGs are the only sources decoded at a scale; every other
/// format is cached at its full size (scale 1).
fn decode_or_reuse(
    src: &[u8],
    probe: &codec::Probe,
    jpeg_denom: usize,
    cache: Option<&DecodedCache>,
    keep: bool,
) -> Result<(Arc<Pixels>, bool), TransformError> {
    let Some(cache) = cache.filter(|c| c.enabled()) else {
        return Ok((Arc::new(decode_srgb(src, probe, jpeg_denom, keep)?), false));
    };
    let scale = match probe.format {
        SourceFormat::Jpeg => jpeg_denom,
        // rendered at each variant's size: nothing to share
        SourceFormat::Svg => return Ok((Arc::new(codec::decode(src, probe, jpeg_denom)?), false)),
        _ => 1,
    };
    cache.get_or_decode(cache.id(src), scale, || {
        decode_srgb(src, probe, jpeg_denom, keep)
    })
}

/// [`codec::decode`], then the embedded profile applied: before the resize, so it mixes sRGB
/// values (`ops::color_profile`). With `keep` an RGB profile is left for the output to carry.
fn decode_srgb(
    src: &[u8],
    probe: &codec::Probe,
    jpeg_denom: usize,
    keep: bool,
) -> Result<Pixels, TransformError> {
    let icc = codec::icc::profile(src, probe.format);
    if let (Some(icc), codec::Layout::Jpeg { components: 4, .. }) = (&icc, probe.layout) {
        if color_profile::is_cmyk(icc) {
            let cmyk = codec::jpeg_cmyk::decode(src)?;
            if let Some(rgb) = color_profile::cmyk_to_srgb(&cmyk, icc) {
                return Ok(rgb);
            }
        }
    }
    let mut pixels = codec::decode(src, probe, jpeg_denom)?;
    if let Some(icc) = icc.filter(|i| !(keep && color_profile::is_wide_rgb(i))) {
        color_profile::to_srgb(&mut pixels, &icc);
    }
    Ok(pixels)
}

/// Colour adjustments, then blur and sharpen, on the resized image.
fn adjust(mut img: Pixels, spec: &TransformSpec) -> Pixels {
    let a = &spec.adjust;
    if let Some(f) = a.brightness {
        brightness::brightness(&mut img, f);
    }
    if let Some(f) = a.contrast {
        contrast::contrast(&mut img, f);
    }
    if let Some(g) = a.gamma {
        gamma::gamma(&mut img, g);
    }
    if let Some(s) = a.saturation {
        saturation::saturation(&mut img, s);
    }
    if let Some(r) = a.blur {
        img = blur::blur(img, r);
    }
    if let Some(l) = a.sharpen {
        img = sharpen::sharpen(img, l);
    }
    img
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
