//! The operations on decoded pixels, one file per operation, in the order the pipeline applies
//! them (Cloudflare's): `trim` (`trim_border`: `trim=border`); EXIF orientation, `flip` and `rotate` (`orient`, `flip`,
//! `rotate`: one combined orientation); resize and crop (`fit` geometry, `saliency` for `gravity=auto`, `resize`, `pad`);
//! colour (`brightness`, `contrast`, `gamma`, `saturation`); `blur` and `sharpen`; background
//! (`flatten`) and `border`.

pub mod blur;
pub mod border;
pub mod brightness;
pub mod color_profile;
pub mod contrast;
pub mod fit;
pub mod flatten;
pub mod flip;
pub mod gamma;
pub mod orient;
pub mod pad;
pub mod resize;
pub mod rotate;
pub mod saliency;
pub mod saturation;
pub mod sharpen;
pub mod trim;
pub mod trim_border;

use crate::image::pixels::Pixels;

/// A rectangle in source pixels (fractional, as fast_image_resize accepts).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// Maps every colour channel (not alpha) through `f` on 0-255 values, by a lookup table.
pub(crate) fn map_colour(p: &mut Pixels, f: impl Fn(f32) -> f32) {
    let mut lut = [0u8; 256];
    for (i, v) in lut.iter_mut().enumerate() {
        *v = f(i as f32).round().clamp(0.0, 255.0) as u8;
    }
    let c = p.channels as usize;
    for px in p.data.chunks_exact_mut(c) {
        for v in &mut px[..3] {
            *v = lut[*v as usize];
        }
    }
}
