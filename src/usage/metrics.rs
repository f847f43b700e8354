//! Usage-event metrics (default registry). A metric whose registration fails is logged and left
//! out, never a panic.

use prometheus::{register_int_counter, register_int_gauge, IntCounter, IntGauge};
use std::sync::LazyLock;

fn ok<T>(r: prometheus::Result<T>, name: &str) -> Option<T> {
    r.map_err(|e| log::error!("usage: cannot register metric {name}: {e}"))
        .ok()
}

static PUBLISHED: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    ok(
        register_int_counter!(
            "imgedge_usage_events_published_total",
            "Usage events written to the Redis stream"
        ),
        "imgedge_usage_events_published_total",
    )
});

static DROPPED: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    ok(
        register_int_counter!(
            "imgedge_usage_events_dropped_total",
            "Usage events lost because the buffer was full (Redis slow or down)"
        ),
        "imgedge_usage_events_dropped_total",
    )
});

static ERRORS: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    ok(
        register_int_counter!(
            "imgedge_usage_publish_errors_total",
            "Failed connects or XADD batches to the usage Redis (each is retried)"
        ),
        "imgedge_usage_publish_errors_total",
    )
});

static BUFFERED: LazyLock<Option<IntGauge>> = LazyLock::new(|| {
    ok(
        register_int_gauge!(
            "imgedge_usage_events_buffered",
            "Usage events waiting in memory to be written"
        ),
        "imgedge_usage_events_buffered",
    )
});

/// Registers every usage metric so they show (at 0) from the start.
pub fn init() {
    LazyLock::force(&PUBLISHED);
    LazyLock::force(&DROPPED);
    LazyLock::force(&ERRORS);
    LazyLock::force(&BUFFERED);
}

pub fn published(n: u64) {
    if let Some(c) = PUBLISHED.as_ref() {
        c.inc_by(n);
    }
}

pub fn dropped() {
    if let Some(c) = DROPPED.as_ref() {
        c.inc();
    }
}

pub fn error() {
    if let Some(c) = ERRORS.as_ref() {
        c.inc();
    }
}

pub fn buffered(n: usize) {
    if let Some(g) = BUFFERED.as_ref() {
        g.set(n as i64);
    }
}
