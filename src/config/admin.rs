//! The `admin` section: the admin listener, its token, who may use it without the token, and
//! the playground's origins.

use super::check::{check_socket_addr, read_secret_text, Errors};
use super::defaults;
use std::net::SocketAddr;

/// `admin.listen`: an address of its own, not one of the proxy's plain listeners.
pub(super) fn validate_listen(
    listen: Option<String>,
    plain: &[String],
    errs: &mut Errors,
) -> String {
    let admin_listen = listen.unwrap_or_else(|| defaults::ADMIN_LISTEN.to_string());
    check_socket_addr(&admin_listen, "admin.listen", errs);
    if plain.contains(&admin_listen) {
        errs.add("admin.listen", "must differ from every address in listen");
    }
    admin_listen
}

/// `admin.token` or `admin.token_file` (read now, trimmed): at least
/// `ADMIN_TOKEN_MIN_LEN` visible characters.
pub(super) fn validate_token(
    token: Option<String>,
    file: Option<String>,
    errs: &mut Errors,
) -> Option<String> {
    let (token, path) = match (token, file) {
        (Some(_), Some(_)) => {
            errs.add(
                "admin.token",
                "set admin.token or admin.token_file, not both",
            );
            return None;
        }
        (Some(t), None) => (t, "admin.token"),
        (None, Some(f)) => match read_secret_text(&f) {
            Ok(t) => (t.trim().to_string(), "admin.token_file"),
            Err(e) => {
                errs.add("admin.token_file", format!("cannot read {f:?}: {e}"));
                return None;
            }
        },
        (None, None) => return None,
    };
    if token.chars().count() < defaults::ADMIN_TOKEN_MIN_LEN {
        errs.add(
            path,
            format!(
                "the token must have at least {} characters",
                defaults::ADMIN_TOKEN_MIN_LEN
            ),
        );
    } else if !token.chars().all(|c| c.is_ascii_graphic()) {
        errs.add(
            path,
            "the token may only use visible ASCII characters (no spaces)",
        );
    }
    Some(token)
}

/// `admin.allow_cidrs`: networks (`10.0.0.0/8`, `::1/128`) or single addresses; absent: loopback.
pub(super) fn validate_allow_cidrs(
    list: Option<Vec<String>>,
    errs: &mut Errors,
) -> Vec<ipnet::IpNet> {
    let Some(list) = list else {
        return defaults::ADMIN_ALLOW_CIDRS
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect();
    };
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let t = s.trim();
        let net = t
            .parse::<ipnet::IpNet>()
            .ok()
            .or_else(|| t.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from));
        match net {
            Some(n) => out.push(n.trunc()),
            None => errs.add(
                format!("admin.allow_cidrs[{i}]"),
                format!("{s:?} is not a network or address (e.g. \"10.0.0.0/8\", \"192.168.1.7\", \"::1/128\")"),
            ),
        }
    }
    out
}

/// The origins a browser shows for the admin listener (loopback listeners are reached as
/// `localhost` or `127.0.0.1`), plus the configured ones (`"*"` allows any origin).
pub(super) fn playground_origins(
    admin: &str,
    extra: Vec<String>,
    errs: &mut Errors,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(addr) = admin.parse::<SocketAddr>() {
        let port = addr.port();
        let ip = addr.ip();
        if ip.is_loopback() || ip.is_unspecified() {
            out.push(format!("http://localhost:{port}"));
            out.push(format!("http://127.0.0.1:{port}"));
            out.push(format!("http://[::1]:{port}"));
        }
        if !ip.is_unspecified() {
            out.push(format!("http://{addr}"));
        }
    }
    for (i, o) in extra.into_iter().enumerate() {
        let path = format!("admin.playground_origins[{i}]");
        let o = o.trim_end_matches('/').to_string();
        let valid = o == "*"
            || ((o.starts_with("http://") || o.starts_with("https://"))
                && o.split_once("://").is_some_and(|(_, rest)| {
                    !rest.is_empty() && !rest.contains('/') && !rest.contains(char::is_whitespace)
                }));
        if valid {
            out.push(o);
        } else {
            errs.add(
                path,
                format!("{o:?} is not an origin (scheme://host[:port], e.g. \"https://admin.example.com\", or \"*\")"),
            );
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `admin.hostnames`: names without scheme or port (`admin.example.com`), or `"*"` for any
/// `Host`; absent: the loopback names. Kept lower case, without a trailing dot.
pub(super) fn validate_hostnames(list: Option<Vec<String>>, errs: &mut Errors) -> Vec<String> {
    let Some(list) = list else {
        return defaults::ADMIN_HOSTNAMES
            .iter()
            .map(|h| h.to_string())
            .collect();
    };
    let mut out = Vec::new();
    for (i, h) in list.iter().enumerate() {
        let name = h.trim().trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name == "*" || (name.len() <= 253 && name.split('.').all(label_ok)) {
            out.push(name);
        } else {
            errs.add(
                format!("admin.hostnames[{i}]"),
                format!("{h:?} is not a host name (a name without scheme or port, e.g. \"admin.example.com\", or \"*\" for any)"),
            );
        }
    }
    out
}
