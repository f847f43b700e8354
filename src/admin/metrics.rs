//! `GET /metrics`: sets the gauges that are a reading of other modules' state (cache and disk
//! sizes, peer health, transform queue, process memory), then renders every metric in the text
//! exposition format. Counters are not touched here: they move where their events happen.

use crate::cache::TieredStorage;
use crate::metrics::{Metrics, METRICS};
use crate::proxy::transform::Transformer;
use crate::upstream::Pool;
use prometheus::{Encoder, TextEncoder};
use std::sync::atomic::Ordering;

fn read_disk(m: &Metrics, tiered: &TieredStorage) {
    let Some(d) = &tiered.disk else {
        m.disk_up.set(0);
        return;
    };
    m.disk_up.set(i64::from(d.is_up()));
    m.disk_index_ready.set(i64::from(!d.is_scanning()));
    let scan_millis = d.stats.scan_millis.load(Ordering::Relaxed);
    m.disk_scan_seconds.set(scan_millis as f64 / 1000.0);
    m.disk_bytes.set(d.used_bytes() as i64);
    m.disk_items.set(d.items() as i64);
    m.disk_capacity_bytes.set(d.capacity() as i64);
}

fn read_memory(m: &Metrics) {
    if let Some(rss) = crate::alloc::process_resident_bytes() {
        m.process_resident_bytes.set(rss as i64);
    }
    if let Some(f) = crate::alloc::allocator_figures() {
        m.memory_allocated_bytes.set(f.allocated as i64);
        m.memory_allocator_resident_bytes.set(f.resident as i64);
    }
}

/// Reads the mirrored gauges and renders the text exposition format.
pub fn render(
    pools: &[Pool],
    tiered: &TieredStorage,
    transformer: &Transformer,
) -> (String, Vec<u8>) {
    let m = &*METRICS;
    m.transform_queue_depth
        .set(transformer.queue_depth() as i64);
    m.transform_in_flight.set(transformer.in_flight() as i64);
    m.transform_memory_reserved
        .set(transformer.memory_reserved() as i64);
    m.transform_memory_waiting
        .set(transformer.memory_waiting() as i64);
    m.decoded_cache_bytes
        .set(transformer.decoded_cache_bytes() as i64);
    for pool in pools {
        for (peer, healthy) in pool.health() {
            m.peer_healthy
                .with_label_values(&[pool.name.as_str(), peer.as_str()])
                .set(i64::from(healthy));
        }
    }
    let storage = &tiered.memory;
    m.cache_bytes.set(storage.used_bytes() as i64);
    m.cache_items.set(storage.items() as i64);
    m.cache_capacity_bytes.set(storage.capacity() as i64);
    if let Some(f) = &tiered.fast {
        m.cache_sendfile_bytes.set(f.used_bytes() as i64);
        m.cache_sendfile_items.set(f.items() as i64);
    }
    read_disk(m, tiered);
    read_memory(m);

    let encoder = TextEncoder::new();
    let mut buf = Vec::new();
    if let Err(e) = encoder.encode(&prometheus::gather(), &mut buf) {
        log::error!("cannot encode metrics: {e}");
    }
    (encoder.format_type().to_string(), buf)
}
