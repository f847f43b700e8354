//! AVIF: encode (ravif/rav1e). AVIF is not decoded as a source yet.

use crate::image::codec::enc_err;
use crate::image::error::TransformError;
use crate::image::pixels::Pixels;

/// Encodes RGB or RGBA at rav1e `speed` (1 slow .. 10 fast), on one thread; a panic inside the
/// encoder is an encode error.
pub(crate) fn encode(p: &Pixels, quality: u8, speed: u8) -> Result<Vec<u8>, TransformError> {
    use ravif::{Encoder, Img, RGB8, RGBA8};
    let (w, h) = (p.width as usize, p.height as usize);
    let enc = Encoder::new()
        .with_quality(quality as f32)
        .with_alpha_quality(quality as f32)
        .with_speed(speed.clamp(1, 10))
        .with_num_threads(Some(1));
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if p.channels == 4 {
            let px: Vec<RGBA8> = p
                .data
                .chunks_exact(4)
                .map(|c| RGBA8::new(c[0], c[1], c[2], c[3]))
                .collect();
            enc.encode_rgba(Img::new(&px[..], w, h))
        } else {
            let px: Vec<RGB8> = p
                .data
                .chunks_exact(3)
                .map(|c| RGB8::new(c[0], c[1], c[2]))
                .collect();
            enc.encode_rgb(Img::new(&px[..], w, h))
        }
    }));
    match res {
        Ok(Ok(e)) => Ok(e.avif_file),
        Ok(Err(e)) => Err(enc_err(e)),
        Err(_) => Err(TransformError::Encode("AVIF encoder panicked".into())),
    }
}
