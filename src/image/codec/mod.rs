//! The codecs, one file per format (header probe, decode, encode), and the dispatch over them:
//! magic-byte sniffing, [`probe`] (header only, no pixels), [`decode`] to 8-bit RGB/RGBA and
//! [`encode`]. Metadata (EXIF, XMP) is read and written by `meta`, after encoding.

pub mod avif;
mod bytes;
pub mod exif;
pub mod gif;
pub mod gif_anim;
pub mod icc;
mod image_crate;
pub mod jpeg;
mod jpeg_ac;
pub mod jpeg_cmyk;
mod jpeg_dc;
mod jpeg_entropy;
mod jpeg_scans;
pub mod meta;
pub mod png;
pub mod svg;
pub mod webp;
pub mod webp_anim;

use crate::image::error::TransformError;
use crate::image::format::{OutputFormat, SourceFormat};
use crate::image::pixels::Pixels;

/// What the header says. `width`/`height` are as stored in the file; for EXIF orientations 5-8
/// the upright image is `height` x `width` (see [`Probe::oriented_size`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub format: SourceFormat,
    pub width: u32,
    pub height: u32,
    /// EXIF orientation 1-8 (1 = upright). Read from JPEG APP1 only; other formats report 1.
    pub orientation: u8,
    /// How the samples are stored: what decoding them holds in memory (`image::cost`).
    pub layout: Layout,
}

/// The header's facts about the stored samples that decide a decode's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Jpeg {
        /// 1 grey, 3 YCbCr, 4 CMYK/YCCK (decoded at full size through the `image` crate).
        components: u8,
        /// Progressive: the decoder holds every DCT coefficient of the full-size image.
        progressive: bool,
        /// Lossless: no DCT, so no scaled decode.
        lossless: bool,
        /// Coded samples per pixel in sixteenths (chroma subsampling: 4:2:0 is 24, 4:4:4 48).
        coded_16ths: u16,
    },
    Png {
        /// Channels once a palette is expanded and `tRNS` turned into alpha (1-4).
        channels: u8,
        /// 2 for 16-bit samples, else 1 (1, 2 and 4-bit samples are expanded to 8).
        sample_bytes: u8,
    },
    Webp {
        /// VP8L (or VP8X, which may hold it): decoded through an ARGB buffer.
        lossless: bool,
        alpha: bool,
    },
    /// The first frame, composed onto an RGBA canvas of the logical screen.
    Gif,
    /// A vector document, rendered to RGBA at the size asked (`Probe::width`/`height` are that
    /// size once `pipeline::prepare` has chosen it); its parsed tree grows with the document.
    Svg { source_bytes: u64 },
}

impl Layout {
    /// The decoded pixels carry alpha: the pipeline works on 4 channels, else 3.
    pub fn alpha(&self) -> bool {
        match *self {
            Layout::Jpeg { .. } => false,
            Layout::Png { channels, .. } => channels == 2 || channels == 4,
            Layout::Webp { alpha, .. } => alpha,
            Layout::Gif | Layout::Svg { .. } => true,
        }
    }
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

/// An animation's header facts, read without decoding a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnimHeader {
    pub frames: u32,
    /// How often it plays: 0 = forever (a GIF without a NETSCAPE2.0 block plays once).
    pub plays: u32,
}

/// The animation a GIF or WebP source holds (`None`: a still image, or another format), from
/// its block or chunk structure alone.
pub fn animation(bytes: &[u8], probe: &Probe) -> Result<Option<AnimHeader>, TransformError> {
    match probe.format {
        SourceFormat::Gif => gif_anim::header(bytes).map(|h| (h.frames > 1).then_some(h)),
        SourceFormat::Webp => webp_anim::header(bytes),
        _ => Ok(None),
    }
}

/// Frames of an animation, one at a time: RGBA pixels of the whole canvas and the frame's delay
/// in milliseconds, or why the next one could not be decoded.
pub type Frames<'a> = Box<dyn Iterator<Item = Result<(Pixels, u32), TransformError>> + 'a>;

/// An animated source's frames, decoded one at a time: RGBA pixels of the whole canvas and
/// each frame's delay in milliseconds.
pub fn frames<'a>(bytes: &'a [u8], probe: &Probe) -> Result<Frames<'a>, TransformError> {
    let (w, h) = (probe.width, probe.height);
    Ok(match probe.format {
        SourceFormat::Gif => Box::new(gif_anim::frames(bytes, w, h)?),
        SourceFormat::Webp => Box::new(webp_anim::frames(bytes, w, h)?),
        f => {
            return Err(TransformError::Unsupported(format!(
                "{} animation",
                f.as_str()
            )))
        }
    })
}

/// Identifies the format from magic bytes.
pub fn sniff(bytes: &[u8]) -> Option<SourceFormat> {
    if bytes.len() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF {
        Some(SourceFormat::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(SourceFormat::Png)
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(SourceFormat::Webp)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(SourceFormat::Gif)
    } else if svg::sniff(bytes) {
        Some(SourceFormat::Svg)
    } else {
        None
    }
}

/// Reads format, dimensions and orientation from the header only (cheap, no allocation
/// proportional to the image).
pub fn probe(bytes: &[u8]) -> Result<Probe, TransformError> {
    let format = sniff(bytes).ok_or(TransformError::NotAnImage)?;
    let (width, height, orientation, layout) = match format {
        SourceFormat::Jpeg => jpeg::probe(bytes)?,
        SourceFormat::Png => png::probe(bytes)?,
        SourceFormat::Gif => gif::probe(bytes)?,
        SourceFormat::Webp => webp::probe(bytes)?,
        SourceFormat::Svg => svg::probe(bytes)?,
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
        layout,
    })
}

/// Decodes the probed source in its stored orientation: a JPEG at scale 1/`jpeg_denom` (1, 2,
/// 4 or 8, see `pipeline::jpeg_scale_denominator`), an SVG rendered at the probe's size, the
/// other formats at full size, never larger than the probe said. A file cut short is `Truncated`, never an image with missing rows.
pub fn decode(bytes: &[u8], probe: &Probe, jpeg_denom: usize) -> Result<Pixels, TransformError> {
    let (w, h) = (probe.width, probe.height);
    match probe.format {
        SourceFormat::Jpeg => jpeg::decode(bytes, jpeg_denom),
        SourceFormat::Png => png::decode(bytes, w, h),
        SourceFormat::Webp => webp::decode(bytes, w, h),
        SourceFormat::Gif => gif::decode(bytes, w, h),
        SourceFormat::Svg => svg::render(bytes, w, h),
    }
}

/// The size [`decode`] produces: a JPEG's DCT-scaled size (rounded up, as libjpeg-turbo
/// does), or the stored size (lossless and CMYK JPEGs are never scaled, nor other formats).
pub fn decoded_size(probe: &Probe, jpeg_denom: usize) -> (u32, u32) {
    let scaled = match probe.layout {
        Layout::Jpeg {
            lossless: false,
            components,
            ..
        } if components != 4 => jpeg_denom.max(1) as u64,
        _ => 1,
    };
    let dim = |d: u32| (d as u64).div_ceil(scaled) as u32;
    (dim(probe.width), dim(probe.height))
}

/// Encodes `p` (RGB or RGBA; JPEG needs RGB, see `ops::flatten`) at `quality` (clamped to
/// 1-100; PNG ignores it), AVIF at rav1e speed `avif_speed`.
pub fn encode(
    p: &Pixels,
    format: OutputFormat,
    quality: u8,
    avif_speed: u8,
) -> Result<Vec<u8>, TransformError> {
    let quality = quality.clamp(1, 100);
    match format {
        OutputFormat::Jpeg => jpeg::encode(p, quality),
        OutputFormat::Png => png::encode(p),
        OutputFormat::Webp => webp::encode(p, quality),
        OutputFormat::Avif => avif::encode(p, quality, avif_speed),
        OutputFormat::Gif => gif_anim::encode(p),
    }
}

/// An encoder's error as one line.
fn enc_err(e: impl std::fmt::Display) -> TransformError {
    TransformError::Encode(e.to_string().replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_magic() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest"), Some(SourceFormat::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some(SourceFormat::Png));
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 "), Some(SourceFormat::Webp));
        assert_eq!(sniff(b"GIF89a...."), Some(SourceFormat::Gif));
        assert_eq!(sniff(b"<html>"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"\xFF\xD8"), None);
        assert_eq!(sniff(b"RIFF\x10\0\0\0WAVE"), None);
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
                orientation: 1,
                layout: Layout::Gif
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
