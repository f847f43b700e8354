//! Metadata blocks in the containers: the source's EXIF and XMP read from JPEG (APP1), WebP
//! (`EXIF`, `XMP ` chunks) and PNG (`eXIf`, `iTXt` XML:com.adobe.xmp) headers, and written
//! into a JPEG, PNG or WebP output through `img-parts` (a simple VP8 WebP becomes VP8X). GIF
//! sources have none read; AVIF output carries none (ravif writes no EXIF or XMP item).

use img_parts::jpeg::{markers, Jpeg, JpegSegment};
use img_parts::png::{Png, PngChunk};
use img_parts::riff::{RiffChunk, RiffContent};
use img_parts::webp::{WebP, CHUNK_VP8X, CHUNK_XMP};
use img_parts::{Bytes, ImageEXIF};

use crate::image::codec::bytes::{be16, be32, le32};
use crate::image::codec::enc_err;
use crate::image::error::TransformError;
use crate::image::format::{OutputFormat, SourceFormat};

const JPEG_EXIF: &[u8] = b"Exif\0\0";
const JPEG_XMP: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const PNG_XMP_KEYWORD: &[u8] = b"XML:com.adobe.xmp";
/// The VP8X flag that says an `XMP ` chunk follows.
const VP8X_XMP: u8 = 0x04;

/// A source's (or an output's) metadata blocks, as the containers hold them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Blocks {
    /// EXIF: a TIFF structure (`II*\0` or `MM\0*`), without JPEG's `Exif\0\0` prefix.
    pub exif: Option<Vec<u8>>,
    /// One XMP packet (UTF-8 XML).
    pub xmp: Option<Vec<u8>>,
}

impl Blocks {
    pub fn is_empty(&self) -> bool {
        self.exif.is_none() && self.xmp.is_none()
    }
}

/// The first EXIF and XMP blocks of `src`'s header; nothing from a header cut short or broken
/// (the decoder reports that, not this).
pub fn read(src: &[u8], format: SourceFormat) -> Blocks {
    match format {
        SourceFormat::Jpeg => read_jpeg(src),
        SourceFormat::Webp => read_webp(src),
        SourceFormat::Png => read_png(src),
        SourceFormat::Gif | SourceFormat::Svg => Blocks::default(),
    }
}

/// APP1 segments up to the first scan.
fn read_jpeg(b: &[u8]) -> Blocks {
    let mut found = Blocks::default();
    let mut i = 2;
    while b.get(i) == Some(&0xFF) {
        while b.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&m) = b.get(i) else { break };
        i += 1;
        match m {
            0x01 | 0xD0..=0xD8 => continue,
            0xD9 | 0xDA => break,
            _ => {}
        }
        let Some(len) = be16(b, i).map(|l| l as usize).filter(|&l| l >= 2) else {
            break;
        };
        let Some(seg) = b.get(i + 2..i + len) else {
            break;
        };
        if m == 0xE1 {
            if let Some(t) = seg.strip_prefix(JPEG_EXIF) {
                found.exif.get_or_insert_with(|| t.to_vec());
            } else if let Some(x) = seg.strip_prefix(JPEG_XMP) {
                found.xmp.get_or_insert_with(|| x.to_vec());
            }
        }
        i += len;
    }
    found
}

/// The RIFF chunks after the `WEBP` fourcc.
fn read_webp(b: &[u8]) -> Blocks {
    let mut found = Blocks::default();
    let mut i = 12usize;
    while let (Some(id), Some(size)) = (b.get(i..i + 4), le32(b, i + 4)) {
        let Some(data) = (i + 8)
            .checked_add(size as usize)
            .and_then(|end| b.get(i + 8..end))
        else {
            break;
        };
        match id {
            // early writers put JPEG's prefix before the TIFF structure
            b"EXIF" => {
                let t = data.strip_prefix(JPEG_EXIF).unwrap_or(data);
                found.exif.get_or_insert_with(|| t.to_vec());
            }
            b"XMP " => {
                found.xmp.get_or_insert_with(|| data.to_vec());
            }
            _ => {}
        }
        i = i + 8 + size as usize + (size as usize & 1);
    }
    found
}

/// The chunks up to `IEND` (eXIf may follow the image data).
fn read_png(b: &[u8]) -> Blocks {
    let mut found = Blocks::default();
    let mut i = 8usize;
    while let (Some(len), Some(kind)) = (be32(b, i), b.get(i + 4..i + 8)) {
        let Some(data) = (i + 8)
            .checked_add(len as usize)
            .and_then(|end| b.get(i + 8..end))
        else {
            break;
        };
        match kind {
            b"eXIf" => {
                found.exif.get_or_insert_with(|| data.to_vec());
            }
            b"iTXt" if found.xmp.is_none() => found.xmp = itxt_xmp(data),
            b"IEND" => break,
            _ => {}
        }
        i = i.saturating_add(12).saturating_add(len as usize);
    }
    found
}

/// The text of an uncompressed `iTXt` chunk whose keyword is XMP's.
fn itxt_xmp(data: &[u8]) -> Option<Vec<u8>> {
    let rest = data.strip_prefix(PNG_XMP_KEYWORD)?.strip_prefix(b"\0")?;
    // compression flag 0, method 0, then the language tag and translated keyword (NUL-ended)
    let rest = rest.strip_prefix(b"\0\0")?;
    let lang_end = rest.iter().position(|&c| c == 0)?;
    let rest = &rest[lang_end + 1..];
    let kw_end = rest.iter().position(|&c| c == 0)?;
    Some(rest[kw_end + 1..].to_vec())
}

/// `out` (encoded as `format`) with `blocks` written into its container. AVIF is returned as it
/// is, and so is a block too large for its container (a JPEG segment holds under 64 KiB).
pub fn embed(
    out: Vec<u8>,
    format: OutputFormat,
    blocks: &Blocks,
) -> Result<Vec<u8>, TransformError> {
    if blocks.is_empty() {
        return Ok(out);
    }
    let bytes = Bytes::from(out);
    match format {
        OutputFormat::Jpeg => embed_jpeg(bytes, blocks),
        OutputFormat::Png => embed_png(bytes, blocks),
        OutputFormat::Webp => embed_webp(bytes, blocks),
        OutputFormat::Avif | OutputFormat::Gif => Ok(bytes.into()),
    }
}

/// Writes an encoder's output (the encoders are the crate's own, sealed, type per container).
macro_rules! written {
    ($image:expr) => {{
        let mut out = Vec::with_capacity($image.len() as usize);
        $image.encoder().write_to(&mut out).map_err(enc_err)?;
        Ok(out)
    }};
}

/// APP1 segments (EXIF, then XMP) right after SOI and JFIF's APP0.
fn embed_jpeg(bytes: Bytes, blocks: &Blocks) -> Result<Vec<u8>, TransformError> {
    let mut jpeg = Jpeg::from_bytes(bytes).map_err(enc_err)?;
    let segments = jpeg.segments_mut();
    let mut at = segments
        .iter()
        .take_while(|s| s.marker() == markers::APP0)
        .count();
    for (prefix, block) in [(JPEG_EXIF, &blocks.exif), (JPEG_XMP, &blocks.xmp)] {
        let Some(block) = block else { continue };
        if prefix.len() + block.len() + 2 > u16::MAX as usize {
            continue;
        }
        let contents = Bytes::from([prefix, block.as_slice()].concat());
        segments.insert(at, JpegSegment::new_with_contents(markers::APP1, contents));
        at += 1;
    }
    written!(jpeg)
}

/// `eXIf` and an XMP `iTXt` before the first `IDAT` (where every reader looks).
fn embed_png(bytes: Bytes, blocks: &Blocks) -> Result<Vec<u8>, TransformError> {
    let mut png = Png::from_bytes(bytes).map_err(enc_err)?;
    let chunks = png.chunks_mut();
    let mut at = chunks
        .iter()
        .position(|c| &c.kind() == b"IDAT")
        .ok_or_else(|| enc_err("PNG without IDAT"))?;
    if let Some(exif) = &blocks.exif {
        chunks.insert(at, PngChunk::new(*b"eXIf", Bytes::from(exif.clone())));
        at += 1;
    }
    if let Some(xmp) = &blocks.xmp {
        // keyword, NUL, uncompressed (flag 0, method 0), no language, no translated keyword
        let text = [PNG_XMP_KEYWORD, b"\0\0\0\0\0", xmp.as_slice()].concat();
        chunks.insert(at, PngChunk::new(*b"iTXt", Bytes::from(text)));
    }
    written!(png)
}

/// `EXIF` and `XMP ` chunks at the end, in a VP8X container with their flags set.
fn embed_webp(bytes: Bytes, blocks: &Blocks) -> Result<Vec<u8>, TransformError> {
    let mut webp = WebP::from_bytes(bytes).map_err(enc_err)?;
    let xmp = blocks.xmp.as_ref().map(|x| {
        let data = RiffContent::Data(Bytes::from(x.clone()));
        RiffChunk::new(CHUNK_XMP, data)
    });
    if let Some(chunk) = xmp.clone() {
        // present before the container is converted, so that VP8X's flags count it
        webp.chunks_mut().push(chunk);
    }
    // adds the EXIF chunk (or none) and turns a simple VP8 file into VP8X
    webp.set_exif(blocks.exif.clone().map(Bytes::from));
    if let Some(chunk) = xmp {
        // EXIF before XMP, as the container's chunk order has it
        webp.remove_chunks_by_id(CHUNK_XMP);
        webp.chunks_mut().push(chunk);
        let vp8x = webp.chunks_mut().iter_mut().find(|c| c.id() == CHUNK_VP8X);
        if let Some(RiffContent::Data(d)) = vp8x.map(RiffChunk::content_mut) {
            let mut flags = d.to_vec();
            if let Some(f) = flags.first_mut() {
                *f |= VP8X_XMP;
            }
            *d = Bytes::from(flags);
        }
    }
    if !webp.has_chunk(CHUNK_VP8X) {
        return Err(enc_err("WebP output could not take a VP8X header"));
    }
    written!(webp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::codec;
    use crate::image::pixels::Pixels;

    fn pixels(channels: u8) -> Pixels {
        Pixels {
            width: 16,
            height: 8,
            channels,
            data: vec![120; 16 * 8 * channels as usize],
        }
    }

    fn blocks() -> Blocks {
        Blocks {
            exif: Some(b"MM\0*\0\0\0\x08\0\0\0\0\0\0".to_vec()),
            xmp: Some(b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>".to_vec()),
        }
    }

    /// Written into each output container, read back the same, and the output still decodes.
    #[test]
    fn round_trip_through_each_container() {
        for (format, source, channels) in [
            (OutputFormat::Jpeg, SourceFormat::Jpeg, 3),
            (OutputFormat::Png, SourceFormat::Png, 4),
            (OutputFormat::Webp, SourceFormat::Webp, 3),
            (OutputFormat::Webp, SourceFormat::Webp, 4),
        ] {
            let plain = codec::encode(&pixels(channels), format, 80, 10).unwrap();
            assert!(read(&plain, source).is_empty());
            for b in [
                blocks(),
                Blocks {
                    exif: None,
                    ..blocks()
                },
                Blocks {
                    xmp: None,
                    ..blocks()
                },
            ] {
                let out = embed(plain.clone(), format, &b).unwrap();
                assert_eq!(read(&out, source), b, "{format:?} {channels}");
                let p = codec::probe(&out).unwrap();
                assert_eq!((p.width, p.height), (16, 8));
                let d = codec::decode(&out, &p, 1).unwrap();
                assert_eq!((d.width, d.height), (16, 8));
            }
        }
    }

    #[test]
    fn webp_becomes_vp8x_with_its_flags() {
        let plain = codec::encode(&pixels(3), OutputFormat::Webp, 80, 10).unwrap();
        assert_eq!(&plain[12..16], b"VP8 ");
        let out = embed(plain, OutputFormat::Webp, &blocks()).unwrap();
        assert_eq!(&out[12..16], b"VP8X");
        assert_eq!(out[20] & 0x0C, 0x0C, "EXIF and XMP flags");
        assert_eq!(le32(&out, 4).unwrap() as usize, out.len() - 8);
    }

    #[test]
    fn nothing_to_embed_leaves_the_bytes_alone() {
        let plain = codec::encode(&pixels(3), OutputFormat::Jpeg, 80, 10).unwrap();
        let out = embed(plain.clone(), OutputFormat::Jpeg, &Blocks::default()).unwrap();
        assert_eq!(out, plain);
        let avif = embed(b"avif".to_vec(), OutputFormat::Avif, &blocks()).unwrap();
        assert_eq!(avif, b"avif");
    }

    #[test]
    fn broken_headers_read_as_nothing() {
        for b in [
            &b"\xFF\xD8\xFF\xE1\xFF\xFFExif\0\0"[..],
            b"\xFF\xD8\xFF",
            b"\xFF\xD8",
            b"\xFF\xD8\xFF\xE1\x00\x01",
        ] {
            assert!(read(b, SourceFormat::Jpeg).is_empty());
        }
        assert!(read(b"RIFF\0\0\0\0WEBPEXIF\xff\xff\xff\xff", SourceFormat::Webp).is_empty());
        assert!(read(b"\x89PNG\r\n\x1a\n\xff\xff\xff\xffeXIf", SourceFormat::Png).is_empty());
        assert!(read(b"GIF89a", SourceFormat::Gif).is_empty());
    }
}
