//! Colour management: decoded pixels in the colour space their embedded ICC profile names are
//! converted to sRGB (moxcms, pure Rust) before the resize, so the resize mixes sRGB values and
//! the output, which carries no profile, shows as the source does in a colour-managed viewer.
//!
//! Built conversions are kept per profile (hash of its bytes): the same few profiles (a
//! camera's, a phone's Display P3, Adobe RGB) repeat. A profile that maps colours onto
//! themselves (sRGB under any name) or does not parse is remembered as "nothing to do", so such
//! a source pays a hash of its profile, nothing more; one without a profile pays nothing.

use crate::image::pixels::Pixels;
use moxcms::{ColorProfile, DataColorSpace, Layout, TransformOptions};
use once_cell::sync::Lazy;
use parking_lot::Mutex;
use std::num::NonZeroUsize;
use std::sync::Arc;

type Executor = Arc<moxcms::Transform8BitExecutor>;

/// Conversions remembered at once (a matrix/TRC one holds a few KB, a CMYK LUT one up to a
/// few hundred).
const CACHED: usize = 64;

/// Rows converted per call: the output goes through a buffer this tall, not a second image.
const ROWS: usize = 64;

/// What a profile asks of decoded pixels.
enum Conversion {
    /// sRGB already, not a profile, or a colour space these pixels do not come in.
    Nothing,
    /// An RGB profile: 3 or 4 (alpha untouched) channels to sRGB.
    Rgb(Executor),
    /// A grey profile: the grey level (decoded as R = G = B) to an sRGB grey, by table.
    Grey(Box<[u8; 256]>),
    /// A CMYK profile (LUT-based): CMYK samples (0 = no ink) to sRGB.
    Cmyk(Executor),
}

/// (profile hash, channels) -> conversion.
type Cache = lru::LruCache<(u64, u8), Arc<Conversion>>;

static CONVERSIONS: Lazy<Mutex<Cache>> = Lazy::new(|| {
    Mutex::new(lru::LruCache::new(
        NonZeroUsize::new(CACHED).unwrap_or(NonZeroUsize::MIN),
    ))
});

fn hash(icc: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // fixed keys: the same profile hashes alike in every thread and run
    let mut h = ahash::RandomState::with_seeds(1, 2, 3, 4).build_hasher();
    h.write(icc);
    h.finish()
}

/// Converts RGB or RGBA `pixels` from the colour space of `icc` to sRGB, in place. A profile
/// that does not parse is ignored, as browsers do.
pub fn to_srgb(pixels: &mut Pixels, icc: &[u8]) {
    match &*conversion(icc, pixels.channels) {
        Conversion::Nothing => {}
        Conversion::Rgb(t) => convert_rows(pixels, t),
        Conversion::Grey(table) => {
            for px in pixels.data.chunks_exact_mut(pixels.channels as usize) {
                let v = table[px[0] as usize];
                px[..3].fill(v);
            }
        }
        // RGB pixels are not what a CMYK profile describes: left as decoded
        Conversion::Cmyk(_) => {}
    }
}

/// Whether `icc` is an RGB profile other than sRGB: what `color_profile: keep` leaves
/// unapplied and embeds in the output (a grey or CMYK one cannot describe RGB output).
pub fn is_wide_rgb(icc: &[u8]) -> bool {
    matches!(*conversion(icc, 3), Conversion::Rgb(_))
}

/// Whether `icc` is a CMYK profile that converts: a CMYK JPEG is then decoded to its CMYK
/// samples for [`cmyk_to_srgb`].
pub fn is_cmyk(icc: &[u8]) -> bool {
    matches!(*conversion(icc, 4), Conversion::Cmyk(_))
}

/// CMYK samples (4 channels, 0 = no ink) through the CMYK profile `icc` to sRGB (3 channels);
/// `None` when the profile is not one [`is_cmyk`] accepts or the transform fails.
pub fn cmyk_to_srgb(cmyk: &Pixels, icc: &[u8]) -> Option<Pixels> {
    let Conversion::Cmyk(t) = &*conversion(icc, 4) else {
        return None;
    };
    let mut data = vec![0u8; cmyk.width as usize * cmyk.height as usize * 3];
    t.transform(&cmyk.data, &mut data).ok()?;
    Some(Pixels {
        width: cmyk.width,
        height: cmyk.height,
        channels: 3,
        data,
    })
}

/// The conversion of `icc` for pixels of `channels`, built once.
fn conversion(icc: &[u8], channels: u8) -> Arc<Conversion> {
    let key = (hash(icc), channels);
    let cached = CONVERSIONS.lock().get(&key).cloned();
    cached.unwrap_or_else(|| {
        // built outside the lock: two threads may build the same one, never wait on each other
        let built = Arc::new(build(icc, channels));
        CONVERSIONS.lock().put(key, built.clone());
        built
    })
}

fn convert_rows(pixels: &mut Pixels, t: &Executor) {
    let row = pixels.width as usize * pixels.channels as usize;
    if row == 0 {
        return;
    }
    let mut out = vec![0u8; row * ROWS.min(pixels.height as usize)];
    for rows in pixels.data.chunks_mut(row * ROWS) {
        let dst = &mut out[..rows.len()];
        if t.transform(rows, dst).is_err() {
            return;
        }
        rows.copy_from_slice(dst);
    }
}

fn build(icc: &[u8], channels: u8) -> Conversion {
    let Ok(src) = ColorProfile::new_from_slice(icc) else {
        return Conversion::Nothing;
    };
    let srgb = ColorProfile::new_srgb();
    let options = TransformOptions::default();
    match src.color_space {
        DataColorSpace::Rgb => {
            let layout = if channels == 4 {
                Layout::Rgba
            } else {
                Layout::Rgb
            };
            match src.create_transform_8bit(layout, &srgb, layout, options) {
                Ok(t) if !is_identity(&t, layout) => Conversion::Rgb(t),
                _ => Conversion::Nothing,
            }
        }
        DataColorSpace::Gray => {
            let Ok(t) = src.create_transform_8bit(Layout::Gray, &srgb, Layout::Rgb, options) else {
                return Conversion::Nothing;
            };
            let ramp: Vec<u8> = (0..=255).collect();
            let mut rgb = vec![0u8; 256 * 3];
            if t.transform(&ramp, &mut rgb).is_err() {
                return Conversion::Nothing;
            }
            let mut table = Box::new([0u8; 256]);
            for (v, px) in table.iter_mut().zip(rgb.chunks_exact(3)) {
                // a grey profile maps onto the neutral axis: any channel is the level
                *v = px[1];
            }
            if table
                .iter()
                .enumerate()
                .all(|(i, &v)| v.abs_diff(i as u8) <= 1)
            {
                Conversion::Nothing
            } else {
                Conversion::Grey(table)
            }
        }
        // CMYK samples come 4 to a pixel (moxcms takes them in the RGBA layout)
        DataColorSpace::Cmyk if channels == 4 => {
            match src.create_transform_8bit(Layout::Rgba, &srgb, Layout::Rgb, options) {
                Ok(t) => Conversion::Cmyk(t),
                Err(_) => Conversion::Nothing,
            }
        }
        _ => Conversion::Nothing,
    }
}

/// Whether `t` leaves every colour of a 6x6x6 cube (and so, for the smooth curves and matrices
/// of real profiles, every colour) within one level: sRGB under any name or version.
fn is_identity(t: &Executor, layout: Layout) -> bool {
    let levels = [0u8, 51, 102, 153, 204, 255];
    let mut cube = Vec::new();
    for r in levels {
        for g in levels {
            for b in levels {
                cube.extend_from_slice(&[r, g, b]);
                if layout == Layout::Rgba {
                    cube.push(255);
                }
            }
        }
    }
    let mut out = vec![0u8; cube.len()];
    t.transform(&cube, &mut out).is_ok() && cube.iter().zip(&out).all(|(a, b)| a.abs_diff(*b) <= 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(data: Vec<u8>, channels: u8) -> Pixels {
        Pixels {
            width: (data.len() / channels as usize) as u32,
            height: 1,
            channels,
            data,
        }
    }

    #[test]
    fn srgb_and_broken_profiles_leave_pixels() {
        let srgb = ColorProfile::new_srgb().encode().unwrap();
        let mut p = px(vec![10, 200, 30, 250, 5, 128], 3);
        to_srgb(&mut p, &srgb);
        assert_eq!(p.data, [10, 200, 30, 250, 5, 128]);
        to_srgb(&mut p, b"not a profile");
        assert_eq!(p.data, [10, 200, 30, 250, 5, 128]);
    }

    #[test]
    fn a_wide_gamut_profile_converts_and_keeps_alpha() {
        let p3 = ColorProfile::new_display_p3().encode().unwrap();
        let mut p = px(vec![0, 255, 0, 7, 128, 128, 128, 200], 4);
        to_srgb(&mut p, &p3);
        // P3's green lies outside sRGB: clipped to full green with red at zero
        assert_eq!(
            (p.data[0], p.data[1], p.data[3], p.data[7]),
            (0, 255, 7, 200)
        );
        // neutral stays neutral
        assert!(
            p.data[4..7].iter().all(|v| v.abs_diff(128) <= 1),
            "{:?}",
            p.data
        );
    }

    #[test]
    fn many_rows_convert_alike() {
        let p3 = ColorProfile::new_display_p3().encode().unwrap();
        let mut one = px(vec![200, 100, 50], 3);
        to_srgb(&mut one, &p3);
        let mut tall = Pixels {
            width: 3,
            height: 150,
            channels: 3,
            data: [200, 100, 50].repeat(450),
        };
        to_srgb(&mut tall, &p3);
        assert!(tall.data.chunks(3).all(|c| c == &one.data[..]));
    }
}
