//! `flip`: mirror horizontally (`h`), vertically (`v`) or both (`hv`), before `rotate` (as
//! Cloudflare does by default). Done as an orientation, like `rotate`.

use crate::image::spec::Flip;

/// The EXIF orientation code that mirrors an image as `flip` asks.
pub fn orientation(flip: Flip) -> u8 {
    match flip {
        Flip::None => 1,
        Flip::H => 2,
        Flip::V => 4,
        Flip::HV => 3,
    }
}
