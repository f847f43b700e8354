//! SVG sanitizing: what an SVG from the origin may still do once served from the image host.
//!
//! Three passes, each on a real XML parser's output, never on regular expressions over markup:
//! 1. [`strip_doctype`]: the DOCTYPE (and with it every entity declaration) is cut from the
//!    prolog before any parser sees it, so a billion-laughs document has nothing to expand: its
//!    entity references are then undefined, and the parser refuses the document.
//! 2. Cloudflare's `svg-hush` (allow-lists of SVG elements and attributes on xml-rs): drops
//!    `<script>`, `on*` handlers, `foreignObject`, every non-SVG namespace, `<a href>`, and turns
//!    URLs into same-origin paths; `@import` and external `url()` leave CSS.
//! 3. [`fragments_only`]: stricter than svg-hush, which keeps same-origin paths (`/x.svg#a`):
//!    an `href` may only name a local `#id` (or, on `<image>`/`<feImage>`, hold a JPEG, PNG or
//!    GIF `data:` URL), and a CSS or presentation `url()` only a `#id`.

use crate::image::error::TransformError;
use std::borrow::Cow;
use xml::attribute::OwnedAttribute;
use xml::reader::XmlEvent as R;
use xml::writer::XmlEvent as W;

/// What is done to SVG sources (`transform.svg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SvgMode {
    /// Served sanitized, with a restrictive `Content-Security-Policy`; rasterized from the
    /// sanitized document.
    Sanitize,
    /// Served as the origin sent it (origins you trust); still rasterized when asked.
    Passthrough,
}

impl SvgMode {
    pub fn parse(s: &str) -> Option<SvgMode> {
        match s {
            "sanitize" => Some(SvgMode::Sanitize),
            "passthrough" => Some(SvgMode::Passthrough),
            _ => None,
        }
    }
}

/// Sanitizes an SVG document (UTF-8, as browsers and the image host serve it): the result is
/// a well-formed SVG without scripts, event handlers, `foreignObject`, external references or
/// a DOCTYPE. A document that is not well-formed XML, uses undeclared entities or holds no SVG
/// element is refused (`Corrupt`).
pub fn sanitize(src: &[u8]) -> Result<Vec<u8>, TransformError> {
    let bad = |what: &str| TransformError::Corrupt(format!("SVG {what}"));
    let text = std::str::from_utf8(src.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(src))
        .map_err(|_| bad("is not UTF-8"))?;
    let text = strip_doctype(text).ok_or_else(|| bad("has an unterminated DOCTYPE"))?;
    let mut filter = svg_hush::Filter::new();
    filter.set_data_url_filter(svg_hush::data_url_filter::allow_standard_images);
    let mut hushed = Vec::with_capacity(text.len());
    filter.filter(text.as_bytes(), &mut hushed).map_err(|e| {
        match std::error::Error::source(&e) {
            Some(cause) => bad(&format!("refused: {e}: {}", one_line(cause))),
            None => bad(&format!("refused: {e}")),
        }
    })?;
    fragments_only(&hushed).map_err(|e| bad(&format!("refused: {}", one_line(&e))))
}

fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().replace('\n', " ")
}

/// The text without its DOCTYPE declaration (internal subset included); `None` when one starts
/// but never ends. Only the prolog (before the first element) can hold a DOCTYPE; a
/// `<!DOCTYPE` or `<!ENTITY` after it is an XML error the parser reports.
pub fn strip_doctype(text: &str) -> Option<Cow<'_, str>> {
    let b = text.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let rest = &b[i..];
        if rest.starts_with(b"<?") {
            i += find(rest, b"?>")? + 2;
        } else if rest.starts_with(b"<!--") {
            i += find(rest, b"-->")? + 3;
        } else if rest.len() >= 9 && rest[..9].eq_ignore_ascii_case(b"<!DOCTYPE") {
            let end = i + doctype_len(rest)?;
            return Some(Cow::Owned(format!("{}{}", &text[..i], &text[end..])));
        } else {
            return Some(Cow::Borrowed(text));
        }
    }
}

/// Length of the DOCTYPE declaration at the start of `b`: up to the `>` outside quotes, the
/// internal subset's brackets, and the comments and processing instructions inside it.
fn doctype_len(b: &[u8]) -> Option<usize> {
    let mut i = 9;
    let mut depth = 0usize;
    while i < b.len() {
        let rest = &b[i..];
        match b[i] {
            q @ (b'"' | b'\'') => i += 1 + b[i + 1..].iter().position(|&c| c == q)? + 1,
            _ if rest.starts_with(b"<!--") => i += find(rest, b"-->")? + 3,
            _ if rest.starts_with(b"<?") => i += find(rest, b"?>")? + 2,
            b'[' => {
                depth += 1;
                i += 1;
            }
            b']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            b'>' if depth == 0 => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Elements whose `href` may carry an image as a `data:` URL (svg-hush kept only JPEG, PNG
/// and GIF ones).
fn may_embed(element: &str) -> bool {
    matches!(element, "image" | "feImage")
}

/// Pass 3 over svg-hush's output: drops every `href` that is not a local fragment (or an
/// embedded image), and rewrites every `url(...)` not naming a fragment to `url(#)`, in
/// attributes and in `<style>` text.
fn fragments_only(hushed: &[u8]) -> Result<Vec<u8>, xml::reader::Error> {
    let reader = xml::ParserConfig::new()
        .cdata_to_characters(true)
        .ignore_comments(true)
        .create_reader(hushed);
    let mut out = Vec::with_capacity(hushed.len());
    let mut writer = xml::EmitterConfig::new()
        .perform_indent(false)
        .keep_element_names_stack(false)
        .pad_self_closing(false)
        .create_writer(&mut out);
    let mut in_style = 0usize;
    for e in reader {
        let e = e?;
        let written = match &e {
            R::StartDocument { version, .. } => writer.write(W::StartDocument {
                version: *version,
                encoding: Some("utf-8"),
                standalone: None,
            }),
            R::StartElement {
                name,
                attributes,
                namespace,
            } => {
                if name.local_name == "style" || in_style > 0 {
                    in_style += 1;
                }
                let kept: Vec<OwnedAttribute> = attributes
                    .iter()
                    .filter_map(|a| safe_attribute(&name.local_name, a))
                    .collect();
                writer.write(W::StartElement {
                    name: name.borrow(),
                    attributes: kept.iter().map(|a| a.borrow()).collect(),
                    namespace: Cow::Borrowed(namespace),
                })
            }
            R::EndElement { name } => {
                in_style = in_style.saturating_sub(1);
                writer.write(W::EndElement {
                    name: Some(name.borrow()),
                })
            }
            R::Characters(t) if in_style > 0 => {
                writer.write(W::Characters(&fragment_urls(&local_css(t))))
            }
            R::Characters(t) | R::Whitespace(t) => writer.write(W::Characters(t)),
            R::EndDocument => break,
            // svg-hush writes no DOCTYPE, comments or processing instructions.
            R::Doctype { .. } | R::ProcessingInstruction { .. } | R::CData(_) | R::Comment(_) => {
                Ok(())
            }
        };
        written.map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    Ok(out)
}

/// The attribute as it may stay, or `None` to drop it.
fn safe_attribute(element: &str, a: &OwnedAttribute) -> Option<OwnedAttribute> {
    let v = a.value.trim();
    // e.g. the `to` of a SMIL animation whose target attribute svg-hush removed
    let squeezed: String = v
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect::<String>()
        .to_ascii_lowercase();
    if squeezed.contains("javascript:") || squeezed.contains("vbscript:") {
        return None;
    }
    if a.name.local_name == "href" {
        let local = v.starts_with('#') && !v.contains(['(', ')', '\'', '"', '\\']);
        let embedded = may_embed(element)
            && v.get(..11)
                .is_some_and(|p| p.eq_ignore_ascii_case("data:image/"));
        return (local || embedded).then(|| a.clone());
    }
    let css = local_css(&a.value);
    match fragment_urls(&css) {
        Cow::Borrowed(v) if v == a.value => Some(a.clone()),
        value => Some(OwnedAttribute {
            name: a.name.clone(),
            value: value.into_owned(),
        }),
    }
}

/// CSS without the statements that name another resource: what is left of an `@import` or
/// of a URL svg-hush cut open (`@import url(http://...)` leaves `http://...);` behind). The
/// block structure (`{`, `}`) stays.
pub fn local_css(css: &str) -> Cow<'_, str> {
    let remote = |s: &str| {
        let l = s.to_ascii_lowercase();
        l.contains("://") || l.contains("@import")
    };
    if !remote(css) {
        return Cow::Borrowed(css);
    }
    let mut out = String::with_capacity(css.len());
    for piece in css.split_inclusive([';', '{', '}']) {
        if remote(piece) {
            if let Some(b @ ('{' | '}')) = piece.chars().last() {
                out.push(b);
            }
        } else {
            out.push_str(piece);
        }
    }
    Cow::Owned(out)
}

/// `url(...)` (any case) that does not name a local `#id` becomes `url(#)`. svg-hush already
/// unquoted and trimmed them and dropped anything with quotes or backslashes inside.
pub fn fragment_urls(css: &str) -> Cow<'_, str> {
    let lower = css.to_ascii_lowercase();
    if !lower.contains("url(") {
        return Cow::Borrowed(css);
    }
    let mut out = String::with_capacity(css.len());
    let mut i = 0;
    while let Some(at) = lower[i..].find("url(") {
        let open = i + at + 4;
        out.push_str(&css[i..open]);
        let close = css[open..].find(')').map_or(css.len(), |c| open + c);
        let inner = css[open..close].trim().trim_matches(['"', '\'']);
        let local = inner.starts_with('#') && !inner.contains(['(', '\'', '"', '\\', ' ']);
        out.push_str(if local { inner } else { "#" });
        out.push(')');
        i = (close + 1).min(css.len());
    }
    out.push_str(&css[i..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(svg: &str) -> String {
        String::from_utf8(sanitize(svg.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn doctype_is_cut_from_the_prolog() {
        let s = "<?xml version=\"1.0\"?>\n<!-- c --><!DOCTYPE svg [ <!ENTITY a \"]>\"> <!-- ]> --> ]><svg/>";
        assert_eq!(
            strip_doctype(s).unwrap(),
            "<?xml version=\"1.0\"?>\n<!-- c --><svg/>"
        );
        assert_eq!(strip_doctype("<svg/>").unwrap(), "<svg/>");
        assert!(strip_doctype("<!DOCTYPE svg [ <!ENTITY a 'x'>").is_none());
        // after the root: left to the parser, which refuses it
        assert_eq!(
            strip_doctype("<svg/><!DOCTYPE x>").unwrap(),
            "<svg/><!DOCTYPE x>"
        );
    }

    #[test]
    fn remote_css_statements_go() {
        assert_eq!(local_css("a { fill: red }"), "a { fill: red }");
        assert_eq!(
            local_css("http://e/x.css); rect { fill: red; b: http://e }"),
            " rect { fill: red;}"
        );
    }

    #[test]
    fn urls_keep_only_fragments() {
        assert_eq!(fragment_urls("fill:url(#g)"), "fill:url(#g)");
        assert_eq!(fragment_urls("fill:URL(/a.svg#g);x"), "fill:URL(#);x");
        assert_eq!(
            fragment_urls("a url( 'http://e/x' ) b url(#k)"),
            "a url(#) b url(#k)"
        );
        assert_eq!(fragment_urls("url(unclosed"), "url(#)");
    }

    #[test]
    fn hostile_constructs_go() {
        let svg = r##"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" onload="alert(1)">
          <script>alert(2)</script>
          <style>@import url(http://evil.example/x.css); rect { fill: url(http://evil.example/p.svg#p) }</style>
          <defs><linearGradient id="g"/></defs>
          <rect width="10" height="10" fill="url(#g)" onclick="alert(3)" style="background:url(http://evil.example/t.png)"/>
          <a xlink:href="javascript:alert(4)"><text>x</text></a>
          <use xlink:href="http://evil.example/sprite.svg#icon"/>
          <use href="/sprite.svg#icon"/>
          <use href="#g"/>
          <image href="data:text/html;base64,PHNjcmlwdD4="/>
          <foreignObject><div xmlns="http://www.w3.org/1999/xhtml">hi</div></foreignObject>
        </svg>"##;
        let out = clean(svg);
        for bad in [
            "script",
            "onload",
            "onclick",
            "alert",
            "evil",
            "javascript",
            "foreignObject",
            "@import",
            "sprite",
            "data:text",
            "div",
        ] {
            assert!(!out.contains(bad), "{bad} left in {out}");
        }
        assert!(out.contains("fill=\"url(#g)\""), "{out}");
        assert!(out.contains("href=\"#g\""), "{out}");
    }

    #[test]
    fn entities_are_refused_not_expanded() {
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><svg xmlns="http://www.w3.org/2000/svg"><text>&b;</text></svg>"#;
        assert!(matches!(
            sanitize(laughs.as_bytes()),
            Err(TransformError::Corrupt(_))
        ));
        // a plain public DOCTYPE is dropped, the drawing kept
        let old = r#"<?xml version="1.0"?><!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd"><svg xmlns="http://www.w3.org/2000/svg"><rect width="1" height="1"/></svg>"#;
        let out = clean(old);
        assert!(!out.contains("DOCTYPE") && out.contains("<rect"), "{out}");
    }

    #[test]
    fn not_svg_is_refused() {
        for bad in ["", "not xml", "<html/>", "<svg", "\u{FEFF}"] {
            assert!(sanitize(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(sanitize(b"<svg xmlns=\"http://www.w3.org/2000/svg\">\xff</svg>").is_err());
    }
}
