//! GIF: header probe and first-frame decode (through the `image` crate); there is no GIF
//! encoder (a GIF's "same as source" output is PNG, see `SourceFormat::same_output`).

use crate::image::codec::bytes::le16;
use crate::image::codec::{image_crate, Layout};
use crate::image::error::TransformError;
use crate::image::pixels::Pixels;

/// Width and height of the logical screen.
pub(crate) fn probe(b: &[u8]) -> Result<(u32, u32, u8, Layout), TransformError> {
    let w = le16(b, 6).ok_or(TransformError::Truncated)?;
    let h = le16(b, 8).ok_or(TransformError::Truncated)?;
    Ok((w, h, 1, Layout::Gif))
}

/// Decodes the first frame of a GIF of the probed `w` x `h`; it must end with its trailer byte.
pub(crate) fn decode(b: &[u8], w: u32, h: u32) -> Result<Pixels, TransformError> {
    if b.iter().rev().find(|&&c| c != 0) != Some(&0x3B) {
        return Err(TransformError::Truncated);
    }
    image_crate::decode(b, image::ImageFormat::Gif, w, h)
}
