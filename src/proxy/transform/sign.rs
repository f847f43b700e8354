//! `imgedge sign`: a URL with its `sig=` (and `exp=` when asked), made exactly as the proxy
//! checks it (`Transformer::verify_signature`) under the configured coverage.

use crate::config::TransformSettings;
use crate::image::params::parse_query;
use crate::signing::{SignatureError, Signed, Signer};

/// What `imgedge sign` adds to the URL it is given.
#[derive(Debug, Default, Clone)]
pub struct SignOptions {
    /// `exp=` to set (unix seconds), replacing one in the URL.
    pub expires_at: Option<u64>,
    /// The host to sign for when the URL names none (`--host`; for `cover_host`).
    pub host: Option<String>,
}

/// The URL (`path?query`) with its `sig=`, or why there is none.
pub fn sign_url(settings: &TransformSettings, url: &str) -> Result<String, String> {
    sign_url_with(settings, url, &SignOptions::default())
}

/// `imgedge sign`: the URL with `exp=` (when asked) and its `sig=`, made as the proxy checks
/// it under the configured coverage.
pub fn sign_url_with(
    settings: &TransformSettings,
    url: &str,
    opts: &SignOptions,
) -> Result<String, String> {
    let signing = settings
        .signing
        .clone()
        .ok_or("transform.signing is not configured")?;
    let cover_host = signing.cover_host;
    let signer = Signer::new(signing);
    let (head, query) = url.split_once('?').unwrap_or((url, ""));
    // `scheme://host/path` is signed for its path; a URL given as a path is signed whole, even
    // when the path itself holds "://" (`/img/http://origin/a.jpg`).
    let path_start = if head.starts_with('/') {
        0
    } else {
        head.find("://").map_or(0, |i| {
            head[i + 3..].find('/').map_or(head.len(), |p| i + 3 + p)
        })
    };
    let path = if path_start < head.len() {
        &head[path_start..]
    } else {
        "/"
    };
    let url_host = head[..path_start]
        .split_once("://")
        .map(|(_, authority)| authority.rsplit('@').next().unwrap_or(authority));
    let host = match (url_host, opts.host.as_deref()) {
        (Some(u), Some(o)) if !u.eq_ignore_ascii_case(o) => {
            return Err(format!("--host {o} differs from the URL's host {u}"))
        }
        (Some(h), _) | (None, Some(h)) => h,
        (None, None) if cover_host => {
            return Err("transform.signing.cover_host is on: give the URL with its host (https://host/path?...) or --host".into())
        }
        (None, None) => "",
    };
    let parsed = parse_query(Some(query), &settings.limits, &settings.presets)
        .map_err(|e| format!("invalid transform parameter: {e}"))?;
    let spec = parsed
        .transform
        .ok_or("the URL has no transform parameter: nothing to sign")?;
    let mut kept: Vec<String> = crate::signing::unsigned_pairs(query)
        .filter(|p| opts.expires_at.is_none() || p.split_once('=').map_or(*p, |(k, _)| k) != "exp")
        .map(str::to_string)
        .collect();
    if let Some(at) = opts.expires_at {
        kept.push(format!("exp={at}"));
    }
    let query = kept.join("&");
    let signed = Signed {
        host,
        path,
        query: &query,
        canonical: &spec.signed_form(),
    };
    let sig = signer.sign(&signed).map_err(|e| match e {
        SignatureError::Missing => "transform.signing has no key".to_string(),
        e => e.to_string(),
    })?;
    Ok(format!("{head}?{query}&sig={sig}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::transform::{Planned, Transformer};

    /// The embedded default's transform settings with one signing key, signatures required.
    fn signing_settings() -> TransformSettings {
        let mut settings = crate::config::parse_str(crate::config::EMBEDDED_DEFAULT)
            .unwrap()
            .transform;
        settings.signing = Some(crate::signing::SigningSettings {
            keys: vec![b"0123456789abcdef0123".to_vec()],
            required: true,
            cover_host: false,
            cover_query: false,
        });
        settings
    }

    #[test]
    fn signed_urls_verify_and_survive_reordering() {
        let settings = signing_settings();
        let url = sign_url(&settings, "http://h:8080/p/a.jpg?w=300&x=1&fit=cover").unwrap();
        assert!(url.starts_with("http://h:8080/p/a.jpg?w=300&x=1&fit=cover&sig="));
        let sig = url.rsplit_once("sig=").unwrap().1;
        let t = Transformer::new(&settings);
        let plan = |q: &str| t.plan(Some(q), None).unwrap().unwrap();
        let ok = plan(&format!("fit=cover&sig={sig}&width=300"));
        let verify = |p: &Planned| t.verify_signature("h", "/p/a.jpg", None, p);
        assert!(verify(&ok).is_ok());
        let changed = plan(&format!("fit=cover&sig={sig}&width=301"));
        assert!(verify(&changed).is_err());
        assert!(verify(&plan("w=300&fit=cover")).is_err());
        assert!(sign_url(&settings, "/a.jpg?x=1").is_err());
    }

    /// Found by the transform_url fuzz target: a path holding "://" was signed for the part
    /// after it, so the proxy (which checks the whole path) refused the URL `imgedge sign` made.
    #[test]
    fn sign_url_keeps_paths_that_contain_a_scheme() {
        let settings = signing_settings();
        let t = Transformer::new(&settings);
        for (url, path) in [
            ("/img/http://origin/x.jpg?w=10", "/img/http://origin/x.jpg"),
            ("http://h/img/http://o/x.jpg?w=10", "/img/http://o/x.jpg"),
            ("https://h:8443/a.jpg?w=10", "/a.jpg"),
        ] {
            let signed = sign_url(&settings, url).unwrap();
            let sig = signed.rsplit_once("sig=").unwrap().1;
            let plan = t
                .plan(Some(&format!("w=10&sig={sig}")), None)
                .unwrap()
                .unwrap();
            assert!(t.verify_signature("h", path, None, &plan).is_ok(), "{url}");
        }
    }

    /// `imgedge sign --expires/--host` under host and query coverage: what it prints verifies
    /// for that host and query only, and `exp=` is taken out of the forwarded query.
    #[test]
    fn sign_url_with_expiry_and_coverage() {
        let mut settings = signing_settings();
        if let Some(s) = settings.signing.as_mut() {
            s.cover_host = true;
            s.cover_query = true;
        }
        let t = Transformer::new(&settings);
        let now = crate::signing::unix_now();
        let opts = SignOptions {
            expires_at: Some(now + 60),
            host: None,
        };
        let signed =
            sign_url_with(&settings, "https://H.example/a.jpg?w=10&v=1&exp=1", &opts).unwrap();
        let query = signed.split_once('?').unwrap().1;
        assert!(
            query.starts_with(&format!("w=10&v=1&exp={}&sig=", now + 60)),
            "{signed}"
        );
        let plan = t.plan(Some(query), None).unwrap().unwrap();
        assert_eq!(plan.forward_query.as_deref(), Some("v=1"));
        let check = |host, q: &str| t.verify_signature(host, "/a.jpg", Some(q), &plan);
        assert_eq!(check("h.example", query), Ok(()));
        assert!(check("other.example", query).is_err());
        assert!(check("h.example", &format!("{query}&x=1")).is_err());
        // A path-only URL needs --host under cover_host; a --host that differs is an error.
        assert!(sign_url(&settings, "/a.jpg?w=10").is_err());
        let host = |h: &str| SignOptions {
            expires_at: None,
            host: Some(h.into()),
        };
        assert!(sign_url_with(&settings, "/a.jpg?w=10", &host("h.example")).is_ok());
        assert!(sign_url_with(&settings, "http://a.example/a.jpg?w=10", &host("b")).is_err());
    }
}
