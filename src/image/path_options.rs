//! The path form's OPTIONS segment (`/cdn-cgi/image/OPTIONS/SOURCE`) as query parameters.

use crate::image::error::ParamError;
use crate::image::params::is_param;
use crate::image::values::percent_decode;

/// The options of the path form (`/cdn-cgi/image/width=200,fit=cover/photo.jpg`) written as
/// the query form's parameters (`width=200&fit=cover`), so that both forms parse, key and sign
/// alike. Commas inside parentheses (`rgb(1,2,3)`) do not separate. Every option must be a
/// transform parameter: the path form has no origin parameters to forward.
pub fn path_options_to_query(options: &str) -> Result<String, ParamError> {
    let mut pieces = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in options.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth <= 0 => {
                pieces.push(&options[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&options[start..]);
    let mut out = Vec::with_capacity(pieces.len());
    for piece in pieces.into_iter().filter(|p| !p.is_empty()) {
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        let name = percent_decode(k).unwrap_or_default();
        if piece.contains('&') || !piece.contains('=') {
            return Err(ParamError::new(
                name,
                "each option is name=value, without '&'",
            ));
        }
        if !is_param(&name) {
            return Err(ParamError::new(name, "is not a transform option"));
        }
        out.push(format!("{k}={v}"));
    }
    if out.is_empty() {
        return Err(ParamError::new("options", "at least one option is needed"));
    }
    Ok(out.join("&"))
}
