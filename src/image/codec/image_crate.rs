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

/// The `image` crate's limits for a source probed at `w` x `h`: no larger image, and room for
/// one 16-bit RGBA copy plus conversion.
pub(crate) fn decode_limits(w: u32, h: u32) -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(
        (w as u64 * h as u64)
            .saturating_mul(16)
            .saturating_add(1 << 20),
    );
    limits
}

/// Maps the `image` crate's errors for a source probed at `w` x `h`.
pub(crate) fn error(w: u32, h: u32) -> impl Fn(image::ImageError) -> TransformError {
    move |e| map_image_error(e, w, h)
}

/// An animation's frames, one at a time, as RGBA pixels of the whole `w` x `h` canvas with
/// each frame's delay in milliseconds, under the same decode limits as a still; a decoder
/// panic ends them with `Corrupt`.
pub(crate) fn frames<'a, D>(
    mut dec: D,
    w: u32,
    h: u32,
) -> Result<impl Iterator<Item = Result<(Pixels, u32), TransformError>> + 'a, TransformError>
where
    D: image::ImageDecoder + image::AnimationDecoder<'a>,
{
    dec.set_limits(decode_limits(w, h)).map_err(error(w, h))?;
    let mut frames = Some(dec.into_frames());
    Ok(std::iter::from_fn(move || {
        let it = frames.as_mut()?;
        let next = match catch_unwind(AssertUnwindSafe(|| it.next())) {
            Ok(next) => next?,
            Err(_) => Err(image::ImageError::IoError(std::io::Error::other(
                "decoder panicked",
            ))),
        };
        let item = next.map_err(error(w, h)).and_then(|f| {
            let (n, d) = f.delay().numer_denom_ms();
            let delay = n.checked_div(d).unwrap_or(0);
            let img = f.into_buffer();
            if img.dimensions() != (w, h) {
                return Err(TransformError::Corrupt(format!(
                    "frame of {}x{} on a {w}x{h} canvas",
                    img.width(),
                    img.height()
                )));
            }
            Ok((
                Pixels {
                    width: w,
                    height: h,
                    channels: 4,
                    data: img.into_raw(),
                },
                delay,
            ))
        });
        if item.is_err() {
            // nothing after an error
            frames = None;
        }
        Some(item)
    }))
}
