//! Animated GIF: the frame count and loop count read by walking the block structure (no LZW
//! data decoded, nothing allocated), the frames decoded one at a time (composed onto the
//! logical screen by the `image` crate), and the GIF encoder fed one frame at a time.

use std::io::Cursor;

use crate::image::codec::{enc_err, image_crate, AnimHeader};
use crate::image::error::TransformError;
use crate::image::pixels::Pixels;

/// Byte `i`, or `Truncated` past the end.
fn at(b: &[u8], i: usize) -> Result<u8, TransformError> {
    b.get(i).copied().ok_or(TransformError::Truncated)
}

/// Skips a chain of data sub-blocks starting at `i` (each a length byte and that many bytes,
/// ended by a zero length): the index after the terminator.
fn skip_sub_blocks(b: &[u8], mut i: usize) -> Result<usize, TransformError> {
    loop {
        let n = at(b, i)? as usize;
        i += 1;
        if n == 0 {
            return Ok(i);
        }
        i += n;
    }
}

/// Size of a colour table whose presence and size are in `packed` (GIF89a's packed fields).
fn colour_table(packed: u8) -> usize {
    if packed & 0x80 != 0 {
        3 * (2usize << (packed & 7))
    } else {
        0
    }
}

/// Walks the blocks to the trailer: how many frames (image descriptors) and how often the
/// animation plays. A file that ends before its trailer is `Truncated`.
pub(crate) fn header(b: &[u8]) -> Result<AnimHeader, TransformError> {
    let mut i = 13 + colour_table(at(b, 10)?);
    let mut frames = 0u32;
    // no NETSCAPE2.0 block: the animation plays once
    let mut plays = 1u32;
    loop {
        match at(b, i)? {
            0x3B => return Ok(AnimHeader { frames, plays }),
            0x21 => {
                let label = at(b, i + 1)?;
                let data = i + 2;
                let app = b.get(data..data + 12);
                if label == 0xFF
                    && matches!(app, Some(a) if a == b"\x0bNETSCAPE2.0" || a == b"\x0bANIMEXTS1.0")
                    && at(b, data + 12)? >= 3
                    && at(b, data + 13)? == 1
                {
                    // the repeat count after the first play; 0 = forever
                    let repeat = u16::from_le_bytes([at(b, data + 14)?, at(b, data + 15)?]);
                    plays = if repeat == 0 { 0 } else { repeat as u32 + 1 };
                }
                i = skip_sub_blocks(b, data)?;
            }
            0x2C => {
                frames = frames.saturating_add(1);
                let packed = at(b, i + 9)?;
                // descriptor, local colour table, LZW minimum code size, then the data
                i = skip_sub_blocks(b, i + 10 + colour_table(packed) + 1)?;
            }
            other => {
                return Err(TransformError::Corrupt(format!(
                    "GIF block type 0x{other:02x} at byte {i}"
                )))
            }
        }
    }
}

/// The frames of a GIF whose logical screen is `w` x `h`, decoded one at a time as RGBA
/// pixels of the whole screen, each with its delay in milliseconds.
pub(crate) fn frames(
    b: &[u8],
    w: u32,
    h: u32,
) -> Result<impl Iterator<Item = Result<(Pixels, u32), TransformError>> + '_, TransformError> {
    let dec =
        image::codecs::gif::GifDecoder::new(Cursor::new(b)).map_err(image_crate::error(w, h))?;
    image_crate::frames(dec, w, h)
}

/// GIF output, one frame at a time; every frame covers the whole screen.
pub(crate) struct Encoder {
    inner: image::codecs::gif::GifEncoder<Shared>,
    out: Shared,
}

/// The output buffer, shared with the encoder: the `gif` crate writes the trailer when its
/// encoder is dropped, and the `image` crate's gives no way to take the writer back.
#[derive(Clone, Default)]
struct Shared(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// NeuQuant's sampling factor (1 best .. 30 fastest): 10 is the `gif` crate's own default, a
/// fraction of the time of 1 with no visible difference on photos.
const GIF_SPEED: i32 = 10;

impl Encoder {
    /// `plays`: how often the animation plays, 0 = forever.
    pub(crate) fn new(plays: u32) -> Result<Encoder, TransformError> {
        let out = Shared::default();
        let mut inner = image::codecs::gif::GifEncoder::new_with_speed(out.clone(), GIF_SPEED);
        if plays != 1 {
            // the NETSCAPE2.0 count is the repeats after the first play
            let repeat = match plays {
                0 => image::codecs::gif::Repeat::Infinite,
                n => image::codecs::gif::Repeat::Finite((n - 1).min(u16::MAX as u32) as u16),
            };
            inner.set_repeat(repeat).map_err(enc_err)?;
        }
        Ok(Encoder { inner, out })
    }

    /// Adds a frame (RGB or RGBA) shown for `delay_ms` (GIF counts in hundredths of a second).
    pub(crate) fn add(&mut self, p: &Pixels, delay_ms: u32) -> Result<(), TransformError> {
        if p.width > u16::MAX as u32 || p.height > u16::MAX as u32 {
            return Err(TransformError::Encode(format!(
                "{}x{} is too large for GIF",
                p.width, p.height
            )));
        }
        let rgba = image::RgbaImage::from_raw(p.width, p.height, rgba(p))
            .ok_or_else(|| TransformError::Encode("frame buffer size".into()))?;
        let delay = image::Delay::from_numer_denom_ms(delay_ms, 1);
        self.inner
            .encode_frame(image::Frame::from_parts(rgba, 0, 0, delay))
            .map_err(enc_err)
    }

    pub(crate) fn finish(self) -> Result<Vec<u8>, TransformError> {
        let Encoder { inner, out } = self;
        // dropping the encoder writes the trailer (if a frame was written)
        drop(inner);
        let out = out.0.take();
        if out.last() != Some(&0x3B) {
            return Err(TransformError::Encode("GIF without frames".into()));
        }
        Ok(out)
    }
}

/// A still image as a one-frame GIF.
pub(crate) fn encode(p: &Pixels) -> Result<Vec<u8>, TransformError> {
    let mut enc = Encoder::new(1)?;
    enc.add(p, 0)?;
    enc.finish()
}

/// The pixels as RGBA.
fn rgba(p: &Pixels) -> Vec<u8> {
    if p.channels == 4 {
        return p.data.clone();
    }
    let mut out = Vec::with_capacity(p.width as usize * p.height as usize * 4);
    for px in p.data.chunks_exact(3) {
        out.extend_from_slice(&[px[0], px[1], px[2], 255]);
    }
    out
}

/// Test input: a GIF of `frames` 1x1 frames on a `w` x `h` screen, with a NETSCAPE2.0
/// `repeat`.
#[cfg(test)]
pub(crate) fn crafted(w: u16, h: u16, frames: u32, repeat: Option<u16>) -> Vec<u8> {
    let mut b = b"GIF89a".to_vec();
    b.extend_from_slice(&w.to_le_bytes());
    b.extend_from_slice(&h.to_le_bytes());
    // global colour table of 2 entries
    b.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 255, 255, 255]);
    if let Some(r) = repeat {
        b.extend_from_slice(b"\x21\xFF\x0bNETSCAPE2.0\x03\x01");
        b.extend_from_slice(&r.to_le_bytes());
        b.push(0);
    }
    for _ in 0..frames {
        // graphic control: 100 ms
        b.extend_from_slice(&[0x21, 0xF9, 4, 0, 10, 0, 0, 0]);
        // a 1x1 frame at 0,0: LZW code size 2, clear, index 0, end
        b.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 0x01, 0]);
    }
    b.push(0x3B);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_frames_and_plays() {
        let h = |b: &[u8]| header(b).unwrap();
        assert_eq!(
            h(&crafted(4, 4, 3, Some(0))),
            AnimHeader {
                frames: 3,
                plays: 0
            }
        );
        assert_eq!(h(&crafted(4, 4, 2, Some(2))).plays, 3);
        assert_eq!(h(&crafted(4, 4, 1, None)).plays, 1);
        let f = crate::image::tests::fixture("seeding_pan_anim_240.gif");
        assert_eq!(
            h(&f),
            AnimHeader {
                frames: 4,
                plays: 0
            }
        );
    }

    #[test]
    fn ten_thousand_frames_are_counted_without_decoding() {
        let b = crafted(1000, 1000, 10_000, Some(0));
        assert!(b.len() < 300_000);
        assert_eq!(header(&b).unwrap().frames, 10_000);
    }

    #[test]
    fn cut_or_bad_blocks_are_refused() {
        let b = crafted(4, 4, 3, Some(0));
        for n in [5, 12, 20, b.len() - 1] {
            assert_eq!(header(&b[..n]), Err(TransformError::Truncated), "{n}");
        }
        let mut bad = b.clone();
        let at = bad.len() - 1;
        bad[at] = 0x99;
        assert!(matches!(header(&bad), Err(TransformError::Corrupt(_))));
    }

    #[test]
    fn frames_decode_one_at_a_time_and_encode_back() {
        let b = crafted(4, 3, 3, Some(1));
        let mut enc = Encoder::new(2).unwrap();
        let mut n = 0;
        for f in frames(&b, 4, 3).unwrap() {
            let (p, delay) = f.unwrap();
            assert_eq!((p.width, p.height, p.channels, delay), (4, 3, 4, 100));
            enc.add(&p, delay).unwrap();
            n += 1;
        }
        assert_eq!(n, 3);
        let out = enc.finish().unwrap();
        assert_eq!(
            header(&out).unwrap(),
            AnimHeader {
                frames: 3,
                plays: 2
            }
        );
    }
}
