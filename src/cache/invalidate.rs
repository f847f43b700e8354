//! Invalidation after unsafe methods (RFC 9111 §4.4): a successful `POST`, `PUT`, `DELETE` (or
//! any method that is not safe) on a URL makes every stored response of that URL stale, its
//! transforms and `Vary` variants included. Their keys cannot be listed cheaply, so the URL is
//! remembered with the time of the invalidation and every hit stored before that time is
//! revalidated (`is_invalidated`). The memory is bounded: when a URL must be forgotten, the time
//! it was invalidated becomes a watermark before which *every* entry counts as invalidated,
//! which errs on the safe side (an extra revalidation), never serves what was invalidated.

use parking_lot::Mutex;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// URLs remembered at once.
const MAX_URLS: usize = 65_536;

pub struct Invalidations {
    urls: Mutex<lru::LruCache<u64, SystemTime>>,
    hasher: ahash::RandomState,
    /// Nothing was ever invalidated: hits skip the lock.
    empty: AtomicBool,
    /// Entries stored before this (nanoseconds since the epoch) count as invalidated.
    watermark: AtomicU64,
}

impl Default for Invalidations {
    fn default() -> Self {
        Invalidations::new(MAX_URLS)
    }
}

impl Invalidations {
    pub fn new(max_urls: usize) -> Invalidations {
        Invalidations {
            urls: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(max_urls).unwrap_or(NonZeroUsize::MIN),
            )),
            hasher: ahash::RandomState::new(),
            empty: AtomicBool::new(true),
            watermark: AtomicU64::new(0),
        }
    }

    fn url(&self, host: &str, path: &str) -> u64 {
        self.hasher.hash_one((host, path))
    }

    /// Every response stored so far for `host` + `path` (any query, any variant) is stale.
    pub fn invalidate(&self, host: &str, path: &str, now: SystemTime) {
        let url = self.url(host, path);
        let mut urls = self.urls.lock();
        if let Some((_, forgotten)) = urls.push(url, now).filter(|(k, _)| *k != url) {
            self.watermark
                .fetch_max(nanos(forgotten), Ordering::Relaxed);
        }
        self.empty.store(false, Ordering::Relaxed);
    }

    /// Whether a response of `host` + `path` stored (or last revalidated) at `stored` was
    /// invalidated since.
    pub fn is_invalidated(&self, host: &str, path: &str, stored: SystemTime) -> bool {
        if self.empty.load(Ordering::Relaxed) {
            return false;
        }
        if nanos(stored) <= self.watermark.load(Ordering::Relaxed) {
            return true;
        }
        let url = self.url(host, path);
        self.urls.lock().peek(&url).is_some_and(|at| stored <= *at)
    }
}

fn nanos(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_stored_before_are_invalidated() {
        let inv = Invalidations::new(4);
        let t0 = SystemTime::now();
        let t1 = t0 + Duration::from_secs(1);
        assert!(!inv.is_invalidated("h", "/a", t0));
        inv.invalidate("h", "/a", t1);
        assert!(inv.is_invalidated("h", "/a", t0));
        assert!(!inv.is_invalidated("h", "/a", t1 + Duration::from_secs(1)));
        assert!(!inv.is_invalidated("h", "/b", t0));
        assert!(!inv.is_invalidated("other", "/a", t0));
    }

    #[test]
    fn forgetting_a_url_errs_on_the_safe_side() {
        let inv = Invalidations::new(2);
        let t0 = SystemTime::now();
        let at = |s| t0 + Duration::from_secs(s);
        inv.invalidate("h", "/a", at(10));
        inv.invalidate("h", "/b", at(20));
        inv.invalidate("h", "/c", at(30)); // forgets /a: entries before 10 s are all stale
        assert!(inv.is_invalidated("h", "/a", at(5)));
        assert!(inv.is_invalidated("h", "/unrelated", at(5)));
        assert!(!inv.is_invalidated("h", "/unrelated", at(15)));
        assert!(inv.is_invalidated("h", "/b", at(15)));
    }
}
