//! Purge requests, on the admin listener (`POST /purge` with a JSON body) and on the proxy
//! listeners (`PURGE /path` with `Authorization: Bearer <admin.token>`). Both end in
//! `Cache::purge`, which removes entries from memory and disk.

use crate::cache::{normalize_host, Purge};
use crate::proxy::State;
use bytes::Bytes;
use pingora::prelude::*;
use pingora_http::ResponseHeader;
use serde::Deserialize;

/// Largest admin request body read.
pub const MAX_BODY: usize = 64 * 1024;

/// `POST /purge` body: exactly one of `url`, `path`, `prefix`, `tag`; `host` narrows `path`
/// and `prefix` to one host (default: every host).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    url: Option<String>,
    path: Option<String>,
    prefix: Option<String>,
    tag: Option<String>,
    host: Option<String>,
}

/// Parses a `POST /purge` body; the error is a one-line reason for a 400.
pub fn parse_body(body: &[u8]) -> Result<Purge, String> {
    let b: PurgeBody =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON purge request: {e}"))?;
    let given = [&b.url, &b.path, &b.prefix, &b.tag]
        .iter()
        .filter(|x| x.is_some())
        .count();
    if given != 1 {
        return Err(
            "give exactly one of \"url\", \"path\", \"prefix\" or \"tag\" (and optionally \"host\")"
                .into(),
        );
    }
    if b.tag.is_some() && b.host.is_some() {
        return Err("\"host\" does not apply to a tag purge".into());
    }
    if let Some(url) = b.url {
        if b.host.is_some() {
            return Err("\"url\" already names the host; use \"path\" with \"host\"".into());
        }
        let uri: http::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
        let Some(host) = uri.authority().map(|a| a.as_str().to_string()) else {
            return Err(format!(
                "{url:?} has no host: use http://HOST/PATH, or \"path\" (every host)"
            ));
        };
        return Ok(Purge::Url {
            host: Some(normalize_host(&host)),
            path: uri.path().to_string(),
        });
    }
    let host = b.host.map(|h| normalize_host(&h));
    if let Some(path) = b.path {
        check_path(&path)?;
        return Ok(Purge::Url { host, path });
    }
    if let Some(prefix) = b.prefix {
        check_path(&prefix)?;
        return Ok(Purge::Prefix { host, prefix });
    }
    match b.tag {
        Some(t) if !t.is_empty() && !t.contains(|c: char| c == ',' || c.is_whitespace()) => {
            Ok(Purge::Tag(t))
        }
        _ => Err("\"tag\" must be one non-empty tag without commas or spaces".into()),
    }
}

fn check_path(p: &str) -> Result<(), String> {
    if p.starts_with('/') {
        Ok(())
    } else {
        Err(format!("{p:?} must start with '/'"))
    }
}

/// The JSON answer to a purge.
pub fn answer(p: &Purge, purged: usize) -> String {
    let mut v = serde_json::json!({ "purged": purged, "by": p.label() });
    match p {
        Purge::Url { host, path } => {
            v["host"] = serde_json::json!(host);
            v["path"] = serde_json::json!(path);
        }
        Purge::Prefix { host, prefix } => {
            v["host"] = serde_json::json!(host);
            v["prefix"] = serde_json::json!(prefix);
        }
        Purge::Tag(t) => v["tag"] = serde_json::json!(t),
    }
    v.to_string()
}

/// Compares secrets in time independent of where they differ.
pub fn token_matches(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

async fn reply(session: &mut Session, status: u16, json: String) -> Result<()> {
    let body = Bytes::from(format!("{json}\n"));
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.insert_header("X-Cache-Status", "BYPASS")?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

fn error_json(msg: &str) -> String {
    serde_json::json!({ "error": msg }).to_string()
}

/// `PURGE /path` on a proxy listener: every variant of the path on the request's host;
/// `PURGE /prefix*`: every path starting with the prefix; `X-Purge-Tag: t` (path ignored):
/// every entry tagged `t`. 405 without `admin.token`, 403 without the right bearer token.
pub async fn serve_proxy_purge(
    session: &mut Session,
    state: &'static State,
    host: &str,
) -> Result<()> {
    let Some(token) = state.purge_token.as_deref() else {
        let msg = "PURGE is not enabled on this listener: set admin.token, or use POST /purge on the admin listener";
        return reply(session, 405, error_json(msg)).await;
    };
    let req = session.req_header();
    let given = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !token_matches(token, given.trim()) {
        log::warn!(
            "PURGE {} refused: missing or wrong admin token",
            req.uri.path()
        );
        let msg = "PURGE needs Authorization: Bearer <admin.token>";
        return reply(session, 403, error_json(msg)).await;
    }
    let tag = req
        .headers
        .get("x-purge-tag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let path = req.uri.path().to_string();
    let host = normalize_host(host);
    let p = match (tag, path.strip_suffix('*')) {
        (Some(t), _) => Purge::Tag(t.trim().to_string()),
        (None, Some(prefix)) => Purge::Prefix {
            host: Some(host),
            prefix: prefix.to_string(),
        },
        (None, None) => Purge::Url {
            host: Some(host),
            path,
        },
    };
    if matches!(&p, Purge::Tag(t) if t.is_empty() || t.contains(|c: char| c == ',' || c.is_whitespace()))
    {
        return reply(
            session,
            400,
            error_json("X-Purge-Tag must be one tag without commas or spaces"),
        )
        .await;
    }
    let n = state.cache.purge(&p).await;
    reply(session, 200, answer(&p, n)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(
            parse_body(br#"{"url": "http://IMG.example.com:80/a/b.jpg?width=100"}"#).unwrap(),
            Purge::Url {
                host: Some("img.example.com".into()),
                path: "/a/b.jpg".into()
            }
        );
        assert_eq!(
            parse_body(br#"{"prefix": "/a/"}"#).unwrap(),
            Purge::Prefix {
                host: None,
                prefix: "/a/".into()
            }
        );
        assert_eq!(
            parse_body(br#"{"path": "/x", "host": "h"}"#).unwrap(),
            Purge::Url {
                host: Some("h".into()),
                path: "/x".into()
            }
        );
        assert_eq!(
            parse_body(br#"{"tag": "product-7"}"#).unwrap(),
            Purge::Tag("product-7".into())
        );
        for bad in [
            &br#"{}"#[..],
            br#"{"tag": "a", "prefix": "/"}"#,
            br#"{"url": "/no-host"}"#,
            br#"{"prefix": "nope"}"#,
            br#"{"tag": "a b"}"#,
            br#"{"tags": "a"}"#,
            b"not json",
        ] {
            assert!(parse_body(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn tokens() {
        assert!(token_matches(
            "s3cret-s3cret-s3cret",
            "s3cret-s3cret-s3cret"
        ));
        assert!(!token_matches(
            "s3cret-s3cret-s3cret",
            "s3cret-s3cret-s3creT"
        ));
        assert!(!token_matches("s3cret-s3cret-s3cret", "s3cret"));
        assert!(!token_matches("s3cret-s3cret-s3cret", ""));
    }
}
