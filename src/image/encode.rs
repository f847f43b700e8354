//! Encoders: JPEG (libjpeg-turbo, 4:2:0), PNG (image), lossy WebP (libwebp), AVIF (ravif/rav1e).
//! No metadata is written.

use super::decode::Pixels;
use super::error::TransformError;
use super::format::OutputFormat;

/// libwebp `method` (0 fast .. 6 small): 2 costs about half of the default 4 on this machine
/// for a few percent more bytes.
pub const WEBP_METHOD: i32 = 2;

fn enc_err(e: impl std::fmt::Display) -> TransformError {
    TransformError::Encode(e.to_string().replace('\n', " "))
}

/// Encodes `p` (RGB or RGBA; JPEG needs RGB, see `resize::flatten`).
pub fn encode(
    p: &Pixels,
    format: OutputFormat,
    quality: u8,
    avif_speed: u8,
) -> Result<Vec<u8>, TransformError> {
    let quality = quality.clamp(1, 100);
    match format {
        OutputFormat::Jpeg => encode_jpeg(p, quality),
        OutputFormat::Png => encode_png(p),
        OutputFormat::Webp => encode_webp(p, quality),
        OutputFormat::Avif => encode_avif(p, quality, avif_speed),
    }
}

fn encode_jpeg(p: &Pixels, quality: u8) -> Result<Vec<u8>, TransformError> {
    use turbojpeg::{Compressor, Image, PixelFormat, Subsamp};
    let (format, c) = if p.channels == 4 {
        (PixelFormat::RGBA, 4)
    } else {
        (PixelFormat::RGB, 3)
    };
    let w = p.width as usize;
    let image = Image {
        pixels: &p.data[..],
        width: w,
        pitch: w * c,
        height: p.height as usize,
        format,
    };
    let mut comp = Compressor::new().map_err(enc_err)?;
    comp.set_quality(quality as i32).map_err(enc_err)?;
    comp.set_subsamp(Subsamp::Sub2x2).map_err(enc_err)?;
    comp.set_optimize(true).map_err(enc_err)?;
    comp.compress_to_vec(image).map_err(enc_err)
}

fn encode_png(p: &Pixels) -> Result<Vec<u8>, TransformError> {
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

fn encode_webp(p: &Pixels, quality: u8) -> Result<Vec<u8>, TransformError> {
    if p.width > 16383 || p.height > 16383 {
        return Err(TransformError::Encode(format!(
            "{}x{} is too large for WebP",
            p.width, p.height
        )));
    }
    let mut config =
        webp::WebPConfig::new().map_err(|_| TransformError::Encode("WebPConfig".into()))?;
    config.lossless = 0;
    config.quality = quality as f32;
    config.method = WEBP_METHOD;
    config.thread_level = 0;
    let enc = if p.channels == 4 {
        webp::Encoder::from_rgba(&p.data, p.width, p.height)
    } else {
        webp::Encoder::from_rgb(&p.data, p.width, p.height)
    };
    let mem = enc
        .encode_advanced(&config)
        .map_err(|e| enc_err(format!("{e:?}")))?;
    Ok(mem.to_vec())
}

fn encode_avif(p: &Pixels, quality: u8, speed: u8) -> Result<Vec<u8>, TransformError> {
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
