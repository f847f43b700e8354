//! Sendfile copies of memory entries (`cache.sendfile_hits`): serving a current, fresh copy as a
//! memory hit, and making one after a normal hit of an entry that qualifies.

use super::TieredStorage;
use crate::cache::fastpath::{FastEntry, Memfd, MIN_BODY_BYTES};
use crate::cache::storage::Entry;
use pingora_cache::key::HashBinary;
use pingora_cache::CacheMeta;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl TieredStorage {
    /// The sendfile copy for `key`, when there is one of the entry the memory tier holds now
    /// and it is fresh. Counts as a memory hit (and keeps the entry warm in both tiers, like a
    /// normal hit). A copy that is no longer current is dropped.
    pub fn fast_hit(&self, k: &HashBinary) -> Option<Arc<FastEntry>> {
        let fast = self.fast.as_ref()?;
        let copy = fast.get(k)?;
        if !self.memory.hit_if_current(k, copy_source(&copy)) {
            fast.remove_if(k, &copy);
            return None;
        }
        if std::time::SystemTime::now() >= copy.fresh_until {
            // Stale: the normal path revalidates (and a new copy is made from its result).
            return None;
        }
        if let Some(d) = &self.disk {
            d.touch(k);
        }
        fast.stats.served.fetch_add(1, Ordering::Relaxed);
        Some(copy)
    }

    /// Makes a sendfile copy of the memory entry under `k` when it has none yet and qualifies:
    /// a fresh 200 with `Content-Length` equal to its body, no `Vary`, a body of at least
    /// `MIN_BODY_BYTES`. Called after a normal hit was served.
    pub fn fast_record(&self, k: &HashBinary) {
        let Some(fast) = self.fast.as_ref() else {
            return;
        };
        let Some(entry) = self.memory.peek(k) else {
            return;
        };
        if entry.body.len() < MIN_BODY_BYTES || fast.has_copy_of(k, &entry) {
            return;
        }
        let meta = match CacheMeta::deserialize(&entry.meta.0, &entry.meta.1) {
            Ok(m) => m,
            Err(_) => return,
        };
        let now = std::time::SystemTime::now();
        let h = meta.headers();
        let length_ok = h
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            == Some(entry.body.len());
        if meta.response_header().status != http::StatusCode::OK
            || !length_ok
            || h.contains_key(http::header::VARY)
            || h.contains_key(http::header::TRANSFER_ENCODING)
            || meta.variance().is_some()
            || !meta.is_fresh(now)
        {
            return;
        }
        let body = match Memfd::with_contents(&entry.body) {
            Ok(b) => b,
            Err(e) => {
                log::warn!("sendfile hits: cannot copy a body to a memfd: {e}");
                return;
            }
        };
        let mut header = meta.response_header_copy();
        crate::cache::strip_private_headers(&mut header);
        let copy = FastEntry::new(body, header, meta.epoch(), meta.fresh_until(), &entry);
        fast.insert(*k, copy);
    }
}

fn copy_source(copy: &FastEntry) -> *const Entry {
    copy.source_ptr()
}
