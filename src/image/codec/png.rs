//! PNG: header probe, decode (through the `image` crate) and encode.

use crate::image::codec::bytes::be32;
use crate::image::codec::{enc_err, image_crate};
use crate::image::error::TransformError;
use crate::image::pixels::Pixels;

/// Width and height from IHDR (orientation is always 1: EXIF in PNG is not read).
pub(crate) fn probe(b: &[u8]) -> Result<(u32, u32, u8), TransformError> {
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
    Ok((w, h, 1))
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
