//! Source and output formats, what the URL asks for, `Accept` negotiation and the source
//! format a `Content-Type` names (sniffing the bytes is `codec::sniff`).

/// Formats the core can decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
    /// Rasterized when a size or a raster format is asked; else served as a sanitized SVG.
    Svg,
}

impl SourceFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "jpeg",
            SourceFormat::Png => "png",
            SourceFormat::Webp => "webp",
            SourceFormat::Gif => "gif",
            SourceFormat::Svg => "svg",
        }
    }

    /// The output format used for "same as source" when a still is made: GIF becomes PNG
    /// (its first frame; an animation kept is `image::animation::output_format`'s choice), and
    /// so does a rasterized SVG.
    pub fn same_output(&self) -> OutputFormat {
        match self {
            SourceFormat::Jpeg => OutputFormat::Jpeg,
            SourceFormat::Png | SourceFormat::Gif | SourceFormat::Svg => OutputFormat::Png,
            SourceFormat::Webp => OutputFormat::Webp,
        }
    }
}

/// Formats the core can encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    Avif,
    Webp,
    Jpeg,
    Png,
    /// Made for animations (`image::animation`); a still GIF source kept as GIF.
    Gif,
}

impl OutputFormat {
    pub const ALL: [OutputFormat; 5] = [
        OutputFormat::Avif,
        OutputFormat::Webp,
        OutputFormat::Jpeg,
        OutputFormat::Png,
        OutputFormat::Gif,
    ];

    pub fn content_type(&self) -> &'static str {
        match self {
            OutputFormat::Avif => "image/avif",
            OutputFormat::Webp => "image/webp",
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Png => "image/png",
            OutputFormat::Gif => "image/gif",
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            OutputFormat::Avif => "avif",
            OutputFormat::Webp => "webp",
            OutputFormat::Jpeg => "jpeg",
            OutputFormat::Png => "png",
            OutputFormat::Gif => "gif",
        }
    }

    /// Parses a user-facing format name (`jpg` is an alias of `jpeg`); not `auto`.
    pub fn parse(s: &str) -> Option<OutputFormat> {
        match s {
            "avif" => Some(OutputFormat::Avif),
            "webp" => Some(OutputFormat::Webp),
            "jpeg" | "jpg" => Some(OutputFormat::Jpeg),
            "png" => Some(OutputFormat::Png),
            "gif" => Some(OutputFormat::Gif),
            _ => None,
        }
    }

    /// Whether the format can carry an alpha channel.
    pub fn has_alpha(&self) -> bool {
        !matches!(self, OutputFormat::Jpeg)
    }
}

/// What the URL asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FormatChoice {
    /// `format=auto`: pick from the `Accept` header.
    Auto,
    /// `format=avif|webp|jpeg|png`.
    Fixed(OutputFormat),
    /// No format parameter: same as the source.
    Source,
}

impl FormatChoice {
    /// True when the response depends on the request's `Accept` header (needs `Vary: Accept`).
    pub fn varies_on_accept(&self) -> bool {
        matches!(self, FormatChoice::Auto)
    }
}

/// The negotiated output: a definite format, or "same as the source", which the caller
/// resolves ([`Negotiated::resolve`]) against the source format it knows (the proxy: from the
/// `Content-Type`) before calling the pipeline, which takes a plain [`OutputFormat`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Negotiated {
    Format(OutputFormat),
    Source,
}

impl Negotiated {
    /// The output format for a source of format `source`.
    pub fn resolve(&self, source: SourceFormat) -> OutputFormat {
        match self {
            Negotiated::Format(f) => *f,
            Negotiated::Source => source.same_output(),
        }
    }

    /// `Some(format)` when known before the source is seen (for `TransformSpec::canonical`).
    pub fn format(&self) -> Option<OutputFormat> {
        match self {
            Negotiated::Format(f) => Some(*f),
            Negotiated::Source => None,
        }
    }
}

/// Picks the output format. `Auto`: AVIF if `Accept` lists `image/avif` (with q > 0) and
/// `avif_enabled`, else WebP if it lists `image/webp`, else the source's format. Wildcards
/// (`image/*`, `*/*`) do not count. Only `Auto` needs `Vary: Accept`
/// ([`FormatChoice::varies_on_accept`]).
pub fn negotiate(choice: FormatChoice, accept: Option<&str>, avif_enabled: bool) -> Negotiated {
    match choice {
        FormatChoice::Fixed(f) => Negotiated::Format(f),
        FormatChoice::Source => Negotiated::Source,
        FormatChoice::Auto => {
            let accept = accept.unwrap_or("");
            if avif_enabled && accepts(accept, "image/avif") {
                Negotiated::Format(OutputFormat::Avif)
            } else if accepts(accept, "image/webp") {
                Negotiated::Format(OutputFormat::Webp)
            } else {
                Negotiated::Source
            }
        }
    }
}

/// Like [`negotiate`], honouring an allow-list (empty = all): a format that is not allowed is
/// never chosen by `Auto`.
pub fn negotiate_allowed(
    choice: FormatChoice,
    accept: Option<&str>,
    allowed: &[OutputFormat],
) -> Negotiated {
    let ok = |f: OutputFormat| allowed.is_empty() || allowed.contains(&f);
    match choice {
        FormatChoice::Auto if !ok(OutputFormat::Webp) => {
            match negotiate(choice, accept, ok(OutputFormat::Avif)) {
                Negotiated::Format(OutputFormat::Webp) => Negotiated::Source,
                n => n,
            }
        }
        _ => negotiate(choice, accept, ok(OutputFormat::Avif)),
    }
}

fn accepts(accept: &str, mime: &str) -> bool {
    accept.split(',').any(|range| {
        let mut it = range.split(';');
        let t = it.next().unwrap_or("").trim();
        if !t.eq_ignore_ascii_case(mime) {
            return false;
        }
        for p in it {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    match v.trim().parse::<f32>() {
                        Ok(q) if q > 0.0 => {}
                        _ => return false,
                    }
                }
            }
        }
        true
    })
}

/// Maps a `Content-Type` value (parameters and case ignored) to a source format.
pub fn source_format_from_content_type(ct: &str) -> Option<SourceFormat> {
    let mime = ct.split(';').next().unwrap_or("").trim();
    let eq = |s: &str| mime.eq_ignore_ascii_case(s);
    if eq("image/jpeg") || eq("image/jpg") || eq("image/pjpeg") {
        Some(SourceFormat::Jpeg)
    } else if eq("image/png") {
        Some(SourceFormat::Png)
    } else if eq("image/webp") {
        Some(SourceFormat::Webp)
    } else if eq("image/gif") {
        Some(SourceFormat::Gif)
    } else if eq("image/svg+xml") {
        Some(SourceFormat::Svg)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";

    #[test]
    fn negotiate_auto() {
        let a = FormatChoice::Auto;
        assert_eq!(
            negotiate(a, Some(CHROME), true),
            Negotiated::Format(OutputFormat::Avif)
        );
        assert_eq!(
            negotiate(a, Some(CHROME), false),
            Negotiated::Format(OutputFormat::Webp)
        );
        assert_eq!(
            negotiate(a, Some("image/webp,*/*"), true),
            Negotiated::Format(OutputFormat::Webp)
        );
        assert_eq!(
            negotiate(a, Some("IMAGE/AVIF ; q=0.5"), true),
            Negotiated::Format(OutputFormat::Avif)
        );
        assert_eq!(
            negotiate(a, Some("image/avif;q=0, image/webp;q=0"), true),
            Negotiated::Source
        );
        assert_eq!(negotiate(a, Some("image/*,*/*"), true), Negotiated::Source);
        assert_eq!(negotiate(a, None, true), Negotiated::Source);
        assert!(a.varies_on_accept());
    }

    #[test]
    fn negotiate_fixed_and_source() {
        let f = FormatChoice::Fixed(OutputFormat::Png);
        assert_eq!(
            negotiate(f, Some(CHROME), true),
            Negotiated::Format(OutputFormat::Png)
        );
        assert!(!f.varies_on_accept());
        assert_eq!(
            negotiate(FormatChoice::Source, Some(CHROME), true),
            Negotiated::Source
        );
        assert!(!FormatChoice::Source.varies_on_accept());
        assert_eq!(
            Negotiated::Source.resolve(SourceFormat::Gif),
            OutputFormat::Png
        );
        assert_eq!(
            Negotiated::Source.resolve(SourceFormat::Jpeg),
            OutputFormat::Jpeg
        );
        let only_jpeg = [OutputFormat::Jpeg];
        assert_eq!(
            negotiate_allowed(FormatChoice::Auto, Some(CHROME), &only_jpeg),
            Negotiated::Source
        );
        assert_eq!(
            negotiate_allowed(FormatChoice::Auto, Some(CHROME), &[]),
            Negotiated::Format(OutputFormat::Avif)
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            source_format_from_content_type("Image/JPEG; charset=x"),
            Some(SourceFormat::Jpeg)
        );
        assert_eq!(
            source_format_from_content_type("image/pjpeg"),
            Some(SourceFormat::Jpeg)
        );
        assert_eq!(
            source_format_from_content_type("image/jpg"),
            Some(SourceFormat::Jpeg)
        );
        assert_eq!(
            source_format_from_content_type(" image/png "),
            Some(SourceFormat::Png)
        );
        assert_eq!(
            source_format_from_content_type("image/webp"),
            Some(SourceFormat::Webp)
        );
        assert_eq!(
            source_format_from_content_type("image/gif"),
            Some(SourceFormat::Gif)
        );
        assert_eq!(
            source_format_from_content_type("image/svg+xml"),
            Some(SourceFormat::Svg)
        );
        assert_eq!(source_format_from_content_type("text/html"), None);
    }
}
