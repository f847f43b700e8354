//! What a transform holds in memory, estimated from the source's header and the planned
//! geometry before anything is decoded: the most that the buffers of one stage (decode,
//! resize, orient, pad, flatten, encode) and the source bytes hold at once.
//!
//! The figures per pixel were calibrated against the peak RSS of real jobs
//! (`examples/transform_peak.rs`; the table is in the README, "Memory budget") and rounded up,
//! so that the estimate stays at or above what was measured, except AVIF: rav1e measured
//! 1.5-2.7x its figure (not yet recalibrated, see the README).

use crate::image::codec::{Layout, Probe};
use crate::image::format::OutputFormat;

/// Codec state, tables, row buffers and allocator slack beside the pixel buffers.
const FIXED_BYTES: u64 = 4 << 20;

/// What one transform does, as the pipeline's `prepare` planned it.
#[derive(Clone, Copy, Debug)]
pub struct Stages {
    pub source_bytes: u64,
    pub probe: Probe,
    /// The size the decoder produces (a JPEG's DCT-scaled size).
    pub decoded: (u32, u32),
    /// Whether the resize has anything to do (else it hands the decoded pixels on).
    pub resize: bool,
    /// Width of the crop in decoded pixels (the resize's intermediate buffer is this wide).
    pub crop_width: u32,
    /// Size after the resize, in the stored orientation.
    pub resized: (u32, u32),
    /// An EXIF orientation turns the resized pixels (a second buffer of their size).
    pub oriented: bool,
    pub padded: bool,
    /// The output size (a border included).
    pub canvas: (u32, u32),
    /// Colour adjustments, blur, sharpen or a border work on the output: a blurred copy and
    /// the filter's own buffers beside the image, or a bordered copy.
    pub filtered: bool,
    pub format: OutputFormat,
}

fn pixels((w, h): (u32, u32)) -> u64 {
    w as u64 * h as u64
}

/// Estimated peak bytes of the transform, the source included.
pub fn peak_bytes(s: &Stages) -> u64 {
    let c: u64 = if s.probe.layout.alpha() { 4 } else { 3 };
    let decoded = pixels(s.decoded) * c;
    let resized = pixels(s.resized) * c;
    let canvas = pixels(s.canvas);
    let decode = decode_bytes(&s.probe, s.decoded);
    let resize = if s.resize {
        // The source stays alive during the resize; with alpha it is premultiplied into a copy
        // of its own size; the vertical pass writes a crop-wide, target-high buffer.
        let premultiplied = if c == 4 { decoded } else { 0 };
        let pass = s.crop_width as u64 * s.resized.1 as u64 * c;
        decoded + premultiplied + pass + resized
    } else {
        decoded
    };
    let orient = if s.oriented { 2 * resized } else { 0 };
    // A pad canvas is RGBA when transparent (the caller may give no background).
    let (pad, padded_c) = if s.padded {
        (resized + canvas * 4, 4)
    } else {
        (0, c)
    };
    let (flatten, final_c) = if s.format.has_alpha() {
        (0, padded_c)
    } else if padded_c == 4 {
        (canvas * 7, 3)
    } else {
        (0, 3)
    };
    let encode = canvas * final_c + encode_bytes(s.format, canvas);
    let filter = if s.filtered {
        4 * resized + 2 * canvas * 4
    } else {
        0
    };
    let stage = [decode, resize, orient, pad, flatten, encode, filter]
        .into_iter()
        .max()
        .unwrap_or(0);
    s.source_bytes + stage + FIXED_BYTES
}

/// Peak of decoding, the decoded RGB/RGBA pixels included.
fn decode_bytes(p: &Probe, decoded: (u32, u32)) -> u64 {
    let full = p.pixels();
    let c = if p.layout.alpha() { 4 } else { 3 };
    let out = pixels(decoded) * c;
    match p.layout {
        // CMYK goes through the `image` crate at full size: its planes, then RGB; with a
        // profile, libjpeg-turbo's CMYK (4) then sRGB (3), and a progressive file's
        // coefficients.
        Layout::Jpeg {
            components: 4,
            progressive,
            coded_16ths,
            ..
        } => {
            full * 8
                + if progressive {
                    full * 2 * coded_16ths as u64 / 16
                } else {
                    0
                }
        }
        Layout::Jpeg {
            progressive,
            coded_16ths,
            ..
        } => {
            // A progressive decode keeps every coefficient (2 bytes) of the full-size image,
            // whatever the DCT scale; a baseline one only a few rows.
            let coefficients = if progressive {
                full * 2 * coded_16ths as u64 / 16
            } else {
                0
            };
            out + coefficients
        }
        Layout::Png {
            channels,
            sample_bytes,
        } => {
            // Decoded as stored (16-bit, grey...), then converted to 8-bit RGB(A) into a new
            // buffer unless it already is.
            let native = full * channels as u64 * sample_bytes as u64;
            let converted = sample_bytes == 1 && (channels == 3 || channels == 4);
            native + if converted { 0 } else { out }
        }
        Layout::Webp { lossless, .. } => {
            // Lossy: YUV planes beside the RGB(A) output; lossless: an ARGB buffer.
            out + if lossless { full * 4 } else { full * 3 / 2 }
        }
        // The frame's indices and RGBA pixels, composed onto the RGBA canvas.
        Layout::Gif => out + full * 5,
        // resvg's premultiplied pixmap (made straight in place), and the parsed document:
        // roxmltree's and usvg's trees, measured at well under 32 bytes per source byte.
        Layout::Svg { source_bytes } => out + source_bytes.saturating_mul(32),
    }
}

/// What an encoder holds beside the pixels it is given, its output included.
fn encode_bytes(format: OutputFormat, canvas: u64) -> u64 {
    match format {
        // Huffman optimisation buffers every coefficient; the output is copied once.
        OutputFormat::Jpeg => canvas * 6,
        // The output grows by doubling up to about the raw size (noise does not compress).
        OutputFormat::Png => canvas * 8,
        // YUV(A) planes, per-macroblock state and the output.
        OutputFormat::Webp => canvas * 6,
        // rav1e: our RGB copy, the 10-bit planes, its reference and analysis frames.
        OutputFormat::Avif => canvas * 36,
        // an RGBA copy, the palette indices and the LZW output
        OutputFormat::Gif => canvas * 6,
    }
}

/// What an animation holds beside one frame's work (the still estimate): the decoder's
/// canvases (the frame composed, the previous one kept for disposal), the encoder's own
/// canvases, and the output, which grows with every frame: about a byte per pixel for GIF
/// (LZW of palette indices: photo noise barely compresses), well under for lossy WebP.
pub fn animation_bytes(
    probe: &Probe,
    frames: u32,
    canvas: (u32, u32),
    format: OutputFormat,
) -> u64 {
    let screen = probe.pixels() * 4 * 2;
    let out = pixels(canvas);
    let (encoder, per_frame) = match format {
        // WebPAnimEncoder keeps the previous canvas and candidate sub-frames (RGBA)
        OutputFormat::Webp => (out * 4 * 4, out / 2),
        _ => (out * 4, out),
    };
    screen + encoder + per_frame * frames as u64
}
