//! YAML -> validated [`Config`], collecting every problem with its key path.

use super::raw::*;
use super::size::{parse_duration, parse_size, Quantity};
use super::*;
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use std::fmt;
use std::net::SocketAddr;

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

#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Reads and validates a file.
pub fn load_file(path: &std::path::Path) -> Result<Config, ConfigErrors> {
    let text =
        super::files::read_bounded_text(path, super::files::MAX_CONFIG_BYTES).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
    parse_str(&text)
}

/// Parses and validates YAML text.
pub fn parse_str(text: &str) -> Result<Config, ConfigErrors> {
    let mut errs = Errors::default();
    let raw = parse_raw(text, &mut errs);
    let config = raw.map(|raw| validate(raw, &mut errs));
    match config {
        Some(c) if errs.0.is_empty() => Ok(c),
        _ => Err(ConfigErrors(errs.0)),
    }
}

/// Deserializes one section, reporting the first problem inside it with its full path.
fn section<T: DeserializeOwned + Default>(v: Option<&Value>, path: &str, errs: &mut Errors) -> T {
    try_section(v, path, errs).unwrap_or_default()
}

/// Like [`section`], `None` when the section could not be read (already reported).
fn try_section<T: DeserializeOwned + Default>(
    v: Option<&Value>,
    path: &str,
    errs: &mut Errors,
) -> Option<T> {
    let Some(v) = v else {
        return Some(T::default());
    };
    if v.is_null() {
        return Some(T::default());
    }
    match serde_path_to_error::deserialize::<_, T>(v.clone()) {
        Ok(t) => Some(t),
        Err(e) => {
            let inner = e.path().to_string();
            let full = if inner == "." || inner.is_empty() {
                path.to_string()
            } else if inner.starts_with('[') {
                format!("{path}{inner}")
            } else {
                format!("{path}.{inner}")
            };
            errs.add(full, e.inner().to_string());
            None
        }
    }
}

fn parse_raw(text: &str, errs: &mut Errors) -> Option<RawConfig> {
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            errs.add("", format!("not valid YAML: {e}"));
            return None;
        }
    };
    let map = match doc {
        Value::Null => serde_yaml::Mapping::new(),
        Value::Mapping(m) => m,
        _ => {
            errs.add("", "the file must be a YAML mapping of sections");
            return None;
        }
    };
    for k in map.keys() {
        match k.as_str() {
            Some(s) if TOP_LEVEL_KEYS.contains(&s) => {}
            _ => errs.add(
                key_name(k),
                format!(
                    "unknown key (expected one of {})",
                    TOP_LEVEL_KEYS.join(", ")
                ),
            ),
        }
    }
    let mut raw = RawConfig {
        server: section(map.get("server"), "server", errs),
        listen: section::<Option<Vec<String>>>(map.get("listen"), "listen", errs),
        admin: section(map.get("admin"), "admin", errs),
        cache: section(map.get("cache"), "cache", errs),
        transform: section(map.get("transform"), "transform", errs),
        limits: section(map.get("limits"), "limits", errs),
        usage: match map.get("usage") {
            None | Some(Value::Null) => None,
            v => try_section(v, "usage", errs),
        },
        log: section(map.get("log"), "log", errs),
        tls: section(map.get("tls"), "tls", errs),
        http: section(map.get("http"), "http", errs),
        client: section(map.get("client"), "client", errs),
        ..Default::default()
    };
    match map.get("upstreams") {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(ups)) => {
            for (k, v) in ups {
                let name = key_name(k);
                let path = format!("upstreams.{name}");
                raw.upstreams
                    .insert(name, try_section(Some(v), &path, errs));
            }
        }
        Some(_) => errs.add("upstreams", "must be a mapping of name -> upstream"),
    }
    match map.get("routes") {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(routes)) => {
            for (i, v) in routes.iter().enumerate() {
                raw.routes
                    .push(try_section(Some(v), &format!("routes[{i}]"), errs));
            }
        }
        Some(_) => errs.add("routes", "must be a list of routes"),
    }
    Some(raw)
}

fn key_name(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

fn validate(raw: RawConfig, errs: &mut Errors) -> Config {
    let server = validate_server(raw.server, errs);
    let listen = match raw.listen {
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
    let admin_listen = raw
        .admin
        .listen
        .unwrap_or_else(|| defaults::ADMIN_LISTEN.to_string());
    check_socket_addr(&admin_listen, "admin.listen", errs);
    if listen.contains(&admin_listen) {
        errs.add("admin.listen", "must differ from every address in listen");
    }
    let admin_token = validate_admin_token(raw.admin.token, raw.admin.token_file, errs);
    let admin_allow_cidrs = validate_allow_cidrs(raw.admin.allow_cidrs, errs);

    let mut upstreams = Vec::new();
    for (name, up) in raw.upstreams {
        let path = format!("upstreams.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            errs.add(
                &path,
                "upstream names may only use letters, digits, '_' and '-'",
            );
        }
        // An upstream that could not be read keeps its name (routes may refer to it) with a
        // placeholder; the config is invalid anyway.
        let kind = up
            .and_then(|up| validate_upstream(up, &path, errs))
            .unwrap_or_else(|| UpstreamKind::Dir(PathBuf::new()));
        upstreams.push(Upstream { name, kind });
    }

    let mut routes = Vec::new();
    if raw.routes.is_empty() {
        errs.add("routes", "at least one route is required");
    }
    for (i, r) in raw.routes.into_iter().enumerate() {
        let path = format!("routes[{i}]");
        let Some(r) = r else { continue };
        let prefix = match r.prefix {
            Some(p) if p.starts_with('/') => p,
            Some(p) => {
                errs.add(
                    format!("{path}.prefix"),
                    format!("{p:?} must start with '/'"),
                );
                continue;
            }
            None => {
                errs.add(format!("{path}.prefix"), "is required");
                continue;
            }
        };
        let upstream = match r.upstream {
            None => {
                errs.add(format!("{path}.upstream"), "is required");
                continue;
            }
            Some(u) => match upstreams.iter().position(|x| x.name == u) {
                Some(idx) => idx,
                None => {
                    let known: Vec<&str> = upstreams.iter().map(|x| x.name.as_str()).collect();
                    errs.add(
                        format!("{path}.upstream"),
                        format!("no upstream named {u:?} (known: {})", known.join(", ")),
                    );
                    continue;
                }
            },
        };
        let host = r.host.map(|h| h.to_ascii_lowercase());
        if let Some(h) = &host {
            if h.is_empty()
                || !h
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
            {
                errs.add(format!("{path}.host"), format!("{h:?} is not a host name"));
            }
        }
        routes.push(Route {
            prefix,
            host,
            upstream,
            strip_prefix: r.strip_prefix.unwrap_or(false),
            cache: r.cache.unwrap_or(true),
            forward_transform: r.forward_transform.unwrap_or(false),
        });
    }

    let cache = validate_cache(raw.cache, errs);
    let transform = validate_transform(raw.transform, errs);
    let mut limit_errs = Vec::new();
    let limits = crate::limits::validate(raw.limits, &mut limit_errs);
    for (path, msg) in limit_errs {
        errs.add(path, msg);
    }
    let playground = raw.admin.playground.unwrap_or(defaults::ADMIN_PLAYGROUND);
    let playground_origins = playground_origins(
        &admin_listen,
        raw.admin.playground_origins.unwrap_or_default(),
        errs,
    );
    let usage = raw.usage.map(|u| validate_usage(u, errs));
    let level = raw.log.level.unwrap_or_else(|| "info".to_string());
    if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
        errs.add(
            "log.level",
            format!("{level:?} is not one of error, warn, info, debug, trace"),
        );
    }
    let tls = raw
        .tls
        .map(|t| validate_tls(t, &listen, &admin_listen, errs));
    let http = super::HttpLimits {
        max_url_bytes: size(
            raw.http.max_url_bytes,
            defaults::HTTP_MAX_URL_BYTES,
            "http.max_url_bytes",
            errs,
        ) as usize,
        max_header_bytes: size(
            raw.http.max_header_bytes,
            defaults::HTTP_MAX_HEADER_BYTES,
            "http.max_header_bytes",
            errs,
        ) as usize,
    };
    let client = validate_client(raw.client, errs);
    Config {
        client,
        http,
        tls,
        server,
        listen,
        admin: AdminSettings {
            listen: admin_listen,
            playground,
            playground_origins,
            token: admin_token,
            allow_cidrs: admin_allow_cidrs,
        },
        upstreams,
        routes,
        cache,
        transform,
        limits,
        usage,
        log: LogSettings {
            access: raw.log.access.unwrap_or(true),
            level,
        },
    }
}

/// The origins a browser shows for the admin listener (loopback listeners are reached as
/// `localhost` or `127.0.0.1`), plus the configured ones (`"*"` allows any origin).
fn playground_origins(admin: &str, extra: Vec<String>, errs: &mut Errors) -> Vec<String> {
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

fn validate_usage(u: RawUsage, errs: &mut Errors) -> UsageSettings {
    let redis_url = match u.redis_url {
        None => {
            errs.add(
                "usage.redis_url",
                "is required (e.g. \"redis://127.0.0.1:6379\")",
            );
            String::new()
        }
        Some(url) => {
            if let Err(e) = redis::Client::open(url.as_str()) {
                errs.add(
                    "usage.redis_url",
                    format!("{url:?} is not a Redis URL: {e}"),
                );
            }
            url
        }
    };
    let stream = u.stream.unwrap_or_else(|| defaults::USAGE_STREAM.into());
    if stream.is_empty() {
        errs.add("usage.stream", "must not be empty");
    }
    let maxlen = u.maxlen.unwrap_or(defaults::USAGE_MAXLEN);
    if maxlen == 0 {
        errs.add("usage.maxlen", "must be at least 1");
    }
    let batch_size = u.batch_size.unwrap_or(defaults::USAGE_BATCH_SIZE);
    if batch_size == 0 || batch_size > 10_000 {
        errs.add("usage.batch_size", "must be between 1 and 10000");
    }
    let buffer_size = u.buffer_size.unwrap_or(defaults::USAGE_BUFFER_SIZE);
    if buffer_size == 0 {
        errs.add("usage.buffer_size", "must be at least 1");
    }
    let flush_interval = dur(
        u.flush_interval,
        defaults::USAGE_FLUSH_INTERVAL,
        "usage.flush_interval".into(),
        errs,
    );
    if flush_interval.is_zero() {
        errs.add("usage.flush_interval", "must be more than 0");
    }
    let timeout = dur(
        u.timeout,
        defaults::USAGE_TIMEOUT,
        "usage.timeout".into(),
        errs,
    );
    if timeout.is_zero() {
        errs.add("usage.timeout", "must be more than 0");
    }
    UsageSettings {
        redis_url,
        stream,
        maxlen,
        batch_size,
        buffer_size,
        flush_interval,
        timeout,
    }
}

fn validate_server(s: RawServer, errs: &mut Errors) -> ServerSettings {
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

fn check_socket_addr(a: &str, path: &str, errs: &mut Errors) {
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

fn dur(q: Option<Quantity>, default: Duration, path: String, errs: &mut Errors) -> Duration {
    match q {
        None => default,
        Some(q) => parse_duration(&q).unwrap_or_else(|m| {
            errs.add(path, m);
            default
        }),
    }
}

fn size(q: Option<Quantity>, default: u64, path: &str, errs: &mut Errors) -> u64 {
    match q {
        None => default,
        Some(q) => parse_size(&q).unwrap_or_else(|m| {
            errs.add(path, m);
            default
        }),
    }
}

fn validate_upstream(up: RawUpstream, path: &str, errs: &mut Errors) -> Option<UpstreamKind> {
    match (up.peers, up.dir) {
        (Some(_), Some(_)) => {
            errs.add(path, "set either peers or dir, not both");
            None
        }
        (None, None) => {
            errs.add(
                path,
                "needs peers (host:port list) or dir (a local directory)",
            );
            None
        }
        (None, Some(dir)) => {
            for (set, key) in [
                (up.tls.is_some(), "tls"),
                (up.host.is_some(), "host"),
                (up.lb.is_some(), "lb"),
                (up.health_check.is_some(), "health_check"),
                (up.timeouts.is_some(), "timeouts"),
                (up.retries.is_some(), "retries"),
                (up.circuit_breaker.is_some(), "circuit_breaker"),
            ] {
                if set {
                    errs.add(
                        format!("{path}.{key}"),
                        "only applies to an upstream with peers",
                    );
                }
            }
            let p = PathBuf::from(&dir);
            if !p.is_dir() {
                errs.add(format!("{path}.dir"), format!("{dir:?} is not a directory"));
            }
            Some(UpstreamKind::Dir(p))
        }
        (Some(peers), None) => {
            if peers.is_empty() {
                errs.add(format!("{path}.peers"), "needs at least one host:port");
            }
            for (i, p) in peers.iter().enumerate() {
                if !is_host_port(p) {
                    errs.add(
                        format!("{path}.peers[{i}]"),
                        format!("{p:?} is not host:port"),
                    );
                }
            }
            let first_host = peers
                .first()
                .and_then(|p| p.rsplit_once(':'))
                .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']').to_string())
                .unwrap_or_default();
            let tls = match up.tls {
                None | Some(RawTlsSetting::Flag(false)) => None,
                Some(RawTlsSetting::Flag(true)) => Some(TlsSettings {
                    sni: up.host.clone().unwrap_or(first_host),
                    verify: true,
                }),
                Some(RawTlsSetting::Detailed(t)) => Some(TlsSettings {
                    sni: t.sni.or_else(|| up.host.clone()).unwrap_or(first_host),
                    verify: t.verify.unwrap_or(true),
                }),
            };
            let lb = match up.lb.as_deref() {
                None | Some("round_robin") => LbAlgorithm::RoundRobin,
                Some("consistent") => LbAlgorithm::Consistent,
                Some(other) => {
                    errs.add(
                        format!("{path}.lb"),
                        format!("{other:?} is not one of round_robin, consistent"),
                    );
                    LbAlgorithm::RoundRobin
                }
            };
            let health_check = up.health_check.and_then(|hc| {
                let hp = format!("{path}.health_check");
                if hc.enabled == Some(false) {
                    return None;
                }
                let path_ = hc.path.unwrap_or_else(|| defaults::HC_PATH.into());
                if !path_.starts_with('/') {
                    errs.add(
                        format!("{hp}.path"),
                        format!("{path_:?} must start with '/'"),
                    );
                }
                let healthy_threshold = hc
                    .healthy_threshold
                    .unwrap_or(defaults::HC_HEALTHY_THRESHOLD);
                let unhealthy_threshold = hc
                    .unhealthy_threshold
                    .unwrap_or(defaults::HC_UNHEALTHY_THRESHOLD);
                if healthy_threshold == 0 {
                    errs.add(format!("{hp}.healthy_threshold"), "must be at least 1");
                }
                if unhealthy_threshold == 0 {
                    errs.add(format!("{hp}.unhealthy_threshold"), "must be at least 1");
                }
                let interval = dur(
                    hc.interval,
                    defaults::HC_INTERVAL,
                    format!("{hp}.interval"),
                    errs,
                );
                if interval.is_zero() {
                    errs.add(format!("{hp}.interval"), "must be above zero");
                }
                Some(HealthCheck {
                    path: path_,
                    interval,
                    timeout: dur(
                        hc.timeout,
                        defaults::HC_TIMEOUT,
                        format!("{hp}.timeout"),
                        errs,
                    ),
                    healthy_threshold,
                    unhealthy_threshold,
                })
            });
            let t = up.timeouts.unwrap_or_default();
            let tp = format!("{path}.timeouts");
            let timeouts = Timeouts {
                connect: dur(
                    t.connect,
                    defaults::CONNECT_TIMEOUT,
                    format!("{tp}.connect"),
                    errs,
                ),
                total_connect: dur(
                    t.total_connect,
                    defaults::TOTAL_CONNECT_TIMEOUT,
                    format!("{tp}.total_connect"),
                    errs,
                ),
                read: dur(t.read, defaults::READ_TIMEOUT, format!("{tp}.read"), errs),
                write: dur(
                    t.write,
                    defaults::WRITE_TIMEOUT,
                    format!("{tp}.write"),
                    errs,
                ),
                idle: dur(t.idle, defaults::IDLE_TIMEOUT, format!("{tp}.idle"), errs),
                first_byte: dur(
                    t.first_byte,
                    defaults::FIRST_BYTE_TIMEOUT,
                    format!("{tp}.first_byte"),
                    errs,
                ),
                total: dur(
                    t.total,
                    defaults::TOTAL_TIMEOUT,
                    format!("{tp}.total"),
                    errs,
                ),
            };
            for (d, k) in [
                (timeouts.connect, "connect"),
                (timeouts.read, "read"),
                (timeouts.first_byte, "first_byte"),
                (timeouts.total, "total"),
            ] {
                if d.is_zero() {
                    errs.add(format!("{tp}.{k}"), "must be above zero");
                }
            }
            if timeouts.first_byte > timeouts.total && !timeouts.total.is_zero() {
                errs.add(
                    format!("{tp}.first_byte"),
                    format!(
                        "{:?} is longer than timeouts.total ({:?}): the whole response must fit in total",
                        timeouts.first_byte, timeouts.total
                    ),
                );
            }
            let circuit_breaker = validate_breaker(up.circuit_breaker, path, errs);
            Some(UpstreamKind::Peers(Box::new(PeerPool {
                peers,
                tls,
                host: up.host,
                lb,
                health_check,
                timeouts,
                retries: up.retries.unwrap_or(defaults::RETRIES),
                circuit_breaker,
            })))
        }
    }
}

/// `upstreams.X.circuit_breaker`: on by default; `enabled: false` turns it off.
fn validate_breaker(
    cb: Option<RawCircuitBreaker>,
    path: &str,
    errs: &mut Errors,
) -> Option<CircuitBreaker> {
    let cb = cb.unwrap_or_default();
    let p = format!("{path}.circuit_breaker");
    let failures = cb.failures.unwrap_or(defaults::CB_FAILURES);
    if failures == 0 {
        errs.add(
            format!("{p}.failures"),
            "must be at least 1 (use enabled: false to turn the breaker off)",
        );
    }
    let cooldown = dur(
        cb.cooldown,
        defaults::CB_COOLDOWN,
        format!("{p}.cooldown"),
        errs,
    );
    if cooldown.is_zero() {
        errs.add(format!("{p}.cooldown"), "must be above zero");
    }
    (cb.enabled != Some(false)).then_some(CircuitBreaker { failures, cooldown })
}

/// `client`: header and keep-alive timeouts of client connections.
fn validate_client(c: RawClient, errs: &mut Errors) -> ClientTimeouts {
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

/// `admin.token` or `admin.token_file` (read now, trimmed): at least
/// `ADMIN_TOKEN_MIN_LEN` visible characters.
fn validate_admin_token(
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
fn validate_allow_cidrs(list: Option<Vec<String>>, errs: &mut Errors) -> Vec<ipnet::IpNet> {
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

fn validate_disk(d: RawDisk, max_object_bytes: u64, errs: &mut Errors) -> Option<DiskSettings> {
    let path = match d.path {
        Some(p) if !p.trim().is_empty() => Some(PathBuf::from(p)),
        Some(_) => {
            errs.add("cache.disk.path", "must not be empty");
            None
        }
        None => {
            errs.add(
                "cache.disk.path",
                "is required (the cache directory, e.g. /var/cache/imgedge)",
            );
            None
        }
    };
    let bytes = match d.bytes {
        None => {
            errs.add(
                "cache.disk.bytes",
                "is required (the disk budget, e.g. \"20GiB\")",
            );
            None
        }
        Some(q) => match parse_size(&q) {
            Ok(b) if b < defaults::CACHE_DISK_MIN_BYTES => {
                errs.add("cache.disk.bytes", format!("{b} is below the minimum 1MiB"));
                None
            }
            Ok(b) if b < max_object_bytes => {
                errs.add(
                    "cache.disk.bytes",
                    "must be at least cache.max_object_bytes",
                );
                None
            }
            Ok(b) => Some(b),
            Err(m) => {
                errs.add("cache.disk.bytes", m);
                None
            }
        },
    };
    Some(DiskSettings {
        path: path?,
        bytes: bytes?,
    })
}

fn validate_cache(c: RawCache, errs: &mut Errors) -> CacheSettings {
    let memory_bytes = size(
        c.memory_bytes,
        defaults::CACHE_MEMORY_BYTES,
        "cache.memory_bytes",
        errs,
    );
    if memory_bytes < 64 * 1024 {
        errs.add(
            "cache.memory_bytes",
            format!("{memory_bytes} is below the minimum 64KiB"),
        );
    }
    let max_object_bytes = size(
        c.max_object_bytes,
        defaults::CACHE_MAX_OBJECT_BYTES.min(memory_bytes),
        "cache.max_object_bytes",
        errs,
    );
    if max_object_bytes > memory_bytes {
        errs.add(
            "cache.max_object_bytes",
            "must not exceed cache.memory_bytes",
        );
    }
    CacheSettings {
        memory_bytes,
        max_object_bytes,
        default_ttl: dur(
            c.default_ttl,
            defaults::CACHE_DEFAULT_TTL,
            "cache.default_ttl".into(),
            errs,
        ),
        negative_ttl: dur(
            c.negative_ttl,
            defaults::CACHE_NEGATIVE_TTL,
            "cache.negative_ttl".into(),
            errs,
        ),
        stale_while_revalidate: dur(
            c.stale_while_revalidate,
            defaults::CACHE_STALE_WHILE_REVALIDATE,
            "cache.stale_while_revalidate".into(),
            errs,
        ),
        stale_if_error: dur(
            c.stale_if_error,
            defaults::CACHE_STALE_IF_ERROR,
            "cache.stale_if_error".into(),
            errs,
        ),
        lock_timeout: dur(
            c.lock_timeout,
            defaults::CACHE_LOCK_TIMEOUT,
            "cache.lock_timeout".into(),
            errs,
        ),
        sendfile_hits: c.sendfile_hits.unwrap_or(defaults::CACHE_SENDFILE_HITS),
        disk: c
            .disk
            .and_then(|d| validate_disk(d, max_object_bytes, errs)),
    }
}

/// `tls`: addresses distinct from the plain listeners, and a certificate and key that load and
/// match (checked here so that `-t` finds what would otherwise fail at start-up).
fn validate_tls(
    t: super::raw::RawTlsListen,
    plain: &[String],
    admin: &str,
    errs: &mut Errors,
) -> super::TlsListeners {
    let listen = t.listen.unwrap_or_default();
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
    super::TlsListeners {
        listen,
        cert_file,
        key_file,
        h2: t.h2.unwrap_or(defaults::TLS_H2),
    }
}

fn read_secret_text(path: &str) -> Result<String, String> {
    super::files::read_named_text(std::path::Path::new(path), super::files::MAX_SECRET_BYTES)
}

fn check_cert_and_key(cert: &str, key: &str) -> Result<(), (&'static str, String)> {
    for (k, f) in [("tls.cert_file", cert), ("tls.key_file", key)] {
        super::files::read_named_file(std::path::Path::new(f), super::files::MAX_SECRET_BYTES)
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

/// `transform.signing`: inline keys and/or key files (one key per file, surrounding whitespace
/// ignored), each at least `MIN_KEY_BYTES` long.
fn validate_signing(
    s: super::raw::RawSigning,
    errs: &mut Errors,
) -> crate::signing::SigningSettings {
    use crate::signing::MIN_KEY_BYTES;
    let mut keys = Vec::new();
    for (i, k) in s.keys.unwrap_or_default().into_iter().enumerate() {
        if k.len() < MIN_KEY_BYTES {
            errs.add(
                format!("transform.signing.keys[{i}]"),
                format!(
                    "{} bytes is too short: use at least {MIN_KEY_BYTES} random bytes",
                    k.len()
                ),
            );
        }
        keys.push(k.into_bytes());
    }
    for (i, f) in s.key_files.unwrap_or_default().into_iter().enumerate() {
        let path = format!("transform.signing.key_files[{i}]");
        match read_secret_text(&f) {
            Ok(k) if k.trim().len() >= MIN_KEY_BYTES => keys.push(k.trim().as_bytes().to_vec()),
            Ok(k) => errs.add(
                path,
                format!(
                    "{f:?} holds {} bytes: use at least {MIN_KEY_BYTES}",
                    k.trim().len()
                ),
            ),
            Err(e) => errs.add(path, format!("cannot read {f:?}: {e}")),
        }
    }
    if keys.is_empty() {
        errs.add(
            "transform.signing.keys",
            "no key: give keys or key_files (or remove transform.signing)",
        );
    }
    crate::signing::SigningSettings {
        keys,
        required: s.required.unwrap_or(defaults::SIGNING_REQUIRED),
    }
}

fn validate_transform(t: RawTransform, errs: &mut Errors) -> TransformSettings {
    use crate::image::format::OutputFormat;
    use crate::image::params::{parse_preset, Presets};
    use crate::image::spec::Limits;
    let positive = |v: Option<u64>, d: u64, key: &str, errs: &mut Errors| -> u64 {
        let v = v.unwrap_or(d);
        if v == 0 {
            errs.add(format!("transform.{key}"), "must be at least 1");
        }
        v
    };
    let max_width = positive(
        t.max_width.map(u64::from),
        defaults::TRANSFORM_MAX_WIDTH.into(),
        "max_width",
        errs,
    );
    let max_height = positive(
        t.max_height.map(u64::from),
        defaults::TRANSFORM_MAX_HEIGHT.into(),
        "max_height",
        errs,
    );
    let max_output_pixels = positive(
        t.max_output_pixels,
        defaults::TRANSFORM_MAX_OUTPUT_PIXELS,
        "max_output_pixels",
        errs,
    );
    let max_source_pixels = positive(
        t.max_source_pixels,
        defaults::TRANSFORM_MAX_SOURCE_PIXELS,
        "max_source_pixels",
        errs,
    );
    let max_source_bytes = size(
        t.max_source_bytes,
        defaults::TRANSFORM_MAX_SOURCE_BYTES,
        "transform.max_source_bytes",
        errs,
    );
    let workers = t.workers.unwrap_or_else(defaults::threads);
    if workers == 0 {
        errs.add("transform.workers", "must be at least 1");
    }
    let quality = t.quality.unwrap_or(defaults::TRANSFORM_QUALITY);
    if !(1..=100).contains(&quality) {
        errs.add(
            "transform.quality",
            format!("{quality} is not within 1-100"),
        );
    }
    let avif_speed = t.avif_speed.unwrap_or(defaults::TRANSFORM_AVIF_SPEED);
    if !(1..=10).contains(&avif_speed) {
        errs.add(
            "transform.avif_speed",
            format!("{avif_speed} is not within 1 (slow) - 10 (fast)"),
        );
    }
    let mut allowed_formats = Vec::new();
    for (i, f) in t.formats.unwrap_or_default().iter().enumerate() {
        match OutputFormat::parse(f) {
            Some(f) => allowed_formats.push(f),
            None => errs.add(
                format!("transform.formats[{i}]"),
                format!("{f:?} is not one of avif, webp, jpeg, png"),
            ),
        }
    }
    let limits = Limits {
        max_width: max_width.min(u32::MAX.into()) as u32,
        max_height: max_height.min(u32::MAX.into()) as u32,
        max_output_pixels,
        max_source_pixels,
        max_source_bytes,
        default_quality: quality,
        avif_speed,
        allowed_formats,
    };
    let mut presets = Presets::new();
    for (name, params) in t.presets.unwrap_or_default() {
        let path = format!("transform.presets.{name}");
        let mut strings = std::collections::BTreeMap::new();
        for (k, v) in params {
            let s = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    errs.add(format!("{path}.{k}"), "must be a string or a number");
                    continue;
                }
            };
            strings.insert(k, s);
        }
        match parse_preset(&strings).and_then(|p| p.validate(&limits).map(|_| p)) {
            Ok(p) => {
                presets.insert(name, p);
            }
            Err(e) => errs.add(format!("{path}.{}", e.param), e.problem),
        }
    }
    let signing = t.signing.map(|s| validate_signing(s, errs));
    let timeout = dur(
        t.timeout,
        defaults::TRANSFORM_TIMEOUT,
        "transform.timeout".into(),
        errs,
    );
    if timeout.is_zero() {
        errs.add("transform.timeout", "must be above zero");
    }
    TransformSettings {
        signing,
        limits,
        presets,
        workers,
        queue: t.queue.unwrap_or(defaults::TRANSFORM_QUEUE),
        auto_avif: t.auto_avif.unwrap_or(defaults::TRANSFORM_AUTO_AVIF),
        failure_ttl: dur(
            t.failure_ttl,
            defaults::TRANSFORM_FAILURE_TTL,
            "transform.failure_ttl".into(),
            errs,
        ),
        timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> Vec<String> {
        match parse_str(yaml) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse_str(
            "upstreams: {origin: {peers: [\"127.0.0.1:8081\"]}}\nroutes: [{prefix: /, upstream: origin}]\n",
        )
        .unwrap();
        assert_eq!(c.listen, vec![defaults::LISTEN]);
        assert_eq!(c.cache.memory_bytes, defaults::CACHE_MEMORY_BYTES);
        assert!(c.routes[0].cache);
        assert!(c.admin.playground);
        assert!(c.usage.is_none());
    }

    #[test]
    fn playground_origins_and_usage_defaults() {
        let c = parse_str(
            "admin: {listen: \"127.0.0.1:9180\", playground_origins: [\"https://a.example.com/\"]}\nupstreams: {origin: {peers: [\"127.0.0.1:8081\"]}}\nroutes: [{prefix: /, upstream: origin}]\nusage: {redis_url: \"redis://127.0.0.1:6379\"}\n",
        )
        .unwrap();
        for o in [
            "http://127.0.0.1:9180",
            "http://localhost:9180",
            "http://[::1]:9180",
            "https://a.example.com",
        ] {
            assert!(c.admin.playground_origins.iter().any(|x| x == o), "{o}");
        }
        let u = c.usage.unwrap();
        assert_eq!(u.stream, defaults::USAGE_STREAM);
        assert_eq!(u.maxlen, defaults::USAGE_MAXLEN);
        assert_eq!(u.batch_size, defaults::USAGE_BATCH_SIZE);
        assert_eq!(u.buffer_size, defaults::USAGE_BUFFER_SIZE);
        assert_eq!(u.flush_interval, defaults::USAGE_FLUSH_INTERVAL);
        // A public admin address is its own origin, without the loopback names.
        let c = parse_str(
            "admin: {listen: \"10.1.2.3:9180\"}\nupstreams: {origin: {peers: [\"127.0.0.1:8081\"]}}\nroutes: [{prefix: /, upstream: origin}]\n",
        )
        .unwrap();
        assert_eq!(c.admin.playground_origins, vec!["http://10.1.2.3:9180"]);
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let e = errors(
            r#"
listen: ["nope"]
upstreams:
  origin:
    peers: ["127.0.0.1:8081", "10.0.0.1"]
    lb: fastest
  bad:
    peers: ["a:1"]
    timeouts: {connect: "soon"}
routes:
  - prefix: /
    upstream: orgin
cache:
  memory_bytes: "lots"
bogus: 1
"#,
        );
        let want = [
            "bogus: unknown key",
            "listen[0]: \"nope\" is not an ip:port address",
            "upstreams.origin.peers[1]: \"10.0.0.1\" is not host:port",
            "upstreams.origin.lb: \"fastest\" is not one of",
            "upstreams.bad.timeouts.connect: \"soon\" is not a duration",
            "routes[0].upstream: no upstream named \"orgin\"",
            "cache.memory_bytes: \"lots\" is not a size",
        ];
        for w in want {
            assert!(
                e.iter().any(|x| x.starts_with(w)),
                "missing {w:?} in {e:#?}"
            );
        }
    }

    #[test]
    fn unknown_nested_key_has_path() {
        let e = errors(
            "upstreams: {o: {peers: [\"a:1\"], peer: 1}}\nroutes: [{prefix: /, upstream: o, cahce: false}]\n",
        );
        assert!(
            e.iter()
                .any(|x| x.starts_with("upstreams.o.peer: unknown field `peer`")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|x| x.starts_with("routes[0].cahce: unknown field `cahce`")),
            "{e:?}"
        );
        // No follow-on noise from the sections that could not be read.
        assert_eq!(e.len(), 2, "{e:?}");
    }

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

    #[test]
    fn embedded_default_is_valid() {
        // Paths in the shipped config are relative to the repository root.
        std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
        parse_str(EMBEDDED_DEFAULT).unwrap();
    }
}
