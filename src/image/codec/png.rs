//! PNG: header probe, decode (through the `image` crate) and encode.

use crate::image::codec::bytes::be32;
use crate::image::codec::{enc_err, image_crate, Layout};
use crate::image::error::TransformError;
use crate::image::pixels::Pixels;

/// Width, height and layout from IHDR, and the chunks before the first IDAT for `tRNS`
/// (orientation is always 1: EXIF in PNG is not read).
pub(crate) fn probe(b: &[u8]) -> Result<(u32, u32, u8, Layout), TransformError> {
    if b.len() < 24 {
        return Err(TransformError::Truncated);
    }
    if &b[12..16] != b"IHDR" {
        return Err(TransformError::Corrupt(
            "PNG does not start with IHDR".into(),
        ));
    }
    let w = be32(b, 16).ok_or(TransformError::Truncated)?;
    let h = be32(b, 20).ok_or(TransformError::Truncated)?;
    // A header cut short here is left to the decoder, which reports it: assume the costliest.
    let depth = b.get(24).copied().unwrap_or(16);
    let color = b.get(25).copied().unwrap_or(6);
    let colors = match color {
        0 => 1,
        4 => 2,
        6 => 4,
        _ => 3,
    };
    let alpha = matches!(color, 4 | 6);
    let channels = if !alpha && has_trns(b) {
        colors + 1
    } else {
        colors
    };
    let sample_bytes = if depth == 16 { 2 } else { 1 };
    Ok((
        w,
        h,
        1,
        Layout::Png {
            channels,
            sample_bytes,
        },
    ))
}

/// Whether a `tRNS` chunk (transparency: decoded as alpha) comes before the image data.
fn has_trns(b: &[u8]) -> bool {
    let mut i = 8;
    while let (Some(len), Some(kind)) = (be32(b, i), b.get(i + 4..i + 8)) {
        match kind {
            b"tRNS" => return true,
            b"IDAT" | b"IEND" => return false,
            _ => i = i.saturating_add(12).saturating_add(len as usize),
        }
    }
    false
}

/// Decodes a PNG of the probed `w` x `h`; it must end with its IEND chunk.
pub(crate) fn decode(b: &[u8], w: u32, h: u32) -> Result<Pixels, TransformError> {
    let complete = b[b.len().saturating_sub(256)..]
        .windows(4)
        .any(|w| w == b"IEND");
    if !complete {
        return Err(TransformError::Truncated);
    }
    image_crate::decode(b, image::ImageFormat::Png, w, h)
}

/// Encodes RGB or RGBA, 8 bits, default compression, adaptive filters.
pub(crate) fn encode(p: &Pixels) -> Result<Vec<u8>, TransformError> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::{ExtendedColorType, ImageEncoder};
    let mut out = Vec::new();
    let ct = if p.channels == 4 {
        ExtendedColorType::Rgba8
    } else {
        ExtendedColorType::Rgb8
    };
    PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive)
        .write_image(&p.data, p.width, p.height, ct)
        .map_err(enc_err)?;
    Ok(out)
}
