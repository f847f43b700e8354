//! The memory tier: sharded, bounded by bytes, LRU eviction, honest size accounting (body +
//! serialized meta + key/tags + per-entry overhead). A plain data structure: the pingora
//! `Storage` impl that fronts it (and the disk tier) is `tiered.rs`. Knows nothing of images.

use super::shards::{self, Shards};
use crate::metrics::{Counted, METRICS};
use bytes::Bytes;
use pingora_cache::key::HashBinary;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bookkeeping bytes per entry beyond body and meta (map slot, LRU links, Arcs).
const ENTRY_OVERHEAD: usize = 160;
/// Shards are at least this big, so a shard can hold a typical large image.
const MIN_SHARD_BYTES: u64 = 4 << 20;
const MAX_SHARDS: u64 = 32;

/// What purge needs to know of an entry: its cache key (the primary string) and its tags (from
/// the origin's `Cache-Tag` / `Surrogate-Key`). Kept by both tiers; persisted on disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntryInfo {
    pub key: String,
    pub tags: Vec<String>,
}

impl EntryInfo {
    fn size(&self) -> usize {
        self.key.len() + self.tags.iter().map(|t| t.len() + 24).sum::<usize>()
    }
}

/// A purge predicate over entries (built by the cache layer, which knows the key format).
pub type Matcher = dyn Fn(&EntryInfo) -> bool + Send + Sync;

pub struct Entry {
    pub meta: (Vec<u8>, Vec<u8>),
    pub body: Bytes,
    pub info: Arc<EntryInfo>,
    /// Bytes charged against the budget.
    size: usize,
}

impl Entry {
    pub fn new(meta: (Vec<u8>, Vec<u8>), body: Bytes, info: Arc<EntryInfo>) -> Entry {
        let size = body.len() + meta.0.len() + meta.1.len() + info.size() + ENTRY_OVERHEAD;
        Entry {
            meta,
            body,
            info,
            size,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }
}

/// The tier's counts; each also feeds its metric (`crate::metrics`) as it happens.
pub struct StorageStats {
    pub hits: Counted,
    pub misses: Counted,
    pub insertions: Counted,
    pub evictions: Counted,
    pub rejected_too_big: Counted,
}

impl Default for StorageStats {
    fn default() -> StorageStats {
        let m = &*METRICS;
        StorageStats {
            hits: Counted::new(m.cache_lookups.with_label_values(&["hit"])),
            misses: Counted::new(m.cache_lookups.with_label_values(&["miss"])),
            insertions: Counted::new(m.cache_insertions.clone()),
            evictions: Counted::new(m.cache_evictions.clone()),
            rejected_too_big: Counted::new(m.cache_rejected.clone()),
        }
    }
}

pub struct MemoryStorage {
    shards: Shards<Arc<Entry>, usize>,
    shard_budget: usize,
    max_object: usize,
    pub stats: StorageStats,
}

/// Refuses an insert when a purge ran since the write began (`epoch` moved past `seen`), so a
/// response fetched before a purge is not stored after it.
#[derive(Clone, Copy)]
pub struct EpochGuard<'a> {
    pub epoch: &'a AtomicU64,
    pub seen: u64,
}

impl EpochGuard<'_> {
    pub fn still_valid(&self) -> bool {
        self.epoch.load(Ordering::SeqCst) == self.seen
    }
}

/// Result of [`MemoryStorage::insert`].
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    Yes,
    TooBig,
    Purged,
}

impl MemoryStorage {
    /// `capacity`: total bytes for all entries; `max_object`: largest entry admitted.
    pub fn new(capacity: u64, max_object: u64) -> Self {
        let n = shards::count(capacity, MIN_SHARD_BYTES, MAX_SHARDS);
        let shard_budget = (capacity / n) as usize;
        MemoryStorage {
            shards: Shards::new(n),
            shard_budget,
            max_object: (max_object as usize).min(shard_budget),
            stats: StorageStats::default(),
        }
    }

    /// Bytes currently charged (bodies + metas + overhead).
    pub fn used_bytes(&self) -> usize {
        self.shards.bytes()
    }

    pub fn items(&self) -> usize {
        self.shards.items()
    }

    pub fn capacity(&self) -> usize {
        self.shard_budget * self.shards.len()
    }

    pub fn max_object(&self) -> usize {
        self.max_object
    }

    /// The entry (marked recently used), counting a hit or a miss.
    pub fn get(&self, key: &HashBinary) -> Option<Arc<Entry>> {
        let entry = self.shards.of(key).lock().map.get(key).cloned();
        let counter = match entry {
            Some(_) => &self.stats.hits,
            None => &self.stats.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        entry
    }

    /// Stores `entry`, evicting least recently used entries of its shard to stay in budget.
    pub fn insert(&self, key: HashBinary, entry: Entry, guard: Option<EpochGuard>) -> Inserted {
        if entry.size > self.shard_budget {
            self.stats.rejected_too_big.fetch_add(1, Ordering::Relaxed);
            return Inserted::TooBig;
        }
        let mut shard = self.shards.of(&key).lock();
        // Checked under the shard lock: a purge bumps the epoch before it sweeps the shards.
        if guard.is_some_and(|g| !g.still_valid()) {
            return Inserted::Purged;
        }
        if let Some(old) = shard.map.pop(&key) {
            shard.bytes -= old.size;
        }
        while shard.bytes + entry.size > self.shard_budget {
            match shard.map.pop_lru() {
                Some((_, old)) => {
                    shard.bytes -= old.size;
                    self.stats.evictions.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            }
        }
        shard.bytes += entry.size;
        shard.map.put(key, Arc::new(entry));
        self.stats.insertions.fetch_add(1, Ordering::Relaxed);
        Inserted::Yes
    }

    /// The entry, without marking it used or counting a lookup.
    pub fn peek(&self, key: &HashBinary) -> Option<Arc<Entry>> {
        self.shards.of(key).lock().map.peek(key).cloned()
    }

    /// Whether `key` still holds exactly `entry` (the same allocation); when it does, counts a
    /// hit and marks it recently used, like [`MemoryStorage::get`].
    pub fn hit_if_current(&self, key: &HashBinary, entry: *const Entry) -> bool {
        let current = {
            let mut shard = self.shards.of(key).lock();
            shard
                .map
                .get(key)
                .is_some_and(|e| std::ptr::eq(Arc::as_ptr(e), entry))
        };
        if current {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
        }
        current
    }

    pub fn remove(&self, key: &HashBinary) -> bool {
        let mut shard = self.shards.of(key).lock();
        match shard.map.pop(key) {
            Some(old) => {
                shard.bytes -= old.size;
                true
            }
            None => false,
        }
    }

    /// Removes every entry `matcher` accepts; returns their keys.
    pub fn remove_matching(&self, matcher: &Matcher) -> Vec<HashBinary> {
        let mut removed = Vec::new();
        for s in self.shards.iter() {
            let mut shard = s.lock();
            let keys: Vec<HashBinary> = shard
                .map
                .iter()
                .filter(|(_, e)| matcher(&e.info))
                .map(|(k, _)| *k)
                .collect();
            for k in keys {
                if let Some(old) = shard.map.pop(&k) {
                    shard.bytes -= old.size;
                    removed.push(k);
                }
            }
        }
        removed
    }

    /// Replaces the meta of a stored entry (revalidation); `false` when it is not stored.
    pub fn update_meta(&self, key: &HashBinary, meta: (Vec<u8>, Vec<u8>)) -> bool {
        let mut shard = self.shards.of(key).lock();
        let Some(old) = shard.map.peek(key).cloned() else {
            return false;
        };
        let entry = Entry::new(meta, old.body.clone(), old.info.clone());
        shard.bytes = shard.bytes - old.size + entry.size;
        shard.map.put(*key, Arc::new(entry));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &[u8], key: &str, tags: &[&str]) -> Entry {
        let info = EntryInfo {
            key: key.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        };
        Entry::new(
            (vec![1], vec![2]),
            Bytes::copy_from_slice(body),
            Arc::new(info),
        )
    }

    fn h(i: u8) -> HashBinary {
        [i; 16]
    }

    #[test]
    fn stays_under_budget_and_evicts_lru() {
        let cap = 256 * 1024;
        let s = MemoryStorage::new(cap, cap);
        s.insert(h(0), entry(&[7; 10_000], "first", &[]), None);
        for i in 1..100 {
            s.insert(h(i), entry(&[7; 10_000], "k", &[]), None);
            assert!(s.get(&h(0)).is_some(), "the hot entry stays");
            assert!(s.used_bytes() <= cap as usize);
        }
        assert!(s.get(&h(1)).is_none());
        assert!(s.stats.evictions.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn remove_matching_by_tag_and_key() {
        let s = MemoryStorage::new(1 << 20, 1 << 20);
        s.insert(h(1), entry(b"a", "h\n/a\n\n", &["red"]), None);
        s.insert(h(2), entry(b"b", "h\n/b\n\n", &["red", "blue"]), None);
        s.insert(h(3), entry(b"c", "h\n/c\n\n", &["blue"]), None);
        let red = s.remove_matching(&|i: &EntryInfo| i.tags.iter().any(|t| t == "red"));
        assert_eq!(red.len(), 2);
        assert!(s.get(&h(3)).is_some());
        let c = s.remove_matching(&|i: &EntryInfo| i.key.starts_with("h\n/c\n"));
        assert_eq!(c, vec![h(3)]);
        assert_eq!(s.used_bytes(), 0);
    }

    #[test]
    fn a_purge_during_the_write_refuses_the_insert() {
        let s = MemoryStorage::new(1 << 20, 1 << 20);
        let epoch = AtomicU64::new(5);
        let guard = EpochGuard {
            epoch: &epoch,
            seen: 5,
        };
        epoch.fetch_add(1, Ordering::SeqCst);
        assert_eq!(
            s.insert(h(1), entry(b"x", "k", &[]), Some(guard)),
            Inserted::Purged
        );
        assert!(s.get(&h(1)).is_none());
    }
}
