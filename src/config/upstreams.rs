//! The `upstreams` section: origins as peer pools (TLS, balancing, health checks, timeouts,
//! retries, circuit breaker) or local directories.

use super::check::{dur, is_host_port, Errors};
use super::defaults;
use super::raw::{RawCircuitBreaker, RawHealthCheck, RawTimeouts, RawTlsSetting, RawUpstream};
use super::{
    CircuitBreaker, HealthCheck, LbAlgorithm, PeerPool, Timeouts, TlsSettings, Upstream,
    UpstreamKind,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Every upstream, in name order; one that could not be read is kept as a placeholder.
pub(super) fn validate_upstreams(
    raw: BTreeMap<String, Option<RawUpstream>>,
    errs: &mut Errors,
) -> Vec<Upstream> {
    let mut upstreams = Vec::new();
    for (name, up) in raw {
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
    upstreams
}

/// One upstream: `peers` (with everything that applies to them) or `dir`.
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
            let health_check = up
                .health_check
                .and_then(|hc| validate_health_check(hc, path, errs));
            let timeouts = validate_timeouts(up.timeouts.unwrap_or_default(), path, errs);
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

/// `upstreams.X.health_check`: active checks; `enabled: false` turns them off.
fn validate_health_check(hc: RawHealthCheck, path: &str, errs: &mut Errors) -> Option<HealthCheck> {
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
}

/// `upstreams.X.timeouts`: each above zero, and the first byte due within the total.
fn validate_timeouts(t: RawTimeouts, path: &str, errs: &mut Errors) -> Timeouts {
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
    timeouts
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
