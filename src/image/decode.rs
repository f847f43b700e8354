//! Header probing (no pixel decode) and decoding to 8-bit RGB/RGBA.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::error::TransformError;
use super::format::{sniff, SourceFormat};

/// What the header says. `width`/`height` are as stored in the file; for EXIF orientations 5-8
/// the upright image is `height` x `width` (see [`Probe::oriented_size`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub format: SourceFormat,
    pub width: u32,
    pub height: u32,
    /// EXIF orientation 1-8 (1 = upright). Read from JPEG APP1 only; other formats report 1.
    pub orientation: u8,
}

impl Probe {
    /// Size of the upright (displayed) image.
    pub fn oriented_size(&self) -> (u32, u32) {
        if self.orientation >= 5 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
    pub fn pixels(&self) -> u64 {
        self.width as u64 * self.height as u64
    }
}

/// Reads format, dimensions and orientation from the header only (cheap, no allocation
/// proportional to the image).
pub fn probe(bytes: &[u8]) -> Result<Probe, TransformError> {
    let format = sniff(bytes).ok_or(TransformError::NotAnImage)?;
    let (width, height, orientation) = match format {
        SourceFormat::Jpeg => probe_jpeg(bytes)?,
        SourceFormat::Png => probe_png(bytes)?,
        SourceFormat::Gif => probe_gif(bytes)?,
        SourceFormat::Webp => probe_webp(bytes)?,
    };
    if width == 0 || height == 0 {
        return Err(TransformError::Corrupt(format!(
            "{} header says {width}x{height}",
            format.as_str()
        )));
    }
    Ok(Probe {
        format,
        width,
        height,
        orientation,
    })
}

fn be16(b: &[u8], i: usize) -> Option<u32> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]) as u32)
}
fn le16(b: &[u8], i: usize) -> Option<u32> {
    Some(u16::from_le_bytes([*b.get(i)?, *b.get(i + 1)?]) as u32)
}
fn be32(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(i)?,
        *b.get(i + 1)?,
        *b.get(i + 2)?,
        *b.get(i + 3)?,
    ]))
}
fn le32(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(i)?,
        *b.get(i + 1)?,
        *b.get(i + 2)?,
        *b.get(i + 3)?,
    ]))
}
fn le24(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(i)?,
        *b.get(i + 1)?,
        *b.get(i + 2)?,
        0,
    ]))
}

fn probe_png(b: &[u8]) -> Result<(u32, u32, u8), TransformError> {
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

fn probe_gif(b: &[u8]) -> Result<(u32, u32, u8), TransformError> {
    let w = le16(b, 6).ok_or(TransformError::Truncated)?;
    let h = le16(b, 8).ok_or(TransformError::Truncated)?;
    Ok((w, h, 1))
}

fn probe_webp(b: &[u8]) -> Result<(u32, u32, u8), TransformError> {
    let t = TransformError::Truncated;
    let fourcc = b.get(12..16).ok_or(t.clone())?;
    match fourcc {
        b"VP8 " => {
            if b.get(23..26) != Some(&[0x9d, 0x01, 0x2a][..]) {
                return Err(b.get(25).map_or(t.clone(), |_| {
                    TransformError::Corrupt("bad VP8 start code".into())
                }));
            }
            let w = le16(b, 26).ok_or(t.clone())? & 0x3fff;
            let h = le16(b, 28).ok_or(t)? & 0x3fff;
            Ok((w, h, 1))
        }
        b"VP8L" => {
            if *b.get(20).ok_or(t.clone())? != 0x2f {
                return Err(TransformError::Corrupt("bad VP8L signature".into()));
            }
            let bits = le32(b, 21).ok_or(t)?;
            Ok(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1, 1))
        }
        b"VP8X" => {
            let w = le24(b, 24).ok_or(t.clone())? + 1;
            let h = le24(b, 27).ok_or(t)? + 1;
            Ok((w, h, 1))
        }
        _ => Err(TransformError::Corrupt("unknown WebP chunk".into())),
    }
}

fn probe_jpeg(b: &[u8]) -> Result<(u32, u32, u8), TransformError> {
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
                return Ok((w, h, orientation));
            }
            _ => {}
        }
        i = end;
    }
}

/// Orientation tag (0x0112) of IFD0 in a TIFF-structured EXIF block; `None` if absent/invalid.
pub(crate) fn exif_orientation(tiff: &[u8]) -> Option<u8> {
    let le = match tiff.get(0..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let r16 = |i: usize| if le { le16(tiff, i) } else { be16(tiff, i) };
    let r32 = |i: usize| if le { le32(tiff, i) } else { be32(tiff, i) };
    if r16(2)? != 42 {
        return None;
    }
    let ifd = r32(4)? as usize;
    let count = r16(ifd)? as usize;
    for n in 0..count.min(512) {
        let e = ifd.checked_add(2 + n * 12)?;
        if r16(e)? == 0x0112 {
            let v = r16(e + 8)?;
            return (1..=8).contains(&v).then_some(v as u8);
        }
    }
    None
}

/// Decoded 8-bit pixels, tightly packed, `channels` 3 (RGB) or 4 (RGBA, straight alpha).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: Vec<u8>,
}

/// Decodes a JPEG with turbojpeg at scale 1/`denom` (1, 2, 4 or 8). Any libjpeg warning
/// (premature end, corrupt data) is an error, so truncated files never come out grey-filled.
pub fn decode_jpeg(bytes: &[u8], denom: usize) -> Result<Pixels, TransformError> {
    use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat, ScalingFactor};
    let tj = |e: turbojpeg::Error| classify_tj_error(bytes, e);
    let mut d = Decompressor::new().map_err(tj)?;
    let header = d.read_header(bytes).map_err(tj)?;
    if matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK) {
        // libjpeg-turbo cannot convert CMYK to RGB: let zune-jpeg (via image) do it.
        if !has_eoi(bytes) {
            return Err(TransformError::Truncated);
        }
        return decode_with_image(
            bytes,
            SourceFormat::Jpeg,
            header.width as u32,
            header.height as u32,
        );
    }
    let denom = if header.is_lossless { 1 } else { denom };
    let factor = ScalingFactor::new(1, denom);
    d.set_scaling_factor(factor).map_err(tj)?;
    let scaled = header.scaled(factor);
    let (w, h) = (scaled.width, scaled.height);
    let len =
        w.checked_mul(h)
            .and_then(|p| p.checked_mul(3))
            .ok_or(TransformError::TooManyPixels {
                w: header.width as u32,
                h: header.height as u32,
                max: 0,
            })?;
    let mut data = vec![0u8; len];
    let image = Image {
        pixels: &mut data[..],
        width: w,
        pitch: w * 3,
        height: h,
        format: PixelFormat::RGB,
    };
    match d.decompress(bytes, image) {
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
pub(crate) fn has_eoi(b: &[u8]) -> bool {
    let tail = &b[b.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// PNG / WebP / GIF (first frame) / CMYK JPEG through the `image` crate, limited to the
/// probed dimensions.
pub(crate) fn decode_with_image(
    bytes: &[u8],
    format: SourceFormat,
    w: u32,
    h: u32,
) -> Result<Pixels, TransformError> {
    let fmt = match format {
        SourceFormat::Jpeg => image::ImageFormat::Jpeg,
        SourceFormat::Png => image::ImageFormat::Png,
        SourceFormat::Webp => image::ImageFormat::WebP,
        SourceFormat::Gif => image::ImageFormat::Gif,
    };
    check_complete(bytes, format)?;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut reader = image::ImageReader::with_format(Cursor::new(bytes), fmt);
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

/// Structural end-of-file checks, because decoders may fill missing rows silently:
/// PNG must have its IEND chunk, WebP its full RIFF length, GIF its trailer byte.
fn check_complete(b: &[u8], format: SourceFormat) -> Result<(), TransformError> {
    let ok = match format {
        SourceFormat::Png => b[b.len().saturating_sub(256)..]
            .windows(4)
            .any(|w| w == b"IEND"),
        SourceFormat::Webp => le32(b, 4).is_some_and(|n| b.len() as u64 >= 8 + n as u64),
        SourceFormat::Gif => b.iter().rev().find(|&&c| c != 0) == Some(&0x3B),
        SourceFormat::Jpeg => has_eoi(b),
    };
    if ok {
        Ok(())
    } else {
        Err(TransformError::Truncated)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exif_parse() {
        // big-endian TIFF with one IFD entry: Orientation = 6
        let mut t = b"MM\0\x2a\0\0\0\x08\0\x01".to_vec();
        t.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]);
        assert_eq!(exif_orientation(&t), Some(6));
        let mut t = b"II\x2a\0\x08\0\0\0\x01\0".to_vec();
        t.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 8, 0, 0, 0]);
        assert_eq!(exif_orientation(&t), Some(8));
        assert_eq!(exif_orientation(b"II\x2a\0\xff\xff\xff\x7f"), None);
        assert_eq!(exif_orientation(b""), None);
    }

    #[test]
    fn probe_headers() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&20000u32.to_be_bytes());
        png.extend_from_slice(&30000u32.to_be_bytes());
        let p = probe(&png).unwrap();
        assert_eq!(
            (p.format, p.width, p.height),
            (SourceFormat::Png, 20000, 30000)
        );
        assert_eq!(probe(&png[..20]), Err(TransformError::Truncated));
        assert_eq!(
            probe(b"GIF89a\x40\x01\xf0\x00"),
            Ok(Probe {
                format: SourceFormat::Gif,
                width: 320,
                height: 240,
                orientation: 1
            })
        );
        assert_eq!(probe(b"hello"), Err(TransformError::NotAnImage));
        assert_eq!(probe(b"\xFF\xD8\xFF"), Err(TransformError::Truncated));
        // a JPEG marker walk that never ends must not loop: only fill bytes
        let mut fills = vec![0xFF, 0xD8];
        fills.extend_from_slice(&[0xFF; 100]);
        assert_eq!(probe(&fills), Err(TransformError::Truncated));
    }

    #[test]
    fn probe_fixtures() {
        let f = crate::image::tests::fixture;
        let p = probe(&f("friends_orient6_386x256.jpg")).unwrap();
        assert_eq!(
            (p.width, p.height, p.orientation, p.oriented_size()),
            (386, 256, 6, (256, 386))
        );
        let p = probe(&f("seeding_640x360.jpg")).unwrap();
        assert_eq!(
            (p.format, p.width, p.height, p.orientation),
            (SourceFormat::Jpeg, 640, 360, 1)
        );
        let p = probe(&f("emerald_alpha_300.png")).unwrap();
        assert_eq!((p.format, p.width, p.height), (SourceFormat::Png, 282, 300));
        let p = probe(&f("aitzgorri_480.webp")).unwrap();
        assert_eq!(
            (p.format, p.width, p.height),
            (SourceFormat::Webp, 480, 320)
        );
        let p = probe(&f("seeding_pan_anim_240.gif")).unwrap();
        assert_eq!((p.format, p.width, p.height), (SourceFormat::Gif, 240, 160));
    }
}
