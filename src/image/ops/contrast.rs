//! `contrast`: stretches (factor > 1) or flattens (< 1) each channel around mid-grey, as CSS
//! `filter: contrast()` does on sRGB values.

use crate::image::ops::map_colour;
use crate::image::pixels::Pixels;

pub fn contrast(p: &mut Pixels, factor: f32) {
    map_colour(p, |v| (v - 127.5) * factor + 127.5);
}
