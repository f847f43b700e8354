//! `blur`: a Gaussian blur of the output whose `radius` (1-250, Cloudflare's range) is twice
//! its standard deviation, done by the `image` crate's box-blur approximation (linear time in
//! the radius, so 250 costs about what 1 does).

use crate::image::pixels::Pixels;

pub fn blur(p: Pixels, radius: f32) -> Pixels {
    gaussian(p, radius / 2.0)
}

/// A fast Gaussian of standard deviation `sigma` (also the unsharp mask's blurred copy).
pub(crate) fn gaussian(p: Pixels, sigma: f32) -> Pixels {
    let (w, h, c) = (p.width, p.height, p.channels);
    let data = match c {
        4 => image::RgbaImage::from_raw(w, h, p.data)
            .map(|i| image::imageops::fast_blur(&i, sigma).into_raw()),
        _ => image::RgbImage::from_raw(w, h, p.data)
            .map(|i| image::imageops::fast_blur(&i, sigma).into_raw()),
    };
    Pixels {
        width: w,
        height: h,
        channels: c,
        // from_raw fails only for a buffer of the wrong size, which `Pixels` never has
        data: data.unwrap_or_default(),
    }
}
