//! Parsing of transforms from the URL query and from presets (into a `spec::TransformSpec`,
//! checked against its `Limits`); the path form's options become query parameters first
//! (the `path_options` module).
//!
//! Parameters: Cloudflare Images' option names, every one listed in [`PARAMS`]: implemented
//! (`width`/`w`, `height`/`h`, `dpr`, `fit`, `gravity`, `format`, `quality`/`q`, `background`,
//! `trim` and `trim.*`, `rotate`, `flip`, `brightness`, `contrast`, `gamma`, `saturation`,
//! `blur`, `sharpen`, `border`, `compression`, `onerror`, `anim`, `metadata`) or refused with a reason (400 before any origin
//! request), plus `preset=NAME`. Value syntax and ranges: `values.rs`.
//!
//! **Duplicates: the last occurrence wins** (also across aliases: `w=1&width=2` gives width 2).
//! Parameters set explicitly in the URL override the preset's values, wherever `preset=` appears.
//! Names are case-sensitive; any other parameter is forwarded to the origin untouched (one that
//! looks like a transform parameter is reported by `lookalike::warnings`).

use std::collections::{BTreeMap, HashMap};

use crate::image::error::ParamError;
use crate::image::format::{FormatChoice, OutputFormat};
use crate::image::hints::{self, ClientHints};
use crate::image::metadata::Metadata;
use crate::image::spec::{
    apply_dpr, Adjust, Border, Fit, Flip, Gravity, Limits, TransformSpec, Trim, TrimBorder,
};
pub use crate::image::values::percent_decode;
use crate::image::values::{self, quoted};

/// A preset: a partial set of parameters (each `None` = not set by the preset).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Preset {
    pub width: Option<u32>,
    /// `width=auto`: `Some(true)`; a number after it: `Some(false)`.
    pub width_auto: Option<bool>,
    pub height: Option<u32>,
    pub dpr: Option<f32>,
    pub fit: Option<Fit>,
    pub gravity: Option<Gravity>,
    pub format: Option<FormatChoice>,
    pub quality: Option<u8>,
    pub background: Option<[u8; 3]>,
    pub trim: Option<Trim>,
    pub trim_border: Option<TrimBorder>,
    pub rotate: Option<u16>,
    pub flip: Option<Flip>,
    pub brightness: Option<Option<f32>>,
    pub contrast: Option<Option<f32>>,
    pub gamma: Option<Option<f32>>,
    pub saturation: Option<Option<f32>>,
    pub blur: Option<Option<f32>>,
    pub sharpen: Option<Option<f32>>,
    pub border: Option<Border>,
    pub fast: Option<bool>,
    pub onerror_redirect: Option<bool>,
    /// `format=json` (kept apart from `format`: a later `format=` in the URL replaces it).
    pub json: Option<bool>,
    pub anim: Option<bool>,
    pub metadata: Option<Metadata>,
}

impl Preset {
    /// `other`'s values override `self`'s.
    fn overlay(&self, other: &Preset) -> Preset {
        Preset {
            width: other.width.or(self.width),
            width_auto: other.width_auto.or(self.width_auto),
            height: other.height.or(self.height),
            dpr: other.dpr.or(self.dpr),
            fit: other.fit.or(self.fit),
            gravity: other.gravity.or(self.gravity),
            format: other.format.or(self.format),
            quality: other.quality.or(self.quality),
            background: other.background.or(self.background),
            trim: other.trim.or(self.trim),
            trim_border: other.trim_border.or(self.trim_border),
            rotate: other.rotate.or(self.rotate),
            flip: other.flip.or(self.flip),
            brightness: other.brightness.or(self.brightness),
            contrast: other.contrast.or(self.contrast),
            gamma: other.gamma.or(self.gamma),
            saturation: other.saturation.or(self.saturation),
            blur: other.blur.or(self.blur),
            sharpen: other.sharpen.or(self.sharpen),
            border: other.border.or(self.border),
            fast: other.fast.or(self.fast),
            onerror_redirect: other.onerror_redirect.or(self.onerror_redirect),
            json: other.json.or(self.json),
            anim: other.anim.or(self.anim),
            metadata: other.metadata.or(self.metadata),
        }
    }

    /// Checks the preset against the limits (for config validation).
    pub fn validate(&self, limits: &Limits) -> Result<TransformSpec, ParamError> {
        finalize(self, limits, &ClientHints::default())
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
pub(crate) enum Key {
    Width,
    Height,
    Dpr,
    Fit,
    Gravity,
    Format,
    Quality,
    Background,
    Preset,
    Trim,
    TrimSide(Side),
    /// `trim.border.color`, `.tolerance`, `.keep`.
    TrimBorder(Side),
    Rotate,
    Flip,
    Brightness,
    Contrast,
    Gamma,
    Saturation,
    Blur,
    Sharpen,
    Border,
    Compression,
    OnError,
    Anim,
    Metadata,
    /// A Cloudflare option imgedge refuses (400 before any origin request), with the reason.
    Unsupported(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Top,
    Right,
    Bottom,
    Left,
    Width,
    Height,
    Colour,
    Tolerance,
    Keep,
}

const LATER: &str = "not supported by imgedge (yet)";
const NO_FACES: &str = "not supported by imgedge (it needs face detection)";

/// Every parameter name imgedge takes as a transform parameter: Cloudflare's option names
/// (implemented, or refused with a reason), their short aliases and `preset`. Any other name
/// is forwarded to the origin untouched. The one list of known names (for suggestions too).
pub(crate) const PARAMS: &[(&str, Key)] = &[
    ("width", Key::Width),
    ("w", Key::Width),
    ("height", Key::Height),
    ("h", Key::Height),
    ("dpr", Key::Dpr),
    ("fit", Key::Fit),
    ("gravity", Key::Gravity),
    ("g", Key::Gravity),
    ("format", Key::Format),
    ("f", Key::Format),
    ("quality", Key::Quality),
    ("q", Key::Quality),
    ("background", Key::Background),
    ("preset", Key::Preset),
    ("trim", Key::Trim),
    ("trim.top", Key::TrimSide(Side::Top)),
    ("trim.right", Key::TrimSide(Side::Right)),
    ("trim.bottom", Key::TrimSide(Side::Bottom)),
    ("trim.left", Key::TrimSide(Side::Left)),
    ("trim.width", Key::TrimSide(Side::Width)),
    ("trim.height", Key::TrimSide(Side::Height)),
    ("rotate", Key::Rotate),
    ("flip", Key::Flip),
    ("brightness", Key::Brightness),
    ("contrast", Key::Contrast),
    ("gamma", Key::Gamma),
    ("saturation", Key::Saturation),
    ("blur", Key::Blur),
    ("sharpen", Key::Sharpen),
    ("border", Key::Border),
    ("compression", Key::Compression),
    ("anim", Key::Anim),
    ("metadata", Key::Metadata),
    ("onerror", Key::OnError),
    ("slow-connection-quality", Key::Unsupported(LATER)),
    (
        "origin-auth",
        Key::Unsupported("not supported by imgedge (origin requests carry no client credentials)"),
    ),
    (
        "segment",
        Key::Unsupported("not supported by imgedge (it needs a segmentation model)"),
    ),
    ("zoom", Key::Unsupported(NO_FACES)),
    ("trim.border.color", Key::TrimBorder(Side::Colour)),
    ("trim.border.tolerance", Key::TrimBorder(Side::Tolerance)),
    ("trim.border.keep", Key::TrimBorder(Side::Keep)),
];

/// Every name of [`PARAMS`].
pub fn known_names() -> impl Iterator<Item = &'static str> {
    PARAMS.iter().map(|(n, _)| *n)
}

/// The names of the transform parameters (what a look-alike is compared with).
pub fn names() -> impl Iterator<Item = &'static str> {
    PARAMS.iter().map(|(name, _)| *name)
}

/// Whether `k` is a transform parameter's name.
pub fn is_param(k: &str) -> bool {
    key_kind(k).is_some()
}

fn key_kind(k: &str) -> Option<Key> {
    PARAMS.iter().find(|(n, _)| *n == k).map(|(_, key)| *key)
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

/// Most pixels a `trim` or `border` side may name.
const MAX_SIDE: u32 = 100_000;
/// Largest blur radius (Cloudflare's range is 1-250).
const MAX_BLUR: f32 = 250.0;

/// Parses one transform parameter into `p` (not `preset`).
fn apply(p: &mut Preset, key: Key, name: &str, v: &str) -> Result<(), ParamError> {
    let err = |problem: String| ParamError::new(name, problem);
    match key {
        Key::Width if v == "auto" => (p.width, p.width_auto) = (None, Some(true)),
        Key::Width => (p.width, p.width_auto) = (Some(parse_positive(name, v)?), Some(false)),
        Key::Height => p.height = Some(parse_positive(name, v)?),
        Key::Dpr => p.dpr = Some(values::number(v, 1.0, 4.0).map_err(err)?),
        Key::Fit => {
            p.fit = Some(Fit::parse(v).ok_or_else(|| {
                err(format!(
                    "{} is not one of scale-down, contain, cover, crop, pad, squeeze",
                    quoted(v)
                ))
            })?)
        }
        Key::Gravity => {
            if v == "face" {
                return Err(err(format!("\"face\" is {NO_FACES}")));
            }
            p.gravity = Some(Gravity::parse(v).or_else(|| values::focal(v)).ok_or_else(|| {
                err(format!(
                    "{} is not one of auto, center, top, bottom, left, right, top-left, top-right, bottom-left, bottom-right, or XxY from 0 to 1",
                    quoted(v)
                ))
            })?)
        }
        Key::Format if v == "json" => p.json = Some(true),
        Key::Format => {
            p.format = Some(parse_format(name, v)?);
            p.json = Some(false);
        }
        Key::Quality => p.quality = Some(values::quality(v).map_err(err)?),
        Key::Background => p.background = Some(values::colour(v).map_err(err)?),
        Key::Trim if v == "border" => {
            p.trim_border.get_or_insert_with(TrimBorder::default);
        }
        Key::Trim => p.trim = Some(values::trim(v, MAX_SIDE).map_err(err)?),
        Key::TrimBorder(part) => {
            let t = p.trim_border.get_or_insert_with(TrimBorder::default);
            match part {
                Side::Colour => t.colour = Some(values::colour(v).map_err(err)?),
                Side::Tolerance => t.tolerance = Some(values::tolerance(v).map_err(err)?),
                _ => t.keep = values::pixels(v, MAX_SIDE).map_err(err)?,
            }
        }
        Key::TrimSide(side) => {
            let n = values::pixels(v, MAX_SIDE).map_err(err)?;
            let t = p.trim.get_or_insert_with(Trim::default);
            match side {
                Side::Top => t.top = n,
                Side::Right => t.right = n,
                Side::Bottom => t.bottom = n,
                Side::Left => t.left = n,
                Side::Width => t.width = Some(n.max(1)),
                _ => t.height = Some(n.max(1)),
            }
        }
        Key::Rotate => p.rotate = Some(values::rotate(v).map_err(err)?),
        Key::Flip => p.flip = Some(values::flip(v).map_err(err)?),
        Key::Brightness => p.brightness = Some(values::factor(v, 10.0).map_err(err)?),
        Key::Contrast => p.contrast = Some(values::factor(v, 10.0).map_err(err)?),
        Key::Gamma => p.gamma = Some(values::factor(v, 10.0).map_err(err)?),
        Key::Saturation => {
            // 0 is greyscale here, not "unchanged"
            let s = values::number(v, 0.0, 10.0).map_err(err)?;
            p.saturation = Some((s != 1.0).then_some(s));
        }
        Key::Blur => {
            let b = values::number(v, 0.0, MAX_BLUR).map_err(err)?;
            p.blur = Some((b > 0.0).then_some(b));
        }
        Key::Sharpen => {
            let s = values::number(v, 0.0, 10.0).map_err(err)?;
            p.sharpen = Some((s > 0.0).then_some(s));
        }
        Key::Border => p.border = Some(values::border(v, MAX_SIDE).map_err(err)?),
        Key::Compression => match v {
            "fast" => p.fast = Some(true),
            _ => return Err(err(format!("{} is not fast", quoted(v)))),
        },
        Key::OnError => match v {
            "redirect" => p.onerror_redirect = Some(true),
            _ => return Err(err(format!("{} is not redirect", quoted(v)))),
        },
        Key::Anim => match v {
            "true" => p.anim = Some(true),
            "false" => p.anim = Some(false),
            _ => return Err(err(format!("{} is not true or false", quoted(v)))),
        },
        Key::Metadata => {
            p.metadata =
                Some(Metadata::parse(v).ok_or_else(|| {
                    err(format!("{} is not one of copyright, keep, none", quoted(v)))
                })?)
        }
        Key::Unsupported(why) => return Err(err(why.to_string())),
        Key::Preset => return Err(err("a preset cannot name another preset".to_string())),
    }
    Ok(())
}

fn parse_format(name: &str, v: &str) -> Result<FormatChoice, ParamError> {
    match v {
        "auto" => Ok(FormatChoice::Auto),
        // Our JPEG is always baseline (see the URL API table: `jpeg` is not progressive).
        "baseline-jpeg" => Ok(FormatChoice::Fixed(OutputFormat::Jpeg)),
        _ => OutputFormat::parse(v)
            .map(FormatChoice::Fixed)
            .ok_or_else(|| {
                ParamError::new(
                    name,
                    format!(
                        "{} is not one of auto, avif, webp, jpeg, baseline-jpeg, png, json",
                        quoted(v)
                    ),
                )
            }),
    }
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

/// Applies the limits and defaults; `width=auto` takes its width from `hints`.
fn finalize(p: &Preset, limits: &Limits, hints: &ClientHints) -> Result<TransformSpec, ParamError> {
    let dpr = p.dpr.unwrap_or(1.0);
    let mut p = p.clone();
    let auto_width = (p.width_auto == Some(true)).then(|| {
        let (w, used) = hints::css_width(hints, limits.max_width, dpr);
        p.width = Some(w);
        used
    });
    let p = &p;
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
    let json = p.json.unwrap_or(false);
    // format=json makes no image: the source's format stands for the one it does not encode.
    let format = match json {
        true => FormatChoice::Source,
        false => p.format.unwrap_or(FormatChoice::Source),
    };
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
    let trim = p.trim.filter(|t| *t != Trim::default());
    if trim.is_some() && p.trim_border.is_some() {
        return Err(ParamError::new(
            "trim",
            "border (automatic) and pixel counts cannot be combined",
        ));
    }
    let border = p.border.filter(|b| !b.is_empty()).map(|b| {
        let d = |v: u32| {
            if v == 0 {
                0
            } else {
                apply_dpr(v, dpr).min(MAX_SIDE as u64) as u32
            }
        };
        Border {
            top: d(b.top),
            right: d(b.right),
            bottom: d(b.bottom),
            left: d(b.left),
            ..b
        }
    });
    Ok(TransformSpec {
        width: p.width,
        auto_width,
        height: p.height,
        dpr,
        fit: p.fit.unwrap_or_default(),
        gravity: p.gravity.unwrap_or_default(),
        format,
        quality: p.quality,
        background: p.background,
        trim,
        trim_border: p.trim_border,
        rotate: p.rotate.unwrap_or(0),
        flip: p.flip.unwrap_or_default(),
        adjust: Adjust {
            brightness: p.brightness.flatten(),
            contrast: p.contrast.flatten(),
            gamma: p.gamma.flatten(),
            saturation: p.saturation.flatten(),
            blur: p.blur.flatten(),
            sharpen: p.sharpen.flatten(),
        },
        border,
        fast: p.fast.unwrap_or(false),
        onerror_redirect: p.onerror_redirect.unwrap_or(false),
        anim: p.anim.unwrap_or(true),
        json,
        metadata: p.metadata.unwrap_or_default(),
    })
}

/// Parses the request's query string: what follows the URL's first `?`, without it. A further
/// `?` is part of a name (`??w=1` has the parameter `?w`, not `w`): stripping it here made a
/// forwarded `&?w=1` a transform parameter again for the next hop (an upstream shield).
pub fn parse_query(
    query: Option<&str>,
    limits: &Limits,
    presets: &Presets,
) -> Result<ParsedQuery, ParamError> {
    parse_query_hinted(query, limits, presets, &ClientHints::default())
}

/// [`parse_query`] with the request's client hints (for `width=auto`).
pub fn parse_query_hinted(
    query: Option<&str>,
    limits: &Limits,
    presets: &Presets,
    hints: &ClientHints,
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
        transform: Some(finalize(&merged, limits, hints)?),
        forward_query,
        signature,
    })
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod tests;
