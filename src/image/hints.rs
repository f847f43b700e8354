//! `width=auto`: the width a client's hints ask for, rounded up to a few buckets so that the
//! cache holds a handful of variants per image, not one per layout width. Read in order,
//! stopping at the first that gives a width:
//! 1. `Sec-CH-Width`, then the legacy `Width`: the image's display width in device pixels;
//! 2. `Sec-CH-Viewport-Width`, then the legacy `Viewport-Width` (CSS pixels), times
//!    `Sec-CH-DPR`, then the legacy `DPR` (1 when neither is sent);
//! 3. none: [`FALLBACK_WIDTH`].
//!
//! [`HintsUsed`] records every field read, present or not (what the response varies on: a
//! client sending a field that was read as absent may get another width).

/// Device widths `width=auto` rounds up to (the largest for anything above it).
pub const BUCKETS: [u32; 10] = [320, 480, 640, 768, 1024, 1280, 1536, 1920, 2560, 3840];

/// The device width when no hint gives one.
pub const FALLBACK_WIDTH: u32 = 1280;

/// The client hint fields' values as received (`None`: absent).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientHints {
    pub sec_ch_width: Option<String>,
    pub width: Option<String>,
    pub sec_ch_viewport_width: Option<String>,
    pub viewport_width: Option<String>,
    pub sec_ch_dpr: Option<String>,
    pub dpr: Option<String>,
}

/// The fields a `width=auto` answer was chosen by (a set of [`HintsUsed::NAMES`]' bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HintsUsed(u8);

impl HintsUsed {
    /// The field names, in the order they are read.
    pub const NAMES: [&'static str; 6] = [
        "Sec-CH-Width",
        "Width",
        "Sec-CH-Viewport-Width",
        "Viewport-Width",
        "Sec-CH-DPR",
        "DPR",
    ];
    /// What responses to `width=auto` send in `Accept-CH`: the current hints.
    pub const ACCEPT_CH: &'static str = "Sec-CH-Width, Sec-CH-Viewport-Width, Sec-CH-DPR";

    /// The set as a number (for a cache key).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The names of the fields read.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| n)
    }
}

/// A positive number of at most 5 digits and 2 decimals (hints are small; anything else is
/// ignored as if absent).
fn number(v: Option<&str>) -> Option<f64> {
    let v = v?.trim();
    let ok = !v.is_empty() && v.len() <= 8 && v.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let n: f64 = if ok { v.parse().ok()? } else { return None };
    (n.is_finite() && n > 0.0).then_some(n)
}

/// The smallest bucket at least `w` wide (the largest bucket for wider).
pub fn bucket(w: f64) -> u32 {
    BUCKETS
        .into_iter()
        .find(|b| *b as f64 >= w)
        .unwrap_or(BUCKETS[BUCKETS.len() - 1])
}

/// The device width (a bucket) the hints ask for, and the fields read to find it.
pub fn device_width(h: &ClientHints) -> (u32, HintsUsed) {
    let mut used = 0u8;
    let mut read = |i: usize, v: &Option<String>| {
        used |= 1 << i;
        number(v.as_deref())
    };
    let w = read(0, &h.sec_ch_width).or_else(|| read(1, &h.width));
    if let Some(w) = w {
        return (bucket(w), HintsUsed(used));
    }
    let vw = read(2, &h.sec_ch_viewport_width).or_else(|| read(3, &h.viewport_width));
    let width = match vw {
        Some(vw) => {
            let dpr = read(4, &h.sec_ch_dpr).or_else(|| read(5, &h.dpr));
            bucket(vw * dpr.unwrap_or(1.0).min(4.0))
        }
        None => FALLBACK_WIDTH,
    };
    (width, HintsUsed(used))
}

/// `width=auto`'s `width`: the hinted device width (at most `max_width`) divided by the URL's
/// `dpr`, rounded down (the hints are device pixels already: `dpr` does not multiply them again).
pub fn css_width(h: &ClientHints, max_width: u32, dpr: f32) -> (u32, HintsUsed) {
    let (device, used) = device_width(h);
    let w = (device.min(max_width) as f64 / dpr as f64).floor() as u32;
    (w.max(1), used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(pairs: &[(&str, &str)]) -> ClientHints {
        let mut h = ClientHints::default();
        for (k, v) in pairs {
            let v = Some(v.to_string());
            match *k {
                "sec-ch-width" => h.sec_ch_width = v,
                "width" => h.width = v,
                "sec-ch-viewport-width" => h.sec_ch_viewport_width = v,
                "viewport-width" => h.viewport_width = v,
                "sec-ch-dpr" => h.sec_ch_dpr = v,
                _ => h.dpr = v,
            }
        }
        h
    }

    fn names(u: HintsUsed) -> Vec<&'static str> {
        u.names().collect()
    }

    #[test]
    fn hints_in_order() {
        let (w, u) = device_width(&hints(&[("sec-ch-width", "500"), ("width", "2000")]));
        assert_eq!((w, names(u)), (640, vec!["Sec-CH-Width"]));
        let (w, u) = device_width(&hints(&[("width", "300")]));
        assert_eq!((w, names(u)), (320, vec!["Sec-CH-Width", "Width"]));
        let (w, u) = device_width(&hints(&[
            ("sec-ch-viewport-width", "400"),
            ("sec-ch-dpr", "2.5"),
        ]));
        assert_eq!(w, 1024);
        assert_eq!(
            names(u),
            vec![
                "Sec-CH-Width",
                "Width",
                "Sec-CH-Viewport-Width",
                "Sec-CH-DPR"
            ]
        );
        let (w, u) = device_width(&hints(&[("viewport-width", "390"), ("dpr", "3")]));
        assert_eq!(w, 1280); // 390 x 3 = 1170
        assert_eq!(names(u).len(), 6);
        let (w, u) = device_width(&ClientHints::default());
        assert_eq!(
            (w, names(u)),
            (FALLBACK_WIDTH, HintsUsed::NAMES[..4].to_vec())
        );
    }

    #[test]
    fn bad_values_are_absent_and_buckets_cap() {
        for bad in ["", "-5", "1e3", "abc", "0", "123456789"] {
            let (w, _) = device_width(&hints(&[("sec-ch-width", bad)]));
            assert_eq!(w, FALLBACK_WIDTH, "{bad:?}");
        }
        assert_eq!(bucket(1.0), 320);
        assert_eq!(bucket(1920.0), 1920);
        assert_eq!(bucket(1921.0), 2560);
        assert_eq!(bucket(99999.0), 3840);
    }
}
