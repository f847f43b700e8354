//! `trim=border`: finds the solid border around a decoded source (Cloudflare's automatic border
//! trim, with `trim.border.color`, `.tolerance` and `.keep`). The border colour is the one
//! given, else the top-left pixel's (as libvips' `find_trim` and Fastly's `trim-color=auto`
//! take it); a pixel is content when any channel differs from it by more than the tolerance;
//! what is kept is the bounding box of the content, widened by `keep` on each side. An image
//! that is all border is kept whole.

use crate::image::ops::Rect;
use crate::image::pixels::Pixels;
use crate::image::spec::TrimBorder;

/// The tolerance when `trim.border.tolerance` is not given: above JPEG's noise on a flat
/// border, below a photo's edge.
pub const DEFAULT_TOLERANCE: u8 = 16;

/// The part of `region` (of `p`) kept once its border is cut.
pub fn content(p: &Pixels, region: Rect, t: &TrimBorder) -> Rect {
    let c = p.channels as usize;
    let (w, h) = (p.width as usize, p.height as usize);
    let x0 = (region.x.max(0.0) as usize).min(w.saturating_sub(1));
    let y0 = (region.y.max(0.0) as usize).min(h.saturating_sub(1));
    let x1 = ((region.x + region.w).round() as usize).clamp(x0 + 1, w.max(x0 + 1));
    let y1 = ((region.y + region.h).round() as usize).clamp(y0 + 1, h.max(y0 + 1));
    let px = |x: usize, y: usize| &p.data[(y * w + x) * c..(y * w + x) * c + c];
    let colour = t.colour.unwrap_or_else(|| {
        let first = px(x0, y0);
        [first[0], first[1], first[2]]
    });
    let tol = t.tolerance.unwrap_or(DEFAULT_TOLERANCE) as i16;
    let is_content = |x: usize, y: usize| {
        let v = px(x, y);
        // a transparent pixel is border whatever its colour
        if c == 4 && v[3] == 0 {
            return false;
        }
        (0..3).any(|i| (v[i] as i16 - colour[i] as i16).abs() > tol)
    };
    let row_has = |y: usize| (x0..x1).any(|x| is_content(x, y));
    let col_has = |x: usize, ys: (usize, usize)| (ys.0..ys.1).any(|y| is_content(x, y));
    let Some(top) = (y0..y1).find(|&y| row_has(y)) else {
        return region;
    };
    let bottom = (top..y1).rev().find(|&y| row_has(y)).unwrap_or(top) + 1;
    let left = (x0..x1).find(|&x| col_has(x, (top, bottom))).unwrap_or(x0);
    let right = (left..x1)
        .rev()
        .find(|&x| col_has(x, (top, bottom)))
        .unwrap_or(left)
        + 1;
    let keep = t.keep as usize;
    let (l, tp) = (
        left.saturating_sub(keep).max(x0),
        top.saturating_sub(keep).max(y0),
    );
    let (r, b) = ((right + keep).min(x1), (bottom + keep).min(y1));
    Rect {
        x: l as f64,
        y: tp as f64,
        w: (r - l) as f64,
        h: (b - tp) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w` x `h` image of `bg` with a noisy block at (`bx`, `by`) of `bw` x `bh`.
    fn framed(w: u32, h: u32, bg: [u8; 3], (bx, by, bw, bh): (u32, u32, u32, u32)) -> Pixels {
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let inside = (bx..bx + bw).contains(&x) && (by..by + bh).contains(&y);
                let v = if inside {
                    [(x * 7 % 200) as u8, (y * 13 % 200) as u8, 90]
                } else {
                    // a little noise, as a JPEG's flat border has
                    bg.map(|c| c.saturating_sub(((x + y) % 3) as u8))
                };
                data.extend_from_slice(&v);
            }
        }
        Pixels {
            width: w,
            height: h,
            channels: 3,
            data,
        }
    }

    fn whole(p: &Pixels) -> Rect {
        Rect {
            x: 0.0,
            y: 0.0,
            w: p.width as f64,
            h: p.height as f64,
        }
    }

    fn tuple(r: Rect) -> (f64, f64, f64, f64) {
        (r.x, r.y, r.w, r.h)
    }

    #[test]
    fn finds_the_content_inside_a_border() {
        let p = framed(100, 80, [250, 250, 250], (10, 5, 60, 50));
        let t = TrimBorder::default();
        assert_eq!(tuple(content(&p, whole(&p), &t)), (10.0, 5.0, 60.0, 50.0));
        let keep = TrimBorder { keep: 7, ..t };
        assert_eq!(tuple(content(&p, whole(&p), &keep)), (3.0, 0.0, 74.0, 62.0));
        // a colour that is not the border's: nothing is border
        let red = TrimBorder {
            colour: Some([255, 0, 0]),
            ..t
        };
        assert_eq!(tuple(content(&p, whole(&p), &red)), (0.0, 0.0, 100.0, 80.0));
        // tolerance 0: the noise is content
        let exact = TrimBorder {
            tolerance: Some(0),
            ..t
        };
        assert_eq!(content(&p, whole(&p), &exact).w, 100.0);
    }

    #[test]
    fn all_border_keeps_the_image_and_regions_are_respected() {
        let p = framed(50, 40, [0, 0, 0], (0, 0, 0, 0));
        assert_eq!(
            tuple(content(&p, whole(&p), &TrimBorder::default())),
            (0.0, 0.0, 50.0, 40.0)
        );
        let p = framed(100, 80, [250, 250, 250], (40, 30, 10, 10));
        let region = Rect {
            x: 20.0,
            y: 20.0,
            w: 60.0,
            h: 50.0,
        };
        let r = content(&p, region, &TrimBorder::default());
        assert_eq!(tuple(r), (40.0, 30.0, 10.0, 10.0));
    }
}
