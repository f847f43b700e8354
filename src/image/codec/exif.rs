//! EXIF (a TIFF structure): the orientation tag, and the two edits in place that
//! `metadata=keep` makes (orientation reset to 1, thumbnail dropped). Reading other tags is
//! the `exif` crate's (`image::metadata`).

use crate::image::codec::bytes::{be16, be32, le16, le32};

/// Orientation tag (IFD0).
const ORIENTATION: u32 = 0x0112;
/// IFD1's thumbnail: where its JPEG starts, and its length.
const THUMB_OFFSET: u32 = 0x0201;
const THUMB_LENGTH: u32 = 0x0202;
/// Entries read of one IFD at most (a real IFD0 has a few dozen).
const MAX_ENTRIES: usize = 512;

/// A TIFF block's byte order and its IFD0.
struct Tiff<'a> {
    b: &'a [u8],
    le: bool,
    ifd0: usize,
}

impl<'a> Tiff<'a> {
    fn new(b: &'a [u8]) -> Option<Tiff<'a>> {
        let le = match b.get(0..2)? {
            b"II" => true,
            b"MM" => false,
            _ => return None,
        };
        let mut t = Tiff { b, le, ifd0: 0 };
        if t.r16(2)? != 42 {
            return None;
        }
        t.ifd0 = t.r32(4)? as usize;
        Some(t)
    }
    fn r16(&self, i: usize) -> Option<u32> {
        if self.le {
            le16(self.b, i)
        } else {
            be16(self.b, i)
        }
    }
    fn r32(&self, i: usize) -> Option<u32> {
        if self.le {
            le32(self.b, i)
        } else {
            be32(self.b, i)
        }
    }
    /// The offset of the 12-byte entry of `tag` in the IFD at `ifd`.
    fn entry(&self, ifd: usize, tag: u32) -> Option<usize> {
        let count = self.r16(ifd)? as usize;
        (0..count.min(MAX_ENTRIES))
            .map(|n| ifd.checked_add(2 + n * 12))
            .take_while(|e| e.is_some_and(|e| self.r16(e).is_some()))
            .flatten()
            .find(|&e| self.r16(e) == Some(tag))
    }
    /// Where the offset of the IFD after the one at `ifd` is written.
    fn next_link(&self, ifd: usize) -> Option<usize> {
        let at = ifd.checked_add(2 + 12 * self.r16(ifd)? as usize)?;
        self.r32(at).map(|_| at)
    }
    /// The value of a SHORT or LONG entry with count 1.
    fn number(&self, e: usize) -> Option<u32> {
        match self.r16(e + 2)? {
            3 => self.r16(e + 8),
            4 => self.r32(e + 8),
            _ => None,
        }
    }
}

/// Orientation tag (0x0112) of IFD0 in a TIFF-structured EXIF block; `None` if absent/invalid.
pub(crate) fn exif_orientation(tiff: &[u8]) -> Option<u8> {
    let t = Tiff::new(tiff)?;
    let v = t.r16(t.entry(t.ifd0, ORIENTATION)? + 8)?;
    (1..=8).contains(&v).then_some(v as u8)
}

/// Sets IFD0's Orientation to 1 (upright) where there is one: the pixels served are already
/// turned. Everything else stays byte for byte (maker notes hold offsets of their own).
pub fn reset_orientation(tiff: &mut [u8]) {
    let Some((at, le)) = Tiff::new(tiff).and_then(|t| {
        let e = t.entry(t.ifd0, ORIENTATION)?;
        (t.r16(e + 2)? == 3).then_some((e + 8, t.le))
    }) else {
        return;
    };
    let one = if le {
        1u16.to_le_bytes()
    } else {
        1u16.to_be_bytes()
    };
    tiff[at..at + 2].copy_from_slice(&one);
}

/// Unlinks IFD1 (the thumbnail's directory) and blanks its JPEG thumbnail, cut off when it
/// ends the block: a thumbnail shows the whole uncropped, unrotated source, which a crop may
/// have meant to hide.
pub fn drop_thumbnail(tiff: &mut Vec<u8>) {
    let Some((link, thumb)) = Tiff::new(tiff).and_then(|t| {
        let link = t.next_link(t.ifd0)?;
        let ifd1 = t.r32(link)? as usize;
        let thumb = (ifd1 != 0).then(|| {
            let off = t.number(t.entry(ifd1, THUMB_OFFSET)?)? as usize;
            let len = t.number(t.entry(ifd1, THUMB_LENGTH)?)? as usize;
            Some(off..off.checked_add(len)?.min(t.b.len()))
        });
        Some((link, thumb.flatten()))
    }) else {
        return;
    };
    tiff[link..link + 4].fill(0);
    if let Some(r) = thumb.filter(|r| r.start < r.end) {
        if r.end == tiff.len() {
            tiff.truncate(r.start);
        } else {
            tiff[r].fill(0);
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

    /// Little-endian TIFF: IFD0 {Orientation=6}, IFD1 {thumbnail offset, length} and 4
    /// thumbnail bytes at the end.
    fn with_thumbnail() -> Vec<u8> {
        let mut t = b"II\x2a\0\x08\0\0\0\x01\0".to_vec();
        t.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]);
        t.extend_from_slice(&26u32.to_le_bytes()); // IFD1 at 26
        t.extend_from_slice(&[2, 0]);
        t.extend_from_slice(&[0x01, 0x02, 4, 0, 1, 0, 0, 0, 56, 0, 0, 0]);
        t.extend_from_slice(&[0x02, 0x02, 4, 0, 1, 0, 0, 0, 4, 0, 0, 0]);
        t.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(t.len(), 56);
        t.extend_from_slice(&[0xff, 0xd8, 0xff, 0xd9]);
        t
    }

    #[test]
    fn orientation_reset_in_place() {
        let mut t = with_thumbnail();
        reset_orientation(&mut t);
        assert_eq!(exif_orientation(&t), Some(1));
        assert_eq!(t.len(), 60, "nothing else moved");
        let mut be = b"MM\0\x2a\0\0\0\x08\0\x01".to_vec();
        be.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 8, 0, 0]);
        reset_orientation(&mut be);
        assert_eq!(exif_orientation(&be), Some(1));
        // nothing to reset, or no TIFF: unchanged, no panic
        let mut none = b"II\x2a\0\x08\0\0\0\0\0".to_vec();
        reset_orientation(&mut none);
        assert_eq!(none, b"II\x2a\0\x08\0\0\0\0\0");
        reset_orientation(&mut []);
    }

    #[test]
    fn thumbnail_dropped() {
        let mut t = with_thumbnail();
        drop_thumbnail(&mut t);
        assert_eq!(t.len(), 56, "the thumbnail at the end is cut off");
        assert_eq!(&t[22..26], &[0, 0, 0, 0], "IFD1 unlinked");
        assert_eq!(exif_orientation(&t), Some(6));
        // a thumbnail followed by other data is blanked instead
        let mut t = with_thumbnail();
        t.extend_from_slice(b"tail");
        drop_thumbnail(&mut t);
        assert_eq!(&t[56..], b"\0\0\0\0tail");
        // offsets past the end or a broken IFD1: no panic
        let mut t = with_thumbnail();
        t[38] = 0xff;
        drop_thumbnail(&mut t);
        let mut t = with_thumbnail();
        t.truncate(30);
        drop_thumbnail(&mut t);
        assert_eq!(&t[22..26], &[0, 0, 0, 0]);
    }
}
