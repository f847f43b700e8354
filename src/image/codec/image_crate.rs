//! Decoding through the `image` crate (PNG, WebP, GIF's first frame, CMYK JPEG), limited to the
//! probed dimensions, with its errors mapped onto ours.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::image::error::TransformError;
use crate::image::pixels::Pixels;

/// Decodes `bytes` as `format`, refusing anything larger than the probed `w` x `h`. The caller
/// has checked that the file is complete (decoders may fill missing rows silently).
pub(crate) fn decode(
    bytes: &[u8],
    format: image::ImageFormat,
    w: u32,
    h: u32,
) -> Result<Pixels, TransformError> {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(w);
        limits.max_image_height = Some(h);
        // room for one 16-bit RGBA copy plus conversion
        limits.max_alloc = Some(
            (w as u64 * h as u64)
                .saturating_mul(16)
                .saturating_add(1 << 20),
        );
        reader.limits(limits);
        reader.decode()
    }));
    let img = match result {
        Ok(Ok(img)) => img,
        Ok(Err(e)) => return Err(map_image_error(e, w, h)),
        Err(_) => return Err(TransformError::Corrupt("decoder panicked".into())),
    };
    let (width, height) = (img.width(), img.height());
    if img.color().has_alpha() {
        Ok(Pixels {
            width,
            height,
            channels: 4,
            data: img.into_rgba8().into_raw(),
        })
    } else {
        Ok(Pixels {
            width,
            height,
            channels: 3,
            data: img.into_rgb8().into_raw(),
        })
    }
}

fn map_image_error(e: image::ImageError, w: u32, h: u32) -> TransformError {
    use image::ImageError as E;
    match e {
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            TransformError::Truncated
        }
        E::Limits(_) => TransformError::TooManyPixels {
            w,
            h,
            max: w as u64 * h as u64,
        },
        E::Unsupported(u) => TransformError::Unsupported(u.to_string().replace('\n', " ")),
        other => {
            let msg = other.to_string().replace('\n', " ");
            let lower = msg.to_ascii_lowercase();
            if lower.contains("eof")
                || lower.contains("end of file")
                || lower.contains("unexpected end")
                || lower.contains("truncat")
            {
                TransformError::Truncated
            } else {
                TransformError::Corrupt(msg)
            }
        }
    }
}
