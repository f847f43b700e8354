//! `metadata=copyright | keep | none`: which of the source's EXIF and XMP the output carries
//! (Cloudflare's option; `copyright` by default). The choice is pure ([`select`]); [`carry`]
//! reads the blocks from the source's container and writes them into the output's
//! (`codec::meta`).
//!
//! - `copyright`: a new EXIF holding only IFD0's Copyright (0x8298) and Artist (0x013B), when the
//!   source has either; no XMP, never GPS or any other tag.
//! - `keep`: the source's EXIF as it is, its Orientation set to 1 (the pixels are already turned)
//!   and its thumbnail dropped (it shows the uncropped source); its XMP packet with
//!   `tiff:Orientation` set to 1 too.
//! - `none`: nothing.

use exif::experimental::Writer;
use exif::{Field, In, Reader, Tag, Value};

use crate::image::codec::exif::{drop_thumbnail, reset_orientation};
pub use crate::image::codec::meta::Blocks;
use crate::image::codec::meta::{embed, read};
use crate::image::error::TransformError;
use crate::image::format::{OutputFormat, SourceFormat};

/// What `metadata=` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Metadata {
    /// Copyright and Artist only (Cloudflare's default).
    #[default]
    Copyright,
    /// All EXIF and XMP, orientation reset.
    Keep,
    /// Nothing.
    None,
}

impl Metadata {
    pub fn as_str(&self) -> &'static str {
        match self {
            Metadata::Copyright => "copyright",
            Metadata::Keep => "keep",
            Metadata::None => "none",
        }
    }

    /// Parses the URL value.
    pub(crate) fn parse(s: &str) -> Option<Metadata> {
        Some(match s {
            "copyright" => Metadata::Copyright,
            "keep" => Metadata::Keep,
            "none" => Metadata::None,
            _ => return None,
        })
    }
}

/// The output `out` (encoded as `format`) with what `mode` keeps of `src`'s metadata. Reads
/// the source's header only; an output untouched when there is nothing to carry.
pub fn carry(
    src: &[u8],
    source: SourceFormat,
    out: Vec<u8>,
    format: OutputFormat,
    mode: Metadata,
) -> Result<Vec<u8>, TransformError> {
    if mode == Metadata::None || format == OutputFormat::Avif {
        return Ok(out);
    }
    embed(out, format, &select(mode, read(src, source)))
}

/// What the output carries of the source's `blocks` under `mode`.
pub fn select(mode: Metadata, blocks: Blocks) -> Blocks {
    match mode {
        Metadata::None => Blocks::default(),
        Metadata::Copyright => Blocks {
            exif: blocks.exif.as_deref().and_then(copyright_exif),
            xmp: None,
        },
        Metadata::Keep => Blocks {
            exif: blocks.exif.map(|mut t| {
                reset_orientation(&mut t);
                drop_thumbnail(&mut t);
                t
            }),
            xmp: blocks.xmp.map(upright_xmp),
        },
    }
}

/// A new EXIF with IFD0's Copyright and Artist of `tiff` (in its byte order), or `None` when it
/// has neither (or is not EXIF).
fn copyright_exif(tiff: &[u8]) -> Option<Vec<u8>> {
    let exif = match Reader::new()
        .continue_on_error(true)
        .read_raw(tiff.to_vec())
    {
        Ok(e) => e,
        // a broken maker note or GPS directory does not hide IFD0's fields
        Err(exif::Error::PartialResult(p)) => p.into_inner().0,
        Err(_) => return None,
    };
    let kept: Vec<&Field> = [Tag::Copyright, Tag::Artist]
        .into_iter()
        .filter_map(|tag| exif.get_field(tag, In::PRIMARY))
        .filter(|f| has_text(&f.value))
        .collect();
    if kept.is_empty() {
        return None;
    }
    let mut w = Writer::new();
    for f in kept {
        w.push_field(f);
    }
    let mut out = std::io::Cursor::new(Vec::new());
    w.write(&mut out, exif.little_endian()).ok()?;
    Some(out.into_inner())
}

/// An ASCII value with at least one non-blank character.
fn has_text(v: &Value) -> bool {
    match v {
        Value::Ascii(parts) => parts
            .iter()
            .any(|p| p.iter().any(|b| !b.is_ascii_whitespace() && *b != 0)),
        _ => false,
    }
}

/// `xmp` with its `tiff:Orientation` (attribute or element form) set to 1.
fn upright_xmp(mut xmp: Vec<u8>) -> Vec<u8> {
    for prefix in [
        &b"tiff:Orientation=\""[..],
        b"tiff:Orientation='",
        b"<tiff:Orientation>",
    ] {
        let mut from = 0;
        while let Some(at) = find(&xmp[from..], prefix) {
            let digit = from + at + prefix.len();
            if let Some(d) = xmp.get_mut(digit).filter(|d| (b'2'..=b'8').contains(*d)) {
                *d = b'1';
            }
            from = digit;
        }
    }
    xmp
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::codec::exif::exif_orientation;

    fn ascii(tag: Tag, s: &[u8]) -> Field {
        Field {
            tag,
            ifd_num: In::PRIMARY,
            value: Value::Ascii(vec![s.to_vec()]),
        }
    }

    /// A TIFF with the given IFD0 fields, and a GPS latitude.
    fn tiff(fields: &[Field], le: bool) -> Vec<u8> {
        let gps = Field {
            tag: Tag::GPSLatitudeRef,
            ifd_num: In::PRIMARY,
            value: Value::Ascii(vec![b"N".to_vec()]),
        };
        let mut w = Writer::new();
        for f in fields {
            w.push_field(f);
        }
        w.push_field(&gps);
        let mut out = std::io::Cursor::new(Vec::new());
        w.write(&mut out, le).unwrap();
        out.into_inner()
    }

    fn read(t: &[u8]) -> exif::Exif {
        Reader::new().read_raw(t.to_vec()).unwrap()
    }

    #[test]
    fn copyright_keeps_copyright_and_artist_only() {
        let orient = Field {
            tag: Tag::Orientation,
            ifd_num: In::PRIMARY,
            value: Value::Short(vec![6]),
        };
        for le in [false, true] {
            let src = tiff(
                &[
                    ascii(Tag::Copyright, b"(c) 2018 A. Berasategi"),
                    ascii(Tag::Artist, b"Aitzol Berasategi"),
                    ascii(Tag::Make, b"Camera"),
                    orient.clone(),
                ],
                le,
            );
            let blocks = Blocks {
                exif: Some(src),
                xmp: Some(b"<x:xmpmeta/>".to_vec()),
            };
            let out = select(Metadata::Copyright, blocks);
            assert_eq!(out.xmp, None);
            let e = read(out.exif.as_deref().unwrap());
            assert_eq!(e.little_endian(), le);
            let tags: Vec<Tag> = e.fields().map(|f| f.tag).collect();
            assert_eq!(tags.len(), 2, "{tags:?}");
            let v = |t| {
                e.get_field(t, In::PRIMARY)
                    .unwrap()
                    .display_value()
                    .to_string()
            };
            assert_eq!(v(Tag::Copyright), "\"(c) 2018 A. Berasategi\"");
            assert_eq!(v(Tag::Artist), "\"Aitzol Berasategi\"");
        }
    }

    #[test]
    fn copyright_without_either_tag_is_nothing() {
        let src = tiff(&[ascii(Tag::Make, b"Camera")], false);
        let exif = select(
            Metadata::Copyright,
            Blocks {
                exif: Some(src),
                xmp: None,
            },
        )
        .exif;
        assert_eq!(exif, None);
        let blank = tiff(&[ascii(Tag::Copyright, b"  ")], true);
        let exif = select(
            Metadata::Copyright,
            Blocks {
                exif: Some(blank),
                xmp: None,
            },
        )
        .exif;
        assert_eq!(exif, None, "a blank copyright is no notice");
        for junk in [&b""[..], b"II*\0", b"MM\0*\xff\xff\xff\xff", b"not exif"] {
            let b = Blocks {
                exif: Some(junk.to_vec()),
                xmp: None,
            };
            assert_eq!(select(Metadata::Copyright, b).exif, None);
        }
    }

    #[test]
    fn keep_resets_orientation_and_keeps_the_rest() {
        let orient = Field {
            tag: Tag::Orientation,
            ifd_num: In::PRIMARY,
            value: Value::Short(vec![6]),
        };
        let src = tiff(&[ascii(Tag::Make, b"Camera"), orient], false);
        assert_eq!(exif_orientation(&src), Some(6));
        let xmp =
            b"<rdf:Description tiff:Orientation=\"6\"/><tiff:Orientation>8</tiff:Orientation>";
        let out = select(
            Metadata::Keep,
            Blocks {
                exif: Some(src.clone()),
                xmp: Some(xmp.to_vec()),
            },
        );
        let exif = out.exif.unwrap();
        assert_eq!(exif_orientation(&exif), Some(1));
        assert_eq!(exif.len(), src.len());
        let e = read(&exif);
        assert!(e.get_field(Tag::GPSLatitudeRef, In::PRIMARY).is_some());
        assert!(e.get_field(Tag::Make, In::PRIMARY).is_some());
        assert_eq!(
            out.xmp.unwrap(),
            b"<rdf:Description tiff:Orientation=\"1\"/><tiff:Orientation>1</tiff:Orientation>"
        );
    }

    #[test]
    fn none_is_nothing() {
        let src = tiff(&[ascii(Tag::Copyright, b"me")], false);
        let b = Blocks {
            exif: Some(src),
            xmp: Some(b"x".to_vec()),
        };
        assert!(select(Metadata::None, b).is_empty());
    }

    #[test]
    fn names() {
        for m in [Metadata::Copyright, Metadata::Keep, Metadata::None] {
            assert_eq!(Metadata::parse(m.as_str()), Some(m));
        }
        assert_eq!(Metadata::parse("all"), None);
        assert_eq!(Metadata::default(), Metadata::Copyright);
    }
}
