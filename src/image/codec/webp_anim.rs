//! Animated WebP: the frame count (ANMF chunks) and loop count (ANIM) read from the RIFF chunk
//! list (no frame decoded, nothing allocated), the frames decoded one at a time (composed onto
//! the canvas by the `image` crate), and libwebp's `WebPAnimEncoder` fed one frame at a time.

use std::io::Cursor;

use libwebp_sys as sys;

use crate::image::codec::bytes::{le16, le32};
use crate::image::codec::webp::WEBP_METHOD;
use crate::image::codec::{image_crate, AnimHeader};
use crate::image::error::TransformError;
use crate::image::pixels::Pixels;

/// The VP8X flag of an animation.
const ANIMATION_FLAG: u8 = 0x02;

/// `None` for a still WebP; else how many frames (ANMF chunks) and how often it plays (the
/// ANIM chunk's loop count: 0 = forever). The chunk list must be whole.
pub(crate) fn header(b: &[u8]) -> Result<Option<AnimHeader>, TransformError> {
    let t = TransformError::Truncated;
    if b.get(12..16) != Some(b"VP8X") || b.get(20).ok_or(t.clone())? & ANIMATION_FLAG == 0 {
        return Ok(None);
    }
    let riff_end = 8 + le32(b, 4).ok_or(t.clone())? as usize;
    let end = riff_end.min(b.len());
    let (mut frames, mut plays) = (0u32, 0u32);
    let mut i = 12;
    while i < end {
        let fourcc = b.get(i..i + 4).ok_or(t.clone())?;
        let size = le32(b, i + 4).ok_or(t.clone())? as usize;
        match fourcc {
            b"ANMF" => frames = frames.saturating_add(1),
            b"ANIM" => plays = le16(b, i + 12).ok_or(t.clone())?,
            _ => {}
        }
        // chunks are padded to an even size
        i = i
            .saturating_add(8)
            .saturating_add(size)
            .saturating_add(size & 1);
    }
    if i > riff_end || riff_end > b.len() {
        return Err(t);
    }
    Ok(Some(AnimHeader { frames, plays }))
}

/// The frames of an animated WebP whose canvas is `w` x `h`, decoded one at a time as RGBA
/// pixels of the whole canvas, each with its duration in milliseconds.
pub(crate) fn frames(
    b: &[u8],
    w: u32,
    h: u32,
) -> Result<impl Iterator<Item = Result<(Pixels, u32), TransformError>> + '_, TransformError> {
    let dec =
        image::codecs::webp::WebPDecoder::new(Cursor::new(b)).map_err(image_crate::error(w, h))?;
    image_crate::frames(dec, w, h)
}

/// Animated WebP output through libwebp's `WebPAnimEncoder`, one frame at a time: it keeps
/// the previous canvas and the encoded frames, never the frames given.
pub(crate) struct Encoder {
    enc: *mut sys::WebPAnimEncoder,
    config: sys::WebPConfig,
    width: u32,
    height: u32,
    /// When the next frame starts, in milliseconds.
    timestamp: i32,
}

fn failed(what: &str) -> TransformError {
    TransformError::Encode(format!("animated WebP: {what}"))
}

impl Encoder {
    /// A `width` x `height` animation that plays `plays` times (0 = forever), lossy at
    /// `quality`.
    pub(crate) fn new(
        width: u32,
        height: u32,
        plays: u32,
        quality: u8,
    ) -> Result<Encoder, TransformError> {
        if width > 16383 || height > 16383 {
            return Err(TransformError::Encode(format!(
                "{width}x{height} is too large for WebP"
            )));
        }
        let mut config = sys::WebPConfig::new().map_err(|_| failed("WebPConfig"))?;
        config.lossless = 0;
        config.quality = quality as f32;
        config.method = WEBP_METHOD;
        // single-threaded: the pool gives the parallelism
        config.thread_level = 0;
        let abi = sys::WebPGetMuxABIVersion();
        let mut opts = std::mem::MaybeUninit::<sys::WebPAnimEncoderOptions>::uninit();
        // SAFETY: libwebp initialises the options it is given; checked before use.
        let mut opts = unsafe {
            if sys::WebPAnimEncoderOptionsInitInternal(opts.as_mut_ptr(), abi) == 0 {
                return Err(failed("options"));
            }
            opts.assume_init()
        };
        opts.anim_params.loop_count = plays.min(u16::MAX as u32) as i32;
        // SAFETY: the options are initialised; the encoder is freed in `drop`.
        let enc = unsafe {
            if sys::WebPValidateConfig(&config) == 0 {
                return Err(failed("config"));
            }
            sys::WebPAnimEncoderNewInternal(width as i32, height as i32, &opts, abi)
        };
        if enc.is_null() {
            return Err(failed("WebPAnimEncoderNew"));
        }
        Ok(Encoder {
            enc,
            config,
            width,
            height,
            timestamp: 0,
        })
    }

    /// Adds a frame of the animation's size (RGB or RGBA) shown for `delay_ms`.
    pub(crate) fn add(&mut self, p: &Pixels, delay_ms: u32) -> Result<(), TransformError> {
        let expected = p.width as usize * p.height as usize * p.channels as usize;
        if (p.width, p.height) != (self.width, self.height) || p.data.len() != expected {
            return Err(failed("frame size"));
        }
        let mut pic = sys::WebPPicture::new().map_err(|_| failed("WebPPicture"))?;
        pic.use_argb = 1;
        pic.width = p.width as i32;
        pic.height = p.height as i32;
        let stride = (p.width * p.channels as u32) as i32;
        // SAFETY: `p.data` holds `height` rows of `stride` bytes (checked above); the picture
        // copies them into its own buffer, freed below whatever the outcome.
        let ok = unsafe {
            let imported = match p.channels {
                4 => sys::WebPPictureImportRGBA(&mut pic, p.data.as_ptr(), stride),
                _ => sys::WebPPictureImportRGB(&mut pic, p.data.as_ptr(), stride),
            };
            let ok = imported != 0
                && sys::WebPAnimEncoderAdd(self.enc, &mut pic, self.timestamp, &self.config) != 0;
            sys::WebPPictureFree(&mut pic);
            ok
        };
        if !ok {
            return Err(self.error("adding a frame"));
        }
        self.timestamp = self
            .timestamp
            .saturating_add(delay_ms.min(i32::MAX as u32) as i32);
        Ok(())
    }

    /// The encoded animation (the last frame lasts until the time its delay ends).
    pub(crate) fn finish(self) -> Result<Vec<u8>, TransformError> {
        let mut data = sys::WebPData::default();
        // SAFETY: a null frame ends the animation at `timestamp`; the assembled data is
        // libwebp's, copied out and freed here.
        unsafe {
            if sys::WebPAnimEncoderAdd(
                self.enc,
                std::ptr::null_mut(),
                self.timestamp,
                std::ptr::null(),
            ) == 0
                || sys::WebPAnimEncoderAssemble(self.enc, &mut data) == 0
            {
                return Err(self.error("assembling"));
            }
            let out = std::slice::from_raw_parts(data.bytes, data.size).to_vec();
            sys::WebPDataClear(&mut data);
            Ok(out)
        }
    }

    fn error(&self, what: &str) -> TransformError {
        // SAFETY: the encoder is alive; libwebp returns a static or encoder-owned C string.
        let msg = unsafe {
            let p = sys::WebPAnimEncoderGetError(self.enc);
            if p.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        failed(&format!("{what}: {msg}"))
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: created non-null in `new`, deleted once here.
        unsafe { sys::WebPAnimEncoderDelete(self.enc) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(fourcc: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut c = fourcc.to_vec();
        c.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        c.extend_from_slice(payload);
        if payload.len() % 2 == 1 {
            c.push(0);
        }
        c
    }

    /// An animated WebP's chunk list with `frames` empty ANMF chunks on a `w` x `h` canvas.
    pub(crate) fn crafted(w: u32, h: u32, frames: u32, loops: u16) -> Vec<u8> {
        let mut vp8x = vec![ANIMATION_FLAG | 0x10, 0, 0, 0];
        vp8x.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
        vp8x.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
        let mut body = b"WEBP".to_vec();
        body.extend(chunk(b"VP8X", &vp8x));
        let mut anim = vec![0, 0, 0, 0];
        anim.extend_from_slice(&loops.to_le_bytes());
        body.extend(chunk(b"ANIM", &anim));
        for _ in 0..frames {
            body.extend(chunk(b"ANMF", &[0; 17]));
        }
        let mut b = b"RIFF".to_vec();
        b.extend_from_slice(&(body.len() as u32).to_le_bytes());
        b.extend(body);
        b
    }

    #[test]
    fn counts_anmf_chunks() {
        let b = crafted(100, 50, 7, 3);
        assert_eq!(
            header(&b).unwrap(),
            Some(AnimHeader {
                frames: 7,
                plays: 3
            })
        );
        assert_eq!(
            header(&crafted(1, 1, 10_000, 0)).unwrap().unwrap().frames,
            10_000
        );
        assert_eq!(header(&b[..b.len() - 3]), Err(TransformError::Truncated));
        let still = crate::image::tests::fixture("aitzgorri_480.webp");
        assert_eq!(header(&still).unwrap(), None);
    }

    #[test]
    fn encodes_frames_one_at_a_time() {
        let mut enc = Encoder::new(8, 4, 2, 80).unwrap();
        for (i, delay) in [40u32, 80, 120].into_iter().enumerate() {
            let p = Pixels {
                width: 8,
                height: 4,
                channels: 4,
                data: vec![(i * 100) as u8; 8 * 4 * 4],
            };
            enc.add(&p, delay).unwrap();
        }
        let out = enc.finish().unwrap();
        let h = header(&out).unwrap().unwrap();
        assert_eq!((h.frames, h.plays), (3, 2));
        let delays: Vec<u32> = frames(&out, 8, 4).unwrap().map(|f| f.unwrap().1).collect();
        assert_eq!(delays, [40, 80, 120]);
    }
}
