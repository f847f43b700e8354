//! Loading a configuration: the file, its sections read one by one (so one bad section does not
//! hide the problems of the others), then each section validated in a fixed order (the order
//! `-t` lists problems in).

use super::check::{ConfigError, ConfigErrors, Errors};
use super::raw::{OneOrList, RawConfig, TOP_LEVEL_KEYS};
use super::sections::{did_you_mean, section, try_section, unknown_key};
use super::{admin, cache, limits, listeners, routes, transform, upstreams, usage};
use super::{defaults, files, AdminSettings, Config, LogSettings};
use serde_yaml::Value;

/// Reads and validates a file.
pub fn load_file(path: &std::path::Path) -> Result<Config, ConfigErrors> {
    let text = files::read_bounded_text(path, files::MAX_CONFIG_BYTES).map_err(|e| {
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
            _ => errs.add(key_name(k), unknown_key(&key_name(k), TOP_LEVEL_KEYS)),
        }
    }
    let mut raw = RawConfig {
        server: section(map.get("server"), "server", errs),
        listen: section::<Option<OneOrList>>(map.get("listen"), "listen", errs).map(|l| l.0),
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
        Some(Value::Null) => {}
        Some(Value::Mapping(ups)) => {
            for (k, v) in ups {
                let name = key_name(k);
                let path = format!("upstreams.{name}");
                raw.upstreams
                    .insert(name, try_section(Some(v), &path, errs));
            }
        }
        Some(_) => {
            errs.add("upstreams", "must be a mapping of name -> upstream");
            raw.upstreams_unread = true;
        }
        // A misspelt `upstreams` was reported: the routes' upstream names are not checked
        // against an empty section (a follow-on error).
        None => {
            raw.upstreams_unread = map.keys().any(|k| {
                let k = key_name(k);
                !TOP_LEVEL_KEYS.contains(&k.as_str())
                    && did_you_mean(&k, TOP_LEVEL_KEYS) == Some("upstreams")
            })
        }
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

/// Every section, in the order `-t` reports their problems.
fn validate(raw: RawConfig, errs: &mut Errors) -> Config {
    let server = listeners::validate_server(raw.server, errs);
    let listen = listeners::validate_listen(raw.listen, errs);
    let admin_listen = admin::validate_listen(raw.admin.listen, &listen, errs);
    let admin_token = admin::validate_token(raw.admin.token, raw.admin.token_file, errs);
    let admin_allow_cidrs = admin::validate_allow_cidrs(raw.admin.allow_cidrs, errs);
    let admin_hostnames = admin::validate_hostnames(raw.admin.hostnames, errs);
    let upstreams = upstreams::validate_upstreams(raw.upstreams, errs);
    let known = (!raw.upstreams_unread).then_some(upstreams.as_slice());
    let routes = routes::validate_routes(raw.routes, known, errs);
    let cache = cache::validate_cache(raw.cache, errs);
    let transform = transform::validate_transform(raw.transform, errs);
    let limits = limits::validate(raw.limits, errs);
    let playground = raw.admin.playground.unwrap_or(defaults::ADMIN_PLAYGROUND);
    let playground_origins = admin::playground_origins(
        &admin_listen,
        raw.admin.playground_origins.unwrap_or_default(),
        errs,
    );
    let usage = raw.usage.map(|u| usage::validate_usage(u, errs));
    let level = raw.log.level.unwrap_or_else(|| "info".to_string());
    if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
        errs.add(
            "log.level",
            format!("{level:?} is not one of error, warn, info, debug, trace"),
        );
    }
    let tls = raw
        .tls
        .map(|t| listeners::validate_tls(t, &listen, &admin_listen, errs));
    let http = listeners::validate_http(raw.http, errs);
    let client = listeners::validate_client(raw.client, errs);
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
            hostnames: admin_hostnames,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EMBEDDED_DEFAULT;

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
    fn admin_hostnames_and_signing_coverage() {
        let base = "upstreams: {origin: {peers: [\"127.0.0.1:8081\"]}}\nroutes: [{prefix: /, upstream: origin}]\n";
        let c = parse_str(base).unwrap();
        assert_eq!(c.admin.hostnames, vec!["localhost"]);
        let c = parse_str(&format!(
            "{base}admin: {{hostnames: [\"Admin.Example.com.\", \"*\"]}}\ntransform: {{signing: {{keys: [\"0123456789abcdef\"], cover_host: true, cover_query: true}}}}\n"
        ))
        .unwrap();
        assert_eq!(c.admin.hostnames, vec!["admin.example.com", "*"]);
        let s = c.transform.signing.unwrap();
        assert!(s.cover_host && s.cover_query);
        let e = errors(&format!(
            "{base}admin: {{hostnames: [\"ok\", \"a.example:9180\", \"http://x\"]}}\n"
        ));
        assert!(
            e.iter().any(|x| x.starts_with("admin.hostnames[1]: ")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|x| x.starts_with("admin.hostnames[2]: ")),
            "{e:?}"
        );
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn unknown_nested_key_has_path() {
        let e = errors(
            "upstreams: {o: {peers: [\"a:1\"], peer: 1}}\nroutes: [{prefix: /, upstream: o, cahce: false}]\n",
        );
        assert!(
            e.iter()
                .any(|x| x == r#"upstreams.o.peer: unknown key (did you mean "peers"?)"#),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|x| x == r#"routes[0].cahce: unknown key (did you mean "cache"?)"#),
            "{e:?}"
        );
        // No follow-on noise from the sections that could not be read.
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn embedded_default_is_valid() {
        // Paths in the shipped config are relative to the repository root.
        std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
        parse_str(EMBEDDED_DEFAULT).unwrap();
    }
}
