//! Parsing of transforms from the URL query and from presets (into a `spec::TransformSpec`,
//! checked against its `Limits`).
//!
//! Parameters (user-facing names): `width`/`w`, `height`/`h` (positive integers), `dpr` (1-4,
//! float, multiplies width and height), `fit` (scale-down | contain | cover | crop | pad),
//! `gravity` (center | top | bottom | left | right | top-left | top-right | bottom-left |
//! bottom-right; `auto` = center), `format` (auto | avif | webp | jpeg | jpg | png),
//! `quality`/`q` (1-100), `background` (hex colour `#rgb`, `#rrggbb`, with or without `#`,
//! `%23` accepted), `preset=NAME`.
//!
//! **Duplicates: the last occurrence wins** (also across aliases: `w=1&width=2` gives width 2).
//! Parameters set explicitly in the URL override the preset's values, wherever `preset=` appears.
//! Names are case-sensitive; any other parameter is forwarded to the origin untouched (one that
//! looks like a transform parameter is reported by `lookalike::warnings`).

use std::collections::{BTreeMap, HashMap};

use crate::image::error::ParamError;
use crate::image::format::{FormatChoice, OutputFormat};
use crate::image::spec::{apply_dpr, Fit, Gravity, Limits, TransformSpec};

/// A preset: a partial set of parameters (each `None` = not set by the preset).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Preset {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub dpr: Option<f32>,
    pub fit: Option<Fit>,
    pub gravity: Option<Gravity>,
    pub format: Option<FormatChoice>,
    pub quality: Option<u8>,
    pub background: Option<[u8; 3]>,
}

impl Preset {
    /// `other`'s values override `self`'s.
    fn overlay(&self, other: &Preset) -> Preset {
        Preset {
            width: other.width.or(self.width),
            height: other.height.or(self.height),
            dpr: other.dpr.or(self.dpr),
            fit: other.fit.or(self.fit),
            gravity: other.gravity.or(self.gravity),
            format: other.format.or(self.format),
            quality: other.quality.or(self.quality),
            background: other.background.or(self.background),
        }
    }

    /// Checks the preset against the limits (for config validation).
    pub fn validate(&self, limits: &Limits) -> Result<TransformSpec, ParamError> {
        finalize(self, limits)
    }
}

/// Named presets from config.
pub type Presets = HashMap<String, Preset>;

/// The result of [`parse_query`].
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedQuery {
    /// `None` when the query has no transform parameter at all (pass the original through).
    pub transform: Option<TransformSpec>,
    /// The non-transform parameters, original order and encoding, `None` if there are none.
    pub forward_query: Option<String>,
    /// `sig=`: the URL's signature (never forwarded to the origin).
    pub signature: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Width,
    Height,
    Dpr,
    Fit,
    Gravity,
    Format,
    Quality,
    Background,
    Preset,
}

/// Every query parameter name that is a transform, with what it sets: the one list that
/// parsing (`key_kind`) and the look-alike check (`image::lookalike`) both read. A new parameter
/// (or alias) is one line here.
const PARAMS: &[(&str, Key)] = &[
    ("width", Key::Width),
    ("w", Key::Width),
    ("height", Key::Height),
    ("h", Key::Height),
    ("dpr", Key::Dpr),
    ("fit", Key::Fit),
    ("gravity", Key::Gravity),
    ("format", Key::Format),
    ("quality", Key::Quality),
    ("q", Key::Quality),
    ("background", Key::Background),
    ("preset", Key::Preset),
];

/// The names of the transform parameters (what a look-alike is compared with).
pub fn names() -> impl Iterator<Item = &'static str> {
    PARAMS.iter().map(|(name, _)| *name)
}

/// Whether `k` is a transform parameter's name.
pub fn is_param(k: &str) -> bool {
    key_kind(k).is_some()
}

fn key_kind(k: &str) -> Option<Key> {
    PARAMS
        .iter()
        .find(|(name, _)| *name == k)
        .map(|(_, key)| *key)
}

/// Quotes a user value for an error message (escaped, at most 64 characters).
fn quoted(v: &str) -> String {
    let mut s: String = v.chars().take(64).collect();
    if s.len() < v.len() {
        s.push('…');
    }
    format!("{s:?}")
}

fn parse_positive(name: &str, v: &str) -> Result<u32, ParamError> {
    let bad = || ParamError::new(name, format!("{} is not a positive integer", quoted(v)));
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match v.parse::<u32>() {
        Ok(0) => Err(bad()),
        Ok(n) => Ok(n),
        Err(_) => Err(ParamError::new(name, format!("{} is too large", quoted(v)))),
    }
}

fn parse_hex_colour(v: &str) -> Option<[u8; 3]> {
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

/// Parses one transform parameter into `p` (not `preset`).
fn apply(p: &mut Preset, key: Key, name: &str, v: &str) -> Result<(), ParamError> {
    match key {
        Key::Width => p.width = Some(parse_positive(name, v)?),
        Key::Height => p.height = Some(parse_positive(name, v)?),
        Key::Dpr => {
            let d: f32 = v
                .parse()
                .ok()
                .filter(|d: &f32| d.is_finite() && (1.0..=4.0).contains(d))
                .ok_or_else(|| ParamError::new(name, format!("{} is not a number from 1 to 4", quoted(v))))?;
            // keep two decimals so that equivalent spellings are equal
            p.dpr = Some((d * 100.0).round() / 100.0);
        }
        Key::Fit => {
            p.fit = Some(Fit::parse(v).ok_or_else(|| {
                ParamError::new(name, format!("{} is not one of scale-down, contain, cover, crop, pad", quoted(v)))
            })?)
        }
        Key::Gravity => {
            p.gravity = Some(Gravity::parse(v).ok_or_else(|| {
                ParamError::new(
                    name,
                    format!(
                        "{} is not one of center, top, bottom, left, right, top-left, top-right, bottom-left, bottom-right",
                        quoted(v)
                    ),
                )
            })?)
        }
        Key::Format => {
            p.format = Some(if v == "auto" {
                FormatChoice::Auto
            } else {
                FormatChoice::Fixed(OutputFormat::parse(v).ok_or_else(|| {
                    ParamError::new(name, format!("{} is not one of auto, avif, webp, jpeg, png", quoted(v)))
                })?)
            })
        }
        Key::Quality => {
            let q = v
                .parse::<u8>()
                .ok()
                .filter(|q| (1..=100).contains(q) && v.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| ParamError::new(name, format!("{} is not an integer from 1 to 100", quoted(v))))?;
            p.quality = Some(q);
        }
        Key::Background => {
            p.background = Some(
                parse_hex_colour(v)
                    .ok_or_else(|| ParamError::new(name, format!("{} is not a hex colour (#rgb or #rrggbb)", quoted(v))))?,
            )
        }
        Key::Preset => return Err(ParamError::new(name, "a preset cannot name another preset")),
    }
    Ok(())
}

/// Parses a preset from config (`name -> value` as strings; numbers written as strings).
/// Only transform parameters are allowed, `preset` itself is not.
pub fn parse_preset(map: &BTreeMap<String, String>) -> Result<Preset, ParamError> {
    let mut p = Preset::default();
    for (k, v) in map {
        match key_kind(k) {
            Some(Key::Preset) => {
                return Err(ParamError::new(
                    k.as_str(),
                    "a preset cannot name another preset",
                ))
            }
            Some(key) => apply(&mut p, key, k, v)?,
            None => return Err(ParamError::new(k.as_str(), "is not a transform parameter")),
        }
    }
    Ok(p)
}

/// Applies the limits and defaults.
fn finalize(p: &Preset, limits: &Limits) -> Result<TransformSpec, ParamError> {
    let dpr = p.dpr.unwrap_or(1.0);
    let check = |name: &str, v: Option<u32>, max: u32| -> Result<(), ParamError> {
        if let Some(v) = v {
            if v > max {
                return Err(ParamError::new(
                    name,
                    format!("{v} is above the maximum {max}"),
                ));
            }
            let eff = apply_dpr(v, dpr);
            if eff > max as u64 {
                return Err(ParamError::new(
                    name,
                    format!("{v} at dpr {dpr} is {eff}, above the maximum {max}"),
                ));
            }
        }
        Ok(())
    };
    check("width", p.width, limits.max_width)?;
    check("height", p.height, limits.max_height)?;
    if let (Some(w), Some(h)) = (p.width, p.height) {
        let px = apply_dpr(w, dpr).saturating_mul(apply_dpr(h, dpr));
        if px > limits.max_output_pixels {
            return Err(ParamError::new(
                "height",
                format!(
                    "{w}x{h} at dpr {dpr} is {px} pixels, above the maximum {}",
                    limits.max_output_pixels
                ),
            ));
        }
    }
    let format = p.format.unwrap_or(FormatChoice::Source);
    if let FormatChoice::Fixed(f) = format {
        if !limits.allows(f) {
            let list: Vec<&str> = limits.allowed_formats.iter().map(|f| f.as_str()).collect();
            return Err(ParamError::new(
                "format",
                format!(
                    "{:?} is not allowed here (allowed: {})",
                    f.as_str(),
                    list.join(", ")
                ),
            ));
        }
    }
    Ok(TransformSpec {
        width: p.width,
        height: p.height,
        dpr,
        fit: p.fit.unwrap_or_default(),
        gravity: p.gravity.unwrap_or_default(),
        format,
        quality: p.quality,
        background: p.background,
    })
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

/// Parses the request's query string: what follows the URL's first `?`, without it. A further
/// `?` is part of a name (`??w=1` has the parameter `?w`, not `w`): stripping it here made a
/// forwarded `&?w=1` a transform parameter again for the next hop (an upstream shield).
pub fn parse_query(
    query: Option<&str>,
    limits: &Limits,
    presets: &Presets,
) -> Result<ParsedQuery, ParamError> {
    let q = query.unwrap_or("");
    let mut explicit = Preset::default();
    let mut preset: Option<String> = None;
    let mut any = false;
    let mut forward: Vec<&str> = Vec::new();
    let mut signature = None;
    for piece in q.split('&') {
        if piece.is_empty() {
            continue;
        }
        let (rk, rv) = piece.split_once('=').unwrap_or((piece, ""));
        if rk == "sig" {
            signature = percent_decode(rv);
            continue;
        }
        let key = percent_decode(rk);
        let kind = key.as_deref().and_then(key_kind);
        let (Some(kind), Some(key)) = (kind, key) else {
            forward.push(piece);
            continue;
        };
        any = true;
        let v = percent_decode(rv)
            .ok_or_else(|| ParamError::new(key.as_str(), "value is not valid UTF-8"))?;
        if kind == Key::Preset {
            preset = Some(v);
        } else {
            apply(&mut explicit, kind, &key, &v)?;
        }
    }
    let forward_query = if forward.is_empty() {
        None
    } else {
        Some(forward.join("&"))
    };
    if !any {
        return Ok(ParsedQuery {
            transform: None,
            forward_query,
            signature,
        });
    }
    let merged = match preset {
        Some(name) => match presets.get(&name) {
            Some(p) => p.overlay(&explicit),
            None => {
                return Err(ParamError::new(
                    "preset",
                    format!("no preset named {}", quoted(&name)),
                ))
            }
        },
        None => explicit,
    };
    Ok(ParsedQuery {
        transform: Some(finalize(&merged, limits)?),
        forward_query,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> Limits {
        Limits::default()
    }

    fn parse(q: &str) -> Result<ParsedQuery, ParamError> {
        let mut presets = Presets::new();
        let mut m = BTreeMap::new();
        m.insert("width".to_string(), "200".to_string());
        m.insert("height".to_string(), "200".to_string());
        m.insert("fit".to_string(), "cover".to_string());
        m.insert("q".to_string(), "70".to_string());
        presets.insert("thumb".to_string(), parse_preset(&m).unwrap());
        parse_query(Some(q), &lim(), &presets)
    }

    fn spec(q: &str) -> TransformSpec {
        parse(q).unwrap().transform.unwrap()
    }

    fn err(q: &str) -> String {
        parse(q).unwrap_err().to_string()
    }

    #[test]
    fn forwarded_query_parses_back_to_the_same_canonical() {
        for q in [
            "w=400",
            "width=300&height=200&fit=cover&gravity=top-left&q=70",
            "preset=thumb&dpr=2",
            "width=100&fit=pad&background=ff0000&format=png&quality=50",
            "format=webp",
            "fit=scale-down",
            "w=10&format=auto",
        ] {
            let s = spec(q);
            for chosen in [None, Some(OutputFormat::Webp)] {
                let back = spec(&s.to_query(chosen));
                assert_eq!(back.canonical(chosen), s.canonical(chosen), "{q}");
            }
        }
    }

    #[test]
    fn no_transform_params() {
        let p = parse("a=1&b=%20x").unwrap();
        assert_eq!(p.transform, None);
        assert_eq!(p.forward_query.as_deref(), Some("a=1&b=%20x"));
        let p = parse_query(None, &lim(), &Presets::new()).unwrap();
        assert_eq!(
            p,
            ParsedQuery {
                transform: None,
                forward_query: None,
                signature: None,
            }
        );
        assert_eq!(parse("").unwrap().transform, None);
    }

    #[test]
    fn signature_is_taken_out_and_covers_the_canonical_request() {
        let p = parse("w=400&sig=abc_-1&x=1").unwrap();
        assert_eq!(p.signature.as_deref(), Some("abc_-1"));
        assert_eq!(p.forward_query.as_deref(), Some("x=1"));
        let a = spec("width=400&q=70&fit=cover").signed_form();
        assert_eq!(a, spec("fit=cover&q=70&w=400").signed_form());
        assert_ne!(a, spec("fit=cover&q=71&w=400").signed_form());
        assert_eq!(spec("w=10&format=auto").signed_form(), "w=10,f=auto");
        assert_eq!(spec("format=auto").signed_form(), "f=auto");
    }

    #[test]
    fn aliases_and_forwarding() {
        let p = parse("x=1&w=400&y=2&h=300&q=50").unwrap();
        assert_eq!(p.forward_query.as_deref(), Some("x=1&y=2"));
        let s = p.transform.unwrap();
        assert_eq!(
            (s.width, s.height, s.quality),
            (Some(400), Some(300), Some(50))
        );
        assert_eq!(
            spec("format=jpg").format,
            FormatChoice::Fixed(OutputFormat::Jpeg)
        );
        assert_eq!(spec("gravity=auto").gravity, Gravity::Center);
        assert_eq!(parse("w=400").unwrap().forward_query, None);
    }

    #[test]
    fn duplicates_last_wins() {
        assert_eq!(spec("w=100&width=200").width, Some(200));
        assert_eq!(spec("width=200&w=100").width, Some(100));
    }

    #[test]
    fn presets() {
        let s = spec("preset=thumb");
        assert_eq!(
            (s.width, s.height, s.fit, s.quality),
            (Some(200), Some(200), Fit::Cover, Some(70))
        );
        // explicit params override, wherever preset= is
        let s = spec("w=300&preset=thumb");
        assert_eq!((s.width, s.height), (Some(300), Some(200)));
        assert_eq!(err("preset=thumbx"), r#"preset: no preset named "thumbx""#);
        let mut m = BTreeMap::new();
        m.insert("fit".to_string(), "squash".to_string());
        assert!(parse_preset(&m)
            .unwrap_err()
            .to_string()
            .starts_with("fit: \"squash\""));
        let mut m = BTreeMap::new();
        m.insert("colour".to_string(), "red".to_string());
        assert_eq!(
            parse_preset(&m).unwrap_err().to_string(),
            "colour: is not a transform parameter"
        );
        let mut m = BTreeMap::new();
        m.insert("width".to_string(), "9000".to_string());
        assert!(parse_preset(&m).unwrap().validate(&lim()).is_err());
    }

    #[test]
    fn errors() {
        assert_eq!(err("width=-3"), r#"width: "-3" is not a positive integer"#);
        assert_eq!(err("w=0"), r#"w: "0" is not a positive integer"#);
        assert_eq!(err("w="), r#"w: "" is not a positive integer"#);
        assert_eq!(err("w=1.5"), r#"w: "1.5" is not a positive integer"#);
        assert_eq!(err("w=99999999999"), r#"w: "99999999999" is too large"#);
        assert_eq!(
            err("format=tiff"),
            r#"format: "tiff" is not one of auto, avif, webp, jpeg, png"#
        );
        assert_eq!(err("width=5000"), "width: 5000 is above the maximum 4096");
        assert_eq!(
            err("width=3000&dpr=2"),
            "width: 3000 at dpr 2 is 6000, above the maximum 4096"
        );
        assert!(err("dpr=5").starts_with("dpr: \"5\""));
        assert!(err("dpr=NaN").starts_with("dpr:"));
        assert!(err("q=0").starts_with("q: \"0\""));
        assert!(err("quality=101").starts_with("quality:"));
        assert!(err("fit=stretch").starts_with("fit:"));
        assert!(err("gravity=north").starts_with("gravity:"));
        assert!(err("background=%23ggg").starts_with("background: \"#ggg\""));
        assert!(
            err("w=%0A").contains("\\n"),
            "control characters are escaped"
        );
        let e = err("w=4000&h=4000&dpr=1.5");
        assert!(e.starts_with("width:"), "{e}");
        for q in ["w=-3", "format=tiff", "w=%0A%0Ax"] {
            assert!(!err(q).contains('\n'));
        }
        let mut l = lim();
        l.max_output_pixels = 1000;
        assert!(parse_query(Some("w=100&h=100"), &l, &Presets::new()).is_err());
        l.allowed_formats = vec![OutputFormat::Jpeg];
        assert!(parse_query(Some("format=avif"), &l, &Presets::new())
            .unwrap_err()
            .to_string()
            .starts_with("format:"));
    }

    /// Found by the transform_url fuzz target: `&?dpr=2.5` was forwarded to the origin as a
    /// non-transform parameter, but the next hop parsed the forwarded `?dpr=2.5` as `dpr`.
    #[test]
    fn a_question_mark_is_part_of_the_name() {
        let p = parse("w=100&?dpr=2.5").unwrap();
        assert_eq!(p.transform.as_ref().unwrap().dpr, 1.0);
        assert_eq!(p.forward_query.as_deref(), Some("?dpr=2.5"));
        let again = parse(p.forward_query.as_deref().unwrap()).unwrap();
        assert_eq!(again.transform, None);
        assert!(parse("?w=100").unwrap().transform.is_none());
    }
}
