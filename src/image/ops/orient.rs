//! EXIF orientation: turning stored pixels upright, and mapping an upright rectangle back onto
//! the stored image (so that crops and resizes happen before the small result is turned).

use crate::image::ops::Rect;
use crate::image::pixels::Pixels;

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

/// The one EXIF orientation that does `first`, then `then` (both 1-8): found by trying each
/// on a 3x2 image of distinct pixels (cheaper to trust than a hand-written table).
pub fn compose(first: u8, then: u8) -> u8 {
    let probe = Pixels {
        width: 3,
        height: 2,
        channels: 3,
        data: (0..18).collect(),
    };
    let want = apply_orientation(apply_orientation(probe.clone(), first), then);
    (1..=8)
        .find(|&c| apply_orientation(probe.clone(), c) == want)
        .unwrap_or(1)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
