//! The ICC profile a source embeds, read from the original bytes (so every JPEG decode path,
//! shrink-on-load and the rewritten progressive streams alike, sees the same profile): JPEG
//! `APP2 ICC_PROFILE` segments joined in sequence order, PNG `iCCP` (inflated by the png
//! crate, only when the chunk is there), WebP `ICCP`. Nothing here decodes pixels. [`embed`]
//! writes a profile into an encoded output the same ways (`color_profile: keep`).

use crate::image::codec::bytes::{be16, be32, le32};
use crate::image::format::{OutputFormat, SourceFormat};

/// Largest profile accepted (real ones are 0.5-200 KB; a CMYK LUT profile rarely passes 1 MB).
pub const MAX_PROFILE_BYTES: usize = 4 << 20;

/// The embedded ICC profile, when there is one that reads whole; `None` costs a header walk.
pub fn profile(bytes: &[u8], format: SourceFormat) -> Option<Vec<u8>> {
    let icc = match format {
        SourceFormat::Jpeg => jpeg(bytes),
        SourceFormat::Png => png(bytes),
        SourceFormat::Webp => webp(bytes),
        // a GIF has no profile; an SVG is rendered in sRGB
        SourceFormat::Gif | SourceFormat::Svg => None,
    }?;
    (icc.len() >= 128 && icc.len() <= MAX_PROFILE_BYTES).then_some(icc)
}

/// The `APP2` segments tagged `ICC_PROFILE\0` before the first scan, joined by their sequence
/// numbers (a profile over 64 KB spans several); `None` when one is missing or repeated.
pub fn jpeg(b: &[u8]) -> Option<Vec<u8>> {
    const TAG: &[u8] = b"ICC_PROFILE\0";
    let mut chunks: Vec<(u8, &[u8])> = Vec::new();
    let mut count = 0u8;
    let mut i = 2; // after SOI
    while i + 1 < b.len() {
        if b[i] != 0xFF {
            return None;
        }
        let marker = b[i + 1];
        match marker {
            0xFF => {
                i += 1; // fill byte
                continue;
            }
            0xDA | 0xD9 => break, // start of scan, end of image: no header segment follows
            0xD0..=0xD8 | 0x01 => {
                i += 2;
                continue;
            }
            _ => {}
        }
        let len = be16(b, i + 2)? as usize;
        let seg = b.get(i + 4..(i + 2 + len).max(i + 4))?;
        if marker == 0xE2 && seg.len() >= TAG.len() + 2 && seg.starts_with(TAG) {
            let (seq, n) = (seg[TAG.len()], seg[TAG.len() + 1]);
            if count != 0 && n != count {
                return None;
            }
            count = n;
            chunks.push((seq, &seg[TAG.len() + 2..]));
        }
        i += 2 + len.max(2);
    }
    if chunks.is_empty() || chunks.len() != count as usize {
        return None;
    }
    chunks.sort_by_key(|c| c.0);
    let in_order = chunks
        .iter()
        .enumerate()
        .all(|(k, c)| c.0 as usize == k + 1);
    in_order.then(|| chunks.iter().flat_map(|c| c.1.iter().copied()).collect())
}

/// PNG `iCCP`: the chunk walk is ours (no allocation when there is none); the png crate
/// inflates it.
fn png(b: &[u8]) -> Option<Vec<u8>> {
    use image::ImageDecoder;
    let mut i = 8;
    loop {
        let len = be32(b, i)? as usize;
        match b.get(i + 4..i + 8)? {
            b"iCCP" => break,
            b"IDAT" | b"IEND" => return None,
            _ => i = i.checked_add(12)?.checked_add(len)?,
        }
    }
    image::codecs::png::PngDecoder::new(std::io::Cursor::new(b))
        .ok()?
        .icc_profile()
        .ok()
        .flatten()
}

/// WebP `ICCP`: only an extended file (`VP8X`, whose flags announce it) carries one.
fn webp(b: &[u8]) -> Option<Vec<u8>> {
    if b.get(12..16)? != b"VP8X" || b.get(20)? & 0x20 == 0 {
        return None;
    }
    let mut i = 12;
    while let (Some(kind), Some(len)) = (b.get(i..i + 4), le32(b, i + 4)) {
        let len = len as usize;
        if kind == b"ICCP" {
            return b.get(i + 8..i + 8 + len).map(<[u8]>::to_vec);
        }
        // chunks are padded to an even length
        i = i.checked_add(8)?.checked_add(len + (len & 1))?;
    }
    None
}

/// `out` (as our encoders write it, `w` x `h`) with `icc` embedded; AVIF and GIF are returned
/// as they are (ravif writes no ICC box; a GIF's colours are sRGB by convention).
pub fn embed(out: Vec<u8>, format: OutputFormat, icc: &[u8], w: u32, h: u32) -> Vec<u8> {
    match format {
        OutputFormat::Jpeg => embed_jpeg(out, icc),
        OutputFormat::Png => embed_png(out, icc),
        OutputFormat::Webp => embed_webp(out, icc, w, h),
        OutputFormat::Avif | OutputFormat::Gif => out,
    }
}

/// `APP2 ICC_PROFILE` segments (65 519 bytes of profile each) after SOI and the JFIF `APP0`.
fn embed_jpeg(out: Vec<u8>, icc: &[u8]) -> Vec<u8> {
    const TAG: &[u8] = b"ICC_PROFILE\0";
    let mut at = 2;
    if out.get(2..4) == Some(&[0xFF, 0xE0][..]) {
        at = be16(&out, 4).map_or(2, |len| 4 + len as usize);
    }
    let parts: Vec<&[u8]> = icc.chunks(65535 - 2 - TAG.len() - 2).collect();
    if at > out.len() || parts.len() > 255 {
        return out;
    }
    let mut j = Vec::with_capacity(out.len() + icc.len() + 18 * parts.len());
    j.extend_from_slice(&out[..at]);
    for (i, part) in parts.iter().enumerate() {
        j.extend_from_slice(&[0xFF, 0xE2]);
        j.extend_from_slice(&((2 + TAG.len() + 2 + part.len()) as u16).to_be_bytes());
        j.extend_from_slice(TAG);
        j.extend_from_slice(&[i as u8 + 1, parts.len() as u8]);
        j.extend_from_slice(part);
    }
    j.extend_from_slice(&out[at..]);
    j
}

/// An `iCCP` chunk after `IHDR`: the profile in a zlib stream of stored blocks (readers
/// inflate any deflate stream; profiles are small and compress little).
fn embed_png(out: Vec<u8>, icc: &[u8]) -> Vec<u8> {
    const AFTER_IHDR: usize = 8 + 25;
    if out.get(12..16) != Some(&b"IHDR"[..]) || out.len() < AFTER_IHDR {
        return out;
    }
    let mut data = b"icc\0\0".to_vec(); // name, compression method 0 (zlib)
    data.extend_from_slice(&[0x78, 0x01]);
    let blocks: Vec<&[u8]> = icc.chunks(65535).collect();
    for (i, b) in blocks.iter().enumerate() {
        let len = b.len() as u16;
        data.push(u8::from(i + 1 == blocks.len()));
        data.extend_from_slice(&len.to_le_bytes());
        data.extend_from_slice(&(!len).to_le_bytes());
        data.extend_from_slice(b);
    }
    data.extend_from_slice(&adler32(icc).to_be_bytes());
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(b"iCCP");
    chunk.extend_from_slice(&data);
    chunk.extend_from_slice(&crc32fast::hash(&chunk[4..]).to_be_bytes());
    let mut p = Vec::with_capacity(out.len() + chunk.len());
    p.extend_from_slice(&out[..AFTER_IHDR]);
    p.extend_from_slice(&chunk);
    p.extend_from_slice(&out[AFTER_IHDR..]);
    p
}

fn adler32(b: &[u8]) -> u32 {
    let (mut a, mut s) = (1u32, 0u32);
    for chunk in b.chunks(5552) {
        for &v in chunk {
            a += v as u32;
            s += a;
        }
        a %= 65521;
        s %= 65521;
    }
    (s << 16) | a
}

/// An `ICCP` chunk after `VP8X` (made from the bitstream's size and alpha when the file is a
/// simple one), the ICC flag set and the RIFF size updated.
fn embed_webp(out: Vec<u8>, icc: &[u8], w: u32, h: u32) -> Vec<u8> {
    let Some(kind) = out.get(12..16) else {
        return out;
    };
    let mut iccp = b"ICCP".to_vec();
    iccp.extend_from_slice(&(icc.len() as u32).to_le_bytes());
    iccp.extend_from_slice(icc);
    if icc.len() % 2 == 1 {
        iccp.push(0);
    }
    let mut x = out[..12].to_vec();
    let rest = if kind == b"VP8X" && out.len() >= 30 {
        let mut vp8x = out[12..30].to_vec();
        vp8x[8] |= 0x20;
        x.extend_from_slice(&vp8x);
        &out[30..]
    } else {
        // VP8L: the alpha bit of its header; lossy VP8 has none (alpha comes as VP8X + ALPH)
        let alpha = kind == b"VP8L" && le32(&out, 21).is_some_and(|b| (b >> 28) & 1 == 1);
        x.extend_from_slice(b"VP8X");
        x.extend_from_slice(&10u32.to_le_bytes());
        x.extend_from_slice(&[0x20 | if alpha { 0x10 } else { 0 }, 0, 0, 0]);
        x.extend_from_slice(&(w.saturating_sub(1)).to_le_bytes()[..3]);
        x.extend_from_slice(&(h.saturating_sub(1)).to_le_bytes()[..3]);
        &out[12..]
    };
    x.extend_from_slice(&iccp);
    x.extend_from_slice(rest);
    let riff = (x.len() - 8) as u32;
    x[4..8].copy_from_slice(&riff.to_le_bytes());
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tests::fixture;

    fn app2(seq: u8, n: u8, data: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, 0xE2];
        s.extend_from_slice(&((2 + 14 + data.len()) as u16).to_be_bytes());
        s.extend_from_slice(b"ICC_PROFILE\0");
        s.extend_from_slice(&[seq, n]);
        s.extend_from_slice(data);
        s
    }

    #[test]
    fn jpeg_chunks_join_in_sequence_order() {
        let mut j = vec![0xFF, 0xD8];
        j.extend(app2(2, 2, b"world"));
        j.extend(app2(1, 2, b"hello "));
        j.extend_from_slice(&[0xFF, 0xDA, 0, 2]);
        assert_eq!(jpeg(&j).as_deref(), Some(&b"hello world"[..]));
        // a chunk missing, a chunk repeated, a cut segment, nothing
        let mut k = vec![0xFF, 0xD8];
        k.extend(app2(1, 2, b"hello "));
        assert_eq!(jpeg(&k), None);
        k.extend(app2(1, 2, b"hello "));
        assert_eq!(jpeg(&k), None);
        assert_eq!(jpeg(&[0xFF, 0xD8, 0xFF, 0xE2, 0xFF]), None);
        assert_eq!(jpeg(&[0xFF, 0xD8]), None);
        assert_eq!(jpeg(&[0xFF, 0xD8, 0xFF, 0xE2, 0, 0]), None);
    }

    #[test]
    fn embedded_profiles_read_back() {
        use crate::image::codec::encode;
        use crate::image::pixels::Pixels;
        let icc: Vec<u8> = (0..70_001u32).map(|i| (i * 7 % 251) as u8).collect();
        let px = Pixels {
            width: 9,
            height: 5,
            channels: 3,
            data: vec![90; 9 * 5 * 3],
        };
        for (out, src) in [
            (OutputFormat::Jpeg, SourceFormat::Jpeg),
            (OutputFormat::Png, SourceFormat::Png),
            (OutputFormat::Webp, SourceFormat::Webp),
        ] {
            let bytes = embed(encode(&px, out, 80, 10).unwrap(), out, &icc, 9, 5);
            assert_eq!(profile(&bytes, src).as_deref(), Some(&icc[..]), "{out:?}");
            let img = image::load_from_memory(&bytes).unwrap();
            assert_eq!((img.width(), img.height()), (9, 5), "{out:?}");
        }
    }

    #[test]
    fn fixtures_carry_their_profiles() {
        for (name, format) in [
            ("meadow_640_adobergb.jpg", SourceFormat::Jpeg),
            ("meadow_640_prophoto_prog.jpg", SourceFormat::Jpeg),
            ("meadow_200_prophoto.png", SourceFormat::Png),
            ("meadow_640_a98v2.webp", SourceFormat::Webp),
        ] {
            let icc = profile(&fixture(name), format).unwrap_or_default();
            assert!(icc.len() > 500 && &icc[36..40] == b"acsp", "{name}");
        }
        for (name, format) in [
            ("meadow_640.jpg", SourceFormat::Jpeg),
            ("emerald_alpha_300.png", SourceFormat::Png),
            ("aitzgorri_480.webp", SourceFormat::Webp),
        ] {
            assert_eq!(profile(&fixture(name), format), None, "{name}");
        }
    }
}
