//! `trim`: the region of the (EXIF-upright) source kept once pixels are cut from each side;
//! everything after it sees only that region. Pure geometry: the pixels outside are simply
//! never resized (nor, for a JPEG scaled on load, decoded at full size).

use crate::image::ops::Rect;
use crate::image::spec::Trim;

/// The kept rectangle of an upright `w` x `h` image, or why nothing is left.
pub fn region(t: &Trim, w: u32, h: u32) -> Result<Rect, String> {
    let keep = |start: u32, end_cut: u32, exact: Option<u32>, full: u32| -> Option<u32> {
        let room = full.checked_sub(start)?;
        let kept = match exact {
            Some(n) => n.min(room),
            None => room.checked_sub(end_cut)?,
        };
        (kept > 0).then_some(kept)
    };
    let kw = keep(t.left, t.right, t.width, w);
    let kh = keep(t.top, t.bottom, t.height, h);
    match (kw, kh) {
        (Some(kw), Some(kh)) => Ok(Rect {
            x: t.left as f64,
            y: t.top as f64,
            w: kw as f64,
            h: kh as f64,
        }),
        _ => Err(format!("trim leaves nothing of a {w}x{h} image")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions() {
        let t = Trim {
            top: 10,
            right: 20,
            bottom: 30,
            left: 40,
            ..Trim::default()
        };
        let r = region(&t, 100, 100).unwrap();
        assert_eq!((r.x, r.y, r.w, r.h), (40.0, 10.0, 40.0, 60.0));
        let t = Trim {
            left: 50,
            width: Some(500),
            ..Trim::default()
        };
        assert_eq!(region(&t, 100, 100).unwrap().w, 50.0);
        let t = Trim {
            left: 60,
            right: 40,
            ..Trim::default()
        };
        assert!(region(&t, 100, 100).is_err());
    }
}
