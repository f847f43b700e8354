//! Every Prometheus metric imgedge exports, defined here and nowhere else (prometheus 0.14, the
//! default registry). Names carry their unit. Counters and histograms are updated by the module
//! where the event happens; gauges that are a reading of some module's state (cache size, peer
//! health, queue depth) are set when `/metrics` is scraped (`admin::metrics`). Imports nothing
//! of imgedge.

use once_cell::sync::Lazy;
use prometheus::{
    register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec,
    register_int_gauge, register_int_gauge_vec, Histogram, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec,
};
use std::sync::atomic::{AtomicU64, Ordering};

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub struct Metrics {
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub response_bytes: IntCounterVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub peer_healthy: IntGaugeVec,
    pub circuit_state: IntGaugeVec,
    pub circuit_transitions: IntCounterVec,
    pub source_fetches: IntCounterVec,
    pub circuit_bypassed: IntCounterVec,
    pub client_timeouts: IntCounterVec,
    pub cache_lookups: IntCounterVec,
    pub cache_insertions: IntCounter,
    pub cache_evictions: IntCounter,
    pub cache_rejected: IntCounter,
    pub cache_bytes: IntGauge,
    pub cache_capacity_bytes: IntGauge,
    pub cache_items: IntGauge,
    pub cache_sendfile_hits: IntCounter,
    pub cache_sendfile_copies: IntCounter,
    pub cache_sendfile_bytes: IntGauge,
    pub cache_sendfile_items: IntGauge,
    pub process_resident_bytes: IntGauge,
    pub memory_allocated_bytes: IntGauge,
    pub memory_allocator_resident_bytes: IntGauge,
    pub cache_purges: IntCounterVec,
    pub cache_purged_entries: IntCounterVec,
    pub disk_up: IntGauge,
    pub disk_index_ready: IntGauge,
    pub disk_scan_seconds: prometheus::Gauge,
    pub disk_lookups: IntCounterVec,
    pub disk_writes: IntCounterVec,
    pub disk_evictions: IntCounter,
    pub disk_corrupt: IntCounter,
    pub disk_errors: IntCounterVec,
    pub disk_bytes: IntGauge,
    pub disk_capacity_bytes: IntGauge,
    pub disk_items: IntGauge,
    pub transform_duration: HistogramVec,
    pub transform_source_bytes: IntCounter,
    pub transform_output_bytes: IntCounterVec,
    pub transforms_refused: IntCounterVec,
    pub transform_queue_depth: IntGauge,
    pub transform_in_flight: IntGauge,
    pub transform_memory_reserved: IntGauge,
    pub transform_memory_waiting: IntGauge,
    pub transform_memory_waits: IntCounter,
    pub decoded_cache_hits: IntCounter,
    pub decoded_cache_misses: IntCounter,
    pub decoded_cache_bytes: IntGauge,
    pub ratelimit_decisions: IntCounterVec,
    pub ratelimit_redis_duration: Histogram,
    pub ratelimit_redis_errors: IntCounterVec,
    pub ratelimit_fallback: IntGauge,
    pub ratelimit_fallback_switches: IntCounter,
    pub usage_published: IntCounter,
    pub usage_dropped: IntCounter,
    pub usage_errors: IntCounter,
    pub usage_buffered: IntGauge,
}

fn build() -> Result<Metrics, prometheus::Error> {
    Ok(Metrics {
        requests: register_int_counter_vec!(
            "imgedge_requests_total",
            "Requests answered, by route, status class and cache status",
            &["route", "status_class", "cache_status"]
        )?,
        request_duration: register_histogram_vec!(
            "imgedge_request_duration_seconds",
            "Time from request received to response finished",
            &["route"],
            LATENCY_BUCKETS.to_vec()
        )?,
        response_bytes: register_int_counter_vec!(
            "imgedge_response_body_bytes_total",
            "Response body bytes sent to clients",
            &["route"]
        )?,
        upstream_requests: register_int_counter_vec!(
            "imgedge_upstream_requests_total",
            "Requests sent (or attempted) to upstream peers",
            &["pool", "peer"]
        )?,
        upstream_errors: register_int_counter_vec!(
            "imgedge_upstream_errors_total",
            "Upstream failures, by kind (connect, proxy, first_byte, total)",
            &["pool", "peer", "kind"]
        )?,
        upstream_duration: register_histogram_vec!(
            "imgedge_upstream_response_duration_seconds",
            "Time from choosing a peer to its response header",
            &["pool", "peer"],
            LATENCY_BUCKETS.to_vec()
        )?,
        peer_healthy: register_int_gauge_vec!(
            "imgedge_upstream_peer_healthy",
            "1 when the peer passes its health check",
            &["pool", "peer"]
        )?,
        circuit_state: register_int_gauge_vec!(
            "imgedge_upstream_circuit_state",
            "Circuit breaker state of each peer: 1 for the current state (closed, open, half_open)",
            &["pool", "peer", "state"]
        )?,
        circuit_transitions: register_int_counter_vec!(
            "imgedge_upstream_circuit_transitions_total",
            "Circuit breaker state changes, by the state entered",
            &["pool", "peer", "to"]
        )?,
        source_fetches: register_int_counter_vec!(
            "imgedge_source_fetches_total",
            "Originals fetched for transform misses through the source cache, by how the cache answered (hit: an origin fetch saved; miss/expired: fetched from the origin; revalidated: a conditional request)",
            &["cache"]
        )?,
        circuit_bypassed: register_int_counter_vec!(
            "imgedge_upstream_circuit_bypassed_total",
            "Requests sent to a peer with an open circuit because every peer of the pool was open",
            &["pool", "peer"]
        )?,
        client_timeouts: register_int_counter_vec!(
            "imgedge_client_timeouts_total",
            "Client connections closed by a timeout (header: request header too slow, keepalive: idle)",
            &["kind"]
        )?,
        cache_lookups: register_int_counter_vec!(
            "imgedge_cache_lookups_total",
            "Storage lookups, by result (hit, miss)",
            &["result"]
        )?,
        cache_insertions: register_int_counter!(
            "imgedge_cache_insertions_total",
            "Entries written to the memory cache"
        )?,
        cache_evictions: register_int_counter!(
            "imgedge_cache_evictions_total",
            "Entries evicted to stay within cache.memory_bytes"
        )?,
        cache_rejected: register_int_counter!(
            "imgedge_cache_rejected_total",
            "Responses not stored because they exceed cache.max_object_bytes"
        )?,
        cache_bytes: register_int_gauge!(
            "imgedge_cache_bytes",
            "Bytes held by the memory cache (bodies, metadata, overhead)"
        )?,
        cache_capacity_bytes: register_int_gauge!(
            "imgedge_cache_capacity_bytes",
            "Configured memory cache capacity"
        )?,
        cache_items: register_int_gauge!("imgedge_cache_items", "Entries in the memory cache")?,
        cache_sendfile_hits: register_int_counter!(
            "imgedge_cache_sendfile_hits_total",
            "Memory hits sent with sendfile() from a memfd copy (cache.sendfile_hits)"
        )?,
        cache_sendfile_copies: register_int_counter!(
            "imgedge_cache_sendfile_copies_total",
            "Memfd copies made of memory entries for sendfile hits"
        )?,
        cache_sendfile_bytes: register_int_gauge!(
            "imgedge_cache_sendfile_bytes",
            "Bytes held by memfd copies for sendfile hits (body pages, headers, overhead), on top of imgedge_cache_bytes"
        )?,
        cache_sendfile_items: register_int_gauge!(
            "imgedge_cache_sendfile_items",
            "Memfd copies held for sendfile hits"
        )?,
        process_resident_bytes: register_int_gauge!(
            "imgedge_process_resident_bytes",
            "Resident set size of the process (from /proc/self/statm)"
        )?,
        memory_allocated_bytes: register_int_gauge!(
            "imgedge_memory_allocated_bytes",
            "Bytes in live heap allocations, as jemalloc counts them (0 when built without jemalloc)"
        )?,
        memory_allocator_resident_bytes: register_int_gauge!(
            "imgedge_memory_allocator_resident_bytes",
            "Bytes of physical pages jemalloc holds: live data, metadata and pages not yet returned"
        )?,
        cache_purges: register_int_counter_vec!(
            "imgedge_cache_purges_total",
            "Purge requests served, by kind (url, prefix, tag)",
            &["by"]
        )?,
        cache_purged_entries: register_int_counter_vec!(
            "imgedge_cache_purged_entries_total",
            "Entries removed from the cache (memory and disk) by purges, by kind",
            &["by"]
        )?,
        disk_up: register_int_gauge!(
            "imgedge_cache_disk_up",
            "1 while the disk tier accepts writes; 0 when degraded to memory only (full disk, unwritable directory) or not configured"
        )?,
        disk_index_ready: register_int_gauge!(
            "imgedge_cache_disk_index_ready",
            "1 once the start-up scan of the disk tier has indexed every entry"
        )?,
        disk_scan_seconds: prometheus::register_gauge!(
            "imgedge_cache_disk_scan_seconds",
            "Duration of the start-up scan of the disk tier"
        )?,
        disk_lookups: register_int_counter_vec!(
            "imgedge_cache_disk_lookups_total",
            "Disk tier reads after a memory miss, by result (hit, miss)",
            &["result"]
        )?,
        disk_writes: register_int_counter_vec!(
            "imgedge_cache_disk_writes_total",
            "Entries written to the disk tier, by result (ok, skipped: tier down or write queue full)",
            &["result"]
        )?,
        disk_evictions: register_int_counter!(
            "imgedge_cache_disk_evictions_total",
            "Entries deleted from disk to stay within cache.disk.bytes"
        )?,
        disk_corrupt: register_int_counter!(
            "imgedge_cache_disk_corrupt_entries_total",
            "Disk entries that failed their integrity checks (dropped and deleted)"
        )?,
        disk_errors: register_int_counter_vec!(
            "imgedge_cache_disk_errors_total",
            "Disk tier I/O errors, by operation (open, read, write, delete, scan)",
            &["op"]
        )?,
        disk_bytes: register_int_gauge!(
            "imgedge_cache_disk_bytes",
            "Bytes held by the disk tier (whole 4 KiB blocks)"
        )?,
        disk_capacity_bytes: register_int_gauge!(
            "imgedge_cache_disk_capacity_bytes",
            "Configured disk tier capacity (cache.disk.bytes)"
        )?,
        disk_items: register_int_gauge!("imgedge_cache_disk_items", "Entries in the disk tier")?,
        transform_duration: register_histogram_vec!(
            "imgedge_transform_duration_seconds",
            "Decode + resize + encode time (queue wait included), by output format",
            &["format"],
            LATENCY_BUCKETS.to_vec()
        )?,
        transform_source_bytes: register_int_counter!(
            "imgedge_transform_source_bytes_total",
            "Origin image bytes fed to transforms"
        )?,
        transform_output_bytes: register_int_counter_vec!(
            "imgedge_transform_output_bytes_total",
            "Bytes produced by transforms, by output format",
            &["format"]
        )?,
        transforms_refused: register_int_counter_vec!(
            "imgedge_transforms_refused_total",
            "Transforms refused or failed, by reason (too_big, bomb, bad_data, encode, pool, timeout, memory, memory_wait, queue_full, remembered)",
            &["reason"]
        )?,
        transform_queue_depth: register_int_gauge!(
            "imgedge_transform_queue_depth",
            "Transform jobs waiting for a worker"
        )?,
        transform_in_flight: register_int_gauge!(
            "imgedge_transform_in_flight",
            "Transform jobs running"
        )?,
        transform_memory_reserved: register_int_gauge!(
            "imgedge_transform_memory_reserved_bytes",
            "Estimated peak bytes reserved by transforms in flight (within transform.max_memory_bytes)"
        )?,
        transform_memory_waiting: register_int_gauge!(
            "imgedge_transform_memory_waiting",
            "Transforms waiting for memory (transform.max_memory_bytes) now"
        )?,
        decoded_cache_hits: register_int_counter!(
            "imgedge_decoded_cache_hits_total",
            "Transforms that took their decoded source from the decoded-source cache (no decode)"
        )?,
        decoded_cache_misses: register_int_counter!(
            "imgedge_decoded_cache_misses_total",
            "Transforms that decoded their source (then kept in the decoded-source cache)"
        )?,
        decoded_cache_bytes: register_int_gauge!(
            "imgedge_decoded_cache_bytes",
            "Bytes of decoded sources held by the decoded-source cache (transform.decoded_cache_bytes)"
        )?,
        transform_memory_waits: register_int_counter!(
            "imgedge_transform_memory_waits_total",
            "Transforms that waited for others to give back memory (transform.max_memory_bytes) before running"
        )?,
        ratelimit_decisions: register_int_counter_vec!(
            "imgedge_ratelimit_decisions_total",
            "Rate-limit decisions per policy (allow|deny)",
            &["policy", "result"]
        )?,
        ratelimit_redis_duration: register_histogram!(
            "imgedge_ratelimit_redis_duration_seconds",
            "Duration of rate-limit Redis round trips",
            vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0]
        )?,
        ratelimit_redis_errors: register_int_counter_vec!(
            "imgedge_ratelimit_redis_errors_total",
            "Rate-limit Redis failures (timeout|error)",
            &["kind"]
        )?,
        ratelimit_fallback: register_int_gauge!(
            "imgedge_ratelimit_fallback",
            "1 while the Redis rate-limit backend is degraded"
        )?,
        ratelimit_fallback_switches: register_int_counter!(
            "imgedge_ratelimit_fallback_switches_total",
            "Times the rate limiter switched to its Redis fallback"
        )?,
        usage_published: register_int_counter!(
            "imgedge_usage_events_published_total",
            "Usage events written to the Redis stream"
        )?,
        usage_dropped: register_int_counter!(
            "imgedge_usage_events_dropped_total",
            "Usage events lost because the buffer was full (Redis slow or down)"
        )?,
        usage_errors: register_int_counter!(
            "imgedge_usage_publish_errors_total",
            "Failed connects or XADD batches to the usage Redis (each is retried)"
        )?,
        usage_buffered: register_int_gauge!(
            "imgedge_usage_events_buffered",
            "Usage events waiting in memory to be written"
        )?,
    })
}

pub static METRICS: Lazy<Metrics> = Lazy::new(|| {
    // Registration fails only on a duplicate name, a programming error caught by every test.
    build().expect("metric names are unique")
});

/// "2xx", "4xx"... for a status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// A count kept per instance (a cache tier's own figure, which its tests read) that feeds its
/// process-wide metric at the same moment. Mirrors `AtomicU64`'s `fetch_add` and `load`.
pub struct Counted {
    local: AtomicU64,
    metric: IntCounter,
}

impl Counted {
    pub fn new(metric: IntCounter) -> Counted {
        Counted {
            local: AtomicU64::new(0),
            metric,
        }
    }

    pub fn fetch_add(&self, n: u64, order: Ordering) -> u64 {
        self.metric.inc_by(n);
        self.local.fetch_add(n, order)
    }

    pub fn load(&self, order: Ordering) -> u64 {
        self.local.load(order)
    }
}
