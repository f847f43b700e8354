//! `GET /metrics`: sets the gauges that read other modules' state, then renders the text
//! exposition format of every metric (`crate::metrics` defines them).

use crate::cache::TieredStorage;
use crate::metrics::{Metrics, METRICS};
use crate::proxy::transform::Transformer;
use crate::upstream::Pool;
use prometheus::{Encoder, IntCounter, TextEncoder};
use std::sync::atomic::{AtomicU64, Ordering};

fn sync_counter(c: &IntCounter, total: u64) {
    let cur = c.get();
    if total > cur {
        c.inc_by(total - cur);
    }
}

fn render_disk(m: &Metrics, tiered: &TieredStorage) {
    let Some(d) = &tiered.disk else {
        m.disk_up.set(0);
        return;
    };
    let s = &d.stats;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    m.disk_up.set(i64::from(d.is_up()));
    m.disk_index_ready.set(i64::from(!d.is_scanning()));
    m.disk_scan_seconds
        .set(load(&s.scan_millis) as f64 / 1000.0);
    sync_counter(&m.disk_lookups.with_label_values(&["hit"]), load(&s.hits));
    sync_counter(
        &m.disk_lookups.with_label_values(&["miss"]),
        load(&s.misses),
    );
    sync_counter(&m.disk_writes.with_label_values(&["ok"]), load(&s.writes));
    sync_counter(
        &m.disk_writes.with_label_values(&["skipped"]),
        load(&s.writes_skipped),
    );
    sync_counter(&m.disk_evictions, load(&s.evictions));
    sync_counter(&m.disk_corrupt, load(&s.corrupt));
    for (op, c) in [
        ("open", &s.errors_open),
        ("read", &s.errors_read),
        ("write", &s.errors_write),
        ("delete", &s.errors_delete),
        ("scan", &s.errors_scan),
    ] {
        sync_counter(&m.disk_errors.with_label_values(&[op]), load(c));
    }
    m.disk_bytes.set(d.used_bytes() as i64);
    m.disk_items.set(d.items() as i64);
    m.disk_capacity_bytes.set(d.capacity() as i64);
}

fn render_memory(m: &Metrics) {
    if let Some(rss) = crate::alloc::process_resident_bytes() {
        m.process_resident_bytes.set(rss as i64);
    }
    if let Some(f) = crate::alloc::allocator_figures() {
        m.memory_allocated_bytes.set(f.allocated as i64);
        m.memory_allocator_resident_bytes.set(f.resident as i64);
    }
}

/// Refreshes mirrored gauges and renders the text exposition format.
pub fn render(
    pools: &[Pool],
    tiered: &TieredStorage,
    transformer: &Transformer,
) -> (String, Vec<u8>) {
    let m = &*METRICS;
    m.transform_queue_depth
        .set(transformer.queue_depth() as i64);
    m.transform_in_flight.set(transformer.in_flight() as i64);
    for pool in pools {
        for (peer, healthy) in pool.health() {
            m.peer_healthy
                .with_label_values(&[pool.name.as_str(), peer.as_str()])
                .set(i64::from(healthy));
        }
    }
    let storage = &tiered.memory;
    let s = &storage.stats;
    sync_counter(
        &m.cache_lookups.with_label_values(&["hit"]),
        s.hits.load(Ordering::Relaxed),
    );
    sync_counter(
        &m.cache_lookups.with_label_values(&["miss"]),
        s.misses.load(Ordering::Relaxed),
    );
    sync_counter(&m.cache_insertions, s.insertions.load(Ordering::Relaxed));
    sync_counter(&m.cache_evictions, s.evictions.load(Ordering::Relaxed));
    sync_counter(
        &m.cache_rejected,
        s.rejected_too_big.load(Ordering::Relaxed),
    );
    m.cache_bytes.set(storage.used_bytes() as i64);
    m.cache_items.set(storage.items() as i64);
    m.cache_capacity_bytes.set(storage.capacity() as i64);
    if let Some(f) = &tiered.fast {
        sync_counter(
            &m.cache_sendfile_hits,
            f.stats.served.load(Ordering::Relaxed),
        );
        sync_counter(
            &m.cache_sendfile_copies,
            f.stats.recorded.load(Ordering::Relaxed),
        );
        m.cache_sendfile_bytes.set(f.used_bytes() as i64);
        m.cache_sendfile_items.set(f.items() as i64);
    }
    render_disk(m, tiered);
    render_memory(m);

    let encoder = TextEncoder::new();
    let mut buf = Vec::new();
    if let Err(e) = encoder.encode(&prometheus::gather(), &mut buf) {
        log::error!("cannot encode metrics: {e}");
    }
    (encoder.format_type().to_string(), buf)
}
