//! CMYK and YCCK JPEGs decoded to their CMYK samples (libjpeg-turbo turns YCCK into CMYK), for
//! the embedded CMYK profile to convert (`ops::color_profile`). Without a profile the `image`
//! crate's device conversion is used instead (`jpeg::decode`).

use crate::image::codec::bytes::be16;
use crate::image::codec::jpeg::buffer_len;
use crate::image::error::TransformError;
use crate::image::pixels::Pixels;

/// The CMYK samples at full size, 4 channels, 0 = no ink. Adobe's writers (Photoshop, libjpeg
/// with an `APP14 Adobe` marker, libvips) store them inverted: turned back here.
pub fn decode(bytes: &[u8]) -> Result<Pixels, TransformError> {
    use turbojpeg::{Decompressor, Image, PixelFormat};
    let corrupt = |e: turbojpeg::Error| TransformError::Corrupt(e.to_string().replace('\n', " "));
    if !bytes[bytes.len().saturating_sub(4096)..]
        .windows(2)
        .any(|w| w == [0xFF, 0xD9])
    {
        return Err(TransformError::Truncated);
    }
    let mut d = Decompressor::new().map_err(corrupt)?;
    let header = d.read_header(bytes).map_err(corrupt)?;
    let (w, h) = (header.width, header.height);
    let len = buffer_len(w, h, 4, (w, h))?;
    let mut data = vec![0u8; len];
    let image = Image {
        pixels: &mut data[..],
        width: w,
        pitch: w * 4,
        height: h,
        format: PixelFormat::CMYK,
    };
    d.decompress(bytes, image).map_err(corrupt)?;
    if adobe(bytes) {
        for v in &mut data {
            *v = 255 - *v;
        }
    }
    Ok(Pixels {
        width: w as u32,
        height: h as u32,
        channels: 4,
        data,
    })
}

/// Whether an `APP14 Adobe` segment comes before the first scan.
fn adobe(b: &[u8]) -> bool {
    let mut i = 2;
    while let (Some(&0xFF), Some(&m)) = (b.get(i), b.get(i + 1)) {
        match m {
            0xFF => i += 1,
            0xDA | 0xD9 => return false,
            0xD0..=0xD8 | 0x01 => i += 2,
            _ => {
                let Some(len) = be16(b, i + 2) else {
                    return false;
                };
                if m == 0xEE && b.get(i + 4..i + 9) == Some(&b"Adobe"[..]) {
                    return true;
                }
                i += 2 + (len as usize).max(2);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adobe_marker_found_before_the_scan_only() {
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 1, 2];
        assert!(!adobe(&j));
        j.extend_from_slice(&[0xFF, 0xEE, 0, 14]);
        j.extend_from_slice(b"Adobe\0\x64\0\0\0\0\0");
        assert!(adobe(&j));
        let mut late = vec![0xFF, 0xD8, 0xFF, 0xDA, 0, 2];
        late.extend_from_slice(&j[8..]);
        assert!(!adobe(&late));
        assert!(!adobe(&[0xFF, 0xD8, 0xFF, 0xEE, 0]));
    }
}
