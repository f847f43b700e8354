//! Who may use the admin endpoints that read or change state (`/quota`, `/purge`): addresses
//! in `admin.allow_cidrs`, or `Authorization: Bearer <admin.token>`.

use super::json_error;
use http::{Response, StatusCode};
use std::net::IpAddr;

/// Who may use the endpoints that read or change state (`/quota`, `/purge`).
pub struct Access {
    /// `admin.token`: accepted from any address as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// `admin.allow_cidrs`: addresses allowed without the token.
    pub allow: Vec<ipnet::IpNet>,
}

/// Why a protected admin request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// No credentials and the address is not allowed: 401.
    NoCredentials(String),
    /// A bearer token that is not `admin.token`: 403.
    WrongToken,
    /// Not allowed and no token configured that could allow it: 403.
    NotAllowed(String),
}

impl Access {
    pub fn new(config: &crate::config::AdminSettings) -> Access {
        Access {
            token: config.token.clone(),
            allow: config.allow_cidrs.clone(),
        }
    }

    /// `peer`: the client's socket address (never a forwarded header: the admin listener is
    /// reached directly). `authorization`: the raw header value, when sent.
    pub fn check(&self, peer: Option<IpAddr>, authorization: Option<&str>) -> Result<(), Denied> {
        let peer = peer.map(|ip| ip.to_canonical());
        if let Some(given) = authorization {
            let bearer = given
                .strip_prefix("Bearer ")
                .or_else(|| given.strip_prefix("bearer "))
                .map(str::trim);
            return match (&self.token, bearer) {
                (Some(t), Some(b)) if crate::signing::token_matches(t, b) => Ok(()),
                // A wrong or malformed credential is refused even from an allowed address: the
                // caller meant to authenticate and should learn that it failed.
                (Some(_), _) => Err(Denied::WrongToken),
                (None, _) if peer.is_some_and(|ip| self.allows(ip)) => Ok(()),
                (None, _) => Err(Denied::NotAllowed(addr_text(peer))),
            };
        }
        if peer.is_some_and(|ip| self.allows(ip)) {
            return Ok(());
        }
        if self.token.is_some() {
            Err(Denied::NoCredentials(addr_text(peer)))
        } else {
            Err(Denied::NotAllowed(addr_text(peer)))
        }
    }

    fn allows(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|n| n.contains(&ip))
    }
}

pub fn addr_text(peer: Option<IpAddr>) -> String {
    peer.map_or_else(|| "an unknown address".into(), |ip| ip.to_string())
}

impl Denied {
    pub fn response(&self, path: &str) -> Response<Vec<u8>> {
        match self {
            Denied::NoCredentials(addr) => {
                let mut r = json_error(
                    StatusCode::UNAUTHORIZED,
                    &format!("{path} needs Authorization: Bearer <admin.token> (requests from {addr} are not in admin.allow_cidrs)"),
                );
                r.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer realm=\"imgedge admin\""),
                );
                r
            }
            Denied::WrongToken => json_error(
                StatusCode::FORBIDDEN,
                &format!("{path}: wrong admin token (send Authorization: Bearer <admin.token>)"),
            ),
            Denied::NotAllowed(addr) => json_error(
                StatusCode::FORBIDDEN,
                &format!("{path} is not allowed from {addr}: add it to admin.allow_cidrs, or set admin.token and send it as a Bearer token"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn access(token: bool, allow: &[&str]) -> Access {
        Access {
            token: token.then(|| TOKEN.to_string()),
            allow: allow.iter().map(|c| c.parse().unwrap()).collect(),
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn allowed_networks_need_no_token() {
        let a = access(false, &["127.0.0.0/8", "::1/128"]);
        assert_eq!(a.check(ip("127.0.0.1"), None), Ok(()));
        assert_eq!(a.check(ip("::1"), None), Ok(()));
        // IPv4-mapped IPv6 peers (dual-stack listeners) count as their IPv4 address.
        assert_eq!(a.check(ip("::ffff:127.0.0.1"), None), Ok(()));
        assert!(matches!(
            a.check(ip("10.1.2.3"), None),
            Err(Denied::NotAllowed(_))
        ));
    }

    #[test]
    fn token_from_anywhere() {
        let a = access(true, &[]);
        let good = format!("Bearer {TOKEN}");
        assert_eq!(a.check(ip("203.0.113.9"), Some(&good)), Ok(()));
        assert!(matches!(
            a.check(ip("203.0.113.9"), None),
            Err(Denied::NoCredentials(_))
        ));
        assert_eq!(
            a.check(ip("203.0.113.9"), Some("Bearer nope")),
            Err(Denied::WrongToken)
        );
        assert_eq!(
            a.check(ip("203.0.113.9"), Some(&format!("Basic {TOKEN}"))),
            Err(Denied::WrongToken)
        );
        // A wrong token is refused even from an allowed address.
        let b = access(true, &["127.0.0.0/8"]);
        assert_eq!(
            b.check(ip("127.0.0.1"), Some("Bearer nope")),
            Err(Denied::WrongToken)
        );
        assert_eq!(b.check(ip("127.0.0.1"), None), Ok(()));
    }
}
