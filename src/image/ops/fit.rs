//! Output geometry per fit mode (pure functions): which part of the source is kept, the size it
//! is scaled to and where it sits on the canvas.

use crate::image::ops::Rect;
use crate::image::spec::{Fit, Gravity};

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

/// Where a kept length `keep` of `full` starts along one axis: by the gravity's weight, or for
/// a focal point (`Gravity::Focal`) so that the point is as near the middle as the image allows.
fn start(gravity: Gravity, weight: f64, full: f64, keep: f64) -> f64 {
    match gravity {
        Gravity::Focal { .. } => (weight * full - keep / 2.0).clamp(0.0, (full - keep).max(0.0)),
        _ => (full - keep) * weight,
    }
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
                let x = start(gravity, gx, sw as f64, cw as f64).round();
                let y = start(gravity, gy, sh as f64, ch as f64).round();
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
                    x: start(gravity, gx, sw as f64, cw),
                    y: start(gravity, gy, sh as f64, ch),
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
        (Fit::Squeeze, Some(w), Some(h)) => simple((w, h)),
        (Fit::Cover, ..) | (Fit::Squeeze, ..) => simple(fit_inside(sw, sh, tw, th, true)),
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
}
