//! Parsers of the values of transform parameters (`params.rs` applies them): numbers, factors,
//! CSS-like colours, `gravity=XxY`, `trim`, `border`, the named quality levels, `%XX` decoding.
//! Each returns the problem as a one-line text, which `params.rs` puts after the parameter's
//! name.

use crate::image::spec::{Border, Flip, Gravity, Trim};

/// Quotes a user value for an error message (escaped, at most 64 characters).
pub fn quoted(v: &str) -> String {
    let mut s: String = v.chars().take(64).collect();
    if s.len() < v.len() {
        s.push('…');
    }
    format!("{s:?}")
}

/// A decimal number (no exponent, no sign but `-`, finite) within `lo..=hi`, rounded to two
/// decimals so that equivalent spellings (`2`, `2.0`, `2.001`) share one cache entry.
pub fn number(v: &str, lo: f32, hi: f32) -> Result<f32, String> {
    let ok = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-');
    let n: Option<f32> = if ok { v.parse().ok() } else { None };
    match n.filter(|n| n.is_finite() && (lo..=hi).contains(n)) {
        Some(n) => Ok((n * 100.0).round() / 100.0),
        None => Err(format!("{} is not a number from {lo} to {hi}", quoted(v))),
    }
}

/// A factor where 1 (and, as Cloudflare documents, 0) means "unchanged": `None` then.
pub fn factor(v: &str, max: f32) -> Result<Option<f32>, String> {
    let f = number(v, 0.0, max)?;
    Ok((f != 0.0 && f != 1.0).then_some(f))
}

/// A whole number of pixels within `0..=max`.
pub fn pixels(v: &str, max: u32) -> Result<u32, String> {
    let n = (!v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit()))
        .then(|| v.parse::<u64>().ok())
        .flatten();
    match n {
        Some(n) if n <= max as u64 => Ok(n as u32),
        _ => Err(format!(
            "{} is not a whole number of pixels from 0 to {max}",
            quoted(v)
        )),
    }
}

/// `trim.border.tolerance`: 0-255, how far a border pixel may be from the border colour.
pub fn tolerance(v: &str) -> Result<u8, String> {
    v.parse::<u8>()
        .ok()
        .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("{} is not an integer from 0 to 255", quoted(v)))
}

/// `quality`: 1-100 or Cloudflare's named levels (mapped to fixed numbers, so that a name and
/// its number share one cache entry).
pub fn quality(v: &str) -> Result<u8, String> {
    let named = match v {
        "high" => Some(90),
        "medium-high" => Some(80),
        "medium-low" => Some(65),
        "low" => Some(50),
        _ => None,
    };
    if let Some(q) = named {
        return Ok(q);
    }
    v.parse::<u8>()
        .ok()
        .filter(|q| (1..=100).contains(q) && v.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            format!(
                "{} is not an integer from 1 to 100 nor high, medium-high, medium-low, low",
                quoted(v)
            )
        })
}

fn hex(v: &str) -> Option<[u8; 3]> {
    let h = v.strip_prefix('#').unwrap_or(v);
    if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let d = |c: u8| (c as char).to_digit(16).map(|x| x as u8);
    let b = h.as_bytes();
    match b.len() {
        3 => Some([d(b[0])? * 17, d(b[1])? * 17, d(b[2])? * 17]),
        6 => Some([
            d(b[0])? * 16 + d(b[1])?,
            d(b[2])? * 16 + d(b[3])?,
            d(b[4])? * 16 + d(b[5])?,
        ]),
        _ => None,
    }
}

/// `rgb(r,g,b)` with 0-255 components (an `rgba(..., a)` with alpha 1).
fn css_rgb(v: &str) -> Option<[u8; 3]> {
    let inner = v
        .strip_prefix("rgba(")
        .or_else(|| v.strip_prefix("rgb("))?
        .strip_suffix(')')?;
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    let alpha_ok = match parts.get(3) {
        None => true,
        Some(a) => a.parse::<f32>().is_ok_and(|a| a == 1.0),
    };
    if !(3..=4).contains(&parts.len()) || !alpha_ok {
        return None;
    }
    let c = |s: &str| s.parse::<u8>().ok();
    Some([c(parts[0])?, c(parts[1])?, c(parts[2])?])
}

/// A colour: `#rgb`, `#rrggbb` (the `#` optional), `rgb(r,g,b)`, or a basic CSS name.
/// Transparency is not expressible here (a transparent pad is "no background").
pub fn colour(v: &str) -> Result<[u8; 3], String> {
    let named = match v.to_ascii_lowercase().as_str() {
        "white" => Some([255, 255, 255]),
        "black" => Some([0, 0, 0]),
        "red" => Some([255, 0, 0]),
        "green" => Some([0, 128, 0]),
        "blue" => Some([0, 0, 255]),
        "gray" | "grey" => Some([128, 128, 128]),
        _ => None,
    };
    named
        .or_else(|| hex(v))
        .or_else(|| css_rgb(v))
        .ok_or_else(|| {
            format!(
                "{} is not a colour (#rgb, #rrggbb, rgb(r,g,b) or a basic name)",
                quoted(v)
            )
        })
}

/// `gravity=XxY`: focal point coordinates from 0 to 1.
pub fn focal(v: &str) -> Option<Gravity> {
    let (x, y) = v.split_once('x')?;
    let c = |s: &str| {
        number(s, 0.0, 1.0)
            .ok()
            .map(|f| (f * 10000.0).round() as u16)
    };
    Some(Gravity::Focal { x: c(x)?, y: c(y)? })
}

pub fn rotate(v: &str) -> Result<u16, String> {
    match v {
        "0" | "360" => Ok(0),
        "90" => Ok(90),
        "180" => Ok(180),
        "270" => Ok(270),
        _ => Err(format!("{} is not one of 90, 180, 270", quoted(v))),
    }
}

pub fn flip(v: &str) -> Result<Flip, String> {
    match v {
        "h" => Ok(Flip::H),
        "v" => Ok(Flip::V),
        "hv" | "vh" => Ok(Flip::HV),
        _ => Err(format!("{} is not one of h, v, hv", quoted(v))),
    }
}

/// `trim=top;right;bottom;left` (Cloudflare's URL form), pixels of the source.
pub fn trim(v: &str, max: u32) -> Result<Trim, String> {
    let parts: Vec<&str> = v.split(';').collect();
    if parts.len() != 4 {
        return Err(format!(
            "{} is not top;right;bottom;left in pixels",
            quoted(v)
        ));
    }
    Ok(Trim {
        top: pixels(parts[0], max)?,
        right: pixels(parts[1], max)?,
        bottom: pixels(parts[2], max)?,
        left: pixels(parts[3], max)?,
        width: None,
        height: None,
    })
}

/// `border=color:#rgb;width:N` or `border=color:#rgb;top:N;right:N;bottom:N;left:N` (any
/// order; sides not given are 0; the colour defaults to black).
pub fn border(v: &str, max: u32) -> Result<Border, String> {
    let mut b = Border::default();
    let mut any = false;
    for item in v.split(';') {
        let Some((k, x)) = item.split_once(':') else {
            return Err(format!(
                "{} is not color:C;width:N or color:C;top:N;right:N;bottom:N;left:N",
                quoted(item)
            ));
        };
        match k {
            "color" | "colour" => b.colour = colour(x)?,
            "width" => {
                let w = pixels(x, max)?;
                (b.top, b.right, b.bottom, b.left) = (w, w, w, w);
                any = true;
            }
            "top" => (b.top, any) = (pixels(x, max)?, true),
            "right" => (b.right, any) = (pixels(x, max)?, true),
            "bottom" => (b.bottom, any) = (pixels(x, max)?, true),
            "left" => (b.left, any) = (pixels(x, max)?, true),
            _ => {
                return Err(format!(
                    "{} is not one of color, width, top, right, bottom, left",
                    quoted(k)
                ))
            }
        }
    }
    if !any {
        return Err(format!("{} gives no width", quoted(v)));
    }
    Ok(b)
}

/// `%XX` decoded; `None` when the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(number("2.0", 0.0, 10.0), Ok(2.0));
        assert!(number("1e3", 0.0, 1e9).is_err());
        assert!(number("NaN", 0.0, 10.0).is_err());
        assert_eq!(factor("1", 10.0), Ok(None));
        assert_eq!(factor("0", 10.0), Ok(None));
        assert_eq!(factor("0.5", 10.0), Ok(Some(0.5)));
        assert_eq!(quality("high"), Ok(90));
        assert!(quality("101").is_err());
        assert_eq!(colour("rgb(255,0,10)"), Ok([255, 0, 10]));
        assert_eq!(colour("%23fff".replace("%23", "#").as_str()), Ok([255; 3]));
        assert_eq!(colour("White"), Ok([255; 3]));
        assert!(colour("rgba(1,2,3,0.5)").is_err());
        assert_eq!(focal("0.25x1"), Some(Gravity::Focal { x: 2500, y: 10000 }));
        assert_eq!(focal("1.5x0"), None);
        assert_eq!(trim("1;2;3;4", 100).map(|t| (t.top, t.left)), Ok((1, 4)));
        assert!(trim("1;2;3", 100).is_err());
        let b = border("color:#f00;width:3", 50).unwrap();
        assert_eq!((b.colour, b.top, b.left), ([255, 0, 0], 3, 3));
        let b = border("top:1;left:2", 50).unwrap();
        assert_eq!((b.colour, b.top, b.right, b.left), ([0, 0, 0], 1, 0, 2));
        assert!(border("color:red", 50).is_err());
        assert!(border("width:99", 50).is_err());
    }
}
