//! `sharpen` (0-10): an unsharp mask on the output, `v + amount * (v - blurred)` with a
//! Gaussian of standard deviation 1 pixel and `amount` = sharpen / 2 (so 1, the level
//! Cloudflare recommends after a downscale, adds half the detail again). Alpha is untouched.

use crate::image::ops::blur::gaussian;
use crate::image::pixels::Pixels;

pub fn sharpen(p: Pixels, level: f32) -> Pixels {
    let amount = level / 2.0;
    let blurred = gaussian(p.clone(), 1.0);
    let c = p.channels as usize;
    let mut out = p;
    for (px, bl) in out
        .data
        .chunks_exact_mut(c)
        .zip(blurred.data.chunks_exact(c))
    {
        for i in 0..3 {
            let v = px[i] as f32;
            px[i] = (v + amount * (v - bl[i] as f32)).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}
