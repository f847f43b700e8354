//! The proxy's listeners and what they allow clients: `listen`, `tls`, `http` (request size
//! limits), `client` (timeouts), and `server` (the process around them).

use super::check::{check_socket_addr, dur, size, Errors};
use super::raw::{RawClient, RawHttp, RawServer, RawTlsListen};
use super::{defaults, files};
use super::{ClientTimeouts, HttpLimits, ServerSettings, TlsListeners};

/// `listen`: the plain HTTP addresses; absent: the default one.
pub(super) fn validate_listen(listen: Option<Vec<String>>, errs: &mut Errors) -> Vec<String> {
    let listen = match listen {
        None => vec![defaults::LISTEN.to_string()],
        Some(l) if l.is_empty() => {
            errs.add("listen", "at least one address is required");
            vec![]
        }
        Some(l) => l,
    };
    for (i, a) in listen.iter().enumerate() {
        check_socket_addr(a, &format!("listen[{i}]"), errs);
    }
    listen
}

/// `server`: the process (threads, pid file, upgrades, privileges, shutdown).
pub(super) fn validate_server(s: RawServer, errs: &mut Errors) -> ServerSettings {
    let threads = s.threads.unwrap_or_else(defaults::threads);
    if threads == 0 {
        errs.add("server.threads", "must be at least 1");
    }
    ServerSettings {
        threads,
        pid_file: s.pid_file.unwrap_or_else(|| defaults::PID_FILE.into()),
        upgrade_sock: s
            .upgrade_sock
            .unwrap_or_else(|| defaults::UPGRADE_SOCK.into()),
        daemon: s.daemon.unwrap_or(false),
        error_log: s.error_log,
        user: s.user,
        group: s.group,
        grace_period_seconds: s
            .grace_period_seconds
            .unwrap_or(defaults::GRACE_PERIOD_SECONDS),
        graceful_shutdown_timeout_seconds: s
            .graceful_shutdown_timeout_seconds
            .unwrap_or(defaults::GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS),
        upstream_keepalive_pool_size: s
            .upstream_keepalive_pool_size
            .unwrap_or(defaults::UPSTREAM_KEEPALIVE_POOL_SIZE),
        work_stealing: s.work_stealing.unwrap_or(true),
    }
}

/// `tls`: addresses distinct from the plain listeners, and a certificate and key that load and
/// match (checked here so that `-t` finds what would otherwise fail at start-up).
pub(super) fn validate_tls(
    t: RawTlsListen,
    plain: &[String],
    admin: &str,
    errs: &mut Errors,
) -> TlsListeners {
    let listen = t.listen.map(|l| l.0).unwrap_or_default();
    if listen.is_empty() {
        errs.add("tls.listen", "at least one address is required");
    }
    for (i, a) in listen.iter().enumerate() {
        let path = format!("tls.listen[{i}]");
        check_socket_addr(a, &path, errs);
        if plain.contains(a) || a == admin {
            errs.add(path, format!("{a} is already a plain HTTP listener"));
        }
    }
    let cert_file = t.cert_file.unwrap_or_default();
    let key_file = t.key_file.unwrap_or_default();
    if cert_file.is_empty() {
        errs.add(
            "tls.cert_file",
            "required (PEM certificate chain, leaf first)",
        );
    }
    if key_file.is_empty() {
        errs.add("tls.key_file", "required (PEM private key)");
    }
    if !cert_file.is_empty() && !key_file.is_empty() {
        if let Err((key, problem)) = check_cert_and_key(&cert_file, &key_file) {
            errs.add(key, problem);
        }
    }
    TlsListeners {
        listen,
        cert_file,
        key_file,
        h2: t.h2.unwrap_or(defaults::TLS_H2),
    }
}

fn check_cert_and_key(cert: &str, key: &str) -> Result<(), (&'static str, String)> {
    for (k, f) in [("tls.cert_file", cert), ("tls.key_file", key)] {
        files::read_named_file(std::path::Path::new(f), files::MAX_SECRET_BYTES)
            .map_err(|e| (k, format!("cannot read {f:?}: {e}")))?;
    }
    let loaded = pingora_rustls::load_certs_and_key_files(cert, key)
        .map_err(|e| ("tls.cert_file", format!("{cert:?} / {key:?}: {e}")))?;
    let Some((certs, private_key)) = loaded else {
        return Err((
            "tls.cert_file",
            format!("no certificate in {cert:?} or no private key in {key:?} (PEM expected)"),
        ));
    };
    pingora_rustls::install_default_crypto_provider();
    pingora_rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .map_err(|e| {
            (
                "tls.key_file",
                format!("{key:?} does not fit {cert:?}: {e}"),
            )
        })?;
    Ok(())
}

/// `http`: the largest request target and header block a client may send.
pub(super) fn validate_http(h: RawHttp, errs: &mut Errors) -> HttpLimits {
    HttpLimits {
        max_url_bytes: size(
            h.max_url_bytes,
            defaults::HTTP_MAX_URL_BYTES,
            "http.max_url_bytes",
            errs,
        ) as usize,
        max_header_bytes: size(
            h.max_header_bytes,
            defaults::HTTP_MAX_HEADER_BYTES,
            "http.max_header_bytes",
            errs,
        ) as usize,
    }
}

/// `client`: header and keep-alive timeouts of client connections.
pub(super) fn validate_client(c: RawClient, errs: &mut Errors) -> ClientTimeouts {
    let header = dur(
        c.header_timeout,
        defaults::CLIENT_HEADER_TIMEOUT,
        "client.header_timeout".into(),
        errs,
    );
    let keepalive = dur(
        c.keepalive_timeout,
        defaults::CLIENT_KEEPALIVE_TIMEOUT,
        "client.keepalive_timeout".into(),
        errs,
    );
    for (d, k) in [(header, "header_timeout"), (keepalive, "keepalive_timeout")] {
        if d.is_zero() {
            errs.add(format!("client.{k}"), "must be above zero");
        }
    }
    ClientTimeouts { header, keepalive }
}
