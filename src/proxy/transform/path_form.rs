//! Cloudflare's path form, `/cdn-cgi/image/OPTIONS/SOURCE`: the query form of SOURCE with the
//! comma-separated OPTIONS as its first parameters, so that both forms plan, key and sign
//! alike and share one cache entry.

use crate::image::path_options::path_options_to_query;

/// The prefix of the path form.
pub const PREFIX: &str = "/cdn-cgi/image/";

/// A path-form request: its options as query parameters and its SOURCE path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathForm {
    pub options_query: String,
    /// SOURCE's path (for a SOURCE URL, the path on its host).
    pub source: String,
    /// A SOURCE URL's scheme (`true`: https), host and port, to be checked against
    /// `transform.remote_sources` before anything else.
    pub remote: Option<(bool, String, u16)>,
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

/// A SOURCE URL (`https://host[:port]/path`, also with one slash after the scheme, as some
/// clients normalise `//`): scheme, lower-cased host, port, path. `None`: not one imgedge reads.
fn remote_url(source: &str) -> Option<(bool, String, u16, String)> {
    let (tls, rest) = if let Some(r) = source.strip_prefix("https:") {
        (true, r)
    } else {
        (false, source.strip_prefix("http:")?)
    };
    let rest = rest.strip_prefix("//").or_else(|| rest.strip_prefix('/'))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return None;
    }
    let auth: http::uri::Authority = authority.parse().ok()?;
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    let port = auth.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = if path.is_empty() { "/" } else { path };
    Some((tls, host.to_ascii_lowercase(), port, path.to_string()))
}

/// Splits a request path: `Ok(None)` for any path outside the path form; `Err((status,
/// reason))` for a malformed one, and (403) for a SOURCE that is an absolute URL imgedge does
/// not read (another scheme, user info): refused before any connection. A SOURCE URL is
/// returned with its host in `remote`, for the caller to check against the allow-list.
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
    let mut remote = None;
    let mut source_path = format!("/{source}");
    if first.ends_with(':') || first.contains("://") || has_scheme(&first) {
        let decoded = percent_encoding::percent_decode_str(source).decode_utf8_lossy();
        let Some((tls, host, port, p)) = remote_url(&decoded) else {
            let msg = "forbidden: this remote SOURCE URL is not one imgedge fetches (http or https, no user info)";
            return Err((403, msg.to_string()));
        };
        remote = Some((tls, host, port));
        source_path = p;
    }
    match path_options_to_query(options) {
        Ok(q) => Ok(Some(PathForm {
            options_query: q,
            source: source_path,
            remote,
        })),
        Err(e) => bad(e.to_string()),
    }
}

/// Whether `segment` starts with a URL scheme (`javascript:x`, `data:...`): never a path
/// imgedge routes.
fn has_scheme(segment: &str) -> bool {
    let Some((scheme, _)) = segment.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
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
        let p = split("/cdn-cgi/image/width=1/https://X.example:8443/a/b.jpg")
            .unwrap()
            .unwrap();
        assert_eq!(p.remote, Some((true, "x.example".to_string(), 8443)));
        assert_eq!(p.source, "/a/b.jpg");
        let p = split("/cdn-cgi/image/width=1/http:/x/a.jpg")
            .unwrap()
            .unwrap();
        assert_eq!(p.remote, Some((false, "x".to_string(), 80)));
        for refused in [
            "/cdn-cgi/image/width=1/ftp://x/a.jpg",
            "/cdn-cgi/image/width=1/https://u@x/a.jpg",
            "/cdn-cgi/image/width=1/javascript:x",
        ] {
            assert_eq!(split(refused).unwrap_err().0, 403, "{refused}");
        }
        assert_eq!(split("/cdn-cgi/image/width=1").unwrap_err().0, 400);
        assert_eq!(split("/cdn-cgi/image/colour=1/a.jpg").unwrap_err().0, 400);
        assert_eq!(split("/cdn-cgi/image//a.jpg").unwrap_err().0, 400);
    }
}
