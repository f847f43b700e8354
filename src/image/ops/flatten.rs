//! Flattening: alpha composited onto a background colour (for formats without alpha).

use crate::image::pixels::Pixels;

/// One RGBA pixel composited onto `bg`.
pub(crate) fn blend(s: &[u8], bg: [u8; 3]) -> [u8; 3] {
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

    #[test]
    fn flatten_onto_the_background() {
        let p = Pixels {
            width: 1,
            height: 1,
            channels: 4,
            data: vec![0, 0, 0, 0],
        };
        let f = flatten(p.clone(), [255, 255, 255]);
        assert_eq!(f.data, vec![255, 255, 255]);
    }
}
