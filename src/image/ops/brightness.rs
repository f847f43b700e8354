//! `brightness`: multiplies each colour channel by the factor (0.5 half as bright, 2 twice),
//! as CSS `filter: brightness()` does on sRGB values.

use crate::image::ops::map_colour;
use crate::image::pixels::Pixels;

pub fn brightness(p: &mut Pixels, factor: f32) {
    map_colour(p, |v| v * factor);
}
