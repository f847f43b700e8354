//! Query parameters that are not transform parameters but look like one (`widht`, `Width`):
//! what `transform.unknown_params` warns about or rejects. The names compared with are the
//! parameter table of `params.rs`.

use super::params::{is_param, names, percent_decode};

/// The transform parameter an unknown name looks like, if any: the same name in another case,
/// or within a small Damerau-Levenshtein distance (2 for names of 4 letters or more, 1 for 2-3
/// letters). One-letter aliases (`w`, `h`, `q`, `f`, `g`) match only their other case: at distance 1
/// every one-letter name (`v=3`, a common cache buster) would look like one.
pub fn lookalike(name: &str) -> Option<&'static str> {
    if is_param(name) || name == "sig" {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    let mut best: Option<(usize, &'static str)> = None;
    for known in names() {
        let allowed = match known.len() {
            0 | 1 => 0,
            2 | 3 => 1,
            _ => 2,
        };
        let d = strsim::osa_distance(&lower, known);
        if d <= allowed && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, known));
        }
    }
    best.map(|(_, known)| known)
}

/// The query's parameters that are not transform parameters but look like one (see
/// [`lookalike`]), each as a one-line warning naming the parameter and what it resembles.
pub fn warnings(query: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for piece in query.unwrap_or("").split('&') {
        let raw = piece.split_once('=').map_or(piece, |(k, _)| k);
        let Some(name) = percent_decode(raw) else {
            continue;
        };
        if let Some(known) = lookalike(&name) {
            // escape_default: the warning goes into a header, ASCII only
            let warning = format!(
                "unknown parameter \"{}\" (did you mean \"{known}\"?)",
                name.escape_default()
            );
            if !out.contains(&warning) {
                out.push(warning);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookalikes() {
        assert_eq!(lookalike("widht"), Some("width"));
        assert_eq!(lookalike("Width"), Some("width"));
        assert_eq!(lookalike("W"), Some("w"));
        assert_eq!(lookalike("hieght"), Some("height"));
        assert_eq!(lookalike("formt"), Some("format"));
        assert_eq!(lookalike("qualty"), Some("quality"));
        assert_eq!(lookalike("fitt"), Some("fit"));
        assert_eq!(lookalike("DPR"), Some("dpr"));
        // Close to the Cloudflare option `flip`.
        assert_eq!(lookalike("fill"), Some("flip"));
        for fine in [
            "width", "w", "q", "sig", "v", "x", "t", "ts", "id", "size", "token",
        ] {
            assert_eq!(lookalike(fine), None, "{fine}");
        }
        assert_eq!(
            warnings(Some("a=1&widht=400&v=2&%57idth=3&widht=5")),
            vec![
                r#"unknown parameter "widht" (did you mean "width"?)"#,
                r#"unknown parameter "Width" (did you mean "width"?)"#,
            ]
        );
        assert_eq!(
            warnings(Some("w%C3%ADdth=1")),
            vec![r#"unknown parameter "w\u{ed}dth" (did you mean "width"?)"#]
        );
        assert!(warnings(None).is_empty());
    }
}
