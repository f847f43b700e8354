//! WebP: header probe (VP8, VP8L, VP8X), decode (through the `image` crate) and lossy encode
//! (libwebp; the `image` crate encodes lossless only).

use crate::image::codec::bytes::{le16, le24, le32};
use crate::image::codec::{enc_err, image_crate, Layout};
use crate::image::error::TransformError;
use crate::image::pixels::Pixels;

/// libwebp `method` (0 fast .. 6 small): 2 costs about half of the default 4 on this machine
/// for a few percent more bytes.
pub const WEBP_METHOD: i32 = 2;

/// Width, height and layout from the first chunk.
pub(crate) fn probe(b: &[u8]) -> Result<(u32, u32, u8, Layout), TransformError> {
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
            let lossy = Layout::Webp {
                lossless: false,
                alpha: false,
            };
            Ok((w, h, 1, lossy))
        }
        b"VP8L" => {
            if *b.get(20).ok_or(t.clone())? != 0x2f {
                return Err(TransformError::Corrupt("bad VP8L signature".into()));
            }
            let bits = le32(b, 21).ok_or(t)?;
            let layout = Layout::Webp {
                lossless: true,
                alpha: (bits >> 28) & 1 == 1,
            };
            Ok(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1, 1, layout))
        }
        b"VP8X" => {
            let w = le24(b, 24).ok_or(t.clone())? + 1;
            let h = le24(b, 27).ok_or(t)? + 1;
            // The extended format may hold either bitstream (or frames): assume lossless.
            let layout = Layout::Webp {
                lossless: true,
                alpha: b.get(20).is_some_and(|flags| flags & 0x10 != 0),
            };
            Ok((w, h, 1, layout))
        }
        _ => Err(TransformError::Corrupt("unknown WebP chunk".into())),
    }
}

/// Decodes a WebP of the probed `w` x `h`; it must hold its full RIFF length.
pub(crate) fn decode(b: &[u8], w: u32, h: u32) -> Result<Pixels, TransformError> {
    let complete = le32(b, 4).is_some_and(|n| b.len() as u64 >= 8 + n as u64);
    if !complete {
        return Err(TransformError::Truncated);
    }
    image_crate::decode(b, image::ImageFormat::WebP, w, h)
}

/// Encodes RGB or RGBA as lossy WebP, single-threaded (the pool gives the parallelism).
pub(crate) fn encode(p: &Pixels, quality: u8) -> Result<Vec<u8>, TransformError> {
    if p.width > 16383 || p.height > 16383 {
        return Err(TransformError::Encode(format!(
            "{}x{} is too large for WebP",
            p.width, p.height
        )));
    }
    let mut config =
        webp::WebPConfig::new().map_err(|_| TransformError::Encode("WebPConfig".into()))?;
    config.lossless = 0;
    config.quality = quality as f32;
    config.method = WEBP_METHOD;
    config.thread_level = 0;
    let enc = if p.channels == 4 {
        webp::Encoder::from_rgba(&p.data, p.width, p.height)
    } else {
        webp::Encoder::from_rgb(&p.data, p.width, p.height)
    };
    let mem = enc
        .encode_advanced(&config)
        .map_err(|e| enc_err(format!("{e:?}")))?;
    Ok(mem.to_vec())
}
