//! EXIF (a TIFF structure): the orientation tag, the only metadata read today.

use crate::image::codec::bytes::{be16, be32, le16, le32};

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
}
