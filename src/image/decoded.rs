//! Recently decoded sources, kept in memory (`transform.decoded_cache_bytes`, LRU) so that
//! another variant of the same original skips the decode, most of a transform's CPU.
//!
//! Keyed by the source's bytes (a keyed hash and the length), not by its URL: a changed original
//! (new validators, new bytes) can never be served from an old decode, and two URLs of the same
//! bytes share one. An entry holds the pixels at the JPEG scale they were decoded at; a variant
//! uses it when it has at least the resolution that variant needs and at most one DCT scale step
//! more (resizing from much larger pixels costs more than decoding smaller ones).

use crate::image::pixels::Pixels;
use parking_lot::Mutex;

use std::sync::Arc;

/// Identifies a source by its bytes.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct SourceId {
    hash: u64,
    len: usize,
}

struct Entry {
    /// The JPEG DCT scaling denominator it was decoded at (1 for every other format).
    denom: usize,
    pixels: Arc<Pixels>,
}

struct Inner {
    lru: lru::LruCache<SourceId, Entry>,
    bytes: u64,
}

pub struct DecodedCache {
    max_bytes: u64,
    inner: Mutex<Inner>,
    hasher: ahash::RandomState,
}

/// Memory an entry holds.
fn weight(p: &Pixels) -> u64 {
    p.data.capacity() as u64 + std::mem::size_of::<Pixels>() as u64
}

impl DecodedCache {
    /// `max_bytes` 0: nothing is kept.
    pub fn new(max_bytes: u64) -> DecodedCache {
        DecodedCache {
            max_bytes,
            inner: Mutex::new(Inner {
                lru: lru::LruCache::unbounded(),
                bytes: 0,
            }),
            hasher: ahash::RandomState::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    pub fn id(&self, src: &[u8]) -> SourceId {
        SourceId {
            hash: self.hasher.hash_one(src),
            len: src.len(),
        }
    }

    /// The decoded pixels of `id` when they serve a variant that could be decoded at `denom`:
    /// as much resolution or more, by at most one scale step.
    pub fn get(&self, id: SourceId, denom: usize) -> Option<(Arc<Pixels>, usize)> {
        let mut inner = self.inner.lock();
        let e = inner.lru.get(&id)?;
        let usable = e.denom <= denom && e.denom * 2 >= denom;
        usable.then(|| (Arc::clone(&e.pixels), e.denom))
    }

    /// Keeps `pixels` (decoded at `denom`), replacing an older decode of the same source, and
    /// evicts the least recently used until the total is within `max_bytes`. A decode larger
    /// than a quarter of the budget is not kept: it would flush everything else.
    pub fn put(&self, id: SourceId, denom: usize, pixels: Arc<Pixels>) {
        let w = weight(&pixels);
        if w > self.max_bytes / 4 {
            return;
        }
        let mut inner = self.inner.lock();
        if let Some(old) = inner.lru.put(id, Entry { denom, pixels }) {
            inner.bytes -= weight(&old.pixels);
        }
        inner.bytes += w;
        while inner.bytes > self.max_bytes {
            match inner.lru.pop_lru() {
                Some((_, e)) => inner.bytes -= weight(&e.pixels),
                None => break,
            }
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().bytes
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.inner.lock().lru.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(w: u32, h: u32) -> Arc<Pixels> {
        Arc::new(Pixels {
            width: w,
            height: h,
            channels: 3,
            data: vec![0; (w * h * 3) as usize],
        })
    }

    #[test]
    fn serves_as_much_resolution_or_one_step_more() {
        let c = DecodedCache::new(1 << 20);
        let id = c.id(b"source");
        c.put(id, 2, px(10, 10));
        assert!(c.get(id, 1).is_none(), "less resolution than needed");
        assert_eq!(c.get(id, 2).map(|x| x.1), Some(2));
        assert_eq!(c.get(id, 4).map(|x| x.1), Some(2));
        assert!(
            c.get(id, 8).is_none(),
            "two steps larger: decode smaller instead"
        );
        assert!(c.get(c.id(b"other"), 2).is_none());
        assert!(c.get(c.id(b"sourcf"), 2).is_none());
    }

    #[test]
    fn stays_within_its_bytes_evicting_the_least_recently_used() {
        let one = weight(&px(100, 100));
        let c = DecodedCache::new(one * 4);
        let ids: Vec<_> = (0..10u8).map(|i| c.id(&[i; 8])).collect();
        for (i, id) in ids.iter().enumerate() {
            c.put(*id, 1, px(100, 100));
            if i == 2 {
                // Used: kept over the ones put before it.
                assert!(c.get(ids[0], 1).is_some());
            }
            assert!(c.bytes() <= one * 4);
        }
        assert_eq!(c.len(), 4);
        assert!(c.get(ids[9], 1).is_some());
        assert!(c.get(ids[1], 1).is_none());
    }

    #[test]
    fn replacing_an_entry_keeps_the_count_right_and_large_ones_are_not_kept() {
        let c = DecodedCache::new(1 << 20);
        let id = c.id(b"x");
        c.put(id, 4, px(10, 10));
        c.put(id, 2, px(20, 20));
        assert_eq!(c.bytes(), weight(&px(20, 20)));
        let big = c.id(b"big");
        c.put(big, 1, px(512, 512));
        assert!(c.get(big, 1).is_none());
        assert_eq!(c.len(), 1);
        assert!(!DecodedCache::new(0).enabled());
    }
}
