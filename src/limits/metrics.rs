//! Prometheus metrics (default registry). A metric whose registration fails
//! (e.g. the name is already taken) is logged and left out, never a panic.

use std::sync::LazyLock;

use prometheus::{
    register_histogram, register_int_counter, register_int_counter_vec, register_int_gauge,
    Histogram, IntCounter, IntCounterVec, IntGauge,
};

fn ok<T>(r: prometheus::Result<T>, name: &str) -> Option<T> {
    r.map_err(|e| log::error!("limits: cannot register metric {name}: {e}"))
        .ok()
}

static DECISIONS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    ok(
        register_int_counter_vec!(
            "imgedge_ratelimit_decisions_total",
            "Rate-limit decisions per policy (allow|deny)",
            &["policy", "result"]
        ),
        "imgedge_ratelimit_decisions_total",
    )
});

static REDIS_DURATION: LazyLock<Option<Histogram>> = LazyLock::new(|| {
    ok(
        register_histogram!(
            "imgedge_ratelimit_redis_duration_seconds",
            "Duration of rate-limit Redis round trips",
            vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0]
        ),
        "imgedge_ratelimit_redis_duration_seconds",
    )
});

static REDIS_ERRORS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    ok(
        register_int_counter_vec!(
            "imgedge_ratelimit_redis_errors_total",
            "Rate-limit Redis failures (timeout|error)",
            &["kind"]
        ),
        "imgedge_ratelimit_redis_errors_total",
    )
});

static FALLBACK: LazyLock<Option<IntGauge>> = LazyLock::new(|| {
    ok(
        register_int_gauge!(
            "imgedge_ratelimit_fallback",
            "1 while the Redis rate-limit backend is degraded"
        ),
        "imgedge_ratelimit_fallback",
    )
});

static FALLBACK_SWITCHES: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    ok(
        register_int_counter!(
            "imgedge_ratelimit_fallback_switches_total",
            "Times the rate limiter switched to its Redis fallback"
        ),
        "imgedge_ratelimit_fallback_switches_total",
    )
});

pub fn decision(policy: &str, allowed: bool) {
    if let Some(m) = DECISIONS.as_ref() {
        m.with_label_values(&[policy, if allowed { "allow" } else { "deny" }])
            .inc();
    }
}

pub fn redis_duration(secs: f64) {
    if let Some(m) = REDIS_DURATION.as_ref() {
        m.observe(secs);
    }
}

pub fn redis_error(timeout: bool) {
    if let Some(m) = REDIS_ERRORS.as_ref() {
        m.with_label_values(&[if timeout { "timeout" } else { "error" }])
            .inc();
    }
}

pub fn fallback(degraded: bool) {
    if let Some(m) = FALLBACK.as_ref() {
        m.set(i64::from(degraded));
    }
    if degraded {
        if let Some(m) = FALLBACK_SWITCHES.as_ref() {
            m.inc();
        }
    }
}

/// Registers every metric now so they show up (at zero) before first use.
pub fn init() {
    LazyLock::force(&DECISIONS);
    LazyLock::force(&REDIS_DURATION);
    LazyLock::force(&REDIS_ERRORS);
    LazyLock::force(&FALLBACK);
    LazyLock::force(&FALLBACK_SWITCHES);
}
