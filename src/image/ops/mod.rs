//! The operations on decoded pixels, one file per operation: the geometry of each fit mode
//! (`fit`), resize, EXIF orientation, pad and flatten. The pipeline chains them.

pub mod fit;
pub mod flatten;
pub mod orient;
pub mod pad;
pub mod resize;

/// A rectangle in source pixels (fractional, as fast_image_resize accepts).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}
