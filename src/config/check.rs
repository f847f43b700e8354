//! The errors of a configuration (each at its key path) and the checks every section shares:
//! sizes, durations, addresses and secret files.

use super::size::{parse_duration, parse_size, Quantity};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// One problem in the configuration, at a key path such as `upstreams.origin.peers[1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The problems found so far, in the order the file is checked (that order is what `-t` prints).
#[derive(Debug, Default)]
pub(crate) struct Errors(pub(crate) Vec<ConfigError>);

impl Errors {
    pub(crate) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// An `ip:port` the server binds.
pub(super) fn check_socket_addr(a: &str, path: &str, errs: &mut Errors) {
    if a.parse::<SocketAddr>().is_err() {
        errs.add(path, format!("{a:?} is not an ip:port address"));
    }
}

/// `host:port` with a DNS name or an IP (`[v6]:port` for IPv6).
pub(crate) fn is_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    port_ok && host_ok
}

/// A duration, `default` when absent or unreadable (then reported at `path`).
pub(super) fn dur(
    q: Option<Quantity>,
    default: Duration,
    path: String,
    errs: &mut Errors,
) -> Duration {
    match q {
        None => default,
        Some(q) => parse_duration(&q).unwrap_or_else(|m| {
            errs.add(path, m);
            default
        }),
    }
}

/// A size in bytes, `default` when absent or unreadable (then reported at `path`).
pub(super) fn size(q: Option<Quantity>, default: u64, path: &str, errs: &mut Errors) -> u64 {
    match q {
        None => default,
        Some(q) => parse_size(&q).unwrap_or_else(|m| {
            errs.add(path, m);
            default
        }),
    }
}

/// A token or key file the configuration names, as text.
pub(super) fn read_secret_text(path: &str) -> Result<String, String> {
    super::files::read_named_text(std::path::Path::new(path), super::files::MAX_SECRET_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        assert!(is_host_port("127.0.0.1:80"));
        assert!(is_host_port("[::1]:80"));
        assert!(is_host_port("s3.eu-west-1.amazonaws.com:443"));
        assert!(!is_host_port("10.0.0.1"));
        assert!(!is_host_port("host:0"));
        assert!(!is_host_port(":80"));
        assert!(!is_host_port("a b:80"));
    }
}
