//! `gamma`: exposure by a power curve, `255 * (v / 255) ^ (1 / g)`: above 1 lightens the
//! mid-tones, below 1 darkens them (black and white stay).

use crate::image::ops::map_colour;
use crate::image::pixels::Pixels;

pub fn gamma(p: &mut Pixels, g: f32) {
    let e = 1.0 / g;
    map_colour(p, |v| 255.0 * (v / 255.0).powf(e));
}
