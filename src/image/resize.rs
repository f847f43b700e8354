//! Output geometry per fit mode (pure functions), EXIF orientation, SIMD resize, pad/flatten.

use fast_image_resize as fr;

use super::decode::Pixels;
use super::error::TransformError;
use super::params::{Fit, Gravity};

/// A rectangle in source pixels (fractional, as fast_image_resize accepts).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// What to do with an upright `src_w` x `src_h` image: take `crop`, resize it to
/// `scaled_w` x `scaled_h`, place it at (`offset_x`, `offset_y`) on a `canvas_w` x `canvas_h`
/// canvas (the canvas equals the scaled image except for `pad`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    pub crop: Rect,
    pub scaled_w: u32,
    pub scaled_h: u32,
    pub canvas_w: u32,
    pub canvas_h: u32,
    pub offset_x: u32,
    pub offset_y: u32,
}

impl Plan {
    pub fn is_padded(&self) -> bool {
        self.canvas_w != self.scaled_w || self.canvas_h != self.scaled_h
    }
}

fn dim(v: f64) -> u32 {
    v.round().clamp(1.0, u32::MAX as f64) as u32
}

/// Scaled size fitting inside the given bounds (one bound alone keeps the aspect ratio).
fn fit_inside(sw: u32, sh: u32, tw: Option<u32>, th: Option<u32>, enlarge: bool) -> (u32, u32) {
    let (fw, fh) = (sw as f64, sh as f64);
    let s = match (tw, th) {
        (Some(w), Some(h)) => (w as f64 / fw).min(h as f64 / fh),
        (Some(w), None) => w as f64 / fw,
        (None, Some(h)) => h as f64 / fh,
        (None, None) => 1.0,
    };
    if !enlarge && s >= 1.0 {
        return (sw, sh);
    }
    let w = dim(fw * s).min(tw.unwrap_or(u32::MAX));
    let h = dim(fh * s).min(th.unwrap_or(u32::MAX));
    (w, h)
}

/// Computes the geometry for an upright source of `sw` x `sh` and target bounds `tw` x `th`
/// (already multiplied by dpr).
pub fn plan(
    sw: u32,
    sh: u32,
    tw: Option<u32>,
    th: Option<u32>,
    fit: Fit,
    gravity: Gravity,
) -> Plan {
    let sw = sw.max(1);
    let sh = sh.max(1);
    let full = Rect {
        x: 0.0,
        y: 0.0,
        w: sw as f64,
        h: sh as f64,
    };
    let simple = |(w, h): (u32, u32)| Plan {
        crop: full,
        scaled_w: w,
        scaled_h: h,
        canvas_w: w,
        canvas_h: h,
        offset_x: 0,
        offset_y: 0,
    };
    let (gx, gy) = gravity.weights();
    match (fit, tw, th) {
        (_, None, None) => simple((sw, sh)),
        (Fit::ScaleDown, ..) => simple(fit_inside(sw, sh, tw, th, false)),
        (Fit::Contain, ..) => simple(fit_inside(sw, sh, tw, th, true)),
        (Fit::Cover, Some(w), Some(h)) | (Fit::Crop, Some(w), Some(h)) => {
            let s = (w as f64 / sw as f64).max(h as f64 / sh as f64);
            if fit == Fit::Crop && s > 1.0 {
                // never enlarge: crop to at most w x h without scaling
                let (cw, ch) = (w.min(sw), h.min(sh));
                let x = ((sw - cw) as f64 * gx).round();
                let y = ((sh - ch) as f64 * gy).round();
                return Plan {
                    crop: Rect {
                        x,
                        y,
                        w: cw as f64,
                        h: ch as f64,
                    },
                    scaled_w: cw,
                    scaled_h: ch,
                    canvas_w: cw,
                    canvas_h: ch,
                    offset_x: 0,
                    offset_y: 0,
                };
            }
            let cw = (w as f64 / s).min(sw as f64);
            let ch = (h as f64 / s).min(sh as f64);
            Plan {
                crop: Rect {
                    x: (sw as f64 - cw) * gx,
                    y: (sh as f64 - ch) * gy,
                    w: cw,
                    h: ch,
                },
                scaled_w: w,
                scaled_h: h,
                canvas_w: w,
                canvas_h: h,
                offset_x: 0,
                offset_y: 0,
            }
        }
        (Fit::Cover, ..) => simple(fit_inside(sw, sh, tw, th, true)),
        (Fit::Crop, ..) => simple(fit_inside(sw, sh, tw, th, false)),
        (Fit::Pad, ..) => {
            let (w, h) = fit_inside(sw, sh, tw, th, true);
            let cw = tw.unwrap_or(w).max(w);
            let ch = th.unwrap_or(h).max(h);
            Plan {
                crop: full,
                scaled_w: w,
                scaled_h: h,
                canvas_w: cw,
                canvas_h: ch,
                offset_x: ((cw - w) as f64 * gx).round() as u32,
                offset_y: ((ch - h) as f64 * gy).round() as u32,
            }
        }
    }
}

/// Maps a rectangle of the upright image to the stored image (`stored_w` x `stored_h`) for an
/// EXIF orientation.
pub fn upright_rect_to_stored(r: Rect, orientation: u8, stored_w: f64, stored_h: f64) -> Rect {
    let map = |x: f64, y: f64| -> (f64, f64) {
        let (w, h) = (stored_w, stored_h);
        match orientation {
            2 => (w - x, y),
            3 => (w - x, h - y),
            4 => (x, h - y),
            5 => (y, x),
            6 => (y, h - x),
            7 => (w - y, h - x),
            8 => (w - y, x),
            _ => (x, y),
        }
    };
    let (ax, ay) = map(r.x, r.y);
    let (bx, by) = map(r.x + r.w, r.y + r.h);
    Rect {
        x: ax.min(bx),
        y: ay.min(by),
        w: (ax - bx).abs(),
        h: (ay - by).abs(),
    }
}

/// Turns stored pixels upright for EXIF orientation 1-8 (1 and unknown values: unchanged).
pub fn apply_orientation(p: Pixels, orientation: u8) -> Pixels {
    if !(2..=8).contains(&orientation) {
        return p;
    }
    let (w, h, c) = (p.width as usize, p.height as usize, p.channels as usize);
    let (ow, oh) = if orientation >= 5 { (h, w) } else { (w, h) };
    let mut out = vec![0u8; p.data.len()];
    for y in 0..oh {
        for x in 0..ow {
            // upright (x, y) comes from stored (sx, sy)
            let (sx, sy) = match orientation {
                2 => (w - 1 - x, y),
                3 => (w - 1 - x, h - 1 - y),
                4 => (x, h - 1 - y),
                5 => (y, x),
                6 => (y, h - 1 - x),
                7 => (w - 1 - y, h - 1 - x),
                _ => (w - 1 - y, x),
            };
            let s = (sy * w + sx) * c;
            let d = (y * ow + x) * c;
            out[d..d + c].copy_from_slice(&p.data[s..s + c]);
        }
    }
    Pixels {
        width: ow as u32,
        height: oh as u32,
        channels: p.channels,
        data: out,
    }
}

/// Resizes the `crop` area of `p` to `dw` x `dh` (Lanczos3; RGBA is premultiplied during the
/// resize so transparent pixels do not bleed their colour).
pub fn resize(p: Pixels, crop: Rect, dw: u32, dh: u32) -> Result<Pixels, TransformError> {
    let whole =
        crop.x == 0.0 && crop.y == 0.0 && crop.w == p.width as f64 && crop.h == p.height as f64;
    if whole && dw == p.width && dh == p.height {
        return Ok(p);
    }
    let pt = if p.channels == 4 {
        fr::PixelType::U8x4
    } else {
        fr::PixelType::U8x3
    };
    let err = |e: &dyn std::fmt::Display| TransformError::Corrupt(format!("resize: {e}"));
    let src = fr::images::ImageRef::new(p.width, p.height, &p.data, pt).map_err(|e| err(&e))?;
    let mut dst = fr::images::Image::new(dw, dh, pt);
    // clamp the crop into the image (float error after DCT scaling)
    let x = crop.x.clamp(0.0, p.width as f64 - 1.0);
    let y = crop.y.clamp(0.0, p.height as f64 - 1.0);
    let w = crop.w.min(p.width as f64 - x).max(1.0);
    let h = crop.h.min(p.height as f64 - y).max(1.0);
    let opts = fr::ResizeOptions::new()
        .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3))
        .crop(x, y, w, h);
    let mut r = fr::Resizer::new();
    r.resize(&src, &mut dst, &opts).map_err(|e| err(&e))?;
    Ok(Pixels {
        width: dw,
        height: dh,
        channels: p.channels,
        data: dst.into_vec(),
    })
}

/// Places `p` at (`ox`, `oy`) on a canvas. `bg = None`: transparent canvas (RGBA); `Some`:
/// opaque canvas and `p`'s alpha (if any) is composited onto it (RGB).
pub fn pad(p: &Pixels, cw: u32, ch: u32, ox: u32, oy: u32, bg: Option<[u8; 3]>) -> Pixels {
    let (cwu, chu) = (cw as usize, ch as usize);
    let oc: usize = if bg.is_some() { 3 } else { 4 };
    let mut data = vec![0u8; cwu * chu * oc];
    if let Some(c) = bg {
        for px in data.chunks_exact_mut(3) {
            px.copy_from_slice(&c);
        }
    }
    let ic = p.channels as usize;
    for y in 0..p.height as usize {
        let ty = y + oy as usize;
        if ty >= chu {
            break;
        }
        for x in 0..p.width as usize {
            let tx = x + ox as usize;
            if tx >= cwu {
                break;
            }
            let s = &p.data[(y * p.width as usize + x) * ic..][..ic];
            let d = &mut data[(ty * cwu + tx) * oc..][..oc];
            match (ic, bg) {
                (4, Some(c)) => d.copy_from_slice(&blend(s, c)),
                (4, None) => d.copy_from_slice(s),
                (_, Some(_)) => d.copy_from_slice(&s[..3]),
                (_, None) => {
                    d[..3].copy_from_slice(&s[..3]);
                    d[3] = 255;
                }
            }
        }
    }
    Pixels {
        width: cw,
        height: ch,
        channels: oc as u8,
        data,
    }
}

fn blend(s: &[u8], bg: [u8; 3]) -> [u8; 3] {
    let a = s[3] as u32;
    let mix = |f: u8, b: u8| ((f as u32 * a + b as u32 * (255 - a) + 127) / 255) as u8;
    [mix(s[0], bg[0]), mix(s[1], bg[1]), mix(s[2], bg[2])]
}

/// RGBA -> RGB composited onto `bg`; RGB unchanged.
pub fn flatten(p: Pixels, bg: [u8; 3]) -> Pixels {
    if p.channels != 4 {
        return p;
    }
    let mut data = Vec::with_capacity(p.width as usize * p.height as usize * 3);
    for s in p.data.chunks_exact(4) {
        data.extend_from_slice(&blend(s, bg));
    }
    Pixels {
        width: p.width,
        height: p.height,
        channels: 3,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sz(p: &Plan) -> (u32, u32, u32, u32) {
        (p.scaled_w, p.scaled_h, p.canvas_w, p.canvas_h)
    }

    #[test]
    fn scale_down() {
        let p = plan(4000, 2000, Some(400), None, Fit::ScaleDown, Gravity::Center);
        assert_eq!(sz(&p), (400, 200, 400, 200));
        let p = plan(4000, 2000, None, Some(100), Fit::ScaleDown, Gravity::Center);
        assert_eq!(sz(&p), (200, 100, 200, 100));
        let p = plan(
            4000,
            2000,
            Some(400),
            Some(400),
            Fit::ScaleDown,
            Gravity::Center,
        );
        assert_eq!(sz(&p), (400, 200, 400, 200));
        // never enlarge
        let p = plan(
            300,
            200,
            Some(600),
            Some(600),
            Fit::ScaleDown,
            Gravity::Center,
        );
        assert_eq!(sz(&p), (300, 200, 300, 200));
        let p = plan(300, 200, None, None, Fit::Cover, Gravity::Center);
        assert_eq!(sz(&p), (300, 200, 300, 200));
        // extreme aspect ratios never give 0
        let p = plan(10000, 1, Some(100), None, Fit::ScaleDown, Gravity::Center);
        assert_eq!(sz(&p), (100, 1, 100, 1));
    }

    #[test]
    fn contain_enlarges() {
        let p = plan(
            300,
            200,
            Some(600),
            Some(600),
            Fit::Contain,
            Gravity::Center,
        );
        assert_eq!(sz(&p), (600, 400, 600, 400));
    }

    #[test]
    fn cover_crops_by_gravity() {
        let p = plan(
            4000,
            2000,
            Some(200),
            Some(200),
            Fit::Cover,
            Gravity::Center,
        );
        assert_eq!(sz(&p), (200, 200, 200, 200));
        assert_eq!(
            p.crop,
            Rect {
                x: 1000.0,
                y: 0.0,
                w: 2000.0,
                h: 2000.0
            }
        );
        let p = plan(4000, 2000, Some(200), Some(200), Fit::Cover, Gravity::Left);
        assert_eq!(p.crop.x, 0.0);
        let p = plan(
            4000,
            2000,
            Some(200),
            Some(200),
            Fit::Cover,
            Gravity::BottomRight,
        );
        assert_eq!(
            p.crop,
            Rect {
                x: 2000.0,
                y: 0.0,
                w: 2000.0,
                h: 2000.0
            }
        );
        let p = plan(1000, 3000, Some(100), Some(100), Fit::Cover, Gravity::Top);
        assert_eq!(
            p.crop,
            Rect {
                x: 0.0,
                y: 0.0,
                w: 1000.0,
                h: 1000.0
            }
        );
        // cover enlarges
        let p = plan(100, 50, Some(400), Some(400), Fit::Cover, Gravity::Center);
        assert_eq!(sz(&p), (400, 400, 400, 400));
        assert_eq!(
            p.crop,
            Rect {
                x: 25.0,
                y: 0.0,
                w: 50.0,
                h: 50.0
            }
        );
    }

    #[test]
    fn crop_never_enlarges() {
        let p = plan(4000, 2000, Some(200), Some(200), Fit::Crop, Gravity::Center);
        assert_eq!(sz(&p), (200, 200, 200, 200));
        let p = plan(300, 200, Some(400), Some(100), Fit::Crop, Gravity::Bottom);
        assert_eq!(sz(&p), (300, 100, 300, 100));
        assert_eq!(
            p.crop,
            Rect {
                x: 0.0,
                y: 100.0,
                w: 300.0,
                h: 100.0
            }
        );
        let p = plan(300, 200, Some(600), None, Fit::Crop, Gravity::Center);
        assert_eq!(sz(&p), (300, 200, 300, 200));
    }

    #[test]
    fn pad_places_by_gravity() {
        let p = plan(400, 200, Some(300), Some(300), Fit::Pad, Gravity::Center);
        assert_eq!(sz(&p), (300, 150, 300, 300));
        assert_eq!((p.offset_x, p.offset_y), (0, 75));
        let p = plan(400, 200, Some(300), Some(300), Fit::Pad, Gravity::Top);
        assert_eq!((p.offset_x, p.offset_y), (0, 0));
        let p = plan(400, 200, Some(300), Some(300), Fit::Pad, Gravity::Bottom);
        assert_eq!((p.offset_x, p.offset_y), (0, 150));
        let p = plan(400, 200, Some(800), None, Fit::Pad, Gravity::Center);
        assert_eq!(sz(&p), (800, 400, 800, 400));
        assert!(!p.is_padded());
    }

    fn numbered(w: u32, h: u32) -> Pixels {
        let data = (0..w * h).flat_map(|i| [i as u8, 0, 0]).collect();
        Pixels {
            width: w,
            height: h,
            channels: 3,
            data,
        }
    }

    #[test]
    fn orientation_matches_image_crate() {
        let (w, h) = (3u32, 2u32);
        let src = numbered(w, h);
        for o in 1..=8u8 {
            let ours = apply_orientation(src.clone(), o);
            let mut di = image::DynamicImage::ImageRgb8(
                image::RgbImage::from_raw(w, h, src.data.clone()).unwrap(),
            );
            di.apply_orientation(image::metadata::Orientation::from_exif(o).unwrap());
            assert_eq!(
                (ours.width, ours.height),
                (di.width(), di.height()),
                "orientation {o}"
            );
            assert_eq!(ours.data, di.to_rgb8().into_raw(), "orientation {o}");
        }
    }

    #[test]
    fn rect_mapping_matches_pixel_orientation() {
        // a 1x1 rect at upright (x, y) must map onto the stored pixel that lands there
        let (w, h) = (5u32, 3u32);
        let src = numbered(w, h);
        for o in 1..=8u8 {
            let up = apply_orientation(src.clone(), o);
            for y in 0..up.height {
                for x in 0..up.width {
                    let r = upright_rect_to_stored(
                        Rect {
                            x: x as f64,
                            y: y as f64,
                            w: 1.0,
                            h: 1.0,
                        },
                        o,
                        w as f64,
                        h as f64,
                    );
                    let stored = src.data[((r.y as u32 * w + r.x as u32) * 3) as usize];
                    assert_eq!(
                        stored,
                        up.data[((y * up.width + x) * 3) as usize],
                        "o={o} ({x},{y})"
                    );
                }
            }
        }
    }

    #[test]
    fn pad_and_flatten() {
        let p = Pixels {
            width: 1,
            height: 1,
            channels: 4,
            data: vec![0, 0, 0, 0],
        };
        let f = flatten(p.clone(), [255, 255, 255]);
        assert_eq!(f.data, vec![255, 255, 255]);
        let c = pad(&p, 2, 1, 1, 0, None);
        assert_eq!(c.data, vec![0; 8]);
        let c = pad(
            &Pixels {
                width: 1,
                height: 1,
                channels: 3,
                data: vec![9, 9, 9],
            },
            2,
            1,
            0,
            0,
            Some([1, 2, 3]),
        );
        assert_eq!(c.data, vec![9, 9, 9, 1, 2, 3]);
    }
}
