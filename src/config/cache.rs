//! The `cache` section: the memory tier, its TTLs, and the optional disk tier.

use super::check::{dur, size, Errors};
use super::defaults;
use super::raw::{RawCache, RawDisk};
use super::size::parse_size;
use super::{CacheSettings, DiskSettings};
use std::path::PathBuf;

/// `cache`: memory budget and object size, TTLs, the collapsing lock, and the disk tier.
pub(super) fn validate_cache(c: RawCache, errs: &mut Errors) -> CacheSettings {
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
        max_variants: match c.max_variants {
            Some(0) => {
                errs.add(
                    "cache.max_variants",
                    "must be at least 1 (a URL that varies needs one variant to be cached)",
                );
                defaults::CACHE_MAX_VARIANTS
            }
            n => n.unwrap_or(defaults::CACHE_MAX_VARIANTS),
        },
        sendfile_hits: c.sendfile_hits.unwrap_or(defaults::CACHE_SENDFILE_HITS),
        disk: c
            .disk
            .and_then(|d| validate_disk(d, max_object_bytes, errs)),
    }
}

/// `cache.disk`: a directory and a budget that holds at least the largest object.
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
