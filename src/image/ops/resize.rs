//! SIMD resize (fast_image_resize, Lanczos3) of a crop of the pixels.

use fast_image_resize as fr;

use crate::image::error::TransformError;
use crate::image::ops::Rect;
use crate::image::pixels::Pixels;

/// Resizes the `crop` area of `p` to `dw` x `dh` (Lanczos3; RGBA is premultiplied during the
/// resize so transparent pixels do not bleed their colour).
pub fn resize(p: Pixels, crop: Rect, dw: u32, dh: u32) -> Result<Pixels, TransformError> {
    if is_identity(&p, crop, dw, dh) {
        return Ok(p);
    }
    resize_from(&p, crop, dw, dh)
}

/// The whole of `p` at its own size: nothing to resize.
pub fn is_identity(p: &Pixels, crop: Rect, dw: u32, dh: u32) -> bool {
    let whole =
        crop.x == 0.0 && crop.y == 0.0 && crop.w == p.width as f64 && crop.h == p.height as f64;
    whole && dw == p.width && dh == p.height
}

/// [`resize`] from borrowed pixels (a decoded source other variants may use too).
pub fn resize_from(p: &Pixels, crop: Rect, dw: u32, dh: u32) -> Result<Pixels, TransformError> {
    let pt = if p.channels == 4 {
        fr::PixelType::U8x4
    } else {
        fr::PixelType::U8x3
    };
    let err = |e: &dyn std::fmt::Display| TransformError::Corrupt(format!("resize: {e}"));
    let src = fr::images::ImageRef::new(p.width, p.height, &p.data, pt).map_err(|e| err(&e))?;
    let mut dst = fr::images::Image::new(dw, dh, pt);
    // clamp the crop into the image (float error after DCT scaling)
    let x = crop.x.clamp(0.0, p.width as f64 - 1.0);
    let y = crop.y.clamp(0.0, p.height as f64 - 1.0);
    let w = crop.w.min(p.width as f64 - x).max(1.0);
    let h = crop.h.min(p.height as f64 - y).max(1.0);
    let opts = fr::ResizeOptions::new()
        .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3))
        .crop(x, y, w, h);
    let mut r = fr::Resizer::new();
    r.resize(&src, &mut dst, &opts).map_err(|e| err(&e))?;
    Ok(Pixels {
        width: dw,
        height: dh,
        channels: p.channels,
        data: dst.into_vec(),
    })
}
