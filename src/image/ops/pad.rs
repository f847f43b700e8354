//! Padding: places the image on a larger canvas, opaque (background colour) or transparent.

use crate::image::ops::flatten::blend;
use crate::image::pixels::Pixels;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_transparent_and_opaque() {
        let p = Pixels {
            width: 1,
            height: 1,
            channels: 4,
            data: vec![0, 0, 0, 0],
        };
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
