//! Cloudflare's path form, `/cdn-cgi/image/OPTIONS/SOURCE`: the query form of SOURCE with the
//! comma-separated OPTIONS as its first parameters, so that both forms plan, key and sign
//! alike and share one cache entry.

use crate::image::params::path_options_to_query;

/// The prefix of the path form.
pub const PREFIX: &str = "/cdn-cgi/image/";

/// A path-form request: its options as query parameters and its SOURCE path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathForm {
    pub options_query: String,
    pub source: String,
}

impl PathForm {
    /// The query the transform is planned from: the options, then the request's own query
    /// (read like the query form's: transform names in it apply too, the rest goes to the
    /// origin).
    pub fn full_query(&self, query: Option<&str>) -> String {
        match query {
            Some(q) if !q.is_empty() => format!("{}&{q}", self.options_query),
            _ => self.options_query.clone(),
        }
    }
}

/// Splits a request path: `Ok(None)` for any path outside the path form; `Err((status,
/// reason))` for a malformed one, and (403) for a SOURCE that is an absolute URL, refused
/// before any connection: imgedge fetches from its configured upstreams only.
pub fn split(path: &str) -> Result<Option<PathForm>, (u16, String)> {
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Ok(None);
    };
    let bad = |m: String| Err((400, format!("invalid transform path: {m}")));
    let Some((options, source)) = rest.split_once('/') else {
        return bad(format!("{PREFIX}OPTIONS/SOURCE has no SOURCE"));
    };
    let first = source.split('/').next().unwrap_or("");
    let first = percent_encoding::percent_decode_str(first).decode_utf8_lossy();
    if first.ends_with(':') || first.contains("://") {
        let msg =
            "forbidden: a remote SOURCE URL is not supported by imgedge (only paths on this host)";
        return Err((403, msg.to_string()));
    }
    match path_options_to_query(options) {
        Ok(q) => Ok(Some(PathForm {
            options_query: q,
            source: format!("/{source}"),
        })),
        Err(e) => bad(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits() {
        assert_eq!(split("/img/a.jpg"), Ok(None));
        let p = split("/cdn-cgi/image/width=200,background=rgb(1,2,3)/a/b.jpg")
            .unwrap()
            .unwrap();
        assert_eq!(p.options_query, "width=200&background=rgb(1,2,3)");
        assert_eq!(p.source, "/a/b.jpg");
        assert_eq!(
            p.full_query(Some("v=1")),
            "width=200&background=rgb(1,2,3)&v=1"
        );
        assert_eq!(
            split("/cdn-cgi/image/width=1/https://x/a.jpg")
                .unwrap_err()
                .0,
            403
        );
        assert_eq!(
            split("/cdn-cgi/image/width=1/https:/x/a.jpg")
                .unwrap_err()
                .0,
            403
        );
        assert_eq!(split("/cdn-cgi/image/width=1").unwrap_err().0, 400);
        assert_eq!(split("/cdn-cgi/image/colour=1/a.jpg").unwrap_err().0, 400);
        assert_eq!(split("/cdn-cgi/image//a.jpg").unwrap_err().0, 400);
    }
}
