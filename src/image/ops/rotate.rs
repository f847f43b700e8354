//! `rotate`: 90, 180 or 270 degrees clockwise, after the EXIF orientation and `flip`. Done as
//! an orientation (see `orient::compose`), so the resize still works on the stored pixels and
//! only the small result is turned, once.

/// The EXIF orientation code that turns an image by `degrees` clockwise.
pub fn orientation(degrees: u16) -> u8 {
    match degrees {
        90 => 6,
        180 => 3,
        270 => 8,
        _ => 1,
    }
}
