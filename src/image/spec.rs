//! A validated transform (`TransformSpec` with its `Fit` and `Gravity`), its canonical forms
//! (cache key, what a signature covers, the query forwarded to a shield) and the operator's
//! `Limits`. Parsing it from a URL or a preset is `params.rs`.

use crate::image::format::{FormatChoice, OutputFormat};
use crate::image::hints::HintsUsed;
use crate::image::metadata::Metadata;

/// How the image is fitted into `width` x `height`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Fit {
    /// Fit inside, never enlarge (default).
    #[default]
    ScaleDown,
    /// Fit inside, may enlarge.
    Contain,
    /// Fill exactly, cropping the overflow by gravity (may enlarge).
    Cover,
    /// Like cover but never enlarges: a smaller source is only cropped to at most w x h.
    Crop,
    /// Contain, then pad to exactly w x h with the background (placed by gravity).
    Pad,
    /// Stretch to exactly w x h, the aspect ratio not kept (one bound alone: contain).
    Squeeze,
}

impl Fit {
    pub fn as_str(&self) -> &'static str {
        match self {
            Fit::ScaleDown => "scale-down",
            Fit::Contain => "contain",
            Fit::Cover => "cover",
            Fit::Crop => "crop",
            Fit::Pad => "pad",
            Fit::Squeeze => "squeeze",
        }
    }
    /// Parses a user-facing fit name.
    pub(crate) fn parse(s: &str) -> Option<Fit> {
        Some(match s {
            "scale-down" => Fit::ScaleDown,
            "contain" => Fit::Contain,
            "cover" => Fit::Cover,
            "crop" => Fit::Crop,
            "pad" => Fit::Pad,
            "squeeze" => Fit::Squeeze,
            _ => return None,
        })
    }
}

/// Which part is kept when cropping (cover, crop) or where the image sits when padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Gravity {
    #[default]
    Center,
    Top,
    Bottom,
    Left,
    Right,
    TopLeft,
    TopRight,
    BottomLeft,
    BottomRight,
    /// `auto`: the most salient window for `cover`/`crop` (`ops::saliency`, chosen once the
    /// pixels are decoded); the centre for `pad`.
    Auto,
    /// `XxY`: the point (in ten-thousandths of the width and height, 0 = left/top) kept as
    /// near the middle of a crop as the image allows.
    Focal {
        x: u16,
        y: u16,
    },
}

impl Gravity {
    pub fn as_str(&self) -> &'static str {
        match self {
            Gravity::Center => "center",
            Gravity::Top => "top",
            Gravity::Bottom => "bottom",
            Gravity::Left => "left",
            Gravity::Right => "right",
            Gravity::TopLeft => "top-left",
            Gravity::TopRight => "top-right",
            Gravity::BottomLeft => "bottom-left",
            Gravity::BottomRight => "bottom-right",
            Gravity::Auto => "auto",
            Gravity::Focal { .. } => "focal",
        }
    }

    /// The user-facing value: the name, or `XxY` for a focal point.
    pub fn value(&self) -> String {
        match self {
            Gravity::Focal { x, y } => {
                format!("{}x{}", *x as f64 / 10000.0, *y as f64 / 10000.0)
            }
            g => g.as_str().to_string(),
        }
    }
    /// Parses a user-facing gravity name.
    pub(crate) fn parse(s: &str) -> Option<Gravity> {
        Some(match s {
            "center" | "centre" => Gravity::Center,
            "auto" => Gravity::Auto,
            "top" => Gravity::Top,
            "bottom" => Gravity::Bottom,
            "left" => Gravity::Left,
            "right" => Gravity::Right,
            "top-left" => Gravity::TopLeft,
            "top-right" => Gravity::TopRight,
            "bottom-left" => Gravity::BottomLeft,
            "bottom-right" => Gravity::BottomRight,
            _ => return None,
        })
    }
    /// Horizontal and vertical position of the kept area, 0 = left/top, 0.5 = centre, 1 = right/bottom.
    pub fn weights(&self) -> (f64, f64) {
        match self {
            Gravity::Center | Gravity::Auto => (0.5, 0.5),
            Gravity::Top => (0.5, 0.0),
            Gravity::Bottom => (0.5, 1.0),
            Gravity::Left => (0.0, 0.5),
            Gravity::Right => (1.0, 0.5),
            Gravity::TopLeft => (0.0, 0.0),
            Gravity::TopRight => (1.0, 0.0),
            Gravity::BottomLeft => (0.0, 1.0),
            Gravity::BottomRight => (1.0, 1.0),
            Gravity::Focal { x, y } => (*x as f64 / 10000.0, *y as f64 / 10000.0),
        }
    }
}

/// `flip`: mirror horizontally, vertically or both (applied before `rotate`, as Cloudflare does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Flip {
    #[default]
    None,
    H,
    V,
    HV,
}

impl Flip {
    pub fn as_str(&self) -> &'static str {
        match self {
            Flip::None => "",
            Flip::H => "h",
            Flip::V => "v",
            Flip::HV => "hv",
        }
    }
}

/// `trim`: pixels cut from each side of the (EXIF-upright) source before anything else;
/// `width`/`height`, when set, give the kept size instead of `right`/`bottom`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Trim {
    pub top: u32,
    pub right: u32,
    pub bottom: u32,
    pub left: u32,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// `trim=border` (and `trim.border.*`): cut the source's solid border, found once decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TrimBorder {
    /// The border's colour; `None`: the top-left pixel's.
    pub colour: Option<[u8; 3]>,
    /// How far (0-255, per channel) a border pixel may be from the colour; `None`: the default.
    pub tolerance: Option<u8>,
    /// Pixels of the border left around what is kept.
    pub keep: u32,
}

/// `border`: a solid frame added around the output (widths in output pixels, dpr applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Border {
    pub colour: [u8; 3],
    pub top: u32,
    pub right: u32,
    pub bottom: u32,
    pub left: u32,
}

impl Border {
    pub fn is_empty(&self) -> bool {
        self.top == 0 && self.right == 0 && self.bottom == 0 && self.left == 0
    }
}

/// The colour and filter adjustments (each `None` = unchanged), in the order applied.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Adjust {
    pub brightness: Option<f32>,
    pub contrast: Option<f32>,
    pub gamma: Option<f32>,
    pub saturation: Option<f32>,
    pub blur: Option<f32>,
    pub sharpen: Option<f32>,
}

/// Operator limits (from config).
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub max_width: u32,
    pub max_height: u32,
    pub max_output_pixels: u64,
    pub max_source_pixels: u64,
    pub max_source_bytes: u64,
    pub default_quality: u8,
    /// rav1e speed 1 (slow, small) ..= 10 (fast).
    pub avif_speed: u8,
    /// Formats that may be produced; empty = all.
    pub allowed_formats: Vec<OutputFormat>,
    /// `transform.color_profile: keep`: an RGB source's own profile is not applied but
    /// embedded in the output (JPEG, PNG, WebP; AVIF output is converted to sRGB).
    pub keep_color_profile: bool,
    /// Most frames of an animation kept animated.
    pub max_animation_frames: u32,
    /// Most pixels of an animation kept animated: frames x canvas.
    pub max_animation_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_width: 4096,
            max_height: 4096,
            max_output_pixels: 4096 * 4096,
            max_source_pixels: 100_000_000,
            max_source_bytes: 32 * 1024 * 1024,
            default_quality: 80,
            avif_speed: 10,
            allowed_formats: Vec::new(),
            keep_color_profile: false,
            max_animation_frames: 1000,
            max_animation_pixels: 50_000_000,
        }
    }
}

impl Limits {
    pub fn allows(&self, f: OutputFormat) -> bool {
        self.allowed_formats.is_empty() || self.allowed_formats.contains(&f)
    }
}

/// A validated transform. `width`/`height` are as written; use [`TransformSpec::target_width`]
/// / [`TransformSpec::target_height`] for the dpr-multiplied sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformSpec {
    pub width: Option<u32>,
    /// `width=auto`: `width` came from these client hints (or their absence).
    pub auto_width: Option<HintsUsed>,
    pub height: Option<u32>,
    /// 1.0 ..= 4.0
    pub dpr: f32,
    pub fit: Fit,
    pub gravity: Gravity,
    pub format: FormatChoice,
    pub quality: Option<u8>,
    pub background: Option<[u8; 3]>,
    pub trim: Option<Trim>,
    pub trim_border: Option<TrimBorder>,
    /// 0, 90, 180 or 270 degrees clockwise, after the EXIF orientation and `flip`.
    pub rotate: u16,
    pub flip: Flip,
    pub adjust: Adjust,
    /// Widths already multiplied by dpr.
    pub border: Option<Border>,
    /// `compression=fast`: `format=auto` never picks AVIF (the slow encoder).
    pub fast: bool,
    /// `onerror=redirect`: a source that cannot be transformed is answered with a redirect to
    /// the original. Not in the cache key (a variant made is the same bytes either way).
    pub onerror_redirect: bool,
    /// `format=json`: the output's and the original's sizes as JSON instead of an image
    /// (`image::info`); `format` is then `Source`.
    pub json: bool,
    /// `anim` (default true): an animated source stays animated in GIF and WebP output;
    /// `false`: its first frame only (`image::animation`).
    pub anim: bool,
    /// `metadata=`: what the output keeps of the source's EXIF and XMP.
    pub metadata: Metadata,
}

impl Default for TransformSpec {
    fn default() -> Self {
        TransformSpec {
            width: None,
            auto_width: None,
            height: None,
            dpr: 1.0,
            fit: Fit::ScaleDown,
            gravity: Gravity::Center,
            format: FormatChoice::Source,
            quality: None,
            background: None,
            trim: None,
            trim_border: None,
            rotate: 0,
            flip: Flip::None,
            adjust: Adjust::default(),
            border: None,
            fast: false,
            onerror_redirect: false,
            json: false,
            anim: true,
            metadata: Metadata::Copyright,
        }
    }
}

/// A size multiplied by dpr, at least 1.
pub(crate) fn apply_dpr(v: u32, dpr: f32) -> u64 {
    ((v as f64) * (dpr as f64)).round().max(1.0) as u64
}

impl TransformSpec {
    /// Output width bound in pixels (width x dpr).
    pub fn target_width(&self) -> Option<u32> {
        self.width
            .map(|w| apply_dpr(w, self.dpr).min(u32::MAX as u64) as u32)
    }
    pub fn target_height(&self) -> Option<u32> {
        self.height
            .map(|h| apply_dpr(h, self.dpr).min(u32::MAX as u64) as u32)
    }

    /// Canonical form for cache keys: fixed order `w,h,fit,g,f,q,bg`, dpr folded into w/h,
    /// defaults dropped (fit=scale-down, gravity=center or irrelevant to the fit), q dropped for
    /// PNG output. `chosen` is the negotiated output format (`Negotiated::format()`); `None` means
    /// "same as source" and then only a fixed `format=` of the spec is written.
    pub fn canonical(&self, chosen: Option<OutputFormat>) -> String {
        let parts: Vec<String> = self
            .canonical_params(chosen)
            .into_iter()
            .map(|(short, _, v)| format!("{short}={v}"))
            .collect();
        parts.join(",")
    }

    /// The canonical parameters in their fixed order: (short name, URL name, value).
    fn canonical_params(
        &self,
        chosen: Option<OutputFormat>,
    ) -> Vec<(&'static str, &'static str, String)> {
        let mut p = Vec::with_capacity(7);
        if let Some(w) = self.target_width() {
            p.push(("w", "width", w.to_string()));
        }
        if let Some(h) = self.target_height() {
            p.push(("h", "height", h.to_string()));
        }
        if self.fit != Fit::ScaleDown {
            p.push(("fit", "fit", self.fit.as_str().to_string()));
        }
        let crops = matches!(self.fit, Fit::Cover | Fit::Crop);
        // `auto` places a pad like the centre: one cache entry for both
        let placed = crops || (self.fit == Fit::Pad && self.gravity != Gravity::Auto);
        if placed && self.gravity != Gravity::Center {
            p.push(("g", "gravity", self.gravity.value()));
        }
        let fmt = chosen.or(match self.format {
            FormatChoice::Fixed(f) => Some(f),
            _ => None,
        });
        if self.json {
            p.push(("f", "format", "json".to_string()));
        } else if let Some(f) = fmt {
            p.push(("f", "format", f.as_str().to_string()));
        }
        if let Some(q) = self.quality {
            if fmt != Some(OutputFormat::Png) && !self.json {
                p.push(("q", "quality", q.to_string()));
            }
        }
        if let Some([r, g, b]) = self.background {
            p.push(("bg", "background", format!("{r:02x}{g:02x}{b:02x}")));
        }
        // Newer options come after, so that the keys and signatures of older URLs are unchanged.
        self.effect_params(&mut p);
        p
    }

    fn effect_params(&self, p: &mut Vec<(&'static str, &'static str, String)>) {
        if let Some(t) = self.trim {
            let sides = format!("{};{};{};{}", t.top, t.right, t.bottom, t.left);
            p.push(("trim", "trim", sides));
            if let Some(w) = t.width {
                p.push(("trim.w", "trim.width", w.to_string()));
            }
            if let Some(h) = t.height {
                p.push(("trim.h", "trim.height", h.to_string()));
            }
        }
        if let Some(t) = self.trim_border {
            p.push(("trim", "trim", "border".to_string()));
            if let Some([r, g, b]) = t.colour {
                p.push(("tbc", "trim.border.color", format!("{r:02x}{g:02x}{b:02x}")));
            }
            if let Some(n) = t.tolerance {
                p.push(("tbt", "trim.border.tolerance", n.to_string()));
            }
            if t.keep != 0 {
                p.push(("tbk", "trim.border.keep", t.keep.to_string()));
            }
        }
        if self.rotate != 0 {
            p.push(("rot", "rotate", self.rotate.to_string()));
        }
        if self.flip != Flip::None {
            p.push(("flip", "flip", self.flip.as_str().to_string()));
        }
        let a = &self.adjust;
        for (short, name, v) in [
            ("bri", "brightness", a.brightness),
            ("con", "contrast", a.contrast),
            ("gam", "gamma", a.gamma),
            ("sat", "saturation", a.saturation),
            ("blur", "blur", a.blur),
            ("sharpen", "sharpen", a.sharpen),
        ] {
            if let Some(v) = v {
                p.push((short, name, v.to_string()));
            }
        }
        if let Some(b) = self.border {
            let [r, g, bl] = b.colour;
            let v = format!(
                "color:{r:02x}{g:02x}{bl:02x};top:{};right:{};bottom:{};left:{}",
                b.top, b.right, b.bottom, b.left
            );
            p.push(("border", "border", v));
        }
        if self.fast {
            p.push(("c", "compression", "fast".to_string()));
        }
        if !self.anim {
            p.push(("anim", "anim", "false".to_string()));
        }
        // the default (copyright) is not written: older keys and signatures stay as they were
        if self.metadata != Metadata::Copyright && !self.json {
            p.push(("meta", "metadata", self.metadata.as_str().to_string()));
        }
    }
}

impl TransformSpec {
    /// What a URL signature covers: the canonical transform as asked (before `format=auto` is
    /// negotiated against `Accept`, which the signer cannot know).
    pub fn signed_form(&self) -> String {
        // `width=auto` is signed as written: the width it resolves to is the client's
        let (asked, auto) = match self.auto_width {
            Some(_) => (
                TransformSpec {
                    width: None,
                    auto_width: None,
                    ..self.clone()
                },
                true,
            ),
            None => (self.clone(), false),
        };
        let mut c = asked.canonical(None);
        if auto {
            c = if c.is_empty() {
                "w=auto".to_string()
            } else {
                format!("w=auto,{c}")
            };
        }
        if self.format == FormatChoice::Auto {
            if !c.is_empty() {
                c.push(',');
            }
            c.push_str("f=auto");
        }
        if self.onerror_redirect {
            // Signed: whether a failure redirects to the original is the signer's choice.
            if !c.is_empty() {
                c.push(',');
            }
            c.push_str("onerror=redirect");
        }
        c
    }

    /// The canonical transform as URL parameters (`width=..&fit=..`), for forwarding a transform
    /// to an upstream imgedge (a shield): it parses back to the same canonical form there. dpr
    /// is folded into the sizes; `chosen` is the negotiated format as in [`Self::canonical`].
    pub fn to_query(&self, chosen: Option<OutputFormat>) -> String {
        let parts: Vec<String> = self
            .canonical_params(chosen)
            .into_iter()
            .map(|(_, name, v)| format!("{name}={v}"))
            .collect();
        if parts.is_empty() {
            // Every parameter at its default is still a transform (re-encode, strip metadata).
            return "fit=scale-down".to_string();
        }
        parts.join("&")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::params::{parse_query, Presets};

    fn spec(q: &str) -> TransformSpec {
        parse_query(Some(q), &Limits::default(), &Presets::new())
            .unwrap()
            .transform
            .unwrap()
    }

    #[test]
    fn canonical_equal() {
        let a = spec("w=400").canonical(None);
        assert_eq!(a, "w=400");
        assert_eq!(spec("width=400").canonical(None), a);
        assert_eq!(
            spec("width=400&fit=scale-down&gravity=top").canonical(None),
            a
        );
        assert_eq!(spec("width=400&dpr=1").canonical(None), a);
        assert_eq!(
            spec("width=200&dpr=2").canonical(None),
            spec("w=400").canonical(None)
        );
        let s = spec("q=75&format=auto&gravity=top&fit=cover&height=600&width=800");
        assert_eq!(
            s.canonical(Some(OutputFormat::Webp)),
            "w=800,h=600,fit=cover,g=top,f=webp,q=75"
        );
        assert_eq!(spec("format=png&q=50").canonical(None), "f=png");
        assert_eq!(
            spec("fit=pad&w=10&h=10&background=%23FFF").canonical(None),
            "w=10,h=10,fit=pad,bg=ffffff"
        );
        assert_eq!(
            spec("background=abcdef").background,
            Some([0xab, 0xcd, 0xef])
        );
        assert_eq!(spec("background=#abc").background, Some([0xaa, 0xbb, 0xcc]));
    }

    #[test]
    fn dpr() {
        let s = spec("w=333&h=100&dpr=1.5");
        assert_eq!(
            (s.target_width(), s.target_height()),
            (Some(500), Some(150))
        );
        assert_eq!(s.canonical(None), "w=500,h=150");
        assert_eq!(
            spec("dpr=2.0&w=10").canonical(None),
            spec("dpr=2&w=10").canonical(None)
        );
    }
}
