//! `onerror=redirect` (Cloudflare's option): when the transform cannot be made, the client is
//! sent to the original with a `302` instead of the error imgedge would answer. The original
//! is the source path with every transform option removed (`Location` carries only the query
//! forwarded to the origin), so a request for it is passed through untransformed: the redirect
//! cannot loop. Origin errors (a 404 source) are not the transform's and pass through as before.

use bytes::Bytes;
use pingora::prelude::*;
use pingora_http::ResponseHeader;

use super::path_form::PREFIX;

/// The `Location` of a request's redirect: `path` (the source path as admitted: for the path
/// form, SOURCE) and the query forwarded to the origin (no transform option, no `sig=`).
/// `None` when the original would itself be a path-form URL (a transform again).
pub fn location(path: &str, forward_query: Option<&str>) -> Option<String> {
    if path.starts_with(PREFIX) {
        return None;
    }
    Some(match forward_query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    })
}

/// The body of a redirect: why, and where the original is.
pub fn message(location: &str, reason: &str) -> String {
    format!("found: the image could not be transformed ({reason}); the original is at {location}")
}

/// The headers of a redirect besides the body's. `Cache-Control: no-store`: it is not stored as
/// the variant (repeats within `transform.failure_ttl` are answered up front from the failure
/// memory, without asking the origin).
pub fn headers(location: &str) -> [(String, String); 2] {
    [
        ("Location".to_string(), location.to_string()),
        ("Cache-Control".to_string(), "no-store".to_string()),
    ]
}

/// The redirect as a response header and body (replacing an origin response or an error).
pub fn response(location: &str, reason: &str) -> Result<(ResponseHeader, Bytes)> {
    let body = Bytes::from(format!("{}\n", message(location, reason)));
    let mut resp = ResponseHeader::build(302, Some(5))?;
    for (k, v) in headers(location) {
        resp.insert_header(k, v)?;
    }
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    Ok((resp, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_has_no_transform() {
        assert_eq!(location("/a.jpg", None).as_deref(), Some("/a.jpg"));
        assert_eq!(location("/a.jpg", Some("")).as_deref(), Some("/a.jpg"));
        assert_eq!(
            location("/a.jpg", Some("v=1")).as_deref(),
            Some("/a.jpg?v=1")
        );
        assert_eq!(location("/cdn-cgi/image/w=1/a.jpg", None), None);
    }
}
