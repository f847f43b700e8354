//! JPEG: header probe (size and EXIF orientation), DCT-scaled decode and 4:2:0 encode, both
//! through libjpeg-turbo (CMYK/YCCK sources decode through the `image` crate instead).

use crate::image::codec::bytes::be16;
use crate::image::codec::exif::exif_orientation;
use crate::image::codec::{enc_err, image_crate, jpeg_dc, jpeg_scans, Layout};
use crate::image::error::TransformError;
use crate::image::pixels::Pixels;

/// Width, height, EXIF orientation and layout from the markers up to the frame header.
pub(crate) fn probe(b: &[u8]) -> Result<(u32, u32, u8, Layout), TransformError> {
    let mut i = 2;
    let mut orientation = 1u8;
    let mut seen_exif = false;
    loop {
        if i >= b.len() {
            return Err(TransformError::Truncated);
        }
        if b[i] != 0xFF {
            return Err(TransformError::Corrupt(
                "JPEG marker expected before frame header".into(),
            ));
        }
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        let Some(&m) = b.get(i) else {
            return Err(TransformError::Truncated);
        };
        i += 1;
        match m {
            0xD8 | 0x01 | 0xD0..=0xD7 => continue,
            0xD9 | 0xDA => return Err(TransformError::Corrupt("JPEG has no frame header".into())),
            _ => {}
        }
        let len = be16(b, i).ok_or(TransformError::Truncated)? as usize;
        if len < 2 {
            return Err(TransformError::Corrupt("bad JPEG segment length".into()));
        }
        let end = i + len;
        let seg = b.get(i + 2..end).ok_or(TransformError::Truncated)?;
        match m {
            0xE1 if !seen_exif && seg.starts_with(b"Exif\0\0") => {
                seen_exif = true;
                orientation = exif_orientation(&seg[6..]).unwrap_or(1);
            }
            0xC0..=0xCF if m != 0xC4 && m != 0xC8 && m != 0xCC => {
                let h = be16(seg, 1).ok_or(TransformError::Truncated)?;
                let w = be16(seg, 3).ok_or(TransformError::Truncated)?;
                return Ok((w, h, orientation, frame_layout(m, seg)?));
            }
            _ => {}
        }
        i = end;
    }
}

/// The layout a frame header (SOFn marker `m`, segment `seg`) declares.
fn frame_layout(m: u8, seg: &[u8]) -> Result<Layout, TransformError> {
    let n = *seg.get(5).ok_or(TransformError::Truncated)?;
    let factors: Vec<(u16, u16)> = (0..n as usize)
        .map(|i| {
            let hv = *seg.get(7 + 3 * i).ok_or(TransformError::Truncated)?;
            Ok((u16::from(hv >> 4).max(1), u16::from(hv & 15).max(1)))
        })
        .collect::<Result<_, TransformError>>()?;
    let hmax = factors.iter().map(|f| f.0).max().unwrap_or(1);
    let vmax = factors.iter().map(|f| f.1).max().unwrap_or(1);
    let coded_16ths = factors
        .iter()
        .map(|&(h, v)| (16 * h * v).div_ceil(hmax * vmax))
        .sum();
    Ok(Layout::Jpeg {
        components: n,
        // SOF2, SOF6, SOF10, SOF14
        progressive: matches!(m, 0xC2 | 0xC6 | 0xCA | 0xCE),
        // SOF3, SOF7, SOF11, SOF15
        lossless: matches!(m, 0xC3 | 0xC7 | 0xCB | 0xCF),
        coded_16ths,
    })
}

/// Decodes a JPEG with turbojpeg at scale 1/`denom` (1, 2, 4 or 8). Any libjpeg warning
/// (premature end, corrupt data) is an error, so truncated files never come out grey-filled.
pub(crate) fn decode(bytes: &[u8], denom: usize) -> Result<Pixels, TransformError> {
    use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat, ScalingFactor};
    let tj = |e: turbojpeg::Error| classify_tj_error(bytes, e);
    let mut d = Decompressor::new().map_err(tj)?;
    let header = d.read_header(bytes).map_err(tj)?;
    if matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK) {
        // libjpeg-turbo cannot convert CMYK to RGB: let zune-jpeg (via image) do it.
        if !has_eoi(bytes) {
            return Err(TransformError::Truncated);
        }
        return image_crate::decode(
            bytes,
            image::ImageFormat::Jpeg,
            header.width as u32,
            header.height as u32,
        );
    }
    let denom = if header.is_lossless { 1 } else { denom };
    // Progressive: only what the scaled IDCT uses (the whole file is still walked to EOI).
    let plan = if header.is_progressive && !header.is_arithmetic {
        jpeg_scans::plan(bytes, denom)?
    } else {
        None
    };
    let reduced = plan.map(|p| jpeg_dc::baseline(bytes, &p).unwrap_or_else(|| p.rewrite(bytes)));
    let stream = reduced.as_deref().unwrap_or(bytes);
    let factor = ScalingFactor::new(1, denom);
    d.set_scaling_factor(factor).map_err(tj)?;
    let scaled = header.scaled(factor);
    let (w, h) = (scaled.width, scaled.height);
    let len = buffer_len(w, h, 3, (header.width, header.height))?;
    let mut data = vec![0u8; len];
    let image = Image {
        pixels: &mut data[..],
        width: w,
        pitch: w * 3,
        height: h,
        format: PixelFormat::RGB,
    };
    match d.decompress(stream, image) {
        Ok(()) => {}
        Err(turbojpeg::Error::TurboJpegError(msg)) if tolerable_warning(&msg) && has_eoi(bytes) => {
        }
        Err(e) => return Err(tj(e)),
    }
    Ok(Pixels {
        width: w as u32,
        height: h as u32,
        channels: 3,
        data,
    })
}

/// "Extraneous bytes before marker" leaves the decoded pixels intact (common in camera files).
/// Bytes of a `w` x `h` decode with `channels` samples a pixel; too many for memory is
/// refused as a pixel bomb of the source's own `size`.
pub(crate) fn buffer_len(
    w: usize,
    h: usize,
    channels: usize,
    size: (usize, usize),
) -> Result<usize, TransformError> {
    w.checked_mul(h)
        .and_then(|p| p.checked_mul(channels))
        .ok_or(TransformError::TooManyPixels {
            w: size.0 as u32,
            h: size.1 as u32,
            max: 0,
        })
}

fn tolerable_warning(msg: &str) -> bool {
    msg.contains("extraneous bytes before marker")
}

fn classify_tj_error(bytes: &[u8], e: turbojpeg::Error) -> TransformError {
    let msg = e.to_string();
    if msg.contains("Premature end") || (msg.contains("premature end") && !has_eoi(bytes)) {
        TransformError::Truncated
    } else {
        TransformError::Corrupt(msg.replace('\n', " "))
    }
}

/// True if an EOI marker is in the last 4 KiB (some files have trailers after it).
fn has_eoi(b: &[u8]) -> bool {
    let tail = &b[b.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Encodes RGB (or RGBA, whose alpha libjpeg-turbo drops: flatten first) at 4:2:0 with
/// optimised Huffman tables.
pub(crate) fn encode(p: &Pixels, quality: u8) -> Result<Vec<u8>, TransformError> {
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
