//! `saturation`: moves each pixel away from (factor > 1) or towards (< 1) its grey of the same
//! luma (Rec. 709 weights, as CSS `saturate()` and the `image` crate's greyscale); 0 is grey.

use crate::image::pixels::Pixels;

pub fn saturation(p: &mut Pixels, s: f32) {
    let c = p.channels as usize;
    for px in p.data.chunks_exact_mut(c) {
        let (r, g, b) = (px[0] as f32, px[1] as f32, px[2] as f32);
        let l = 0.2126 * r + 0.7152 * g + 0.0722 * b;
        for v in &mut px[..3] {
            *v = (l + (*v as f32 - l) * s).round().clamp(0.0, 255.0) as u8;
        }
    }
}
