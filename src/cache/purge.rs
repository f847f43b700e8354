//! The purge language: what a purge names (`Purge`) and which stored entries it matches, and how
//! clients write one (the `POST /purge` JSON body, a proxy listener's `PURGE` request) and are
//! answered. Knows nothing of Pingora: the handlers live with the listeners.

use super::storage::{EntryInfo, Matcher};
use super::{normalize_host, normalize_path};
use serde::Deserialize;
use std::sync::Arc;

/// Largest `POST /purge` body read.
pub const MAX_BODY: usize = 64 * 1024;

/// What a purge removes. `host: None` means every host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// Every variant (query, transform) of one path.
    Url { host: Option<String>, path: String },
    /// Every entry whose path starts with `prefix`.
    Prefix {
        host: Option<String>,
        prefix: String,
    },
    /// Every entry tagged so by the origin (`Cache-Tag`, `Surrogate-Key`).
    Tag(String),
}

impl std::fmt::Display for Purge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = |h: &Option<String>| h.clone().unwrap_or_else(|| "*".into());
        match self {
            Purge::Url { host: h, path } => write!(f, "url {}{path}", host(h)),
            Purge::Prefix { host: h, prefix } => write!(f, "prefix {}{prefix}", host(h)),
            Purge::Tag(t) => write!(f, "tag {t:?}"),
        }
    }
}

impl Purge {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Purge::Url { .. } => "url",
            Purge::Prefix { .. } => "prefix",
            Purge::Tag(_) => "tag",
        }
    }

    /// The predicate over stored entries (their key is `host \n path \n query \n extra`).
    pub fn matcher(&self) -> Arc<Matcher> {
        let host_ok = |want: &Option<String>, got: &str| want.as_deref().is_none_or(|w| w == got);
        match self.clone() {
            Purge::Url { host, path } => {
                let host = host.map(|h| normalize_host(&h));
                Arc::new(move |i: &EntryInfo| {
                    let mut parts = i.key.splitn(3, '\n');
                    let (h, p) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    host_ok(&host, h) && p == path
                })
            }
            Purge::Prefix { host, prefix } => {
                let host = host.map(|h| normalize_host(&h));
                Arc::new(move |i: &EntryInfo| {
                    let mut parts = i.key.splitn(3, '\n');
                    let (h, p) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    host_ok(&host, h) && p.starts_with(&prefix)
                })
            }
            Purge::Tag(tag) => Arc::new(move |i: &EntryInfo| i.tags.contains(&tag)),
        }
    }
}

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
            path: normalize_path(uri.path()).into_owned(),
        });
    }
    let host = b.host.map(|h| normalize_host(&h));
    if let Some(path) = b.path {
        check_path(&path)?;
        let path = normalize_path(&path).into_owned();
        return Ok(Purge::Url { host, path });
    }
    if let Some(prefix) = b.prefix {
        check_path(&prefix)?;
        let prefix = normalize_path(&prefix).into_owned();
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

/// A proxy listener's `PURGE` request, from its host, path and `X-Purge-Tag` value: every
/// variant of the path on that host; with a trailing `*`, every path starting with the prefix;
/// with a tag (path ignored), every entry tagged so. The error is a one-line reason for a 400.
pub fn parse_proxy_request(host: &str, path: &str, tag: Option<&str>) -> Result<Purge, String> {
    let host = normalize_host(host);
    let p = match (tag, path.strip_suffix('*')) {
        (Some(t), _) => Purge::Tag(t.trim().to_string()),
        (None, Some(prefix)) => Purge::Prefix {
            host: Some(host),
            prefix: normalize_path(prefix).into_owned(),
        },
        (None, None) => Purge::Url {
            host: Some(host),
            path: normalize_path(path).into_owned(),
        },
    };
    if matches!(&p, Purge::Tag(t) if t.is_empty() || t.contains(|c: char| c == ',' || c.is_whitespace()))
    {
        return Err("X-Purge-Tag must be one tag without commas or spaces".into());
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key;
    use pingora_cache::CacheKey;

    #[test]
    fn purge_matchers_follow_the_key_format() {
        let info = |k: &CacheKey, tags: &[&str]| EntryInfo {
            key: String::from_utf8_lossy(k.primary_key()).into_owned(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        };
        let plain = info(&key("img.example", "/a/b.jpg", None, ""), &[]);
        let variant = info(
            &key("img.example", "/a/b.jpg", Some("v=2"), "w=100;f=webp"),
            &["prod"],
        );
        let other = info(&key("img.example", "/a/b.jpgx", None, ""), &[]);
        let url = Purge::Url {
            host: Some("IMG.example:80".into()),
            path: "/a/b.jpg".into(),
        }
        .matcher();
        assert!(url(&plain) && url(&variant) && !url(&other));
        let any_host = Purge::Url {
            host: None,
            path: "/a/b.jpg".into(),
        }
        .matcher();
        assert!(any_host(&plain));
        let wrong_host = Purge::Url {
            host: Some("other".into()),
            path: "/a/b.jpg".into(),
        }
        .matcher();
        assert!(!wrong_host(&plain));
        let prefix = Purge::Prefix {
            host: None,
            prefix: "/a/".into(),
        }
        .matcher();
        assert!(prefix(&plain) && prefix(&variant) && prefix(&other));
        let tag = Purge::Tag("prod".into()).matcher();
        assert!(tag(&variant) && !tag(&plain));
    }

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
            parse_body(br#"{"path": "//img/./x.jpg"}"#).unwrap(),
            Purge::Url {
                host: None,
                path: "/img/x.jpg".into()
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
    fn proxy_requests() {
        assert_eq!(
            parse_proxy_request("IMG.example:80", "/a/b.jpg", None).unwrap(),
            Purge::Url {
                host: Some("img.example".into()),
                path: "/a/b.jpg".into()
            }
        );
        assert_eq!(
            parse_proxy_request("h", "/a/*", None).unwrap(),
            Purge::Prefix {
                host: Some("h".into()),
                prefix: "/a/".into()
            }
        );
        assert_eq!(
            parse_proxy_request("h", "/ignored", Some(" product-7 ")).unwrap(),
            Purge::Tag("product-7".into())
        );
        assert_eq!(
            parse_proxy_request("h", "/a//./b.jpg", None).unwrap(),
            Purge::Url {
                host: Some("h".into()),
                path: "/a/b.jpg".into()
            }
        );
        assert!(parse_proxy_request("h", "/", Some("a b")).is_err());
        assert!(parse_proxy_request("h", "/", Some("")).is_err());
    }
}
