//! A local directory as an origin: a small HTTP app on a private Unix socket, so its responses go
//! through the same proxy, cache and transform path as any other origin.
//!
//! Only GET/HEAD; `Content-Type` from the extension, `Last-Modified`, `ETag`, conditional 304s;
//! no way out of the root: `..` segments, encoded slashes/backslashes and NULs are refused, and
//! the resolved path (after symlinks) must stay under the canonical root.

use async_trait::async_trait;
use http::{Response, StatusCode};
use percent_encoding::percent_decode_str;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Files larger than this are refused (images beyond it are not what this origin is for).
const MAX_FILE_BYTES: u64 = 256 << 20;

pub struct DirOrigin {
    root: PathBuf,
}

impl DirOrigin {
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Ok(DirOrigin {
            root: root.canonicalize()?,
        })
    }

    /// Maps a request path to a file under the root, or `None` when it must not be served.
    pub fn resolve(&self, raw_path: &str) -> Option<PathBuf> {
        let lower = raw_path.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00") {
            return None;
        }
        let decoded = percent_decode_str(raw_path).decode_utf8().ok()?;
        if decoded.contains('\\') || decoded.contains('\0') {
            return None;
        }
        let mut path = self.root.clone();
        for seg in decoded.split('/') {
            match seg {
                "" | "." => continue,
                ".." => return None,
                s => path.push(s),
            }
        }
        let real = path.canonicalize().ok()?;
        if !real.starts_with(&self.root) || !real.is_file() {
            return None;
        }
        Some(real)
    }
}

fn text(status: StatusCode, body: &str) -> Response<Vec<u8>> {
    let body = format!("{body}\n").into_bytes();
    Response::builder()
        .status(status)
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("Content-Length", body.len())
        .body(body)
        .unwrap_or_default()
}

pub fn etag_for(len: u64, mtime: SystemTime) -> String {
    let nanos = mtime
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("\"{len:x}-{nanos:x}\"")
}

#[async_trait]
impl ServeHttp for DirOrigin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let head = req.method == http::Method::HEAD;
        if req.method != http::Method::GET && !head {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
        }
        let raw_path = req.uri.path().to_string();
        let if_none_match = req
            .headers
            .get("if-none-match")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let if_modified_since = req
            .headers
            .get("if-modified-since")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());

        let Some(file) = self.resolve(&raw_path) else {
            return text(StatusCode::NOT_FOUND, "not found");
        };
        let Ok(md) = tokio::fs::metadata(&file).await else {
            return text(StatusCode::NOT_FOUND, "not found");
        };
        if md.len() > MAX_FILE_BYTES {
            return text(StatusCode::FORBIDDEN, "file too large for the dir origin");
        }
        let mtime = md.modified().unwrap_or(UNIX_EPOCH);
        let etag = etag_for(md.len(), mtime);
        let last_modified = httpdate::fmt_http_date(mtime);
        let not_modified = match (&if_none_match, if_modified_since) {
            (Some(inm), _) => inm.split(',').any(|t| t.trim() == etag || t.trim() == "*"),
            (None, Some(ims)) => mtime
                .duration_since(UNIX_EPOCH)
                .ok()
                .zip(ims.duration_since(UNIX_EPOCH).ok())
                .is_some_and(|(m, i)| m.as_secs() <= i.as_secs()),
            _ => false,
        };
        let content_type = mime_guess::from_path(&file)
            .first_raw()
            .unwrap_or("application/octet-stream");
        let builder = Response::builder()
            .header("ETag", &etag)
            .header("Last-Modified", &last_modified);
        if not_modified {
            return builder
                .status(StatusCode::NOT_MODIFIED)
                .body(Vec::new())
                .unwrap_or_default();
        }
        let body = if head {
            Vec::new()
        } else {
            match tokio::fs::read(&file).await {
                Ok(b) => b,
                Err(_) => return text(StatusCode::NOT_FOUND, "not found"),
            }
        };
        builder
            .status(StatusCode::OK)
            .header("Content-Type", content_type)
            .header("Content-Length", md.len())
            .body(body)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_way_out() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("a.jpg"), b"x").unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/b.png"), b"y").unwrap();
        std::fs::write(tmp.path().join("secret.txt"), b"s").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret.txt"), root.join("link.txt")).unwrap();
        let d = DirOrigin::new(&root).unwrap();
        assert!(d.resolve("/a.jpg").is_some());
        assert!(d.resolve("/sub/b.png").is_some());
        assert!(d.resolve("/sub%2Fb.png").is_none());
        assert!(d.resolve("/../secret.txt").is_none());
        assert!(d.resolve("/sub/../../secret.txt").is_none());
        assert!(d.resolve("/%2e%2e/secret.txt").is_none());
        assert!(d.resolve("/link.txt").is_none());
        assert!(d.resolve("/sub").is_none());
        assert!(d.resolve("/missing.jpg").is_none());
        assert!(d.resolve("/a.jpg%00").is_none());
    }
}
