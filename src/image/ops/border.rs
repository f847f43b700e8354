//! `border`: a solid frame around the finished image (opaque, also on a transparent image,
//! whose own pixels keep their alpha).

use crate::image::pixels::Pixels;
use crate::image::spec::Border;

pub fn border(p: &Pixels, b: &Border) -> Pixels {
    let c = p.channels as usize;
    let cw = (p.width + b.left + b.right) as usize;
    let ch = (p.height + b.top + b.bottom) as usize;
    let mut fill = b.colour.to_vec();
    if c == 4 {
        fill.push(255);
    }
    let mut data: Vec<u8> = fill.iter().copied().cycle().take(cw * ch * c).collect();
    let row = p.width as usize * c;
    for y in 0..p.height as usize {
        let d = ((y + b.top as usize) * cw + b.left as usize) * c;
        data[d..d + row].copy_from_slice(&p.data[y * row..(y + 1) * row]);
    }
    Pixels {
        width: cw as u32,
        height: ch as u32,
        channels: p.channels,
        data,
    }
}
